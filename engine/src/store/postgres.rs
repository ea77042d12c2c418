//! The scale-out store: several engine nodes on one PostgreSQL database.
//!
//! Locking strategy: claims take due tasks with `FOR UPDATE SKIP LOCKED`,
//! in batches, so nodes never wait on each other's claims. `max_running`
//! holds across nodes because a claim takes an advisory lock per tenant
//! (`pg_try_advisory_xact_lock`; a tenant another node is claiming for is
//! skipped, not waited for) and counts the tenant's started tasks under it.
//! A claim is one call of the server-side function `wasmjob_claim`
//! (`postgres_schema_v6.sql`), one round trip, whose commit does not wait
//! for the disk ([`CLAIM`]: a claim lost with the server is claimed
//! again). Schedules are claimed the same way (`SKIP LOCKED`, then
//! a claim that lasts a lease), and a tick's write is a compare-and-set
//! with its task's insert in one transaction. Other changes are one
//! statement each.
//!
//! Notifications: each node `LISTEN`s on a connection of its own,
//! reconnecting when it drops, and turns notifications into [`Signals`]:
//! `wasmjob_tasks` (tasks queued or due again; a node leaves its own
//! notifications be, [`NODE_SETTING`]), `wasmjob_catalog` (jobs, tenants, tokens
//! or schedules changed), `wasmjob_finished` (the ids of tasks that ended)
//! and `wasmjob_revoke` (the id of a running task to stop). After a
//! reconnect every consumer re-reads the store, since notifications sent
//! meanwhile are lost. Time comes from the database ([`DbClock`]), so nodes
//! with skewed clocks agree on leases, expiry and schedules.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls, Row};

use super::{
    ACTIVITY_COLUMNS, ATTEMPT_COLUMNS, ATTEMPT_LOG_KEPT, ActivityRow, Aged, AttemptRecord, Claim, ClaimRequest,
    ClaimedSchedules, ClaimedTask, Completion, Expired, Generations, HELD_RUN_AT, HeldLease, HeldTask, Inserted,
    InsertedWorkflow, JobRow, LimitRows, Millis, NewTask, PENDING_REASON, Rescued, Retried, RevokeScope, RevokedMany,
    ScheduleClaim, ScheduleRow, ScheduleTick, Settle, Store, StoreError, TaskFilter, TaskRecord, TaskState, TenantRow,
    TickWrite, TokenRow, Tokens, UploadRow, UploadState,
};
use crate::clock::Clock;
use crate::events::{Stamped, WATCH_RENEW, Watching};
use crate::limits::{JobLimits, QueueLimits};
use crate::signals::Signals;

/// Connections per node. Default 16.
const POOL_SIZE: usize = 16;
/// The channel inserts of tasks notify (by trigger, schema v8), naming
/// the inserting node ([`NODE_SETTING`], schema v21) or nobody; and
/// [`NOTIFY_DUE`], for tasks that are due again.
const CHANNEL: &str = "wasmjob_tasks";
/// The setting by which a node's connections name it in what they notify
/// on [`CHANNEL`]: a node hears its own notifications and leaves them be,
/// having woken its workers as it wrote.
const NODE_SETTING: &str = "wasmjob.node";
/// Notifies [`CHANNEL`] that waiting tasks are due (children and workflow
/// steps released, tasks retried or settled), naming this node as the
/// insert trigger does: each caller wakes this node's workers itself.
static NOTIFY_DUE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT pg_notify('{CHANNEL}', coalesce(current_setting('{NODE_SETTING}', true), ''))")
});
/// The channel catalog changes notify.
const CATALOG: &str = "wasmjob_catalog";
/// Channel: a named schedule was made, replaced, paused or resumed (its
/// due time changed): schedulers look again.
const SCHEDULES: &str = "wasmjob_schedules";
/// The channel endings notify, with the ended tasks' ids.
const FINISHED: &str = "wasmjob_finished";
/// The channel revoke requests of running tasks notify, with the task's id.
const REVOKE: &str = "wasmjob_revoke";
/// The channel of events ([`crate::events`]): JSON arrays of events made on
/// the sending node.
const EVENTS: &str = "wasmjob_events";
/// The channel on which nodes say which tenants they watch, and ask
/// ([`crate::events::Watching`]).
const WATCHING: &str = "wasmjob_watching";
/// Longest payload of one notification: PostgreSQL's limit is 8,000 bytes.
const MAX_PAYLOAD: usize = 7900;
/// How long the listener waits before reconnecting. Default 500 ms.
const RECONNECT: Duration = Duration::from_millis(500);
/// The migrations, in order; `wasmjob_schema` records the last one run.
const MIGRATIONS: [&str; 22] = [
    include_str!("postgres_schema.sql"),
    include_str!("postgres_schema_v2.sql"),
    include_str!("postgres_schema_v3.sql"),
    include_str!("postgres_schema_v4.sql"),
    include_str!("postgres_schema_v5.sql"),
    include_str!("postgres_schema_v6.sql"),
    include_str!("postgres_schema_v7.sql"),
    include_str!("postgres_schema_v8.sql"),
    include_str!("postgres_schema_v9.sql"),
    include_str!("postgres_schema_v10.sql"),
    include_str!("postgres_schema_v11.sql"),
    include_str!("postgres_schema_v12.sql"),
    include_str!("postgres_schema_v13.sql"),
    include_str!("postgres_schema_v14.sql"),
    include_str!("postgres_schema_v15.sql"),
    include_str!("postgres_schema_v16.sql"),
    include_str!("postgres_schema_v17.sql"),
    include_str!("postgres_schema_v18.sql"),
    include_str!("postgres_schema_v19.sql"),
    include_str!("postgres_schema_v20.sql"),
    include_str!("postgres_schema_v21.sql"),
    include_str!("postgres_schema_v22.sql"),
];

/// Every table of the store (the migrations' and `wasmjob_schema`), as
/// [`drop_tables`] drops them; a test checks that the migrations create no
/// other.
const TABLES: [&str; 26] = [
    "tasks",
    "queue_limits",
    "job_limits",
    "group_cursors",
    "workflow_steps",
    "workflows",
    "pending_children",
    "uniques",
    "attempts",
    "activity",
    "tasks_live",
    "tasks_done",
    "held_tasks",
    "nodes",
    "node_versions",
    "uploads",
    "schedules",
    "job_versions",
    "jobs",
    "tokens",
    "tenants",
    "components",
    "rates",
    "generations",
    "secrets",
    "wasmjob_schema",
];

/// Every function of the store, as [`drop_tables`] drops them.
const FUNCTIONS: [&str; 3] = ["wasmjob_claim", "wasmjob_pick", "wasmjob_notify_queued"];

/// Drops every table and function of the store in the URL's schema, so that a benchmark
/// starts from an empty store; refuses a URL whose `search_path` names no
/// existing schema (there would be nowhere to create them again).
pub async fn drop_tables(url: &str) -> Result<(), StoreError> {
    let client = connect_once(url).await?;
    let schema: Option<String> = client.query_one("SELECT current_schema()", &[]).await?.get(0);
    if schema.is_none() {
        return Err(StoreError::Database(
            "the store's search_path names no existing schema: CREATE SCHEMA IF NOT EXISTS wjbench first".into(),
        ));
    }
    client.batch_execute(&format!("DROP TABLE IF EXISTS {}", TABLES.join(", "))).await?;
    client.batch_execute(&format!("DROP FUNCTION IF EXISTS {}", FUNCTIONS.join(", "))).await?;
    Ok(())
}

/// `VACUUM ANALYZE` of the tasks in the URL's schema, as autovacuum does
/// in its own time (for benchmarks that want a store in its steady state).
pub async fn vacuum(url: &str) -> Result<(), StoreError> {
    connect_once(url).await?.batch_execute("VACUUM ANALYZE tasks").await?;
    Ok(())
}

/// A connection of its own, outside the pool, for a one-off command.
async fn connect_once(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            // A deadlock's victim may run again as well.
            Some(db)
                if db.code() == &SqlState::T_R_SERIALIZATION_FAILURE
                    || db.code() == &SqlState::T_R_DEADLOCK_DETECTED =>
            {
                StoreError::Conflict(db.message().into())
            }
            Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Database(e.to_string()),
        }
    }
}

/// How many times a statement or transaction that met a
/// [`StoreError::Conflict`] runs again before the error is answered.
const CONFLICT_RETRIES: usize = 10;

/// Evaluates `attempt` (an awaited statement or whole transaction, so that
/// a failed run changed nothing) until it does not fail with a
/// [`StoreError::Conflict`], up to [`CONFLICT_RETRIES`] more times. Under
/// READ COMMITTED a statement that updates or locks a task row which
/// another transaction has just moved between `tasks_live` and
/// `tasks_done` fails instead of skipping the row or following it; run
/// again, it sees the row where it now is. (A macro: an async closure
/// would not be `Send` for every lifetime, as `async_trait` needs.)
macro_rules! again {
    ($attempt:expr) => {{
        let mut left = CONFLICT_RETRIES;
        loop {
            match $attempt {
                Err(StoreError::Conflict(_)) if left > 0 => left -= 1,
                answer => break answer,
            }
        }
    }};
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(format!("no connection: {e}"))
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// Connections that write the plain endings (the completer's batches
    /// without retries, children or workflow steps) with [`GENERIC`]
    /// settings.
    ending: Pool,
    clock: Arc<DbClock>,
    /// Ids of tasks that ended, to notify together ([`notify_endings`]).
    endings: Endings,
}

/// Where the ids of ended tasks go to be notified.
type Endings = tokio::sync::mpsc::UnboundedSender<Vec<String>>;

/// How long endings gather before one notification carries them all: a
/// notification costs the database a lock at commit and a wake-up of
/// every listener, so per-batch notifications cost a busy node about a
/// tenth of its throughput. Waiters on this node are woken at once anyway;
/// this is the delay seen by waiters on other nodes. Default 5 ms.
const NOTIFY_COALESCE: Duration = Duration::from_millis(5);

/// Connections that write the plain endings ([`PostgresStore::ending`]).
/// Default 2: a node's completer writes one batch at a time.
const ENDING_POOL_SIZE: usize = 2;

/// Settings of the connections that write the plain endings: their plan
/// is made once per connection rather than for each batch (planning
/// [`COMPLETE`] for each call cost 0.95-1.00 ms per batch of 64 against
/// 0.78-0.79 ms with one plan, pgbench). With sequential scans and nested
/// loops off, its one cheap plan is led by the id index, bounded by the
/// batch's ids, and joins them to the batch by hash, whatever the live
/// partition's statistics were when it was made (planned on an empty
/// partition, a nested loop read the whole batch again for each row).
const GENERIC: [(&str, &str); 3] =
    [("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off"), ("enable_nestloop", "off")];

impl PostgresStore {
    /// Connects to `url`, migrates the schema, and listens for other nodes'
    /// changes, firing `signals`.
    pub async fn connect(url: &str, signals: Arc<Signals>) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        // This store's name for its inserts' notifications, on each of its
        // connections: random, so that two nodes never share one.
        let node = format!("{:016x}", rand::random::<u64>());
        let given = config.get_options().unwrap_or_default().to_owned();
        let given = format!("{given} -c {NODE_SETTING}={node}");
        // The tasks table starts empty and grows by millions: a generic plan
        // cached while it was small stays in use after it grew (seen: a
        // claim by sequential scan, 17 ms at 20,000 tasks, after 300 claims
        // on an idle queue). Every statement is planned for its parameters
        // instead, which costs a fraction of a millisecond.
        // Every statement reads what committed before it, whatever the
        // database's default: the claim counts the tenant's started tasks
        // after taking its lock, and must see another node's starts
        // committed before that.
        let isolation = "-c default_transaction_isolation=read\\ committed";
        let mut ending = config.clone();
        let generic: String = GENERIC.iter().map(|(name, value)| format!(" -c {name}={value}")).collect();
        ending.options(format!("{given}{generic} {isolation}").trim());
        config.options(format!("{given} -c plan_cache_mode=force_custom_plan {isolation}").trim());
        let pool_of = |config: tokio_postgres::Config, size: usize| {
            let manager =
                Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
            Pool::builder(manager)
                .max_size(size)
                .build()
                .map_err(|e| StoreError::Database(format!("cannot build the connection pool: {e}")))
        };
        let pool = pool_of(config.clone(), POOL_SIZE)?;
        let ending = pool_of(ending, ENDING_POOL_SIZE)?;
        migrate(&pool).await?;

        tokio::spawn(listen(config.clone(), signals.clone(), node));
        let clock = Arc::new(DbClock::default());
        clock.sync(&pool).await?;
        let syncing = clock.clone();
        let sync_pool = pool.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DbClock::SYNC).await;
                if let Err(e) = syncing.sync(&sync_pool).await {
                    tracing::warn!(error = %e, "cannot read the database's clock");
                }
            }
        });
        let (endings, ended) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(notify_endings(pool.clone(), ended));
        if let Some(outgoing) = signals.events.outgoing() {
            tokio::spawn(publish_events(pool.clone(), outgoing));
            tokio::spawn(announce_watching(pool.clone(), signals.clone()));
        }
        Ok(Self { pool, ending, clock, endings })
    }

    /// The database's clock, as this node sees it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Runs one statement, [`again`] if it conflicts.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(sql).await?;
        again!(client.query(&statement, params).await.map_err(StoreError::from))
    }

    /// Runs one statement, [`again`] if it conflicts.
    /// Runs `sql`, an insert into `tenant`'s rows of `table` whose own
    /// `WHERE` refuses a new row past `$3` (`max`) of them; `params` are
    /// `$1` (the tenant), `$2` (the row's name) and `$4...`. Writes of one
    /// tenant's rows of `table` take turns, and each counts what the one
    /// before it committed (read committed, whatever the database's
    /// default), so that the bound holds. Whether it wrote.
    async fn bounded_insert(
        &self,
        table: &str,
        tenant: &str,
        max: usize,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/wasmjob ' || $1 || '/' || $2, 0))",
            &[&table, &tenant],
        )
        .await?;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
        all.insert(2, &max);
        let n = tx.execute(sql, &all).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(sql).await?;
        again!(client.execute(&statement, params).await.map_err(StoreError::from))
    }
}

/// Listens for notifications until the process ends, reconnecting when the
/// connection drops; after each (re)connect every consumer re-reads the
/// store, since what was notified meanwhile is lost.
async fn listen(config: tokio_postgres::Config, signals: Arc<Signals>, node: String) {
    let channels = format!(
        "LISTEN {CHANNEL}; LISTEN {CATALOG}; LISTEN {SCHEDULES}; LISTEN {FINISHED}; LISTEN {REVOKE}; LISTEN {EVENTS}; LISTEN {WATCHING}"
    );
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                // The connection must be polled for `LISTEN` to complete: drive both.
                let mut listening = std::pin::pin!(client.batch_execute(&channels));
                let mut listened = false;
                loop {
                    tokio::select! {
                        result = &mut listening, if !listened => {
                            listened = true;
                            match result {
                                Ok(()) => signals.resync(),
                                Err(e) => break tracing::warn!(error = %e, "cannot LISTEN"),
                            }
                        }
                        message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                dispatch(&signals, &node, n.channel(), n.payload())
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => break tracing::warn!(error = %e, "lost the LISTEN connection"),
                            None => break,
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to listen for notifications"),
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Turns one notification into the signal it stands for, on node `node`
/// (which leaves its own inserts' notifications be).
fn dispatch(signals: &Signals, node: &str, channel: &str, payload: &str) {
    match channel {
        CHANNEL if payload == node => {}
        CHANNEL => signals.queued.notify_one(),
        CATALOG => {
            signals.catalog.notify_one();
            signals.schedules.notify_one();
        }
        SCHEDULES => signals.schedules.notify_one(),
        FINISHED if payload.is_empty() => signals.finished_some(),
        FINISHED => signals.finished(&payload.split(',').map(str::to_owned).collect::<Vec<_>>()),
        REVOKE => signals.stop(payload.to_owned()),
        EVENTS => match serde_json::from_str(payload) {
            Ok(events) => signals.events.received(events),
            Err(e) => tracing::warn!(error = %e, "an events notification this node cannot read"),
        },
        WATCHING => match serde_json::from_str(payload) {
            Ok(watching) => signals.events.heard(watching),
            Err(e) => tracing::warn!(error = %e, "a watching notification this node cannot read"),
        },
        _ => {}
    }
}

/// Notifies `channel` that these tasks ended, as few notifications as
/// their ids fit in.
async fn notify_finished<C: GenericClient + Sync>(client: &C, ids: &[String]) -> Result<(), StoreError> {
    let mut payload = String::new();
    let notify = client.prepare_cached("SELECT pg_notify($1, $2)").await?;
    for id in ids {
        if payload.len() + id.len() + 1 > MAX_PAYLOAD {
            client.execute(&notify, &[&FINISHED, &payload]).await?;
            payload.clear();
        }
        if !payload.is_empty() {
            payload.push(',');
        }
        payload.push_str(id);
    }
    if !payload.is_empty() {
        client.execute(&notify, &[&FINISHED, &payload]).await?;
    }
    Ok(())
}

/// Notifies the ids of ended tasks, gathered over [`NOTIFY_COALESCE`]: the
/// waiters on other nodes wake. A failure to notify only delays them until
/// their recheck.
/// Sends this node's events to the other nodes: gathered for
/// [`NOTIFY_COALESCE`], as JSON arrays of [`Stamped`] events, as few
/// notifications as they fit in. A notification that cannot be sent is
/// lost for the other nodes (their clients' streams miss it).
async fn publish_events(pool: Pool, mut outgoing: tokio::sync::mpsc::UnboundedReceiver<Vec<Arc<Stamped>>>) {
    while let Some(first) = outgoing.recv().await {
        tokio::time::sleep(NOTIFY_COALESCE).await;
        let mut events = first;
        while let Ok(more) = outgoing.try_recv() {
            events.extend(more);
        }
        let mut payloads = vec![String::from("[")];
        for event in &events {
            let Ok(text) = serde_json::to_string(event.as_ref()) else { continue };
            let payload = payloads.last_mut().expect("one payload at least");
            if payload.len() + text.len() + 2 > MAX_PAYLOAD && payload.len() > 1 {
                payload.push(']');
                payloads.push(String::from("["));
            }
            let payload = payloads.last_mut().expect("one payload at least");
            if payload.len() > 1 {
                payload.push(',');
            }
            payload.push_str(&text);
        }
        if let Some(last) = payloads.last_mut() {
            last.push(']');
        }
        if let Err(e) = notify_all(&pool, EVENTS, &payloads).await {
            tracing::warn!(error = %e, events = events.len(), "cannot send events to the other nodes");
        }
    }
}

/// Sends `payloads` on `channel`, one notification each, in one statement.
async fn notify_all(pool: &Pool, channel: &str, payloads: &[String]) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached("SELECT pg_notify($1, unnest($2::text[]))").await?;
    client.execute(&statement, &[&channel, &payloads]).await?;
    Ok(())
}

/// Tells the other nodes which tenants this node watches: when it starts
/// watching one, when asked, and every [`WATCH_RENEW`] while it watches
/// any; asks them in turn after each (re)connect of the listener, when
/// their word may have been missed.
async fn announce_watching(pool: Pool, signals: Arc<Signals>) {
    let events = signals.events.clone();
    // An interval, not a sleep per turn: questions in between do not
    // put the renewal off.
    let mut renew = tokio::time::interval(WATCH_RENEW);
    loop {
        let what = tokio::select! {
            _ = signals.ask.notified() => events.asking(),
            _ = events.announce.notified() => events.watching(),
            _ = renew.tick() => events.watching(),
        };
        let payloads = match what {
            Watching::Tenants { node, tenants } if !tenants.is_empty() => {
                // As many notifications as the names fit in.
                let mut payloads = Vec::new();
                let mut group: Vec<String> = Vec::new();
                let mut size = 0;
                for tenant in tenants {
                    if size + tenant.len() + 3 > MAX_PAYLOAD / 2 && !group.is_empty() {
                        payloads.push(Watching::Tenants { node: node.clone(), tenants: std::mem::take(&mut group) });
                        size = 0;
                    }
                    size += tenant.len() + 3;
                    group.push(tenant);
                }
                payloads.push(Watching::Tenants { node, tenants: group });
                payloads
            }
            Watching::Tenants { .. } => continue,
            asking => vec![asking],
        };
        let payloads: Vec<String> = payloads.iter().filter_map(|p| serde_json::to_string(p).ok()).collect();
        if let Err(e) = notify_all(&pool, WATCHING, &payloads).await {
            tracing::warn!(error = %e, "cannot tell the other nodes which tenants this node watches");
        }
    }
}

async fn notify_endings(pool: Pool, mut ended: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>) {
    while let Some(first) = ended.recv().await {
        tokio::time::sleep(NOTIFY_COALESCE).await;
        let mut ids = first;
        while let Ok(more) = ended.try_recv() {
            ids.extend(more);
        }
        let notified = async {
            let client = pool.get().await?;
            notify_finished(&client, &ids).await
        };
        if let Err(e) = notified.await {
            tracing::warn!(error = %e, "cannot notify task endings");
        }
    }
}

/// Runs the migrations not yet run, under an advisory lock so that nodes
/// starting together do not race.
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7140233); \
         CREATE TABLE IF NOT EXISTS wasmjob_schema (version INTEGER NOT NULL)",
    )
    .await?;
    let version: Option<i32> =
        tx.query_opt("SELECT max(version) FROM wasmjob_schema", &[]).await?.and_then(|r| r.get(0));
    let done = usize::try_from(version.unwrap_or(0)).unwrap_or(0);
    if done > MIGRATIONS.len() {
        return Err(StoreError::Database(format!("the database's schema version {done} is newer than this engine")));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(migration).await?;
        tx.execute("INSERT INTO wasmjob_schema (version) VALUES ($1)", &[&(i as i32 + 1)]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The database's time: the offset between it and this node's clock,
/// measured at connect and every [`DbClock::SYNC`].
#[derive(Default)]
pub struct DbClock {
    offset_ms: AtomicI64,
}

impl DbClock {
    const SYNC: Duration = Duration::from_secs(30);

    async fn sync(&self, pool: &Pool) -> Result<(), StoreError> {
        let client = pool.get().await?;
        let before = Utc::now().timestamp_millis();
        let row = client.query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", &[]).await?;
        let after = Utc::now().timestamp_millis();
        let db: i64 = row.get(0);
        self.offset_ms.store(db - (before + after) / 2, Ordering::Relaxed);
        Ok(())
    }
}

impl Clock for DbClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

use crate::task::TaskId;
use crate::task::parse_id as id_param;
use crate::workflow::WorkflowRecord;

const TASK_COLUMNS: &str = "id, job, version, args, state, reason, priority, queued_at, run_at, expires_at, \
    started_at, finished_at, attempt, max_retries, result, error, fuel, wall_time_us, log, from_task, \
    COALESCE(root_task, id), depth, overlap_key, tenant, rescued_lease, http_requests, http_bytes_sent, \
    http_bytes_received, progress, workflow, queue";

fn task_from_row(row: &Row) -> TaskRecord {
    let state: String = row.get(4);
    TaskRecord {
        id: row.get::<_, i64>(0).to_string(),
        job: row.get(1),
        version: row.get(2),
        args: row.get(3),
        state: TaskState::parse(&state).unwrap_or(TaskState::Failure),
        reason: row.get(5),
        priority: row.get(6),
        queued_at: row.get(7),
        run_at: row.get(8),
        expires_at: row.get(9),
        started_at: row.get(10),
        finished_at: row.get(11),
        attempt: row.get::<_, i32>(12) as u32,
        max_retries: row.get::<_, i32>(13) as u32,
        result: row.get(14),
        error: row.get(15),
        fuel: row.get::<_, Option<i64>>(16).map(|f| f as u64),
        wall_time_us: row.get::<_, Option<i64>>(17).map(|f| f as u64),
        log: row.get(18),
        from_task: row.get::<_, Option<i64>>(19).map(|i| i.to_string()),
        root_task: row.get::<_, Option<i64>>(20).map(|i| i.to_string()),
        depth: row.get::<_, i32>(21) as u32,
        overlap_key: row.get(22),
        tenant: row.get(23),
        rescued_lease: row.get(24),
        http: super::http_usage(row.get(25), row.get(26), row.get(27)),
        progress: row.get(28),
        workflow: row.get::<_, Option<i64>>(29).map(|i| i.to_string()),
        queue: row.get(30),
    }
}

const INSERT_TASK: &str = "INSERT INTO tasks (job, version, args, state, priority, queued_at, run_at, expires_at, \
    max_retries, overlap_key, from_task, root_task, depth, tenant, reason, queue) \
    VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING \
    RETURNING id";

/// Settles the children held for ended attempts: `$1`, `$2`, `$3` are the
/// parents' ids, and the attempt each is at and its state now (`NULL`: the
/// parent is gone); `$4` is now. Children of a later attempt than that one
/// (queued by a claim made since it was read) are left alone.
/// Children of an attempt that succeeded are released (due after their
/// delay); of any other ended attempt, discarded (revoked, reason
/// `discarded`, their unique keys freed and their tree's count given back);
/// of a running attempt, kept. Answers how many were released and
/// discarded.
const SETTLE_CHILDREN: &str = "WITH ended AS ( \
      SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[]) AS e(id, attempt, state)), \
    released AS ( \
      UPDATE tasks t SET reason = NULL, run_at = $4 + p.delay, expires_at = $4 + p.delay + p.expiry \
      FROM pending_children p JOIN ended e ON e.id = p.parent_id AND e.attempt IS NOT DISTINCT FROM p.attempt \
        AND e.state = 'success' \
      WHERE t.id = p.task_id AND t.state = 'queued' AND t.reason = 'parent' RETURNING t.id), \
    discarded AS ( \
      UPDATE tasks t SET state = 'revoked', reason = 'discarded', finished_at = $4 \
      FROM pending_children p JOIN ended e ON e.id = p.parent_id \
        AND (e.attempt IS NULL OR p.attempt <= e.attempt) \
        AND NOT (e.attempt IS NOT DISTINCT FROM p.attempt AND e.state IN ('started', 'success')) \
      WHERE t.id = p.task_id AND t.state = 'queued' AND t.reason = 'parent' RETURNING t.id, t.root_task), \
    freed AS (DELETE FROM uniques u USING discarded d WHERE u.task_id = d.id), \
    shrunk AS ( \
      UPDATE tasks r SET tree_size = greatest(1, r.tree_size - d.n) \
      FROM (SELECT root_task, count(*) AS n FROM discarded WHERE root_task IS NOT NULL GROUP BY root_task) d \
      WHERE r.id = d.root_task), \
    gone AS ( \
      DELETE FROM pending_children p USING ended e WHERE p.parent_id = e.id \
        AND (e.attempt IS NULL OR p.attempt <= e.attempt) \
        AND NOT (e.attempt IS NOT DISTINCT FROM p.attempt AND e.state = 'started')) \
    SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM discarded)";

/// Inserts many tasks without an overlap key (which cannot conflict) in one
/// statement, in the order given: ids come from one sequence, so the
/// returned ids sorted are the tasks' ids in that order.
const INSERT_TASKS: &str = "INSERT INTO tasks (job, version, args, state, priority, queued_at, run_at, expires_at, \
    max_retries, from_task, root_task, depth, tenant, queue) \
    SELECT job, version, args, 'queued', priority, queued_at, run_at, expires_at, max_retries, from_task, \
      root_task, depth, tenant, queue \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::bigint[], \
      $8::int[], $9::bigint[], $10::bigint[], $11::int[], $12::text[], $13::text[]) WITH ORDINALITY \
      AS t(job, version, args, priority, queued_at, run_at, expires_at, max_retries, from_task, root_task, depth, \
        tenant, queue, n) \
    ORDER BY n RETURNING id";

/// The statement that takes tokens from a rate bucket, if it has that many
/// (refilled at its rate since it was last taken from, up to its burst),
/// its parameters numbered from `$first`: bucket, tokens, rate per second,
/// burst, now.
fn take_tokens_sql(first: usize) -> String {
    let [bucket, n, rate, burst, now] = std::array::from_fn(|i| format!("${}", first + i));
    format!(
        "INSERT INTO rates (tenant, tokens, refilled_at) \
           SELECT {bucket}::text, {burst}::float8 - {n}::float8, {now}::bigint WHERE {burst}::float8 >= {n}::float8 \
         ON CONFLICT (tenant) DO UPDATE SET \
           tokens = least({burst}, rates.tokens + greatest(0, {now} - rates.refilled_at) * {rate}::float8 / 1000.0) \
             - {n}, \
           refilled_at = greatest(rates.refilled_at, {now}) \
         WHERE least({burst}, rates.tokens + greatest(0, {now} - rates.refilled_at) * {rate} / 1000.0) >= {n}"
    )
}

/// [`INSERT_TASKS`] that first takes tokens (`$14`..`$18`), and inserts
/// nothing if the bucket has too few: one statement.
static INSERT_TASKS_TAKING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let insert =
        INSERT_TASKS.replace("ORDER BY n RETURNING id", "WHERE EXISTS (SELECT 1 FROM taken) ORDER BY n RETURNING id");
    format!("WITH taken AS ({} RETURNING 1) {insert}", take_tokens_sql(14))
});

/// Another task of task `$1`'s tenant and job, waiting or running, with
/// overlap key `$2` (if NULL, task `$1`'s own): the one it would duplicate.
const OVERLAPPING: &str = "SELECT o.id FROM tasks o JOIN tasks t ON t.id = $1 \
    WHERE o.tenant = t.tenant AND o.job = t.job AND o.overlap_key = COALESCE($2, t.overlap_key) \
    AND o.id <> t.id AND o.state IN ('queued', 'retry', 'started')";

const FIND_DUPLICATE: &str = "SELECT id FROM tasks WHERE tenant = $3 AND job = $1 AND overlap_key = $2 \
    AND state IN ('queued', 'retry', 'started')";

impl PostgresStore {
    /// Inserts `tasks`, none with an overlap key, in one statement; answers
    /// their ids in order.
    async fn insert_plain<C: GenericClient + Sync>(client: &C, tasks: &[&NewTask]) -> Result<Vec<i64>, StoreError> {
        let ids = Self::insert_plain_taking(client, tasks, None).await?;
        Ok(ids.expect("without tokens nothing refuses"))
    }

    /// [`PostgresStore::insert_plain`] that takes `tokens` in the same
    /// statement; `None` if the bucket has too few (nothing inserted).
    async fn insert_plain_taking<C: GenericClient + Sync>(
        client: &C,
        tasks: &[&NewTask],
        tokens: Option<&Tokens>,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let insert = match tokens {
            Some(_) => client.prepare_cached(&INSERT_TASKS_TAKING).await?,
            None => client.prepare_cached(INSERT_TASKS).await?,
        };
        let column = |f: fn(&NewTask) -> &str| tasks.iter().map(|t| f(t)).collect::<Vec<&str>>();
        let (jobs, versions, args, tenants) =
            (column(|t| &t.job), column(|t| &t.version), column(|t| &t.args), column(|t| &t.tenant));
        let queues = column(|t| &t.queue);
        let priorities: Vec<i32> = tasks.iter().map(|t| t.priority).collect();
        let queued_at: Vec<i64> = tasks.iter().map(|t| t.queued_at).collect();
        let run_at: Vec<i64> = tasks.iter().map(|t| t.run_at).collect();
        let expires_at: Vec<Option<i64>> = tasks.iter().map(|t| t.expires_at).collect();
        let max_retries: Vec<i32> = tasks.iter().map(|t| t.max_retries as i32).collect();
        let from_task: Vec<Option<i64>> = tasks.iter().map(|t| t.from_task.as_deref().and_then(id_param)).collect();
        let root_task: Vec<Option<i64>> = tasks.iter().map(|t| t.root_task.as_deref().and_then(id_param)).collect();
        let depth: Vec<i32> = tasks.iter().map(|t| t.depth as i32).collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &jobs,
            &versions,
            &args,
            &priorities,
            &queued_at,
            &run_at,
            &expires_at,
            &max_retries,
            &from_task,
            &root_task,
            &depth,
            &tenants,
            &queues,
        ];
        let taken = tokens.map(|t| (t.n as f64, t));
        if let Some((n, tokens)) = &taken {
            params.extend([&tokens.bucket as &(dyn ToSql + Sync), n, &tokens.rate, &tokens.burst, &tokens.now]);
        }
        let rows = client.query(&insert, &params).await?;
        if rows.is_empty() && !tasks.is_empty() && tokens.is_some() {
            return Ok(None);
        }
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        if ids.len() != tasks.len() {
            return Err(StoreError::Database(format!("inserted {} tasks of {}", ids.len(), tasks.len())));
        }
        Ok(Some(ids))
    }

    /// Inserts a unique task in the transaction `client`: takes its key
    /// first (the row lock makes a concurrent insert of the same key wait
    /// for this transaction, then find the key taken), then inserts the
    /// task and records it as the key's holder; answers the holder when
    /// the key is taken, and gives the key back when the task is an
    /// overlap duplicate.
    async fn insert_unique<C: GenericClient + Sync>(
        &self,
        client: &C,
        task: &NewTask,
        unique: &super::Unique,
    ) -> Result<Inserted, StoreError> {
        let owner = [&task.tenant as &(dyn ToSql + Sync), &task.job, &unique.key];
        let taken = client
            .query_opt(
                "INSERT INTO uniques (tenant, job, key, task_id, until) VALUES ($1, $2, $3, NULL, $5) \
                 ON CONFLICT (tenant, job, key) DO UPDATE SET task_id = NULL, until = excluded.until \
                 WHERE uniques.until <= $4 RETURNING 1",
                &[owner[0], owner[1], owner[2], &task.queued_at, &unique.until],
            )
            .await?;
        if taken.is_none() {
            let holder = client
                .query_one("SELECT task_id FROM uniques WHERE tenant = $1 AND job = $2 AND key = $3", &owner)
                .await?;
            let holder: Option<i64> = holder.get(0);
            let holder =
                holder.ok_or_else(|| StoreError::Corrupt(format!("unique key {} with no task", unique.key)))?;
            return Ok(Inserted::Duplicate(holder.to_string()));
        }
        let inserted = self.insert_one(client, task).await?;
        match &inserted {
            Inserted::Task(id) => {
                let id = id_param(id);
                client
                    .execute(
                        "UPDATE uniques SET task_id = $4 WHERE tenant = $1 AND job = $2 AND key = $3",
                        &[owner[0], owner[1], owner[2], &id],
                    )
                    .await?
            }
            Inserted::Duplicate(_) => {
                client
                    .execute(
                        "DELETE FROM uniques WHERE tenant = $1 AND job = $2 AND key = $3 AND task_id IS NULL",
                        &owner,
                    )
                    .await?
            }
        };
        Ok(inserted)
    }

    async fn insert_one<C: GenericClient + Sync>(&self, client: &C, task: &NewTask) -> Result<Inserted, StoreError> {
        let insert = client.prepare_cached(INSERT_TASK).await?;
        let from_task = task.from_task.as_deref().and_then(id_param);
        let root_task = task.root_task.as_deref().and_then(id_param);
        let (max_retries, depth) = (task.max_retries as i32, task.depth as i32);
        let row = client
            .query_opt(
                &insert,
                &[
                    &task.job,
                    &task.version,
                    &task.args,
                    &task.priority,
                    &task.queued_at,
                    &task.run_at,
                    &task.expires_at,
                    &max_retries,
                    &task.overlap_key,
                    &from_task,
                    &root_task,
                    &depth,
                    &task.tenant,
                    &task.pending.as_ref().map(|_| PENDING_REASON),
                    &task.queue,
                ],
            )
            .await?;
        if let Some(row) = row {
            let id = row.get::<_, i64>(0);
            if let Some(pending) = &task.pending {
                let attempt = i32::try_from(pending.attempt).unwrap_or(i32::MAX);
                client
                    .execute(
                        "INSERT INTO pending_children (task_id, parent_id, attempt, delay, expiry) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&id, &id_param(&pending.parent), &attempt, &pending.delay, &pending.expiry],
                    )
                    .await?;
            }
            return Ok(Inserted::Task(id.to_string()));
        }
        let find = client.prepare_cached(FIND_DUPLICATE).await?;
        match client.query_opt(&find, &[&task.job, &task.overlap_key, &task.tenant]).await? {
            Some(row) => Ok(Inserted::Duplicate(row.get::<_, i64>(0).to_string())),
            // The conflicting task ended in between: try once more.
            None => Box::pin(self.insert_one(client, task)).await,
        }
    }
}

/// Writes completions in one statement (the worker's
/// [`crate::completer::Completer`] batches them); returns how many applied
/// (a stale lease does not).
async fn apply_completions(
    pool: &Pool,
    ending: &Pool,
    completions: &[Completion],
    endings: &Endings,
) -> Result<Vec<(TaskId, TaskState)>, StoreError> {
    let ids: Vec<i64> = completions.iter().map(|c| id_param(&c.id).unwrap_or(-1)).collect();
    let leases: Vec<&str> = completions.iter().map(|c| c.lease.as_str()).collect();
    let states: Vec<&str> = completions.iter().map(|c| c.state.as_str()).collect();
    let reasons: Vec<&str> = completions.iter().map(|c| c.reason.as_str()).collect();
    let results: Vec<Option<&str>> = completions.iter().map(|c| c.result.as_deref()).collect();
    let errors: Vec<Option<&str>> = completions.iter().map(|c| c.error.as_deref()).collect();
    let fuel: Vec<i64> = completions.iter().map(|c| c.fuel as i64).collect();
    let wall: Vec<i64> = completions.iter().map(|c| c.wall_time_us as i64).collect();
    let logs: Vec<&str> = completions.iter().map(|c| c.log.as_str()).collect();
    let finished: Vec<i64> = completions.iter().map(|c| c.finished_at).collect();
    let retry_at: Vec<Option<i64>> = completions.iter().map(|c| c.retry_at).collect();
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let requests: Vec<i64> = completions.iter().map(|c| count(c.http.requests)).collect();
    let sent: Vec<i64> = completions.iter().map(|c| count(c.http.bytes_sent)).collect();
    let received: Vec<i64> = completions.iter().map(|c| count(c.http.bytes_received)).collect();
    let retried = completions.iter().any(|c| c.state == TaskState::Retry);
    let settling = completions.iter().any(|c| c.children || c.workflow);
    // The plain endings (most batches) on a connection of their own,
    // with one plan ([`GENERIC`]).
    let mut client = if retried || settling { pool.get().await? } else { ending.get().await? };
    let statement = client.prepare_cached(&format!("{COMPLETE} RETURNING t.id, t.state")).await?;
    let params: [&(dyn ToSql + Sync); 14] = [
        &ids, &leases, &states, &reasons, &results, &errors, &fuel, &wall, &logs, &finished, &retry_at, &requests,
        &sent, &received,
    ];
    // A batch with retries keeps their attempts in the same statement
    // (most batches have none, and keep the plain one).
    let keeping = if retried {
        Some(
            client
                .prepare_cached(&format!(
                    "WITH done AS ({COMPLETE} RETURNING t.id, t.state, t.attempt, t.started_at, c.lease, c.reason, \
                     c.error, c.fuel, c.wall, c.log, c.finished, c.requests, c.sent, c.received), \
                     kept AS ({KEEP_RETRIED}) SELECT id, state FROM done"
                ))
                .await?,
        )
    } else {
        None
    };
    let mut keeping_params = params.to_vec();
    keeping_params.push(&ATTEMPT_LOG_KEPT);
    let (statement, params) = match &keeping {
        Some(keeping) => (keeping, &keeping_params[..]),
        None => (&statement, &params[..]),
    };
    // Endings of attempts that queued children settle them in the same
    // transaction (a second statement: the parent's row may be its tree's
    // root, whose count the settling changes).
    let rows = if settling {
        let now = completions.iter().map(|c| c.finished_at).max().unwrap_or(0);
        again!(complete_settling(&mut client, statement, params, completions, now).await)?
    } else {
        again!(client.query(statement, params).await.map_err(StoreError::from))?
    };
    let applied = rows
        .iter()
        .map(|r| {
            let state = r.get::<_, &str>(1);
            let state = TaskState::parse(state).ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?;
            Ok((r.get::<_, i64>(0).to_string(), state))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let ended: Vec<String> = applied.iter().filter(|(_, s)| s.is_terminal()).map(|(id, _)| id.clone()).collect();
    if !ended.is_empty() {
        let _ = endings.send(ended);
    }
    Ok(applied)
}

/// Runs the completion `statement` and settles the children of the
/// attempts it ended that queued some ([`SETTLE_CHILDREN`]), in one
/// transaction; answers the completion's rows.
async fn complete_settling(
    client: &mut deadpool_postgres::Object,
    statement: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
    completions: &[Completion],
    now: Millis,
) -> Result<Vec<Row>, StoreError> {
    let tx = client.transaction().await?;
    let rows = tx.query(statement, params).await?;
    let attempts: HashMap<i64, u32> =
        completions.iter().filter(|c| c.children).filter_map(|c| Some((id_param(&c.id)?, c.attempt))).collect();
    let (mut ids, mut at, mut states) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        let id: i64 = r.get(0);
        if let Some(attempt) = attempts.get(&id) {
            ids.push(id);
            at.push(i32::try_from(*attempt).unwrap_or(i32::MAX));
            states.push(r.get::<_, String>(1));
        }
    }
    let mut released = false;
    if !ids.is_empty() {
        tx.execute(SETTLE_CHILDREN, &[&ids, &at, &states, &now]).await?;
        released = states.iter().any(|s| s == "success");
    }
    // Workflow steps that succeeded may release the stage after theirs
    // (those that ended otherwise are the heartbeat's sweep's).
    let steps: std::collections::HashSet<i64> =
        rows.iter().filter(|r| r.get::<_, &str>(1) == "success").map(|r| r.get::<_, i64>(0)).collect();
    let stepped: Vec<i64> = completions
        .iter()
        .filter(|c| c.workflow)
        .filter_map(|c| id_param(&c.id))
        .filter(|id| steps.contains(id))
        .collect();
    if !stepped.is_empty() {
        // In the order of their workflows, which each locks: two batches
        // ending steps of the same workflows wait, never deadlock.
        let found = tx
            .query(
                "SELECT task_id, workflow_id, stage FROM workflow_steps WHERE task_id = ANY($1) \
                 ORDER BY workflow_id, stage, position",
                &[&stepped],
            )
            .await?;
        for r in &found {
            released |= release_next(&tx, r.get(1), r.get(2), now).await? > 0;
        }
    }
    // Released children and steps are due: every other node's workers
    // look (the completer wakes this node's).
    if released {
        tx.batch_execute(&NOTIFY_DUE).await?;
    }
    tx.commit().await?;
    Ok(rows)
}

/// Releases the stage after stage `stage` of workflow `workflow`, one of
/// whose steps just succeeded, if that completes its stage: due `now`,
/// with the stage's results under [`crate::workflow::PREVIOUS`] (or,
/// results too large to pass on, failed without running). In the
/// transaction of the success, under a lock on the workflow: the steps of a
/// stage that end at once on several nodes see each other's endings, and
/// the last releases the next stage once. Answers how many steps it
/// released.
async fn release_next(
    tx: &tokio_postgres::Transaction<'_>,
    workflow: i64,
    stage: i32,
    now: Millis,
) -> Result<u64, StoreError> {
    tx.execute("SELECT 1 FROM workflows WHERE id = $1 FOR UPDATE", &[&workflow]).await?;
    // The results are read once, by the success that completes the stage.
    let unfinished: i64 = tx
        .query_one(
            "SELECT count(*) FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
             WHERE s.workflow_id = $1 AND s.stage = $2 AND t.state <> 'success'",
            &[&workflow, &stage],
        )
        .await?
        .get(0);
    if unfinished > 0 {
        return Ok(0);
    }
    let results = tx
        .query(
            "SELECT t.result FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
             WHERE s.workflow_id = $1 AND s.stage = $2 ORDER BY s.position",
            &[&workflow, &stage],
        )
        .await?;
    // Locked in id order, as every statement that locks waiting steps.
    let next = tx
        .query(
            "SELECT t.id, t.args FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
             WHERE s.workflow_id = $1 AND s.stage = $2 + 1 AND t.state = 'queued' AND t.reason = 'workflow' \
             ORDER BY t.id FOR UPDATE OF t",
            &[&workflow, &stage],
        )
        .await?;
    let ids: Vec<i64> = next.iter().map(|r| r.get(0)).collect();
    match crate::workflow::Passed::new(results.iter().map(|r| r.get(0)).collect(), ids.len()) {
        crate::workflow::Passed::Results(previous) => {
            let args = next
                .iter()
                .map(|r| crate::workflow::with_previous(r.get(1), &previous))
                .collect::<Result<Vec<String>, StoreError>>()?;
            tx.execute(
                "UPDATE tasks t SET args = n.args, reason = NULL, run_at = $3 \
                 FROM unnest($1::bigint[], $2::text[]) AS n(id, args) \
                 WHERE t.id = n.id AND t.state = 'queued' AND t.reason = 'workflow'",
                &[&ids, &args, &now],
            )
            .await?;
            Ok(ids.len() as u64)
        }
        crate::workflow::Passed::TooLarge(why) => {
            tx.execute(
                "UPDATE tasks SET state = 'failure', reason = 'too-large', error = $2, finished_at = $3 \
                 WHERE id = ANY($1) AND state = 'queued' AND reason = 'workflow'",
                &[&ids, &why, &now],
            )
            .await?;
            Ok(0)
        }
    }
}

/// A claim (`wasmjob_claim`), whose commit does not wait for its WAL to
/// reach the disk (`synchronous_commit = off` for its transaction only).
/// Anything durable done after it (an ending, a child queued, a lease
/// renewed) flushes it first, the log being one sequence; queues and
/// endings still wait for the disk. A claim lost with a crash of the
/// server (within the WAL writer's interval, 200 ms by default) leaves its
/// tasks waiting, to be claimed again while the node that took them may
/// still run them: at least once, as when a node dies. The same node
/// claiming the same attempt gets the same lease, and runs it only once
/// ([`crate::worker`]); what the lost claim spent is not spent (a job's
/// rate tokens, the attempt, so that the expiry sweep may revoke a task
/// that ran). On a busy disk that wait was most of a claim's time (here a
/// commit waited 1.3-3.6 ms for the disk during a build, 0.3 ms without).
const CLAIM: &str = "SELECT c.*, set_config('synchronous_commit', 'off', true) \
    FROM wasmjob_claim($1, $2, $3, $4, $5, $6, $7) c";

/// Records a batch of completions (`$1`..`$14`, one array per field).
/// A task holds a lease only while `started` (every way out of it clears
/// the lease), so the lease alone says the task is still this attempt's.
/// No `state = 'started'` here: with it the planner may pick the partial
/// index of started tasks and scan all of them for every ending (seen:
/// 1.7 s for 1,024 endings while the statistics still said "none
/// started"); the live states (`tasks_live`'s bound) only keep the
/// finished tasks out of the plan. `t.id = ANY($1)` bounds the lookup by
/// the batch whatever the live partition's statistics say: when they say
/// it is empty, the planner walked its whole id index for each batch.
const COMPLETE: &str = "UPDATE tasks t SET \
               state = CASE WHEN c.state = 'retry' AND t.revoke_requested_at IS NOT NULL THEN 'revoked' \
                 ELSE c.state END, \
               reason = c.reason, result = c.result, error = c.error, \
               fuel = c.fuel, wall_time_us = c.wall, log = c.log, \
               finished_at = CASE WHEN c.state = 'retry' AND t.revoke_requested_at IS NULL THEN NULL \
                 ELSE c.finished END, \
               run_at = COALESCE(c.retry_at, t.run_at), lease = NULL, lease_expires_at = NULL, \
               http_requests = c.requests, http_bytes_sent = c.sent, http_bytes_received = c.received, \
               progress = CASE WHEN c.state = 'retry' THEN NULL ELSE t.progress END \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[], \
                         $12::bigint[], $13::bigint[], $14::bigint[]) \
               AS c(id, lease, state, reason, result, error, fuel, wall, log, finished, retry_at, \
                    requests, sent, received) \
             WHERE t.id = c.id AND t.lease = c.lease AND t.state IN ('queued', 'retry', 'started') \
               AND t.id = ANY($1)";

/// Keeps the attempts of `done` (the rows a [`COMPLETE`] changed, with
/// their completions) that ended in a retry, their log cut to the last
/// `$15` characters. In the same statement as the completion: a revoke
/// asked meanwhile turns a retry into the task's end, and nothing is kept.
const KEEP_RETRIED: &str = "INSERT INTO attempts (task_id, attempt, lease, started_at, finished_at, state, reason, \
    error, fuel, wall_time_us, log, http_requests, http_bytes_sent, http_bytes_received) \
    SELECT id, attempt, lease, started_at, finished, 'retry', reason, error, fuel, wall, \
      right(log, CAST($15::bigint AS int)), requests, sent, received \
    FROM done WHERE state = 'retry' ON CONFLICT DO NOTHING";

/// Keeps the last attempt of the ended task `$1` before it is retried by
/// hand (none for a task revoked before it ever started), its log cut to
/// its last `$3` characters.
const KEEP_ENDED: &str = "INSERT INTO attempts (task_id, attempt, lease, started_at, finished_at, state, reason, \
    error, fuel, wall_time_us, log, http_requests, http_bytes_sent, http_bytes_received) \
    SELECT id, attempt, CASE WHEN reason = 'lease-expired' THEN rescued_lease END, started_at, finished_at, \
      state, reason, error, fuel, wall_time_us, right(log, CAST($3::bigint AS int)), http_requests, http_bytes_sent, \
      http_bytes_received \
    FROM tasks WHERE id = $1 AND state IN ('failure', 'revoked') AND attempt > 0 AND finished_at IS NOT NULL \
    ON CONFLICT DO NOTHING";

/// The tasks `leases` were given for, in order (-1, no task, for a lease
/// not of this engine's making).
fn lease_ids(leases: &[String]) -> Vec<i64> {
    leases.iter().map(|l| super::lease_task_id(l).unwrap_or(-1)).collect()
}

/// Revokes as `expired` up to 1,000 queued tasks whose expiry has passed
/// (the next call takes the rest). Run by the heartbeat, not by every
/// claim: without statistics on a young table the planner may read every
/// waiting task for it (15 ms per claim at 100,000 waiting).
const EXPIRE: &str = "UPDATE tasks SET state = 'revoked', reason = 'expired', finished_at = $1 \
    WHERE id = ANY(ARRAY(SELECT id FROM tasks WHERE state = 'queued' AND expires_at IS NOT NULL \
                         AND expires_at <= $1 ORDER BY expires_at LIMIT 1000)) \
    RETURNING id, tenant, job";

/// Revokes ([`super::UPSTREAM_REASON`]) the waiting steps of up to 100
/// workflows whose first waiting stage comes after a stage with a step that
/// ended without success (`$1`: now), giving their tree's count back, and
/// answers them. One look per workflow with waiting steps (a stage waits
/// only while every stage before it succeeded or the one right before it
/// is still running); the steps are locked in id order, as
/// [`release_next`] locks them.
const ABORT_WORKFLOWS: &str = "WITH waiting AS ( \
      SELECT t.workflow, min(s.stage) AS stage FROM tasks t JOIN workflow_steps s ON s.task_id = t.id \
      WHERE t.state = 'queued' AND t.reason = 'workflow' GROUP BY t.workflow), \
    failed AS (SELECT w.workflow FROM waiting w WHERE EXISTS ( \
      SELECT 1 FROM workflow_steps e JOIN tasks x ON x.id = e.task_id \
      WHERE e.workflow_id = w.workflow AND e.stage = w.stage - 1 AND x.state IN ('failure', 'revoked')) \
      LIMIT 100), \
    locked AS (SELECT t.id FROM tasks t WHERE t.state = 'queued' AND t.reason = 'workflow' \
      AND t.workflow IN (SELECT workflow FROM failed) ORDER BY t.id FOR UPDATE), \
    aborted AS (UPDATE tasks SET state = 'revoked', reason = 'upstream', finished_at = $1 \
      WHERE id IN (SELECT id FROM locked) AND state = 'queued' AND reason = 'workflow' \
      RETURNING id, tenant, job, root_task), \
    shrunk AS (UPDATE tasks SET tree_size = greatest(1, tree_size - a.n) \
      FROM (SELECT root_task, count(*) AS n FROM aborted WHERE root_task IS NOT NULL GROUP BY root_task) a \
      WHERE tasks.id = a.root_task) \
    SELECT id, tenant, job FROM aborted";

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn put_component(&self, hash: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.execute("INSERT INTO components (hash, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&hash, &bytes])
            .await?;
        Ok(())
    }

    async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query("SELECT bytes FROM components WHERE hash = $1", &[&hash]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn put_job(&self, job: JobRow, periodic: bool) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO job_versions (tenant, name, hash, registered_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&job.tenant, &job.name, &job.hash, &job.registered_at],
        )
        .await?;
        let changed = tx
            .execute(
                "INSERT INTO jobs (tenant, name, hash, metadata, registered_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant, name) DO UPDATE SET hash = excluded.hash, metadata = excluded.metadata, \
                 registered_at = excluded.registered_at WHERE jobs.hash != excluded.hash",
                &[&job.tenant, &job.name, &job.hash, &job.metadata, &job.registered_at],
            )
            .await?;
        if changed > 0 {
            if periodic {
                // A new version is asked at once; a claim on the old one is void.
                tx.execute(
                    "INSERT INTO schedules (tenant, job, since, next_due_at) VALUES ($1, $2, $3, $3) \
                     ON CONFLICT (tenant, job, name) DO UPDATE SET since = excluded.since, \
                     next_due_at = excluded.next_due_at, claimed_by = NULL, claimed_until = NULL",
                    &[&job.tenant, &job.name, &job.registered_at],
                )
                .await?;
            } else {
                tx.execute(
                    "DELETE FROM schedules WHERE tenant = $1 AND job = $2 AND name = ''",
                    &[&job.tenant, &job.name],
                )
                .await?;
            }
            bump(&tx, "jobs").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let rows = self
            .query("SELECT tenant, name, hash, metadata, registered_at FROM jobs ORDER BY tenant, name", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| JobRow {
                tenant: r.get(0),
                name: r.get(1),
                hash: r.get(2),
                metadata: r.get(3),
                registered_at: r.get(4),
            })
            .collect())
    }

    async fn job_versions(&self, tenant: &str, name: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        let rows = self
            .query(
                "SELECT hash, registered_at FROM job_versions WHERE tenant = $1 AND name = $2 ORDER BY registered_at",
                &[&tenant, &name],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn delete_job(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM schedules WHERE tenant = $1 AND job = $2", &[&tenant, &name]).await?;
        let deleted = tx.execute("DELETE FROM jobs WHERE tenant = $1 AND name = $2", &[&tenant, &name]).await? > 0;
        bump(&tx, "jobs").await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn generations(&self) -> Result<Generations, StoreError> {
        let mut generations = Generations::default();
        for row in self.query("SELECT kind, generation FROM generations", &[]).await? {
            let generation: i64 = row.get(1);
            match row.get::<_, &str>(0) {
                "jobs" => generations.jobs = generation,
                "tenants" => generations.tenants = generation,
                "tokens" => generations.tokens = generation,
                _ => {}
            }
        }
        Ok(generations)
    }

    async fn insert_tasks(
        &self,
        tasks: Vec<NewTask>,
        tokens: Option<Tokens>,
    ) -> Result<Option<Vec<Inserted>>, StoreError> {
        // Every insert notifies `wasmjob_tasks` by trigger (schema v8).
        // Tasks without an overlap key cannot conflict: one statement for
        // them all (which takes the tokens too), with no transaction of its
        // own when there is nothing else: one round trip. The others one by
        // one, each answering its duplicate, in one transaction with the
        // rest.
        if tasks.is_empty() && tokens.is_none() {
            return Ok(Some(Vec::new()));
        }
        let (plain, keyed): (Vec<_>, Vec<_>) = tasks
            .iter()
            .enumerate()
            .partition(|(_, t)| t.overlap_key.is_none() && t.unique.is_none() && t.pending.is_none());
        let plain_tasks: Vec<&NewTask> = plain.iter().map(|(_, t)| *t).collect();
        let mut client = self.pool.get().await?;
        if keyed.is_empty() {
            let ids = Self::insert_plain_taking(&client, &plain_tasks, tokens.as_ref()).await?;
            return Ok(ids.map(|ids| ids.into_iter().map(|id| Inserted::Task(id.to_string())).collect()));
        }
        let tx = client.transaction().await?;
        if let Some(tokens) = &tokens {
            let take = take_tokens_sql(1);
            let n = tokens.n as f64;
            let params: [&(dyn ToSql + Sync); 5] = [&tokens.bucket, &n, &tokens.rate, &tokens.burst, &tokens.now];
            if tx.execute(&take, &params).await? == 0 {
                return Ok(None);
            }
        }
        let mut answers: Vec<Option<Inserted>> = vec![None; tasks.len()];
        if !plain.is_empty() {
            let ids = Self::insert_plain(&tx, &plain_tasks).await?;
            for ((i, _), id) in plain.iter().zip(ids) {
                answers[*i] = Some(Inserted::Task(id.to_string()));
            }
        }
        for (i, task) in keyed {
            answers[i] = Some(match &task.unique {
                Some(unique) => self.insert_unique(&tx, task, unique).await?,
                None => self.insert_one(&tx, task).await?,
            });
        }
        tx.commit().await?;
        Ok(Some(answers.into_iter().flatten().collect()))
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError> {
        let (tenants, maxes): (Vec<&str>, Vec<i64>) = request
            .max_running
            .iter()
            .map(|(tenant, &max)| (tenant.as_str(), i64::try_from(max).unwrap_or(i64::MAX)))
            .unzip();
        let limit = i32::try_from(request.limit).unwrap_or(i32::MAX);
        let rows = self
            .query(
                CLAIM,
                &[&request.now, &request.node, &request.lease_until, &limit, &tenants, &maxes, &request.queues],
            )
            .await?;
        let mut claim = Claim::default();
        for r in &rows {
            match r.get::<_, Option<i64>>(0) {
                Some(id) => claim.tasks.push(ClaimedTask {
                    id: id.to_string(),
                    tenant: r.get(1),
                    job: r.get(2),
                    version: r.get(3),
                    args: r.get(4),
                    attempt: r.get::<_, i32>(5) as u32,
                    max_retries: r.get::<_, i32>(6) as u32,
                    root_task: Some(r.get::<_, i64>(7).to_string()),
                    depth: r.get::<_, i32>(8) as u32,
                    lease: r.get(9),
                    due_at: r.get(12),
                    workflow: r.get::<_, Option<bool>>(13).unwrap_or(false),
                    queue: r.get::<_, Option<String>>(14).unwrap_or_else(|| crate::task::DEFAULT_QUEUE.to_owned()),
                }),
                None => {
                    claim.contended = r.get(10);
                    claim.next_run_at = r.get(11);
                    claim.wake_at = r.get(15);
                }
            }
        }
        Ok(claim)
    }

    async fn expire(&self, now: Millis) -> Result<Vec<Expired>, StoreError> {
        let expired: Vec<Expired> = self
            .query(EXPIRE, &[&now])
            .await?
            .iter()
            .map(|r| Expired { id: r.get::<_, i64>(0).to_string(), tenant: r.get(1), job: r.get(2) })
            .collect();
        if !expired.is_empty() {
            let _ = self.endings.send(expired.iter().map(|e| e.id.clone()).collect());
        }
        Ok(expired)
    }

    async fn complete(&self, completions: Vec<Completion>) -> Result<Vec<(TaskId, TaskState)>, StoreError> {
        apply_completions(&self.pool, &self.ending, &completions, &self.endings).await
    }

    async fn extend_leases(&self, leases: Vec<String>, until: Millis) -> Result<Vec<HeldLease>, StoreError> {
        let ids = lease_ids(&leases);
        let rows = self
            .query(
                "UPDATE tasks t SET lease_expires_at = $2 FROM unnest($3::bigint[], $1::text[]) AS l(id, lease) \
                 WHERE t.id = l.id AND t.lease = l.lease AND t.state = 'started' \
                 RETURNING t.lease, t.revoke_requested_at IS NOT NULL",
                &[&leases, &until, &ids],
            )
            .await?;
        Ok(rows.iter().map(|r| HeldLease { lease: r.get(0), revoke_requested: r.get(1) }).collect())
    }

    async fn rescue(&self, now: Millis, all_started: bool, poison_after: u32) -> Result<Vec<Rescued>, StoreError> {
        let poison_after = i32::try_from(poison_after).unwrap_or(i32::MAX);
        let now_or_forever = if all_started { Millis::MAX } else { now };
        // One statement: those to be retried keep the attempt their worker
        // lost, exactly the rows rescued.
        let rescued = self
            .query(
                "WITH rescued AS (UPDATE tasks SET \
               state = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
                 WHEN lost_leases + 1 >= $3 THEN 'failure' \
                 WHEN attempt <= max_retries THEN 'retry' ELSE 'failure' END, \
               finished_at = CASE WHEN attempt <= max_retries AND revoke_requested_at IS NULL \
                 AND lost_leases + 1 < $3 THEN NULL ELSE $1::bigint END, \
               reason = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
                 WHEN lost_leases + 1 >= $3 THEN 'poisoned' ELSE 'lease-expired' END, \
               error = CASE WHEN revoke_requested_at IS NULL AND lost_leases + 1 >= $3 \
                 THEN 'its worker was lost under it ' || (lost_leases + 1) || ' times: quarantined' \
                 ELSE error END, \
               lost_leases = lost_leases + 1, \
               run_at = $1::bigint, rescued_lease = lease, lease = NULL, lease_expires_at = NULL \
             WHERE state = 'started' AND lease_expires_at < $2::bigint \
             RETURNING id, attempt, rescued_lease, started_at, state, tenant, job, reason), \
             kept AS (INSERT INTO attempts (task_id, attempt, lease, started_at, finished_at, state, reason) \
               SELECT id, attempt, rescued_lease, started_at, $1::bigint, 'retry', 'lease-expired' \
               FROM rescued WHERE state = 'retry' ON CONFLICT DO NOTHING) \
             SELECT id, tenant, job, attempt, state, reason FROM rescued",
                &[&now, &now_or_forever, &poison_after],
            )
            .await?
            .iter()
            .map(|r| {
                let state: &str = r.get(4);
                Ok(Rescued {
                    id: r.get::<_, i64>(0).to_string(),
                    tenant: r.get(1),
                    job: r.get(2),
                    attempt: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
                    state: TaskState::parse(state).ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?,
                    reason: r.get(5),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if !rescued.is_empty() {
            // Some may have ended (out of attempts, or revoked): waiters re-read.
            self.execute("SELECT pg_notify($1, '')", &[&FINISHED]).await?;
        }
        Ok(rescued)
    }

    async fn release(&self, leases: Vec<String>, now: Millis) -> Result<u64, StoreError> {
        let ids = lease_ids(&leases);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let released = tx
            .query(
                "UPDATE tasks SET state = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
               WHEN attempt > 1 THEN 'retry' ELSE 'queued' END, \
             finished_at = CASE WHEN revoke_requested_at IS NOT NULL THEN $2::bigint END, \
             attempt = attempt - 1, reason = CASE WHEN revoke_requested_at IS NOT NULL THEN 'revoked' \
               ELSE 'released-at-shutdown' END, run_at = $2, lease = NULL, \
             lease_expires_at = NULL, started_at = NULL \
             FROM unnest($3::bigint[], $1::text[]) AS l(id, lease) \
             WHERE tasks.id = l.id AND tasks.lease = l.lease AND tasks.state = 'started' \
             RETURNING tasks.id, tasks.attempt + 1",
                &[&leases, &now, &ids],
            )
            .await?;
        // The attempts' children go with them: the next claims reuse their
        // numbers, and must not inherit them.
        let ids: Vec<i64> = released.iter().map(|r| r.get(0)).collect();
        let attempts: Vec<i32> = released.iter().map(|r| r.get(1)).collect();
        let states = vec!["queued"; ids.len()];
        if !ids.is_empty() {
            tx.execute(SETTLE_CHILDREN, &[&ids, &attempts, &states, &now]).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn revoke(&self, id: &str, now: Millis) -> Result<Option<TaskState>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(None) };
        // One UPDATE, so that a task changing state meanwhile is judged on
        // its newest version: not started, it is revoked; started, it gets a
        // revoke request and its worker is notified.
        let rows = self
            .query(
                &format!("UPDATE tasks SET {} WHERE id = $1 AND {REVOCABLE} RETURNING state", revoke_set("$2")),
                &[&id, &now],
            )
            .await?;
        let state = match rows.first() {
            Some(row) => TaskState::parse(row.get(0)),
            // Ended already (or no such task): say how.
            None => self
                .query("SELECT state FROM tasks WHERE id = $1", &[&id])
                .await?
                .first()
                .and_then(|r| TaskState::parse(r.get(0))),
        };
        if state == Some(TaskState::Started) {
            self.execute("SELECT pg_notify($1, $2)", &[&REVOKE, &id.to_string()]).await?;
        }
        Ok(state)
    }

    async fn retry(&self, id: &str, now: Millis) -> Result<Retried, StoreError> {
        let Some(id) = id_param(id) else { return Ok(Retried::Missing) };
        // One statement: the attempt that ended is kept only if the task
        // goes back in line (not when its overlap key is taken).
        let retried = self
            .execute(
                &format!(
                    "WITH kept AS ({KEEP_ENDED}) \
                     UPDATE tasks SET state = 'queued', reason = NULL, error = NULL, result = NULL, run_at = $2, \
                     expires_at = NULL, finished_at = NULL, max_retries = greatest(max_retries, attempt) \
                     WHERE id = $1 AND state IN ('failure', 'revoked')"
                ),
                &[&id, &now, &ATTEMPT_LOG_KEPT],
            )
            .await;
        match retried {
            Ok(1) => {
                // Committed: a lost notification only leaves the other
                // nodes to their poll, and the caller wakes this one.
                if let Err(e) = self.execute(&NOTIFY_DUE, &[]).await {
                    tracing::warn!(error = %e, "cannot tell the other nodes of a retried task");
                }
                Ok(Retried::Queued)
            }
            // Its overlap key is taken by a task waiting or running.
            Err(StoreError::Database(e)) if e.starts_with("23505") => {
                let other = self.query(OVERLAPPING, &[&id, &None::<String>]).await?;
                Ok(match other.first() {
                    Some(row) => Retried::Duplicate(row.get::<_, i64>(0).to_string()),
                    None => Retried::Not(TaskState::Failure),
                })
            }
            Err(e) => Err(e),
            Ok(_) => match self.query("SELECT state FROM tasks WHERE id = $1", &[&id]).await?.first() {
                None => Ok(Retried::Missing),
                Some(row) => {
                    let state: &str = row.get(0);
                    Ok(Retried::Not(
                        TaskState::parse(state).ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?,
                    ))
                }
            },
        }
    }

    async fn revoke_many(&self, scope: RevokeScope, now: Millis) -> Result<RevokedMany, StoreError> {
        let Some((tenant, root, job)) = scope.parts() else { return Ok(RevokedMany::default()) };
        again!(self.revoke_many_once(&tenant, root, job.as_deref(), now).await)
    }

    async fn grow_tree(&self, root: &str, n: u64, max: u64) -> Result<bool, StoreError> {
        let Some(root) = id_param(root) else { return Ok(false) };
        let (n, max) = (i64::try_from(n).unwrap_or(i64::MAX), i64::try_from(max).unwrap_or(i64::MAX));
        let changed = self
            .execute(
                "UPDATE tasks SET tree_size = tree_size + $2 WHERE id = $1 AND tree_size + $2 <= $3",
                &[&root, &n, &max],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn shrink_tree(&self, root: &str, n: u64) -> Result<(), StoreError> {
        let Some(root) = id_param(root) else { return Ok(()) };
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.execute("UPDATE tasks SET tree_size = greatest(1, tree_size - $2) WHERE id = $1", &[&root, &n]).await?;
        Ok(())
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(None) };
        let rows = self.query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"), &[&id]).await?;
        Ok(rows.first().map(task_from_row))
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let limit = i64::from(filter.limit.unwrap_or(100).min(1000));
        let (clause, bounds) = super::list_where(&filter, &limit, |n| format!("${n}"));
        let values: Vec<(&(dyn ToSql + Sync), Type)> = bounds
            .iter()
            .map(|bound| match bound {
                super::Bound::Text(text) => (text as &(dyn ToSql + Sync), Type::TEXT),
                super::Bound::Int(n) => (n as &(dyn ToSql + Sync), Type::INT8),
            })
            .collect();
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE {clause}");
        // Unnamed, so planned for these values each time: a cached
        // statement's generic plan, made for an average tenant, walked a
        // million tasks by id for a tenant that has few (seen: 48 ms where
        // the tenant's index takes 0.5).
        let client = self.pool.get().await?;
        let rows = again!(client.query_typed(&sql, &values).await.map_err(StoreError::from))?;
        Ok(rows.iter().map(task_from_row).collect())
    }

    async fn waiting_by_tenant(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .query("SELECT tenant, count(*) FROM tasks WHERE state IN ('queued', 'retry') GROUP BY tenant", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }

    async fn count_by_state(&self) -> Result<Vec<(String, String, TaskState, u64)>, StoreError> {
        let rows =
            self.query("SELECT tenant, job, state, count(*) FROM tasks GROUP BY tenant, job, state", &[]).await?;
        rows.iter()
            .map(|r| {
                let state: String = r.get(2);
                let parsed = TaskState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?;
                Ok((r.get(0), r.get(1), parsed, r.get::<_, i64>(3) as u64))
            })
            .collect()
    }

    async fn ensure_schedule(&self, tenant: &str, job: &str, hash: &str, since: Millis) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO schedules (tenant, job, since, next_due_at) SELECT $1, $2, $4, $4 \
             WHERE EXISTS (SELECT 1 FROM jobs WHERE tenant = $1 AND name = $2 AND hash = $3) \
             ON CONFLICT DO NOTHING",
            &[&tenant, &job, &hash, &since],
        )
        .await?;
        Ok(())
    }

    async fn claim_schedules(&self, claim: ScheduleClaim) -> Result<ClaimedSchedules, StoreError> {
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        let due = self
            .query(
                // Two index-ordered branches (free schedules, and held ones
                // whose holder may have died), each reading only what is due.
                "WITH free AS (SELECT ctid FROM schedules WHERE claimed_until IS NULL AND next_due_at <= $2 \
                   ORDER BY next_due_at LIMIT $4 FOR UPDATE SKIP LOCKED), \
                 stale AS (SELECT ctid FROM schedules WHERE claimed_until IS NOT NULL AND claimed_until < $2 \
                   AND next_due_at <= $2 ORDER BY claimed_until LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 UPDATE schedules s SET claimed_by = $1, claimed_until = $3 \
                 WHERE s.ctid = ANY(ARRAY(SELECT ctid FROM free UNION ALL SELECT ctid FROM stale)) \
                 RETURNING s.tenant, s.job, s.last_run_at, s.since, s.next_due_at, s.name, s.plan",
                &[&claim.claim, &claim.now, &claim.lease_until, &limit],
            )
            .await?
            .iter()
            .map(schedule_from_row)
            .collect();
        let next = self
            .query(
                "SELECT (SELECT min(next_due_at) FROM schedules WHERE claimed_until IS NULL), \
                   (SELECT min(claimed_until) FROM schedules WHERE claimed_until IS NOT NULL)",
                &[],
            )
            .await?;
        let row = next.first();
        Ok(ClaimedSchedules { due, next_due_at: row.and_then(|r| r.get(0)), held_until: row.and_then(|r| r.get(1)) })
    }

    async fn write_ticks(&self, ticks: Vec<ScheduleTick>) -> Result<Vec<TickWrite>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let update = tx
            .prepare_cached(
                "UPDATE schedules SET last_run_at = COALESCE($5, last_run_at), next_due_at = $6, \
                 claimed_by = NULL, claimed_until = NULL \
                 WHERE tenant = $1 AND job = $2 AND name = $7 AND claimed_by = $3 \
                 AND last_run_at IS NOT DISTINCT FROM $4",
            )
            .await?;
        let mut written = Vec::with_capacity(ticks.len());
        for tick in &ticks {
            let params: [&(dyn ToSql + Sync); 7] = [
                &tick.tenant,
                &tick.job,
                &tick.claim,
                &tick.expected_last,
                &tick.ran_at,
                &tick.next_due_at,
                &tick.name,
            ];
            if tx.execute(&update, &params).await? == 0 {
                written.push(TickWrite::Lost);
                continue;
            }
            let inserted = match &tick.task {
                Some(task) => Some(self.insert_one(&tx, task).await?),
                None => None,
            };
            written.push(TickWrite::Written(inserted));
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn schedule(&self, tenant: &str, job: &str) -> Result<Option<ScheduleRow>, StoreError> {
        let rows = self
            .query(
                "SELECT tenant, job, last_run_at, since, next_due_at, name, plan FROM schedules \
                 WHERE tenant = $1 AND job = $2 AND name = ''",
                &[&tenant, &job],
            )
            .await?;
        Ok(rows.first().map(schedule_from_row))
    }

    async fn put_plan(&self, row: ScheduleRow, max: usize) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        // Writes of one tenant's named schedules take turns, and each
        // counts what the one before it committed (read committed), so that
        // the bound holds.
        let tx = client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/wasmjob schedules/' || $1, 0))",
            &[&row.tenant],
        )
        .await?;
        let values: [&(dyn ToSql + Sync); 6] =
            [&row.tenant, &row.job, &row.name, &row.plan, &row.since, &row.next_due_at];
        let replaced = tx
            .execute(
                "UPDATE schedules SET job = $2, plan = $4, since = $5, next_due_at = $6, claimed_by = NULL, \
                 claimed_until = NULL WHERE tenant = $1 AND name = $3 AND name <> ''",
                &values,
            )
            .await?;
        if replaced == 0 {
            let named: i64 = tx
                .query_one("SELECT COUNT(*) FROM schedules WHERE tenant = $1 AND name <> ''", &[&row.tenant])
                .await?
                .get(0);
            if usize::try_from(named).unwrap_or(usize::MAX) >= max {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO schedules (tenant, job, name, plan, since, next_due_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &values,
            )
            .await?;
        }
        tx.batch_execute(&format!("NOTIFY {SCHEDULES}")).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn plans(&self, tenant: &str, name: Option<&str>) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = self
            .query(
                "SELECT tenant, job, last_run_at, since, next_due_at, name, plan FROM schedules \
                 WHERE tenant = $1 AND name <> '' AND ($2::text IS NULL OR name = $2) ORDER BY name",
                &[&tenant, &name],
            )
            .await?;
        Ok(rows.iter().map(schedule_from_row).collect())
    }

    async fn set_plan_due(&self, tenant: &str, name: &str, next_due_at: Millis) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE schedules SET next_due_at = $3, claimed_by = NULL, claimed_until = NULL \
                 WHERE tenant = $1 AND name = $2 AND name <> ''",
                &[&tenant, &name, &next_due_at],
            )
            .await?;
        tx.batch_execute(&format!("NOTIFY {SCHEDULES}")).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_plan(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let n = self
            .execute("DELETE FROM schedules WHERE tenant = $1 AND name = $2 AND name <> ''", &[&tenant, &name])
            .await?;
        Ok(n > 0)
    }

    async fn create_tenant(&self, tenant: TenantRow) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "INSERT INTO tenants (name, quotas, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&tenant.name, &tenant.quotas, &tenant.created_at],
            )
            .await?;
        if n > 0 {
            bump(&tx, "tenants").await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn update_tenant(&self, tenant: &str, was: &str, quotas: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("UPDATE tenants SET quotas = $3 WHERE name = $1 AND quotas = $2", &[&tenant, &was, &quotas])
            .await?;
        if n > 0 {
            bump(&tx, "tenants").await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRow>, StoreError> {
        let rows = self.query("SELECT name, quotas, created_at FROM tenants WHERE name = $1", &[&name]).await?;
        Ok(rows.first().map(|r| TenantRow { name: r.get(0), quotas: r.get(1), created_at: r.get(2) }))
    }

    async fn take_tokens(&self, tenant: &str, n: u64, rate: f64, burst: f64, now: Millis) -> Result<bool, StoreError> {
        let rows = self
            .query(&format!("{} RETURNING 1", take_tokens_sql(1)), &[&tenant, &(n as f64), &rate, &burst, &now])
            .await?;
        Ok(!rows.is_empty())
    }

    async fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        let rows = self.query("SELECT name, quotas, created_at FROM tenants ORDER BY name", &[]).await?;
        Ok(rows.iter().map(|r| TenantRow { name: r.get(0), quotas: r.get(1), created_at: r.get(2) }).collect())
    }

    async fn put_token(&self, token: TokenRow) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO tokens (id, hash, tenant, scope, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&token.id, &token.hash, &token.tenant, &token.scope, &token.created_at, &token.revoked_at],
        )
        .await?;
        bump(&tx, "tokens").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let rows = self
            .query("SELECT id, hash, tenant, scope, created_at, revoked_at FROM tokens WHERE hash = $1", &[&hash])
            .await?;
        Ok(rows.first().map(token_from_row))
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows =
            self.query("SELECT id, hash, tenant, scope, created_at, revoked_at FROM tokens ORDER BY id", &[]).await?;
        Ok(rows.iter().map(token_from_row).collect())
    }

    async fn revoke_token(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n =
            tx.execute("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&id, &now]).await?;
        bump(&tx, "tokens").await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn put_secret(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
        now: Millis,
        max: usize,
    ) -> Result<bool, StoreError> {
        self.bounded_insert(
            "secrets",
            tenant,
            max,
            "INSERT INTO secrets (tenant, name, value, updated_at) SELECT $1::text, $2::text, $4::text, $5::bigint \
             WHERE EXISTS (SELECT 1 FROM secrets WHERE tenant = $1 AND name = $2) \
                OR (SELECT COUNT(*) FROM secrets WHERE tenant = $1) < $3::bigint \
             ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &[&tenant, &name, &value, &now],
        )
        .await
    }

    async fn put_queue_limits(
        &self,
        tenant: &str,
        queue: &str,
        limits: &QueueLimits,
        max: usize,
    ) -> Result<bool, StoreError> {
        let max_running = limits.max_running.map(i64::from);
        self.bounded_insert(
            "queue_limits",
            tenant,
            max,
            "INSERT INTO queue_limits (tenant, queue, max_running, priority) \
             SELECT $1::text, $2::text, $4::bigint, $5::integer \
             WHERE EXISTS (SELECT 1 FROM queue_limits WHERE tenant = $1 AND queue = $2) \
                OR (SELECT COUNT(*) FROM queue_limits WHERE tenant = $1) < $3::bigint \
             ON CONFLICT (tenant, queue) DO UPDATE SET max_running = excluded.max_running, priority = excluded.priority",
            &[&tenant, &queue, &max_running, &limits.priority],
        )
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
        let (max_running, tasks, per_ms, tokens) = super::job_limits_columns(limits);
        self.bounded_insert(
            "job_limits",
            tenant,
            max,
            "INSERT INTO job_limits (tenant, job, max_running, rate_tasks, rate_per_ms, tokens, refilled_at) \
             SELECT $1::text, $2::text, $4::bigint, $5::bigint, $6::bigint, $7::double precision, $8::bigint \
             WHERE EXISTS (SELECT 1 FROM job_limits WHERE tenant = $1 AND job = $2) \
                OR (SELECT COUNT(*) FROM job_limits WHERE tenant = $1) < $3::bigint \
             ON CONFLICT (tenant, job) DO UPDATE SET max_running = excluded.max_running, \
               rate_tasks = excluded.rate_tasks, rate_per_ms = excluded.rate_per_ms, tokens = excluded.tokens, \
               refilled_at = excluded.refilled_at",
            &[&tenant, &job, &max_running, &tasks, &per_ms, &tokens, &now],
        )
        .await
    }

    async fn delete_limits(&self, tenant: &str, job: bool, name: &str) -> Result<bool, StoreError> {
        let sql = if job {
            "DELETE FROM job_limits WHERE tenant = $1 AND job = $2"
        } else {
            "DELETE FROM queue_limits WHERE tenant = $1 AND queue = $2"
        };
        Ok(self.execute(sql, &[&tenant, &name]).await? > 0)
    }

    async fn limits(&self, tenant: &str) -> Result<LimitRows, StoreError> {
        let queues = self
            .query("SELECT queue, max_running, priority FROM queue_limits WHERE tenant = $1 ORDER BY queue", &[&tenant])
            .await?
            .iter()
            .map(|r| {
                let max_running = r.get::<_, Option<i64>>(1).map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX));
                (r.get(0), QueueLimits { max_running, priority: r.get(2) })
            })
            .collect();
        let jobs = self
            .query(
                "SELECT job, max_running, rate_tasks, rate_per_ms FROM job_limits WHERE tenant = $1 ORDER BY job",
                &[&tenant],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), super::job_limits_of(r.get(1), r.get(2), r.get(3))))
            .collect();
        Ok((queues, jobs))
    }

    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM secrets WHERE tenant = $1 AND name = $2", &[&tenant, &name]).await? > 0)
    }

    async fn secret_names(&self, tenant: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        let rows =
            self.query("SELECT name, updated_at FROM secrets WHERE tenant = $1 ORDER BY name", &[&tenant]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn secrets(&self, tenant: &str, names: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let rows = self
            .query("SELECT name, value FROM secrets WHERE tenant = $1 AND name = ANY($2)", &[&tenant, &names])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn put_upload(&self, upload: UploadRow) -> Result<(), StoreError> {
        let size = i64::try_from(upload.size).unwrap_or(i64::MAX);
        self.execute(
            "INSERT INTO uploads (tenant, id, state, name, reason, size, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant, id) DO UPDATE SET state = EXCLUDED.state, name = EXCLUDED.name, \
               reason = EXCLUDED.reason, size = EXCLUDED.size, created_at = EXCLUDED.created_at, \
               updated_at = EXCLUDED.updated_at",
            &[
                &upload.tenant,
                &upload.id,
                &upload.state.as_str(),
                &upload.name,
                &upload.reason,
                &size,
                &upload.created_at,
                &upload.updated_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn upload(&self, tenant: &str, id: &str) -> Result<Option<UploadRow>, StoreError> {
        let rows = self.query(&format!("{UPLOAD_SELECT} WHERE tenant = $1 AND id = $2"), &[&tenant, &id]).await?;
        rows.first().map(upload_from_row).transpose()
    }

    async fn uploads(&self, tenant: &str, since: Millis) -> Result<Vec<UploadRow>, StoreError> {
        let sql = format!(
            "{UPLOAD_SELECT} WHERE tenant = $1 AND updated_at >= $2 ORDER BY updated_at DESC LIMIT {}",
            super::MAX_UPLOADS_LISTED
        );
        self.query(&sql, &[&tenant, &since]).await?.iter().map(upload_from_row).collect()
    }

    async fn beat(&self, node: &str, now: Millis, compiled: Vec<String>, first: bool) -> Result<(), StoreError> {
        let forget = now.saturating_sub(super::to_millis(super::FORGET_NODES_AFTER));
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if first {
            tx.execute("DELETE FROM node_versions WHERE node = $1", &[&node]).await?;
        }
        tx.execute(
            "WITH gone AS (DELETE FROM nodes WHERE seen_at < $1 RETURNING id) \
             DELETE FROM node_versions WHERE node IN (SELECT id FROM gone)",
            &[&forget],
        )
        .await?;
        tx.execute(
            "INSERT INTO nodes (id, seen_at) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET seen_at = greatest(nodes.seen_at, excluded.seen_at)",
            &[&node, &now],
        )
        .await?;
        tx.execute(
            "INSERT INTO node_versions (node, version) SELECT $1, v FROM unnest($2::text[]) AS v ON CONFLICT DO NOTHING",
            &[&node, &compiled],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ready_nodes(&self, version: &str, since: Millis) -> Result<(u64, u64), StoreError> {
        let row = self
            .query(
                "SELECT count(v.node), count(*) FROM nodes n \
                 LEFT JOIN node_versions v ON v.node = n.id AND v.version = $1 WHERE n.seen_at >= $2",
                &[&version, &since],
            )
            .await?;
        let count = |i| u64::try_from(row[0].get::<_, i64>(i)).unwrap_or(0);
        Ok((count(0), count(1)))
    }

    async fn insert_held(&self, task: NewTask, options: String) -> Result<crate::task::TaskId, StoreError> {
        let task = NewTask { run_at: HELD_RUN_AT, expires_at: None, overlap_key: None, ..task };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let id = Self::insert_plain(&tx, &[&task]).await?[0];
        tx.execute("UPDATE tasks SET reason = 'compiling' WHERE id = $1", &[&id]).await?;
        tx.execute(
            "INSERT INTO held_tasks (task_id, tenant, version, options) VALUES ($1, $2, $3, $4)",
            &[&id, &task.tenant, &task.version, &options],
        )
        .await?;
        tx.commit().await?;
        Ok(id.to_string())
    }

    async fn tree(&self, root: &str, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let Some(root) = id_param(root) else { return Ok(Vec::new()) };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 \
             UNION ALL SELECT {TASK_COLUMNS} FROM tasks WHERE root_task = $1 AND id <> $1 ORDER BY id LIMIT $2"
        );
        Ok(self.query(&sql, &[&root, &limit]).await?.iter().map(task_from_row).collect())
    }

    async fn tasks_after(&self, after: i64, limit: usize) -> Result<Vec<Aged>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT id, tenant, state, queued_at, finished_at FROM tasks WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let state: &str = r.get(2);
                let state =
                    TaskState::parse(state).ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?;
                Ok(Aged { id: r.get(0), tenant: r.get(1), state, queued_at: r.get(3), finished_at: r.get(4) })
            })
            .collect()
    }

    async fn delete_finished(&self, ids: Vec<i64>) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        again!(
            async {
                let tx = client.transaction().await?;
                // The attempts (and workflow steps) of the tasks deleted,
                // not of those kept (live).
                let gone = tx
                    .query_one(
                        "WITH gone AS (DELETE FROM tasks WHERE id = ANY($1) \
                           AND state IN ('success', 'failure', 'revoked') \
                           AND (workflow IS NULL OR NOT EXISTS (SELECT 1 FROM workflow_steps s \
                             JOIN tasks t ON t.id = s.task_id WHERE s.workflow_id = tasks.workflow \
                             AND t.state IN ('queued', 'retry', 'started'))) \
                           RETURNING id, workflow), \
                         attempts_gone AS (DELETE FROM attempts WHERE task_id IN (SELECT id FROM gone)), \
                         steps_gone AS (DELETE FROM workflow_steps WHERE task_id IN (SELECT id FROM gone)) \
                         SELECT count(*), COALESCE(array_agg(DISTINCT workflow) FILTER (WHERE workflow IS NOT NULL), \
                           '{}') FROM gone",
                        &[&ids],
                    )
                    .await?;
                let deleted = u64::try_from(gone.get::<_, i64>(0)).unwrap_or(0);
                // A workflow goes with its last step.
                let workflows: Vec<i64> = gone.get(1);
                if !workflows.is_empty() {
                    tx.execute(
                        "DELETE FROM workflows w WHERE w.id = ANY($1) \
                         AND NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.workflow_id = w.id)",
                        &[&workflows],
                    )
                    .await?;
                }
                tx.execute("DELETE FROM held_tasks WHERE task_id = ANY($1)", &[&ids]).await?;
                tx.commit().await?;
                Ok(deleted)
            }
            .await
        )
    }

    async fn attempts(&self, id: &str, limit: usize) -> Result<Vec<AttemptRecord>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(Vec::new()) };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = $1 ORDER BY attempt DESC LIMIT $2");
        let mut attempts = self
            .query(&sql, &[&id, &limit])
            .await?
            .iter()
            .map(|r| {
                let state: &str = r.get(4);
                Ok(AttemptRecord {
                    attempt: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                    lease: r.get(1),
                    started_at: r.get(2),
                    finished_at: r.get(3),
                    state: TaskState::parse(state)
                        .ok_or_else(|| StoreError::Corrupt(format!("attempt state {state}")))?,
                    reason: r.get(5),
                    error: r.get(6),
                    fuel: r.get::<_, Option<i64>>(7).map(super::count),
                    wall_time_us: r.get::<_, Option<i64>>(8).map(super::count),
                    log: r.get(9),
                    http: super::http_usage(r.get(10), r.get(11), r.get(12)),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        attempts.reverse();
        Ok(attempts)
    }

    async fn record_activity(&self, rows: Vec<ActivityRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&ActivityRow) -> u64| rows.iter().map(|r| super::stored(f(r))).collect::<Vec<i64>>();
        let tenants: Vec<&str> = rows.iter().map(|r| r.tenant.as_str()).collect();
        let minutes: Vec<i64> = rows.iter().map(|r| r.minute).collect();
        let jobs: Vec<&str> = rows.iter().map(|r| r.job.as_str()).collect();
        let nodes: Vec<&str> = rows.iter().map(|r| r.node.as_str()).collect();
        let waits: Vec<String> = rows.iter().map(|r| super::waits_text(&r.waits)).collect();
        let (started, succeeded, failed) = (column(|r| r.started), column(|r| r.succeeded), column(|r| r.failed));
        let (retried, revoked) = (column(|r| r.retried), column(|r| r.revoked));
        let (fuel, wall) = (column(|r| r.fuel), column(|r| r.wall_time_us));
        self.execute(
            &format!(
                "INSERT INTO activity ({ACTIVITY_COLUMNS}) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
                   $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[]) \
                 ON CONFLICT (tenant, minute, job, node) DO UPDATE SET started = excluded.started, \
                   succeeded = excluded.succeeded, failed = excluded.failed, retried = excluded.retried, \
                   revoked = excluded.revoked, fuel = excluded.fuel, wall_time_us = excluded.wall_time_us, \
                   waits = excluded.waits"
            ),
            &[
                &tenants, &minutes, &jobs, &nodes, &started, &succeeded, &failed, &retried, &revoked, &fuel, &wall,
                &waits,
            ],
        )
        .await?;
        Ok(())
    }

    async fn activity(&self, tenant: Option<&str>, since: Millis) -> Result<Vec<ActivityRow>, StoreError> {
        // Two statements, so that a tenant's is planned on its key.
        let rows = match tenant {
            Some(tenant) => {
                let sql = format!("SELECT {ACTIVITY_COLUMNS} FROM activity WHERE tenant = $1 AND minute >= $2");
                self.query(&sql, &[&tenant, &since]).await?
            }
            None => {
                self.query(&format!("SELECT {ACTIVITY_COLUMNS} FROM activity WHERE minute >= $1"), &[&since]).await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(ActivityRow {
                    tenant: r.get(0),
                    minute: r.get(1),
                    job: r.get(2),
                    node: r.get(3),
                    started: super::count(r.get(4)),
                    succeeded: super::count(r.get(5)),
                    failed: super::count(r.get(6)),
                    retried: super::count(r.get(7)),
                    revoked: super::count(r.get(8)),
                    fuel: super::count(r.get(9)),
                    wall_time_us: super::count(r.get(10)),
                    waits: super::waits_parse(r.get(11))?,
                })
            })
            .collect()
    }

    async fn settle_children(&self, now: Millis) -> Result<(u64, u64), StoreError> {
        let parents = self
            .query(
                "SELECT DISTINCT p.parent_id, t.attempt, t.state FROM pending_children p \
                 LEFT JOIN tasks t ON t.id = p.parent_id \
                 WHERE t.id IS NULL OR NOT (t.state = 'started' AND t.attempt = p.attempt)",
                &[],
            )
            .await?;
        if parents.is_empty() {
            return Ok((0, 0));
        }
        let ids: Vec<i64> = parents.iter().map(|r| r.get(0)).collect();
        let attempts: Vec<Option<i32>> = parents.iter().map(|r| r.get(1)).collect();
        let states: Vec<Option<String>> = parents.iter().map(|r| r.get(2)).collect();
        let row = self.query(SETTLE_CHILDREN, &[&ids, &attempts, &states, &now]).await?;
        let count = |i: usize| row.first().map_or(0, |r| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0));
        // Committed: a lost notification only leaves the other nodes to
        // their poll, and the caller wakes this one.
        if count(0) > 0
            && let Err(e) = self.execute(&NOTIFY_DUE, &[]).await
        {
            tracing::warn!(error = %e, "cannot tell the other nodes of released children");
        }
        Ok((count(0), count(1)))
    }

    async fn insert_workflow(
        &self,
        tenant: &str,
        stages: Vec<Vec<NewTask>>,
        tokens: Tokens,
        now: Millis,
    ) -> Result<Option<InsertedWorkflow>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let take = take_tokens_sql(1);
        let n = tokens.n as f64;
        let params: [&(dyn ToSql + Sync); 5] = [&tokens.bucket, &n, &tokens.rate, &tokens.burst, &tokens.now];
        if tx.execute(&take, &params).await? == 0 {
            return Ok(None);
        }
        let workflow: i64 = tx
            .query_one("INSERT INTO workflows (tenant, created_at) VALUES ($1, $2) RETURNING id", &[&tenant, &now])
            .await?
            .get(0);
        let tasks: Vec<&NewTask> = stages.iter().flatten().collect();
        // In the tasks' order (the insert answers their ids so).
        let ids = Self::insert_plain(&tx, &tasks).await?;
        let (mut stage_of, mut position_of) = (Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()));
        for (stage, steps) in stages.iter().enumerate() {
            for position in 0..steps.len() {
                stage_of.push(i32::try_from(stage).unwrap_or(i32::MAX));
                position_of.push(i32::try_from(position).unwrap_or(i32::MAX));
            }
        }
        tx.execute(
            "INSERT INTO workflow_steps (workflow_id, stage, position, task_id) \
             SELECT $1, * FROM unnest($2::int[], $3::int[], $4::bigint[])",
            &[&workflow, &stage_of, &position_of, &ids],
        )
        .await?;
        // The later stages wait for the ones before them; the first stage
        // of a workflow a job started waits for its attempt, as a child.
        let firsts = stages.first().map_or(0, Vec::len);
        let held: Vec<bool> = tasks.iter().enumerate().map(|(i, t)| i >= firsts || t.pending.is_some()).collect();
        let reasons: Vec<Option<&str>> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| match (i >= firsts, t.pending.is_some()) {
                (true, _) => Some(super::WORKFLOW_REASON),
                (false, true) => Some(PENDING_REASON),
                (false, false) => None,
            })
            .collect();
        tx.execute(
            "UPDATE tasks t SET workflow = $1, reason = u.reason, \
               run_at = CASE WHEN u.held THEN $2 ELSE t.run_at END, \
               expires_at = CASE WHEN u.held THEN NULL ELSE t.expires_at END \
             FROM unnest($3::bigint[], $4::text[], $5::bool[]) AS u(id, reason, held) \
             WHERE t.id = u.id AND t.state = 'queued'",
            &[&workflow, &HELD_RUN_AT, &ids, &reasons, &held],
        )
        .await?;
        let pending: Vec<(i64, &super::Pending)> =
            ids.iter().zip(&tasks).take(firsts).filter_map(|(id, t)| Some((*id, t.pending.as_ref()?))).collect();
        if !pending.is_empty() {
            let task_ids: Vec<i64> = pending.iter().map(|(id, _)| *id).collect();
            let parents: Vec<i64> = pending.iter().map(|(_, p)| id_param(&p.parent).unwrap_or(-1)).collect();
            let attempts: Vec<i32> =
                pending.iter().map(|(_, p)| i32::try_from(p.attempt).unwrap_or(i32::MAX)).collect();
            let delays: Vec<i64> = pending.iter().map(|(_, p)| p.delay).collect();
            let expiries: Vec<Option<i64>> = pending.iter().map(|(_, p)| p.expiry).collect();
            tx.execute(
                "INSERT INTO pending_children (task_id, parent_id, attempt, delay, expiry) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[], $5::bigint[])",
                &[&task_ids, &parents, &attempts, &delays, &expiries],
            )
            .await?;
        }
        tx.commit().await?;
        let mut ids = ids.into_iter().map(|id| id.to_string());
        let stages = stages.iter().map(|steps| ids.by_ref().take(steps.len()).collect()).collect();
        Ok(Some(InsertedWorkflow { id: workflow.to_string(), stages }))
    }

    async fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let Some(id) = id_param(id) else { return Ok(None) };
        let Some(row) = self.query("SELECT tenant, created_at FROM workflows WHERE id = $1", &[&id]).await?.pop()
        else {
            return Ok(None);
        };
        let steps = self
            .query(
                &format!(
                    "SELECT {}, s.stage FROM workflow_steps s JOIN tasks ON tasks.id = s.task_id \
                     WHERE s.workflow_id = $1 ORDER BY s.stage, s.position",
                    super::step_columns(TASK_COLUMNS)
                ),
                &[&id],
            )
            .await?
            .iter()
            .map(|r| (i64::from(r.get::<_, i32>(31)), task_from_row(r)))
            .collect();
        Ok(Some(WorkflowRecord {
            id: id.to_string(),
            tenant: row.get(0),
            created_at: row.get(1),
            stages: super::by_stage(steps),
        }))
    }

    async fn abort_workflows(&self, now: Millis) -> Result<Vec<Expired>, StoreError> {
        let aborted: Vec<Expired> = self
            .query(ABORT_WORKFLOWS, &[&now])
            .await?
            .iter()
            .map(|r| Expired { id: r.get::<_, i64>(0).to_string(), tenant: r.get(1), job: r.get(2) })
            .collect();
        if !aborted.is_empty() {
            let _ = self.endings.send(aborted.iter().map(|e| e.id.clone()).collect());
        }
        Ok(aborted)
    }

    async fn record_progress(&self, reports: Vec<(String, String)>) -> Result<Vec<String>, StoreError> {
        let (leases, progress): (Vec<String>, Vec<String>) = reports.into_iter().unzip();
        let ids = lease_ids(&leases);
        let rows = self
            .query(
                "UPDATE tasks t SET progress = l.progress \
                 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS l(id, lease, progress) \
                 WHERE t.id = l.id AND t.lease = l.lease AND t.state = 'started' RETURNING t.lease",
                &[&ids, &leases, &progress],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn prune_uniques(&self, now: Millis) -> Result<u64, StoreError> {
        self.execute("DELETE FROM uniques WHERE until <= $1", &[&now]).await
    }

    async fn prune_activity(&self, before: Millis) -> Result<u64, StoreError> {
        self.execute("DELETE FROM activity WHERE minute < $1", &[&before]).await
    }

    async fn held_uploads(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.query("SELECT DISTINCT tenant, version FROM held_tasks", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn held_tasks(&self, tenant: &str, version: &str, limit: usize) -> Result<Vec<HeldTask>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT h.task_id, t.job, t.args, h.options, t.queued_at FROM held_tasks h \
                 JOIN tasks t ON t.id = h.task_id WHERE h.tenant = $1 AND h.version = $2 ORDER BY h.task_id LIMIT $3",
                &[&tenant, &version, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| HeldTask {
                id: r.get::<_, i64>(0).to_string(),
                job: r.get(1),
                args: r.get(2),
                options: r.get(3),
                queued_at: r.get(4),
            })
            .collect())
    }

    async fn settle_held(
        &self,
        settled: Vec<(crate::task::TaskId, Settle)>,
        now: Millis,
    ) -> Result<Vec<crate::task::TaskId>, StoreError> {
        again!(self.settle_held_once(&settled, now).await)
    }
}

impl PostgresStore {
    /// [`Store::revoke_many`]'s transaction, run [`again`] on a conflict.
    async fn revoke_many_once(
        &self,
        tenant: &str,
        root: Option<i64>,
        job: Option<&str>,
        now: Millis,
    ) -> Result<RevokedMany, StoreError> {
        let within = "tenant = $1 AND CASE WHEN $2::bigint IS NOT NULL THEN (id = $2 OR root_task = $2) \
                      ELSE job = $3::text END";
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let params: [&(dyn ToSql + Sync); 4] = [&tenant, &root, &job, &now];
        // One UPDATE: each task is judged on its newest version.
        let rows = tx
            .query(
                &format!("UPDATE tasks SET {} WHERE {within} AND {REVOCABLE} RETURNING id, state", revoke_set("$4")),
                &params,
            )
            .await?;
        let (mut revoked, mut stopping) = (Vec::new(), Vec::new());
        for row in &rows {
            let id = row.get::<_, i64>(0).to_string();
            if row.get::<_, &str>(1) == TaskState::Started.as_str() { stopping.push(id) } else { revoked.push(id) }
        }
        for id in &stopping {
            tx.execute("SELECT pg_notify($1, $2)", &[&REVOKE, id]).await?;
        }
        notify_finished(&tx, &revoked).await?;
        tx.commit().await?;
        Ok(RevokedMany { revoked, stopping })
    }

    /// [`Store::settle_held`]'s transaction, run [`again`] on a conflict.
    async fn settle_held_once(
        &self,
        settled: &[(crate::task::TaskId, Settle)],
        now: Millis,
    ) -> Result<Vec<crate::task::TaskId>, StoreError> {
        let mut client = self.pool.get().await?;
        let mut tx = client.transaction().await?;
        let mut ended = Vec::new();
        let mut due = false;
        // Still held: not revoked meanwhile.
        let held = "id = $1 AND state = 'queued' AND reason = 'compiling'";
        for (id, settle) in settled {
            let Some(id) = id_param(id) else { continue };
            tx.execute("DELETE FROM held_tasks WHERE task_id = $1", &[&id]).await?;
            let (reason, error) = match settle {
                Settle::Due { priority, run_at, expires_at, max_retries, overlap_key } => {
                    let taken = match &overlap_key {
                        None => None,
                        Some(key) => tx.query_opt(OVERLAPPING, &[&id, key]).await?.map(|r| r.get::<_, i64>(0)),
                    };
                    match taken {
                        None => {
                            let max_retries = i32::try_from(*max_retries).unwrap_or(i32::MAX);
                            let sql = format!(
                                "UPDATE tasks SET reason = NULL, priority = $2, run_at = $3, expires_at = $4, \
                                 max_retries = $5, overlap_key = $6 WHERE {held}"
                            );
                            // A keyed task inserted meanwhile by another
                            // transaction makes this update a unique
                            // violation: then it is that task's duplicate.
                            let savepoint = tx.savepoint("settle").await?;
                            let params: [&(dyn ToSql + Sync); 6] =
                                [&id, &priority, &run_at, &expires_at, &max_retries, &overlap_key];
                            match savepoint.execute(&sql, &params).await {
                                Ok(_) => {
                                    savepoint.commit().await?;
                                    due = true;
                                    continue;
                                }
                                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                                    savepoint.rollback().await?;
                                    let error =
                                        "a task of the same job with the same overlap key is waiting or running";
                                    ("duplicate".to_owned(), error.to_owned())
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        Some(other) => (
                            "duplicate".to_owned(),
                            format!("task {other} of the same job with the same overlap key is waiting or running"),
                        ),
                    }
                }
                Settle::Fail { reason, error } => (reason.clone(), error.clone()),
            };
            let state = if reason == "duplicate" { "revoked" } else { "failure" };
            let sql = format!("UPDATE tasks SET state = $2, reason = $3, error = $4, finished_at = $5 WHERE {held}");
            if tx.execute(&sql, &[&id, &state, &reason, &error, &now]).await? > 0 {
                ended.push(id.to_string());
            }
        }
        if due {
            tx.batch_execute(&NOTIFY_DUE).await?;
        }
        notify_finished(&tx, &ended).await?;
        tx.commit().await?;
        Ok(ended)
    }
}

/// Tasks a revoke applies to: those that have not ended.
const REVOCABLE: &str = "state IN ('queued', 'retry', 'started')";

/// What a revoke at time `now` (a parameter) sets, in one UPDATE so that
/// each task is judged on its newest version: one not started is revoked,
/// a started one gets a revoke request.
const UPLOAD_SELECT: &str = "SELECT tenant, id, state, name, reason, size, created_at, updated_at FROM uploads";

fn upload_from_row(r: &Row) -> Result<UploadRow, StoreError> {
    let state: String = r.get(2);
    Ok(UploadRow {
        tenant: r.get(0),
        id: r.get(1),
        state: UploadState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("upload state {state}")))?,
        name: r.get(3),
        reason: r.get(4),
        size: u64::try_from(r.get::<_, i64>(5)).unwrap_or(0),
        created_at: r.get(6),
        updated_at: r.get(7),
    })
}

fn revoke_set(now: &str) -> String {
    format!(
        "state = CASE WHEN state IN ('queued', 'retry') THEN 'revoked' ELSE state END, \
         reason = CASE WHEN state IN ('queued', 'retry') THEN 'revoked' ELSE reason END, \
         finished_at = CASE WHEN state IN ('queued', 'retry') THEN {now} ELSE finished_at END, \
         revoke_requested_at = CASE WHEN state = 'started' THEN COALESCE(revoke_requested_at, {now}) \
           ELSE revoke_requested_at END"
    )
}

/// Records a change of the catalog's `kind` rows and tells every node.
async fn bump<C: GenericClient + Sync>(client: &C, kind: &str) -> Result<(), StoreError> {
    let statement = client.prepare_cached("UPDATE generations SET generation = generation + 1 WHERE kind = $1").await?;
    client.execute(&statement, &[&kind]).await?;
    client.batch_execute(&format!("NOTIFY {CATALOG}")).await?;
    Ok(())
}

fn schedule_from_row(r: &Row) -> ScheduleRow {
    ScheduleRow {
        tenant: r.get(0),
        job: r.get(1),
        last_run_at: r.get(2),
        since: r.get(3),
        next_due_at: r.get(4),
        name: r.get(5),
        plan: r.get(6),
    }
}

fn token_from_row(r: &Row) -> TokenRow {
    TokenRow {
        id: r.get(0),
        hash: r.get(1),
        tenant: r.get(2),
        scope: r.get(3),
        created_at: r.get(4),
        revoked_at: r.get(5),
    }
}

#[cfg(test)]
mod table_tests {
    use super::{FUNCTIONS, MIGRATIONS, TABLES};

    #[test]
    fn drop_tables_knows_every_table_and_function_the_migrations_create() {
        for migration in MIGRATIONS {
            for statement in migration.split("CREATE TABLE ").skip(1) {
                let name = statement.trim_start_matches("IF NOT EXISTS ").split([' ', '(']).next().unwrap();
                // A table made to replace another takes its name.
                let renamed = migration.contains(&format!("ALTER TABLE {name} RENAME TO"));
                assert!(renamed || TABLES.contains(&name), "`{name}` is missing from TABLES");
            }
            for statement in migration.split("CREATE FUNCTION ").skip(1) {
                let name = statement.split([' ', '(']).next().unwrap();
                assert!(FUNCTIONS.contains(&name), "`{name}` is missing from FUNCTIONS");
            }
        }
    }
}

#[cfg(test)]
mod dispatch_tests {
    use futures_util::FutureExt as _;

    use super::{CHANNEL, dispatch};
    use crate::signals::Signals;

    /// A node wakes its workers for the inserts of other nodes and other
    /// clients, not for its own (it woke them as it inserted).
    #[test]
    fn a_node_leaves_the_notifications_of_its_own_inserts_be() {
        let signals = Signals::default();
        let woken = |signals: &Signals| signals.queued.notified().now_or_never().is_some();
        dispatch(&signals, "n1", CHANNEL, "n1");
        assert!(!woken(&signals), "its own insert");
        dispatch(&signals, "n1", CHANNEL, "n2");
        assert!(woken(&signals), "another node's insert");
        dispatch(&signals, "n1", CHANNEL, "");
        assert!(woken(&signals), "another client's insert, or an explicit notification");
    }
}

#[cfg(test)]
mod partition_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_postgres::NoTls;

    use super::{CLAIM, COMPLETE, GENERIC, KEEP_RETRIED, MIGRATIONS, NOTIFY_DUE, PostgresStore};
    use crate::signals::Signals;
    use crate::store::Store;

    /// A fresh schema of its own on the test database: a client whose
    /// search path is it, its name, and a URL naming it. `None` (and a
    /// note) without `WASMJOB_TEST_POSTGRES_URL`.
    async fn schema(name: &str) -> Option<(tokio_postgres::Client, String, String)> {
        let Ok(url) = std::env::var("WASMJOB_TEST_POSTGRES_URL") else {
            eprintln!("WASMJOB_TEST_POSTGRES_URL is not set: no PostgreSQL to test");
            return None;
        };
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("PostgreSQL");
        tokio::spawn(connection);
        let schema = format!("{name}_{}", std::process::id());
        let create =
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema}");
        client.batch_execute(&create).await.expect("a schema of its own");
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        Some((client, schema, url))
    }

    /// A lease extended while the task's ending moves its row into
    /// `tasks_done`: PostgreSQL fails the extension with a serialization
    /// failure, the store runs it again, and it answers that the lease is
    /// no longer held instead of an error.
    #[tokio::test]
    async fn a_statement_that_meets_a_row_moved_by_an_ending_runs_again() {
        let Some((client, schema, url)) = schema("wj_moved").await else { return };
        let store = PostgresStore::connect(&url, Arc::new(Signals::default())).await.expect("the store");
        client
            .batch_execute(
                "INSERT INTO tasks (job, version, args, state, queued_at, run_at, max_retries, tenant, lease) \
                 VALUES ('a', 'v', '{}', 'started', 1, 1, 0, 't', 'n:1:1')",
            )
            .await
            .expect("a started task");
        let ending = "BEGIN; UPDATE tasks SET state = 'success', lease = NULL WHERE id = 1";
        client.batch_execute(ending).await.expect("an ending, not committed");
        let extending = tokio::spawn(async move { store.extend_leases(vec!["n:1:1".into()], i64::MAX).await });
        // The extension waits for the ending's row lock; then the ending commits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.batch_execute("COMMIT").await.expect("the ending committed");
        let held = extending.await.expect("the extension ran").expect("no conflict error");
        assert!(held.is_empty(), "the lease of a task that ended is not held: {held:?}");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }

    /// A claim's commit does not wait for the disk (`synchronous_commit`
    /// is off within its transaction), and everything after it on its
    /// connection waits as before: the setting ends with the claim.
    #[tokio::test]
    async fn a_claim_does_not_wait_for_the_disk_and_what_follows_it_does() {
        let Some((client, schema, url)) = schema("wj_claim_sync").await else { return };
        drop(PostgresStore::connect(&url, Arc::new(Signals::default())).await.expect("the store (migrated)"));
        queue_raw(&client, 3, 0).await;
        let setting =
            async || -> String { client.query_one("SHOW synchronous_commit", &[]).await.expect("the setting").get(0) };
        let before = setting().await;
        assert_ne!(before, "off", "the test database waits for the disk by default");
        client.batch_execute("BEGIN").await.expect("a transaction");
        let (tenants, maxes, queues) = (vec!["t"], vec![10_i64], None::<Vec<String>>);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&100_i64, &"n", &1_000_000_i64, &2_i32, &tenants, &maxes, &queues];
        let claimed = client.query(CLAIM, &params).await.expect("a claim");
        assert_eq!(claimed.iter().filter(|r| r.get::<_, Option<i64>>(0).is_some()).count(), 2);
        assert_eq!(setting().await, "off", "the claim's commit does not wait for the disk");
        client.batch_execute("COMMIT").await.expect("the claim committed");
        assert_eq!(setting().await, before, "what follows the claim waits for the disk");
        let started: i64 = client
            .query_one("SELECT count(*) FROM tasks WHERE state = 'started'", &[])
            .await
            .expect("the started tasks")
            .get(0);
        assert_eq!(started, 2, "the claim took its tasks");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }

    /// An insert of tasks notifies naming the node whose connection made
    /// it (`wasmjob.node`, schema v21), and so does [`NOTIFY_DUE`]; by
    /// another client, they name nobody. Told apart by the sending backend,
    /// as other tests' nodes notify the same channel meanwhile.
    #[tokio::test]
    async fn a_notification_of_tasks_names_the_node_that_sent_it() {
        let Some((client, schema, url)) = schema("wj_notify_node").await else { return };
        let store = PostgresStore::connect(&url, Arc::new(Signals::default())).await.expect("the store");
        let (_listener, mut heard) = listening(&url).await;
        let pid = async |c: &tokio_postgres::Client| -> i32 {
            c.query_one("SELECT pg_backend_pid()", &[]).await.expect("the backend").get(0)
        };
        let connection = store.pool.get().await.expect("a connection of the store");
        let node: String =
            connection.query_one("SELECT current_setting($1)", &[&super::NODE_SETTING]).await.expect("its name").get(0);
        assert_eq!(node.len(), 16, "the store names itself: {node:?}");
        let insert = "INSERT INTO tasks (tenant, job, version, args, state, queued_at, run_at, max_retries) \
                      VALUES ('t', 'a', 'v', '{}', 'queued', 1, 1, 0)";
        let senders = [(&**connection, node.as_str()), (&client, "")];
        for ((sender, named), statement) in senders.into_iter().flat_map(|s| [(s, insert), (s, &**NOTIFY_DUE)]) {
            let sender_pid = pid(sender).await;
            sender.batch_execute(statement).await.expect("an insert, or tasks due");
            let payload = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let (from, payload) = heard.recv().await.expect("the listener");
                    if from == sender_pid {
                        break payload;
                    }
                }
            })
            .await
            .expect("the notification");
            assert_eq!(payload, named, "{statement}: the notification names the sending node, or nobody");
        }
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }

    /// A connection that `LISTEN`s for inserts of tasks, and what it hears:
    /// the sending backend and the payload of each notification.
    async fn listening(url: &str) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<(i32, String)>) {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.expect("PostgreSQL");
        let (sending, heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    let _ = sending.send((n.process_id(), n.payload().to_owned()));
                }
            }
        });
        client.batch_execute(&format!("LISTEN {}", super::CHANNEL)).await.expect("LISTEN");
        (client, heard)
    }

    /// The ids and leases of the tasks the claim `call` takes (its last
    /// row, which only tells of the claim, left out).
    async fn claim(client: &tokio_postgres::Client, call: &str) -> (Vec<i64>, Vec<String>) {
        let claimed = client.query(&format!("SELECT id, lease FROM {call}"), &[]).await.expect("a claim");
        claimed.iter().filter_map(|r| Some((r.get::<_, Option<i64>>(0)?, r.get(1)))).unzip()
    }

    /// This backend's counts of scans (sequential, by index) of
    /// `tasks_done` and rows inserted into it, not yet reported.
    async fn history_counts(client: &tokio_postgres::Client) -> (i64, i64, i64) {
        client
            .query_opt(
                "SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0), n_tup_ins FROM pg_stat_xact_user_tables \
                 WHERE relname = 'tasks_done' AND schemaname = current_schema()",
                &[],
            )
            .await
            .expect("the backend's counts")
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .unwrap_or((0, 0, 0))
    }

    /// The queue's statements (a claim, its endings, a retry's ending) read
    /// nothing of the finished tasks, however many are stored: they count
    /// no scan of `tasks_done` (counted by PostgreSQL within the
    /// transaction, `pg_stat_xact_user_tables`), only the rows the endings
    /// move into it.
    #[tokio::test]
    async fn the_queue_reads_nothing_of_the_finished_tasks() {
        let Some((client, schema, url)) = schema("wj_history").await else { return };
        drop(PostgresStore::connect(&url, Arc::new(Signals::default())).await.expect("the store (migrated)"));
        client
            .batch_execute(
                "INSERT INTO tasks (tenant, job, version, args, state, reason, queued_at, run_at, started_at, \
                   finished_at, attempt, max_retries, result) \
                 SELECT 't', 'a', 'v', '{}', 'success', 'success', g, g, g, g, 1, 0, '1' \
                 FROM generate_series(1, 20000) g",
            )
            .await
            .expect("a history");
        queue_raw(&client, 10, 3).await;
        client.batch_execute("ANALYZE tasks_live; ANALYZE tasks_done").await.expect("statistics");
        client.batch_execute("BEGIN").await.unwrap();
        let before = history_counts(&client).await;
        // As a node of the version before named queues calls it: every queue.
        let (ids, leases) = claim(&client, "wasmjob_claim(100, 'n', 1000000, 10, ARRAY['t'], ARRAY[10::bigint])").await;
        assert_eq!(ids.len(), 10);
        // The odd ones end, with the plain statement; the even ones are
        // retried, with the one that keeps their attempts.
        for keeping in [false, true] {
            let sql = if keeping {
                format!(
                    "WITH done AS ({COMPLETE} RETURNING t.id, t.state, t.attempt, t.started_at, c.lease, \
                     c.reason, c.error, c.fuel, c.wall, c.log, c.finished, c.requests, c.sent, c.received), \
                     kept AS ({KEEP_RETRIED}) SELECT id, state FROM done"
                )
            } else {
                format!("{COMPLETE} RETURNING t.id, t.state")
            };
            let (ids, leases): (Vec<i64>, Vec<String>) =
                ids.iter().zip(&leases).skip(usize::from(keeping)).step_by(2).map(|(i, l)| (*i, l.clone())).unzip();
            let m = ids.len();
            let states = vec![if keeping { "retry" } else { "success" }; m];
            let texts = |s: &str| vec![s.to_owned(); m];
            let (reasons, results, errors, logs) = (texts("done"), texts("1"), texts(""), texts(""));
            let (numbers, finished, retry_at) = (vec![1i64; m], vec![200i64; m], vec![None::<i64>; m]);
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
                &ids, &leases, &states, &reasons, &results, &errors, &numbers, &numbers, &logs, &finished, &retry_at,
                &numbers, &numbers, &numbers,
            ];
            if keeping {
                params.push(&super::ATTEMPT_LOG_KEPT);
            }
            assert_eq!(client.query(&sql, &params).await.expect("the endings").len(), m);
        }
        let after = history_counts(&client).await;
        let counted = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        assert_eq!(counted, (0, 0, 5), "scans (sequential, by index) of tasks_done, and rows moved into it");
        let kept: i64 = client.query_one("SELECT count(*) FROM attempts", &[]).await.unwrap().get(0);
        assert_eq!(kept, 5, "the retried attempts are kept");
        client.batch_execute("ROLLBACK").await.unwrap();
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }

    /// This backend's counts, not yet reported, of sequential scans of
    /// `tasks_live` and of its rows fetched through an index.
    async fn live_reads(client: &tokio_postgres::Client) -> (i64, i64) {
        client
            .query_one(
                "SELECT coalesce(seq_scan, 0), coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables \
                 WHERE relname = 'tasks_live' AND schemaname = current_schema()",
                &[],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .expect("the backend's counts")
    }

    /// Queues `n` tasks of tenant `t`'s job `a` straight into the table,
    /// due at 1, 2, ... `n`, with `max_retries` each.
    async fn queue_raw(client: &tokio_postgres::Client, n: i64, max_retries: i32) {
        client
            .execute(
                "INSERT INTO tasks (tenant, job, version, args, state, queued_at, run_at, max_retries) \
                 SELECT 't', 'a', 'v', '{}', 'queued', g, g, $2 FROM generate_series(1, $1::bigint) g",
                &[&n, &max_retries],
            )
            .await
            .expect("a queue");
    }

    /// Ends the tasks `ids` (holding `leases`) in success by `statement`
    /// ([`COMPLETE`] returning ids); answers how many it ended.
    async fn end<T>(client: &tokio_postgres::Client, statement: &T, ids: Vec<i64>, leases: Vec<String>) -> usize
    where
        T: tokio_postgres::ToStatement + ?Sized,
    {
        let m = ids.len();
        let texts = |s: &str| vec![s.to_owned(); m];
        let (states, reasons, results, errors, logs) =
            (texts("success"), texts("success"), texts("1"), texts(""), texts(""));
        let (numbers, finished, retry_at) = (vec![1i64; m], vec![20000i64; m], vec![None::<i64>; m]);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 14] = [
            &ids, &leases, &states, &reasons, &results, &errors, &numbers, &numbers, &logs, &finished, &retry_at,
            &numbers, &numbers, &numbers,
        ];
        client.query(statement, &params).await.expect("the endings").len()
    }

    /// Claims 10 of tenant `t`'s tasks and ends them, in one transaction;
    /// answers the sequential scans of `tasks_live` and the live rows
    /// fetched through its indexes by the claim, and by the endings.
    async fn claim_and_end(client: &tokio_postgres::Client) -> [(i64, i64); 2] {
        client.batch_execute("BEGIN").await.unwrap();
        let before = live_reads(client).await;
        let (ids, leases) =
            claim(client, "wasmjob_claim(10000, 'n', 1000000, 20, ARRAY['t'], ARRAY[10::bigint])").await;
        assert_eq!(ids.len(), 10);
        let between = live_reads(client).await;
        assert_eq!(end(client, &format!("{COMPLETE} RETURNING t.id"), ids, leases).await, 10);
        let after = live_reads(client).await;
        client.batch_execute("COMMIT").await.unwrap();
        [(between.0 - before.0, between.1 - before.1), (after.0 - between.0, after.1 - between.1)]
    }

    /// A claim and its endings read the live partition by what they take,
    /// however stale its plans and statistics, with 3,000 tasks of each of
    /// two tenants waiting: the claim (of one tenant, at its limit, so that
    /// it also looks for the next due time) with its plans made while the
    /// partition was empty, after a vacuum that left the statistics of a
    /// burst's columns and a count of zero rows; both with statistics
    /// taken (`ANALYZE`) when the partition's pages held only dead rows. With them the planner took a
    /// scan of every page for each of the claim's lookups, and a walk of
    /// the whole id index for each batch of endings.
    #[tokio::test]
    async fn the_queue_reads_the_live_tasks_it_takes_whatever_their_statistics_say() {
        let Some((client, schema, url)) = schema("wj_stale").await else { return };
        drop(PostgresStore::connect(&url, Arc::new(Signals::default())).await.expect("the store (migrated)"));
        let queue = "INSERT INTO tasks (tenant, job, version, args, state, queued_at, run_at, max_retries) \
                     SELECT t, 'a', 'v', '{}', 'queued', g, g, 3 \
                     FROM generate_series(1, 3000) g, unnest(ARRAY['t', 'u']) t";
        let run = "UPDATE tasks SET state = 'success', finished_at = 1 WHERE state IN ('queued', 'started')";
        // Statistics of a burst's columns, then a row count of zero: as
        // autovacuum leaves them after a burst.
        for step in [queue, "ANALYZE tasks_live", run, "VACUUM tasks_live"] {
            client.batch_execute(step).await.expect("a history, vacuumed away");
        }
        // More than the five calls after which PostgreSQL may keep a plan.
        for _ in 0..8 {
            let idle = "SELECT count(*) FROM wasmjob_claim(10000, 'n', 1000000, 20, ARRAY['t'], ARRAY[10::bigint])";
            client.batch_execute(idle).await.expect("a claim of the empty queue");
        }
        client.batch_execute(queue).await.expect("a queue");
        // The heads claimed and the rows updated, each a few times over:
        // not the 6,000 waiting. (The endings may read the few pages of a
        // partition whose statistics are right: the planner's choice.)
        let [(scans, fetched), _] = claim_and_end(&client).await;
        assert_eq!(scans, 0, "sequential scans by a claim planned while the partition was empty");
        assert!(fetched <= 100, "{fetched} live rows fetched to claim 10, planned while the partition was empty");

        for step in [run, "ANALYZE tasks_live", queue] {
            client.batch_execute(step).await.expect("statistics of dead rows, and a queue");
        }
        for (reads, what) in claim_and_end(&client).await.into_iter().zip(["claim", "end"]) {
            assert_eq!(reads.0, 0, "sequential scans to {what} 10, with statistics of dead rows");
            assert!(reads.1 <= 100, "{} live rows fetched to {what} 10, with statistics of dead rows", reads.1);
        }
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }

    /// A claim of a node serving only `emails`, with 3,000 tasks of one job
    /// waiting in `default` and statistics that say so (every waiting task
    /// of that queue and job), reads none of them: neither to pick the
    /// heads of its groups nor to find when its own queue's next task is
    /// due, which it answers exactly (the earliest of every job and
    /// priority, not of each job's highest). Version 21 fetched every one
    /// of them (3,004 rows).
    #[tokio::test]
    async fn a_claim_of_some_queues_reads_no_task_of_the_others() {
        let Some((client, schema, url)) = schema("wj_queues").await else { return };
        drop(PostgresStore::connect(&url, Arc::new(Signals::default())).await.expect("the store (migrated)"));
        queue_raw(&client, 3000, 3).await;
        client
            .batch_execute(
                "INSERT INTO tasks (tenant, job, version, args, state, priority, queued_at, run_at, max_retries, queue) \
                 VALUES ('t', 'a', 'v', '{}', 'queued', 5, 1, 50000, 0, 'emails'), \
                        ('t', 'a', 'v', '{}', 'queued', 0, 1, 30000, 0, 'emails'), \
                        ('t', 'b', 'v', '{}', 'queued', 1, 1, 40000, 0, 'emails'); \
                 ANALYZE tasks_live",
            )
            .await
            .expect("a queue, and its statistics");
        let call = "wasmjob_claim(10000, 'n', 1000000, 20, ARRAY['t'], ARRAY[10::bigint], ARRAY['emails'])";
        // More than the five calls after which PostgreSQL may keep a plan.
        for _ in 0..8 {
            client.batch_execute(&format!("SELECT count(*) FROM {call}")).await.expect("a claim");
        }
        client.batch_execute("BEGIN").await.unwrap();
        let before = live_reads(&client).await;
        let rows = client.query(&format!("SELECT id, next_run_at FROM {call}"), &[]).await.expect("a claim");
        let after = live_reads(&client).await;
        client.batch_execute("COMMIT").await.unwrap();
        let next: Vec<(Option<i64>, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(next, [(None, Some(30000))], "nothing taken; the next due of `emails`");
        assert_eq!(after.0 - before.0, 0, "sequential scans of the live tasks");
        let fetched = after.1 - before.1;
        assert!(fetched <= 20, "{fetched} live rows fetched by a claim of a queue with 3 tasks waiting");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }

    /// The plain endings' one plan per connection ([`GENERIC`]), made
    /// while the live partition was empty and analysed so, reads only the
    /// rows it ends once 3,000 tasks wait: no sequential scan of
    /// `tasks_live`, at most 100 live rows fetched to end 10.
    #[tokio::test]
    async fn the_endings_plan_made_on_an_empty_queue_reads_only_what_they_end() {
        let Some((client, schema, url)) = schema("wj_generic").await else { return };
        drop(PostgresStore::connect(&url, Arc::new(Signals::default())).await.expect("the store (migrated)"));
        for (name, value) in GENERIC {
            client.batch_execute(&format!("SET {name} = {value}")).await.expect("the endings' settings");
        }
        client.batch_execute("VACUUM ANALYZE tasks_live").await.expect("statistics of an empty partition");
        let ending = client.prepare(&format!("{COMPLETE} RETURNING t.id")).await.expect("the endings prepared");
        // Its plan is made here, on the empty partition, and kept.
        assert_eq!(end(&client, &ending, Vec::new(), Vec::new()).await, 0);
        queue_raw(&client, 3000, 3).await;
        client.batch_execute("BEGIN").await.unwrap();
        let (ids, leases) =
            claim(&client, "wasmjob_claim(10000, 'n', 1000000, 20, ARRAY['t'], ARRAY[10::bigint])").await;
        assert_eq!(ids.len(), 10);
        let before = live_reads(&client).await;
        assert_eq!(end(&client, &ending, ids, leases).await, 10);
        let after = live_reads(&client).await;
        client.batch_execute("COMMIT").await.unwrap();
        assert_eq!(after.0 - before.0, 0, "sequential scans to end 10, planned while the partition was empty");
        let fetched = after.1 - before.1;
        assert!(fetched <= 100, "{fetched} live rows fetched to end 10, planned while the partition was empty");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }

    /// A store at version 9 with waiting, running and finished tasks keeps
    /// every one through version 10's partitioning, each in its partition
    /// with its columns, and new tasks take ids after the old ones.
    #[tokio::test]
    async fn partitioning_keeps_every_task_and_its_id_sequence() {
        let Some((client, schema, _)) = schema("wj_migrate").await else { return };
        for migration in &MIGRATIONS[..9] {
            client.batch_execute(migration).await.expect("versions 1 to 9");
        }
        client
            .batch_execute(
                "INSERT INTO tasks (job, version, args, state, queued_at, run_at, max_retries, tenant, lease, result) \
                 VALUES ('a', 'v', '{}', 'queued', 1, 1, 0, 't', NULL, NULL), \
                        ('a', 'v', '{}', 'started', 1, 1, 0, 't', 'n:2:1', NULL), \
                        ('a', 'v', '{}', 'success', 1, 1, 0, 't', NULL, '42'), \
                        ('a', 'v', '{}', 'revoked', 1, 1, 0, 't', NULL, NULL)",
            )
            .await
            .expect("tasks at version 9");
        client.batch_execute(MIGRATIONS[9]).await.expect("version 10");
        let rows = client
            .query(
                "SELECT tableoid::regclass::text || ' ' || id || ' ' || state || ' ' || \
                   COALESCE(lease, '-') || ' ' || COALESCE(result, '-') FROM tasks ORDER BY id",
                &[],
            )
            .await
            .expect("the tasks");
        let seen: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let expected = [
            "tasks_live 1 queued - -",
            "tasks_live 2 started n:2:1 -",
            "tasks_done 3 success - 42",
            "tasks_done 4 revoked - -",
        ];
        assert_eq!(seen, expected, "partition, id, state, lease, result of each task");
        let next: i64 = client
            .query_one(
                "INSERT INTO tasks (job, version, args, state, queued_at, run_at, max_retries, tenant) \
                 VALUES ('a', 'v', '{}', 'queued', 1, 1, 0, 't') RETURNING id",
                &[],
            )
            .await
            .expect("a new task")
            .get(0);
        assert_eq!(next, 5, "new ids continue after the migrated ones");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("the schema dropped");
    }
}
