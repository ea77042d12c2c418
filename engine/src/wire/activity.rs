//! `/v1/activity`: what the cluster did per minute, job and tenant, the
//! figures of the console's charts ([`crate::activity`]).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Query of `GET /v1/activity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// The window: this many minutes up to now, 1 to 1,440 (the day
    /// kept); default 60.
    #[param(minimum = 1, maximum = 1440)]
    pub minutes: Option<u32>,
    /// For an admin token: only this tenant (default every tenant). A
    /// tenant's token always sees its own.
    pub tenant: Option<String>,
}

/// Counts over a minute or the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActivityCounts {
    /// Attempts started.
    pub started: u64,
    /// Attempts that ended in success, in failure, in a retry, revoked.
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    pub revoked: u64,
    /// Fuel the ended attempts used.
    pub fuel: u64,
    /// Wall time of the ended attempts, in µs.
    pub wall_time_us: u64,
}

/// One minute of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MinuteActivity {
    /// The minute's start (ms since the epoch).
    pub at: i64,
    #[serde(flatten)]
    pub counts: ActivityCounts,
    /// How long the attempts started in this minute waited once due: the
    /// median and the 99th percentile, each as the upper bound of its
    /// histogram bucket (1, 2, 5, 10, 20, 50 ... 3,600,000 ms); none when
    /// nothing started.
    pub wait_p50_ms: Option<u64>,
    pub wait_p99_ms: Option<u64>,
}

/// One job over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobActivity {
    pub tenant: String,
    pub job: String,
    #[serde(flatten)]
    pub counts: ActivityCounts,
}

/// One tenant over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantActivity {
    pub tenant: String,
    #[serde(flatten)]
    pub counts: ActivityCounts,
}

/// The answer of `GET /v1/activity`, every node's counts added up. A node
/// writes its counts at each heartbeat (every few seconds), so the last
/// seconds may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    /// The first minute's start (ms since the epoch).
    pub since: i64,
    /// The length of a minute in ms (60,000).
    pub minute_ms: i64,
    /// Every minute of the window, oldest first, idle ones too.
    pub minutes: Vec<MinuteActivity>,
    /// Jobs active in the window, most failures first.
    pub jobs: Vec<JobActivity>,
    /// Tenants active in the window, most fuel first.
    pub tenants: Vec<TenantActivity>,
}
