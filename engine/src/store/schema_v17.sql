-- Version 17: workflows (`crate::workflow`). A workflow is its steps, in
-- stages: `workflow_steps` says which task is which step; `tasks.workflow`
-- marks a step's task, so that its ending (which the claim tells the
-- worker of) settles the stages after it in the same write. A step of a
-- later stage waits `queued` with reason `workflow`, never due, until the
-- stage before it succeeded.
CREATE TABLE workflows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE workflow_steps (
    workflow_id INTEGER NOT NULL,
    stage       INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    task_id     INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (workflow_id, stage, position)
);
ALTER TABLE tasks ADD COLUMN workflow INTEGER;
-- The steps waiting for their stage: what the heartbeat's sweep looks at.
CREATE INDEX tasks_waiting_steps ON tasks (workflow) WHERE state = 'queued' AND reason = 'workflow';
