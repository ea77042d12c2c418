//! `/v1/limits`: the limits a tenant sets on its own queues and jobs
//! ([`crate::limits`]): set or replaced with `PUT`, listed, deleted. Every
//! claim on every node reads them as they are then.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState, Caller};
use crate::limits::{LimitError, MAX_LIMITED};
use crate::wire::{JobLimits, JobLimitsOf, LimitList, QueueLimits, QueueLimitsOf};

/// `GET /v1/limits`: the tenant's queues and jobs with limits.
#[utoipa::path(get, path = "/limits", operation_id = "listLimits", tag = "limits",
    responses((status = 200, description = "Every queue and job of the tenant with limits, by name.", body = LimitList)))]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<LimitList>, ApiError> {
    let tenant = caller.reader()?;
    let (queues, jobs) = state.node.store.limits(tenant).await?;
    Ok(Json(LimitList {
        queues: queues.into_iter().map(|(queue, limits)| QueueLimitsOf { queue, limits }).collect(),
        jobs: jobs.into_iter().map(|(job, limits)| JobLimitsOf { job, limits }).collect(),
    }))
}

/// `PUT /v1/limits/queues/{name}`: sets a queue's limits (replacing any).
#[utoipa::path(put, path = "/limits/queues/{name}", operation_id = "putQueueLimits", tag = "limits",
    request_body = QueueLimits,
    params(("name" = String, Path, description = "A queue's name: letters, digits, `-`, `_` and `.`; at most 128 bytes.",
        pattern = r"^[A-Za-z0-9._-]+$", max_length = 128)),
    responses((status = 200, description = "Set.", body = QueueLimitsOf)))]
pub async fn put_queue(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<QueueLimits>, JsonRejection>,
) -> Result<Json<QueueLimitsOf>, ApiError> {
    let tenant = caller.writer()?;
    crate::task::check_queue(&name)?;
    let Json(limits) = body?;
    limits.check()?;
    if !state.node.store.put_queue_limits(tenant, &name, &limits, MAX_LIMITED).await? {
        return Err(LimitError::TooMany("queues").into());
    }
    Ok(Json(QueueLimitsOf { queue: name, limits }))
}

/// `PUT /v1/limits/jobs/{name}`: sets a job's limits (replacing any; a
/// rate's bucket starts full). The job need not be uploaded yet.
#[utoipa::path(put, path = "/limits/jobs/{name}", operation_id = "putJobLimits", tag = "limits",
    request_body = JobLimits,
    params(("name" = String, Path, description = "A job's name (case-insensitive): letters, digits, `-`, `_` and `.`; at most 128 bytes.",
        pattern = r"^[A-Za-z0-9._-]+$", max_length = 128)),
    responses((status = 200, description = "Set.", body = JobLimitsOf)))]
pub async fn put_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<JobLimits>, JsonRejection>,
) -> Result<Json<JobLimitsOf>, ApiError> {
    let tenant = caller.writer()?;
    let job = job_name(&name)?;
    let Json(limits) = body?;
    limits.check()?;
    let now = state.node.clock.now_millis();
    if !state.node.store.put_job_limits(tenant, &job, &limits, now, MAX_LIMITED).await? {
        return Err(LimitError::TooMany("jobs").into());
    }
    Ok(Json(JobLimitsOf { job, limits }))
}

/// `DELETE /v1/limits/queues/{name}`.
#[utoipa::path(delete, path = "/limits/queues/{name}", operation_id = "deleteQueueLimits", tag = "limits",
    params(("name" = String, Path, description = "The queue's name.")),
    responses((status = 204, description = "Deleted: the queue has no limits and priority 0.")))]
pub async fn delete_queue(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.writer()?;
    crate::task::check_queue(&name)?;
    match state.node.store.delete_limits(tenant, false, &name).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!("limits of queue `{name}`"))),
    }
}

/// `DELETE /v1/limits/jobs/{name}`.
#[utoipa::path(delete, path = "/limits/jobs/{name}", operation_id = "deleteJobLimits", tag = "limits",
    params(("name" = String, Path, description = "The job's name.")),
    responses((status = 204, description = "Deleted: the job has no limits.")))]
pub async fn delete_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.writer()?;
    let job = job_name(&name)?;
    match state.node.store.delete_limits(tenant, true, &job).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!("limits of job `{job}`"))),
    }
}

/// A job's name as the registry keys it (lower case), checked.
fn job_name(name: &str) -> Result<String, ApiError> {
    let job = name.to_ascii_lowercase();
    crate::job::validate_name(&job).map_err(|e| ApiError::invalid_option("name", e.to_string()))?;
    Ok(job)
}
