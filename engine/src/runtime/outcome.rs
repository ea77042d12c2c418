//! How a task ended. The outcome tells apart what the job reported (success,
//! a retryable or fatal error) from what the engine stopped (fuel, deadline,
//! memory, a trap, an oversized or malformed result).

use std::time::Duration;

use serde::Serialize;
use wasmtime::Trap;

/// The end of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// The job returned a result: a JSON document.
    Success { result: String },
    /// The job reported a failure worth retrying.
    RetryableError { message: String },
    /// The job reported a failure retrying cannot fix.
    FatalError { message: String },
    /// The task used up its fuel budget.
    FuelExhausted { fuel: u64 },
    /// The task ran past its wall-clock deadline.
    DeadlineExceeded { timeout_ms: u64 },
    /// The task tried to grow its memory beyond its cap.
    MemoryLimit { memory_bytes: u64 },
    /// The job crashed: a panic, an out-of-bounds access, a stack overflow...
    Trap { message: String },
    /// The job returned more than the engine keeps.
    OutputTooLarge { bytes: usize, limit: usize },
    /// The job returned something that is not JSON.
    InvalidOutput { message: String },
}

impl Outcome {
    /// A short, stable name of the outcome's class (`success`, `fuel-exhausted`...).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Success { .. } => "success",
            Self::RetryableError { .. } => "retryable-error",
            Self::FatalError { .. } => "fatal-error",
            Self::FuelExhausted { .. } => "fuel-exhausted",
            Self::DeadlineExceeded { .. } => "deadline-exceeded",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::Trap { .. } => "trap",
            Self::OutputTooLarge { .. } => "output-too-large",
            Self::InvalidOutput { .. } => "invalid-output",
        }
    }

    /// Whether the task succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success { .. })
    }

    /// A one-line description for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Success { .. } => "success".into(),
            Self::RetryableError { message } => format!("retryable error: {message}"),
            Self::FatalError { message } => format!("fatal error: {message}"),
            Self::FuelExhausted { fuel } => format!("ran out of fuel (budget {fuel})"),
            Self::DeadlineExceeded { timeout_ms } => format!("ran past its deadline of {timeout_ms} ms"),
            Self::MemoryLimit { memory_bytes } => format!("hit its memory limit of {memory_bytes} bytes"),
            Self::Trap { message } => format!("trapped: {message}"),
            Self::OutputTooLarge { bytes, limit } => {
                format!("returned {bytes} bytes; results are limited to {limit} bytes")
            }
            Self::InvalidOutput { message } => format!("returned invalid JSON: {message}"),
        }
    }
}

/// What a task reports besides its outcome: the resources it used and its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskReport {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Fuel consumed, for metering and billing.
    pub fuel_consumed: u64,
    /// Wall time from the start of instantiation to the end of the call.
    #[serde(serialize_with = "micros")]
    pub wall_time: Duration,
    /// Requests made and body bytes sent and received.
    pub http: crate::egress::HttpUsage,
    /// What the job logged, bounded.
    pub log: String,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What stopped a sandboxed call, as far as the store can tell.
pub(crate) struct StopCause {
    pub fuel: u64,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub memory_refused: bool,
}

/// Turns an error out of a sandboxed call into an outcome.
pub(crate) fn classify(error: &wasmtime::Error, cause: &StopCause) -> Outcome {
    let timeout_ms = u64::try_from(cause.timeout.as_millis()).unwrap_or(u64::MAX);
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Outcome::FuelExhausted { fuel: cause.fuel },
        Some(Trap::Interrupt) => Outcome::DeadlineExceeded { timeout_ms },
        // An allocator that cannot grow memory usually aborts: report the cause.
        _ if cause.memory_refused => Outcome::MemoryLimit { memory_bytes: cause.memory_bytes },
        Some(Trap::StackOverflow) => Outcome::Trap { message: "call stack exhausted (stack overflow)".into() },
        Some(trap) => Outcome::Trap { message: trap.to_string() },
        None => Outcome::Trap { message: format!("{error:#}") },
    }
}
