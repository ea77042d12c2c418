-- Version 4: one truth for a cluster.

-- Schedules keep when they are next due, and which scheduler holds them
-- while it asks the job's `is-due`. `since` (the registration time) stands
-- in for `last_run_at` before the first run.
CREATE TABLE schedules_v4 (
    tenant        TEXT NOT NULL,
    job           TEXT NOT NULL,
    last_run_at   INTEGER,
    since         INTEGER NOT NULL,
    next_due_at   INTEGER NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER,
    PRIMARY KEY (tenant, job)
);
-- `since` is the registration time of the job's current version.
INSERT INTO schedules_v4 (tenant, job, last_run_at, since, next_due_at)
    SELECT s.tenant, s.job, s.last_run_at, COALESCE(j.registered_at, s.last_run_at), 0
    FROM schedules s LEFT JOIN jobs j ON j.tenant = s.tenant AND j.name = s.job;
DROP TABLE schedules;
ALTER TABLE schedules_v4 RENAME TO schedules;
-- Due schedules nobody holds, and held ones whose holder may have died.
CREATE INDEX schedules_due ON schedules (next_due_at) WHERE claimed_until IS NULL;
CREATE INDEX schedules_held ON schedules (claimed_until) WHERE claimed_until IS NOT NULL;

-- A counter per kind of catalog row, bumped by every change: nodes compare
-- it with what their caches were built from.
CREATE TABLE generations (
    kind       TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
INSERT INTO generations VALUES ('jobs', 0), ('tenants', 0), ('tokens', 0);

-- Each tenant's queueing-rate bucket.
CREATE TABLE rates (
    tenant      TEXT PRIMARY KEY,
    tokens      REAL NOT NULL,
    refilled_at INTEGER NOT NULL
);

-- A started task someone asked to revoke: its worker stops it.
ALTER TABLE tasks ADD COLUMN revoke_requested_at INTEGER;
-- On a task queued from outside (a root): how many tasks its tree holds,
-- itself included, so that a fork bomb stops at the tree cap.
ALTER TABLE tasks ADD COLUMN tree_size INTEGER NOT NULL DEFAULT 1;
-- Revoking a whole tree.
CREATE INDEX tasks_by_root ON tasks (root_task) WHERE root_task IS NOT NULL;
-- Running tasks per tenant, counted by every claim for `max_running`.
CREATE INDEX tasks_running ON tasks (tenant) WHERE state = 'started';
