-- Version 6: `tasks_by_state` goes. Nothing reads it but the heartbeat's
-- lease renewal, which `tasks_running` serves as well (few tasks are
-- started), and it cost two index updates at every state change. Pages of
-- tasks are read newest first by id.
DROP INDEX tasks_by_state;
