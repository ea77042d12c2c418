//! `/v1/tenants` and `/v1/tokens`: the admin's side.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::tenant::{QuotaOverrides, Quotas};

/// The body of `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Letters, digits, `-` and `_`; at most 64 bytes.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$", example = "acme")]
    pub name: String,
    /// Overrides of the default quotas.
    #[serde(default)]
    #[schema(value_type = QuotaChanges)]
    pub quotas: QuotaOverrides,
}

/// The body of `PATCH /v1/tenants/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    /// Quotas to set; `null` puts one back to the default.
    #[schema(value_type = QuotaChanges)]
    pub quotas: QuotaOverrides,
}

/// Quotas to set, each optional; `null` is the default. The fields and
/// bounds of [`Quotas`] (a test checks that the two list the same fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "max_running": 4, "allowed_hosts": ["api.example.com"] }))]
pub struct QuotaChanges {
    #[schema(minimum = 1)]
    pub max_fuel: Option<u64>,
    #[schema(minimum = 1)]
    pub max_timeout_ms: Option<u64>,
    #[schema(minimum = 65536)]
    pub max_memory_bytes: Option<u64>,
    #[schema(minimum = 1)]
    pub max_running: Option<u64>,
    #[schema(minimum = 1)]
    pub max_queued: Option<u64>,
    #[schema(minimum = 1)]
    pub max_component_bytes: Option<u64>,
    #[schema(minimum = 1)]
    pub max_components: Option<u64>,
    #[schema(exclusive_minimum = 0)]
    pub queue_rate: Option<f64>,
    #[schema(minimum = 1)]
    pub queue_burst: Option<f64>,
    #[schema(exclusive_minimum = 0)]
    pub children_rate: Option<f64>,
    #[schema(minimum = 1)]
    pub children_burst: Option<f64>,
    /// `[scheme://]host[:port]` rules, at most 256.
    #[schema(max_items = 256)]
    pub allowed_hosts: Option<Vec<String>>,
    pub max_http_requests: Option<u64>,
    #[schema(minimum = 1)]
    pub max_http_in_flight: Option<u32>,
    pub max_http_sent_bytes: Option<u64>,
    pub max_http_received_bytes: Option<u64>,
    #[schema(minimum = 1)]
    pub http_connect_timeout_ms: Option<u64>,
    #[schema(minimum = 1)]
    pub http_first_byte_timeout_ms: Option<u64>,
    #[schema(minimum = 60000)]
    pub retention_ms: Option<u64>,
}

/// A tenant and its quotas in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub name: String,
    pub quotas: Quotas,
}

/// The answer of `GET /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// What a tenant's token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// Read the tenant's jobs and tasks.
    Read,
    /// Also upload, queue, revoke, and set secrets.
    Write,
}

/// The body of `POST /v1/tenants/{name}/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub scope: TokenScope,
}

/// A token made: its secret is in this answer only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: String,
    /// `Authorization: Bearer <token>`.
    pub token: String,
    pub tenant: String,
}
