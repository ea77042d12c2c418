//! `/v1/jobs` and `/v1/uploads`: jobs, their versions, and the uploads
//! that become them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::egress::AllowList;
use crate::job::JobMetadata;
use crate::store::UploadState;

/// Query of `POST /v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// How long to wait for the compile before answering `202` with the
    /// upload `compiling`, such as `60s`; at most 5 min
    /// (`api::MAX_UPLOAD_WAIT`). Default: no wait.
    #[param(example = "60s")]
    pub wait: Option<String>,
    /// The name of the job the component holds: until it is compiled,
    /// tasks of that name may be queued, and wait for it; a component
    /// whose job has another name is rejected.
    #[param(max_length = 128, pattern = r"^[A-Za-z0-9._-]+$")]
    pub name: Option<String>,
}

/// An upload: a component stored and compiled in the background.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Upload {
    /// The component's content hash: the version it becomes.
    pub id: String,
    pub state: UploadState,
    /// The job's name, once compiled (or as declared by `?name=`).
    pub name: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The component's size in bytes.
    pub size: u64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// How long it has been compiling, such as `2s 310ms`.
    pub compiling_for: Option<String>,
    /// Where to follow it.
    #[schema(example = "/v1/uploads/5f2c")]
    pub location: String,
}

/// Which upload a job came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadRef {
    pub id: String,
    pub state: UploadState,
}

/// The `201` answer of `POST /v1/jobs`: the job registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Uploaded {
    pub name: String,
    pub version: String,
    pub metadata: JobMetadata,
    pub upload: UploadRef,
}

/// A job as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub name: String,
    pub version: String,
    pub registered_at: Option<DateTime<Utc>>,
    pub doc: String,
}

/// The answer of `GET /v1/jobs`: regular and periodic jobs apart, and the
/// uploads still compiling or rejected within a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub regular: Vec<JobSummary>,
    pub periodic: Vec<JobSummary>,
    pub uploads: Vec<Upload>,
}

/// The answer of `GET /v1/jobs/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Job {
    /// Registered: its tasks run.
    Ready(Box<ReadyJob>),
    /// Not registered yet: its first version is compiling, and its tasks
    /// wait for it.
    Compiling(CompilingJob),
}

/// A job registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReadyJob {
    pub name: String,
    /// Its next version, if one is compiling.
    pub upload: Option<Upload>,
    pub version: String,
    pub registered_at: Option<DateTime<Utc>>,
    pub metadata: JobMetadata,
    /// Every version, newest first.
    pub versions: Vec<JobVersion>,
    /// A periodic job: when the scheduler next asks its `is-due`.
    pub next_due: Option<DateTime<Utc>>,
    /// A periodic job: when it last ran.
    pub last_run: Option<DateTime<Utc>>,
    /// The contract its component targets, such as `wasmjob:job@0.2.0`.
    pub contract: String,
    /// Where its tasks' requests may go: its tenant's allow-list, narrowed
    /// by the job's own.
    #[schema(value_type = Vec<String>)]
    pub allowed_hosts: AllowList,
    /// Secrets it declares that its tenant has not set.
    pub missing_secrets: Vec<String>,
    pub nodes: NodesReady,
}

/// A job whose first version is compiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompilingJob {
    pub name: String,
    pub upload: Upload,
}

/// A version of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobVersion {
    pub version: String,
    pub registered_at: Option<DateTime<Utc>>,
}

/// Worker nodes alive (a heartbeat within a lease), and those of them that
/// have compiled the job's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodesReady {
    pub ready: u64,
    pub alive: u64,
}

/// The answer of `POST /v1/jobs/{name}/revoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRevoked {
    pub job: String,
    /// Tasks that will not run.
    pub revoked: usize,
    /// Running tasks being stopped.
    pub stopping: usize,
}

/// What `POST /v1/jobs` answers, for a client: the job registered (`201`)
/// or the upload still compiling (`202`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UploadAnswer {
    Registered(Box<Uploaded>),
    Pending(Upload),
}
