//! What happens after a task ends: success, a retry (when and why), or a
//! failure.
//!
//! Policy, per the job's `retry-policy` and the task's `max_retries`:
//! - `success` ends the task.
//! - A retryable job error is retried while attempts remain.
//! - A trap (a panic, a stack overflow...) is retried only if the job set
//!   `retry-on-trap`; a missed deadline only with `retry-on-timeout`.
//! - Fatal job errors, fuel exhaustion, the memory limit and bad output fail
//!   at once: the same code with the same args would do the same again.
//!
//! - A task whose worker is lost under it (its lease runs out: the node
//!   died or hung) is retried like a trap would be, unless that happened
//!   [`POISON_AFTER`] times: then it is quarantined (`failure`, reason
//!   `poisoned`), so that a task that kills its worker does not go on to
//!   kill one worker per retry.
//!
//! Retry `n` (1-based) waits `min(initial_backoff * 2^(n-1), max_backoff)`
//! plus random jitter of up to half that, so that tasks failing together do
//! not retry together.

use std::time::Duration;

use crate::job::RetryPolicy;
use crate::runtime::Outcome;
use crate::store::TaskState;

/// Workers lost under one task (leases run out) after which it is
/// quarantined instead of retried. Default 3 (`wasmjob serve
/// --poison-after`).
pub const POISON_AFTER: u32 = 3;

/// The state a finished attempt leads to, and when a retry is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub state: TaskState,
    pub retry_in: Option<Duration>,
}

/// Decides what follows attempt `attempt` (1-based) ending in `outcome`.
pub fn decide(policy: &RetryPolicy, max_retries: u32, attempt: u32, outcome: &Outcome, jitter: f64) -> Decision {
    let worth_retrying = match outcome {
        Outcome::Success { .. } => return Decision { state: TaskState::Success, retry_in: None },
        Outcome::RetryableError { .. } => true,
        Outcome::Trap { .. } => policy.retry_on_trap,
        Outcome::DeadlineExceeded { .. } => policy.retry_on_timeout,
        Outcome::FatalError { .. }
        | Outcome::FuelExhausted { .. }
        | Outcome::MemoryLimit { .. }
        | Outcome::OutputTooLarge { .. }
        | Outcome::InvalidOutput { .. } => false,
    };
    if worth_retrying && attempt <= max_retries {
        Decision { state: TaskState::Retry, retry_in: Some(backoff(policy, attempt, jitter)) }
    } else {
        Decision { state: TaskState::Failure, retry_in: None }
    }
}

/// The delay before retry `retry` (1-based); `jitter` in `[0, 1)` adds up to
/// half the delay.
pub fn backoff(policy: &RetryPolicy, retry: u32, jitter: f64) -> Duration {
    let exponential = policy.initial_backoff.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
    let delay = exponential.min(policy.max_backoff);
    delay + delay.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// A cheap jitter in `[0, 1)`; not for cryptography.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            retry_on_trap: true,
            retry_on_timeout: false,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_adds_at_most_half() {
        let p = policy();
        assert_eq!(backoff(&p, 1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 3, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(&p, 4, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 40, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 2, 0.999_999), Duration::from_secs(2) + Duration::from_secs(1).mul_f64(0.999_999));
    }

    #[test]
    fn retryable_errors_retry_while_attempts_remain() {
        let p = policy();
        let e = Outcome::RetryableError { message: "busy".into() };
        assert_eq!(decide(&p, 3, 1, &e, 0.0).state, TaskState::Retry);
        assert_eq!(decide(&p, 3, 3, &e, 0.0).state, TaskState::Retry);
        assert_eq!(decide(&p, 3, 4, &e, 0.0).state, TaskState::Failure);
    }

    #[test]
    fn fatal_outcomes_fail_at_once_and_traps_and_timeouts_follow_the_policy() {
        let p = policy();
        for fatal in [
            Outcome::FatalError { message: "no".into() },
            Outcome::FuelExhausted { fuel: 1 },
            Outcome::MemoryLimit { memory_bytes: 1 },
            Outcome::OutputTooLarge { bytes: 2, limit: 1 },
        ] {
            assert_eq!(decide(&p, 3, 1, &fatal, 0.0).state, TaskState::Failure, "{fatal:?}");
        }
        assert_eq!(decide(&p, 3, 1, &Outcome::Trap { message: "x".into() }, 0.0).state, TaskState::Retry);
        assert_eq!(decide(&p, 3, 1, &Outcome::DeadlineExceeded { timeout_ms: 1 }, 0.0).state, TaskState::Failure);
        assert_eq!(decide(&p, 3, 1, &Outcome::Success { result: "1".into() }, 0.0).state, TaskState::Success);
    }

    #[test]
    fn jitter_is_in_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
