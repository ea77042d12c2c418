//! `/v1/workflows`: start a workflow of a tenant's jobs (a chain, a group,
//! a chord, or stages: [`crate::workflow`]) and read it as a whole.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState, Caller};
use crate::task::parse_id;
use crate::wire::{Workflow, WorkflowRequest, WorkflowStarted};
use crate::workflow::Step;

/// `POST /v1/workflows`: writes every step at once, or none (a refused
/// step refuses the workflow, naming it as `stages[i][j]`).
#[utoipa::path(post, path = "/workflows", operation_id = "startWorkflow", tag = "workflows",
    request_body = WorkflowRequest,
    responses(
        (status = 201, description = "Started: its first stage is queued.", body = WorkflowStarted),
        (status = 404, description = "`unknown_job`: a step's job.", body = crate::wire::ErrorBody),
        (status = 422, description = "A step or the shape refused (`invalid_args`, `invalid_option` with \
            its `field`); nothing queued.", body = crate::wire::ErrorBody),
        (status = 429, description = "`quota_exceeded`: the tenant's `max_queued` or queueing rate, for all \
            the steps at once.", body = crate::wire::ErrorBody),
    ))]
pub async fn start(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<WorkflowRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<WorkflowStarted>), ApiError> {
    let tenant = caller.writer()?;
    let Json(request) = body?;
    let stages: Vec<Vec<Step>> = request
        .stages()
        .into_iter()
        .map(|stage| {
            stage
                .into_iter()
                .map(|step| Step { job: step.job, args: step.args.to_string(), options: step.options })
                .collect()
        })
        .collect();
    let started = state.node.queue.start_workflow(tenant, &stages).await?;
    Ok((StatusCode::CREATED, Json(WorkflowStarted { id: started.id, stages: started.stages })))
}

/// `GET /v1/workflows/{id}`: the workflow's state, result or reason, and
/// every step's.
#[utoipa::path(get, path = "/workflows/{id}", operation_id = "getWorkflow", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id.")),
    responses(
        (status = 200, description = "The workflow and its steps, stage by stage.", body = Workflow),
        (status = 404, description = "No such workflow of the caller's tenant.", body = crate::wire::ErrorBody),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Workflow>, ApiError> {
    let tenant = caller.reader()?;
    // Another tenant's, or an id that is not canonical, is not found.
    let found = match parse_id(&id) {
        Some(_) => state.node.store.workflow(&id).await?,
        None => None,
    };
    // One whose every step was pruned is gone too.
    match found {
        Some(record) if record.tenant == tenant && !record.stages.is_empty() => Ok(Json(record.into())),
        _ => Err(ApiError::not_found(format!("workflow {id}"))),
    }
}
