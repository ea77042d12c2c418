//! The task's view of the engine (pulsar's `consumer`): its id, its attempt,
//! queueing more tasks, reporting progress, logging and its secrets.

use std::fmt;

use serde::Serialize;

use crate::__private::bindings::wasmjob::job::{host, types};
use crate::Error;

/// The id of a task, as the engine gives it.
pub type TaskId = String;

/// Handed to [`crate::Job::call`]: the running task's identity and the host
/// calls it may make.
#[derive(Debug)]
pub struct Context {
    task_id: TaskId,
    attempt: u32,
}

impl Context {
    pub(crate) fn current() -> Self {
        Self { task_id: host::current_task_id(), attempt: host::attempt() }
    }

    /// The id of the running task.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// 1 for the first run of the task, 2 for its first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Reports how far the task has got: `fraction` from 0 to 1 and a short
    /// message (cut to 256 bytes). The engine writes the latest report at
    /// most once per heartbeat (2 s), so reporting often is cheap and never
    /// an error.
    pub fn progress(&self, fraction: f32, message: &str) {
        host::progress(fraction, message);
    }

    /// Queues a task of `job` with `args` (which must serialize to a JSON
    /// object) and the job's default options. The new task records this task
    /// as its `from_task`, and commits with this attempt: it runs only if
    /// this attempt succeeds, and is discarded otherwise (so a retry never
    /// duplicates it).
    pub fn queue_task<A: Serialize + ?Sized>(&self, job: &str, args: &A) -> Result<TaskId, QueueError> {
        self.queue_task_with(job, args, QueueOptions::default())
    }

    /// Like [`Context::queue_task`], with explicit options.
    pub fn queue_task_with<A: Serialize + ?Sized>(
        &self,
        job: &str,
        args: &A,
        options: QueueOptions,
    ) -> Result<TaskId, QueueError> {
        let args = serde_json::to_string(args).map_err(|e| QueueError::InvalidArgs(e.to_string()))?;
        host::queue_task(job, &args, options.into()).map_err(QueueError::from)
    }

    /// Starts a workflow whose `stages` run one after the other, the steps
    /// of a stage at once; answers its id. A stage starts when every step
    /// of the one before succeeded, each of its steps getting their results
    /// in its args under `previous` (one value after a stage of one step, a
    /// list in step order after several); a step that fails fails the
    /// workflow. A chain is stages of one step, a group one stage, a chord
    /// a stage and then one callback. Like [`Context::queue_task`]'s tasks,
    /// the workflow commits with this attempt, and every step counts as a
    /// child of this task.
    pub fn start_workflow(&self, stages: Vec<Vec<Step>>) -> Result<String, QueueError> {
        let stages: Vec<Vec<types::WorkflowStep>> = stages
            .into_iter()
            .map(|stage| {
                stage
                    .into_iter()
                    .map(|s| types::WorkflowStep { job: s.job, args: s.args, options: s.options.into() })
                    .collect()
            })
            .collect();
        host::start_workflow(&stages).map_err(QueueError::from)
    }

    /// Appends a line to the task's log.
    pub fn log(&self, level: LogLevel, message: impl AsRef<str>) {
        host::log(level.into(), message.as_ref());
    }

    /// Appends an `info` line to the task's log.
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Info, message);
    }

    /// The value of the tenant's secret `name`, which the job's metadata
    /// must declare ([`crate::Metadata::secret`]). A name not declared, or
    /// not set for the tenant, is a fatal error saying which.
    pub fn secret(&self, name: &str) -> Result<String, Error> {
        host::secret(name).map_err(|e| match e {
            types::SecretError::Undeclared(name) => Error::fatal(format!(
                "the job reads the secret `{name}` without declaring it: add `.secret(\"{name}\")` to its metadata"
            )),
            types::SecretError::Missing(name) => {
                Error::fatal(format!("the tenant has no secret `{name}`: set it with `wasmjob secret set {name}`"))
            }
        })
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Options for [`Context::queue_task_with`]. `None` takes the job's default.
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// How long the task may wait to start before it expires.
    pub expiry: Option<std::time::Duration>,
    /// Do not start the task before this delay.
    pub delay: Option<std::time::Duration>,
    /// Higher runs first; default 0.
    pub priority: Option<i32>,
    /// Overrides the job's maximum number of retries.
    pub max_retries: Option<u32>,
}

impl From<QueueOptions> for types::QueueOptions {
    fn from(options: QueueOptions) -> Self {
        Self {
            expiry: options.expiry.map(millis),
            delay: options.delay.map(millis),
            priority: options.priority,
            max_retries: options.max_retries,
        }
    }
}

/// A step of a workflow ([`Context::start_workflow`]): a task to queue.
#[derive(Debug, Clone)]
pub struct Step {
    job: String,
    args: String,
    options: QueueOptions,
}

impl Step {
    /// A step running `job` with `args` (which must serialize to a JSON
    /// object) and the job's default options.
    pub fn new<A: Serialize + ?Sized>(job: &str, args: &A) -> Result<Self, QueueError> {
        let args = serde_json::to_string(args).map_err(|e| QueueError::InvalidArgs(e.to_string()))?;
        Ok(Self { job: job.to_owned(), args, options: QueueOptions::default() })
    }

    /// The step with explicit options.
    pub fn options(self, options: QueueOptions) -> Self {
        Self { options, ..self }
    }
}

/// Why [`Context::queue_task`] queued nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// No job of this name is registered.
    UnknownJob(String),
    /// The job does not allow overlap and this task already exists.
    Duplicate(TaskId),
    /// The args are not a JSON object.
    InvalidArgs(String),
    /// A quota would be exceeded (the message names it).
    QuotaExceeded(String),
    /// The task tree would exceed the engine's maximum depth.
    DepthExceeded(u32),
}

impl From<types::QueueError> for QueueError {
    fn from(error: types::QueueError) -> Self {
        match error {
            types::QueueError::UnknownJob(job) => Self::UnknownJob(job),
            types::QueueError::Duplicate(id) => Self::Duplicate(id),
            types::QueueError::InvalidArgs(why) => Self::InvalidArgs(why),
            types::QueueError::QuotaExceeded(which) => Self::QuotaExceeded(which),
            types::QueueError::DepthExceeded(max) => Self::DepthExceeded(max),
        }
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownJob(job) => write!(f, "unknown job `{job}`"),
            Self::Duplicate(id) => write!(f, "duplicate of running task {id}"),
            Self::InvalidArgs(why) => write!(f, "invalid args: {why}"),
            Self::QuotaExceeded(which) => write!(f, "quota exceeded: {which}"),
            Self::DepthExceeded(max) => write!(f, "task tree deeper than {max}"),
        }
    }
}

impl std::error::Error for QueueError {}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl From<LogLevel> for types::LogLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => Self::Trace,
            LogLevel::Debug => Self::Debug,
            LogLevel::Info => Self::Info,
            LogLevel::Warn => Self::Warn,
            LogLevel::Error => Self::Error,
        }
    }
}
