//! The API's wire model: every body `/v1` takes and answers, typed once and
//! shared by the server ([`crate::api`]), its clients (the CLI, the
//! benchmarks) and the tests.
//!
//! - A store row or a domain type is not a wire type: the server converts
//!   them here (`From` impls), so that the store can change without the
//!   API changing by accident.
//! - `args` and `result` travel as JSON values, not as JSON in strings.
//! - Times are milliseconds since the Unix epoch (`*_at` of tasks) or RFC
//!   3339 (`*_at` of jobs, uploads, secrets); durations are milliseconds.
//! - The OpenAPI document is generated from these types and the handlers'
//!   annotations ([`crate::api::document`]); where the server enforces a
//!   bound or pattern, the schema states it (a test checks that the
//!   document's bounds are the engine's).
//! - Requests refuse unknown fields; answers may gain fields.

mod activity;
mod error;
mod event;
mod health;
mod job;
mod limits;
mod schedule;
mod secret;
mod task;
mod tenant;
mod workflow;

pub use self::activity::{Activity, ActivityCounts, ActivityQuery, JobActivity, MinuteActivity, TenantActivity};
pub use self::error::{ErrorBody, ErrorDetail};
pub use self::event::{Event, EventData, EventKind, MAX_REASON, Notice};
pub use self::health::{Health, Readiness};
pub use self::job::{
    CompilingJob, Job, JobList, JobRevoked, JobSummary, JobVersion, NodesReady, ReadyJob, Upload, UploadAnswer,
    UploadQuery, UploadRef, Uploaded,
};
pub use self::limits::{JobLimits, JobLimitsOf, LimitList, QueueLimits, QueueLimitsOf, Rate};
pub use self::schedule::{Schedule, ScheduleList, ScheduleRequest};
pub use self::secret::{Secret, SecretList, SecretValue};
pub use self::task::{
    Attempt, BatchAnswer, BatchItem, BatchRequest, ListQuery, QueueRequest, Queued, Task, TaskDetail, TaskPage,
    TaskProgress, TaskStateChange, Tree, TreeRevoked, TreeTask, WaitQuery,
};
pub use self::tenant::{NewTenant, NewToken, QuotaChanges, Tenant, TenantChange, TenantList, Token, TokenScope};
pub use self::workflow::{Workflow, WorkflowRequest, WorkflowStarted, WorkflowStep};
