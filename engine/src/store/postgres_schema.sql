-- wasmjob's PostgreSQL schema, version 1 (the SQLite store's version 2).
-- Times are milliseconds since the epoch.

CREATE TABLE components (
    hash  TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);

CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    quotas     TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
INSERT INTO tenants (name, created_at) VALUES ('default', 0);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    tenant     TEXT REFERENCES tenants (name),
    scope      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE jobs (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    hash          TEXT NOT NULL REFERENCES components (hash),
    metadata      TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE job_versions (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name, hash)
);

CREATE TABLE schedules (
    tenant      TEXT NOT NULL,
    job         TEXT NOT NULL,
    last_run_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, job)
);

CREATE TABLE tasks (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           TEXT NOT NULL,
    job              TEXT NOT NULL,
    version          TEXT NOT NULL,
    args             TEXT NOT NULL,
    state            TEXT NOT NULL,
    reason           TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    queued_at        BIGINT NOT NULL,
    run_at           BIGINT NOT NULL,
    expires_at       BIGINT,
    started_at       BIGINT,
    finished_at      BIGINT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    lease            TEXT,
    lease_expires_at BIGINT,
    result           TEXT,
    error            TEXT,
    fuel             BIGINT,
    wall_time_us     BIGINT,
    log              TEXT,
    from_task        BIGINT,
    root_task        BIGINT,
    depth            INTEGER NOT NULL DEFAULT 0,
    overlap_key      TEXT,
    -- The lease of the last attempt that was rescued (its worker died).
    rescued_lease    TEXT
);

CREATE INDEX tasks_claim ON tasks (tenant, priority DESC, run_at, id) WHERE state IN ('queued', 'retry');
CREATE INDEX tasks_next ON tasks (run_at) WHERE state IN ('queued', 'retry');
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE state = 'queued' AND expires_at IS NOT NULL;
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state = 'started';
CREATE UNIQUE INDEX tasks_overlap ON tasks (tenant, job, overlap_key)
    WHERE overlap_key IS NOT NULL AND state IN ('queued', 'retry', 'started');
CREATE INDEX tasks_by_job ON tasks (tenant, job, id);
CREATE INDEX tasks_by_tenant ON tasks (tenant, id);
CREATE INDEX tasks_by_state ON tasks (state, id);
CREATE INDEX tasks_by_parent ON tasks (from_task) WHERE from_task IS NOT NULL;
