//! The periodic scheduler, driven by hand with a manual clock: due ticks
//! queue one task, `last_run_at` survives a restart, a job that forbids
//! overlap never has two live runs, only due schedules are asked, and a
//! deleted job's schedule is never revived. Then the real loop, on the
//! real clock.

use crate::support::Backend;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use wasmjob::clock::ManualClock;
use wasmjob::scheduler::TickResult;

use crate::support::open_node;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

/// One tick of every due schedule: what it did, per job asked.
async fn tick(node: &wasmjob::node::Node) -> Vec<TickResult> {
    node.scheduler().tick().await.into_iter().map(|(_, result)| result).collect()
}

async fn a_periodic_job_runs_once_per_due_time_across_restarts(backend: Backend) {
    let dir = crate::support::place(backend).await;
    // nightly-report: daily at 03:00 UTC, no overlap. Registered at 10:00.
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    assert_eq!(tick(&node).await, [TickResult::NotDue(std::time::Duration::from_secs(17 * 3600))]);
    // Not due again before 03:00: not even asked.
    clock.set(at(2, 2));
    assert_eq!(tick(&node).await, []);

    clock.set(at(2, 3));
    let [TickResult::Queued(first)] = &tick(&node).await[..] else { panic!("not queued at 03:00") };
    let first = first.clone();
    assert_eq!(tick(&node).await, [], "the same tick ran twice");

    // Restart: a new node on the same store remembers the tick.
    drop(node);
    let node = open_node(&dir, clock.clone(), &[]).await;
    assert_eq!(tick(&node).await, [], "a restart repeated the tick");

    // Run the first task to its end, by hand.
    let now = clock.now_millis();
    let claimed = crate::support::claim(&node.store, "n", 1, now, now + 60_000).await.unwrap().tasks.remove(0);
    assert_eq!(claimed.id, first);
    node.store.complete(vec![crate::support::success(&first, &claimed.lease, now, "null")]).await.unwrap();

    // Down through day 3's 03:00: the missed tick runs once when back, not skipped.
    drop(node);
    clock.set(at(3, 9));
    let node = open_node(&dir, clock.clone(), &[]).await;
    assert!(matches!(&tick(&node).await[..], [TickResult::Queued(_)]));
    assert_eq!(tick(&node).await, []);
}

async fn a_non_overlapping_periodic_job_skips_a_tick_while_its_last_run_is_live(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    clock.set(at(2, 3));
    let [TickResult::Queued(first)] = &tick(&node).await[..] else { panic!("not queued") };
    clock.set(at(3, 3));
    assert_eq!(tick(&node).await, [TickResult::SkippedOverlap(first.clone())]);
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
    let (ra, rb) = tokio::join!(sa.tick(), sb.tick());
    let queued = ra.iter().chain(&rb).filter(|(_, r)| matches!(r, TickResult::Queued(_))).count();
    assert_eq!(queued, 1, "{ra:?} {rb:?}");
    assert_eq!(a.store.list_tasks(Default::default()).await.unwrap().len(), 1);
}

async fn a_deleted_periodic_job_is_never_asked_again(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    assert_eq!(tick(&node).await.len(), 1);
    assert!(node.registry.delete(wasmjob::tenant::DEFAULT_TENANT, "nightlyreport").await.unwrap());
    clock.set(at(5, 3));
    assert_eq!(tick(&node).await, []);
    assert!(node.store.list_tasks(Default::default()).await.unwrap().is_empty());
}

async fn a_tick_claimed_before_its_job_was_deleted_does_not_revive_it(backend: Backend) {
    use wasmjob::store::{ScheduleClaim, ScheduleTick, TickWrite};
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    let now = clock.now_millis();
    let claim = ScheduleClaim { claim: "a:1".into(), now, limit: 10, lease_until: now + 10_000 };
    let claimed = node.store.claim_schedules(claim).await.unwrap();
    assert_eq!(claimed.due.len(), 1);
    // While that scheduler asks `is-due`, the job is deleted through another node.
    node.store.delete_job(wasmjob::tenant::DEFAULT_TENANT, "nightlyreport").await.unwrap();
    let schedule = &claimed.due[0];
    let tick = ScheduleTick {
        tenant: schedule.tenant.clone(),
        job: schedule.job.clone(),
        name: schedule.name.clone(),
        claim: "a:1".into(),
        expected_last: schedule.last_run_at,
        ran_at: Some(now),
        next_due_at: now + 1000,
        task: None,
    };
    assert_eq!(node.store.write_ticks(vec![tick]).await.unwrap(), [TickWrite::Lost]);
    assert_eq!(node.store.schedule(wasmjob::tenant::DEFAULT_TENANT, "nightlyreport").await.unwrap(), None);
}

async fn a_schedule_held_by_a_dead_scheduler_is_taken_over_after_its_claim_lease(backend: Backend) {
    use wasmjob::store::ScheduleClaim;
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 10)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    let now = clock.now_millis();
    // A scheduler claims the schedule and dies before writing its tick.
    let claim = ScheduleClaim { claim: "dead:1".into(), now, limit: 10, lease_until: now + 10_000 };
    assert_eq!(node.store.claim_schedules(claim).await.unwrap().due.len(), 1);
    assert_eq!(tick(&node).await, [], "a held schedule was claimed twice");
    clock.advance(std::time::Duration::from_secs(11));
    assert_eq!(tick(&node).await.len(), 1, "the schedule was not taken over");
}

/// The real loop on the real clock: a job due every second is queued about
/// once a second (not once a minute), and a job deleted while the node
/// serves is not queued again.
async fn a_job_due_every_second_runs_every_second_on_the_real_clock(backend: Backend) {
    let place = crate::support::place(backend).await;
    let node = Arc::new(open_node(&place, Arc::new(wasmjob::clock::SystemClock), &[]).await);
    let (stop, serving) = crate::support::serve(&node);
    // Registered while the node serves: the scheduler hears of it at once.
    let bytes = std::fs::read(wasmjob::examples::EVERY_SECOND).unwrap();
    node.registry.register(wasmjob::tenant::DEFAULT_TENANT, &bytes, usize::MAX).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let filter = wasmjob::store::TaskFilter { job: Some("every-second".into()), ..Default::default() };
    let queued = node.store.list_tasks(filter.clone()).await.unwrap();
    assert!(queued.len() >= 3, "only {} tasks in 5 s of a job due every second", queued.len());
    let mut times: Vec<i64> = queued.iter().map(|t| t.queued_at).collect();
    times.sort();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 900), "two ticks less than a second apart: {times:?}");

    node.registry.delete(wasmjob::tenant::DEFAULT_TENANT, "every-second").await.unwrap();
    let deleted = node.clock.now_millis();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let late: Vec<i64> =
        node.store.list_tasks(filter).await.unwrap().iter().map(|t| t.queued_at).filter(|&at| at > deleted).collect();
    assert!(late.is_empty(), "queued after its job was deleted: {late:?}");
    drop(stop);
    serving.await.unwrap();
}

/// Three tenants whose `is-due` takes as long as the engine allows do not
/// slow a fourth tenant's job due every second.
#[tokio::test]
async fn a_slow_is_due_delays_no_other_tenants_schedule() {
    let place = crate::support::place(Backend::Sqlite).await;
    let node = Arc::new(open_node(&place, Arc::new(wasmjob::clock::SystemClock), &[]).await);
    let (stop, serving) = crate::support::serve(&node);
    let slow = std::fs::read(wasmjob::examples::SLOW_IS_DUE).unwrap();
    for tenant in ["slow-a", "slow-b", "slow-c"] {
        node.tenants.create(tenant, Default::default()).await.unwrap();
        node.registry.register(tenant, &slow, 10).await.unwrap();
    }
    let bytes = std::fs::read(wasmjob::examples::EVERY_SECOND).unwrap();
    node.registry.register(wasmjob::tenant::DEFAULT_TENANT, &bytes, usize::MAX).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let filter = wasmjob::store::TaskFilter { job: Some("every-second".into()), ..Default::default() };
    let queued = node.store.list_tasks(filter).await.unwrap().len();
    assert!(queued >= 3, "only {queued} ticks in 5 s of a job due every second");
    // Each tenant is charged the time its own `is-due` took.
    let metrics = node.metrics.render(&[], &[]);
    let charged = |tenant: &str| -> f64 {
        let prefix = format!("wasmjob_is_due_seconds_total{{tenant=\"{tenant}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    assert!(charged("slow-a") >= 1.0, "{metrics}");
    assert!(charged("default") < charged("slow-a"), "{metrics}");
    drop(stop);
    serving.await.unwrap();
}

crate::conformance!(
    a_periodic_job_runs_once_per_due_time_across_restarts,
    a_non_overlapping_periodic_job_skips_a_tick_while_its_last_run_is_live,
    two_schedulers_on_one_store_never_both_run_a_tick,
    a_deleted_periodic_job_is_never_asked_again,
    a_tick_claimed_before_its_job_was_deleted_does_not_revive_it,
    a_schedule_held_by_a_dead_scheduler_is_taken_over_after_its_claim_lease,
    a_job_due_every_second_runs_every_second_on_the_real_clock,
);
