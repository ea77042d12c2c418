-- Version 11: every attempt of a task, and the per-minute activity that
-- the console charts.
--
-- A task's row holds its last attempt. An attempt that did not end the
-- task (it asked for a retry, its worker died, or the task was retried by
-- hand after it failed) is kept here when the next one is decided, with
-- what the row held of it. Written only then: a task that succeeds at
-- once costs nothing here. Deleted with its task (retention).
CREATE TABLE attempts (
    task_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    -- The lease it ran under (`node:task:attempt`).
    lease TEXT,
    started_at INTEGER,
    finished_at INTEGER NOT NULL,
    -- The task's state it left: retry, failure or revoked.
    state TEXT NOT NULL,
    reason TEXT,
    error TEXT,
    fuel INTEGER,
    wall_time_us INTEGER,
    -- The end of its log (`store::ATTEMPT_LOG_KEPT`).
    log TEXT,
    http_requests INTEGER,
    http_bytes_sent INTEGER,
    http_bytes_received INTEGER,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

-- What each node saw happen per minute, tenant and job: tasks started
-- (with a histogram of how long they waited once due) and ended, fuel and
-- wall time. Each node writes only its own rows (`node`: its id and
-- incarnation), whole; readers add the nodes up.
CREATE TABLE activity (
    tenant TEXT NOT NULL,
    minute INTEGER NOT NULL,
    job TEXT NOT NULL,
    node TEXT NOT NULL,
    started INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    retried INTEGER NOT NULL,
    revoked INTEGER NOT NULL,
    fuel INTEGER NOT NULL,
    wall_time_us INTEGER NOT NULL,
    -- Counts per bucket of `activity::WAIT_BUCKETS_MS`, a JSON array.
    waits TEXT NOT NULL,
    PRIMARY KEY (tenant, minute, job, node)
) WITHOUT ROWID;
CREATE INDEX activity_by_minute ON activity (minute);

-- Pages of a tenant's failed or revoked tasks, newest first, without
-- walking its successes (at 1,000,000 tasks). Partial: a task enters one
-- only when it ends so, so the queue's hot path writes neither.
CREATE INDEX tasks_failed ON tasks (tenant, id) WHERE state = 'failure';
CREATE INDEX tasks_revoked ON tasks (tenant, id) WHERE state = 'revoked';
