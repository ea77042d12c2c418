//! Who is calling: the bearer token, checked on every request.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, ApiState};
use crate::auth::{Principal, Scope};

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let principal = state
            .node
            .auth
            .authenticate(token.trim())
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or revoked token"))?;
        Ok(Caller(principal))
    }
}

impl Caller {
    /// The caller's tenant, for reading.
    pub fn reader(&self) -> Result<&str, ApiError> {
        self.0.tenant.as_deref().ok_or_else(|| ApiError::forbidden("an admin token cannot act on a tenant's jobs"))
    }

    /// The caller's tenant, for changing things.
    pub fn writer(&self) -> Result<&str, ApiError> {
        let tenant = self.reader()?;
        if self.0.scope == Scope::Read {
            return Err(ApiError::forbidden("this token is read-only"));
        }
        Ok(tenant)
    }

    /// Checks that the caller is the admin.
    pub fn admin(&self) -> Result<(), ApiError> {
        match self.0.scope {
            Scope::Admin => Ok(()),
            _ => Err(ApiError::forbidden("this needs an admin token")),
        }
    }
}
