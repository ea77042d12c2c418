//! `/v1/events`: what happens to a tenant's tasks and jobs, as it happens.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Queued (from outside, by a job, by a schedule, or again by hand).
    TaskQueued,
    /// An attempt started on a node.
    TaskStarted,
    /// An attempt failed; another is due (`reason`: the outcome class).
    TaskRetrying,
    TaskSucceeded,
    /// The last attempt failed (`reason`: the outcome class).
    TaskFailed,
    /// Revoked before it ended (`reason`: `revoked`).
    TaskRevoked,
    /// A running attempt reported how far it has got (`progress`).
    TaskProgress,
    /// Not started before its expiry.
    TaskExpired,
    /// A component was uploaded (`version`: its id), to compile.
    JobUploaded,
    /// An upload compiled: `job` runs `version` from now on.
    JobCompiled,
    /// An upload was refused by its compile (`reason`).
    JobRejected,
    JobDeleted,
}

impl EventKind {
    /// Its name, as in the stream's `event:` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskQueued => "task-queued",
            Self::TaskStarted => "task-started",
            Self::TaskRetrying => "task-retrying",
            Self::TaskSucceeded => "task-succeeded",
            Self::TaskFailed => "task-failed",
            Self::TaskRevoked => "task-revoked",
            Self::TaskProgress => "task-progress",
            Self::TaskExpired => "task-expired",
            Self::JobUploaded => "job-uploaded",
            Self::JobCompiled => "job-compiled",
            Self::JobRejected => "job-rejected",
            Self::JobDeleted => "job-deleted",
        }
    }
}

/// An event: the `data` of one message of the stream, whose `id` resumes
/// it (`Last-Event-ID`) and whose `event` is its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When, in ms since the epoch, by the clock of the node it happened on.
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// A job's version (an upload's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The attempt that started or ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Why: an outcome class, or a rejection's reason (at most 512 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a `task-progress` reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<super::TaskProgress>,
}

/// The most bytes of an event's `reason`: events travel between nodes in
/// notifications of a few KiB.
pub const MAX_REASON: usize = 512;

impl Event {
    /// An event of task `task` of `job`.
    pub fn task(kind: EventKind, at: i64, task: &str, job: &str) -> Self {
        Self {
            kind,
            at,
            task: Some(task.to_owned()),
            job: Some(job.to_owned()),
            version: None,
            attempt: None,
            reason: None,
            progress: None,
        }
    }

    /// An event of a job or an upload.
    pub fn job(kind: EventKind, at: i64, job: Option<&str>, version: Option<&str>) -> Self {
        Self {
            kind,
            at,
            task: None,
            job: job.map(str::to_owned),
            version: version.map(str::to_owned),
            attempt: None,
            reason: None,
            progress: None,
        }
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }

    /// With `reason`, cut to [`MAX_REASON`] bytes.
    pub fn reason(mut self, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.reason = Some(reason[..end].to_owned());
        self
    }
}

/// The `data` of a message of the stream: an event, or a notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventData {
    Event(Event),
    Notice(Notice),
}

/// A notice in the stream, apart from events: `lost` (this client fell
/// behind and events were dropped for it) or `reset` (its `Last-Event-ID`
/// is no longer kept: events may have been missed). Either way, re-read
/// what you show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notice {
    pub message: String,
}
