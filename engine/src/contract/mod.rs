//! The `wasmjob:job` WIT world (`wit/job.wit`), and the boundary between its
//! generated types and the engine's own.
//!
//! `bindgen!` stays private to this module: the rest of the engine sees
//! [`JobMetadata`], [`Due`] and [`QueueError`], never a generated type. The
//! host imports are implemented here on the sandbox's state by delegating to
//! [`TaskContext`]; errors the guest may see (`queue-error`) are kept apart
//! from traps (a failure of the engine itself, which aborts the task).

use std::time::Duration;

use chrono::{DateTime, Utc};
use wasmtime::component::{HasSelf, Linker};

use crate::job::{
    DocSyntax, JobKind, JobMetadata, MAX_DOC_LEN, MetadataError, Overlap, RequestedLimits, RetryPolicy, Schedule,
    validate_name,
};
use crate::runtime::LogLevel;
use crate::runtime::sandbox::TaskState;
use crate::task::{QueueError, QueueOptions, TaskId};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasmjob:job/job",
        imports: {
            // Queueing may wait on the store; a store failure traps the task.
            "wasmjob:job/host.queue-task": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

use bindings::wasmjob::job::{host, types};
pub(crate) use bindings::{Job as JobInstance, JobPre};

/// The answer of a periodic job's `is-due` export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Due {
    /// Whether a task should be queued now.
    pub is_due: bool,
    /// Time from `now` to the next due run.
    pub next_run_in: Duration,
}

/// Links the `wasmjob:job/host` imports into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    host::add_to_linker::<TaskState, HasSelf<TaskState>>(linker, |state| state)?;
    types::add_to_linker::<TaskState, HasSelf<TaskState>>(linker, |state| state)
}

impl types::Host for TaskState {}

impl host::Host for TaskState {
    fn current_task_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.task.task_id.clone())
    }

    fn attempt(&mut self) -> wasmtime::Result<u32> {
        Ok(self.task.attempt)
    }

    async fn queue_task(
        &mut self,
        job: String,
        args: String,
        options: types::QueueOptions,
    ) -> wasmtime::Result<Result<TaskId, types::QueueError>> {
        let options = QueueOptions {
            expiry: options.expiry.map(Duration::from_millis),
            delay: options.delay.map(Duration::from_millis),
            priority: options.priority,
            max_retries: options.max_retries,
        };
        let answer = self.task.queue_child(job, args, options).await.map_err(wasmtime::Error::from_anyhow)?;
        Ok(answer.map_err(|e| match e {
            QueueError::UnknownJob(job) => types::QueueError::UnknownJob(job),
            QueueError::Duplicate(id) => types::QueueError::Duplicate(id),
            QueueError::InvalidArgs(why) => types::QueueError::InvalidArgs(why),
            // The WIT has no case of its own for options; the message names the option.
            e @ QueueError::InvalidOption { .. } => types::QueueError::InvalidArgs(e.to_string()),
            QueueError::QuotaExceeded(which) => types::QueueError::QuotaExceeded(which),
            QueueError::DepthExceeded(max) => types::QueueError::DepthExceeded(max),
        }))
    }

    fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            types::LogLevel::Trace => LogLevel::Trace,
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Error => LogLevel::Error,
        };
        self.task.log.line(level, &message);
        Ok(())
    }
}

/// What a job's `call` returned, before the engine checks the result.
pub(crate) enum CallResult {
    Ok(String),
    Retryable(String),
    Fatal(String),
}

impl From<Result<String, types::JobError>> for CallResult {
    /// A job-error message is guest-controlled: it is cut to
    /// [`MAX_ERROR_BYTES`] (and the cut said), since it is stored and served.
    fn from(result: Result<String, types::JobError>) -> Self {
        match result {
            Ok(json) => Self::Ok(json),
            Err(types::JobError::Retryable(message)) => Self::Retryable(bounded_message(message)),
            Err(types::JobError::Fatal(message)) => Self::Fatal(bounded_message(message)),
        }
    }
}

/// Longest job-error message kept. Default 16 KiB.
pub const MAX_ERROR_BYTES: usize = 16 << 10;
/// Longest overlap key a job may answer; a longer one refuses the task.
/// Default 1 KiB.
pub const MAX_OVERLAP_KEY_BYTES: usize = 1 << 10;

/// `message`, cut to [`MAX_ERROR_BYTES`] on a character boundary, saying so.
fn bounded_message(mut message: String) -> String {
    if message.len() <= MAX_ERROR_BYTES {
        return message;
    }
    let total = message.len();
    let mut cut = MAX_ERROR_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!(" [wasmjob: message cut at {cut} of {total} bytes]"));
    message
}

pub(crate) fn due_from_wit(due: types::Due) -> Due {
    Due { is_due: due.is_due, next_run_in: Duration::from_millis(due.next_run_in) }
}

/// Checks the job's declared metadata and maps it onto [`JobMetadata`]. The
/// name is lower-cased here, whatever the guest sent.
pub(crate) fn metadata_from_wit(m: types::Metadata) -> Result<JobMetadata, MetadataError> {
    validate_name(&m.name)?;
    let name = m.name.to_ascii_lowercase();
    if m.doc.len() > MAX_DOC_LEN {
        return Err(MetadataError::DocTooLong);
    }
    let kind = match m.kind {
        types::JobKind::Regular => JobKind::Regular,
        types::JobKind::Periodic(s) => {
            if s.run_every == 0 {
                return Err(MetadataError::ZeroPeriod);
            }
            let anchor = s
                .anchor
                .map(|ms| DateTime::<Utc>::from_timestamp_millis(ms).ok_or(MetadataError::AnchorOutOfRange))
                .transpose()?;
            JobKind::Periodic(Schedule { run_every: Duration::from_millis(s.run_every), anchor })
        }
    };
    Ok(JobMetadata {
        name,
        doc: m.doc,
        doc_syntax: match m.doc_syntax {
            types::DocSyntax::Markdown => DocSyntax::Markdown,
            types::DocSyntax::Plain => DocSyntax::Plain,
        },
        kind,
        overlap: match m.overlap {
            types::Overlap::Allow => Overlap::Allow,
            types::Overlap::Forbid => Overlap::Forbid,
            types::Overlap::ByArgs => Overlap::ByArgs,
        },
        expiry: m.expiry.map(Duration::from_millis),
        limits: RequestedLimits {
            fuel: m.limits.fuel,
            timeout: m.limits.timeout.map(Duration::from_millis),
            memory_bytes: m.limits.memory_bytes,
        },
        retry: RetryPolicy {
            max_retries: m.retry.max_retries,
            initial_backoff: Duration::from_millis(m.retry.initial_backoff),
            max_backoff: Duration::from_millis(m.retry.max_backoff),
            retry_on_trap: m.retry.retry_on_trap,
            retry_on_timeout: m.retry.retry_on_timeout,
        },
    })
}

/// A call into one of the world's exports.
pub(crate) enum Export<'a> {
    Metadata,
    Call(&'a str),
    OverlapKey(&'a str),
    IsDue { last_run_at: i64, now: i64 },
}

/// What an export answered, in the engine's types.
pub(crate) enum Answer {
    Metadata(Result<JobMetadata, MetadataError>),
    Call(CallResult),
    OverlapKey(Option<String>),
    IsDue(Due),
}

/// Calls `export` on a fresh instance. Errors are traps.
pub(crate) async fn invoke(
    instance: &JobInstance,
    store: &mut wasmtime::Store<TaskState>,
    export: Export<'_>,
) -> wasmtime::Result<Answer> {
    Ok(match export {
        Export::Metadata => Answer::Metadata(metadata_from_wit(instance.call_metadata(store).await?)),
        Export::Call(args) => Answer::Call(instance.call_call(store, args).await?.into()),
        Export::OverlapKey(args) => Answer::OverlapKey(instance.call_overlap_key(store, args).await?),
        Export::IsDue { last_run_at, now } => {
            Answer::IsDue(due_from_wit(instance.call_is_due(store, last_run_at, now).await?))
        }
    })
}
