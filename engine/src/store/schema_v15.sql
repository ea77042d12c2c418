-- Version 15: children that commit with their parent. A task queued by a
-- running attempt is written `queued` with reason `parent` and never due
-- (`HELD_RUN_AT`, no expiry); its row here says whose attempt queued it and
-- its delay and expiry, counted from its release. When that attempt ends in
-- success the children are released (due after their delay); when it ends
-- otherwise (a retry, a failure, a revoke, a lost worker) they are
-- revoked with reason `discarded`. Rows go when their child is settled.
CREATE TABLE pending_children (
    task_id   INTEGER PRIMARY KEY,
    parent_id INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    delay     INTEGER NOT NULL,
    expiry    INTEGER
);
CREATE INDEX pending_children_parent ON pending_children (parent_id);
