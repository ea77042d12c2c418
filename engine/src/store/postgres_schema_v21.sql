-- Version 21: an insert's notification names the node that made it, as
-- the setting `wasmjob.node` of the inserting connection (each node sets
-- it on its own), so that the node, which wakes its own workers as it
-- inserts, does not claim a second time on the echo of its own insert
-- (on an idle queue, one empty claim per task). Other nodes wake as
-- before. An insert by a connection without the setting (another client)
-- notifies with an empty payload, which wakes every node.
CREATE OR REPLACE FUNCTION wasmjob_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wasmjob_tasks', coalesce(current_setting('wasmjob.node', true), ''));
    RETURN NULL;
END
$$;
