//! The HTTP API, served by `wasmjob serve`: JSON under `/v1`, bearer tokens,
//! one namespace per tenant.
//!
//! - [`router`] builds the whole API over an [`ApiState`]; tests call it
//!   with `oneshot`, no socket needed.
//! - Every handler takes the [`Caller`] and acts only inside the caller's
//!   tenant: another tenant's objects answer 404, as if they did not exist.
//! - Errors are [`ApiError`]s: `{"error": {"code", "message"}}` under the
//!   status that fits (400, 401, 403, 404, 409, 413, 422, 429).

mod admin;
mod caller;
mod error;
mod health;
mod jobs;
mod secrets;
mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};

pub use self::caller::Caller;
pub use self::error::ApiError;
pub use self::tasks::MAX_BATCH;
use crate::node::Node;

/// What the handlers share: the node they serve.
#[derive(Clone)]
pub struct ApiState {
    pub node: Arc<Node>,
}

/// Every route of the API.
pub fn router(state: ApiState) -> Router {
    // Uploads read their body themselves, within the tenant's quota and the
    // engine's cap, a few at a time (`jobs::MAX_UPLOADS_READ`); other
    // bodies are small.
    let v1 = Router::new()
        .route("/jobs", post(jobs::upload).get(jobs::list))
        .route("/jobs/{name}", get(jobs::show).delete(jobs::delete))
        .route("/jobs/{name}/revoke", post(jobs::revoke))
        .route("/uploads/{id}", get(jobs::upload_status))
        .route("/tasks", post(tasks::queue).get(tasks::list))
        .route("/tasks/batch", post(tasks::queue_batch))
        .route("/tasks/{id}", get(tasks::get))
        .route("/tasks/{id}/wait", get(tasks::wait))
        .route("/tasks/{id}/revoke", post(tasks::revoke))
        .route("/tasks/{id}/revoke-tree", post(tasks::revoke_tree))
        .route("/tasks/{id}/logs", get(tasks::logs))
        .route("/tasks/{id}/tree", get(tasks::tree))
        .route("/tasks/{id}/retry", post(tasks::retry))
        .route("/tenants", post(admin::create_tenant).get(admin::list_tenants))
        .route("/tenants/{name}", patch(admin::update_tenant))
        .route("/tenants/{name}/tokens", post(admin::create_token))
        .route("/tokens/{id}", delete(admin::revoke_token))
        .route("/secrets", get(secrets::list))
        .route("/secrets/{name}", put(secrets::put).delete(secrets::delete))
        .route("/openapi.json", get(health::openapi))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::not_found("route") });
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(2 << 20))
        // A span per request (method and path): what its handler logs
        // carries it.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO)),
        )
        // No input may panic a handler; if one does, the client still gets
        // an answer, and the connection stays usable.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The answer to a known path asked with a method it does not take.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let message = format!("{} does not take {method}", uri.path());
    ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
}

/// The answer to a request whose handler panicked.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    axum::response::IntoResponse::into_response(ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the engine failed to answer this request",
    ))
}
