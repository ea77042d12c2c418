//! `/v1/schedules`: a tenant's schedules made as data ([`crate::plan`]):
//! made or replaced with `PUT`, listed, paused, resumed and deleted. The
//! cluster's schedulers run them from the store.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState, Caller};
use crate::job::validate_name;
use crate::plan::{MAX_SCHEDULES, PAUSED, Plan, PlanError, When};
use crate::runtime::check_args;
use crate::store::ScheduleRow;
use crate::task::QueueError;
use crate::wire::{Schedule, ScheduleList, ScheduleRequest};

const NAME: &str = "Letters, digits, `-`, `_` and `.`; at most 128 bytes.";

/// `PUT /v1/schedules/{name}`: makes a schedule, or replaces the one of
/// that name (counting its times afresh from now).
#[utoipa::path(put, path = "/schedules/{name}", operation_id = "putSchedule", tag = "schedules",
    request_body = ScheduleRequest,
    params(("name" = String, Path, description = NAME, pattern = r"^[A-Za-z0-9._-]+$", max_length = 128)),
    responses((status = 200, description = "Made or replaced.", body = Schedule)))]
pub async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<ScheduleRequest>, JsonRejection>,
) -> Result<Json<Schedule>, ApiError> {
    let tenant = caller.writer()?;
    checked_name(&name)?;
    let Json(request) = body?;
    let job = request.job.to_lowercase();
    if state.node.registry.get(tenant, &job).is_none() {
        return Err(QueueError::UnknownJob(job).into());
    }
    let args = request.args.to_string();
    check_args(&args, state.node.runtime.limits().max_args_bytes)?;
    let now = state.node.clock.now_millis();
    let when = When::new(request.cron.as_deref(), request.zone.as_deref(), request.every_ms, now).map_err(invalid)?;
    let next_due_at = match request.paused {
        true => PAUSED,
        // `When::new` found a next time after now.
        false => when.next_after(now, now).unwrap_or(PAUSED),
    };
    if let Some(queue) = &request.queue {
        crate::task::check_queue(queue)?;
    }
    let plan = serde_json::to_string(&Plan { args, when, queue: request.queue })
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let row = ScheduleRow {
        tenant: tenant.to_owned(),
        job,
        name: name.clone(),
        plan: Some(plan),
        last_run_at: None,
        since: now,
        next_due_at,
    };
    if !state.node.store.put_plan(row, MAX_SCHEDULES).await? {
        let message = format!("a tenant holds at most {MAX_SCHEDULES} schedules");
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message).quota("schedules"));
    }
    state.node.signals.schedules.notify_one();
    Ok(Json(read(&state, tenant, &name).await?))
}

/// `GET /v1/schedules`: the caller's schedules, by name.
#[utoipa::path(get, path = "/schedules", operation_id = "listSchedules", tag = "schedules",
    responses((status = 200, description = "The tenant's schedules, by name.", body = ScheduleList)))]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<ScheduleList>, ApiError> {
    let tenant = caller.reader()?;
    let rows = state.node.store.plans(tenant, None).await?;
    Ok(Json(ScheduleList { schedules: rows.into_iter().filter_map(Schedule::from_row).collect() }))
}

/// `GET /v1/schedules/{name}`.
#[utoipa::path(get, path = "/schedules/{name}", operation_id = "getSchedule", tag = "schedules",
    params(("name" = String, Path, description = NAME)),
    responses((status = 200, description = "The schedule.", body = Schedule)))]
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let tenant = caller.reader()?;
    Ok(Json(read(&state, tenant, &name).await?))
}

/// `POST /v1/schedules/{name}/pause`: queues nothing until resumed; a tick
/// being decided meanwhile is discarded.
#[utoipa::path(post, path = "/schedules/{name}/pause", operation_id = "pauseSchedule", tag = "schedules",
    params(("name" = String, Path, description = NAME)),
    responses((status = 200, description = "Paused.", body = Schedule)))]
pub async fn pause(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let tenant = caller.writer()?;
    if !state.node.store.set_plan_due(tenant, &name, PAUSED).await? {
        return Err(ApiError::not_found(format!("schedule `{name}`")));
    }
    Ok(Json(read(&state, tenant, &name).await?))
}

/// `POST /v1/schedules/{name}/resume`: due again at its next time after
/// now (the times it missed while paused do not run).
#[utoipa::path(post, path = "/schedules/{name}/resume", operation_id = "resumeSchedule", tag = "schedules",
    params(("name" = String, Path, description = NAME)),
    responses((status = 200, description = "Resumed.", body = Schedule)))]
pub async fn resume(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let tenant = caller.writer()?;
    let not_found = || ApiError::not_found(format!("schedule `{name}`"));
    let row = state.node.store.plans(tenant, Some(&name)).await?.pop().ok_or_else(not_found)?;
    let plan: Option<Plan> = row.plan.as_deref().and_then(|plan| serde_json::from_str(plan).ok());
    let now = state.node.clock.now_millis();
    let next = plan.and_then(|plan| plan.when.next_after(now, row.since)).unwrap_or(PAUSED);
    if !state.node.store.set_plan_due(tenant, &name, next).await? {
        return Err(not_found());
    }
    state.node.signals.schedules.notify_one();
    Ok(Json(read(&state, tenant, &name).await?))
}

/// `DELETE /v1/schedules/{name}`: tasks it queued stay.
#[utoipa::path(delete, path = "/schedules/{name}", operation_id = "deleteSchedule", tag = "schedules",
    params(("name" = String, Path, description = NAME)),
    responses((status = 204, description = "Deleted.")))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.writer()?;
    if !state.node.store.delete_plan(tenant, &name).await? {
        return Err(ApiError::not_found(format!("schedule `{name}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `tenant`'s schedule `name`, as served.
async fn read(state: &ApiState, tenant: &str, name: &str) -> Result<Schedule, ApiError> {
    let row = state.node.store.plans(tenant, Some(name)).await?.pop();
    row.and_then(Schedule::from_row).ok_or_else(|| ApiError::not_found(format!("schedule `{name}`")))
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|e| ApiError::bad_request(e.to_string().replace("job's name", "schedule's name")))
}

/// A schedule refused: 422 naming the problem.
fn invalid(e: PlanError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_schedule", e.to_string())
}
