//! `/v1/jobs`: upload, list, show and delete a tenant's jobs.

use axum::Json;
use std::error::Error as _;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{ApiError, ApiState, Caller};
use crate::job::JobMetadata;
use crate::registry::RegisteredJob;
use crate::store::{UploadRow, UploadState};

#[derive(Serialize)]
struct JobSummary<'a> {
    name: &'a str,
    version: &'a str,
    registered_at: Option<DateTime<Utc>>,
    doc: &'a str,
}

fn summary<'a>(name: &'a str, job: &'a RegisteredJob) -> JobSummary<'a> {
    JobSummary {
        name,
        version: job.component.hash(),
        registered_at: DateTime::from_timestamp_millis(job.registered_at),
        doc: &job.component.metadata().doc,
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

/// Query of `POST /v1/jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// How long to wait for the compile before answering `202` with the
    /// upload `compiling`, such as `60s`; at most [`MAX_UPLOAD_WAIT`].
    /// Default: no wait.
    wait: Option<String>,
    /// The name of the job the component holds: until it is compiled,
    /// tasks of that name may be queued, and wait for it; a component whose
    /// job has another name is rejected. Default: none.
    name: Option<String>,
}

/// `POST /v1/jobs`: the body is the component. What can be refused without
/// compiling is refused at once (4xx); the rest is stored and compiled in
/// the background ([`crate::upload`]). The answer comes when the compile
/// ends or `?wait=` has passed, whichever is first: `201` with the job
/// registered, the compile's refusal (4xx), or `202` with the upload
/// `compiling` and where to follow it (`GET /v1/uploads/{id}`).
pub async fn upload(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
            let metadata: &JobMetadata = component.metadata();
            let answer = json!({
                "name": metadata.name,
                "version": component.hash(),
                "metadata": metadata,
                "upload": { "id": component.hash(), "state": UploadState::Ready },
            });
            Ok((StatusCode::CREATED, Json(answer)))
        }
        None => Ok((StatusCode::ACCEPTED, Json(upload_view(&started.upload, &state)))),
    }
}

/// An upload as the API shows it.
fn upload_view(upload: &UploadRow, state: &ApiState) -> Value {
    json!({
        "id": upload.id,
        "state": upload.state,
        "name": upload.name,
        "reason": upload.reason,
        "size": upload.size,
        "created_at": DateTime::from_timestamp_millis(upload.created_at),
        "updated_at": DateTime::from_timestamp_millis(upload.updated_at),
        "compiling_for": (upload.state == UploadState::Compiling)
            .then(|| humantime::format_duration(crate::upload::age(upload, state.node.clock.now_millis())).to_string()),
        "location": format!("/v1/uploads/{}", upload.id),
    })
}

/// `GET /v1/uploads/{id}`: where an upload is (`compiling`, `ready` with
/// its job's name, or `rejected` with the reason).
pub async fn upload_status(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.reader()?;
    let upload = state.node.uploads.get(tenant, &id).await?;
    let upload = upload.ok_or_else(|| ApiError::not_found(format!("upload {id}")))?;
    Ok(Json(upload_view(&upload, &state)))
}

/// `GET /v1/jobs`: regular and periodic jobs, apart, and the uploads still
/// compiling or rejected within [`REJECTED_LISTED`].
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let tenant = caller.reader()?;
    let regular = state.node.registry.regular(tenant);
    let periodic = state.node.registry.periodic(tenant);
    let regular: Vec<_> = regular.iter().map(|(n, j)| summary(n, j)).collect();
    let periodic: Vec<_> = periodic.iter().map(|(n, j)| summary(n, j)).collect();
    let uploads = state.node.uploads.pending(tenant, REJECTED_LISTED).await?;
    let uploads: Vec<Value> = uploads.iter().map(|u| upload_view(u, &state)).collect();
    Ok(Json(json!({ "regular": regular, "periodic": periodic, "uploads": uploads })))
}

/// `GET /v1/jobs/{name}`: metadata, versions and, for a periodic job, when
/// it is next due.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.reader()?;
    // An upload declaring the job that is still compiling: the job's next
    // version, or its first (tasks queued meanwhile wait for it).
    let upload = state.node.uploads.declaring(tenant, &name.to_ascii_lowercase()).await?;
    let upload_view = upload.as_ref().map(|u| upload_view(u, &state));
    let Some(job) = state.node.registry.get(tenant, &name) else {
        return match upload_view {
            Some(view) => Ok(Json(json!({ "name": name.to_ascii_lowercase(), "state": "compiling", "upload": view }))),
            None => Err(ApiError::not_found(format!("job `{name}`"))),
        };
    };
    let metadata = job.component.metadata();
    let versions: Vec<Value> = state
        .node
        .registry
        .versions(tenant, &metadata.name)
        .await?
        .into_iter()
        .map(|(hash, at)| json!({ "version": hash, "registered_at": DateTime::from_timestamp_millis(at) }))
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
    let missing: Vec<&String> = metadata.secrets.iter().filter(|name| !set.contains(name)).collect();
    // The worker nodes alive (a heartbeat within a lease) and those of
    // them that have compiled this version: the others compile it before
    // running one of its tasks.
    let since = state.node.clock.now_millis().saturating_sub(crate::store::to_millis(crate::worker::LEASE));
    let (ready, alive) = state.node.store.ready_nodes(job.component.hash(), since).await?;
    Ok(Json(json!({
        "name": metadata.name,
        "state": "ready",
        "upload": upload_view,
        "version": job.component.hash(),
        "registered_at": DateTime::from_timestamp_millis(job.registered_at),
        "metadata": metadata,
        "versions": versions,
        "next_due": next_due,
        "last_run": last_run,
        "contract": job.component.contract(),
        "allowed_hosts": egress,
        "missing_secrets": missing,
        "nodes": { "ready": ready, "alive": alive },
    })))
}

/// `POST /v1/jobs/{name}/revoke`: revokes every task of the job that has
/// not ended (the job stays registered).
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.writer()?;
    let job = name.to_ascii_lowercase();
    let scope = crate::store::RevokeScope::Job { tenant: tenant.to_owned(), job: job.clone() };
    let done = state.node.queue.revoke_many(scope).await?;
    Ok(Json(json!({ "job": job, "revoked": done.revoked.len(), "stopping": done.stopping.len() })))
}

/// `DELETE /v1/jobs/{name}`: queued tasks keep their version and still run.
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
