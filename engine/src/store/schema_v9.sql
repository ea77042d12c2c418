-- Version 9: uploads, compiled in the background. One row per tenant and
-- component (its content hash); `state` is compiling, ready or rejected.
CREATE TABLE uploads (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    name TEXT,
    reason TEXT,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX uploads_by_time ON uploads (tenant, updated_at);
