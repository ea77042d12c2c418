-- Version 20: the claim's plans hold whatever the live partition's
-- statistics say, and are made once per connection.
--
-- `tasks_live` swings from empty to a burst of tasks within seconds; its
-- statistics are those of whenever autovacuum last looked (often an
-- empty partition: no rows on its pages), and a statement without
-- parameters keeps the plan made at its first run (on an idle queue,
-- say) whatever `plan_cache_mode` says. The planner then took a
-- sequential scan of every page, dead rows included, for the claim's look
-- for waiting tenants (seen: each claim read the whole partition twice,
-- and the queue ran at 0.7x its speed after a history of finished tasks).
-- Each of the claim's lookups has an index that bounds it by what it
-- takes (`tasks_claim`, `tasks_groups`, `tasks_running`, `tasks_next`):
-- with sequential scans and sorts off, in these two functions only, the
-- ordered index scans are their only cheap plans, and the shape of their
-- plans does not depend on their parameters or the partition's size
-- (checked: the same index scans, empty or with 1,000,000 tasks analysed,
-- and with the column statistics of a burst but a row count of zero, as
-- autovacuum leaves them after one; with sequential scans off only, a
-- full walk of `tasks_next` and a sort took their place). So their plans
-- are generic, made at a connection's first claims and kept, rather than
-- made for each call's parameters as the store's other statements are
-- (`plan_cache_mode`): planning cost about 0.5 ms of every claim, more
-- than the rest of an idle claim.
--
-- The claim reads and updates `tasks_live` itself rather than `tasks`,
-- whose plans must be pruned to that partition. A claim only moves tasks
-- between live states.
ALTER FUNCTION wasmjob_pick(TEXT, BIGINT, BIGINT, TEXT[]) SET enable_seqscan = off SET enable_sort = off
    SET plan_cache_mode = force_generic_plan;

-- `wasmjob_claim` of version 19, reading `tasks_live`.
CREATE OR REPLACE FUNCTION wasmjob_claim(now BIGINT, node TEXT, lease_until BIGINT, lim INTEGER, tenants TEXT[], maxes BIGINT[],
    queues TEXT[] DEFAULT NULL)
RETURNS TABLE (id BIGINT, tenant TEXT, job TEXT, version TEXT, args TEXT, attempt INTEGER, max_retries INTEGER,
               root_task BIGINT, depth INTEGER, lease TEXT, contended BOOLEAN, next_run_at BIGINT, due_at BIGINT,
               workflow BOOLEAN, queue TEXT, wake_at BIGINT)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT SET enable_seqscan = off SET enable_sort = off
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    waiting TEXT;
    i INTEGER;
    k INTEGER;
    busy BIGINT;
    names TEXT[] := '{}';
    rooms BIGINT[] := '{}';
    grouped BOOLEAN[] := '{}';
    was_contended BOOLEAN := false;
    left_over BIGINT := lim;
    active INTEGER;
    share BIGINT;
    budget BIGINT;
    want BIGINT;
    got BIGINT;
    picked BIGINT[];
    woken BIGINT;
    wake BIGINT;
    progress BOOLEAN := true;
    next_at BIGINT;
BEGIN
    -- Tenants with waiting tasks: a loose index scan of `tasks_claim`.
    FOR waiting IN
        WITH RECURSIVE w(t) AS (
            (SELECT q.tenant FROM tasks_live q WHERE q.state IN ('queued', 'retry') ORDER BY q.tenant LIMIT 1)
            UNION ALL
            SELECT (SELECT q.tenant FROM tasks_live q WHERE q.state IN ('queued', 'retry') AND q.tenant > w.t
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
        SELECT count(*) INTO busy FROM tasks_live q WHERE q.tenant = waiting AND q.state = 'started';
        names := names || waiting;
        rooms := rooms || greatest(maxes[i] - busy, 0);
        grouped := grouped || (queues IS NOT NULL OR EXISTS (SELECT 1 FROM job_limits l WHERE l.tenant = waiting)
                               OR EXISTS (SELECT 1 FROM queue_limits l WHERE l.tenant = waiting));
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
            IF grouped[k] THEN
                SELECT p.ids, p.wake INTO picked, woken FROM wasmjob_pick(names[k], want, now, queues) p;
                wake := least(wake, woken);
                RETURN QUERY
                UPDATE tasks_live t SET state = 'started', attempt = t.attempt + 1, started_at = now,
                    lease = node || ':' || t.id || ':' || (t.attempt + 1), lease_expires_at = lease_until, reason = NULL
                -- `<> 'started'`, not `IN ('queued', 'retry')`: that would
                -- match the partial indexes' predicate, and the planner
                -- walked one of them whole for the picked ids.
                WHERE t.state IN ('queued', 'retry', 'started') AND t.state <> 'started' AND t.id = ANY(picked)
                RETURNING t.id, t.tenant, t.job, t.version, t.args, t.attempt, t.max_retries,
                    COALESCE(t.root_task, t.id), t.depth, t.lease, NULL::BOOLEAN, NULL::BIGINT, t.run_at,
                    t.workflow IS NOT NULL, t.queue, NULL::BIGINT;
            ELSE
                -- The picked ids are an ARRAY(...), which the server computes
                -- once: as `id IN (SELECT ... LIMIT ...)` the planner may run
                -- the subquery once per outer row, and the claim then took
                -- many times its limit (seen: 5,248 started tasks for a claim
                -- of 128, past the tenant's `max_running`). In the UPDATE
                -- itself: one statement per tenant and round.
                RETURN QUERY
                UPDATE tasks_live t SET state = 'started', attempt = t.attempt + 1, started_at = now,
                    lease = node || ':' || t.id || ':' || (t.attempt + 1), lease_expires_at = lease_until, reason = NULL
                WHERE t.state IN ('queued', 'retry', 'started') AND t.id = ANY(ARRAY(
                    SELECT q.id FROM tasks_live q
                    WHERE q.tenant = names[k] AND q.state IN ('queued', 'retry') AND q.run_at <= now
                      AND (q.expires_at IS NULL OR q.expires_at > now)
                    ORDER BY q.priority DESC, q.run_at, q.id LIMIT want FOR UPDATE SKIP LOCKED))
                RETURNING t.id, t.tenant, t.job, t.version, t.args, t.attempt, t.max_retries,
                    COALESCE(t.root_task, t.id), t.depth, t.lease, NULL::BOOLEAN, NULL::BIGINT, t.run_at,
                    t.workflow IS NOT NULL, t.queue, NULL::BIGINT;
            END IF;
            GET DIAGNOSTICS got = ROW_COUNT;
            rooms[k] := CASE WHEN got < want THEN 0 ELSE rooms[k] - got END;
            left_over := left_over - got;
            progress := progress OR got > 0;
        END LOOP;
    END LOOP;

    -- The next due time, if the claim took less than asked: two statements,
    -- as a generic plan of one for both cases walked the whole of
    -- `tasks_groups` for every queue; the named queues' one is planned for
    -- them each time (no index leads with the queue).
    IF left_over > 0 THEN
        IF queues IS NULL THEN
            -- The first by the index, not min(): a generic plan of the
            -- aggregate read every waiting task.
            SELECT q.run_at INTO next_at FROM tasks_live q WHERE q.state IN ('queued', 'retry')
            ORDER BY q.run_at LIMIT 1;
        ELSE
            EXECUTE 'SELECT min(q.run_at) FROM tasks_live q WHERE q.state IN (''queued'', ''retry'') '
                    'AND q.queue = ANY($1)' INTO next_at USING queues;
        END IF;
    END IF;
    RETURN QUERY SELECT NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::INTEGER, NULL::INTEGER,
        NULL::BIGINT, NULL::INTEGER, NULL::TEXT, was_contended, next_at, NULL::BIGINT, NULL::BOOLEAN, NULL::TEXT, wake;
END
$$;
