//! `/v1/schedules`: schedules made as data, which queue a job with given
//! args on a cron expression or an interval ([`crate::plan`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::plan::{PAUSED, Plan, When};
use crate::store::ScheduleRow;

/// The body of `PUT /v1/schedules/{name}`: creates the schedule, or
/// replaces it (its times counted afresh from now). Exactly one of `cron`
/// and `every_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The job each tick queues.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._-]+$", example = "nightly-report")]
    pub job: String,
    /// The args of every task it queues: a JSON object. Default `{}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub args: Value,
    /// A cron expression: five fields (minute, hour, day of month, month,
    /// day of week) or six (seconds first); `L`, `W`, `#` and names allowed.
    #[schema(max_length = 256, example = "0 3 * * MON-FRI")]
    pub cron: Option<String>,
    /// The IANA time zone `cron` is read in. Default `UTC`.
    #[schema(max_length = 256, example = "Europe/Paris")]
    pub zone: Option<String>,
    /// An interval instead of `cron`: a task every this many milliseconds,
    /// from the schedule's creation; 1,000 ms (`plan::MIN_EVERY`) to 366
    /// days (`plan::MAX_EVERY`).
    #[schema(minimum = 1000, maximum = 31_622_400_000_u64)]
    pub every_ms: Option<u64>,
    /// Made paused: it queues nothing until resumed. Default false.
    #[serde(default)]
    pub paused: bool,
    /// The named queue its tasks go to. Default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._-]+$", example = "reports")]
    pub queue: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    pub job: String,
    #[schema(value_type = Object)]
    pub args: Value,
    pub cron: Option<String>,
    pub zone: Option<String>,
    pub every_ms: Option<u64>,
    pub paused: bool,
    /// The named queue its tasks go to.
    pub queue: String,
    /// When it queues its next task (none while paused).
    pub next_run_at: Option<DateTime<Utc>>,
    /// When it last queued a task.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When it was made or last replaced: an interval counts from here.
    pub since: Option<DateTime<Utc>>,
}

impl Schedule {
    /// The wire form of a named schedule's row; `None` for a row without
    /// a readable plan.
    pub fn from_row(row: ScheduleRow) -> Option<Self> {
        let plan: Plan = serde_json::from_str(row.plan.as_deref()?).ok()?;
        let (cron, zone, every_ms) = match plan.when {
            When::Cron { expression, zone } => (Some(expression), Some(zone), None),
            When::Every { every_ms } => (None, None, Some(every_ms)),
        };
        let paused = row.next_due_at == PAUSED;
        Some(Self {
            name: row.name,
            job: row.job,
            args: serde_json::from_str(&plan.args).unwrap_or(Value::Null),
            cron,
            zone,
            every_ms,
            paused,
            queue: plan.queue.unwrap_or_else(|| crate::task::DEFAULT_QUEUE.to_owned()),
            next_run_at: if paused { None } else { DateTime::from_timestamp_millis(row.next_due_at) },
            last_run_at: row.last_run_at.and_then(DateTime::from_timestamp_millis),
            since: DateTime::from_timestamp_millis(row.since),
        })
    }
}

/// The answer of `GET /v1/schedules`: the tenant's schedules, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}
