//! `/v1/tasks`: queue, read, list, wait for, revoke a tenant's tasks, and
//! read their logs.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller};
use crate::queue::Revoked;
use crate::store::RevokeScope;
use crate::store::{Retried, TaskFilter, TaskRecord, TaskState};
use crate::task::{QueueError, QueueOptions, parse_id};

/// The longest a wait request holds. Default 60 s.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The body of `POST /v1/tasks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    job: String,
    #[serde(default = "empty_object")]
    args: Value,
    #[serde(default)]
    options: QueueOptions,
}

fn empty_object() -> Value {
    json!({})
}

/// `POST /v1/tasks`: 201 with the id, or 409 `duplicate` with the task it
/// would overlap.
pub async fn queue(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<QueueRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = caller.writer()?;
    let Json(request) = body?;
    let id = state.node.queue.queue(tenant, &request.job, &request.args.to_string(), &request.options, None).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// Most tasks in one `POST /v1/tasks/batch`. Default 1,000.
pub const MAX_BATCH: usize = 1000;

/// The body of `POST /v1/tasks/batch`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    tasks: Vec<QueueRequest>,
}

/// `POST /v1/tasks/batch`: queues up to [`MAX_BATCH`] tasks in one write.
/// Results are per item, in request order: `{"id": ...}` for a task queued,
/// or `{"error": {...}}` with the code a single `POST /v1/tasks` would have
/// given (`unknown_job`, `duplicate`...); the others are queued regardless.
/// A tenant quota the batch as a whole exceeds refuses every item. 200
/// whatever the items' fate; 400 for a malformed body or more than
/// [`MAX_BATCH`] tasks (nothing queued).
pub async fn queue_batch(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.writer()?;
    let Json(batch) = body?;
    if batch.tasks.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_BATCH} tasks, not {}",
            batch.tasks.len()
        )));
    }
    let requests: Vec<_> = batch.tasks.into_iter().map(|t| (t.job, t.args.to_string(), t.options)).collect();
    let answers = state.node.queue.queue_many(tenant, &requests).await?;
    let results: Vec<Value> = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(id) => json!({ "id": id }),
            Err(e) => ApiError::from(e).body(),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// A task as the API shows it: its row, with `args` and `result` as the
/// JSON values they are (the store keeps them as text; a job's result is
/// checked to be JSON when it ends, args when they are queued).
fn view(task: &TaskRecord) -> Value {
    let mut value = serde_json::to_value(task).expect("tasks serialize");
    for field in ["args", "result"] {
        if let Some(Value::String(text)) = value.get(field)
            && let Ok(parsed) = serde_json::from_str::<Value>(text)
        {
            value[field] = parsed;
        }
    }
    value
}

/// The caller's task `id`; another tenant's is "not found", and so is an id
/// that is not canonical ([`parse_id`]): `01` is not an alias of `1`.
async fn own_task(state: &ApiState, tenant: &str, id: &str) -> Result<TaskRecord, ApiError> {
    if parse_id(id).is_none() {
        return Err(ApiError::not_found(format!("task {id}")));
    }
    match state.node.queue.task(id).await? {
        Some(task) if task.tenant == tenant => Ok(task),
        _ => Err(ApiError::not_found(format!("task {id}"))),
    }
}

/// `GET /v1/tasks/{id}`: the task and its children.
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.reader()?;
    let task = own_task(&state, tenant, &id).await?;
    let filter =
        TaskFilter { tenant: Some(tenant.to_owned()), from_task: Some(id), limit: Some(1000), ..TaskFilter::default() };
    let children: Vec<String> = state.node.queue.list(filter).await?.into_iter().rev().map(|t| t.id).collect();
    let mut value = view(&task);
    value["children"] = json!(children);
    Ok(Json(value))
}

/// Most tasks `GET /v1/tasks/{id}/tree` answers (the rest: `truncated`).
/// Default 1,000.
pub const MAX_TREE_LISTED: usize = 1000;

/// `GET /v1/tasks/{id}/tree`: the task and its descendants (through
/// `from_task`), oldest first, each with its state: pulsar's task tree.
pub async fn tree(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.reader()?;
    let task = own_task(&state, tenant, &id).await?;
    let root = task.root_task.clone().unwrap_or_else(|| task.id.clone());
    // The whole tree of its root, bounded by the tree cap; its subtree is
    // what descends from it (a child's id is above its parent's).
    let cap = usize::try_from(state.node.queue.caps().max_tree).unwrap_or(usize::MAX).saturating_add(1);
    let mut within = std::collections::HashSet::from([task.id.clone()]);
    let mut tasks = Vec::new();
    for t in state.node.store.tree(&root, cap).await? {
        if t.id == task.id || t.from_task.as_ref().is_some_and(|p| within.contains(p)) {
            within.insert(t.id.clone());
            tasks.push(t);
        }
    }
    let truncated = tasks.len() > MAX_TREE_LISTED;
    tasks.truncate(MAX_TREE_LISTED);
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|t| {
            json!({
                "id": t.id, "job": t.job, "state": t.state, "reason": t.reason, "from_task": t.from_task,
                "depth": t.depth, "attempt": t.attempt, "queued_at": t.queued_at, "started_at": t.started_at,
                "finished_at": t.finished_at,
            })
        })
        .collect();
    Ok(Json(json!({ "id": task.id, "root": root, "tasks": tasks, "truncated": truncated })))
}

/// Query of `GET /v1/tasks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    job: Option<String>,
    state: Option<String>,
    /// Milliseconds since the epoch.
    queued_after: Option<i64>,
    queued_before: Option<i64>,
    limit: Option<u32>,
    /// The `next` of the previous page: a task id.
    before: Option<String>,
}

/// `GET /v1/tasks`: newest first, one page; `next` fetches the following one.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.reader()?;
    let Query(q) = query?;
    let task_state = match q.state.as_deref() {
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| ApiError::bad_request(format!("unknown state `{s}`")))?),
        None => None,
    };
    if let Some(before) = q.before.as_deref().filter(|b| parse_id(b).is_none()) {
        return Err(ApiError::bad_request(format!(
            "`before` must be the `next` of a previous page (a task id), not `{before}`"
        )));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = TaskFilter {
        tenant: Some(tenant.to_owned()),
        job: q.job.map(|j| j.to_ascii_lowercase()),
        state: task_state,
        from_task: None,
        queued_after: q.queued_after,
        queued_before: q.queued_before,
        limit: Some(limit),
        before_id: q.before,
    };
    let tasks = state.node.queue.list(filter).await?;
    let next = if tasks.len() == limit as usize { tasks.last().map(|t| t.id.clone()) } else { None };
    let tasks: Vec<Value> = tasks.iter().map(view).collect();
    Ok(Json(json!({ "tasks": tasks, "next": next })))
}

/// Query of the wait endpoint.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Such as `30s`; at most [`MAX_WAIT`]. Default 30 s.
    timeout: Option<String>,
}

/// `GET /v1/tasks/{id}/wait?timeout=30s`: answers when the task ends, or
/// at the timeout with the task as it is then (long poll).
pub async fn wait(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.reader()?;
    let Query(q) = query?;
    let timeout = match q.timeout.as_deref() {
        Some(t) => humantime::parse_duration(t).map_err(|e| ApiError::bad_request(format!("timeout `{t}`: {e}")))?,
        None => Duration::from_secs(30),
    };
    own_task(&state, tenant, &id).await?;
    let task = state.node.queue.wait(&id, timeout.min(MAX_WAIT)).await?;
    task.map(|t| Json(view(&t))).ok_or_else(|| ApiError::not_found(format!("task {id}")))
}

/// `POST /v1/tasks/{id}/retry`: a failed or revoked task back in line for
/// one more attempt (409 `conflict` for a task in another state, 409
/// `duplicate` if its overlap key is taken).
pub async fn retry(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.writer()?;
    own_task(&state, tenant, &id).await?;
    match state.node.queue.retry(tenant, &id).await? {
        Retried::Queued => Ok(Json(json!({ "id": id, "state": "queued" }))),
        Retried::Missing => Err(ApiError::not_found(format!("task {id}"))),
        Retried::Not(now) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("task {id} is {}: only a failed or revoked task can be retried", now.as_str()),
        )),
        Retried::Duplicate(other) => Err(QueueError::Duplicate(other).into()),
    }
}

/// `POST /v1/tasks/{id}/revoke`: a queued task never runs; a running one is
/// stopped.
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.writer()?;
    own_task(&state, tenant, &id).await?;
    // A running task is stopped by its node; this answers with the state it
    // ends in, or `revoking` if it has not stopped within `REVOKE_WAIT`.
    let state = match state.node.queue.revoke(&id).await? {
        Some(Revoked::Ended(s)) => s.as_str(),
        Some(Revoked::Revoking) => "revoking",
        None => return Err(ApiError::not_found(format!("task {id}"))),
    };
    Ok(Json(json!({ "id": id, "state": state })))
}

/// `POST /v1/tasks/{id}/revoke-tree`: revokes the task and every task in its
/// tree (queued from it, from them...) that has not ended, in one call.
pub async fn revoke_tree(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.writer()?;
    let task = own_task(&state, tenant, &id).await?;
    let root = task.root_task.unwrap_or(task.id);
    let scope = RevokeScope::Tree { tenant: tenant.to_owned(), root: root.clone() };
    let done = state.node.queue.revoke_many(scope).await?;
    Ok(Json(json!({ "root": root, "revoked": done.revoked.len(), "stopping": done.stopping.len() })))
}

/// `GET /v1/tasks/{id}/logs`: the task's log, as text.
pub async fn logs(State(state): State<ApiState>, caller: Caller, Path(id): Path<String>) -> Result<String, ApiError> {
    let tenant = caller.reader()?;
    Ok(own_task(&state, tenant, &id).await?.log.unwrap_or_default())
}
