-- Version 10: `tasks` is partitioned by state into the live tasks
-- (`tasks_live`: queued, retry, started) and the finished ones
-- (`tasks_done`: success, failure, revoked), each with only the indexes
-- its queries need. A task's ending moves its row from one to the other
-- (PostgreSQL's row movement: a delete and an insert).
--
-- Why: every state change of an unpartitioned row wrote an entry into
-- each of its eleven indexes, and the claims and endings worked on a table
-- and indexes that grew with every task ever finished (measured: 500,000
-- finished tasks cut the burn-down rate to a third). Now the queue's hot
-- statements touch a table that holds only live tasks, whatever the
-- history; the history is written once, at the end, append-mostly.
--
-- A statement that updates or locks a row that another transaction has
-- just moved between the partitions fails with a serialization failure
-- (SQLSTATE 40001) instead of skipping it: the store runs such statements
-- again (`PostgresStore::query`).

DROP TRIGGER tasks_notify_queued ON tasks;
ALTER TABLE tasks RENAME TO tasks_v9;
-- The same columns, defaults and identity; no indexes (each partition
-- gets its own below, once the old table and its index names are gone).
CREATE TABLE tasks (LIKE tasks_v9 INCLUDING DEFAULTS INCLUDING IDENTITY) PARTITION BY LIST (state);

CREATE TABLE tasks_live PARTITION OF tasks FOR VALUES IN ('queued', 'retry', 'started');
CREATE TABLE tasks_done PARTITION OF tasks FOR VALUES IN ('success', 'failure', 'revoked');

INSERT INTO tasks OVERRIDING SYSTEM VALUE SELECT * FROM tasks_v9;
SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT max(id) FROM tasks_v9)) WHERE EXISTS (SELECT 1 FROM tasks_v9);
DROP TABLE tasks_v9;

-- The live tasks churn: every task is inserted, updated and moved out
-- within seconds, and each claim scans past the index entries of the
-- tasks claimed before it until a vacuum removes them. Autovacuum visits
-- this partition on every round (`autovacuum_naptime`, a minute by
-- default) in which 5,000 of its rows changed, without cost delays; by
-- default it would wait for a fifth of the table to be dead.
ALTER TABLE tasks_live SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000, autovacuum_vacuum_cost_delay = 0);

-- Live tasks: claims, due times, expiry, overlap, leases, trees.
CREATE UNIQUE INDEX tasks_live_id ON tasks_live (id);
CREATE INDEX tasks_claim ON tasks_live (tenant, priority DESC, run_at, id) WHERE state IN ('queued', 'retry');
CREATE INDEX tasks_next ON tasks_live (run_at) WHERE state IN ('queued', 'retry');
CREATE INDEX tasks_expiry ON tasks_live (expires_at) WHERE state = 'queued' AND expires_at IS NOT NULL;
CREATE UNIQUE INDEX tasks_overlap ON tasks_live (tenant, job, overlap_key) WHERE overlap_key IS NOT NULL;
CREATE INDEX tasks_running ON tasks_live (tenant) WHERE state = 'started';
CREATE INDEX tasks_live_by_root ON tasks_live (root_task) WHERE root_task IS NOT NULL;
CREATE INDEX tasks_live_by_parent ON tasks_live (from_task) WHERE from_task IS NOT NULL;

-- Finished tasks: the history, read by id, tenant, job, state and tree.
CREATE UNIQUE INDEX tasks_done_id ON tasks_done (id);
CREATE INDEX tasks_by_job ON tasks_done (tenant, job, id);
CREATE INDEX tasks_by_tenant ON tasks_done (tenant, id);
CREATE INDEX tasks_by_state ON tasks_done (state, id);
CREATE INDEX tasks_done_by_root ON tasks_done (root_task) WHERE root_task IS NOT NULL;
CREATE INDEX tasks_done_by_parent ON tasks_done (from_task) WHERE from_task IS NOT NULL;

-- The trigger of version 8, on the new table (a statement inserting
-- through `tasks` fires the statement triggers of `tasks`, not of the
-- partition its rows go to).
CREATE TRIGGER tasks_notify_queued AFTER INSERT ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION wasmjob_notify_queued();

-- `wasmjob_claim` of version 6, its UPDATE limited to the live tasks, so
-- that the plan leaves `tasks_done` out. By the partition's bound, not by
-- the picked tasks' states (queued or retry): that would match the
-- predicate of `tasks_next`, and on stale statistics the planner ANDs a
-- scan of all of it with the ids (seen: 9 ms per claim at 100,000 queued).
CREATE OR REPLACE FUNCTION wasmjob_claim(now BIGINT, node TEXT, lease_until BIGINT, lim INTEGER, tenants TEXT[], maxes BIGINT[])
RETURNS TABLE (id BIGINT, tenant TEXT, job TEXT, version TEXT, args TEXT, attempt INTEGER, max_retries INTEGER,
               root_task BIGINT, depth INTEGER, lease TEXT, contended BOOLEAN, next_run_at BIGINT)
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
                ORDER BY q.priority DESC, q.run_at, q.id LIMIT want FOR UPDATE SKIP LOCKED))
            RETURNING t.id, t.tenant, t.job, t.version, t.args, t.attempt, t.max_retries,
                COALESCE(t.root_task, t.id), t.depth, t.lease, NULL::BOOLEAN, NULL::BIGINT;
            GET DIAGNOSTICS got = ROW_COUNT;
            rooms[k] := CASE WHEN got < want THEN 0 ELSE rooms[k] - got END;
            left_over := left_over - got;
            progress := progress OR got > 0;
        END LOOP;
    END LOOP;

    RETURN QUERY SELECT NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::INTEGER, NULL::INTEGER,
        NULL::BIGINT, NULL::INTEGER, NULL::TEXT, was_contended,
        CASE WHEN left_over > 0 THEN (SELECT min(q.run_at) FROM tasks q WHERE q.state IN ('queued', 'retry')) END;
END
$$;
