//! `/v1/secrets`: a tenant's secrets, write-only. Values go in and are
//! never served: the list has names and times only.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::DateTime;

use super::{ApiError, ApiState, Caller};
use crate::secret::{MAX_SECRETS, SecretError, validate_secret_name, validate_value};
use crate::wire::{Secret, SecretList, SecretValue};

/// `PUT /v1/secrets/{name}`: sets a secret (creates or replaces it).
#[utoipa::path(put, path = "/secrets/{name}", operation_id = "putSecret", tag = "secrets", request_body = SecretValue,
    params(("name" = String, Path, description = "Letters, digits, `-`, `_` and `.`; at most 128 bytes.",
        pattern = r"^[A-Za-z0-9._-]+$", max_length = 128)),
    responses((status = 204, description = "Set.")))]
pub async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<SecretValue>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.writer()?;
    validate_secret_name(&name).map_err(refused)?;
    // The extractor's message may quote the body, which holds the value:
    // answer one that cannot.
    let Json(SecretValue { value }) = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::from(rejection),
        _ => ApiError::bad_request(r#"the body must be {"value": "<the secret>"}"#),
    })?;
    validate_value(&value).map_err(refused)?;
    let now = state.node.clock.now_millis();
    if !state.node.store.put_secret(tenant, &name, &value, now, MAX_SECRETS).await? {
        return Err(refused(SecretError::TooMany));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/secrets`: the names of the caller's secrets, never a value.
#[utoipa::path(get, path = "/secrets", operation_id = "listSecrets", tag = "secrets",
    responses((status = 200, description = "The names of the tenant's secrets.", body = SecretList)))]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<SecretList>, ApiError> {
    let tenant = caller.reader()?;
    let names = state.node.store.secret_names(tenant).await?;
    let secrets =
        names.into_iter().map(|(name, at)| Secret { name, updated_at: DateTime::from_timestamp_millis(at) }).collect();
    Ok(Json(SecretList { secrets }))
}

/// `DELETE /v1/secrets/{name}`.
#[utoipa::path(delete, path = "/secrets/{name}", operation_id = "deleteSecret", tag = "secrets",
    params(("name" = String, Path, description = "The secret's name.")),
    responses((status = 204, description = "Deleted.")))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.writer()?;
    validate_secret_name(&name).map_err(refused)?;
    if !state.node.store.delete_secret(tenant, &name).await? {
        return Err(ApiError::not_found(format!("secret `{name}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn refused(e: SecretError) -> ApiError {
    match e {
        SecretError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string())
        }
        SecretError::TooMany => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", e.to_string()).quota("secrets")
        }
        SecretError::InvalidName(_) | SecretError::NulByte | SecretError::TooManyDeclared => {
            ApiError::bad_request(e.to_string())
        }
    }
}
