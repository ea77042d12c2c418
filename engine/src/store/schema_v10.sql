-- Version 10: tasks held until their job's upload compiles. A held task is
-- a `tasks` row, `queued` with reason `compiling` and never due
-- (`HELD_RUN_AT`); its queue request's options wait here until the upload
-- ends, when the task is settled with its job's defaults, or fails.
CREATE TABLE held_tasks (
    task_id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    version TEXT NOT NULL,
    options TEXT NOT NULL
);
CREATE INDEX held_by_version ON held_tasks (tenant, version);

-- Worker nodes (`seen_at`: their last heartbeat) and the versions each has
-- compiled, to count the nodes ready to run a version.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE node_versions (
    node TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (version, node)
) WITHOUT ROWID;
