//! The HTTP API, served by `wasmjob serve`: JSON under `/v1`, bearer tokens,
//! one namespace per tenant.
//!
//! - [`router`] builds the whole API over an [`ApiState`]; tests call it
//!   with `oneshot`, no socket needed.
//! - Bodies are the types of [`crate::wire`]. Every route is registered
//!   with its handler's `#[utoipa::path]` annotation ([`routes`]), so the
//!   OpenAPI document ([`document`], served at `/v1/openapi.json`) lists
//!   exactly the routes the router serves.
//! - Every handler takes the [`Caller`] and acts only inside the caller's
//!   tenant: another tenant's objects answer 404, as if they did not exist.
//! - Errors are [`ApiError`]s: `{"error": {"code", "message"}}` under the
//!   status that fits (400, 401, 403, 404, 405, 409, 413, 422, 429, 5xx).

mod activity;
mod admin;
mod caller;
mod error;
mod events;
mod health;
mod jobs;
mod limits;
mod openapi;
mod schedules;
mod secrets;
mod tasks;
mod workflows;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::caller::Caller;
pub use self::error::ApiError;
pub use self::jobs::MAX_UPLOAD_WAIT;
pub use self::tasks::{MAX_BATCH, MAX_WAIT};
use crate::node::Node;

/// What the handlers share: the node they serve.
#[derive(Clone)]
pub struct ApiState {
    pub node: Arc<Node>,
}

/// Every documented route, each with its handler's OpenAPI operation.
fn routes() -> OpenApiRouter<ApiState> {
    // Uploads read their body themselves, within the tenant's quota and the
    // engine's cap, a few at a time (`jobs::MAX_UPLOADS_READ`); other
    // bodies are small.
    let v1 = OpenApiRouter::new()
        .routes(routes!(jobs::upload, jobs::list))
        .routes(routes!(jobs::show, jobs::delete))
        .routes(routes!(jobs::revoke))
        .routes(routes!(jobs::upload_status))
        .routes(routes!(tasks::queue, tasks::list))
        .routes(routes!(tasks::queue_batch))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::wait))
        .routes(routes!(tasks::revoke))
        .routes(routes!(tasks::revoke_tree))
        .routes(routes!(tasks::logs))
        .routes(routes!(tasks::tree))
        .routes(routes!(tasks::retry))
        .routes(routes!(admin::create_tenant, admin::list_tenants))
        .routes(routes!(admin::update_tenant))
        .routes(routes!(admin::create_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::put, schedules::show, schedules::delete))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(secrets::list))
        .routes(routes!(secrets::put, secrets::delete))
        .routes(routes!(limits::list))
        .routes(routes!(limits::put_queue, limits::delete_queue))
        .routes(routes!(limits::put_job, limits::delete_job))
        .routes(routes!(workflows::start))
        .routes(routes!(workflows::get))
        .routes(routes!(events::stream))
        .routes(routes!(activity::activity))
        .routes(routes!(health::openapi));
    OpenApiRouter::with_openapi(openapi::base())
        .nest("/v1", v1)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document of every route [`router`] serves.
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().split_for_parts().1)
}

/// Every route of the API.
pub fn router(state: ApiState) -> Router {
    let (router, document) = routes().split_for_parts();
    let document = openapi::Document(Arc::new(openapi::finish(document)));
    router
        .merge(crate::console::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::not_found("route") })
        .layer(Extension(document))
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
