//! `/v1/tasks`: queueing, reading, listing, waiting for, revoking and
//! retrying tasks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::ErrorBody;
use crate::egress::HttpUsage;
use crate::store::{AttemptRecord, TaskRecord, TaskState};
use crate::task::QueueOptions;

/// The body of `POST /v1/tasks`, and each item of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "job": "addition", "args": { "a": 1, "b": 2 }, "options": { "delay": 1000 } }))]
pub struct QueueRequest {
    /// The job's name, in any case: names are lower-case in the registry.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._-]+$", example = "addition")]
    pub job: String,
    /// The task's arguments, handed to the job as JSON: by convention an
    /// object of keyword arguments. Default `{}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub args: Value,
    #[serde(default)]
    pub options: QueueOptions,
}

fn default_queue() -> String {
    crate::task::DEFAULT_QUEUE.to_owned()
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A task queued: `201`, or an item of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    #[schema(example = "42")]
    pub id: String,
}

/// The body of `POST /v1/tasks/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// At most 1,000 tasks (`api::MAX_BATCH`).
    #[schema(max_items = 1000)]
    pub tasks: Vec<QueueRequest>,
}

/// The answer of `POST /v1/tasks/batch`: one result per task, in request
/// order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchAnswer {
    pub results: Vec<BatchItem>,
}

/// A task of a batch: queued, or refused with the error a single
/// `POST /v1/tasks` would have answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Queued(Queued),
    Refused(ErrorBody),
}

/// A task: what it runs, where it is, and how its attempts went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    #[schema(example = "42")]
    pub id: String,
    pub tenant: String,
    pub job: String,
    /// The job's version (its component's content hash) the task runs.
    pub version: String,
    /// As queued.
    pub args: Value,
    pub state: TaskState,
    /// Why it is in its state: `revoked`, `expired`, `trap`, `timeout`,
    /// `compiling` (held for its job's upload)...
    pub reason: Option<String>,
    /// Higher runs first.
    pub priority: i32,
    /// Milliseconds since the Unix epoch.
    pub queued_at: i64,
    /// When it may (next) run, in ms since the epoch.
    pub run_at: i64,
    /// When it expires if not started by then, in ms since the epoch.
    pub expires_at: Option<i64>,
    /// When its last attempt started, in ms since the epoch.
    pub started_at: Option<i64>,
    /// When it ended, in ms since the epoch.
    pub finished_at: Option<i64>,
    /// Attempts so far.
    pub attempt: u32,
    pub max_retries: u32,
    /// What the job returned, as JSON.
    pub result: Option<Value>,
    /// The job's error, or the trap's.
    pub error: Option<String>,
    /// Fuel the last attempt burnt.
    pub fuel: Option<u64>,
    /// The last attempt's wall time, in microseconds.
    pub wall_time_us: Option<u64>,
    /// What the last attempt printed.
    pub log: Option<String>,
    /// The task that queued this one.
    pub from_task: Option<String>,
    /// The first task of its tree.
    pub root_task: Option<String>,
    /// How far below its root (0 for a task queued from outside).
    pub depth: u32,
    /// The key no other live task of its job may hold (`can-overlap`).
    pub overlap_key: Option<String>,
    /// The lease of the last attempt rescued from a worker that died.
    pub rescued_lease: Option<String>,
    /// What its last attempt used of the network.
    pub http: Option<HttpUsage>,
    /// The last progress its attempt reported (contract 0.3.0's
    /// `progress`), while it ran or when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TaskProgress>,
    /// The workflow it is a step of (`GET /v1/workflows/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The named queue it is in (an older server, which had none, is
    /// read as `default`).
    #[serde(default = "default_queue")]
    #[schema(example = "default", required = true)]
    pub queue: String,
}

/// How far a task has got, as it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskProgress {
    /// From 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub fraction: f32,
    /// At most 256 bytes (`runtime::MAX_PROGRESS_MESSAGE`).
    #[schema(max_length = 256)]
    pub message: String,
}

impl From<TaskRecord> for Task {
    /// The store keeps args and results as text, checked to be JSON when
    /// queued and when the job ended; text that is not (a row written by
    /// an older engine) is shown as a JSON string.
    fn from(t: TaskRecord) -> Self {
        let json = |text: String| serde_json::from_str(&text).unwrap_or(Value::String(text));
        Self {
            id: t.id,
            tenant: t.tenant,
            job: t.job,
            version: t.version,
            args: json(t.args),
            state: t.state,
            reason: t.reason,
            priority: t.priority,
            queued_at: t.queued_at,
            run_at: t.run_at,
            expires_at: t.expires_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            attempt: t.attempt,
            max_retries: t.max_retries,
            result: t.result.map(json),
            error: t.error,
            fuel: t.fuel,
            wall_time_us: t.wall_time_us,
            log: t.log,
            from_task: t.from_task,
            root_task: t.root_task,
            depth: t.depth,
            overlap_key: t.overlap_key,
            rescued_lease: t.rescued_lease,
            http: t.http,
            progress: t.progress.and_then(|p| serde_json::from_str(&p).ok()),
            workflow: t.workflow,
            queue: t.queue,
        }
    }
}

/// The answer of `GET /v1/tasks/{id}`: the task, the ids of the tasks it
/// queued (up to 1,000, oldest first) and its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    pub children: Vec<String>,
    /// Its attempts so far, oldest first: the last 100 earlier ones, then
    /// its last (whose log is the task's `log`).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// One attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: u32,
    /// The node that ran it, when known.
    pub node: Option<String>,
    /// In ms since the epoch.
    pub started_at: Option<i64>,
    /// None while it runs.
    pub finished_at: Option<i64>,
    /// The state it left its task in: `retry`, `success`, `failure`,
    /// `revoked`; `started` while it runs.
    pub state: TaskState,
    /// Its outcome class (`success`, `trap`, `timeout`, `lease-expired`...).
    pub reason: Option<String>,
    pub error: Option<String>,
    pub fuel: Option<u64>,
    /// In microseconds.
    pub wall_time_us: Option<u64>,
    pub http: Option<HttpUsage>,
    /// What an earlier attempt printed: its last 16,384 characters. None
    /// for the task's last attempt (its log is the task's `log`).
    pub log: Option<String>,
}

impl Attempt {
    /// Every attempt of `task`: those `kept` (each earlier attempt) and its
    /// last, from its own row, unless kept already (a task waiting for its
    /// retry) or none ran yet.
    pub fn all(task: &TaskRecord, kept: Vec<AttemptRecord>) -> Vec<Attempt> {
        let last_kept = kept.last().map_or(0, |a| a.attempt);
        let mut attempts: Vec<Attempt> = kept.into_iter().map(Attempt::from).collect();
        let ran = task.state == TaskState::Started || (task.state.is_terminal() && task.started_at.is_some());
        if task.attempt > last_kept && ran {
            let running = task.state == TaskState::Started;
            attempts.push(Attempt {
                attempt: task.attempt,
                node: task
                    .rescued_lease
                    .as_deref()
                    .filter(|_| task.reason.as_deref() == Some("lease-expired"))
                    .and_then(crate::store::lease_node)
                    .map(str::to_owned),
                started_at: task.started_at,
                finished_at: task.finished_at,
                state: task.state,
                reason: if running { None } else { task.reason.clone() },
                error: if running { None } else { task.error.clone() },
                fuel: if running { None } else { task.fuel },
                wall_time_us: if running { None } else { task.wall_time_us },
                http: if running { None } else { task.http },
                log: None,
            });
        }
        attempts
    }
}

impl From<AttemptRecord> for Attempt {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            node: a.lease.as_deref().and_then(crate::store::lease_node).map(str::to_owned),
            started_at: a.started_at,
            finished_at: Some(a.finished_at),
            state: a.state,
            reason: a.reason,
            error: a.error,
            fuel: a.fuel,
            wall_time_us: a.wall_time_us,
            http: a.http,
            log: a.log,
        }
    }
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this job's tasks.
    pub job: Option<String>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks queued at or after this time (ms since the epoch).
    pub queued_after: Option<i64>,
    /// Only tasks queued before this time (ms since the epoch).
    pub queued_before: Option<i64>,
    /// Page size: 1 to 1,000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub before: Option<String>,
}

/// One page of tasks, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// `before` of the next page; none on the last.
    pub next: Option<String>,
}

/// Query of `GET /v1/tasks/{id}/wait`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// How long to hold the request, such as `30s`; at most 60 s
    /// (`api::MAX_WAIT`). Default 30 s.
    #[param(example = "30s")]
    pub timeout: Option<String>,
}

/// A task of a tree, with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TreeTask {
    pub id: String,
    pub job: String,
    pub state: TaskState,
    pub reason: Option<String>,
    pub from_task: Option<String>,
    pub depth: u32,
    pub attempt: u32,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl From<&TaskRecord> for TreeTask {
    fn from(t: &TaskRecord) -> Self {
        Self {
            id: t.id.clone(),
            job: t.job.clone(),
            state: t.state,
            reason: t.reason.clone(),
            from_task: t.from_task.clone(),
            depth: t.depth,
            attempt: t.attempt,
            queued_at: t.queued_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
        }
    }
}

/// The answer of `GET /v1/tasks/{id}/tree`: the task and its descendants,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tree {
    pub id: String,
    /// The root of the task's tree.
    pub root: String,
    pub tasks: Vec<TreeTask>,
    /// More than 1,000 tasks descend from it: the first are listed.
    pub truncated: bool,
}

/// A task revoked or put back in line: its id and the state it is in now
/// (`revoking` while a running task is being stopped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskStateChange {
    pub id: String,
    #[schema(example = "revoked")]
    pub state: String,
}

/// The answer of `POST /v1/tasks/{id}/revoke-tree`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TreeRevoked {
    pub root: String,
    /// Tasks that will not run.
    pub revoked: usize,
    /// Running tasks being stopped.
    pub stopping: usize,
}
