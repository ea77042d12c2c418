-- Version 8: an insert of tasks notifies `wasmjob_tasks` by itself, in the
-- inserting statement's transaction (delivered at its commit), so that a
-- plain insert is one statement and one round trip, with no explicit
-- transaction around it and no `NOTIFY` after it. A statement that
-- inserts no row (a duplicate) notifies too: a wake-up for nothing, cheaper
-- than a transition table of every row inserted.
CREATE FUNCTION wasmjob_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wasmjob_tasks', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_queued AFTER INSERT ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION wasmjob_notify_queued();
