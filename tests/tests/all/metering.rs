//! Host work is metered: a job that makes the host work (random bytes,
//! output) for little guest work pays for it in fuel, and runs out of it
//! instead of holding a core until its deadline.

use std::sync::Arc;
use std::time::Duration;

use wasmjob::runtime::{Outcome, RecordingQueue, TaskInput, TaskLimits};

use crate::support::{RUNTIME, assert_engine_still_works, load};

/// Runs `host-hog` with `what`, with 1e9 fuel and a minute of wall time:
/// paid in guest work alone, that fuel would last past the deadline.
async fn hog(what: &str) -> Outcome {
    let job = load(wasmjob::examples::HOST_HOG).await;
    let input = TaskInput {
        task_id: "t1".into(),
        attempt: 1,
        args: format!(r#"{{"what": "{what}"}}"#),
        limits: TaskLimits { fuel: 1_000_000_000, timeout: Duration::from_secs(60), memory_bytes: 64 << 20 },
        children: Arc::new(RecordingQueue::default()),
        progress: Arc::new(wasmjob::runtime::NoProgress),
        egress: wasmjob::egress::Grant::default(),
        secrets: Default::default(),
    };
    RUNTIME.run(&job, input).await.outcome
}

#[tokio::test]
async fn random_bytes_cost_fuel() {
    let outcome = hog("random").await;
    assert!(matches!(outcome, Outcome::FuelExhausted { .. }), "{outcome:?}");
    assert_engine_still_works().await;
}

#[tokio::test]
async fn output_costs_fuel_even_past_the_log_limit() {
    let outcome = hog("stdout").await;
    assert!(matches!(outcome, Outcome::FuelExhausted { .. }), "{outcome:?}");
    assert_engine_still_works().await;
}
