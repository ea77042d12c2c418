-- Version 13: unique tasks (as SQLite's `schema_v13.sql`, which says why).
-- `task_id` is empty only inside the transaction that takes the key.
CREATE TABLE uniques (
    tenant TEXT NOT NULL,
    job TEXT NOT NULL,
    key TEXT NOT NULL,
    task_id BIGINT,
    until BIGINT NOT NULL,
    PRIMARY KEY (tenant, job, key)
);
CREATE INDEX uniques_until ON uniques (until);
