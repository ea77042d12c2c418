//! Schedules made as data (`/v1/schedules`, `wasmjob::plan`): a cron
//! expression or an interval that queues a job with given args, run by the
//! store-backed scheduler. Driven by hand with a manual clock on both
//! stores, through the API for bad input, and once on the real clock.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use wasmjob::clock::{Clock as _, ManualClock};
use wasmjob::plan::{PAUSED, Plan, When};
use wasmjob::scheduler::TickResult;
use wasmjob::store::{ScheduleClaim, ScheduleRow, ScheduleTick, TaskFilter, TickWrite};
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::api_support::Api;
use crate::support::{Backend, open_node};

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0).unwrap()
}

/// A named schedule of `job` with `args`, made at `now`, due at its first time.
fn row(name: &str, job: &str, args: serde_json::Value, when: When, now: i64) -> ScheduleRow {
    let next_due_at = when.next_after(now, now).unwrap();
    let plan = serde_json::to_string(&Plan { args: args.to_string(), when, queue: None }).unwrap();
    ScheduleRow {
        tenant: T.into(),
        job: job.into(),
        name: name.into(),
        plan: Some(plan),
        last_run_at: None,
        since: now,
        next_due_at,
    }
}

fn cron(expression: &str, zone: &str) -> When {
    When::new(Some(expression), Some(zone), None, 0).unwrap()
}

async fn tick(node: &wasmjob::node::Node) -> Vec<(String, TickResult)> {
    node.scheduler().tick().await
}

async fn tasks_of(node: &wasmjob::node::Node, job: &str) -> Vec<wasmjob::store::TaskRecord> {
    node.store.list_tasks(TaskFilter { job: Some(job.into()), ..Default::default() }).await.unwrap()
}

async fn a_cron_schedule_queues_its_job_with_its_args_once_per_time_in_its_zone(backend: Backend) {
    let dir = crate::support::place(backend).await;
    // 03:30 in Berlin, every day; made on March 27th at noon UTC.
    let clock = Arc::new(ManualClock::new(at(27, 12, 0)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let when = cron("30 3 * * *", "Europe/Berlin");
    let made = row("early", "addition", json!({ "a": 40, "b": 2 }), when, clock.now_millis());
    assert!(node.store.put_plan(made, 10).await.unwrap());
    assert_eq!(tick(&node).await, [], "asked before its time");

    clock.set(at(28, 2, 30)); // 03:30 CET
    let ticked = tick(&node).await;
    let [(name, TickResult::Queued(first))] = &ticked[..] else { panic!("not queued: {ticked:?}") };
    assert_eq!(name, "early");
    let task = node.store.task(first).await.unwrap().unwrap();
    assert_eq!((task.job.as_str(), task.args.as_str()), ("addition", r#"{"a":40,"b":2}"#));
    assert_eq!(tick(&node).await, [], "the same time ran twice");

    // A restart remembers; the next time is 03:30 CEST, an hour earlier in UTC.
    drop(node);
    let node = open_node(&dir, clock.clone(), &[]).await;
    let stored = node.store.plans(T, Some("early")).await.unwrap().remove(0);
    assert_eq!(stored.next_due_at, at(29, 1, 30).timestamp_millis());
    assert_eq!(stored.last_run_at, Some(at(28, 2, 30).timestamp_millis()));
    clock.set(at(29, 1, 29));
    assert_eq!(tick(&node).await, []);

    // Down for three days: the missed times run once when back.
    clock.set(at(31, 9, 0));
    assert!(matches!(&tick(&node).await[..], [(_, TickResult::Queued(_))]));
    assert_eq!(tick(&node).await, []);
    assert_eq!(tasks_of(&node, "addition").await.len(), 2);
}

async fn an_interval_counts_from_the_schedules_creation(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 0, 0)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let every = When::new(None, None, Some(60_000), 0).unwrap();
    assert!(node.store.put_plan(row("minutely", "addition", json!({}), every, clock.now_millis()), 10).await.unwrap());
    clock.set(at(1, 0, 1) + chrono::Duration::milliseconds(300));
    assert!(matches!(&tick(&node).await[..], [(_, TickResult::Queued(_))]));
    // Due again on the minute it counts from, not a minute after a late tick.
    let stored = node.store.plans(T, Some("minutely")).await.unwrap().remove(0);
    assert_eq!(stored.next_due_at, at(1, 0, 2).timestamp_millis());
}

async fn a_paused_schedule_queues_nothing_until_resumed(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 0, 0)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let when = cron("0 * * * *", "UTC");
    assert!(
        node.store.put_plan(row("hourly", "addition", json!({}), when.clone(), clock.now_millis()), 10).await.unwrap()
    );
    assert!(node.store.set_plan_due(T, "hourly", PAUSED).await.unwrap());
    clock.set(at(2, 0, 0));
    assert_eq!(tick(&node).await, []);
    assert!(tasks_of(&node, "addition").await.is_empty());
    // Resumed: from its next time after now, what it missed stays missed.
    let next = when.next_after(clock.now_millis(), 0).unwrap();
    assert!(node.store.set_plan_due(T, "hourly", next).await.unwrap());
    assert_eq!(tick(&node).await, []);
    clock.set(at(2, 1, 0));
    assert!(matches!(&tick(&node).await[..], [(_, TickResult::Queued(_))]));
    assert!(!node.store.set_plan_due(T, "nonesuch", PAUSED).await.unwrap());
}

async fn a_tick_decided_while_its_schedule_is_paused_or_deleted_queues_nothing(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 0, 0)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let when = cron("* * * * *", "UTC");
    assert!(node.store.put_plan(row("a", "addition", json!({}), when.clone(), clock.now_millis()), 10).await.unwrap());
    assert!(node.store.put_plan(row("b", "addition", json!({}), when, clock.now_millis()), 10).await.unwrap());
    clock.set(at(1, 0, 1));
    let now = clock.now_millis();
    let claim = ScheduleClaim { claim: "n:1".into(), now, limit: 10, lease_until: now + 10_000 };
    let claimed = node.store.claim_schedules(claim).await.unwrap().due;
    assert_eq!(claimed.len(), 2);
    // While a scheduler decides, one is paused and the other deleted through another node.
    assert!(node.store.set_plan_due(T, "a", PAUSED).await.unwrap());
    assert!(node.store.delete_plan(T, "b").await.unwrap());
    let ticks = claimed.iter().map(|s| ScheduleTick {
        tenant: s.tenant.clone(),
        job: s.job.clone(),
        name: s.name.clone(),
        claim: "n:1".into(),
        expected_last: s.last_run_at,
        ran_at: Some(now),
        next_due_at: now + 60_000,
        task: None,
    });
    assert_eq!(node.store.write_ticks(ticks.collect()).await.unwrap(), [TickWrite::Lost, TickWrite::Lost]);
    let left = node.store.plans(T, None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].next_due_at, PAUSED, "the lost tick resumed it");
}

async fn names_are_a_tenants_own_and_a_tenant_holds_a_bounded_number(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 0, 0)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let now = clock.now_millis();
    let when = cron("0 3 * * *", "UTC");
    for name in ["a", "b"] {
        assert!(node.store.put_plan(row(name, "addition", json!({}), when.clone(), now), 2).await.unwrap());
    }
    assert!(!node.store.put_plan(row("c", "addition", json!({}), when.clone(), now), 2).await.unwrap());
    // Replacing one is not one more, even for another job.
    let mut replaced = row("b", "other", json!({ "x": 1 }), When::new(None, None, Some(5_000), 0).unwrap(), now);
    assert!(node.store.put_plan(replaced.clone(), 2).await.unwrap());
    let names: Vec<(String, String)> =
        node.store.plans(T, None).await.unwrap().into_iter().map(|r| (r.name, r.job)).collect();
    assert_eq!(names, [("a".into(), "addition".into()), ("b".into(), "other".into())]);
    // Another tenant's schedule of the same name is its own.
    replaced.tenant = "other-tenant".into();
    assert!(node.store.put_plan(replaced, 2).await.unwrap());
    assert_eq!(node.store.plans(T, None).await.unwrap().len(), 2);
    assert_eq!(node.store.plans("other-tenant", None).await.unwrap().len(), 1);
    assert!(node.store.delete_plan("other-tenant", "b").await.unwrap());
    assert!(!node.store.delete_plan("other-tenant", "b").await.unwrap());
    assert_eq!(node.store.plans(T, Some("b")).await.unwrap().len(), 1, "deleted another tenant's");
}

async fn a_jobs_schedules_go_with_it_and_outlive_a_regular_reupload(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 0, 0)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::ADDITION, wasmjob::examples::NIGHTLY_REPORT]).await;
    let now = clock.now_millis();
    let when = cron("0 3 * * *", "UTC");
    assert!(node.store.put_plan(row("sum", "addition", json!({}), when.clone(), now), 10).await.unwrap());
    assert!(node.store.put_plan(row("report", "nightlyreport", json!({}), when, now), 10).await.unwrap());
    // The periodic job's own schedule and the named one of the same job are apart.
    assert!(node.store.schedule(T, "nightlyreport").await.unwrap().is_some_and(|s| s.name.is_empty()));
    // A new upload of a regular job keeps the schedules that queue it.
    let bytes = std::fs::read(wasmjob::examples::ADDITION).unwrap();
    node.registry.register(T, &bytes, usize::MAX).await.unwrap();
    assert_eq!(node.store.plans(T, None).await.unwrap().len(), 2);
    assert!(node.registry.delete(T, "nightlyreport").await.unwrap());
    let left: Vec<String> = node.store.plans(T, None).await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(left, ["sum"]);
    assert_eq!(node.store.schedule(T, "nightlyreport").await.unwrap(), None);
}

async fn a_schedule_of_a_job_forbidding_overlap_skips_a_time_while_its_task_is_live(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(at(1, 0, 0)));
    let node = open_node(&dir, clock.clone(), &[wasmjob::examples::EXCLUSIVE]).await;
    // One task per account at a time.
    let (job, _) = node.registry.regular(T).into_iter().next().unwrap();
    let when = cron("0 * * * *", "UTC");
    let args = json!({ "account": "acme" });
    assert!(node.store.put_plan(row("x", &job, args, when, clock.now_millis()), 10).await.unwrap());
    clock.set(at(1, 1, 0));
    let [(_, TickResult::Queued(first))] = &tick(&node).await[..] else { panic!("not queued") };
    let first = first.clone();
    clock.set(at(1, 2, 0));
    assert_eq!(tick(&node).await, [("x".to_string(), TickResult::SkippedOverlap(first))]);
}

crate::conformance!(
    a_cron_schedule_queues_its_job_with_its_args_once_per_time_in_its_zone,
    an_interval_counts_from_the_schedules_creation,
    a_paused_schedule_queues_nothing_until_resumed,
    a_tick_decided_while_its_schedule_is_paused_or_deleted_queues_nothing,
    names_are_a_tenants_own_and_a_tenant_holds_a_bounded_number,
    a_jobs_schedules_go_with_it_and_outlive_a_regular_reupload,
    a_schedule_of_a_job_forbidding_overlap_skips_a_time_while_its_task_is_live,
);

/// Bad schedules answer 422 (or 400, 404) naming the problem, and store
/// nothing.
#[tokio::test]
async fn bad_schedules_are_refused_naming_the_problem() {
    let api = Api::start(1).await;
    let (write, read) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    let put = |name: &str, body: serde_json::Value| {
        let path = format!("/v1/schedules/{name}");
        let write = write.clone();
        let api = &api;
        async move { api.send(Method::PUT, &path, Some(&write), Some(body)).await }
    };
    let cases = [
        (json!({ "job": "addition", "cron": "61 * * * *" }), 422, "invalid cron expression `61 * * * *`"),
        (json!({ "job": "addition", "cron": "0 3 * * *", "zone": "Mars/Olympus" }), 422, "unknown time zone"),
        (json!({ "job": "addition", "every_ms": 1 }), 422, "outside 1000 ms"),
        (json!({ "job": "addition", "every_ms": u64::MAX }), 422, "outside 1000 ms"),
        (json!({ "job": "addition", "cron": "* * * * *", "every_ms": 60000 }), 422, "not both"),
        (json!({ "job": "addition" }), 422, "give a cron expression or an interval"),
        (json!({ "job": "addition", "cron": "0 0 30 2 *" }), 422, "never matches"),
        (json!({ "job": "addition", "cron": "1,".repeat(100_000) }), 422, "at most 256 bytes"),
        (json!({ "job": "addition", "cron": "* * * * *", "args": [1] }), 422, "args must be a JSON object"),
        (json!({ "job": "nonesuch", "cron": "* * * * *" }), 404, "job `nonesuch` not found"),
        (json!({ "job": "addition", "cron": "* * * * *", "when": 1 }), 400, "unknown field `when`"),
        (json!({ "job": "addition", "cron": "* * * * *", "queue": "a b" }), 422, "is not a queue's name"),
        (json!({ "job": "addition", "cron": "* * * * *", "queue": "q".repeat(100_000) }), 422, "is not a queue's name"),
    ];
    for (body, status, message) in cases {
        let answer = put("bad", body.clone()).await;
        assert_eq!(answer.status.as_u16(), status, "{body}: {answer}");
        assert!(answer.body["error"]["message"].as_str().unwrap().contains(message), "{body}: {answer}");
    }
    let bad_name = put("a%20b", json!({ "job": "addition", "cron": "* * * * *" })).await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST, "{bad_name}");
    assert_eq!(api.get("/v1/schedules", &read).await.body["schedules"], json!([]), "a refused schedule was stored");
    // A reader cannot make one; another tenant does not see one.
    let made = put("ok", json!({ "job": "addition", "cron": "* * * * *" })).await;
    assert_eq!(made.status, StatusCode::OK, "{made}");
    let by_reader = api.send(Method::PUT, "/v1/schedules/x", Some(&read), Some(json!({ "job": "addition" }))).await;
    assert_eq!(by_reader.status, StatusCode::FORBIDDEN);
    let (other, _) = api.tenant("other", json!({})).await;
    assert_eq!(api.get("/v1/schedules/ok", &other).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.post("/v1/schedules/ok/pause", &other, json!({})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/v1/schedules", &other).await.body["schedules"], json!([]));
}

/// The real loop on the real clock: a cron expression with seconds that
/// fires every second queues about one task a second, through the API.
#[tokio::test]
async fn a_cron_schedule_firing_every_second_runs_every_second_on_the_real_clock() {
    let api = Api::start(2).await;
    let (write, _) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    let body = json!({ "job": "addition", "args": { "a": 1, "b": 1 }, "cron": "* * * * * *", "queue": "ticks" });
    let made = api.send(Method::PUT, "/v1/schedules/tick", Some(&write), Some(body)).await;
    assert_eq!((made.status, made.body["queue"].as_str()), (StatusCode::OK, Some("ticks")), "{made}");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let paused = api.post("/v1/schedules/tick/pause", &write, json!({})).await;
    assert_eq!(paused.status, StatusCode::OK);
    let filter = TaskFilter { tenant: Some("acme".into()), job: Some("addition".into()), ..Default::default() };
    let tasks = api.node.store.list_tasks(filter.clone()).await.unwrap();
    // Generous: 4.5 s of a schedule due every second.
    assert!((2..=6).contains(&tasks.len()), "{} tasks in 4.5 s", tasks.len());
    let mut times: Vec<i64> = tasks.iter().map(|t| t.queued_at).collect();
    times.sort();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 500), "two ticks of one second less than 0.5 s apart: {times:?}");
    assert!(tasks.iter().all(|t| t.args == r#"{"a":1,"b":1}"# && t.queue == "ticks"));
    // Paused: no more.
    let paused_at = api.node.clock.now_millis();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = api.node.store.list_tasks(filter).await.unwrap();
    assert!(later.iter().all(|t| t.queued_at <= paused_at), "queued while paused");
}

/// A cluster: a schedule made through node A (which runs no scheduler) is
/// run at once by node B's scheduler, idle until then, which hears of it
/// from the store (NOTIFY), not at the end of its longest sleep.
#[tokio::test]
async fn a_schedule_made_through_one_node_is_run_by_another_at_once() {
    let place = crate::support::place(Backend::Postgres).await;
    let clock: Arc<dyn wasmjob::clock::Clock> = Arc::new(wasmjob::clock::SystemClock);
    let a = open_node(&place, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let b = Arc::new(open_node(&place, clock.clone(), &[]).await);
    let (stop, serving) = crate::support::serve(&b);
    // B's scheduler has nothing to do: it sleeps its longest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let when = When::new(Some("* * * * * *"), None, None, 0).unwrap();
    assert!(
        a.store
            .put_plan(row("often", "addition", json!({ "a": 2, "b": 2 }), when, clock.now_millis()), 10)
            .await
            .unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ran =
            tasks_of(&b, "addition").await.iter().filter(|t| t.state == wasmjob::store::TaskState::Success).count();
        if ran >= 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node B ran {ran} tasks of a schedule made through node A");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stop);
    serving.await.unwrap();
}
