-- Version 13: unique tasks. A task queued with `unique_for` holds its job's
-- key (the hash of its args) until `until`; another insert with the key
-- before then answers the holder's id, whatever became of that task. Rows
-- past their time are overwritten by the next holder, or pruned.
CREATE TABLE uniques (
    tenant TEXT NOT NULL,
    job TEXT NOT NULL,
    key TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (tenant, job, key)
) WITHOUT ROWID;
CREATE INDEX uniques_until ON uniques (until);
