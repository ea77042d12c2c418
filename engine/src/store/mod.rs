//! Where jobs and tasks live: the [`Store`] interface, and its backends.
//!
//! - [`sqlite`]: the embedded default, one SQLite file in WAL mode.
//! - [`postgres`]: several nodes on one PostgreSQL database.
//!
//! Every backend implements the same task state machine:
//!
//! ```text
//!            claim                 complete
//! queued ─────────────▶ started ─────────────▶ success | failure
//!   │  ▲                  │  │
//!   │  └──── (due) ───── retry ◀── complete: retryable, attempts left
//!   │                        ◀── lease expired (worker died), attempts left
//!   └──▶ revoked (expired: not started before its expiry; or revoked by a user)
//! ```
//!
//! - `queued`: waiting for its `run_at`; `retry`: waiting for its next
//!   attempt. Both are claimable once due, highest priority first, then
//!   oldest `run_at`.
//! - `started`: claimed by a worker under a lease; `attempt` counts starts.
//! - `success`, `failure`, `revoked`: terminal; `reason` says why (the
//!   outcome class, `expired`, `revoked`, `lease-expired`...).
//!
//! A job that forbids overlap stores an overlap key on its tasks; the store
//! refuses a second queued, retrying or started task with the same job and
//! key and answers with the id of the one that exists. The lock is the task's
//! own state, so it is released by every terminal transition and cannot
//! outlive a dead worker: the lease sweep moves that worker's tasks on.

mod fair;
pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use crate::egress::HttpUsage;
use crate::limits::{JobLimits, QueueLimits, Rate};
use crate::task::TaskId;

/// Milliseconds since the Unix epoch: how stores record time.
pub type Millis = i64;

/// A duration in [`Millis`], saturating.
pub(crate) fn to_millis(d: std::time::Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    Queued,
    Started,
    Retry,
    Success,
    Failure,
    Revoked,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 6] =
        [Self::Queued, Self::Started, Self::Retry, Self::Success, Self::Failure, Self::Revoked];

    /// The state's name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Started => "started",
            Self::Retry => "retry",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Revoked => "revoked",
        }
    }

    /// Parses [`TaskState::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the task will never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Revoked)
    }
}

/// A registered job version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub tenant: String,
    pub name: String,
    /// Content hash of the component: the version.
    pub hash: String,
    /// The job's metadata as JSON (`crate::job::JobMetadata`).
    pub metadata: String,
    pub registered_at: Millis,
}

/// An upload of a component, compiled in the background
/// ([`crate::upload`]): one per tenant and component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub tenant: String,
    /// The component's content hash (the version it becomes).
    pub id: String,
    pub state: UploadState,
    /// The job's name, once compiled.
    pub name: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The component's size in bytes.
    pub size: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UploadState {
    /// Stored, waiting for or in its compile.
    Compiling,
    /// Compiled and registered: its job runs the new version.
    Ready,
    /// Refused (invalid, over a limit, or its compile failed): see the reason.
    Rejected,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compiling => "compiling",
            Self::Ready => "ready",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Compiling, Self::Ready, Self::Rejected].into_iter().find(|state| state.as_str() == s)
    }
}

/// A task to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub tenant: String,
    pub job: String,
    /// The version the task runs: the job's current one when it was queued.
    pub version: String,
    pub args: String,
    pub priority: i32,
    /// Not before this time.
    pub run_at: Millis,
    /// Revoked as `expired` if not started by then.
    pub expires_at: Option<Millis>,
    pub max_retries: u32,
    /// Set for jobs that forbid overlap.
    pub overlap_key: Option<String>,
    pub from_task: Option<TaskId>,
    pub root_task: Option<TaskId>,
    /// 0 for a task queued from outside; parent's depth + 1 for a child.
    pub depth: u32,
    pub queued_at: Millis,
    /// Unique by args until then ([`crate::task::QueueOptions::unique_for`]).
    pub unique: Option<Unique>,
    /// A child that waits for the attempt that queued it to succeed.
    pub pending: Option<Pending>,
    /// Its named queue ([`crate::task::DEFAULT_QUEUE`] by default).
    pub queue: String,
}

/// A child held for its parent's attempt ([`NewTask::pending`]): written
/// `queued` with reason `parent`, never due, until that attempt ends; then
/// released (due `delay` after, expiring `expiry` after that) if it
/// succeeded, else revoked with reason `discarded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub parent: TaskId,
    pub attempt: u32,
    /// From its release to when it is due.
    pub delay: Millis,
    /// From when it is due to when it expires.
    pub expiry: Option<Millis>,
}

/// The reason of a child waiting for its parent's attempt.
pub const PENDING_REASON: &str = "parent";
/// The reason of a child whose parent's attempt did not succeed.
pub const DISCARDED_REASON: &str = "discarded";
/// The reason of a workflow step waiting for the stage before it
/// ([`crate::workflow`]).
pub const WORKFLOW_REASON: &str = "workflow";
/// The reason of a workflow step revoked because a step of an earlier
/// stage did not succeed.
pub const UPSTREAM_REASON: &str = "upstream";

/// A task's claim to be the only one of its job with its args for a while:
/// a second insert with the same key before `until` answers
/// [`Inserted::Duplicate`] with the first task's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// The SHA-256 (hex) of its args as canonical JSON.
    pub key: String,
    pub until: Millis,
}

/// When a held task would run: never, until settled (9999-12-31T23:59:59.999Z,
/// the latest time RFC 3339 writes, so that it shows as a time).
pub const HELD_RUN_AT: Millis = 253_402_300_799_999;

/// A task held until its job's upload compiles ([`Store::insert_held`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTask {
    pub id: TaskId,
    pub job: String,
    pub args: String,
    /// The queue request's options, as JSON.
    pub options: String,
    pub queued_at: Millis,
}

/// How a held task is settled once its upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Its job compiled: the task waits like any other, with these fields.
    Due { priority: i32, run_at: Millis, expires_at: Option<Millis>, max_retries: u32, overlap_key: Option<String> },
    /// It fails, with an outcome class and why.
    Fail { reason: String, error: String },
}

/// Tokens to take from a rate bucket ([`Store::take_tokens`]) with the
/// insert of the tasks they admit.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub bucket: String,
    pub n: u64,
    /// Tokens per second.
    pub rate: f64,
    /// The bucket's size.
    pub burst: f64,
    pub now: Millis,
}

/// A task as retention judges it ([`Store::tasks_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aged {
    pub id: i64,
    pub tenant: String,
    pub state: TaskState,
    pub queued_at: Millis,
    pub finished_at: Option<Millis>,
}

/// What [`Store::retry`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Back in line.
    Queued,
    /// No such task.
    Missing,
    /// Not failed or revoked: in this state.
    Not(TaskState),
    /// A task with the same job and overlap key is waiting or running.
    Duplicate(TaskId),
}

/// Whether an insert made a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    Task(TaskId),
    /// A task with the same job and overlap key is queued or running, or
    /// one with the same unique key was queued within its period.
    Duplicate(TaskId),
}

/// A workflow as inserted: its id, and its steps' task ids stage by stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertedWorkflow {
    pub id: String,
    pub stages: Vec<Vec<TaskId>>,
}

/// A task a worker has claimed and must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTask {
    pub id: TaskId,
    pub tenant: String,
    pub job: String,
    pub version: String,
    pub args: String,
    /// 1 for the first run.
    pub attempt: u32,
    pub max_retries: u32,
    pub root_task: Option<TaskId>,
    pub depth: u32,
    /// The lease the completion must present (fencing).
    pub lease: String,
    /// When it became due (its `run_at`): it waited from then until its claim.
    pub due_at: Millis,
    /// A step of a workflow: its ending settles the stages after it.
    pub workflow: bool,
    /// Its named queue: the tasks it queues go to it by default.
    pub queue: String,
}

/// A request to claim due tasks, fairly across tenants: each tenant with
/// due tasks gets an equal share of `limit` in turn, within its remaining
/// running slots.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub node: String,
    pub limit: usize,
    pub now: Millis,
    pub lease_until: Millis,
    /// Each tenant's `max_running`: how many of its tasks may be started at
    /// once across every node. The store counts the tenant's started tasks
    /// in the claim itself and claims at most the difference. A tenant not
    /// listed (not yet known to this node) gets nothing from this claim.
    pub max_running: std::collections::HashMap<String, usize>,
    /// The named queues claimed from; `None`: every queue.
    pub queues: Option<Vec<String>>,
}

/// A tenant's limits as [`Store::limits`] reads them: its queues', then
/// its jobs', each by name.
pub type LimitRows = (Vec<(String, QueueLimits)>, Vec<(String, JobLimits)>);

/// The columns both stores read a job's limits from: `max_running`,
/// `rate_tasks`, `rate_per_ms` (all NULL when unset).
fn job_limits_of(max_running: Option<i64>, tasks: Option<i64>, per_ms: Option<i64>) -> JobLimits {
    let bounded = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    JobLimits {
        max_concurrency: max_running.map(bounded),
        rate: tasks.zip(per_ms).map(|(tasks, per)| Rate { tasks: bounded(tasks), per_ms: per.max(1) as u64 }),
    }
}

/// The columns both stores write a job's limits to.
fn job_limits_columns(limits: &JobLimits) -> (Option<i64>, Option<i64>, Option<i64>, f64) {
    let rate = limits.rate;
    (
        limits.max_concurrency.map(i64::from),
        rate.map(|r| i64::from(r.tasks)),
        rate.map(|r| i64::try_from(r.per_ms).unwrap_or(i64::MAX)),
        rate.map_or(0.0, |r| f64::from(r.tasks)),
    )
}

/// A lease a heartbeat renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub lease: String,
    /// Someone asked to revoke the task: its worker must stop it.
    pub revoke_requested: bool,
}

/// A counter per kind of catalog row, bumped by every change of that kind
/// on any node: a node whose cache was built from the same generations is
/// up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generations {
    pub jobs: i64,
    pub tenants: i64,
    pub tokens: i64,
}

/// A request to claim the schedules that are due.
#[derive(Debug, Clone)]
pub struct ScheduleClaim {
    /// Names this claim; the tick's write must present it.
    pub claim: String,
    pub now: Millis,
    pub limit: usize,
    /// Until when no other scheduler may claim these schedules.
    pub lease_until: Millis,
}

/// A schedule, as stored: a periodic job's own (name `''`, no plan), or
/// one a tenant made as data (its name and [`crate::plan::Plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub tenant: String,
    pub job: String,
    /// `''` for a periodic job's own schedule; unique within the tenant.
    pub name: String,
    /// What a named schedule queues and when, as JSON.
    pub plan: Option<String>,
    /// When the scheduler last queued a task of it.
    pub last_run_at: Option<Millis>,
    /// When the job's current version was registered: `is-due`'s last run
    /// before the first, and how a scheduler tells a stale version apart.
    /// A named schedule's creation (or last replacement): an interval's
    /// anchor.
    pub since: Millis,
    /// When the scheduler next asks the job's `is-due` (or runs the plan);
    /// [`crate::plan::PAUSED`] for a paused schedule.
    pub next_due_at: Millis,
}

/// What a schedule claim returned.
#[derive(Debug, Clone, Default)]
pub struct ClaimedSchedules {
    pub due: Vec<ScheduleRow>,
    /// When the next unclaimed schedule is due, if there is one.
    pub next_due_at: Option<Millis>,
    /// When the soonest claim held by a scheduler ends, if one is held: its
    /// schedule is usually written (and free again) long before.
    pub held_until: Option<Millis>,
}

/// One scheduler tick of a claimed schedule, to write.
#[derive(Debug, Clone)]
pub struct ScheduleTick {
    pub tenant: String,
    pub job: String,
    /// The schedule's name (`''` for a periodic job's own).
    pub name: String,
    /// The claim that took the schedule.
    pub claim: String,
    /// `last_run_at` as claimed: the write applies only if it still holds.
    pub expected_last: Option<Millis>,
    /// The new `last_run_at`, when the tick ran the job.
    pub ran_at: Option<Millis>,
    pub next_due_at: Millis,
    /// The task this tick queues.
    pub task: Option<NewTask>,
}

/// Which tasks a bulk revoke covers, all within one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeScope {
    /// A task and every task in its tree (queued from it, from them...).
    Tree { tenant: String, root: TaskId },
    /// Every task of a job.
    Job { tenant: String, job: String },
}

impl RevokeScope {
    /// The tenant, and either the root task's id or the job's name, as the
    /// stores' statements take them; `None` for a root id no task can have.
    pub(crate) fn parts(self) -> Option<(String, Option<i64>, Option<String>)> {
        match self {
            Self::Tree { tenant, root } => crate::task::parse_id(&root).map(|root| (tenant, Some(root), None)),
            Self::Job { tenant, job } => Some((tenant, None, Some(job))),
        }
    }
}

/// What a bulk revoke did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedMany {
    /// Tasks that had not started: revoked.
    pub revoked: Vec<TaskId>,
    /// Running tasks: asked to stop (they end `revoked`).
    pub stopping: Vec<TaskId>,
}

/// What became of a tick's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickWrite {
    /// Written, with the task's insert if it queued one.
    Written(Option<Inserted>),
    /// The schedule is no longer this claim's: the job was deleted or
    /// replaced, or another scheduler took it after this claim's lease
    /// ended. Nothing was written.
    Lost,
}

/// A tenant and its quota overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub name: String,
    /// JSON overrides of the default quotas.
    pub quotas: String,
    pub created_at: Millis,
}

/// A bearer token, as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub hash: String,
    /// `None` for an admin token.
    pub tenant: Option<String>,
    /// `read`, `write` or `admin`.
    pub scope: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// What a claim returned.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub tasks: Vec<ClaimedTask>,
    /// When the next queued task becomes due, if one is waiting (of the
    /// queues served; for a node serving some, of the tenants the request
    /// names, and possibly later than that: [`crate::limits::MAX_WALK`]).
    pub next_run_at: Option<Millis>,
    /// When a job with a due task held back by its rate gets its next
    /// token ([`crate::limits`]), if one was.
    pub wake_at: Option<Millis>,
    /// Tenants with due tasks were skipped because another node was
    /// claiming for them: claiming again shortly may find them free.
    pub contended: bool,
}

/// How a started task ended, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub id: TaskId,
    /// Whose, for the events of its ending.
    pub tenant: String,
    pub job: String,
    pub attempt: u32,
    pub lease: String,
    /// `success`, `failure` or `retry`.
    pub state: TaskState,
    /// The outcome class (`success`, `fuel-exhausted`...).
    pub reason: String,
    pub result: Option<String>,
    pub error: Option<String>,
    pub fuel: u64,
    pub wall_time_us: u64,
    /// Requests made and body bytes sent and received.
    pub http: HttpUsage,
    pub log: String,
    pub finished_at: Millis,
    /// For `retry`: when the next attempt is due.
    pub retry_at: Option<Millis>,
    /// The attempt queued children: they are released with a success, and
    /// discarded with any other ending, in the same write.
    pub children: bool,
    /// A step of a workflow ([`ClaimedTask::workflow`]): a success that
    /// completes its stage releases the next in the same write.
    pub workflow: bool,
}

/// A started task whose lease ran out, as [`Store::rescue`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescued {
    pub id: TaskId,
    pub tenant: String,
    pub job: String,
    /// The attempt its lost worker ran.
    pub attempt: u32,
    /// `retry`, `failure` (out of attempts, or poisoned) or `revoked`.
    pub state: TaskState,
    pub reason: String,
}

/// A task revoked by the store on its own: because it had not started
/// before its expiry, or because its workflow failed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub id: TaskId,
    pub tenant: String,
    pub job: String,
}

/// Everything recorded about a task: a row of the store, shown to
/// clients as a [`crate::wire::Task`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub id: TaskId,
    pub tenant: String,
    pub job: String,
    pub version: String,
    pub args: String,
    pub state: TaskState,
    pub reason: Option<String>,
    pub priority: i32,
    pub queued_at: Millis,
    pub run_at: Millis,
    pub expires_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub attempt: u32,
    pub max_retries: u32,
    pub result: Option<String>,
    pub error: Option<String>,
    pub fuel: Option<u64>,
    pub wall_time_us: Option<u64>,
    pub log: Option<String>,
    pub from_task: Option<TaskId>,
    pub root_task: Option<TaskId>,
    pub depth: u32,
    pub overlap_key: Option<String>,
    /// The lease (`node:task:attempt`) of the last attempt that was rescued
    /// because its worker died.
    pub rescued_lease: Option<String>,
    /// What the last attempt used of the network.
    pub http: Option<HttpUsage>,
    /// The last progress its running attempt reported, as JSON
    /// ([`crate::runtime::Progress`]).
    pub progress: Option<String>,
    /// The workflow it is a step of.
    pub workflow: Option<String>,
    /// Its named queue.
    pub queue: String,
}

/// The most of an earlier attempt's log kept: its last 16,384 characters.
/// (The task's row keeps its last attempt's whole log.)
pub const ATTEMPT_LOG_KEPT: i64 = 16 * 1024;

/// An attempt that did not end its task (it asked for a retry, its worker
/// died, or the task was retried by hand after it ended), as kept when the
/// next one was decided. The task's row holds its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: u32,
    /// The lease it ran under (`node:task:attempt`), when known.
    pub lease: Option<String>,
    pub started_at: Option<Millis>,
    pub finished_at: Millis,
    /// The state it left its task in: `retry`, or `failure`/`revoked` for
    /// one that ended it before a retry by hand.
    pub state: TaskState,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub fuel: Option<u64>,
    pub wall_time_us: Option<u64>,
    /// The end of its log ([`ATTEMPT_LOG_KEPT`]).
    pub log: Option<String>,
    pub http: Option<HttpUsage>,
}

/// What one node saw of one tenant's job in one minute
/// ([`crate::activity`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityRow {
    pub tenant: String,
    /// The minute's start (ms since the epoch, a multiple of 60,000).
    pub minute: Millis,
    pub job: String,
    /// The node (its id and incarnation): each writes only its own rows.
    pub node: String,
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    pub revoked: u64,
    pub fuel: u64,
    pub wall_time_us: u64,
    /// Tasks started per bucket of [`crate::activity::WAIT_BUCKETS_MS`]:
    /// how long they waited once due.
    pub waits: Vec<u64>,
}

/// The columns of `attempts` that make an [`AttemptRecord`], in order.
const ATTEMPT_COLUMNS: &str = "attempt, lease, started_at, finished_at, state, reason, error, fuel, wall_time_us, \
    log, http_requests, http_bytes_sent, http_bytes_received";

/// The columns of `activity` that make an [`ActivityRow`], in order.
const ACTIVITY_COLUMNS: &str =
    "tenant, minute, job, node, started, succeeded, failed, retried, revoked, fuel, wall_time_us, waits";

/// An activity row's wait histogram as stored (a JSON array).
fn waits_text(waits: &[u64]) -> String {
    serde_json::to_string(waits).unwrap_or_else(|_| "[]".into())
}

/// An activity row's wait histogram from its stored text.
fn waits_parse(text: &str) -> Result<Vec<u64>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("activity waits `{text}`: {e}")))
}

/// A store's task columns for a workflow's steps: their args (which hold
/// the results passed to them) and logs left out.
fn step_columns(columns: &str) -> String {
    columns.replacen(", args,", ", '{}' AS args,", 1).replacen(", log,", ", NULL AS log,", 1)
}

/// A workflow's steps, each with its stage, in stage then step order, as
/// its stages.
fn by_stage(steps: Vec<(i64, TaskRecord)>) -> Vec<Vec<TaskRecord>> {
    let mut stages: Vec<Vec<TaskRecord>> = Vec::new();
    let mut current = None;
    for (stage, task) in steps {
        if current != Some(stage) {
            stages.push(Vec::new());
            current = Some(stage);
        }
        if let Some(last) = stages.last_mut() {
            last.push(task);
        }
    }
    stages
}

/// A count as stored (an `i64` column).
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count read back (never negative unless corrupt: then 0).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The id of the task a lease (`node:id:attempt`) was given for: leases are
/// renewed and released by primary key, since thousands of tasks may be
/// started at once (a node's tasks waiting on the network).
fn lease_task_id(lease: &str) -> Option<i64> {
    crate::task::parse_id(lease_parts(lease)?.1)
}

/// The node a lease (`node:id:attempt`) was given to.
pub fn lease_node(lease: &str) -> Option<&str> {
    lease_parts(lease)?.0
}

/// A lease's node (if any), task id and attempt (a node's name may hold
/// `:`).
fn lease_parts(lease: &str) -> Option<(Option<&str>, &str, &str)> {
    let mut parts = lease.rsplitn(3, ':');
    let attempt = parts.next()?;
    let id = parts.next()?;
    Some((parts.next(), id, attempt))
}

/// A task's network usage from its three columns (none before it ran).
fn http_usage(requests: Option<i64>, sent: Option<i64>, received: Option<i64>) -> Option<HttpUsage> {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Some(HttpUsage { requests: count(requests?), bytes_sent: count(sent?), bytes_received: count(received?) })
}

/// Filters of [`Store::list_tasks`]; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub tenant: Option<String>,
    pub job: Option<String>,
    pub state: Option<TaskState>,
    pub from_task: Option<TaskId>,
    /// Only tasks queued at or after this time.
    pub queued_after: Option<Millis>,
    /// Only tasks queued before this time.
    pub queued_before: Option<Millis>,
    /// Page size; default 100, at most 1000.
    pub limit: Option<u32>,
    /// Only tasks with an id below this one (pages go newest first).
    pub before_id: Option<TaskId>,
}

/// A value a task listing's condition compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound<'a> {
    Text(&'a str),
    Int(i64),
}

/// The conditions of a task listing: only the filters given, each with
/// `{}` where its value's placeholder goes, so that the planner picks the
/// index that serves them (written as `?N IS NULL OR ...` for every filter,
/// SQLite walked every task newest first to fill a page of a rare state or
/// a small tenant: every row of a 1,000,000-task store). The state, one of
/// a closed set, is written in as a literal: SQLite uses a partial index of
/// a state only for a literal of it. A `from_task` that is no task id
/// matches nothing.
///
/// Answers the `WHERE` clause, its placeholders numbered by `placeholder`
/// (`?N`, `$N`), and their values in order; the page size is the last.
fn list_where<'a>(
    filter: &'a TaskFilter,
    limit: &'a i64,
    placeholder: fn(usize) -> String,
) -> (String, Vec<Bound<'a>>) {
    let mut clauses = vec!["1 = 1".to_owned()];
    let mut bounds = Vec::new();
    for (condition, bound) in list_conditions(filter) {
        match bound {
            Some(bound) => {
                bounds.push(bound);
                clauses.push(condition.replace("{}", &placeholder(bounds.len())));
            }
            None => clauses.push(condition),
        }
    }
    bounds.push(Bound::Int(*limit));
    (format!("{} ORDER BY id DESC LIMIT {}", clauses.join(" AND "), placeholder(bounds.len())), bounds)
}

/// Each condition of [`list_where`], with `{}` where its value goes.
fn list_conditions<'a>(filter: &'a TaskFilter) -> Vec<(String, Option<Bound<'a>>)> {
    let mut conditions = Vec::new();
    let mut add = |condition: String, bound: Option<Bound<'a>>| conditions.push((condition, bound));
    if let Some(tenant) = &filter.tenant {
        add("tenant = {}".into(), Some(Bound::Text(tenant)));
    }
    if let Some(job) = &filter.job {
        add("job = {}".into(), Some(Bound::Text(job)));
    }
    if let Some(state) = filter.state {
        add(format!("state = '{}'", state.as_str()), None);
    }
    if let Some(from_task) = &filter.from_task {
        match crate::task::parse_id(from_task) {
            Some(id) => add("from_task = {}".into(), Some(Bound::Int(id))),
            None => add("1 = 0".into(), None),
        }
    }
    if let Some(after) = filter.queued_after {
        add("queued_at >= {}".into(), Some(Bound::Int(after)));
    }
    if let Some(before) = filter.queued_before {
        add("queued_at < {}".into(), Some(Bound::Int(before)));
    }
    if let Some(before) = filter.before_id.as_deref().and_then(crate::task::parse_id) {
        add("id < {}".into(), Some(Bound::Int(before)));
    }
    conditions
}

/// A failure of the store itself (not an answer about a task).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Database(String),
    #[error("store: the store has shut down")]
    Closed,
    #[error("store: corrupt record: {0}")]
    Corrupt(String),
    /// A concurrent change made the statement fail (PostgreSQL's
    /// serialization failure: a row moved between partitions under it);
    /// the store runs such statements again before it answers this.
    #[error("store: a concurrent change got in the way, try again: {0}")]
    Conflict(String),
}

/// The interface every backend implements. Methods that change state are
/// atomic; batches are all or nothing per item.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a component's bytes under its hash (idempotent).
    async fn put_component(&self, hash: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// A component's bytes.
    async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Makes `job` the current version of its name. A periodic job gets a
    /// schedule, due at once, keeping its `last_run_at` if it had one; a
    /// regular job loses its own (named schedules that queue it stay).
    async fn put_job(&self, job: JobRow, periodic: bool) -> Result<(), StoreError>;
    /// The current version of every job of every tenant.
    async fn jobs(&self) -> Result<Vec<JobRow>, StoreError>;
    /// Every version `tenant`'s job `name` has had: hash and registration time, oldest first.
    async fn job_versions(&self, tenant: &str, name: &str) -> Result<Vec<(String, Millis)>, StoreError>;
    /// Unregisters a job and its schedules, its own and the named ones that
    /// queue it (its tasks and versions stay).
    /// Whether it existed.
    async fn delete_job(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;
    /// The generation of every kind of catalog row.
    async fn generations(&self) -> Result<Generations, StoreError>;

    /// Inserts tasks; each is a task or a duplicate. With `tokens`, takes
    /// them from their bucket in the same write (one round trip on
    /// PostgreSQL when no task has an overlap key), and inserts nothing if
    /// it has too few: `None`.
    async fn insert_tasks(
        &self,
        tasks: Vec<NewTask>,
        tokens: Option<Tokens>,
    ) -> Result<Option<Vec<Inserted>>, StoreError>;
    /// Claims due tasks as `request` says; never a task whose expiry has
    /// passed.
    async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError>;
    /// Revokes, as `expired`, the queued tasks whose expiry passed by
    /// `now` (at most 1,000 per call); answers which.
    async fn expire(&self, now: Millis) -> Result<Vec<Expired>, StoreError>;
    /// Records how started tasks ended. A completion whose lease no longer
    /// holds (the task was rescued) is ignored; answers those that
    /// applied, with the state each is in now (a retry of a task whose
    /// revoke was asked meanwhile is `revoked`).
    async fn complete(&self, completions: Vec<Completion>) -> Result<Vec<(TaskId, TaskState)>, StoreError>;
    /// Extends the leases of running tasks to `until` (the worker's
    /// heartbeat). Returns those that still held; the others were lost.
    async fn extend_leases(&self, leases: Vec<String>, until: Millis) -> Result<Vec<HeldLease>, StoreError>;
    /// Moves started tasks whose lease ended before `now` (or, with
    /// `all_started`, every started task) to `retry` or `failure`: a task
    /// whose worker was now lost under it `poison_after` times fails with
    /// reason `poisoned` whatever its retries left.
    async fn rescue(&self, now: Millis, all_started: bool, poison_after: u32) -> Result<Vec<Rescued>, StoreError>;
    /// Puts started tasks back in line without counting their attempt: they
    /// were stopped by a shutdown, not by a failure. Returns how many.
    async fn release(&self, leases: Vec<String>, now: Millis) -> Result<u64, StoreError>;
    /// Revokes a task that has not started; for a started one, records a
    /// revoke request that its worker's heartbeat reads (and, on
    /// PostgreSQL, notifies it at once). Returns its state afterwards.
    async fn revoke(&self, id: &str, now: Millis) -> Result<Option<TaskState>, StoreError>;
    /// Puts a failed or revoked task back in line, due at `now`, for one
    /// more attempt: its expiry cleared, its `max_retries` raised to its
    /// attempts so far if lower.
    async fn retry(&self, id: &str, now: Millis) -> Result<Retried, StoreError>;

    /// Revokes every task of `scope` that has not ended: those not started
    /// at once, running ones by a revoke request (see [`Store::revoke`]).
    async fn revoke_many(&self, scope: RevokeScope, now: Millis) -> Result<RevokedMany, StoreError>;
    /// Counts `n` more tasks in the tree of root task `root`, if it then
    /// holds at most `max`; false (counting nothing) otherwise.
    async fn grow_tree(&self, root: &str, n: u64, max: u64) -> Result<bool, StoreError>;
    /// Gives back `n` tasks counted in the tree of `root` that were not
    /// queued after all.
    async fn shrink_tree(&self, root: &str, n: u64) -> Result<(), StoreError>;

    /// One task.
    async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Tasks matching `filter`, newest first.
    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<TaskRecord>, StoreError>;
    /// Tasks queued or waiting to retry, per tenant.
    async fn waiting_by_tenant(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Tasks per tenant, job and state.
    async fn count_by_state(&self) -> Result<Vec<(String, String, TaskState, u64)>, StoreError>;

    /// Makes sure the periodic job `job` (version `hash`, registered at
    /// `since`) has a schedule, if it is still that job's current version
    /// (for stores from before schedules kept their due time).
    async fn ensure_schedule(&self, tenant: &str, job: &str, hash: &str, since: Millis) -> Result<(), StoreError>;
    /// Claims up to `limit` schedules due at `now` that no other scheduler
    /// holds, soonest first, until `lease_until`.
    async fn claim_schedules(&self, claim: ScheduleClaim) -> Result<ClaimedSchedules, StoreError>;
    /// Writes ticks of claimed schedules, each atomically with its task.
    async fn write_ticks(&self, ticks: Vec<ScheduleTick>) -> Result<Vec<TickWrite>, StoreError>;
    /// The periodic job `job`'s own schedule.
    async fn schedule(&self, tenant: &str, job: &str) -> Result<Option<ScheduleRow>, StoreError>;
    /// Creates or replaces `row.tenant`'s named schedule `row.name` (with
    /// its plan), unless that would make more than `max` named schedules
    /// (then false, storing nothing). A claim on the schedule it replaces
    /// is void.
    async fn put_plan(&self, row: ScheduleRow, max: usize) -> Result<bool, StoreError>;
    /// `tenant`'s named schedules (all, or the one named `name`), by name.
    async fn plans(&self, tenant: &str, name: Option<&str>) -> Result<Vec<ScheduleRow>, StoreError>;
    /// Sets when `tenant`'s named schedule `name` is due next
    /// ([`crate::plan::PAUSED`] pauses it), voiding a claim on it; whether
    /// it exists.
    async fn set_plan_due(&self, tenant: &str, name: &str, next_due_at: Millis) -> Result<bool, StoreError>;
    /// Deletes `tenant`'s named schedule `name`; whether it existed.
    async fn delete_plan(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// Creates a tenant; false if it exists.
    async fn create_tenant(&self, tenant: TenantRow) -> Result<bool, StoreError>;
    /// Replaces `tenant`'s quota overrides with `quotas` if they are still
    /// `was` (a compare-and-set); false if they changed meanwhile or the
    /// tenant does not exist.
    async fn update_tenant(&self, tenant: &str, was: &str, quotas: &str) -> Result<bool, StoreError>;
    /// Every tenant.
    async fn tenants(&self) -> Result<Vec<TenantRow>, StoreError>;
    /// One tenant.
    async fn tenant(&self, name: &str) -> Result<Option<TenantRow>, StoreError>;
    /// Takes `n` tokens from `tenant`'s queueing-rate bucket, which holds
    /// up to `burst` and refills at `rate` per second; false (taking
    /// nothing) if it holds fewer. One bucket per tenant for the cluster.
    async fn take_tokens(&self, tenant: &str, n: u64, rate: f64, burst: f64, now: Millis) -> Result<bool, StoreError>;
    /// Stores a new token.
    async fn put_token(&self, token: TokenRow) -> Result<(), StoreError>;
    /// Every token, revoked ones included.
    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    /// The token whose hash is `hash`, revoked or not.
    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError>;
    /// Revokes a token; whether it was live.
    async fn revoke_token(&self, id: &str, now: Millis) -> Result<bool, StoreError>;

    /// Sets `tenant`'s secret `name` to `value`, unless that would make more
    /// than `max` secrets (then false, storing nothing).
    async fn put_secret(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
        now: Millis,
        max: usize,
    ) -> Result<bool, StoreError>;
    /// Deletes a secret; whether it existed.
    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;
    /// The names of `tenant`'s secrets, with when each was last set, by name.
    async fn secret_names(&self, tenant: &str) -> Result<Vec<(String, Millis)>, StoreError>;
    /// The values of those of `names` that `tenant` has set.
    async fn secrets(&self, tenant: &str, names: &[String]) -> Result<HashMap<String, String>, StoreError>;

    /// Sets the limits of `tenant`'s queue `queue` (creates or replaces
    /// them), unless that would make more than `max` queues with limits
    /// (then false, storing nothing).
    async fn put_queue_limits(
        &self,
        tenant: &str,
        queue: &str,
        limits: &QueueLimits,
        max: usize,
    ) -> Result<bool, StoreError>;
    /// Sets the limits of `tenant`'s job `job`, as [`Store::put_queue_limits`];
    /// a rate's bucket starts full at `now`.
    async fn put_job_limits(
        &self,
        tenant: &str,
        job: &str,
        limits: &JobLimits,
        now: Millis,
        max: usize,
    ) -> Result<bool, StoreError>;
    /// Deletes the limits of a queue (`job` false) or a job; whether it had some.
    async fn delete_limits(&self, tenant: &str, job: bool, name: &str) -> Result<bool, StoreError>;
    /// `tenant`'s queues and jobs with limits, each by name.
    async fn limits(&self, tenant: &str) -> Result<LimitRows, StoreError>;

    /// Records an upload, replacing the tenant's row of the same component.
    async fn put_upload(&self, upload: UploadRow) -> Result<(), StoreError>;
    /// `tenant`'s upload `id`.
    async fn upload(&self, tenant: &str, id: &str) -> Result<Option<UploadRow>, StoreError>;
    /// `tenant`'s uploads changed at or after `since`, newest first, at most
    /// [`MAX_UPLOADS_LISTED`].
    async fn uploads(&self, tenant: &str, since: Millis) -> Result<Vec<UploadRow>, StoreError>;

    /// Inserts `task` held until its version (an upload still compiling)
    /// is ready: `queued`, reason `compiling`, due at [`HELD_RUN_AT`], with
    /// the request's `options` (JSON) kept for [`Store::settle_held`].
    async fn insert_held(&self, task: NewTask, options: String) -> Result<TaskId, StoreError>;
    /// The task tree of `root` (a task queued from outside): the root and
    /// every task queued from it, from them..., oldest first, at most `limit`.
    async fn tree(&self, root: &str, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;
    /// Tasks with an id above `after`, by id (oldest first), at most
    /// `limit`, as retention judges them.
    async fn tasks_after(&self, after: i64, limit: usize) -> Result<Vec<Aged>, StoreError>;
    /// Deletes the tasks `ids` that are finished (a workflow's step only
    /// once its whole workflow is: a later stage reads the results of the
    /// one before); answers how many went.
    async fn delete_finished(&self, ids: Vec<i64>) -> Result<u64, StoreError>;
    /// The last `limit` earlier attempts of task `id` ([`AttemptRecord`]),
    /// oldest first.
    async fn attempts(&self, id: &str, limit: usize) -> Result<Vec<AttemptRecord>, StoreError>;
    /// Writes a node's activity rows whole (replacing its earlier writes of
    /// the same minutes).
    async fn record_activity(&self, rows: Vec<ActivityRow>) -> Result<(), StoreError>;
    /// Every node's activity rows since `since` (a minute's start), of
    /// `tenant` or of all.
    async fn activity(&self, tenant: Option<&str>, since: Millis) -> Result<Vec<ActivityRow>, StoreError>;
    /// Deletes the activity of minutes before `before`; answers how many
    /// rows went.
    async fn prune_activity(&self, before: Millis) -> Result<u64, StoreError>;
    /// Settles the children held for attempts that have ended without
    /// their [`Completion`] doing it (a worker lost under its task, a
    /// release at shutdown, an attempt that queued after losing its lease):
    /// released if that attempt succeeded, discarded otherwise, at `now`.
    /// Answers how many were released and discarded.
    async fn settle_children(&self, now: Millis) -> Result<(u64, u64), StoreError>;
    /// Records running tasks' progress: each a lease and its report (JSON);
    /// a lease that no longer holds records nothing. Answers the leases
    /// whose report was recorded.
    async fn record_progress(&self, reports: Vec<(String, String)>) -> Result<Vec<String>, StoreError>;
    /// Inserts a workflow of `tenant` whose stages hold these tasks, all or
    /// none: the first stage's as they are (held for their parent's attempt
    /// if [`NewTask::pending`]), the later stages' held ([`WORKFLOW_REASON`],
    /// due never) whatever their `run_at`. Takes `tokens` in the same write,
    /// inserting nothing if too few (`None`). The tasks carry no overlap
    /// key or unique key.
    async fn insert_workflow(
        &self,
        tenant: &str,
        stages: Vec<Vec<NewTask>>,
        tokens: Tokens,
        now: Millis,
    ) -> Result<Option<InsertedWorkflow>, StoreError>;
    /// Workflow `id`, with its steps' tasks.
    async fn workflow(&self, id: &str) -> Result<Option<crate::workflow::WorkflowRecord>, StoreError>;
    /// Revokes ([`UPSTREAM_REASON`]) the waiting steps of workflows in which
    /// a step of an earlier stage ended without success, whichever way it
    /// ended (failed, revoked, expired, discarded with the attempt that
    /// started it...), at `now`, giving their tree's count back; of at most
    /// 100 workflows per call. Answers the steps revoked.
    async fn abort_workflows(&self, now: Millis) -> Result<Vec<Expired>, StoreError>;
    /// Deletes the unique keys whose period ended before `now`.
    async fn prune_uniques(&self, now: Millis) -> Result<u64, StoreError>;
    /// The uploads (tenant and version) that tasks are held for.
    async fn held_uploads(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Up to `limit` of the tasks held for `tenant`'s version `version`.
    async fn held_tasks(&self, tenant: &str, version: &str, limit: usize) -> Result<Vec<HeldTask>, StoreError>;
    /// Settles held tasks (one revoked in the meantime stays revoked). A
    /// task whose overlap key is taken by a task waiting or running is
    /// revoked with reason `duplicate`. Answers the ids of the tasks that
    /// ended (failed or duplicate).
    async fn settle_held(&self, settled: Vec<(TaskId, Settle)>, now: Millis) -> Result<Vec<TaskId>, StoreError>;

    /// A worker node's heartbeat: `node` is alive at `now` and has compiled
    /// the versions `compiled`, besides those it recorded before (unless
    /// `first`: a new process of that name has compiled nothing else yet).
    /// Nodes not seen for [`FORGET_NODES_AFTER`] are forgotten.
    async fn beat(&self, node: &str, now: Millis, compiled: Vec<String>, first: bool) -> Result<(), StoreError>;
    /// Of the worker nodes seen at or after `since`, how many have compiled
    /// `version`, and how many there are.
    async fn ready_nodes(&self, version: &str, since: Millis) -> Result<(u64, u64), StoreError>;
}

/// How long a node that stopped beating stays in the store's `nodes`
/// (with the versions it compiled). Default 1 h.
pub const FORGET_NODES_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Most uploads [`Store::uploads`] answers. Default 100.
pub const MAX_UPLOADS_LISTED: usize = 100;
