//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller};

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The engine can reach its store.
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    match state.node.store.waiting_by_tenant().await {
        Ok(_) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "reason": e.to_string() }))),
    }
}

/// Prometheus metrics, per tenant. They name every tenant's jobs, so they
/// need the admin token.
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

/// The OpenAPI document of `/v1`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
