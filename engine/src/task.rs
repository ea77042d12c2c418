//! Tasks as the rest of the engine sees them: ids, and what a request to queue
//! one may ask for or be told.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The id of a task: opaque to jobs and clients.
pub type TaskId = String;

/// Options of a request to queue a task; `None` takes the job's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOptions {
    /// How long the task may wait to start before it expires.
    #[serde(default, with = "crate::job::opt_millis")]
    pub expiry: Option<Duration>,
    /// Do not start the task before this delay.
    #[serde(default, with = "crate::job::opt_millis")]
    pub delay: Option<Duration>,
    /// Higher runs first; default 0.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Overrides the job's maximum number of retries.
    #[serde(default)]
    pub max_retries: Option<u32>,
}

/// Why a request to queue a task queued nothing. Each is an answer the caller
/// (a client, or a job through `queue-task`) can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "error", content = "detail")]
pub enum QueueError {
    #[error("unknown job `{0}`")]
    UnknownJob(String),
    /// The job forbids overlap and this task is already queued or running.
    #[error("duplicate: task {0} with the same overlap key is queued or running")]
    Duplicate(TaskId),
    #[error("invalid args: {0}")]
    InvalidArgs(String),
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("the task tree would be deeper than {0}")]
    DepthExceeded(u32),
}
