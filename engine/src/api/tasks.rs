//! `/v1/tasks`: queue, read, list, wait for, revoke and retry a tenant's
//! tasks, and read their logs.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState, Caller};
use crate::queue::Revoked;
use crate::store::{Retried, RevokeScope, TaskFilter, TaskRecord};
use crate::task::{QueueError, parse_id};
use crate::wire::{
    Attempt, BatchAnswer, BatchItem, BatchRequest, ListQuery, QueueRequest, Queued, Task, TaskDetail, TaskPage,
    TaskStateChange, Tree, TreeRevoked, TreeTask, WaitQuery,
};

/// The longest a wait request holds. Default 60 s.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Most tasks in one `POST /v1/tasks/batch`. Default 1,000.
pub const MAX_BATCH: usize = 1000;

/// Most tasks `GET /v1/tasks/{id}/tree` answers (the rest: `truncated`).
/// Default 1,000.
pub const MAX_TREE_LISTED: usize = 1000;

/// Most children `GET /v1/tasks/{id}` lists. Default 1,000.
pub const MAX_CHILDREN_LISTED: u32 = 1000;

/// Most earlier attempts `GET /v1/tasks/{id}` lists (the last ones): with
/// up to 1,000 retries and retries by hand, and 16,384 characters of log
/// each, a task's attempts could outgrow any answer. Default 100.
pub const MAX_ATTEMPTS_LISTED: usize = 100;

/// The task a path names.
type TaskPath = Path<String>;

/// `POST /v1/tasks`: 201 with the id, or 409 `duplicate` with the task it
/// would overlap.
#[utoipa::path(post, path = "/tasks", operation_id = "queueTask", tag = "tasks", request_body = QueueRequest,
    responses(
        (status = 201, description = "Queued.", body = Queued),
        (status = 409, description = "`duplicate`: a live task of the job holds its overlap key \
            (`existing_task`).", body = crate::wire::ErrorBody),
    ))]
pub async fn queue(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<QueueRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let tenant = caller.writer()?;
    let Json(request) = body?;
    let id = state.node.queue.queue(tenant, &request.job, &request.args.to_string(), &request.options, None).await?;
    Ok((StatusCode::CREATED, Json(Queued { id })))
}

/// `POST /v1/tasks/batch`: queues up to [`MAX_BATCH`] tasks in one write.
/// Results are per item, in request order: `{"id": ...}` for a task queued,
/// or `{"error": {...}}` with the code a single `POST /v1/tasks` would have
/// given (`unknown_job`, `duplicate`...); the others are queued regardless.
/// A tenant quota the batch as a whole exceeds refuses every item. 200
/// whatever the items' fate; 400 for a malformed body or more than
/// [`MAX_BATCH`] tasks (nothing queued).
#[utoipa::path(post, path = "/tasks/batch", operation_id = "queueTasks", tag = "tasks", request_body = BatchRequest,
    responses((status = 200, description = "One result per task, in request order: queued or refused.",
        body = BatchAnswer)))]
pub async fn queue_batch(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Json<BatchAnswer>, ApiError> {
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
    let results = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(id) => BatchItem::Queued(Queued { id }),
            Err(e) => BatchItem::Refused(ApiError::from(e).body()),
        })
        .collect();
    Ok(Json(BatchAnswer { results }))
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
#[utoipa::path(get, path = "/tasks/{id}", operation_id = "getTask", tag = "tasks",
    params(("id" = String, Path, description = "The task's id.")),
    responses((status = 200, description = "The task and the ids of the tasks it queued.", body = TaskDetail)))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): TaskPath,
) -> Result<Json<TaskDetail>, ApiError> {
    let tenant = caller.reader()?;
    let task = own_task(&state, tenant, &id).await?;
    let filter = TaskFilter {
        tenant: Some(tenant.to_owned()),
        from_task: Some(id),
        limit: Some(MAX_CHILDREN_LISTED),
        ..TaskFilter::default()
    };
    let children: Vec<String> = state.node.queue.list(filter).await?.into_iter().rev().map(|t| t.id).collect();
    let attempts = Attempt::all(&task, state.node.store.attempts(&task.id, MAX_ATTEMPTS_LISTED).await?);
    Ok(Json(TaskDetail { task: task.into(), children, attempts }))
}

/// `GET /v1/tasks/{id}/tree`: the task and its descendants (through
/// `from_task`), oldest first, each with its state: pulsar's task tree.
#[utoipa::path(get, path = "/tasks/{id}/tree", operation_id = "getTaskTree", tag = "tasks",
    params(("id" = String, Path, description = "The task's id.")),
    responses((status = 200, description = "The task and its descendants, oldest first.", body = Tree)))]
pub async fn tree(State(state): State<ApiState>, caller: Caller, Path(id): TaskPath) -> Result<Json<Tree>, ApiError> {
    let tenant = caller.reader()?;
    let task = own_task(&state, tenant, &id).await?;
    let root = task.root_task.clone().unwrap_or_else(|| task.id.clone());
    // The whole tree of its root, bounded by the tree cap; its subtree is
    // what descends from it (a child's id is above its parent's).
    let cap = usize::try_from(state.node.queue.caps().max_tree).unwrap_or(usize::MAX).saturating_add(1);
    let mut within = HashSet::from([task.id.clone()]);
    let mut tasks = Vec::new();
    for t in state.node.store.tree(&root, cap).await? {
        if t.id == task.id || t.from_task.as_ref().is_some_and(|p| within.contains(p)) {
            within.insert(t.id.clone());
            tasks.push(TreeTask::from(&t));
        }
    }
    let truncated = tasks.len() > MAX_TREE_LISTED;
    tasks.truncate(MAX_TREE_LISTED);
    Ok(Json(Tree { id: task.id, root, tasks, truncated }))
}

/// `GET /v1/tasks`: newest first, one page; `next` fetches the following one.
#[utoipa::path(get, path = "/tasks", operation_id = "listTasks", tag = "tasks", params(ListQuery),
    responses((status = 200, description = "One page of tasks, newest first.", body = TaskPage)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let tenant = caller.reader()?;
    let Query(q) = query?;
    if let Some(before) = q.before.as_deref().filter(|b| parse_id(b).is_none()) {
        return Err(ApiError::bad_request(format!(
            "`before` must be the `next` of a previous page (a task id), not `{before}`"
        )));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = TaskFilter {
        tenant: Some(tenant.to_owned()),
        job: q.job.map(|j| j.to_ascii_lowercase()),
        state: q.state,
        from_task: None,
        queued_after: q.queued_after,
        queued_before: q.queued_before,
        limit: Some(limit),
        before_id: q.before,
    };
    let tasks = state.node.queue.list(filter).await?;
    let next = if tasks.len() == limit as usize { tasks.last().map(|t| t.id.clone()) } else { None };
    Ok(Json(TaskPage { tasks: tasks.into_iter().map(Task::from).collect(), next }))
}

/// `GET /v1/tasks/{id}/wait?timeout=30s`: answers when the task ends, or
/// at the timeout with the task as it is then (long poll).
#[utoipa::path(get, path = "/tasks/{id}/wait", operation_id = "waitForTask", tag = "tasks",
    params(("id" = String, Path, description = "The task's id."), WaitQuery),
    responses((status = 200, description = "The task, ended or as it is at the timeout.", body = Task)))]
pub async fn wait(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): TaskPath,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<Task>, ApiError> {
    let tenant = caller.reader()?;
    let Query(q) = query?;
    let timeout = match q.timeout.as_deref() {
        Some(t) => humantime::parse_duration(t).map_err(|e| ApiError::bad_request(format!("timeout `{t}`: {e}")))?,
        None => Duration::from_secs(30),
    };
    own_task(&state, tenant, &id).await?;
    let task = state.node.queue.wait(&id, timeout.min(MAX_WAIT)).await?;
    task.map(|t| Json(t.into())).ok_or_else(|| ApiError::not_found(format!("task {id}")))
}

/// `POST /v1/tasks/{id}/retry`: a failed or revoked task back in line for
/// one more attempt (409 `conflict` for a task in another state or a
/// workflow's step, 409 `duplicate` if its overlap key is taken).
#[utoipa::path(post, path = "/tasks/{id}/retry", operation_id = "retryTask", tag = "tasks",
    params(("id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "Queued again.", body = TaskStateChange),
        (status = 409, description = "`conflict`: the task has not failed nor been revoked, or is a workflow's \
            step; `duplicate`: its overlap key is taken.", body = crate::wire::ErrorBody),
    ))]
pub async fn retry(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): TaskPath,
) -> Result<Json<TaskStateChange>, ApiError> {
    let tenant = caller.writer()?;
    // A step's workflow has revoked the stages after it, and a step's
    // args hold what the stage before passed it: it is not run alone.
    if let Some(workflow) = own_task(&state, tenant, &id).await?.workflow {
        let message = format!("task {id} is a step of workflow {workflow}: start the workflow again instead");
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", message));
    }
    match state.node.queue.retry(tenant, &id).await? {
        Retried::Queued => Ok(Json(TaskStateChange { id, state: "queued".into() })),
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
#[utoipa::path(post, path = "/tasks/{id}/revoke", operation_id = "revokeTask", tag = "tasks",
    params(("id" = String, Path, description = "The task's id.")),
    responses((status = 200, description = "The state the task is in now: `revoked`, the state it ended in \
        before the revocation, or `revoking` while its node stops it.", body = TaskStateChange)))]
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): TaskPath,
) -> Result<Json<TaskStateChange>, ApiError> {
    let tenant = caller.writer()?;
    own_task(&state, tenant, &id).await?;
    // A running task is stopped by its node; this answers with the state it
    // ends in, or `revoking` if it has not stopped within `REVOKE_WAIT`.
    let now = match state.node.queue.revoke(&id).await? {
        Some(Revoked::Ended(s)) => s.as_str(),
        Some(Revoked::Revoking) => "revoking",
        None => return Err(ApiError::not_found(format!("task {id}"))),
    };
    Ok(Json(TaskStateChange { id, state: now.into() }))
}

/// `POST /v1/tasks/{id}/revoke-tree`: revokes the task and every task in its
/// tree (queued from it, from them...) that has not ended, in one call.
#[utoipa::path(post, path = "/tasks/{id}/revoke-tree", operation_id = "revokeTaskTree", tag = "tasks",
    params(("id" = String, Path, description = "A task of the tree.")),
    responses((status = 200, description = "How many tasks of the tree were revoked.", body = TreeRevoked)))]
pub async fn revoke_tree(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): TaskPath,
) -> Result<Json<TreeRevoked>, ApiError> {
    let tenant = caller.writer()?;
    let task = own_task(&state, tenant, &id).await?;
    let root = task.root_task.unwrap_or(task.id);
    let scope = RevokeScope::Tree { tenant: tenant.to_owned(), root: root.clone() };
    let done = state.node.queue.revoke_many(scope).await?;
    Ok(Json(TreeRevoked { root, revoked: done.revoked.len(), stopping: done.stopping.len() }))
}

/// `GET /v1/tasks/{id}/logs`: the task's log, as text.
#[utoipa::path(get, path = "/tasks/{id}/logs", operation_id = "getTaskLog", tag = "tasks",
    params(("id" = String, Path, description = "The task's id.")),
    responses((status = 200, description = "What the task's last attempt printed.", body = String,
        content_type = "text/plain")))]
pub async fn logs(State(state): State<ApiState>, caller: Caller, Path(id): TaskPath) -> Result<String, ApiError> {
    let tenant = caller.reader()?;
    Ok(own_task(&state, tenant, &id).await?.log.unwrap_or_default())
}
