-- Version 15: children that commit with their parent (as SQLite's
-- `schema_v15.sql`, which says why).
CREATE TABLE pending_children (
    task_id   BIGINT PRIMARY KEY,
    parent_id BIGINT NOT NULL,
    attempt   INTEGER NOT NULL,
    delay     BIGINT NOT NULL,
    expiry    BIGINT
);
CREATE INDEX pending_children_parent ON pending_children (parent_id);
