-- Version 14: schedules made as data (as SQLite's `schema_v14.sql`, which
-- says why): a name ('' for a periodic job's own schedule) and a plan.
ALTER TABLE schedules ADD COLUMN name TEXT NOT NULL DEFAULT '', ADD COLUMN plan TEXT;
DO $$
DECLARE
    key TEXT;
BEGIN
    SELECT conname INTO key FROM pg_constraint WHERE conrelid = 'schedules'::regclass AND contype = 'p';
    EXECUTE format('ALTER TABLE schedules DROP CONSTRAINT %I', key);
END
$$;
ALTER TABLE schedules ADD PRIMARY KEY (tenant, job, name);
CREATE UNIQUE INDEX schedules_named ON schedules (tenant, name) WHERE name <> '';
