//! `/v1/tenants` and `/v1/tokens`: the admin's endpoints.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller};
use crate::auth::Scope;
use crate::tenant::{QuotaOverrides, TenantError};

/// The body of `POST /v1/tenants`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
    /// Overrides of the default quotas.
    #[serde(default)]
    quotas: QuotaOverrides,
}

/// `POST /v1/tenants`.
pub async fn create_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin()?;
    let Json(request) = body?;
    let quotas = state.node.tenants.create(&request.name, request.quotas).await.map_err(tenant_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "name": request.name, "quotas": quotas }))))
}

/// The body of `PATCH /v1/tenants/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    /// Quotas to set; `null` puts one back to the default.
    quotas: QuotaOverrides,
}

/// `PATCH /v1/tenants/{name}`: changes some quotas (the egress allow-list
/// `allowed_hosts` among them).
pub async fn update_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<TenantChange>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let Json(change) = body?;
    let quotas = state.node.tenants.update(&name, change.quotas).await.map_err(tenant_error)?;
    Ok(Json(json!({ "name": name, "quotas": quotas })))
}

fn tenant_error(e: TenantError) -> ApiError {
    match e {
        TenantError::Exists(_) | TenantError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        TenantError::InvalidName(_) | TenantError::InvalidQuotas(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_tenant", e.to_string())
        }
        TenantError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        TenantError::Store(e) => e.into(),
    }
}

/// `GET /v1/tenants`.
pub async fn list_tenants(State(state): State<ApiState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let tenants: Vec<Value> =
        state.node.tenants.list().into_iter().map(|(name, quotas)| json!({ "name": name, "quotas": quotas })).collect();
    Ok(Json(json!({ "tenants": tenants })))
}

/// The body of `POST /v1/tenants/{name}/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// `read` or `write`.
    scope: String,
}

/// `POST /v1/tenants/{name}/tokens`: the token's secret is in this answer
/// only.
pub async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: Result<Json<NewTokenRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin()?;
    let Json(request) = body?;
    let scope = match Scope::parse(&request.scope) {
        Some(scope @ (Scope::Read | Scope::Write)) => scope,
        _ => return Err(ApiError::bad_request("scope must be `read` or `write`")),
    };
    if state.node.tenants.get(&tenant).await?.is_none() {
        return Err(ApiError::not_found(format!("tenant `{tenant}`")));
    }
    let token = state.node.auth.create(Some(&tenant), scope).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": token.id, "token": token.token, "tenant": tenant }))))
}

/// `DELETE /v1/tokens/{id}`: effective at once.
pub async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.admin()?;
    if id == caller.0.token_id {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", "a token cannot revoke itself"));
    }
    if state.node.auth.revoke(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("token {id}")))
    }
}
