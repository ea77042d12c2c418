-- Version 19: limits a tenant sets on its queues and jobs (`crate::limits`),
-- read by every claim; and `tasks_groups`, the waiting tasks by queue and
-- job, which the grouped claim walks one group at a time (a limited job's
-- tasks held back by their limit, or another queue's tasks, cost it one
-- look per group, not one per task).
CREATE TABLE queue_limits (
    tenant TEXT NOT NULL,
    queue TEXT NOT NULL,
    max_running INTEGER,
    priority INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, queue)
);
-- `tokens` held at `refilled_at` (ms): the rate's bucket.
CREATE TABLE job_limits (
    tenant TEXT NOT NULL,
    job TEXT NOT NULL,
    max_running INTEGER,
    rate_tasks INTEGER,
    rate_per_ms INTEGER,
    tokens REAL NOT NULL DEFAULT 0,
    refilled_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, job)
);
-- Where a tenant's last claim stopped walking its groups, when it had more
-- than one claim walks (`limits::MAX_WALK`): the next goes on from there.
CREATE TABLE group_cursors (
    tenant TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    job TEXT NOT NULL
);
CREATE INDEX tasks_groups ON tasks (tenant, queue, job, priority DESC, run_at, id) WHERE state IN ('queued', 'retry');
