-- Version 18: named queues. A task goes to a queue (`default` unless its
-- request names one); a node claims from every queue, or from those
-- `wasmjob serve --queues` names.
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
