-- Version 17: workflows (as SQLite's `schema_v17.sql`, which says why).
CREATE TABLE workflows (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE workflow_steps (
    workflow_id BIGINT NOT NULL,
    stage       INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    task_id     BIGINT NOT NULL UNIQUE,
    PRIMARY KEY (workflow_id, stage, position)
);
ALTER TABLE tasks ADD COLUMN workflow BIGINT;
CREATE INDEX tasks_waiting_steps ON tasks_live (workflow) WHERE state = 'queued' AND reason = 'workflow';

