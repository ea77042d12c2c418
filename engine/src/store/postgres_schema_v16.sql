-- Version 16: a running task's last progress report (as SQLite's
-- `schema_v16.sql`).
ALTER TABLE tasks ADD COLUMN progress TEXT;
