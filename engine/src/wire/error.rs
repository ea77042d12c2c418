//! The body of every error answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": {...}}`: what every refused request answers, whatever its
/// status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code for programs, a message for people, and
/// for some codes the object concerned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `duplicate`, `unknown_job`,
    /// `invalid_args`, `invalid_option`, `invalid_component`,
    /// `invalid_tenant`, `quota_exceeded`, `payload_too_large`,
    /// `request_timeout`, `busy`, `shutting_down`, `internal`.
    #[schema(example = "unknown_job")]
    pub code: String,
    #[schema(example = "job `addition` not found")]
    pub message: String,
    /// `duplicate`: the task the new one would have overlapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_task: Option<String>,
    /// `invalid_option`: which option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `quota_exceeded`, for some quotas: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}
