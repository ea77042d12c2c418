-- Version 18: named queues (as SQLite's `schema_v18.sql`, which says why).
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';

-- `wasmjob_claim` of version 11, claiming only from the queues `queues`
-- names (NULL, the default: every queue, so that a node of the version
-- before, still running during a rolling upgrade, calls it as it did),
-- and answering, as its last columns (where a node of the version before
-- does not read), whether each task is a workflow's step (version 17:
-- its ending settles the stages after it) and its queue (its children go
-- to it).
DROP FUNCTION wasmjob_claim(BIGINT, TEXT, BIGINT, INTEGER, TEXT[], BIGINT[]);
CREATE OR REPLACE FUNCTION wasmjob_claim(now BIGINT, node TEXT, lease_until BIGINT, lim INTEGER, tenants TEXT[], maxes BIGINT[],
    queues TEXT[] DEFAULT NULL)
RETURNS TABLE (id BIGINT, tenant TEXT, job TEXT, version TEXT, args TEXT, attempt INTEGER, max_retries INTEGER,
               root_task BIGINT, depth INTEGER, lease TEXT, contended BOOLEAN, next_run_at BIGINT, due_at BIGINT,
               workflow BOOLEAN, queue TEXT)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    waiting TEXT;
    i INTEGER;
    k INTEGER;
    busy BIGINT;
    names TEXT[] := '{}';
    rooms BIGINT[] := '{}';
    was_contended BOOLEAN := false;
    left_over BIGINT := lim;
    active INTEGER;
    share BIGINT;
    budget BIGINT;
    want BIGINT;
    got BIGINT;
    progress BOOLEAN := true;
BEGIN
    -- Tenants with waiting tasks: a loose index scan of `tasks_claim`.
    FOR waiting IN
        WITH RECURSIVE w(t) AS (
            (SELECT q.tenant FROM tasks q WHERE q.state IN ('queued', 'retry') ORDER BY q.tenant LIMIT 1)
            UNION ALL
            SELECT (SELECT q.tenant FROM tasks q WHERE q.state IN ('queued', 'retry') AND q.tenant > w.t
                    ORDER BY q.tenant LIMIT 1)
            FROM w WHERE w.t IS NOT NULL)
        SELECT t FROM w WHERE t IS NOT NULL
    LOOP
        i := array_position(tenants, waiting);
        CONTINUE WHEN i IS NULL;
        IF NOT pg_try_advisory_xact_lock(7140234, hashtext(current_schema() || '/' || waiting)) THEN
            was_contended := true;
            CONTINUE;
        END IF;
        SELECT count(*) INTO busy FROM tasks q WHERE q.tenant = waiting AND q.state = 'started';
        names := names || waiting;
        rooms := rooms || greatest(maxes[i] - busy, 0);
    END LOOP;

    LOOP
        SELECT count(*) INTO active FROM unnest(rooms) r WHERE r > 0;
        EXIT WHEN active = 0 OR left_over <= 0 OR NOT progress;
        progress := false;
        share := (left_over + active - 1) / active;
        budget := left_over;
        FOR k IN 1 .. coalesce(array_length(names, 1), 0) LOOP
            want := least(share, rooms[k], budget);
            CONTINUE WHEN want <= 0;
            budget := budget - want;
            -- The picked ids are an ARRAY(...), which the server computes
            -- once: as `id IN (SELECT ... LIMIT ...)` the planner may run
            -- the subquery once per outer row, and the claim then took
            -- many times its limit (seen: 5,248 started tasks for a claim
            -- of 128, past the tenant's `max_running`).
            RETURN QUERY
            UPDATE tasks t SET state = 'started', attempt = t.attempt + 1, started_at = now,
                lease = node || ':' || t.id || ':' || (t.attempt + 1), lease_expires_at = lease_until, reason = NULL
            WHERE t.state IN ('queued', 'retry', 'started') AND t.id = ANY(ARRAY(
                SELECT q.id FROM tasks q
                WHERE q.tenant = names[k] AND q.state IN ('queued', 'retry') AND q.run_at <= now
                  AND (q.expires_at IS NULL OR q.expires_at > now)
                  AND (queues IS NULL OR q.queue = ANY(queues))
                ORDER BY q.priority DESC, q.run_at, q.id LIMIT want FOR UPDATE SKIP LOCKED))
            RETURNING t.id, t.tenant, t.job, t.version, t.args, t.attempt, t.max_retries,
                COALESCE(t.root_task, t.id), t.depth, t.lease, NULL::BOOLEAN, NULL::BIGINT, t.run_at,
                t.workflow IS NOT NULL, t.queue;
            GET DIAGNOSTICS got = ROW_COUNT;
            rooms[k] := CASE WHEN got < want THEN 0 ELSE rooms[k] - got END;
            left_over := left_over - got;
            progress := progress OR got > 0;
        END LOOP;
    END LOOP;

    RETURN QUERY SELECT NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::INTEGER, NULL::INTEGER,
        NULL::BIGINT, NULL::INTEGER, NULL::TEXT, was_contended,
        CASE WHEN left_over > 0 THEN (SELECT min(q.run_at) FROM tasks q WHERE q.state IN ('queued', 'retry')
            AND (queues IS NULL OR q.queue = ANY(queues))) END,
        NULL::BIGINT, NULL::BOOLEAN, NULL::TEXT;
END
$$;
