-- Version 12: how many times a task's worker was lost under it (its lease
-- ran out: the node died or hung), so that a task that keeps killing its
-- worker is quarantined (`failure`, reason `poisoned`) instead of being
-- retried until it has killed one worker per retry.
ALTER TABLE tasks ADD COLUMN lost_leases INTEGER NOT NULL DEFAULT 0;
