-- Version 12: how many times a task's worker was lost under it (as
-- SQLite's `schema_v12.sql`, which says why).
ALTER TABLE tasks ADD COLUMN lost_leases INTEGER NOT NULL DEFAULT 0;
