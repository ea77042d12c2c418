//! What a running task knows about itself (pulsar's `consumer`): its id, its
//! attempt, where the tasks it queues and its progress reports go, its log
//! and its secrets.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::log::TaskLog;
use crate::secret::{Secrets, Unreadable};
use crate::task::{QueueError, QueueOptions, TaskId};
use crate::workflow::Step;

/// A boxed future, for the object-safe [`ChildQueue`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request from a running job to queue a task (the `queue-task` import).
/// Every field is guest-controlled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildRequest {
    /// The job to run, as the guest spelled it.
    pub job: String,
    /// The args, a JSON object (checked by the engine before this is built).
    pub args: String,
    pub options: QueueOptions,
    /// The task that asked: the child's `from_task`.
    pub from_task: TaskId,
}

/// Where the tasks a job queues go: the durable queue when serving, a list
/// when running one task with `wasmjob run`.
pub trait ChildQueue: Send + Sync {
    /// Queues `child`. The outer error is a failure of the engine (it traps
    /// the task); the inner one is the answer the job sees.
    fn queue_child(&self, child: ChildRequest) -> BoxFuture<'_, anyhow::Result<Result<TaskId, QueueError>>>;
    /// Starts a workflow of `stages` ([`crate::workflow`]) as children of
    /// the running task; answers its id. Errors as [`ChildQueue::queue_child`]'s.
    fn start_workflow(&self, stages: Vec<Vec<Step>>) -> BoxFuture<'_, anyhow::Result<Result<String, QueueError>>>;
}

/// A [`ChildQueue`] that records requests instead of queueing them; ids are
/// `<parent>.<n>`.
#[derive(Debug, Default)]
pub struct RecordingQueue {
    children: Mutex<Vec<(TaskId, ChildRequest)>>,
    /// Most requests accepted, and the answer past that. Default: no cap.
    cap: Option<(u64, QueueError)>,
}

impl RecordingQueue {
    /// A queue that accepts `max` requests, then answers `refusal`.
    pub fn capped(max: u64, refusal: QueueError) -> Self {
        Self { children: Mutex::default(), cap: Some((max, refusal)) }
    }

    /// The requests recorded so far, with the ids they were given.
    pub fn children(&self) -> Vec<(TaskId, ChildRequest)> {
        self.children.lock().unwrap().clone()
    }
}

impl ChildQueue for RecordingQueue {
    fn queue_child(&self, child: ChildRequest) -> BoxFuture<'_, anyhow::Result<Result<TaskId, QueueError>>> {
        let mut children = self.children.lock().unwrap();
        if let Some((max, refusal)) = &self.cap
            && children.len() as u64 >= *max
        {
            let refusal = refusal.clone();
            return Box::pin(async move { Ok(Err(refusal)) });
        }
        let id = format!("{}.{}", child.from_task, children.len() + 1);
        children.push((id.clone(), child));
        Box::pin(async move { Ok(Ok(id)) })
    }

    /// Refuses: `wasmjob run` runs one task, and a workflow needs the queue.
    fn start_workflow(&self, _stages: Vec<Vec<Step>>) -> BoxFuture<'_, anyhow::Result<Result<String, QueueError>>> {
        let refusal = QueueError::InvalidArgs("workflows are started only by a task the engine runs".into());
        Box::pin(async move { Ok(Err(refusal)) })
    }
}

/// Longest progress message kept; longer ones are cut. Default 256 bytes.
pub const MAX_PROGRESS_MESSAGE: usize = 256;

/// How far a task has got, as it reported (the `progress` import), bounded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// From 0 to 1.
    pub fraction: f32,
    /// At most [`MAX_PROGRESS_MESSAGE`] bytes.
    pub message: String,
}

/// Where a running task's progress reports go. Called on the task's own
/// thread at the guest's pace: it must not block.
pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: Progress);
}

/// Drops every report: control calls, `wasmjob run`, benchmarks.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: Progress) {}
}

/// The running task's identity and host-side services.
pub struct TaskContext {
    pub(crate) task_id: TaskId,
    pub(crate) attempt: u32,
    pub(crate) children: Arc<dyn ChildQueue>,
    pub(crate) progress: Arc<dyn ProgressSink>,
    pub(crate) log: TaskLog,
    max_args_bytes: usize,
    secrets: Secrets,
}

impl TaskContext {
    pub(crate) fn new(
        task_id: TaskId,
        attempt: u32,
        children: Arc<dyn ChildQueue>,
        log: TaskLog,
        max_args_bytes: usize,
    ) -> Self {
        let progress = Arc::new(NoProgress);
        Self { task_id, attempt, children, progress, log, max_args_bytes, secrets: Secrets::default() }
    }

    /// Progress reports go to `progress`.
    pub(crate) fn with_progress(self, progress: Arc<dyn ProgressSink>) -> Self {
        Self { progress, ..self }
    }

    /// A `progress` report: paid in fuel per byte of its message, as a log
    /// line is; the fraction clamped to 0..=1 (not a number: ignored), the
    /// message cut to [`MAX_PROGRESS_MESSAGE`] bytes.
    pub(crate) fn progress(&self, fraction: f32, message: &str) {
        self.log.work().charge(message.len() as u64, super::meter::FUEL_PER_LOG_BYTE);
        if fraction.is_nan() {
            return;
        }
        let mut cut = message.len().min(MAX_PROGRESS_MESSAGE);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        self.progress.report(Progress { fraction: fraction.clamp(0.0, 1.0), message: message[..cut].to_owned() });
    }

    /// The task may read `secrets`.
    pub(crate) fn with_secrets(self, secrets: Secrets) -> Self {
        Self { secrets, ..self }
    }

    /// The value of the secret `name`, paid in fuel per byte of the name
    /// and of the value, as args are.
    pub(crate) fn secret(&self, name: &str) -> Result<String, Unreadable> {
        self.log.work().charge(name.len() as u64, super::meter::FUEL_PER_ARGS_BYTE);
        let value = self.secrets.get(name)?;
        self.log.work().charge(value.len() as u64, super::meter::FUEL_PER_ARGS_BYTE);
        Ok(value.to_owned())
    }

    /// Checks a guest's `queue-task` request and passes it on.
    pub(crate) async fn queue_child(
        &self,
        job: String,
        args: String,
        options: QueueOptions,
    ) -> anyhow::Result<Result<TaskId, QueueError>> {
        self.log.work().charge(args.len() as u64, super::meter::FUEL_PER_ARGS_BYTE);
        if let Err(e) = check_args(&args, self.max_args_bytes) {
            return Ok(Err(e));
        }
        let child = ChildRequest { job: job.to_ascii_lowercase(), args, options, from_task: self.task_id.clone() };
        self.children.queue_child(child).await
    }

    /// Passes a guest's `start-workflow` request on, its args paid in fuel
    /// as `queue-task`'s are (the queue checks every step).
    pub(crate) async fn start_workflow(&self, stages: Vec<Vec<Step>>) -> anyhow::Result<Result<String, QueueError>> {
        let bytes = stages.iter().flatten().fold(0u64, |n, step| n.saturating_add(step.args.len() as u64));
        self.log.work().charge(bytes, super::meter::FUEL_PER_ARGS_BYTE);
        self.children.start_workflow(stages).await
    }
}

/// Args must be a JSON object (pulsar's keyword args) within the size bound.
pub fn check_args(args: &str, max_bytes: usize) -> Result<(), QueueError> {
    if args.len() > max_bytes {
        return Err(QueueError::InvalidArgs(format!("{} bytes of args; the limit is {max_bytes}", args.len())));
    }
    match serde_json::from_str::<serde_json::Value>(args) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(QueueError::InvalidArgs("args must be a JSON object".into())),
        Err(e) => Err(QueueError::InvalidArgs(format!("args are not valid JSON: {e}"))),
    }
}
