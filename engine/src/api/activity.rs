//! `/v1/activity`: per minute, job and tenant, what the cluster's workers
//! did ([`crate::activity`]); a tenant sees its own, the admin every
//! tenant's.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

use super::{ApiError, ApiState, Caller};
use crate::activity::{MAX_MINUTES, since, summarize};
use crate::wire::{Activity, ActivityQuery};

/// The window when none is asked: the last hour. Default 60 minutes.
pub const DEFAULT_MINUTES: u32 = 60;

/// `GET /v1/activity`.
#[utoipa::path(get, path = "/activity", operation_id = "getActivity", tag = "activity", params(ActivityQuery),
    responses((status = 200, description = "Every minute of the window, and its jobs and tenants.", body = Activity)))]
pub async fn activity(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<ActivityQuery>, QueryRejection>,
) -> Result<Json<Activity>, ApiError> {
    let Query(q) = query?;
    let minutes = q.minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::bad_request(format!("`minutes` must be 1 to {MAX_MINUTES}, not {minutes}")));
    }
    let tenant = match caller.0.tenant.as_deref() {
        Some(own) => match q.tenant.as_deref() {
            Some(other) if other != own => {
                return Err(ApiError::forbidden("a tenant's token sees its own tenant's activity only"));
            }
            _ => Some(own.to_owned()),
        },
        None => {
            caller.admin()?;
            q.tenant
        }
    };
    let now = state.node.clock.now_millis();
    let rows = state.node.store.activity(tenant.as_deref(), since(now, minutes)).await?;
    Ok(Json(summarize(&rows, now, minutes)))
}
