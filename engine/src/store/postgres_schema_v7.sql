-- Version 7 (the SQLite store's version 9): uploads, compiled in the
-- background. One row per tenant and component (its content hash); `state`
-- is compiling, ready or rejected.
CREATE TABLE uploads (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    name TEXT,
    reason TEXT,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX uploads_by_time ON uploads (tenant, updated_at);
