-- wasmjob's SQLite schema, version 1. Times are milliseconds since the epoch.

CREATE TABLE components (
    hash  TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);

-- The current version of each job.
CREATE TABLE jobs (
    name          TEXT PRIMARY KEY,
    hash          TEXT NOT NULL REFERENCES components (hash),
    metadata      TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY,
    job              TEXT NOT NULL,
    version          TEXT NOT NULL,
    args             TEXT NOT NULL,
    state            TEXT NOT NULL,
    reason           TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    queued_at        INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    expires_at       INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    lease            TEXT,
    lease_expires_at INTEGER,
    result           TEXT,
    error            TEXT,
    fuel             INTEGER,
    wall_time_us     INTEGER,
    log              TEXT,
    from_task        INTEGER,
    root_task        INTEGER,
    depth            INTEGER NOT NULL DEFAULT 0,
    overlap_key      TEXT
);

-- Claiming: due tasks by priority, then age. Partial, so finished tasks
-- (the bulk of a long history) cost the claim nothing.
CREATE INDEX tasks_claim ON tasks (priority DESC, run_at, id) WHERE state IN ('queued', 'retry');
-- When the next waiting task is due.
CREATE INDEX tasks_next ON tasks (run_at) WHERE state IN ('queued', 'retry');
-- Expiry of tasks that have not started.
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE state = 'queued' AND expires_at IS NOT NULL;
-- The lease sweep.
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state = 'started';
-- The overlap lock: one live task per job and key.
CREATE UNIQUE INDEX tasks_overlap ON tasks (job, overlap_key)
    WHERE overlap_key IS NOT NULL AND state IN ('queued', 'retry', 'started');
-- Listing.
CREATE INDEX tasks_by_job ON tasks (job, id);
CREATE INDEX tasks_by_state ON tasks (state, id);
CREATE INDEX tasks_by_parent ON tasks (from_task) WHERE from_task IS NOT NULL;

-- The periodic scheduler's memory.
CREATE TABLE schedules (
    job         TEXT PRIMARY KEY,
    last_run_at INTEGER NOT NULL
);
