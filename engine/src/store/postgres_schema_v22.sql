-- Version 22: the grouped claim (of a tenant with limits, and of every
-- tenant for a node serving only some queues) reads nothing of other
-- queues' tasks, nor every task of a group, whatever the statistics say.
-- Seen with 200,000 tasks of one job waiting in `default`, the claim of a
-- node serving `emails` took 95 ms with no task of its own waiting, and
-- 300 ms with three (in two groups); now about 1 ms. Three causes:
--
-- * Its next due time was `min(run_at)` of the waiting tasks of those
--   queues, planned for each call: no index leads with the queue, so it
--   read every waiting task of every queue. It is now a loose scan of
--   `tasks_groups`, one entry per tenant, queue, job and priority.
-- * The look at a group's heads read every waiting task of the tenant,
--   below (`wasmjob_pick`).
-- * Both functions now run without JIT compiling: with sorts off, a sort
--   they cannot avoid (the pick's heads, a few) costs more than any JIT
--   threshold, and the server compiled it at every call (seen: 97 ms of a
--   pick's 100).

-- `wasmjob_pick` of version 19 with the settings of version 20, whose
-- look at a group's heads (and the next due time's walk below) names the
-- group's job as a range, and sorts by it first. With the job equal to a
-- parameter, `tasks_claim` (the tenant's tasks in claim order, filtered by
-- queue and job) and `tasks_groups` (the group's own tasks, in that order)
-- both give the order asked for, and a generic plan weighs them by the
-- statistics of the day: with most tasks of one queue and one job, it
-- took `tasks_claim` and read every waiting task of the tenant for each
-- group (seen: 90 ms per group, 200,000 tasks waiting in one group, none
-- in the queue served). As a range, only `tasks_groups` gives that order.
CREATE OR REPLACE FUNCTION wasmjob_pick(t TEXT, want BIGINT, now BIGINT, queues TEXT[])
RETURNS TABLE (ids BIGINT[], wake BIGINT)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT SET enable_seqscan = off SET enable_sort = off
    SET plan_cache_mode = force_generic_plan SET jit = off AS $$
DECLARE
    l RECORD;
    h RECORD;
    have DOUBLE PRECISION;
    room BIGINT;
    taken BIGINT;
    k INTEGER;
    j INTEGER;
    served TEXT;
    gq TEXT;
    gj TEXT;
    nq TEXT;
    nj TEXT;
    cq TEXT;
    cj TEXT;
    wrapped BOOLEAN;
    truncated BOOLEAN := false;
    walked INTEGER := 0;
    busy_jobs TEXT[];
    busy_job_counts BIGINT[];
    busy_queues TEXT[];
    busy_queue_counts BIGINT[];
    job_names TEXT[] := '{}';
    job_rooms BIGINT[] := '{}';
    job_tokens DOUBLE PRECISION[] := '{}';
    job_rates BIGINT[] := '{}';
    job_pers BIGINT[] := '{}';
    job_taken BIGINT[] := '{}';
    job_behind BOOLEAN[] := '{}';
    queue_names TEXT[] := '{}';
    queue_rooms BIGINT[] := '{}';
    queue_ranks INTEGER[] := '{}';
    head_ids BIGINT[] := '{}';
    head_jobs TEXT[] := '{}';
    head_queues TEXT[] := '{}';
    head_ranks INTEGER[] := '{}';
    head_prios INTEGER[] := '{}';
    head_runs BIGINT[] := '{}';
BEGIN
    ids := '{}';
    -- The tenant's started tasks by job and by queue: one look at them.
    SELECT array_agg(b.job), array_agg(b.n) INTO busy_jobs, busy_job_counts
    FROM (SELECT q.job, count(*) AS n FROM tasks q WHERE q.tenant = t AND q.state = 'started' GROUP BY q.job) b;
    SELECT array_agg(b.queue), array_agg(b.n) INTO busy_queues, busy_queue_counts
    FROM (SELECT q.queue, count(*) AS n FROM tasks q WHERE q.tenant = t AND q.state = 'started' GROUP BY q.queue) b;
    FOR l IN SELECT * FROM job_limits x WHERE x.tenant = t LOOP
        room := CASE WHEN l.max_running IS NULL THEN want
                     ELSE greatest(l.max_running - COALESCE(busy_job_counts[array_position(busy_jobs, l.job)], 0), 0) END;
        have := NULL;
        IF l.rate_tasks IS NOT NULL THEN
            have := least(l.rate_tasks::DOUBLE PRECISION,
                          l.tokens + greatest(now - l.refilled_at, 0)::DOUBLE PRECISION * l.rate_tasks / l.rate_per_ms);
            room := least(room, greatest(floor(have + 1e-9), 0)::BIGINT);
        END IF;
        job_names := job_names || l.job;
        job_rooms := job_rooms || room;
        job_tokens := job_tokens || have;
        job_rates := job_rates || l.rate_tasks;
        job_pers := job_pers || l.rate_per_ms;
        job_taken := job_taken || 0::BIGINT;
        job_behind := job_behind || false;
    END LOOP;
    FOR l IN SELECT * FROM queue_limits x WHERE x.tenant = t LOOP
        queue_names := queue_names || l.queue;
        queue_rooms := queue_rooms || CASE WHEN l.max_running IS NULL THEN want
            ELSE greatest(l.max_running - COALESCE(busy_queue_counts[array_position(busy_queues, l.queue)], 0), 0) END;
        queue_ranks := queue_ranks || l.priority;
    END LOOP;

    -- The groups, a loose scan of `tasks_groups`: of each queue served (as
    -- many as it has jobs waiting), or of every queue, at most 256 groups
    -- (`limits::MAX_WALK`) from where the last claim stopped, wrapping
    -- around; each group's due heads within its room, and one more to know
    -- whether one is left behind.
    SELECT c.queue, c.job INTO cq, cj FROM group_cursors c WHERE c.tenant = t;
    FOR served IN SELECT unnest(COALESCE(queues, ARRAY[NULL::TEXT])) LOOP
        gq := COALESCE(served, cq, '');
        gj := CASE WHEN served IS NULL THEN COALESCE(cj, '') ELSE '' END;
        wrapped := cq IS NULL;
        LOOP
            IF served IS NULL THEN
                SELECT q.queue, q.job INTO nq, nj FROM tasks q
                WHERE q.tenant = t AND q.state IN ('queued', 'retry') AND (q.queue, q.job) > (gq, gj)
                ORDER BY q.queue, q.job LIMIT 1;
                IF NOT FOUND THEN
                    EXIT WHEN wrapped;
                    wrapped := true;
                    gq := '';
                    gj := '';
                    CONTINUE;
                END IF;
                EXIT WHEN wrapped AND cq IS NOT NULL AND (nq, nj) > (cq, cj);
                walked := walked + 1;
            ELSE
                SELECT q.queue, q.job INTO nq, nj FROM tasks q
                WHERE q.tenant = t AND q.state IN ('queued', 'retry') AND q.queue = served AND q.job > gj
                ORDER BY q.queue, q.job LIMIT 1;
                EXIT WHEN NOT FOUND;
            END IF;
            gq := nq;
            gj := nj;
            k := array_position(queue_names, gq);
            j := array_position(job_names, gj);
            room := least(want, COALESCE(queue_rooms[k], want), COALESCE(job_rooms[j], want));
            taken := 0;
            -- The job as a range, and first in the order: see above.
            FOR h IN SELECT q.id, q.priority, q.run_at FROM tasks_live q
                     WHERE q.tenant = t AND q.queue = gq AND q.job >= gj AND q.job <= gj
                       AND q.state IN ('queued', 'retry')
                       AND q.run_at <= now AND (q.expires_at IS NULL OR q.expires_at > now)
                     ORDER BY q.job, q.priority DESC, q.run_at, q.id LIMIT room + 1 LOOP
                IF taken = room THEN
                    IF j IS NOT NULL THEN job_behind[j] := true; END IF;
                    EXIT;
                END IF;
                head_ids := head_ids || h.id;
                head_jobs := head_jobs || gj;
                head_queues := head_queues || gq;
                head_ranks := head_ranks || COALESCE(queue_ranks[k], 0);
                head_prios := head_prios || h.priority;
                head_runs := head_runs || h.run_at;
                taken := taken + 1;
            END LOOP;
            IF served IS NULL AND walked >= 256 THEN
                INSERT INTO group_cursors (tenant, queue, job) VALUES (t, gq, gj)
                ON CONFLICT (tenant) DO UPDATE SET queue = excluded.queue, job = excluded.job;
                truncated := true;
                EXIT;
            END IF;
        END LOOP;
        IF served IS NULL AND NOT truncated AND cq IS NOT NULL THEN
            DELETE FROM group_cursors c WHERE c.tenant = t;
        END IF;
    END LOOP;

    -- The pick: in claim order, each while its job and queue have room.
    FOR h IN SELECT * FROM unnest(head_ids, head_jobs, head_queues, head_ranks, head_prios, head_runs)
                 AS u(id, job, queue, rank, priority, run_at)
             ORDER BY u.rank DESC, u.priority DESC, u.run_at, u.id LOOP
        k := array_position(queue_names, h.queue);
        j := array_position(job_names, h.job);
        IF cardinality(ids) >= want OR COALESCE(queue_rooms[k], 1) <= 0 OR COALESCE(job_rooms[j], 1) <= 0 THEN
            IF j IS NOT NULL THEN job_behind[j] := true; END IF;
            CONTINUE;
        END IF;
        IF k IS NOT NULL THEN queue_rooms[k] := queue_rooms[k] - 1; END IF;
        IF j IS NOT NULL THEN
            job_rooms[j] := job_rooms[j] - 1;
            job_taken[j] := job_taken[j] + 1;
        END IF;
        ids := ids || h.id;
    END LOOP;
    -- The picked, locked: a revoke meanwhile (the heads were read without
    -- locks) has it left out here, and spends no token.
    IF cardinality(ids) > 0 AND EXISTS (SELECT 1 FROM unnest(job_rates) r WHERE r IS NOT NULL) THEN
        ids := ARRAY(SELECT x.id FROM tasks x WHERE x.id = ANY(ids) AND x.state IN ('queued', 'retry')
                     ORDER BY x.id FOR UPDATE);
        FOR j IN 1 .. coalesce(array_length(job_names, 1), 0) LOOP
            CONTINUE WHEN job_rates[j] IS NULL OR job_taken[j] = 0;
            SELECT count(*) INTO taken FROM tasks x WHERE x.id = ANY(ids) AND x.job = job_names[j];
            job_taken[j] := taken;
        END LOOP;
    END IF;

    -- The tokens taken (refilled in the statement itself: limits set since
    -- they were read are not undone), and when a job with a due task left
    -- behind gets its next token, if its bucket is not full.
    FOR j IN 1 .. coalesce(array_length(job_names, 1), 0) LOOP
        CONTINUE WHEN job_rates[j] IS NULL;
        IF job_taken[j] > 0 THEN
            UPDATE job_limits x SET
                tokens = least(x.rate_tasks::DOUBLE PRECISION,
                               x.tokens + greatest(now - x.refilled_at, 0)::DOUBLE PRECISION * x.rate_tasks / x.rate_per_ms)
                         - job_taken[j],
                refilled_at = greatest(x.refilled_at, now)
            WHERE x.tenant = t AND x.job = job_names[j] AND x.rate_tasks IS NOT NULL;
        END IF;
        have := job_tokens[j] - job_taken[j];
        IF job_behind[j] AND floor(have + 1e-9) < job_rates[j] THEN
            wake := least(wake, now + greatest(ceil(((floor(have + 1e-9) + 1) - have) * job_pers[j] / job_rates[j]), 1)::BIGINT);
        END IF;
    END LOOP;
    RETURN NEXT;
END
$$;

-- `wasmjob_claim` of version 20, with the next due time of named queues
-- found as said above.
CREATE OR REPLACE FUNCTION wasmjob_claim(now BIGINT, node TEXT, lease_until BIGINT, lim INTEGER, tenants TEXT[], maxes BIGINT[],
    queues TEXT[] DEFAULT NULL)
RETURNS TABLE (id BIGINT, tenant TEXT, job TEXT, version TEXT, args TEXT, attempt INTEGER, max_retries INTEGER,
               root_task BIGINT, depth INTEGER, lease TEXT, contended BOOLEAN, next_run_at BIGINT, due_at BIGINT,
               workflow BOOLEAN, queue TEXT, wake_at BIGINT)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT SET enable_seqscan = off SET enable_sort = off
    SET plan_cache_mode = force_generic_plan SET jit = off AS $$
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
    known TEXT[] := '{}';
    owner TEXT;
    sq TEXT;
    gj TEXT;
    nj TEXT;
    below BIGINT;
    np INTEGER;
    nr BIGINT;
    walked INTEGER := 0;
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
        known := known || waiting;
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

    -- The next due time, if the claim took less than asked.
    IF left_over > 0 THEN
        IF queues IS NULL THEN
            -- The first by the index, not min(): a generic plan of the
            -- aggregate read every waiting task.
            SELECT q.run_at INTO next_at FROM tasks_live q WHERE q.state IN ('queued', 'retry')
            ORDER BY q.run_at LIMIT 1;
        ELSE
            -- Of the queues served, by a loose scan of `tasks_groups`: of
            -- each tenant this node knows with tasks waiting, each queue
            -- served, each job and each priority, the earliest; at most
            -- 256 of those per tenant (`limits::MAX_WALK`), the earliest
            -- of them if it has more; done at a time already due (the
            -- worker waits for room then, not for a time). Never a read of
            -- other queues' tasks, nor of every task of a group (a backlog
            -- held back by a limit).
            <<walk>>
            FOREACH owner IN ARRAY known LOOP
                walked := 0;
                <<served>>
                FOREACH sq IN ARRAY queues LOOP
                    gj := '';
                    LOOP
                        SELECT q.job INTO nj FROM tasks_live q
                        WHERE q.tenant = owner AND q.state IN ('queued', 'retry') AND q.queue = sq AND q.job > gj
                        ORDER BY q.job LIMIT 1;
                        EXIT WHEN NOT FOUND;
                        gj := nj;
                        below := 2147483648;
                        LOOP
                            SELECT q.priority, q.run_at INTO np, nr FROM tasks_live q
                            WHERE q.tenant = owner AND q.state IN ('queued', 'retry') AND q.queue = sq
                              AND q.job >= gj AND q.job <= gj AND q.priority < below
                            ORDER BY q.job, q.priority DESC, q.run_at LIMIT 1;
                            EXIT WHEN NOT FOUND;
                            next_at := least(next_at, nr);
                            EXIT walk WHEN nr <= now;
                            below := np;
                            walked := walked + 1;
                            EXIT served WHEN walked >= 256;
                        END LOOP;
                    END LOOP;
                END LOOP;
            END LOOP;
        END IF;
    END IF;
    RETURN QUERY SELECT NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::INTEGER, NULL::INTEGER,
        NULL::BIGINT, NULL::INTEGER, NULL::TEXT, was_contended, next_at, NULL::BIGINT, NULL::BOOLEAN, NULL::TEXT, wake;
END
$$;
