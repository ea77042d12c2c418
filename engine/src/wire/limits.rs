//! `/v1/limits`: the limits a tenant sets on its queues and jobs
//! ([`crate::limits`], whose bodies these are).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::limits::{JobLimits, QueueLimits, Rate};

/// A queue's limits, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueLimitsOf {
    pub queue: String,
    pub limits: QueueLimits,
}

/// A job's limits, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLimitsOf {
    pub job: String,
    pub limits: JobLimits,
}

/// The answer of `GET /v1/limits`: every queue and job of the tenant with
/// limits, each by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitList {
    pub queues: Vec<QueueLimitsOf>,
    pub jobs: Vec<JobLimitsOf>,
}
