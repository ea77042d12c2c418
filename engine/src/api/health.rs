//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};

use super::openapi::Document;
use super::{ApiError, ApiState, Caller};
use crate::wire::{Health, Readiness};

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "health", security(()),
    responses((status = 200, description = "The process is up.", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// The engine can reach its store.
#[utoipa::path(get, path = "/readyz", operation_id = "readiness", tag = "health", security(()),
    responses(
        (status = 200, description = "The node can reach its store.", body = Readiness),
        (status = 503, description = "It cannot: the reason.", body = Readiness),
    ))]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    match state.node.store.waiting_by_tenant().await {
        Ok(_) => (StatusCode::OK, Json(Readiness { status: "ready".into(), reason: None })),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness { status: "unavailable".into(), reason: Some(e.to_string()) }),
        ),
    }
}

/// Prometheus metrics: this node's counters, and the cluster's tasks by
/// tenant, job and state, read from the store. They name every tenant's
/// jobs, so they need the admin token.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    responses((status = 200, description = "Prometheus' text format, version 0.0.4.", body = String,
        content_type = "text/plain")))]
pub async fn metrics(State(state): State<ApiState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.admin()?;
    let waiting = state.node.store.waiting_by_tenant().await?;
    let states: Vec<(String, String, &str, u64)> = state
        .node
        .store
        .count_by_state()
        .await?
        .into_iter()
        .map(|(tenant, job, s, n)| (tenant, job, s.as_str(), n))
        .collect();
    let body = state.node.metrics.render(&waiting, &states);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

/// This document: every route of the API, its bodies and their bounds.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)))]
pub async fn openapi(Extension(document): Extension<Document>) -> impl IntoResponse {
    let body = serde_json::to_vec(document.0.as_ref()).expect("the document serializes");
    ([(header::CONTENT_TYPE, "application/json")], body)
}
