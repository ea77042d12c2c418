-- Version 4 (the SQLite store's version 7): what each task used of the
-- network (`wasi:http`), next to its fuel and wall time.
ALTER TABLE tasks ADD COLUMN http_requests BIGINT;
ALTER TABLE tasks ADD COLUMN http_bytes_sent BIGINT;
ALTER TABLE tasks ADD COLUMN http_bytes_received BIGINT;
