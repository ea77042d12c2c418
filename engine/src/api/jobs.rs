//! `/v1/jobs`: upload, list, show and delete a tenant's jobs.

use std::error::Error as _;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use tokio::sync::Semaphore;

use super::{ApiError, ApiState, Caller};
use crate::registry::RegisteredJob;
use crate::store::{UploadRow, UploadState};
use crate::wire::{
    CompilingJob, Job, JobList, JobRevoked, JobSummary, JobVersion, NodesReady, ReadyJob, Upload, UploadQuery,
    UploadRef, Uploaded,
};

fn summary(name: &str, job: &RegisteredJob) -> JobSummary {
    JobSummary {
        name: name.to_owned(),
        version: job.component.hash().to_owned(),
        registered_at: DateTime::from_timestamp_millis(job.registered_at),
        doc: job.component.metadata().doc.clone(),
    }
}

/// Uploads whose bodies are read at once, in this process: each may be as
/// large as the engine's `max_component_bytes` (128 MiB by default), and
/// the others wait, unread, so that many at once cannot exhaust memory.
/// Default 4.
pub const MAX_UPLOADS_READ: usize = 4;
static UPLOADS_READ: Semaphore = Semaphore::const_new(MAX_UPLOADS_READ);
/// How long one upload's body may take to arrive, so that a client sending
/// slowly holds a place among [`MAX_UPLOADS_READ`] for no longer: 128 MiB at
/// 10 Mbit/s. Default 2 min.
pub const UPLOAD_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest an upload waits for its compile (`?wait=`). Default 5 min,
/// above a compile's wall-clock limit.
pub const MAX_UPLOAD_WAIT: Duration = Duration::from_secs(300);
/// How long uploads stay listed as rejected in `GET /v1/jobs`. Default 24 h.
pub const REJECTED_LISTED: Duration = Duration::from_secs(24 * 3600);

/// `POST /v1/jobs`: the body is the component. What can be refused without
/// compiling is refused at once (4xx); the rest is stored and compiled in
/// the background ([`crate::upload`]). The answer comes when the compile
/// ends or `?wait=` has passed, whichever is first: `201` with the job
/// registered, the compile's refusal (4xx), or `202` with the upload
/// `compiling` and where to follow it (`GET /v1/uploads/{id}`).
#[utoipa::path(post, path = "/jobs", operation_id = "uploadJob", tag = "jobs", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes."),
    responses(
        (status = 201, description = "Compiled and registered.", body = Uploaded),
        (status = 202, description = "Stored and compiling: follow `location`.", body = Upload),
    ))]
pub async fn upload(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = caller.writer()?;
    let Query(q) = query?;
    let wait = match q.wait.as_deref() {
        Some(w) => humantime::parse_duration(w).map_err(|e| ApiError::bad_request(format!("wait `{w}`: {e}")))?,
        None => Duration::ZERO,
    };
    let quotas =
        state.node.tenants.get(tenant).await?.ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}`")))?;
    let limit = quotas.max_component_bytes.min(state.node.runtime.limits().max_component_bytes);
    let body = {
        let _reading = UPLOADS_READ.acquire().await.expect("the semaphore is never closed");
        let read = tokio::time::timeout(UPLOAD_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await;
        let Ok(read) = read else {
            let message =
                format!("the upload did not arrive within {}", humantime::format_duration(UPLOAD_READ_TIMEOUT));
            return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message));
        };
        match read {
            Ok(body) => body,
            Err(e) if e.source().is_some_and(|e| e.is::<http_body_util::LengthLimitError>()) => {
                return Err(if limit < state.node.runtime.limits().max_component_bytes {
                    let message =
                        format!("quota `max_component_bytes` exceeded: the component is over the limit, {limit} bytes");
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded", message)
                } else {
                    let message = format!("the component is over the engine's limit, {limit} bytes");
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                });
            }
            Err(e) => return Err(ApiError::bad_request(format!("cannot read the upload: {e}"))),
        }
    };
    let declares = match q.name {
        Some(name) => {
            crate::job::validate_name(&name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
            Some(name.to_ascii_lowercase())
        }
        None => None,
    };
    let started = state.node.uploads.start(tenant, body.to_vec(), quotas.max_components, declares).await?;
    let mut ending = started.ending;
    let ended = match tokio::time::timeout(wait.min(MAX_UPLOAD_WAIT), &mut ending).await {
        Ok(Ok(ended)) => Some(ended),
        // The compile's task is gone (the node is stopping): still compiling.
        Ok(Err(_)) => None,
        Err(_) => ending.try_recv().ok(),
    };
    match ended {
        Some(ended) => {
            let component = ended?;
            let metadata = component.metadata().clone();
            let answer = Uploaded {
                name: metadata.name.clone(),
                version: component.hash().to_owned(),
                metadata,
                upload: UploadRef { id: component.hash().to_owned(), state: UploadState::Ready },
            };
            Ok((StatusCode::CREATED, Json(answer)).into_response())
        }
        None => Ok((StatusCode::ACCEPTED, Json(upload_view(&started.upload, &state))).into_response()),
    }
}

/// An upload as the API shows it.
fn upload_view(upload: &UploadRow, state: &ApiState) -> Upload {
    Upload {
        id: upload.id.clone(),
        state: upload.state,
        name: upload.name.clone(),
        reason: upload.reason.clone(),
        size: upload.size,
        created_at: DateTime::from_timestamp_millis(upload.created_at),
        updated_at: DateTime::from_timestamp_millis(upload.updated_at),
        compiling_for: (upload.state == UploadState::Compiling)
            .then(|| humantime::format_duration(crate::upload::age(upload, state.node.clock.now_millis())).to_string()),
        location: format!("/v1/uploads/{}", upload.id),
    }
}

/// `GET /v1/uploads/{id}`: where an upload is (`compiling`, `ready` with
/// its job's name, or `rejected` with the reason).
#[utoipa::path(get, path = "/uploads/{id}", operation_id = "getUpload", tag = "jobs",
    params(("id" = String, Path, description = "The upload's id: its component's hash.")),
    responses((status = 200, description = "Where the upload is.", body = Upload)))]
pub async fn upload_status(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Upload>, ApiError> {
    let tenant = caller.reader()?;
    let upload = state.node.uploads.get(tenant, &id).await?;
    let upload = upload.ok_or_else(|| ApiError::not_found(format!("upload {id}")))?;
    Ok(Json(upload_view(&upload, &state)))
}

/// `GET /v1/jobs`: regular and periodic jobs, apart, and the uploads still
/// compiling or rejected within [`REJECTED_LISTED`].
#[utoipa::path(get, path = "/jobs", operation_id = "listJobs", tag = "jobs",
    responses((status = 200, description = "The tenant's jobs and pending uploads.", body = JobList)))]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<JobList>, ApiError> {
    let tenant = caller.reader()?;
    let regular = state.node.registry.regular(tenant).iter().map(|(n, j)| summary(n, j)).collect();
    let periodic = state.node.registry.periodic(tenant).iter().map(|(n, j)| summary(n, j)).collect();
    let uploads = state.node.uploads.pending(tenant, REJECTED_LISTED).await?;
    let uploads = uploads.iter().map(|u| upload_view(u, &state)).collect();
    Ok(Json(JobList { regular, periodic, uploads }))
}

/// `GET /v1/jobs/{name}`: metadata, versions and, for a periodic job, when
/// it is next due.
#[utoipa::path(get, path = "/jobs/{name}", operation_id = "getJob", tag = "jobs",
    params(("name" = String, Path, description = "The job's name, in any case.")),
    responses((status = 200, description = "The job, ready or compiling.", body = Job)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let tenant = caller.reader()?;
    // An upload declaring the job that is still compiling: the job's next
    // version, or its first (tasks queued meanwhile wait for it).
    let upload = state.node.uploads.declaring(tenant, &name.to_ascii_lowercase()).await?;
    let upload = upload.as_ref().map(|u| upload_view(u, &state));
    let Some(job) = state.node.registry.get(tenant, &name) else {
        return match upload {
            Some(upload) => Ok(Json(Job::Compiling(CompilingJob { name: name.to_ascii_lowercase(), upload }))),
            None => Err(ApiError::not_found(format!("job `{name}`"))),
        };
    };
    let metadata = job.component.metadata();
    let versions = state
        .node
        .registry
        .versions(tenant, &metadata.name)
        .await?
        .into_iter()
        .map(|(version, at)| JobVersion { version, registered_at: DateTime::from_timestamp_millis(at) })
        .collect();
    // When the scheduler next asks the job's `is-due`, and when it last ran.
    let schedule = state.node.registry.schedule(tenant, &metadata.name).await?;
    let next_due = schedule.as_ref().and_then(|s| DateTime::from_timestamp_millis(s.next_due_at));
    let last_run = schedule.as_ref().and_then(|s| s.last_run_at).and_then(DateTime::from_timestamp_millis);
    // Where its tasks' requests may go: the tenant's allow-list, narrowed
    // by the job's own if it has one.
    let tenant_hosts = state.node.tenants.get(tenant).await?.map(|q| q.allowed_hosts).unwrap_or_default();
    let egress = match &metadata.allowed_hosts {
        Some(job_hosts) => tenant_hosts.and(job_hosts),
        None => tenant_hosts,
    };
    // The secrets it declares that its tenant has not set: its tasks would
    // be refused them.
    let set: Vec<String> = state.node.store.secret_names(tenant).await?.into_iter().map(|(name, _)| name).collect();
    let missing = metadata.secrets.iter().filter(|name| !set.contains(name)).cloned().collect();
    // The worker nodes alive (a heartbeat within a lease) and those of
    // them that have compiled this version: the others compile it before
    // running one of its tasks.
    let since = state.node.clock.now_millis().saturating_sub(crate::store::to_millis(crate::worker::LEASE));
    let (ready, alive) = state.node.store.ready_nodes(job.component.hash(), since).await?;
    Ok(Json(Job::Ready(Box::new(ReadyJob {
        name: metadata.name.clone(),
        upload,
        version: job.component.hash().to_owned(),
        registered_at: DateTime::from_timestamp_millis(job.registered_at),
        metadata: metadata.clone(),
        versions,
        next_due,
        last_run,
        contract: job.component.contract().to_owned(),
        allowed_hosts: egress,
        missing_secrets: missing,
        nodes: NodesReady { ready, alive },
    }))))
}

/// `POST /v1/jobs/{name}/revoke`: revokes every task of the job that has
/// not ended (the job stays registered).
#[utoipa::path(post, path = "/jobs/{name}/revoke", operation_id = "revokeJobTasks", tag = "jobs",
    params(("name" = String, Path, description = "The job's name, in any case.")),
    responses((status = 200, description = "How many of its tasks were revoked.", body = JobRevoked)))]
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<JobRevoked>, ApiError> {
    let tenant = caller.writer()?;
    let job = name.to_ascii_lowercase();
    let scope = crate::store::RevokeScope::Job { tenant: tenant.to_owned(), job: job.clone() };
    let done = state.node.queue.revoke_many(scope).await?;
    Ok(Json(JobRevoked { job, revoked: done.revoked.len(), stopping: done.stopping.len() }))
}

/// `DELETE /v1/jobs/{name}`: queued tasks keep their version and still run.
#[utoipa::path(delete, path = "/jobs/{name}", operation_id = "deleteJob", tag = "jobs",
    params(("name" = String, Path, description = "The job's name, in any case.")),
    responses((status = 204, description = "Deleted: its queued tasks still run.")))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.writer()?;
    if state.node.registry.get(tenant, &name).is_none() {
        return Err(ApiError::not_found(format!("job `{name}`")));
    }
    state.node.registry.delete(tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
