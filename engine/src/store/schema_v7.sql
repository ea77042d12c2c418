-- Version 7: what each task used of the network (`wasi:http`), next to its
-- fuel and wall time.
ALTER TABLE tasks ADD COLUMN http_requests INTEGER;
ALTER TABLE tasks ADD COLUMN http_bytes_sent INTEGER;
ALTER TABLE tasks ADD COLUMN http_bytes_received INTEGER;
