-- Version 5 (the SQLite store's version 8): each tenant's named secrets,
-- write-only through the API; a task reads the values of the names its job
-- declares.
CREATE TABLE secrets (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
