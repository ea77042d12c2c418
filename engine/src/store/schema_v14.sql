-- Version 14: schedules made as data (`plan::Plan`), beside periodic jobs'
-- own. A periodic job's schedule has the name '' and no plan; a tenant's
-- named schedule has its name (unique within the tenant) and its plan as
-- JSON: what it queues and when. Both are claimed and ticked alike.
CREATE TABLE schedules_v14 (
    tenant        TEXT NOT NULL,
    job           TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    plan          TEXT,
    last_run_at   INTEGER,
    since         INTEGER NOT NULL,
    next_due_at   INTEGER NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER,
    PRIMARY KEY (tenant, job, name)
);
INSERT INTO schedules_v14 (tenant, job, last_run_at, since, next_due_at, claimed_by, claimed_until)
    SELECT tenant, job, last_run_at, since, next_due_at, claimed_by, claimed_until FROM schedules;
DROP TABLE schedules;
ALTER TABLE schedules_v14 RENAME TO schedules;
CREATE INDEX schedules_due ON schedules (next_due_at) WHERE claimed_until IS NULL;
CREATE INDEX schedules_held ON schedules (claimed_until) WHERE claimed_until IS NOT NULL;
CREATE UNIQUE INDEX schedules_named ON schedules (tenant, name) WHERE name <> '';
