//! `/v1/tenants` and `/v1/tokens`: the admin's endpoints.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState, Caller};
use crate::auth::Scope;
use crate::tenant::TenantError;
use crate::wire::{NewTenant, NewToken, Tenant, TenantChange, TenantList, Token, TokenScope};

/// `POST /v1/tenants`.
#[utoipa::path(post, path = "/tenants", operation_id = "createTenant", tag = "admin", request_body = NewTenant,
    responses((status = 201, description = "Created, with its quotas in effect.", body = Tenant)))]
pub async fn create_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    caller.admin()?;
    let Json(request) = body?;
    let quotas = state.node.tenants.create(&request.name, request.quotas).await.map_err(tenant_error)?;
    Ok((StatusCode::CREATED, Json(Tenant { name: request.name, quotas })))
}

/// `PATCH /v1/tenants/{name}`: changes some quotas (the egress allow-list
/// `allowed_hosts` among them).
#[utoipa::path(patch, path = "/tenants/{name}", operation_id = "updateTenant", tag = "admin",
    request_body = TenantChange, params(("name" = String, Path, description = "The tenant's name.")),
    responses((status = 200, description = "Changed, with its quotas in effect.", body = Tenant)))]
pub async fn update_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<TenantChange>, JsonRejection>,
) -> Result<Json<Tenant>, ApiError> {
    caller.admin()?;
    let Json(change) = body?;
    let quotas = state.node.tenants.update(&name, change.quotas).await.map_err(tenant_error)?;
    Ok(Json(Tenant { name, quotas }))
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
#[utoipa::path(get, path = "/tenants", operation_id = "listTenants", tag = "admin",
    responses((status = 200, description = "Every tenant, with its quotas in effect.", body = TenantList)))]
pub async fn list_tenants(State(state): State<ApiState>, caller: Caller) -> Result<Json<TenantList>, ApiError> {
    caller.admin()?;
    let tenants = state.node.tenants.list().into_iter().map(|(name, quotas)| Tenant { name, quotas }).collect();
    Ok(Json(TenantList { tenants }))
}

/// `POST /v1/tenants/{name}/tokens`: the token's secret is in this answer
/// only.
#[utoipa::path(post, path = "/tenants/{name}/tokens", operation_id = "createToken", tag = "admin",
    request_body = NewToken, params(("name" = String, Path, description = "The tenant's name.")),
    responses((status = 201, description = "The token: its secret is shown this once.", body = Token)))]
pub async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(tenant): Path<String>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<Token>), ApiError> {
    caller.admin()?;
    let Json(request) = body?;
    let scope = match request.scope {
        TokenScope::Read => Scope::Read,
        TokenScope::Write => Scope::Write,
    };
    if state.node.tenants.get(&tenant).await?.is_none() {
        return Err(ApiError::not_found(format!("tenant `{tenant}`")));
    }
    let token = state.node.auth.create(Some(&tenant), scope).await?;
    Ok((StatusCode::CREATED, Json(Token { id: token.id, token: token.token, tenant })))
}

/// `DELETE /v1/tokens/{id}`: effective at once.
#[utoipa::path(delete, path = "/tokens/{id}", operation_id = "revokeToken", tag = "admin",
    params(("id" = String, Path, description = "The token's id.")),
    responses((status = 204, description = "Revoked.")))]
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
