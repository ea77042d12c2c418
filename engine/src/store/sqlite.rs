//! The embedded default store: one SQLite file in WAL mode.
//!
//! Locking strategy: a single writer thread owns the connection and applies
//! every operation in *group commit*: it takes all the operations waiting in
//! its channel (up to [`MAX_BATCH`]), runs each inside a savepoint of one
//! transaction, commits once, and only then answers the callers. Claims and
//! completions from many workers thus share one commit (a lone operation
//! needs no savepoint: its failure rolls the transaction back). Claiming uses a
//! partial index on due tasks, so its cost stays flat however long the
//! history of finished tasks grows. Hot statements name their index
//! (`INDEXED BY`): without statistics SQLite may prefer the index on `state`
//! and scan every queued task.
//!
//! Durability: WAL with `synchronous = NORMAL` by default survives the
//! process being killed at any point; [`Durability::Full`] also survives
//! power loss, at the cost of an fsync per commit (amortised by the group
//! commit).
//!
//! Checkpoints: the writer does not copy the WAL back into the database
//! itself; once the WAL holds [`CHECKPOINT_PAGES`], a checkpointer thread
//! with its own connection does, without blocking the writer. Should it
//! fall behind, the writer checkpoints at [`WRITER_CHECKPOINT_PAGES`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::fair::FairShares;
use crate::limits::{self, Head, JobLimits, QueueLimits, Rate, Rooms};
use tokio::sync::oneshot;

use super::{
    ACTIVITY_COLUMNS, ATTEMPT_COLUMNS, ATTEMPT_LOG_KEPT, ActivityRow, Aged, AttemptRecord, Claim, ClaimRequest,
    ClaimedSchedules, ClaimedTask, Completion, Expired, Generations, HELD_RUN_AT, HeldLease, HeldTask, Inserted,
    InsertedWorkflow, JobRow, LimitRows, Millis, NewTask, PENDING_REASON, Rescued, Retried, RevokeScope, RevokedMany,
    ScheduleClaim, ScheduleRow, ScheduleTick, Settle, Store, StoreError, TaskFilter, TaskRecord, TaskState, TenantRow,
    TickWrite, TokenRow, Tokens, UploadRow, UploadState, WORKFLOW_REASON,
};

/// Most operations committed together.
const MAX_BATCH: usize = 4096;
/// WAL pages after which the checkpointer copies the WAL into the database
/// (SQLite's own default for its automatic checkpoint). 1,000 pages.
const CHECKPOINT_PAGES: i32 = 1000;
/// WAL pages after which the writer checkpoints itself, should the
/// checkpointer fall behind: bounds the WAL at about 64 MiB. 16,000 pages.
const WRITER_CHECKPOINT_PAGES: i32 = 16_000;
/// Default and largest page of [`Store::list_tasks`].
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives the process dying (default).
    #[default]
    Process,
    /// Also survives the machine dying.
    Full,
}

type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

/// An operation waiting for the writer thread.
trait PendingOp: Send {
    /// Runs the operation; says whether it succeeded and how to answer once
    /// the transaction has committed (or failed to, with the error).
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply);
    /// Answers without running: the transaction could not begin.
    fn fail(self: Box<Self>, error: &str);
}

type Op = Box<dyn PendingOp>;

struct Pending<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> PendingOp for Pending<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Reply) {
        let Pending { f, reply } = *self;
        let result = f(conn);
        let ok = result.is_ok();
        let answer: Reply = Box::new(move |commit_error| {
            let result = match commit_error {
                Some(e) => Err(StoreError::Database(format!("commit failed: {e}"))),
                None => result,
            };
            let _ = reply.send(result);
        });
        (ok, answer)
    }

    fn fail(self: Box<Self>, error: &str) {
        let _ = self.reply.send(Err(StoreError::Database(format!("cannot begin a transaction: {error}"))));
    }
}

/// A read for the reader thread, answering through its own channel.
type Read = Box<dyn FnOnce(&Connection) + Send>;

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    ops: mpsc::Sender<Op>,
    /// Reads that scan (counts, pages of tasks) go to a reader thread with
    /// its own connection: in WAL mode they read the last commit without
    /// holding up the writer (a count of a million waiting tasks took the
    /// writer tens of milliseconds).
    reads: mpsc::Sender<Read>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let mut conn = connect(path)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
            match durability {
                Durability::Process => "NORMAL",
                Durability::Full => "FULL",
            }
        ))?;
        migrate(&conn)?;
        checkpoint_aside(path, &mut conn)?;
        let (ops, receiver) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("wasmjob-sqlite".into())
            .spawn(move || writer(conn, receiver))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        let reader = connect(path)?;
        reader.execute_batch("PRAGMA query_only = ON;")?;
        let (reads, receiver) = mpsc::channel::<Read>();
        std::thread::Builder::new()
            .name("wasmjob-sqlite-read".into())
            .spawn(move || receiver.iter().for_each(|read| read(&reader)))
            .map_err(|e| StoreError::Database(format!("cannot start the reader thread: {e}")))?;
        Ok(Self { ops, reads })
    }

    /// Runs `f` on the reader thread, against the last commit.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.reads.send(Box::new(move |conn| drop(reply.send(f(conn))))).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer thread within the next group commit, and
    /// answers once it is committed.
    async fn op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.ops.send(Box::new(Pending { f, reply })).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// The schema, one migration per version; `PRAGMA user_version` records how
/// many have run.
const MIGRATIONS: [&str; 19] = [
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
    include_str!("schema_v9.sql"),
    include_str!("schema_v10.sql"),
    include_str!("schema_v11.sql"),
    include_str!("schema_v12.sql"),
    include_str!("schema_v13.sql"),
    include_str!("schema_v14.sql"),
    include_str!("schema_v15.sql"),
    include_str!("schema_v16.sql"),
    include_str!("schema_v17.sql"),
    include_str!("schema_v18.sql"),
    include_str!("schema_v19.sql"),
];

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Database(format!("the store's schema version {version} is newer than this engine")));
    }
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!("BEGIN; {migration} PRAGMA user_version = {}; COMMIT;", done + 1))?;
    }
    Ok(())
}

/// A connection to the store at `path`, set up as every one of ours is:
/// an 8 MiB page cache (at a commit SQLite may scan the whole cache's hash
/// table: a 64 MiB cache cost 5% of the writer's time), temporary tables in
/// memory, and plans that never depend on bound values (the hot statements
/// name their index; else a statement comparing with `now` is planned
/// again on every run).
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192;")?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

/// Moves `conn`'s checkpoints to a thread of their own, with its own
/// connection to `path` (see the module's doc).
fn checkpoint_aside(path: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let checkpointer = connect(path)?;
    let (due, wake) = mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("wasmjob-checkpoint".into())
        .spawn(move || {
            while wake.recv().is_ok() {
                if let Err(e) = checkpointer.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE) {
                    tracing::warn!(error = %e, "checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Database(format!("cannot start the checkpoint thread: {e}")))?;
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        if pages >= WRITER_CHECKPOINT_PAGES {
            wal.checkpoint()?;
        } else if pages >= CHECKPOINT_PAGES {
            // Full: a checkpoint is already on its way.
            let _ = due.try_send(());
        }
        Ok(())
    }))?;
    Ok(())
}

/// Runs a transaction-control statement, parsed once per connection.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer thread: group commit until every sender is gone.
fn writer(conn: Connection, ops: mpsc::Receiver<Op>) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            let message = e.to_string();
            tracing::error!(error = %message, "cannot begin a transaction");
            batch.into_iter().for_each(|op| op.fail(&message));
            continue;
        }
        // In a group each operation has a savepoint; a lone operation that
        // fails rolls the whole transaction back.
        let alone = batch.len() == 1;
        let mut failed = false;
        for op in batch {
            if !alone {
                let _ = control(&conn, "SAVEPOINT op");
            }
            let (ok, reply) = op.run(&conn);
            if !alone {
                if !ok {
                    let _ = control(&conn, "ROLLBACK TO op");
                }
                let _ = control(&conn, "RELEASE op");
            }
            failed |= !ok;
            replies.push(reply);
        }
        let error = if alone && failed {
            // The operation answers with its own error.
            let _ = control(&conn, "ROLLBACK");
            None
        } else {
            let committed = control(&conn, "COMMIT");
            let error = committed.as_ref().err().map(|e| e.to_string());
            if error.is_some() {
                let _ = control(&conn, "ROLLBACK");
            }
            error
        };
        for reply in replies {
            reply(error.as_deref());
        }
    }
}

use crate::task::TaskId;
use crate::task::parse_id as id_param;
use crate::workflow::WorkflowRecord;

const TASK_COLUMNS: &str = "id, job, version, args, state, reason, priority, queued_at, run_at, expires_at, \
    started_at, finished_at, attempt, max_retries, result, error, fuel, wall_time_us, log, from_task, \
    COALESCE(root_task, id), depth, overlap_key, tenant, rescued_lease, http_requests, http_bytes_sent, \
    http_bytes_received, progress, workflow, queue";

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let state: String = row.get(4)?;
    Ok(TaskRecord {
        id: row.get::<_, i64>(0)?.to_string(),
        job: row.get(1)?,
        version: row.get(2)?,
        args: row.get(3)?,
        state: TaskState::parse(&state).unwrap_or(TaskState::Failure),
        reason: row.get(5)?,
        priority: row.get(6)?,
        queued_at: row.get(7)?,
        run_at: row.get(8)?,
        expires_at: row.get(9)?,
        started_at: row.get(10)?,
        finished_at: row.get(11)?,
        attempt: row.get(12)?,
        max_retries: row.get(13)?,
        result: row.get(14)?,
        error: row.get(15)?,
        fuel: row.get::<_, Option<i64>>(16)?.map(|f| f as u64),
        wall_time_us: row.get::<_, Option<i64>>(17)?.map(|f| f as u64),
        log: row.get(18)?,
        from_task: row.get::<_, Option<i64>>(19)?.map(|i| i.to_string()),
        root_task: row.get::<_, Option<i64>>(20)?.map(|i| i.to_string()),
        depth: row.get(21)?,
        overlap_key: row.get(22)?,
        tenant: row.get(23)?,
        rescued_lease: row.get(24)?,
        http: super::http_usage(row.get(25)?, row.get(26)?, row.get(27)?),
        progress: row.get(28)?,
        workflow: row.get::<_, Option<i64>>(29)?.map(|i| i.to_string()),
        queue: row.get(30)?,
    })
}

/// Tenants with waiting tasks: a loose index scan of `tasks_claim`, one
/// seek per tenant however many tasks wait.
const WAITING_TENANTS: &str = "WITH RECURSIVE waiting(tenant) AS ( \
      SELECT * FROM (SELECT tenant FROM tasks INDEXED BY tasks_claim WHERE state IN ('queued', 'retry') \
        ORDER BY tenant LIMIT 1) \
      UNION ALL \
      SELECT (SELECT tenant FROM tasks INDEXED BY tasks_claim \
              WHERE state IN ('queued', 'retry') AND tenant > waiting.tenant ORDER BY tenant LIMIT 1) \
      FROM waiting WHERE waiting.tenant IS NOT NULL) \
    SELECT tenant FROM waiting WHERE tenant IS NOT NULL";

/// Claims fairly across tenants ([`FairShares`]): a tenant with a flood of
/// tasks takes no more than its share while others wait. A tenant with
/// limits on its queues or jobs, and every tenant for a node serving only
/// some queues, is claimed by group ([`claim_grouped`]).
fn claim_fairly(conn: &Connection, request: &ClaimRequest) -> Result<Claimed, StoreError> {
    let waiting: Vec<String> =
        conn.prepare_cached(WAITING_TENANTS)?.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    let mut running = conn.prepare_cached(
        "SELECT COUNT(*) FROM tasks INDEXED BY tasks_running WHERE tenant = ?1 AND state = 'started'",
    )?;
    let mut limited = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM job_limits WHERE tenant = ?1) OR EXISTS (SELECT 1 FROM queue_limits WHERE tenant = ?1)",
    )?;
    let mut tenants = Vec::with_capacity(waiting.len());
    let mut grouped = Vec::with_capacity(waiting.len());
    for tenant in waiting {
        // The one writer makes this count exact: nothing starts in between.
        let Some(&max) = request.max_running.get(&tenant) else { continue };
        let busy = running.query_row([&tenant], |r| r.get::<_, i64>(0))?;
        let slots = max.saturating_sub(usize::try_from(busy).unwrap_or(usize::MAX));
        grouped.push(request.queues.is_some() || limited.query_row([&tenant], |r| r.get::<_, bool>(0))?);
        tenants.push((tenant, slots));
    }
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE tasks SET {CLAIMED} \
         WHERE id IN (SELECT id FROM tasks INDEXED BY tasks_claim \
                      WHERE tenant = ?5 AND state IN ('queued', 'retry') AND run_at <= ?1 \
                        AND (expires_at IS NULL OR expires_at > ?1) \
                      ORDER BY priority DESC, run_at, id LIMIT ?4) \
         RETURNING {CLAIMED_COLUMNS}"
    ))?;
    let mut claimed = Claimed { known: tenants.iter().map(|(t, _)| t.clone()).collect(), ..Claimed::default() };
    let mut plan = FairShares::new(tenants, request.limit);
    while let Some(asks) = plan.round() {
        for (i, want) in asks {
            let tenant = plan.tenant(i).to_owned();
            let before = claimed.tasks.len();
            if grouped[i] {
                claim_grouped(conn, request, &tenant, want, &mut claimed)?;
            } else {
                let rows = stmt.query_map(
                    params![request.now, request.node, request.lease_until, want as i64, tenant.as_str()],
                    |r| claimed_task(r, &tenant),
                )?;
                for row in rows {
                    claimed.tasks.push(row?);
                }
            }
            plan.got(i, want, claimed.tasks.len() - before);
        }
    }
    Ok(claimed)
}

/// What a claim sets on each task it starts (`?1` now, `?2` node, `?3`
/// lease end).
const CLAIMED: &str = "state = 'started', attempt = attempt + 1, started_at = ?1, \
    lease = ?2 || ':' || id || ':' || (attempt + 1), lease_expires_at = ?3, reason = NULL";

/// What a claim answers of each task it starts ([`claimed_task`]).
const CLAIMED_COLUMNS: &str = "id, job, version, args, attempt, max_retries, COALESCE(root_task, id), depth, lease, run_at, workflow IS NOT NULL, queue";

fn claimed_task(r: &Row, tenant: &str) -> rusqlite::Result<ClaimedTask> {
    Ok(ClaimedTask {
        id: r.get::<_, i64>(0)?.to_string(),
        tenant: tenant.to_owned(),
        job: r.get(1)?,
        version: r.get(2)?,
        args: r.get(3)?,
        attempt: r.get(4)?,
        max_retries: r.get(5)?,
        root_task: Some(r.get::<_, i64>(6)?.to_string()),
        depth: r.get(7)?,
        lease: r.get(8)?,
        due_at: r.get(9)?,
        workflow: r.get(10)?,
        queue: r.get(11)?,
    })
}

/// A rate-limited job's bucket in one grouped claim: its rate, its tokens
/// now, how many it took, and whether a due task of it was left behind.
struct Bucket {
    rate: Rate,
    have: f64,
    taken: u64,
    behind: bool,
}

/// The tasks a claim started, and when a job held back by its rate gets
/// its next token.
#[derive(Default)]
struct Claimed {
    tasks: Vec<ClaimedTask>,
    wake: Option<Millis>,
    /// The tenants with waiting tasks that the request knows, as the
    /// claim found them.
    known: Vec<String>,
}

/// Claims up to `want` of `tenant`'s due tasks by group (queue, job), as
/// its limits allow ([`crate::limits`]; PostgreSQL's `wasmjob_pick` is the
/// same walk).
fn claim_grouped(
    conn: &Connection,
    request: &ClaimRequest,
    tenant: &str,
    want: usize,
    claimed: &mut Claimed,
) -> Result<(), StoreError> {
    let want = want as u64;
    let now = request.now;
    // The tenant's started tasks by job and queue: one look at them all.
    let (mut busy_jobs, mut busy_queues) = (HashMap::<String, u64>::new(), HashMap::<String, u64>::new());
    let mut busy = conn.prepare_cached(
        "SELECT job, queue, COUNT(*) FROM tasks INDEXED BY tasks_running \
         WHERE tenant = ?1 AND state = 'started' GROUP BY job, queue",
    )?;
    for row in
        busy.query_map([tenant], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?
    {
        let (job, queue, n) = row?;
        *busy_jobs.entry(job).or_default() += n.max(0) as u64;
        *busy_queues.entry(queue).or_default() += n.max(0) as u64;
    }
    let mut rooms = Rooms::default();
    let mut buckets: HashMap<String, Bucket> = HashMap::new();
    let jobs: Vec<(String, JobLimits, f64, Millis)> = conn
        .prepare_cached(
            "SELECT job, max_running, rate_tasks, rate_per_ms, tokens, refilled_at FROM job_limits WHERE tenant = ?1",
        )?
        .query_map([tenant], |r| {
            Ok((r.get(0)?, super::job_limits_of(r.get(1)?, r.get(2)?, r.get(3)?), r.get(4)?, r.get(5)?))
        })?
        .collect::<Result<_, _>>()?;
    for (job, limits, tokens, refilled_at) in jobs {
        let busy = busy_jobs.get(&job).copied().unwrap_or(0);
        let mut room = limits.max_concurrency.map_or(want, |max| u64::from(max).saturating_sub(busy));
        if let Some(rate) = limits.rate {
            let have = rate.tokens(tokens, refilled_at, now);
            room = room.min(Rate::whole(have));
            buckets.insert(job.clone(), Bucket { rate, have, taken: 0, behind: false });
        }
        rooms.jobs.insert(job, room);
    }
    let queues: Vec<(String, Option<i64>, i32)> = conn
        .prepare_cached("SELECT queue, max_running, priority FROM queue_limits WHERE tenant = ?1")?
        .query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut ranks = HashMap::new();
    for (queue, max, rank) in queues {
        if let Some(max) = max {
            let busy = busy_queues.get(&queue).copied().unwrap_or(0);
            rooms.queues.insert(queue.clone(), (max.max(0) as u64).saturating_sub(busy));
        }
        ranks.insert(queue, rank);
    }

    // Each group's due heads within its room, and one more to know whether
    // one is left behind.
    let mut heads = Vec::new();
    let mut group_heads = conn.prepare_cached(
        "SELECT id, priority, run_at FROM tasks INDEXED BY tasks_groups \
         WHERE tenant = ?1 AND queue = ?2 AND job = ?3 AND state IN ('queued', 'retry') AND run_at <= ?4 \
           AND (expires_at IS NULL OR expires_at > ?4) ORDER BY priority DESC, run_at, id LIMIT ?5",
    )?;
    for (queue, job) in groups(conn, tenant, request.queues.as_deref())? {
        let room = rooms.of(&queue, &job, want);
        let rank = ranks.get(&queue).copied().unwrap_or(0);
        let limit = i64::try_from(room.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = group_heads.query_map(params![tenant, queue, job, now, limit], |r| {
            Ok(Head {
                id: r.get(0)?,
                job: job.clone(),
                queue: queue.clone(),
                rank,
                priority: r.get(1)?,
                run_at: r.get(2)?,
            })
        })?;
        for (taken, row) in rows.enumerate() {
            let head = row?;
            if taken as u64 == room {
                if let Some(bucket) = buckets.get_mut(&head.job) {
                    bucket.behind = true;
                }
                break;
            }
            heads.push(head);
        }
    }

    let mut start = conn.prepare_cached(&format!(
        "UPDATE tasks SET {CLAIMED} WHERE id = ?4 AND state IN ('queued', 'retry') RETURNING {CLAIMED_COLUMNS}"
    ))?;
    let (picked, left) = limits::pick(heads, &mut rooms, want);
    for head in left {
        if let Some(bucket) = buckets.get_mut(&head.job) {
            bucket.behind = true;
        }
    }
    for head in picked {
        let task = start
            .query_row(params![now, request.node, request.lease_until, head.id], |r| claimed_task(r, tenant))
            .optional()?;
        if let Some(task) = task {
            if let Some(bucket) = buckets.get_mut(&task.job) {
                bucket.taken += 1;
            }
            claimed.tasks.push(task);
        }
    }

    // The tokens taken (the one writer: no limits were set since they were
    // read), and when a job with a due task left behind gets its next
    // token, if its bucket is not full.
    let mut spend = conn.prepare_cached(
        "UPDATE job_limits SET tokens = ?3, refilled_at = MAX(refilled_at, ?4) WHERE tenant = ?1 AND job = ?2",
    )?;
    for (job, Bucket { rate, have, taken, behind }) in buckets {
        let left = have - taken as f64;
        if taken > 0 {
            spend.execute(params![tenant, job, left, now])?;
        }
        if behind && Rate::whole(left) < u64::from(rate.tasks) {
            let at = rate.next_token_at(left, now);
            claimed.wake = Some(claimed.wake.map_or(at, |w| w.min(at)));
        }
    }
    Ok(())
}

/// The first job after `?3` with tasks waiting in `?1`'s queue `?2`: a
/// step of the loose scans of `tasks_groups`.
const NEXT_JOB: &str = "SELECT job FROM tasks INDEXED BY tasks_groups WHERE tenant = ?1 \
    AND state IN ('queued', 'retry') AND queue = ?2 AND job > ?3 ORDER BY job LIMIT 1";

/// The earliest due time of the waiting tasks of the queues `served`, of
/// the tenants `known` (with tasks waiting; `now`: the claim's): by a loose scan of `tasks_groups` (as
/// PostgreSQL's `wasmjob_claim` walks), one seek per tenant, queue, job and
/// priority with waiting tasks, at most [`limits::MAX_WALK`] of those per
/// tenant (the earliest of them if it has more); done at a time already
/// due (the worker waits for room then, not for a time). Never a read of
/// other queues' tasks, nor of every task of one group.
fn next_due_of(
    conn: &Connection,
    now: Millis,
    known: &[String],
    served: &[String],
) -> Result<Option<Millis>, StoreError> {
    let mut next_job = conn.prepare_cached(NEXT_JOB)?;
    let mut next_priority = conn.prepare_cached(
        "SELECT priority, run_at FROM tasks INDEXED BY tasks_groups WHERE tenant = ?1 \
         AND state IN ('queued', 'retry') AND queue = ?2 AND job = ?3 AND priority < ?4 \
         ORDER BY priority DESC, run_at LIMIT 1",
    )?;
    let mut next = None::<Millis>;
    'tenants: for tenant in known {
        let mut walked = 0;
        for queue in served {
            let mut job = String::new();
            while let Some(found) = next_job.query_row(params![tenant, queue, job], |r| r.get(0)).optional()? {
                job = found;
                let mut below = i64::from(i32::MAX) + 1;
                while let Some((priority, run_at)) = next_priority
                    .query_row(params![tenant, queue, job, below], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)))
                    .optional()?
                {
                    next = Some(next.map_or(run_at, |n| n.min(run_at)));
                    if run_at <= now {
                        return Ok(next);
                    }
                    below = priority;
                    walked += 1;
                    if walked >= limits::MAX_WALK {
                        continue 'tenants;
                    }
                }
            }
        }
    }
    Ok(next)
}

/// The groups (queue, job) with waiting tasks a grouped claim of `tenant`
/// walks, by a loose scan of `tasks_groups` (PostgreSQL's `wasmjob_pick`
/// walks the same): every job of each queue `served` names; or, of every
/// queue, at most [`limits::MAX_WALK`] groups from where the tenant's last
/// claim stopped (`group_cursors`), wrapping around.
fn groups(conn: &Connection, tenant: &str, served: Option<&[String]>) -> Result<Vec<(String, String)>, StoreError> {
    let mut groups = Vec::new();
    if let Some(served) = served {
        let mut next_job = conn.prepare_cached(NEXT_JOB)?;
        for queue in served {
            let mut job = String::new();
            while let Some(next) = next_job.query_row(params![tenant, queue, job], |r| r.get(0)).optional()? {
                job = next;
                groups.push((queue.clone(), job.clone()));
            }
        }
        return Ok(groups);
    }
    let mut next_group = conn.prepare_cached(
        "SELECT queue, job FROM tasks INDEXED BY tasks_groups WHERE tenant = ?1 AND state IN ('queued', 'retry') \
         AND (queue, job) > (?2, ?3) ORDER BY queue, job LIMIT 1",
    )?;
    let cursor: Option<(String, String)> = conn
        .prepare_cached("SELECT queue, job FROM group_cursors WHERE tenant = ?1")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut at = cursor.clone().unwrap_or_default();
    let mut wrapped = cursor.is_none();
    loop {
        let next: Option<(String, String)> =
            next_group.query_row(params![tenant, at.0, at.1], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let Some(next) = next else {
            if wrapped {
                break;
            }
            (wrapped, at) = (true, Default::default());
            continue;
        };
        if wrapped && cursor.as_ref().is_some_and(|c| next > *c) {
            break;
        }
        at = next.clone();
        groups.push(next);
        if groups.len() >= limits::MAX_WALK {
            conn.prepare_cached(
                "INSERT INTO group_cursors (tenant, queue, job) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant) DO UPDATE SET queue = excluded.queue, job = excluded.job",
            )?
            .execute(params![tenant, at.0, at.1])?;
            return Ok(groups);
        }
    }
    if cursor.is_some() {
        conn.prepare_cached("DELETE FROM group_cursors WHERE tenant = ?1")?.execute([tenant])?;
    }
    Ok(groups)
}

/// Takes `tokens` from their bucket if it has that many (refilled at its
/// rate since it was last taken from, up to its burst).
fn take_tokens(conn: &Connection, tokens: &Tokens) -> Result<bool, StoreError> {
    let taken = conn
        .prepare_cached(
            "INSERT INTO rates (tenant, tokens, refilled_at) SELECT ?1, ?4 - ?2, ?5 WHERE ?4 >= ?2 \
             ON CONFLICT (tenant) DO UPDATE SET \
               tokens = MIN(?4, tokens + MAX(0, ?5 - refilled_at) * ?3 / 1000.0) - ?2, \
               refilled_at = MAX(refilled_at, ?5) \
             WHERE MIN(?4, tokens + MAX(0, ?5 - refilled_at) * ?3 / 1000.0) >= ?2",
        )?
        .execute(params![tokens.bucket, tokens.n as f64, tokens.rate, tokens.burst, tokens.now])?;
    Ok(taken > 0)
}

/// Another task of task `id`'s tenant and job, waiting or running, with
/// overlap key `key` (by default task `id`'s own): the one it would
/// duplicate.
fn overlapping(conn: &Connection, id: i64, key: Option<&str>) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT o.id FROM tasks o JOIN tasks t ON t.id = ?1 \
             WHERE o.tenant = t.tenant AND o.job = t.job AND o.overlap_key = COALESCE(?2, t.overlap_key) \
             AND o.id <> t.id AND o.state IN ('queued', 'retry', 'started')",
        )?
        .query_row(params![id, key], |r| r.get(0))
        .optional()?)
}

/// The statement listing the tasks `filter` asks for, newest first, and
/// its values ([`super::list_conditions`]).
fn list_sql(filter: &TaskFilter) -> (String, Vec<rusqlite::types::Value>) {
    let limit = i64::from(filter.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE));
    let (clause, bounds) = super::list_where(filter, &limit, |n| format!("?{n}"));
    let values = bounds
        .into_iter()
        .map(|bound| match bound {
            super::Bound::Text(text) => text.to_owned().into(),
            super::Bound::Int(n) => n.into(),
        })
        .collect();
    (format!("SELECT {TASK_COLUMNS} FROM tasks WHERE {clause}"), values)
}

/// Keeps the attempt of the started task `?1` under lease `?2` that is
/// about to end in a retry, as its completion says (unless a revoke is
/// asked: the ending then revokes the task, whose row keeps the attempt).
const KEEP_RETRIED: &str = "INSERT OR IGNORE INTO attempts (task_id, attempt, lease, started_at, finished_at, \
    state, reason, error, fuel, wall_time_us, log, http_requests, http_bytes_sent, http_bytes_received) \
    SELECT id, attempt, lease, started_at, ?3, 'retry', ?4, ?5, ?6, ?7, substr(?8, -?9), ?10, ?11, ?12 \
    FROM tasks WHERE id = ?1 AND state = 'started' AND lease = ?2 AND revoke_requested_at IS NULL";

/// Keeps the last attempt of the ended task `?1` before it is retried by
/// hand (none for a task revoked before it ever started).
const KEEP_ENDED: &str = "INSERT OR IGNORE INTO attempts (task_id, attempt, lease, started_at, finished_at, \
    state, reason, error, fuel, wall_time_us, log, http_requests, http_bytes_sent, http_bytes_received) \
    SELECT id, attempt, CASE WHEN reason = 'lease-expired' THEN rescued_lease END, started_at, finished_at, \
    state, reason, error, fuel, wall_time_us, substr(log, -?2), http_requests, http_bytes_sent, http_bytes_received \
    FROM tasks WHERE id = ?1 AND state IN ('failure', 'revoked') AND attempt > 0 AND finished_at IS NOT NULL";

/// Puts task `?1` back in line at `?2` ([`Store::retry`]).
const RETRY: &str = "UPDATE tasks SET state = 'queued', reason = NULL, error = NULL, result = NULL, run_at = ?2, \
    expires_at = NULL, finished_at = NULL, max_retries = MAX(max_retries, attempt) \
    WHERE id = ?1 AND state IN ('failure', 'revoked')";

/// Settles the children held for parent `parent`'s attempts that have
/// ended, `parent` being at attempt `now_at` in that state (`None`: it is
/// gone): those of a successful attempt are released (due after their
/// delay from `now`), those of any other ended attempt discarded; those of
/// a running attempt stay. Answers how many were released and discarded.
fn settle_children(
    conn: &Connection,
    parent: i64,
    now_at: Option<(u32, TaskState)>,
    now: Millis,
) -> Result<(u64, u64), StoreError> {
    let (attempt, state) = now_at.map_or((None, ""), |(attempt, state)| (Some(attempt), state.as_str()));
    let released = match state {
        "success" => conn
            .prepare_cached(
                "UPDATE tasks SET reason = NULL, run_at = ?3 + p.delay, expires_at = ?3 + p.delay + p.expiry \
                 FROM (SELECT task_id, delay, expiry FROM pending_children WHERE parent_id = ?1 AND attempt = ?2) \
                   AS p WHERE tasks.id = p.task_id AND tasks.state = 'queued' AND tasks.reason = 'parent'",
            )?
            .execute(params![parent, attempt, now])? as u64,
        _ => 0,
    };
    // Children of an attempt still running, or of the one that succeeded,
    // stay; so do those of a later attempt than `attempt`.
    let ended = "(?2 IS NULL OR attempt <= ?2) AND NOT (attempt IS ?2 AND ?4 IN ('started', 'success'))";
    let discarded: Vec<(i64, Option<i64>)> = conn
        .prepare_cached(&format!(
            "UPDATE tasks SET state = 'revoked', reason = 'discarded', finished_at = ?3 \
             WHERE id IN (SELECT task_id FROM pending_children WHERE parent_id = ?1 AND {ended}) \
             AND state = 'queued' AND reason = 'parent' RETURNING id, root_task"
        ))?
        .query_map(params![parent, attempt, now, state], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, root) in &discarded {
        conn.prepare_cached("DELETE FROM uniques WHERE task_id = ?1")?.execute([id])?;
        if let Some(root) = root {
            conn.prepare_cached("UPDATE tasks SET tree_size = MAX(1, tree_size - 1) WHERE id = ?1")?.execute([root])?;
        }
    }
    let settled = "(?2 IS NULL OR attempt <= ?2) AND NOT (attempt IS ?2 AND ?3 = 'started')";
    conn.prepare_cached(&format!("DELETE FROM pending_children WHERE parent_id = ?1 AND {settled}"))?
        .execute(params![parent, attempt, state])?;
    Ok((released, discarded.len() as u64))
}

/// Releases the next stage of the workflow of step `id`, which just
/// succeeded, if that success completes its stage: due `now`, with the
/// stage's results under [`crate::workflow::PREVIOUS`] (or, results too
/// large to pass on, failed without running: [`crate::workflow::Passed`]).
/// Answers how many steps it released. A step that ends otherwise is the
/// heartbeat's sweep's ([`ABORT_WORKFLOWS`]).
fn release_next(conn: &Connection, id: i64, now: Millis) -> Result<u64, StoreError> {
    let Some((workflow, stage)) = conn
        .prepare_cached("SELECT workflow_id, stage FROM workflow_steps WHERE task_id = ?1")?
        .query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?
    else {
        return Ok(0);
    };
    // The results are read once, by the success that completes the stage.
    let unfinished: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
             WHERE s.workflow_id = ?1 AND s.stage = ?2 AND t.state <> 'success'",
        )?
        .query_row(params![workflow, stage], |r| r.get(0))?;
    if unfinished > 0 {
        return Ok(0);
    }
    let results: Vec<Option<String>> = conn
        .prepare_cached(
            "SELECT t.result FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
             WHERE s.workflow_id = ?1 AND s.stage = ?2 ORDER BY s.position",
        )?
        .query_map(params![workflow, stage], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let next: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT t.id, t.args FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
             WHERE s.workflow_id = ?1 AND s.stage = ?2 + 1 AND t.state = 'queued' AND t.reason = 'workflow'",
        )?
        .query_map(params![workflow, stage], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    match crate::workflow::Passed::new(results, next.len()) {
        crate::workflow::Passed::Results(previous) => {
            let mut release =
                conn.prepare_cached("UPDATE tasks SET args = ?2, reason = NULL, run_at = ?3 WHERE id = ?1")?;
            for (step, args) in &next {
                release.execute(params![step, crate::workflow::with_previous(args, &previous)?, now])?;
            }
            Ok(next.len() as u64)
        }
        crate::workflow::Passed::TooLarge(why) => {
            let mut fail = conn.prepare_cached(
                "UPDATE tasks SET state = 'failure', reason = 'too-large', error = ?2, finished_at = ?3 WHERE id = ?1",
            )?;
            for (step, _) in &next {
                fail.execute(params![step, why, now])?;
            }
            Ok(0)
        }
    }
}

/// Revokes ([`super::UPSTREAM_REASON`]) the waiting steps of up to 100
/// workflows whose first waiting stage comes after a stage with a step that
/// ended without success (`?1`: now), answering them with their tree's
/// root. One look per workflow with waiting steps: a stage waits only
/// while every stage before it succeeded or the one right before it is
/// still running.
const ABORT_WORKFLOWS: &str = "WITH waiting AS ( \
      SELECT t.workflow AS workflow, MIN(s.stage) AS stage FROM tasks t INDEXED BY tasks_waiting_steps \
      JOIN workflow_steps s ON s.task_id = t.id \
      WHERE t.state = 'queued' AND t.reason = 'workflow' GROUP BY t.workflow), \
    failed AS (SELECT w.workflow FROM waiting w WHERE EXISTS ( \
      SELECT 1 FROM workflow_steps e JOIN tasks x ON x.id = e.task_id \
      WHERE e.workflow_id = w.workflow AND e.stage = w.stage - 1 AND x.state IN ('failure', 'revoked')) \
      LIMIT 100) \
    UPDATE tasks SET state = 'revoked', reason = 'upstream', finished_at = ?1 \
    WHERE state = 'queued' AND reason = 'workflow' AND workflow IN (SELECT workflow FROM failed) \
    RETURNING id, tenant, job, root_task";

fn insert_task(conn: &Connection, task: &NewTask) -> Result<Inserted, StoreError> {
    // A unique task whose key another holds (the one writer makes the
    // check and the taking one).
    if let Some(unique) = &task.unique {
        let holder: Option<i64> = conn
            .prepare_cached("SELECT task_id FROM uniques WHERE tenant = ?1 AND job = ?2 AND key = ?3 AND until > ?4")?
            .query_row(params![task.tenant, task.job, unique.key, task.queued_at], |r| r.get(0))
            .optional()?;
        if let Some(holder) = holder {
            return Ok(Inserted::Duplicate(holder.to_string()));
        }
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO tasks (job, version, args, state, priority, queued_at, run_at, expires_at, max_retries, \
         overlap_key, from_task, root_task, depth, tenant, reason, queue) \
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT DO NOTHING RETURNING id",
    )?;
    let from_task = task.from_task.as_deref().and_then(id_param);
    let root_task = task.root_task.as_deref().and_then(id_param);
    let id: Option<i64> = insert
        .query_row(
            params![
                task.job,
                task.version,
                task.args,
                task.priority,
                task.queued_at,
                task.run_at,
                task.expires_at,
                task.max_retries,
                task.overlap_key,
                from_task,
                root_task,
                task.depth,
                task.tenant,
                task.pending.as_ref().map(|_| PENDING_REASON),
                task.queue
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = id {
        if let Some(pending) = &task.pending {
            conn.prepare_cached(
                "INSERT INTO pending_children (task_id, parent_id, attempt, delay, expiry) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id,
                id_param(&pending.parent),
                pending.attempt,
                pending.delay,
                pending.expiry
            ])?;
        }
        if let Some(unique) = &task.unique {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO uniques (tenant, job, key, task_id, until) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![task.tenant, task.job, unique.key, id, unique.until])?;
        }
        return Ok(Inserted::Task(id.to_string()));
    }
    let existing: i64 = conn
        .prepare_cached(
            "SELECT id FROM tasks WHERE tenant = ?3 AND job = ?1 AND overlap_key = ?2 \
             AND state IN ('queued', 'retry', 'started')",
        )?
        .query_row(params![task.job, task.overlap_key, task.tenant], |r| r.get(0))?;
    Ok(Inserted::Duplicate(existing.to_string()))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn put_component(&self, hash: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.op(move |conn| {
            conn.execute("INSERT OR IGNORE INTO components (hash, bytes) VALUES (?1, ?2)", params![hash, bytes])?;
            Ok(())
        })
        .await
    }

    async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let hash = hash.to_owned();
        self.op(move |conn| {
            Ok(conn.query_row("SELECT bytes FROM components WHERE hash = ?1", [hash], |r| r.get(0)).optional()?)
        })
        .await
    }

    async fn put_job(&self, job: JobRow, periodic: bool) -> Result<(), StoreError> {
        self.op(move |conn| {
            let changed = conn.execute(
                "INSERT INTO jobs (tenant, name, hash, metadata, registered_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (tenant, name) DO UPDATE SET hash = excluded.hash, metadata = excluded.metadata, \
                 registered_at = excluded.registered_at WHERE hash != excluded.hash",
                params![job.tenant, job.name, job.hash, job.metadata, job.registered_at],
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO job_versions (tenant, name, hash, registered_at) VALUES (?1, ?2, ?3, ?4)",
                params![job.tenant, job.name, job.hash, job.registered_at],
            )?;
            if changed == 0 {
                return Ok(());
            }
            if periodic {
                // A new version is asked at once; a claim on the old one is void.
                conn.execute(
                    "INSERT INTO schedules (tenant, job, since, next_due_at) VALUES (?1, ?2, ?3, ?3) \
                     ON CONFLICT (tenant, job, name) DO UPDATE SET since = excluded.since, \
                     next_due_at = excluded.next_due_at, claimed_by = NULL, claimed_until = NULL",
                    params![job.tenant, job.name, job.registered_at],
                )?;
            } else {
                conn.execute(
                    "DELETE FROM schedules WHERE tenant = ?1 AND job = ?2 AND name = ''",
                    params![job.tenant, job.name],
                )?;
            }
            bump(conn, "jobs")
        })
        .await
    }

    async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.op(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT tenant, name, hash, metadata, registered_at FROM jobs ORDER BY tenant, name")?;
            let rows = stmt.query_map([], |r| {
                Ok(JobRow {
                    tenant: r.get(0)?,
                    name: r.get(1)?,
                    hash: r.get(2)?,
                    metadata: r.get(3)?,
                    registered_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn job_versions(&self, tenant: &str, name: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.op(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT hash, registered_at FROM job_versions WHERE tenant = ?1 AND name = ?2 ORDER BY registered_at",
            )?;
            let rows = stmt.query_map([tenant, name], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_job(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.op(move |conn| {
            conn.execute("DELETE FROM schedules WHERE tenant = ?1 AND job = ?2", params![tenant, name])?;
            let deleted = conn.execute("DELETE FROM jobs WHERE tenant = ?1 AND name = ?2", params![tenant, name])? > 0;
            bump(conn, "jobs")?;
            Ok(deleted)
        })
        .await
    }

    async fn generations(&self) -> Result<Generations, StoreError> {
        self.op(|conn| {
            let mut generations = Generations::default();
            let mut stmt = conn.prepare_cached("SELECT kind, generation FROM generations")?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (kind, generation) = row?;
                match kind.as_str() {
                    "jobs" => generations.jobs = generation,
                    "tenants" => generations.tenants = generation,
                    "tokens" => generations.tokens = generation,
                    _ => {}
                }
            }
            Ok(generations)
        })
        .await
    }

    async fn insert_tasks(
        &self,
        tasks: Vec<NewTask>,
        tokens: Option<Tokens>,
    ) -> Result<Option<Vec<Inserted>>, StoreError> {
        self.op(move |conn| {
            if let Some(tokens) = tokens
                && !take_tokens(conn, &tokens)?
            {
                return Ok(None);
            }
            tasks.iter().map(|t| insert_task(conn, t)).collect::<Result<_, _>>().map(Some)
        })
        .await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError> {
        self.op(move |conn| {
            let Claimed { tasks, wake, known } = claim_fairly(conn, &request)?;
            // Of the queues served: a task of another queue is none of
            // this node's waiting.
            let next_run_at = match (tasks.len() < request.limit, &request.queues) {
                (false, _) => None,
                (true, None) => conn
                    .prepare_cached(
                        "SELECT MIN(run_at) FROM tasks INDEXED BY tasks_next WHERE state IN ('queued', 'retry')",
                    )?
                    .query_row([], |r| r.get::<_, Option<i64>>(0))?,
                (true, Some(queues)) => next_due_of(conn, request.now, &known, queues)?,
            };
            Ok(Claim { tasks, next_run_at, wake_at: wake, contended: false })
        })
        .await
    }

    async fn expire(&self, now: Millis) -> Result<Vec<Expired>, StoreError> {
        self.op(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE tasks SET state = 'revoked', reason = 'expired', finished_at = ?1 \
                 WHERE id IN (SELECT id FROM tasks INDEXED BY tasks_expiry \
                              WHERE state = 'queued' AND expires_at IS NOT NULL AND expires_at <= ?1 \
                              ORDER BY expires_at LIMIT 1000) RETURNING id, tenant, job",
            )?;
            let expired = stmt.query_map([now], |r| {
                Ok(Expired { id: r.get::<_, i64>(0)?.to_string(), tenant: r.get(1)?, job: r.get(2)? })
            })?;
            Ok(expired.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn complete(&self, completions: Vec<Completion>) -> Result<Vec<(TaskId, TaskState)>, StoreError> {
        self.op(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE tasks SET state = CASE WHEN ?3 = 'retry' AND revoke_requested_at IS NOT NULL \
                   THEN 'revoked' ELSE ?3 END, reason = ?4, result = ?5, error = ?6, fuel = ?7, wall_time_us = ?8, \
                 log = ?9, finished_at = CASE WHEN ?3 = 'retry' AND revoke_requested_at IS NULL THEN NULL ELSE ?10 END, \
                 run_at = COALESCE(?11, run_at), lease = NULL, lease_expires_at = NULL, http_requests = ?12, \
                 http_bytes_sent = ?13, http_bytes_received = ?14, \
                 progress = CASE WHEN ?3 = 'retry' THEN NULL ELSE progress END \
                 WHERE id = ?1 AND state = 'started' AND lease = ?2",
            )?;
            // Without RETURNING, which makes SQLite keep a statement journal
            // for every ending (seen: a tenth of the burn-down's time); only
            // a retry may end in another state than asked (`revoked`).
            let mut asked = conn.prepare_cached("SELECT state FROM tasks WHERE id = ?1")?;
            let mut applied = Vec::with_capacity(completions.len());
            for c in &completions {
                if c.state == TaskState::Retry {
                    conn.prepare_cached(KEEP_RETRIED)?.execute(params![
                        id_param(&c.id),
                        c.lease,
                        c.finished_at,
                        c.reason,
                        c.error,
                        c.fuel as i64,
                        c.wall_time_us as i64,
                        c.log,
                        ATTEMPT_LOG_KEPT,
                        c.http.requests as i64,
                        c.http.bytes_sent as i64,
                        c.http.bytes_received as i64
                    ])?;
                }
                let changed = stmt.execute(params![
                    id_param(&c.id),
                    c.lease,
                    c.state.as_str(),
                    c.reason,
                    c.result,
                    c.error,
                    c.fuel as i64,
                    c.wall_time_us as i64,
                    c.log,
                    c.finished_at,
                    c.retry_at,
                    c.http.requests as i64,
                    c.http.bytes_sent as i64,
                    c.http.bytes_received as i64
                ])?;
                if changed == 0 {
                    continue;
                }
                let state = match c.state {
                    TaskState::Retry => {
                        let state: String = asked.query_row([id_param(&c.id)], |r| r.get(0))?;
                        TaskState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?
                    }
                    state => state,
                };
                if c.children
                    && let Some(id) = id_param(&c.id)
                {
                    settle_children(conn, id, Some((c.attempt, state)), c.finished_at)?;
                }
                if c.workflow
                    && state == TaskState::Success
                    && let Some(id) = id_param(&c.id)
                {
                    release_next(conn, id, c.finished_at)?;
                }
                applied.push((c.id.clone(), state));
            }
            Ok(applied)
        })
        .await
    }

    async fn rescue(&self, now: Millis, all_started: bool, poison_after: u32) -> Result<Vec<Rescued>, StoreError> {
        // Every started task's lease ends before the end of time.
        let now_or_forever = if all_started { Millis::MAX } else { now };
        self.op(move |conn| {
            let mut rescue = conn.prepare_cached(
                "UPDATE tasks INDEXED BY tasks_running SET \
                   state = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
                     WHEN lost_leases + 1 >= ?3 THEN 'failure' \
                     WHEN attempt <= max_retries THEN 'retry' ELSE 'failure' END, \
                   finished_at = CASE WHEN attempt <= max_retries AND revoke_requested_at IS NULL \
                     AND lost_leases + 1 < ?3 THEN NULL ELSE ?1 END, \
                   reason = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
                     WHEN lost_leases + 1 >= ?3 THEN 'poisoned' ELSE 'lease-expired' END, \
                   error = CASE WHEN revoke_requested_at IS NULL AND lost_leases + 1 >= ?3 \
                     THEN 'its worker was lost under it ' || (lost_leases + 1) || ' times: quarantined' \
                     ELSE error END, \
                   lost_leases = lost_leases + 1, \
                   run_at = ?1, rescued_lease = lease, lease = NULL, lease_expires_at = NULL \
                 WHERE state = 'started' AND lease_expires_at < ?2 \
                 RETURNING id, attempt, rescued_lease, started_at, state, tenant, job, reason",
            )?;
            let rescued = rescue
                .query_map(params![now, now_or_forever, poison_after], |r| {
                    let lease: Option<String> = r.get(2)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        lease,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, String>(4)?,
                        (r.get::<_, String>(5)?, r.get::<_, String>(6)?, r.get::<_, String>(7)?),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            // Those to be retried keep the attempt their worker lost.
            let mut keep = conn.prepare_cached(
                "INSERT OR IGNORE INTO attempts (task_id, attempt, lease, started_at, finished_at, state, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'retry', 'lease-expired')",
            )?;
            for (id, attempt, lease, started_at, ..) in rescued.iter().filter(|r| r.4 == "retry") {
                keep.execute(params![id, attempt, lease, started_at, now])?;
            }
            rescued
                .into_iter()
                .map(|(id, attempt, _, _, state, (tenant, job, reason))| {
                    Ok(Rescued {
                        id: id.to_string(),
                        tenant,
                        job,
                        attempt: u32::try_from(attempt).unwrap_or(0),
                        state: TaskState::parse(&state)
                            .ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?,
                        reason,
                    })
                })
                .collect()
        })
        .await
    }

    async fn extend_leases(&self, leases: Vec<String>, until: Millis) -> Result<Vec<HeldLease>, StoreError> {
        self.op(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE tasks SET lease_expires_at = ?2 WHERE id = ?3 AND state = 'started' AND lease = ?1 \
                 RETURNING revoke_requested_at IS NOT NULL",
            )?;
            let mut held = Vec::with_capacity(leases.len());
            for lease in leases {
                let id = super::lease_task_id(&lease);
                if let Some(revoke_requested) = stmt.query_row(params![lease, until, id], |r| r.get(0)).optional()? {
                    held.push(HeldLease { lease, revoke_requested });
                }
            }
            Ok(held)
        })
        .await
    }

    async fn release(&self, leases: Vec<String>, now: Millis) -> Result<u64, StoreError> {
        self.op(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE tasks SET state = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
                   WHEN attempt > 1 THEN 'retry' ELSE 'queued' END, \
                 finished_at = CASE WHEN revoke_requested_at IS NOT NULL THEN ?2 END, \
                 attempt = attempt - 1, reason = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
                   ELSE 'released-at-shutdown' END, run_at = ?2, lease = NULL, \
                 lease_expires_at = NULL, started_at = NULL WHERE id = ?3 AND state = 'started' AND lease = ?1 \
                 RETURNING attempt + 1",
            )?;
            let mut released = 0;
            for lease in &leases {
                let Some(id) = super::lease_task_id(lease) else { continue };
                let attempt: Option<u32> = stmt.query_row(params![lease, now, id], |r| r.get(0)).optional()?;
                if let Some(attempt) = attempt {
                    released += 1;
                    // The attempt's children go with it: the next claim
                    // reuses its number, and must not inherit them.
                    settle_children(conn, id, Some((attempt, TaskState::Queued)), now)?;
                }
            }
            Ok(released)
        })
        .await
    }

    async fn revoke(&self, id: &str, now: Millis) -> Result<Option<TaskState>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(None) };
        self.op(move |conn| {
            conn.execute(
                "UPDATE tasks SET state = 'revoked', reason = 'revoked', finished_at = ?2 \
                 WHERE id = ?1 AND state IN ('queued', 'retry')",
                params![id, now],
            )?;
            conn.execute(
                "UPDATE tasks SET revoke_requested_at = ?2 \
                 WHERE id = ?1 AND state = 'started' AND revoke_requested_at IS NULL",
                params![id, now],
            )?;
            let state: Option<String> =
                conn.query_row("SELECT state FROM tasks WHERE id = ?1", [id], |r| r.get(0)).optional()?;
            Ok(state.and_then(|s| TaskState::parse(&s)))
        })
        .await
    }

    async fn retry(&self, id: &str, now: Millis) -> Result<Retried, StoreError> {
        let Some(id) = id_param(id) else { return Ok(Retried::Missing) };
        self.op(move |conn| {
            let state: Option<String> = conn
                .prepare_cached("SELECT state FROM tasks WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            let Some(state) = state else { return Ok(Retried::Missing) };
            let state = TaskState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?;
            if !matches!(state, TaskState::Failure | TaskState::Revoked) {
                return Ok(Retried::Not(state));
            }
            if let Some(other) = overlapping(conn, id, None)? {
                return Ok(Retried::Duplicate(other.to_string()));
            }
            conn.prepare_cached(KEEP_ENDED)?.execute(params![id, ATTEMPT_LOG_KEPT])?;
            conn.prepare_cached(RETRY)?.execute(params![id, now])?;
            Ok(Retried::Queued)
        })
        .await
    }

    async fn revoke_many(&self, scope: RevokeScope, now: Millis) -> Result<RevokedMany, StoreError> {
        let Some((tenant, root, job)) = scope.parts() else { return Ok(RevokedMany::default()) };
        self.op(move |conn| {
            let within = "tenant = ?1 AND (CASE WHEN ?2 IS NOT NULL THEN (id = ?2 OR root_task = ?2) \
                          ELSE job = ?3 END)";
            let ids = |sql: &str| -> Result<Vec<String>, StoreError> {
                let mut stmt = conn.prepare(sql)?;
                let rows = stmt.query_map(params![tenant, root, job, now], |r| Ok(r.get::<_, i64>(0)?.to_string()))?;
                Ok(rows.collect::<Result<_, _>>()?)
            };
            let revoked = ids(&format!(
                "UPDATE tasks INDEXED BY tasks_claim SET state = 'revoked', reason = 'revoked', finished_at = ?4 \
                 WHERE {within} AND state IN ('queued', 'retry') RETURNING id"
            ))?;
            let stopping = ids(&format!(
                "UPDATE tasks INDEXED BY tasks_running SET revoke_requested_at = COALESCE(revoke_requested_at, ?4) \
                 WHERE {within} AND state = 'started' RETURNING id"
            ))?;
            Ok(RevokedMany { revoked, stopping })
        })
        .await
    }

    async fn grow_tree(&self, root: &str, n: u64, max: u64) -> Result<bool, StoreError> {
        let Some(root) = id_param(root) else { return Ok(false) };
        let (n, max) = (i64::try_from(n).unwrap_or(i64::MAX), i64::try_from(max).unwrap_or(i64::MAX));
        self.op(move |conn| {
            Ok(conn
                .prepare_cached("UPDATE tasks SET tree_size = tree_size + ?2 WHERE id = ?1 AND tree_size + ?2 <= ?3")?
                .execute(params![root, n, max])?
                > 0)
        })
        .await
    }

    async fn shrink_tree(&self, root: &str, n: u64) -> Result<(), StoreError> {
        let Some(root) = id_param(root) else { return Ok(()) };
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.op(move |conn| {
            conn.prepare_cached("UPDATE tasks SET tree_size = MAX(1, tree_size - ?2) WHERE id = ?1")?
                .execute(params![root, n])?;
            Ok(())
        })
        .await
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(None) };
        self.op(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
                .query_row([id], task_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.read(move |conn| {
            let (sql, values) = list_sql(&filter);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values), task_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn waiting_by_tenant(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT tenant, COUNT(*) FROM tasks INDEXED BY tasks_claim \
                 WHERE state IN ('queued', 'retry') GROUP BY tenant",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn count_by_state(&self) -> Result<Vec<(String, String, TaskState, u64)>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT tenant, job, state, COUNT(*) FROM tasks GROUP BY tenant, job, state")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
            })?;
            let mut counts = Vec::new();
            for row in rows {
                let (tenant, job, state, n) = row?;
                let state = TaskState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?;
                counts.push((tenant, job, state, n as u64));
            }
            Ok(counts)
        })
        .await
    }

    async fn ensure_schedule(&self, tenant: &str, job: &str, hash: &str, since: Millis) -> Result<(), StoreError> {
        let (tenant, job, hash) = (tenant.to_owned(), job.to_owned(), hash.to_owned());
        self.op(move |conn| {
            conn.execute(
                "INSERT INTO schedules (tenant, job, since, next_due_at) SELECT ?1, ?2, ?4, ?4 \
                 WHERE EXISTS (SELECT 1 FROM jobs WHERE tenant = ?1 AND name = ?2 AND hash = ?3) \
                 ON CONFLICT DO NOTHING",
                params![tenant, job, hash, since],
            )?;
            Ok(())
        })
        .await
    }

    async fn claim_schedules(&self, claim: ScheduleClaim) -> Result<ClaimedSchedules, StoreError> {
        self.op(move |conn| {
            let due = conn
                .prepare_cached(
                    "UPDATE schedules SET claimed_by = ?1, claimed_until = ?3 WHERE rowid IN ( \
                       SELECT rowid FROM ( \
                         SELECT rowid, next_due_at FROM schedules INDEXED BY schedules_due \
                           WHERE claimed_until IS NULL AND next_due_at <= ?2 \
                         UNION ALL \
                         SELECT rowid, next_due_at FROM schedules INDEXED BY schedules_held \
                           WHERE claimed_until IS NOT NULL AND claimed_until < ?2 AND next_due_at <= ?2) \
                       ORDER BY next_due_at LIMIT ?4) \
                     RETURNING tenant, job, last_run_at, since, next_due_at, name, plan",
                )?
                .query_map(params![claim.claim, claim.now, claim.lease_until, claim.limit as i64], schedule_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let next_due_at = conn
                .prepare_cached(
                    "SELECT (SELECT MIN(next_due_at) FROM schedules INDEXED BY schedules_due \
                       WHERE claimed_until IS NULL), \
                     (SELECT MIN(claimed_until) FROM schedules INDEXED BY schedules_held \
                       WHERE claimed_until IS NOT NULL)",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let (next_due_at, held_until) = next_due_at;
            Ok(ClaimedSchedules { due, next_due_at, held_until })
        })
        .await
    }

    async fn write_ticks(&self, ticks: Vec<ScheduleTick>) -> Result<Vec<TickWrite>, StoreError> {
        self.op(move |conn| {
            let mut update = conn.prepare_cached(
                "UPDATE schedules SET last_run_at = COALESCE(?5, last_run_at), next_due_at = ?6, \
                 claimed_by = NULL, claimed_until = NULL \
                 WHERE tenant = ?1 AND job = ?2 AND name = ?7 AND claimed_by = ?3 AND last_run_at IS ?4",
            )?;
            let mut written = Vec::with_capacity(ticks.len());
            for tick in &ticks {
                let params = params![
                    tick.tenant,
                    tick.job,
                    tick.claim,
                    tick.expected_last,
                    tick.ran_at,
                    tick.next_due_at,
                    tick.name
                ];
                if update.execute(params)? == 0 {
                    written.push(TickWrite::Lost);
                    continue;
                }
                written.push(TickWrite::Written(tick.task.as_ref().map(|t| insert_task(conn, t)).transpose()?));
            }
            Ok(written)
        })
        .await
    }

    async fn schedule(&self, tenant: &str, job: &str) -> Result<Option<ScheduleRow>, StoreError> {
        let (tenant, job) = (tenant.to_owned(), job.to_owned());
        self.op(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT tenant, job, last_run_at, since, next_due_at, name, plan FROM schedules \
                     WHERE tenant = ?1 AND job = ?2 AND name = ''",
                )?
                .query_row([tenant, job], schedule_from_row)
                .optional()?)
        })
        .await
    }

    async fn put_plan(&self, row: ScheduleRow, max: usize) -> Result<bool, StoreError> {
        self.op(move |conn| {
            let replaced = conn.execute(
                "UPDATE schedules SET job = ?2, plan = ?4, since = ?5, next_due_at = ?6, claimed_by = NULL, \
                 claimed_until = NULL WHERE tenant = ?1 AND name = ?3 AND name <> ''",
                params![row.tenant, row.job, row.name, row.plan, row.since, row.next_due_at],
            )?;
            if replaced > 0 {
                return Ok(true);
            }
            let named: i64 = conn.query_row(
                "SELECT COUNT(*) FROM schedules WHERE tenant = ?1 AND name <> ''",
                [&row.tenant],
                |r| r.get(0),
            )?;
            if usize::try_from(named).unwrap_or(usize::MAX) >= max {
                return Ok(false);
            }
            conn.execute(
                "INSERT INTO schedules (tenant, job, name, plan, since, next_due_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.tenant, row.job, row.name, row.plan, row.since, row.next_due_at],
            )?;
            Ok(true)
        })
        .await
    }

    async fn plans(&self, tenant: &str, name: Option<&str>) -> Result<Vec<ScheduleRow>, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.map(str::to_owned));
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT tenant, job, last_run_at, since, next_due_at, name, plan FROM schedules \
                     WHERE tenant = ?1 AND name <> '' AND (?2 IS NULL OR name = ?2) ORDER BY name",
                )?
                .query_map(params![tenant, name], schedule_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn set_plan_due(&self, tenant: &str, name: &str, next_due_at: Millis) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.op(move |conn| {
            let n = conn.execute(
                "UPDATE schedules SET next_due_at = ?3, claimed_by = NULL, claimed_until = NULL \
                 WHERE tenant = ?1 AND name = ?2 AND name <> ''",
                params![tenant, name, next_due_at],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_plan(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.op(move |conn| {
            let n = conn.execute(
                "DELETE FROM schedules WHERE tenant = ?1 AND name = ?2 AND name <> ''",
                params![tenant, name],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn create_tenant(&self, tenant: TenantRow) -> Result<bool, StoreError> {
        self.op(move |conn| {
            let created = conn.execute(
                "INSERT INTO tenants (name, quotas, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![tenant.name, tenant.quotas, tenant.created_at],
            )? > 0;
            if created {
                bump(conn, "tenants")?;
            }
            Ok(created)
        })
        .await
    }

    async fn update_tenant(&self, tenant: &str, was: &str, quotas: &str) -> Result<bool, StoreError> {
        let (tenant, was, quotas) = (tenant.to_owned(), was.to_owned(), quotas.to_owned());
        self.op(move |conn| {
            let updated = conn.execute(
                "UPDATE tenants SET quotas = ?3 WHERE name = ?1 AND quotas = ?2",
                params![tenant, was, quotas],
            )? > 0;
            if updated {
                bump(conn, "tenants")?;
            }
            Ok(updated)
        })
        .await
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRow>, StoreError> {
        let name = name.to_owned();
        self.op(move |conn| {
            Ok(conn
                .prepare_cached("SELECT name, quotas, created_at FROM tenants WHERE name = ?1")?
                .query_row([name], |r| Ok(TenantRow { name: r.get(0)?, quotas: r.get(1)?, created_at: r.get(2)? }))
                .optional()?)
        })
        .await
    }

    async fn take_tokens(&self, tenant: &str, n: u64, rate: f64, burst: f64, now: Millis) -> Result<bool, StoreError> {
        let tokens = Tokens { bucket: tenant.to_owned(), n, rate, burst, now };
        self.op(move |conn| take_tokens(conn, &tokens)).await
    }

    async fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        self.op(|conn| {
            let mut stmt = conn.prepare_cached("SELECT name, quotas, created_at FROM tenants ORDER BY name")?;
            let rows =
                stmt.query_map([], |r| Ok(TenantRow { name: r.get(0)?, quotas: r.get(1)?, created_at: r.get(2)? }))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn put_token(&self, token: TokenRow) -> Result<(), StoreError> {
        self.op(move |conn| {
            conn.execute(
                "INSERT INTO tokens (id, hash, tenant, scope, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![token.id, token.hash, token.tenant, token.scope, token.created_at, token.revoked_at],
            )?;
            bump(conn, "tokens")
        })
        .await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let hash = hash.to_owned();
        self.op(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, hash, tenant, scope, created_at, revoked_at FROM tokens WHERE hash = ?1")?
                .query_row([hash], token_from_row)
                .optional()?)
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.op(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT id, hash, tenant, scope, created_at, revoked_at FROM tokens ORDER BY id")?;
            let rows = stmt.query_map([], token_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn revoke_token(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.op(move |conn| {
            let revoked = conn
                .execute("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, now])?
                > 0;
            bump(conn, "tokens")?;
            Ok(revoked)
        })
        .await
    }

    async fn put_secret(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
        now: Millis,
        max: usize,
    ) -> Result<bool, StoreError> {
        let (tenant, name, value) = (tenant.to_owned(), name.to_owned(), value.to_owned());
        // One writer: the count and the write cannot interleave with another.
        self.op(move |conn| {
            let written = conn
                .prepare_cached(
                    "INSERT INTO secrets (tenant, name, value, updated_at) SELECT ?1, ?2, ?3, ?4 \
                     WHERE EXISTS (SELECT 1 FROM secrets WHERE tenant = ?1 AND name = ?2) \
                        OR (SELECT COUNT(*) FROM secrets WHERE tenant = ?1) < ?5 \
                     ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )?
                .execute(params![tenant, name, value, now, max as i64])?;
            Ok(written > 0)
        })
        .await
    }

    async fn put_queue_limits(
        &self,
        tenant: &str,
        queue: &str,
        limits: &QueueLimits,
        max: usize,
    ) -> Result<bool, StoreError> {
        let (tenant, queue, limits) = (tenant.to_owned(), queue.to_owned(), limits.clone());
        // One writer: the count and the write cannot interleave with another.
        self.op(move |conn| {
            let written = conn
                .prepare_cached(
                    "INSERT INTO queue_limits (tenant, queue, max_running, priority) SELECT ?1, ?2, ?3, ?4 \
                     WHERE EXISTS (SELECT 1 FROM queue_limits WHERE tenant = ?1 AND queue = ?2) \
                        OR (SELECT COUNT(*) FROM queue_limits WHERE tenant = ?1) < ?5 \
                     ON CONFLICT (tenant, queue) DO UPDATE SET max_running = excluded.max_running, \
                       priority = excluded.priority",
                )?
                .execute(params![tenant, queue, limits.max_running, limits.priority, max as i64])?;
            Ok(written > 0)
        })
        .await
    }

    async fn put_job_limits(
        &self,
        tenant: &str,
        job: &str,
        limits: &JobLimits,
        now: Millis,
        max: usize,
    ) -> Result<bool, StoreError> {
        let (tenant, job) = (tenant.to_owned(), job.to_owned());
        let (max_running, tasks, per_ms, tokens) = super::job_limits_columns(limits);
        self.op(move |conn| {
            let written = conn
                .prepare_cached(
                    "INSERT INTO job_limits (tenant, job, max_running, rate_tasks, rate_per_ms, tokens, refilled_at) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
                     WHERE EXISTS (SELECT 1 FROM job_limits WHERE tenant = ?1 AND job = ?2) \
                        OR (SELECT COUNT(*) FROM job_limits WHERE tenant = ?1) < ?8 \
                     ON CONFLICT (tenant, job) DO UPDATE SET max_running = excluded.max_running, \
                       rate_tasks = excluded.rate_tasks, rate_per_ms = excluded.rate_per_ms, \
                       tokens = excluded.tokens, refilled_at = excluded.refilled_at",
                )?
                .execute(params![tenant, job, max_running, tasks, per_ms, tokens, now, max as i64])?;
            Ok(written > 0)
        })
        .await
    }

    async fn delete_limits(&self, tenant: &str, job: bool, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        let sql = if job {
            "DELETE FROM job_limits WHERE tenant = ?1 AND job = ?2"
        } else {
            "DELETE FROM queue_limits WHERE tenant = ?1 AND queue = ?2"
        };
        self.op(move |conn| Ok(conn.execute(sql, [tenant, name])? > 0)).await
    }

    async fn limits(&self, tenant: &str) -> Result<LimitRows, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |conn| {
            let queues = conn
                .prepare_cached(
                    "SELECT queue, max_running, priority FROM queue_limits WHERE tenant = ?1 ORDER BY queue",
                )?
                .query_map([&tenant], |r| Ok((r.get(0)?, QueueLimits { max_running: r.get(1)?, priority: r.get(2)? })))?
                .collect::<Result<_, _>>()?;
            let jobs = conn
                .prepare_cached(
                    "SELECT job, max_running, rate_tasks, rate_per_ms FROM job_limits WHERE tenant = ?1 ORDER BY job",
                )?
                .query_map([&tenant], |r| Ok((r.get(0)?, super::job_limits_of(r.get(1)?, r.get(2)?, r.get(3)?))))?
                .collect::<Result<_, _>>()?;
            Ok((queues, jobs))
        })
        .await
    }

    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.op(
            move |conn| Ok(conn.execute("DELETE FROM secrets WHERE tenant = ?1 AND name = ?2", [tenant, name])? > 0),
        )
        .await
    }

    async fn secret_names(&self, tenant: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        let tenant = tenant.to_owned();
        self.op(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT name, updated_at FROM secrets WHERE tenant = ?1 ORDER BY name")?;
            let names = statement.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            Ok(names)
        })
        .await
    }

    async fn secrets(&self, tenant: &str, names: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let (tenant, names) = (tenant.to_owned(), names.to_vec());
        self.op(move |conn| {
            let mut statement = conn.prepare_cached("SELECT value FROM secrets WHERE tenant = ?1 AND name = ?2")?;
            let mut values = HashMap::with_capacity(names.len());
            for name in names {
                if let Some(value) = statement.query_row([&tenant, &name], |r| r.get(0)).optional()? {
                    values.insert(name, value);
                }
            }
            Ok(values)
        })
        .await
    }

    async fn put_upload(&self, upload: UploadRow) -> Result<(), StoreError> {
        self.op(move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO uploads (tenant, id, state, name, reason, size, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(rusqlite::params![
                upload.tenant,
                upload.id,
                upload.state.as_str(),
                upload.name,
                upload.reason,
                i64::try_from(upload.size).unwrap_or(i64::MAX),
                upload.created_at,
                upload.updated_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, tenant: &str, id: &str) -> Result<Option<UploadRow>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.op(move |conn| {
            let mut statement = conn.prepare_cached(&format!("{UPLOAD_SELECT} WHERE tenant = ?1 AND id = ?2"))?;
            let mut rows = statement.query_map([tenant, id], upload_from_row)?;
            rows.next().transpose()?.transpose()
        })
        .await
    }

    async fn uploads(&self, tenant: &str, since: Millis) -> Result<Vec<UploadRow>, StoreError> {
        let tenant = tenant.to_owned();
        self.op(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "{UPLOAD_SELECT} WHERE tenant = ?1 AND updated_at >= ?2 ORDER BY updated_at DESC LIMIT {}",
                super::MAX_UPLOADS_LISTED
            ))?;
            let rows = statement.query_map(rusqlite::params![tenant, since], upload_from_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn insert_held(&self, task: NewTask, options: String) -> Result<crate::task::TaskId, StoreError> {
        self.op(move |conn| {
            let task = NewTask { run_at: HELD_RUN_AT, expires_at: None, overlap_key: None, ..task };
            let Inserted::Task(id) = insert_task(conn, &task)? else {
                return Err(StoreError::Corrupt("a task without an overlap key was a duplicate".into()));
            };
            conn.prepare_cached("UPDATE tasks SET reason = 'compiling' WHERE id = ?1")?.execute([&id])?;
            conn.prepare_cached("INSERT INTO held_tasks (task_id, tenant, version, options) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![id, task.tenant, task.version, options])?;
            Ok(id)
        })
        .await
    }

    async fn tree(&self, root: &str, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let Some(root) = id_param(root) else { return Ok(Vec::new()) };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 \
                 UNION ALL SELECT {TASK_COLUMNS} FROM tasks WHERE root_task = ?1 AND id <> ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![root, limit], task_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn tasks_after(&self, after: i64, limit: usize) -> Result<Vec<Aged>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, tenant, state, queued_at, finished_at FROM tasks WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = statement.query_map(params![after, limit], |r| {
                let state: String = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, state, r.get(3)?, r.get(4)?))
            })?;
            rows.map(|row| {
                let (id, tenant, state, queued_at, finished_at) = row?;
                let state =
                    TaskState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?;
                Ok(Aged { id, tenant, state, queued_at, finished_at })
            })
            .collect()
        })
        .await
    }

    async fn delete_finished(&self, ids: Vec<i64>) -> Result<u64, StoreError> {
        self.op(move |conn| {
            // A workflow's step goes only once its whole workflow is over:
            // a later stage reads the results of the one before.
            let mut delete = conn.prepare_cached(
                "DELETE FROM tasks WHERE id = ?1 AND state IN ('success', 'failure', 'revoked') \
                 AND (workflow IS NULL OR NOT EXISTS (SELECT 1 FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
                   WHERE s.workflow_id = tasks.workflow AND t.state IN ('queued', 'retry', 'started')))",
            )?;
            let mut held = conn.prepare_cached("DELETE FROM held_tasks WHERE task_id = ?1")?;
            let mut attempts = conn.prepare_cached("DELETE FROM attempts WHERE task_id = ?1")?;
            // A workflow goes with its last step.
            let mut step = conn.prepare_cached("DELETE FROM workflow_steps WHERE task_id = ?1 RETURNING workflow_id")?;
            let mut workflow = conn.prepare_cached(
                "DELETE FROM workflows WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM workflow_steps WHERE workflow_id = ?1)",
            )?;
            let mut deleted = 0;
            for id in ids {
                let gone = delete.execute([id])?;
                deleted += gone as u64;
                held.execute([id])?;
                if gone > 0 {
                    attempts.execute([id])?;
                    if let Some(w) = step.query_row([id], |r| r.get::<_, i64>(0)).optional()? {
                        workflow.execute([w])?;
                    }
                }
            }
            Ok(deleted)
        })
        .await
    }

    async fn attempts(&self, id: &str, limit: usize) -> Result<Vec<AttemptRecord>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(Vec::new()) };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = ?1 ORDER BY attempt DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![id, limit], |r| {
                Ok((
                    AttemptRecord {
                        attempt: r.get(0)?,
                        lease: r.get(1)?,
                        started_at: r.get(2)?,
                        finished_at: r.get(3)?,
                        state: TaskState::Retry,
                        reason: r.get(5)?,
                        error: r.get(6)?,
                        fuel: r.get::<_, Option<i64>>(7)?.map(super::count),
                        wall_time_us: r.get::<_, Option<i64>>(8)?.map(super::count),
                        log: r.get(9)?,
                        http: super::http_usage(r.get(10)?, r.get(11)?, r.get(12)?),
                    },
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut attempts = rows
                .map(|row| {
                    let (attempt, state) = row?;
                    let state = TaskState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("attempt state {state}")))?;
                    Ok(AttemptRecord { state, ..attempt })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            attempts.reverse();
            Ok(attempts)
        })
        .await
    }

    async fn record_activity(&self, rows: Vec<ActivityRow>) -> Result<(), StoreError> {
        self.op(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO activity ({ACTIVITY_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?;
            for row in rows {
                stmt.execute(params![
                    row.tenant,
                    row.minute,
                    row.job,
                    row.node,
                    super::stored(row.started),
                    super::stored(row.succeeded),
                    super::stored(row.failed),
                    super::stored(row.retried),
                    super::stored(row.revoked),
                    super::stored(row.fuel),
                    super::stored(row.wall_time_us),
                    super::waits_text(&row.waits)
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn activity(&self, tenant: Option<&str>, since: Millis) -> Result<Vec<ActivityRow>, StoreError> {
        let tenant = tenant.map(str::to_owned);
        self.read(move |conn| {
            // Two statements, so that a tenant's is planned on its key.
            let mut stmt = match tenant {
                Some(_) => conn.prepare_cached(&format!(
                    "SELECT {ACTIVITY_COLUMNS} FROM activity WHERE tenant = ?1 AND minute >= ?2"
                ))?,
                None => conn.prepare_cached(&format!(
                    "SELECT {ACTIVITY_COLUMNS} FROM activity WHERE ?1 IS NULL AND minute >= ?2"
                ))?,
            };
            let rows = stmt.query_map(params![tenant, since], |r| {
                Ok((
                    ActivityRow {
                        tenant: r.get(0)?,
                        minute: r.get(1)?,
                        job: r.get(2)?,
                        node: r.get(3)?,
                        started: super::count(r.get(4)?),
                        succeeded: super::count(r.get(5)?),
                        failed: super::count(r.get(6)?),
                        retried: super::count(r.get(7)?),
                        revoked: super::count(r.get(8)?),
                        fuel: super::count(r.get(9)?),
                        wall_time_us: super::count(r.get(10)?),
                        waits: Vec::new(),
                    },
                    r.get::<_, String>(11)?,
                ))
            })?;
            rows.map(|row| {
                let (row, waits) = row?;
                Ok(ActivityRow { waits: super::waits_parse(&waits)?, ..row })
            })
            .collect()
        })
        .await
    }

    async fn settle_children(&self, now: Millis) -> Result<(u64, u64), StoreError> {
        self.op(move |conn| {
            let parents: Vec<(i64, Option<i64>, Option<String>)> = conn
                .prepare_cached(
                    "SELECT DISTINCT p.parent_id, t.attempt, t.state FROM pending_children p \
                     LEFT JOIN tasks t ON t.id = p.parent_id \
                     WHERE t.id IS NULL OR NOT (t.state = 'started' AND t.attempt = p.attempt)",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut settled = (0, 0);
            for (parent, attempt, state) in parents {
                let at = match (attempt, state.as_deref().and_then(TaskState::parse)) {
                    (Some(attempt), Some(state)) => Some((u32::try_from(attempt).unwrap_or(0), state)),
                    _ => None,
                };
                let (released, discarded) = settle_children(conn, parent, at, now)?;
                settled = (settled.0 + released, settled.1 + discarded);
            }
            Ok(settled)
        })
        .await
    }

    async fn insert_workflow(
        &self,
        tenant: &str,
        stages: Vec<Vec<NewTask>>,
        tokens: Tokens,
        now: Millis,
    ) -> Result<Option<InsertedWorkflow>, StoreError> {
        let tenant = tenant.to_owned();
        self.op(move |conn| {
            if !take_tokens(conn, &tokens)? {
                return Ok(None);
            }
            let workflow: i64 = conn
                .prepare_cached("INSERT INTO workflows (tenant, created_at) VALUES (?1, ?2) RETURNING id")?
                .query_row(params![tenant, now], |r| r.get(0))?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO tasks (job, version, args, state, priority, queued_at, run_at, expires_at, max_retries, \
                 depth, tenant, reason, workflow, from_task, root_task, queue) \
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?12, ?9, ?10, ?11, ?13, ?14, ?15) RETURNING id",
            )?;
            let mut pending = conn.prepare_cached(
                "INSERT INTO pending_children (task_id, parent_id, attempt, delay, expiry) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut step = conn.prepare_cached(
                "INSERT INTO workflow_steps (workflow_id, stage, position, task_id) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut ids = Vec::with_capacity(stages.len());
            for (stage, tasks) in stages.iter().enumerate() {
                let mut stage_ids = Vec::with_capacity(tasks.len());
                for (position, task) in tasks.iter().enumerate() {
                    // The first stage of a workflow a job started waits for
                    // its attempt, as a child does.
                    let (run_at, expires_at, reason) = match (stage, &task.pending) {
                        (0, None) => (task.run_at, task.expires_at, None),
                        (0, Some(_)) => (HELD_RUN_AT, None, Some(PENDING_REASON)),
                        _ => (HELD_RUN_AT, None, Some(WORKFLOW_REASON)),
                    };
                    let id: i64 = insert.query_row(
                        params![
                            task.job,
                            task.version,
                            task.args,
                            task.priority,
                            task.queued_at,
                            run_at,
                            expires_at,
                            task.max_retries,
                            task.tenant,
                            reason,
                            workflow,
                            task.depth,
                            task.from_task.as_deref().and_then(id_param),
                            task.root_task.as_deref().and_then(id_param),
                            task.queue
                        ],
                        |r| r.get(0),
                    )?;
                    if let (0, Some(p)) = (stage, &task.pending) {
                        pending.execute(params![id, id_param(&p.parent), p.attempt, p.delay, p.expiry])?;
                    }
                    step.execute(params![workflow, stage as i64, position as i64, id])?;
                    stage_ids.push(id.to_string());
                }
                ids.push(stage_ids);
            }
            Ok(Some(InsertedWorkflow { id: workflow.to_string(), stages: ids }))
        })
        .await
    }

    async fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(None) };
        self.read(move |conn| {
            let Some((tenant, created_at)) = conn
                .prepare_cached("SELECT tenant, created_at FROM workflows WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {}, s.stage FROM workflow_steps s JOIN tasks ON tasks.id = s.task_id \
                 WHERE s.workflow_id = ?1 ORDER BY s.stage, s.position",
                super::step_columns(TASK_COLUMNS)
            ))?;
            let steps = stmt.query_map([id], |r| Ok((r.get::<_, i64>(31)?, task_from_row(r)?)))?;
            let steps = steps.collect::<Result<Vec<_>, _>>()?;
            Ok(Some(WorkflowRecord { id: id.to_string(), tenant, created_at, stages: super::by_stage(steps) }))
        })
        .await
    }

    async fn abort_workflows(&self, now: Millis) -> Result<Vec<Expired>, StoreError> {
        self.op(move |conn| {
            let mut stmt = conn.prepare_cached(ABORT_WORKFLOWS)?;
            let aborted = stmt.query_map([now], |r| {
                let task = Expired { id: r.get::<_, i64>(0)?.to_string(), tenant: r.get(1)?, job: r.get(2)? };
                Ok((task, r.get::<_, Option<i64>>(3)?))
            })?;
            let aborted = aborted.collect::<Result<Vec<_>, _>>()?;
            // A workflow a job started is of its tree, whose count gets
            // back the steps that will never run.
            let mut shrink = conn.prepare_cached("UPDATE tasks SET tree_size = MAX(1, tree_size - 1) WHERE id = ?1")?;
            for (_, root) in &aborted {
                if let Some(root) = root {
                    shrink.execute([root])?;
                }
            }
            Ok(aborted.into_iter().map(|(task, _)| task).collect())
        })
        .await
    }

    async fn record_progress(&self, reports: Vec<(String, String)>) -> Result<Vec<String>, StoreError> {
        self.op(move |conn| {
            let mut stmt = conn
                .prepare_cached("UPDATE tasks SET progress = ?2 WHERE id = ?3 AND state = 'started' AND lease = ?1")?;
            let mut recorded = Vec::with_capacity(reports.len());
            for (lease, progress) in reports {
                if stmt.execute(params![lease, progress, super::lease_task_id(&lease)])? > 0 {
                    recorded.push(lease);
                }
            }
            Ok(recorded)
        })
        .await
    }

    async fn prune_uniques(&self, now: Millis) -> Result<u64, StoreError> {
        self.op(move |conn| Ok(conn.prepare_cached("DELETE FROM uniques WHERE until <= ?1")?.execute([now])? as u64))
            .await
    }

    async fn prune_activity(&self, before: Millis) -> Result<u64, StoreError> {
        self.op(
            move |conn| Ok(conn.prepare_cached("DELETE FROM activity WHERE minute < ?1")?.execute([before])? as u64),
        )
        .await
    }

    async fn held_uploads(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached("SELECT DISTINCT tenant, version FROM held_tasks")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn held_tasks(&self, tenant: &str, version: &str, limit: usize) -> Result<Vec<HeldTask>, StoreError> {
        let (tenant, version) = (tenant.to_owned(), version.to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.op(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT h.task_id, t.job, t.args, h.options, t.queued_at FROM held_tasks h \
                 JOIN tasks t ON t.id = h.task_id WHERE h.tenant = ?1 AND h.version = ?2 ORDER BY h.task_id LIMIT ?3",
            )?;
            let rows = statement.query_map(params![tenant, version, limit], |r| {
                Ok(HeldTask {
                    id: r.get::<_, i64>(0)?.to_string(),
                    job: r.get(1)?,
                    args: r.get(2)?,
                    options: r.get(3)?,
                    queued_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn settle_held(
        &self,
        settled: Vec<(crate::task::TaskId, Settle)>,
        now: Millis,
    ) -> Result<Vec<crate::task::TaskId>, StoreError> {
        self.op(move |conn| {
            let mut ended = Vec::new();
            for (id, settle) in settled {
                let Some(id) = id_param(&id) else { continue };
                conn.prepare_cached("DELETE FROM held_tasks WHERE task_id = ?1")?.execute([id])?;
                // Still held: not revoked meanwhile.
                let held = "id = ?1 AND state = 'queued' AND reason = 'compiling'";
                let (reason, error) = match settle {
                    Settle::Due { priority, run_at, expires_at, max_retries, overlap_key } => {
                        let taken = overlapping(conn, id, overlap_key.as_deref())?;
                        match taken {
                            None => {
                                conn.prepare_cached(&format!(
                                    "UPDATE tasks SET reason = NULL, priority = ?2, run_at = ?3, expires_at = ?4, \
                                     max_retries = ?5, overlap_key = ?6 WHERE {held}"
                                ))?
                                .execute(params![
                                    id,
                                    priority,
                                    run_at,
                                    expires_at,
                                    max_retries,
                                    overlap_key
                                ])?;
                                continue;
                            }
                            Some(other) => (
                                "duplicate".to_owned(),
                                format!("task {other} of the same job with the same overlap key is waiting or running"),
                            ),
                        }
                    }
                    Settle::Fail { reason, error } => (reason, error),
                };
                let state = if reason == "duplicate" { "revoked" } else { "failure" };
                let changed = conn
                    .prepare_cached(&format!(
                        "UPDATE tasks SET state = ?2, reason = ?3, error = ?4, finished_at = ?5 WHERE {held}"
                    ))?
                    .execute(params![id, state, reason, error, now])?;
                if changed > 0 {
                    ended.push(id.to_string());
                }
            }
            Ok(ended)
        })
        .await
    }

    async fn beat(&self, node: &str, now: Millis, compiled: Vec<String>, first: bool) -> Result<(), StoreError> {
        let node = node.to_owned();
        let forget = now.saturating_sub(super::to_millis(super::FORGET_NODES_AFTER));
        self.op(move |conn| {
            conn.prepare_cached(
                "DELETE FROM node_versions WHERE node = ?1 OR node IN (SELECT id FROM nodes WHERE seen_at < ?2)",
            )?
            .execute(params![if first { Some(&node) } else { None }, forget])?;
            conn.prepare_cached("DELETE FROM nodes WHERE seen_at < ?1")?.execute([forget])?;
            conn.prepare_cached(
                "INSERT INTO nodes (id, seen_at) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)",
            )?
            .execute(params![node, now])?;
            let mut insert =
                conn.prepare_cached("INSERT OR IGNORE INTO node_versions (node, version) VALUES (?1, ?2)")?;
            for version in compiled {
                insert.execute(params![node, version])?;
            }
            Ok(())
        })
        .await
    }

    async fn ready_nodes(&self, version: &str, since: Millis) -> Result<(u64, u64), StoreError> {
        let version = version.to_owned();
        self.read(move |conn| {
            let (ready, alive): (i64, i64) = conn
                .prepare_cached(
                    "SELECT count(v.node), count(*) FROM nodes n \
                     LEFT JOIN node_versions v ON v.node = n.id AND v.version = ?1 WHERE n.seen_at >= ?2",
                )?
                .query_row(params![version, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok((ready as u64, alive as u64))
        })
        .await
    }
}

/// Records a change of the catalog's `kind` rows.
fn bump(conn: &Connection, kind: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE generations SET generation = generation + 1 WHERE kind = ?1")?.execute([kind])?;
    Ok(())
}

fn schedule_from_row(r: &Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        tenant: r.get(0)?,
        job: r.get(1)?,
        last_run_at: r.get(2)?,
        since: r.get(3)?,
        next_due_at: r.get(4)?,
        name: r.get(5)?,
        plan: r.get(6)?,
    })
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        hash: r.get(1)?,
        tenant: r.get(2)?,
        scope: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const UPLOAD_SELECT: &str = "SELECT tenant, id, state, name, reason, size, created_at, updated_at FROM uploads";

/// An upload row; a state this engine does not know is corruption.
fn upload_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<UploadRow, StoreError>> {
    let state: String = r.get(2)?;
    let Some(state) = UploadState::parse(&state) else {
        return Ok(Err(StoreError::Corrupt(format!("upload state {state}"))));
    };
    Ok(Ok(UploadRow {
        tenant: r.get(0)?,
        id: r.get(1)?,
        state,
        name: r.get(3)?,
        reason: r.get(4)?,
        size: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_store_migrates_into_the_default_tenant() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{} PRAGMA user_version = 1;", MIGRATIONS[0])).unwrap();
        conn.execute_batch(
            "INSERT INTO components (hash, bytes) VALUES ('h', x'00'); \
             INSERT INTO jobs (name, hash, metadata, registered_at) VALUES ('addition', 'h', '{}', 1); \
             INSERT INTO schedules (job, last_run_at) VALUES ('nightly', 5); \
             INSERT INTO tasks (job, version, args, state, queued_at, run_at, max_retries) \
             VALUES ('addition', 'h', '{}', 'queued', 1, 1, 3);",
        )
        .unwrap();
        migrate(&conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let tenant: String =
            conn.query_row("SELECT tenant FROM jobs WHERE name = 'addition'", [], |r| r.get(0)).unwrap();
        assert_eq!(tenant, "default");
        let last: Option<i64> = conn
            .query_row("SELECT last_run_at FROM schedules WHERE tenant = 'default' AND job = 'nightly'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(last, Some(5));
        let tenant: String = conn.query_row("SELECT tenant FROM tasks", [], |r| r.get(0)).unwrap();
        assert_eq!(tenant, "default");
        // Migrating again changes nothing.
        migrate(&conn).unwrap();
    }

    /// With a tenant, every filter's page is read from an index in id order:
    /// never a walk of every task, nor a sort of all that match (what made
    /// a console slow at 1,000,000 tasks).
    #[test]
    fn every_filtered_page_of_a_tenants_tasks_reads_an_index_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let base = TaskFilter { tenant: Some("acme".into()), ..TaskFilter::default() };
        let mut filters = vec![
            base.clone(),
            TaskFilter { job: Some("add".into()), ..base.clone() },
            TaskFilter { from_task: Some("7".into()), ..base.clone() },
            TaskFilter { before_id: Some("1000".into()), job: Some("add".into()), ..base.clone() },
            TaskFilter { queued_after: Some(5), queued_before: Some(9), ..base.clone() },
        ];
        for state in [TaskState::Failure, TaskState::Revoked, TaskState::Success] {
            filters.push(TaskFilter { state: Some(state), ..base.clone() });
            filters.push(TaskFilter { state: Some(state), before_id: Some("1000".into()), ..base.clone() });
        }
        for filter in filters {
            let (sql, values) = list_sql(&filter);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(values), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"), "{filter:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts what it found: {plan}");
        }
        let failed = list_sql(&TaskFilter { state: Some(TaskState::Failure), ..base });
        assert!(failed.0.contains("state = 'failure'"), "{}", failed.0);
    }
}
