-- Version 16: a running task's last progress report (the `progress`
-- import of contract 0.3.0), as JSON: `{"fraction", "message"}`.
ALTER TABLE tasks ADD COLUMN progress TEXT;
