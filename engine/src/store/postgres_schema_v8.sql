-- Version 8: an insert of tasks notifies `wasmjob_tasks` by itself, in the
-- inserting statement's transaction (delivered at its commit), so that a
-- plain insert is one statement and one round trip, with no explicit
-- transaction around it and no `NOTIFY` after it.
CREATE FUNCTION wasmjob_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('wasmjob_tasks', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_queued AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION wasmjob_notify_queued();
