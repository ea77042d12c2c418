-- Version 2: tenants. Every job, task and schedule belongs to a tenant;
-- what existed before belongs to the tenant `default`.

CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    -- Overrides of the engine's default quotas, as JSON.
    quotas     TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
INSERT INTO tenants (name, created_at) VALUES ('default', 0);

-- Bearer tokens, stored as their SHA-256. `tenant` is NULL for admin tokens.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    tenant     TEXT REFERENCES tenants (name),
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE jobs_v2 (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    hash          TEXT NOT NULL REFERENCES components (hash),
    metadata      TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
INSERT INTO jobs_v2 SELECT 'default', name, hash, metadata, registered_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;

-- Every version each job has had.
CREATE TABLE job_versions (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name, hash)
);
INSERT INTO job_versions SELECT tenant, name, hash, registered_at FROM jobs;

CREATE TABLE schedules_v2 (
    tenant      TEXT NOT NULL,
    job         TEXT NOT NULL,
    last_run_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, job)
);
INSERT INTO schedules_v2 SELECT 'default', job, last_run_at FROM schedules;
DROP TABLE schedules;
ALTER TABLE schedules_v2 RENAME TO schedules;

ALTER TABLE tasks ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
-- Claiming is per tenant, for fairness.
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (tenant, priority DESC, run_at, id) WHERE state IN ('queued', 'retry');
DROP INDEX tasks_overlap;
CREATE UNIQUE INDEX tasks_overlap ON tasks (tenant, job, overlap_key)
    WHERE overlap_key IS NOT NULL AND state IN ('queued', 'retry', 'started');
DROP INDEX tasks_by_job;
CREATE INDEX tasks_by_job ON tasks (tenant, job, id);
CREATE INDEX tasks_by_tenant ON tasks (tenant, id);
