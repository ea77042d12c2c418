//! The periodic scheduler, driven by hand with a manual clock: due ticks
//! queue one task, `last_run_at` survives a restart, and a job that forbids
//! overlap never has two live runs.

use crate::support::Backend;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use wasmjob::clock::ManualClock;
use wasmjob::scheduler::TickResult;

use crate::support::open_node;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

async fn tick(node: &wasmjob::node::Node) -> TickResult {
    let (mut results, _) = node.scheduler().tick().await;
    assert_eq!(results.len(), 1);
    results.remove(0).1
}

async fn a_periodic_job_runs_once_per_due_time_across_restarts(backend: Backend) {
    let dir = crate::support::place(backend).await;
    // nightly-report: daily at 03:00 UTC, no overlap. Registered at 10:00.
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    assert_eq!(tick(&node).await, TickResult::NotDue(std::time::Duration::from_secs(17 * 3600)));

    clock.set(at(2, 3));
    let TickResult::Queued(first) = tick(&node).await else { panic!("not queued at 03:00") };
    assert!(matches!(tick(&node).await, TickResult::NotDue(_)), "the same tick ran twice");

    // Restart: a new node on the same store remembers the tick.
    drop(node);
    let node = open_node(&dir, clock.clone(), &[]).await;
    assert!(matches!(tick(&node).await, TickResult::NotDue(_)), "a restart repeated the tick");

    // Run the first task to its end, by hand.
    let now = clock.now_millis();
    let claimed = crate::support::claim(&node.store, "n", 1, now, now + 60_000).await.unwrap().tasks.remove(0);
    assert_eq!(claimed.id, first);
    node.store.complete(vec![crate::support::success(&first, &claimed.lease, now, "null")]).await.unwrap();

    // Down through day 3's 03:00: the missed tick runs once when back, not skipped.
    drop(node);
    clock.set(at(3, 9));
    let node = open_node(&dir, clock.clone(), &[]).await;
    assert!(matches!(tick(&node).await, TickResult::Queued(_)));
    assert!(matches!(tick(&node).await, TickResult::NotDue(_)));
}

async fn a_non_overlapping_periodic_job_skips_a_tick_while_its_last_run_is_live(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    clock.set(at(2, 3));
    let TickResult::Queued(first) = tick(&node).await else { panic!("not queued") };
    clock.set(at(3, 3));
    assert_eq!(tick(&node).await, TickResult::SkippedOverlap(first));
    let live = node.store.list_tasks(Default::default()).await.unwrap();
    assert_eq!(live.len(), 1);
}

use wasmjob::clock::Clock as _;

async fn two_schedulers_on_one_store_never_both_run_a_tick(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let a = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    let b = open_node(&dir, clock.clone(), &[]).await;
    clock.set(at(2, 3));
    let (sa, sb) = (a.scheduler(), b.scheduler());
    let ((ra, _), (rb, _)) = tokio::join!(sa.tick(), sb.tick());
    let queued = [&ra[0].1, &rb[0].1].iter().filter(|r| matches!(r, TickResult::Queued(_))).count();
    assert_eq!(queued, 1, "{ra:?} {rb:?}");
    assert_eq!(a.store.list_tasks(Default::default()).await.unwrap().len(), 1);
}

crate::conformance!(
    a_periodic_job_runs_once_per_due_time_across_restarts,
    a_non_overlapping_periodic_job_skips_a_tick_while_its_last_run_is_live,
    two_schedulers_on_one_store_never_both_run_a_tick,
);
