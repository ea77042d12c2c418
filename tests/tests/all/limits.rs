//! Limits a tenant sets on its queues and jobs (`/v1/limits`): a job's
//! `max_concurrency` and rate, a queue's `max_running` and priority, held
//! by every claim on both stores, by hand with a manual clock, through
//! serving nodes on the real clock, and across two PostgreSQL nodes.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;
use wasmjob::clock::{Clock as _, ManualClock, SystemClock};
use wasmjob::limits::{JobLimits, QueueLimits, Rate};
use wasmjob::store::{Claim, ClaimRequest, Store, TaskFilter, TaskRecord, TaskState};
use wasmjob::task::QueueOptions;
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::api_support::Api;
use crate::support::{Backend, finished};

fn to(queue: &str) -> QueueOptions {
    QueueOptions { queue: Some(queue.into()), ..Default::default() }
}

async fn claim(store: &Arc<dyn Store>, now: i64, limit: usize) -> Claim {
    let request = ClaimRequest {
        node: "n".into(),
        limit,
        now,
        lease_until: now + 600_000,
        max_running: [(T.to_owned(), usize::MAX)].into(),
        queues: None,
    };
    store.claim(request).await.unwrap()
}

fn count(claim: &Claim, job: &str) -> usize {
    claim.tasks.iter().filter(|t| t.job == job).count()
}

async fn a_jobs_max_concurrency_holds_its_tasks_and_no_other_jobs(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION, wasmjob::examples::TALLY])
        .await;
    let store = &t.node.store;
    let now = clock.now_millis();
    let limits = JobLimits { max_concurrency: Some(2), rate: None };
    assert!(store.put_job_limits(T, "addition", &limits, now, 10).await.unwrap());
    for _ in 0..5 {
        t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    }
    for _ in 0..3 {
        t.node.queue.queue(T, "tally", "{}", &QueueOptions::default(), None).await.unwrap();
    }
    let first = claim(store, now, 10).await;
    assert_eq!((count(&first, "addition"), count(&first, "tally")), (2, 3));
    assert!(claim(store, now, 10).await.tasks.is_empty(), "two already run");
    // One ends: one more may start, and no more.
    let ended = first.tasks.iter().find(|t| t.job == "addition").unwrap();
    store.complete(vec![crate::support::success(&ended.id, &ended.lease, now, "1")]).await.unwrap();
    assert_eq!(count(&claim(store, now, 10).await, "addition"), 1);
    assert!(claim(store, now, 10).await.tasks.is_empty());
    // Without its limit, the rest.
    assert!(store.delete_limits(T, true, "addition").await.unwrap());
    assert!(!store.delete_limits(T, true, "addition").await.unwrap());
    assert_eq!(count(&claim(store, now, 10).await, "addition"), 2);
}

async fn a_jobs_rate_starts_a_burst_then_one_per_interval(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let start = clock.now_millis();
    let limits = JobLimits { max_concurrency: None, rate: Some(Rate { tasks: 3, per_ms: 1_000 }) };
    assert!(store.put_job_limits(T, "addition", &limits, start, 10).await.unwrap());
    for _ in 0..12 {
        t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    }
    // A full bucket: a burst of 3, and the claim says when the next token
    // comes (a third of a second), the rest of its tasks being due.
    let burst = claim(store, start, 10).await;
    assert_eq!((burst.tasks.len(), burst.wake_at), (3, Some(start + 334)));
    let held = claim(store, start, 10).await;
    assert_eq!((held.tasks.len(), held.wake_at), (0, Some(start + 334)));
    assert!(claim(store, start + 333, 10).await.tasks.is_empty());
    assert_eq!(claim(store, start + 334, 10).await.tasks.len(), 1);
    // A long quiet fills the bucket to its burst, no more.
    let quiet = start + 100_000;
    assert_eq!(claim(store, quiet, 1).await.tasks.len(), 1);
    // A claim on a clock behind the bucket's (another node's) adds none to
    // the 2 tokens left.
    assert_eq!(claim(store, start, 10).await.tasks.len(), 2);
    assert!(claim(store, quiet, 10).await.tasks.is_empty());
    // Set again: the bucket starts full.
    assert!(store.put_job_limits(T, "addition", &limits, quiet, 10).await.unwrap());
    assert_eq!(claim(store, quiet, 10).await.tasks.len(), 3);
    // The last two due, and one not due for an hour: no wake for that one.
    t.node.queue.queue(T, "addition", "{}", &delayed(3_600_000), None).await.unwrap();
    let last = claim(store, quiet + 10_000, 10).await;
    assert_eq!((last.tasks.len(), last.wake_at), (2, None));
}

fn delayed(ms: u64) -> QueueOptions {
    QueueOptions { delay: Some(Duration::from_millis(ms)), ..Default::default() }
}

async fn a_queue_of_higher_priority_goes_first_within_its_max_running(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let now = clock.now_millis();
    // Queued first, so first without priorities.
    let mut low = Vec::new();
    for _ in 0..3 {
        low.push(t.node.queue.queue(T, "addition", "{}", &to("low"), None).await.unwrap());
    }
    let mut high = Vec::new();
    for _ in 0..3 {
        high.push(t.node.queue.queue(T, "addition", "{}", &to("high"), None).await.unwrap());
    }
    assert!(store.put_queue_limits(T, "high", &QueueLimits { max_running: Some(2), priority: 5 }, 10).await.unwrap());
    let ids = |claim: Claim| claim.tasks.into_iter().map(|t| t.id).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(ids(claim(store, now, 2).await), high[..2].iter().cloned().collect());
    // `high` has no room left: `low`, though of lower priority, goes on.
    assert_eq!(ids(claim(store, now, 2).await), low[..2].iter().cloned().collect());
    // A paused queue starts nothing; the other goes on.
    assert!(store.put_queue_limits(T, "high", &QueueLimits { max_running: Some(0), priority: 5 }, 10).await.unwrap());
    assert_eq!(ids(claim(store, now, 10).await), [low[2].clone()].into());
    assert!(claim(store, now, 10).await.tasks.is_empty());
    let listed = store.limits(T).await.unwrap();
    assert_eq!(listed.0, vec![("high".to_owned(), QueueLimits { max_running: Some(0), priority: 5 })]);
    assert!(store.delete_limits(T, false, "high").await.unwrap());
    assert_eq!(ids(claim(store, now, 10).await), [high[2].clone()].into());
}

async fn limits_are_bounded_in_number(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock, &[]).await;
    let store = &t.node.store;
    let limits = QueueLimits { max_running: Some(1), priority: 0 };
    for i in 0..3 {
        assert!(store.put_queue_limits(T, &format!("q{i}"), &limits, 3).await.unwrap());
        assert!(store.put_job_limits(T, &format!("j{i}"), &JobLimits::default(), 0, 3).await.unwrap());
    }
    assert!(!store.put_queue_limits(T, "q3", &limits, 3).await.unwrap());
    assert!(!store.put_job_limits(T, "j3", &JobLimits::default(), 0, 3).await.unwrap());
    // Replacing one is no new one.
    assert!(store.put_queue_limits(T, "q0", &QueueLimits::default(), 3).await.unwrap());
    assert_eq!(store.limits(T).await.unwrap().0.len(), 3);
    assert!(store.limits("another").await.unwrap().0.is_empty());
}

async fn a_claim_walks_a_bounded_number_of_groups_and_the_next_goes_on(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let now = clock.now_millis();
    // Limited (by a limit that holds nothing back), with more queues than
    // one claim walks, each holding a due task and one due in an hour (so
    // that every group keeps waiting tasks).
    let queue = |i: usize| format!("q{i:04}");
    let groups = wasmjob::limits::MAX_WALK + 44;
    let mut batch = Vec::new();
    for i in 0..groups {
        batch.push(("addition".to_owned(), "{}".to_owned(), to(&queue(i))));
        let later = QueueOptions { queue: Some(queue(i)), ..delayed(3_600_000) };
        batch.push(("addition".to_owned(), "{}".to_owned(), later));
    }
    for chunk in batch.chunks(500) {
        for answer in t.node.queue.queue_many(T, chunk).await.unwrap() {
            answer.unwrap();
        }
    }
    let limits = JobLimits { max_concurrency: Some(1_000_000), rate: None };
    assert!(store.put_job_limits(T, "addition", &limits, now, 10).await.unwrap());
    assert_eq!(claim(store, now, 1_000).await.tasks.len(), wasmjob::limits::MAX_WALK);
    // The next claim goes on from there (a walk from the start would find
    // only the tasks due in an hour), then wraps around.
    assert_eq!(claim(store, now, 1_000).await.tasks.len(), 44);
    // Either side of where it stopped (`q0211`): both are reached.
    let mut due = Vec::new();
    for i in [100, 250] {
        due.push(t.node.queue.queue(T, "addition", "{}", &to(&queue(i)), None).await.unwrap());
    }
    let mut claimed: Vec<_> = claim(store, now, 1_000).await.tasks.into_iter().map(|t| t.id).collect();
    claimed.sort();
    due.sort();
    assert_eq!(claimed, due);
}

/// The tasks' `(started_at, finished_at)`, by start.
async fn spans(node: &wasmjob::node::Node, ids: &[String]) -> Vec<(i64, i64)> {
    let mut spans = Vec::new();
    for id in ids {
        let task: TaskRecord = finished(node, id).await;
        assert_eq!(task.state, TaskState::Success, "{task:?}");
        spans.push((task.started_at.unwrap(), task.finished_at.unwrap()));
    }
    spans.sort();
    spans
}

/// Watches `job`'s started tasks in the store (what every claim counts)
/// until `done`; answers the most seen at once. The tasks' own start and
/// end times cannot tell: a claim stamps its start with the time it was
/// asked, which may come before the end of the task whose slot it took.
fn most_running(
    store: Arc<dyn Store>,
    job: &'static str,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<usize>) {
    let (done, mut until) = tokio::sync::oneshot::channel();
    let watching = tokio::spawn(async move {
        let filter = TaskFilter { job: Some(job.into()), state: Some(TaskState::Started), ..Default::default() };
        let mut most = 0;
        while matches!(until.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty)) {
            most = most.max(store.list_tasks(filter.clone()).await.unwrap().len());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most
    });
    (done, watching)
}

async fn serving_nodes_hold_a_jobs_limits_on_the_real_clock(backend: Backend) {
    let place = crate::support::place(backend).await;
    let mut config = crate::support::node_config(&place);
    config.concurrency = 4;
    let node = Arc::new(wasmjob::node::Node::open_with_clock(config, false, Arc::new(SystemClock)).await.unwrap());
    for job in [wasmjob::examples::SLEEPY, wasmjob::examples::ADDITION] {
        node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
    }
    let now = node.clock.now_millis();
    let one = JobLimits { max_concurrency: Some(1), rate: None };
    assert!(node.store.put_job_limits(T, "sleepy", &one, now, 10).await.unwrap());
    let rate = JobLimits { max_concurrency: None, rate: Some(Rate { tasks: 2, per_ms: 500 }) };
    assert!(node.store.put_job_limits(T, "addition", &rate, now, 10).await.unwrap());
    let (stop, serving) = crate::support::serve(&node);
    let (done, watching) = most_running(node.store.clone(), "sleepy");
    let mut sleepy = Vec::new();
    let mut added = Vec::new();
    for _ in 0..4 {
        sleepy.push(node.queue.queue(T, "sleepy", r#"{"ms": 50}"#, &QueueOptions::default(), None).await.unwrap());
    }
    for _ in 0..6 {
        added.push(node.queue.queue(T, "addition", r#"{"a": 1, "b": 2}"#, &Default::default(), None).await.unwrap());
    }
    spans(&node, &sleepy).await;
    done.send(()).unwrap();
    assert_eq!(watching.await.unwrap(), 1, "two ran at once");
    // A bucket of 2 refilled at one per 250 ms: the k-th start (from 0)
    // comes at least (k - 1) × 250 ms after the first, however fast the
    // machine (1 ms for the clock's rounding).
    let starts: Vec<i64> = spans(&node, &added).await.into_iter().map(|s| s.0).collect();
    for (k, start) in starts.iter().enumerate().skip(2) {
        assert!(start - starts[0] >= (k as i64 - 1) * 250 - 1, "start {k} too soon: {starts:?}");
    }
    drop(stop);
    serving.await.unwrap();
}

crate::conformance!(
    a_jobs_max_concurrency_holds_its_tasks_and_no_other_jobs,
    a_jobs_rate_starts_a_burst_then_one_per_interval,
    a_queue_of_higher_priority_goes_first_within_its_max_running,
    limits_are_bounded_in_number,
    a_claim_walks_a_bounded_number_of_groups_and_the_next_goes_on,
    serving_nodes_hold_a_jobs_limits_on_the_real_clock
);

/// Two nodes on one PostgreSQL, a job limited to one task at a time: its
/// tasks never overlap, whichever node runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_max_concurrency_holds_across_nodes() {
    let place = crate::support::place(Backend::Postgres).await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = crate::support::node_config(&place);
        config.concurrency = 4;
        let node = wasmjob::node::Node::open_with_clock(config, false, Arc::new(SystemClock)).await.unwrap();
        node.registry.register(T, &std::fs::read(wasmjob::examples::SLEEPY).unwrap(), usize::MAX).await.unwrap();
        nodes.push(Arc::new(node));
    }
    let now = nodes[0].clock.now_millis();
    let one = JobLimits { max_concurrency: Some(1), rate: None };
    assert!(nodes[1].store.put_job_limits(T, "sleepy", &one, now, 10).await.unwrap());
    let serving: Vec<_> = nodes.iter().map(crate::support::serve).collect();
    let (done, watching) = most_running(nodes[0].store.clone(), "sleepy");
    let mut ids = Vec::new();
    for i in 0..12 {
        let node = &nodes[i % 2];
        ids.push(node.queue.queue(T, "sleepy", r#"{"ms": 30}"#, &QueueOptions::default(), None).await.unwrap());
    }
    spans(&nodes[0], &ids).await;
    done.send(()).unwrap();
    assert_eq!(watching.await.unwrap(), 1, "two ran at once");
    for (stop, handle) in serving {
        drop(stop);
        handle.await.unwrap();
    }
}

/// The API: limits set, listed and deleted by their tenant only; every
/// bound refused naming its field, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_limits_out_of_bounds_and_shows_a_tenant_its_own() {
    let api = Api::start(1).await;
    let (mine, _) = api.tenant("mine", json!({})).await;
    let (theirs, _) = api.tenant("theirs", json!({})).await;
    let put = |token: &str, path: &str, body: serde_json::Value| {
        let (token, path) = (token.to_owned(), format!("/v1/limits/{path}"));
        let api = &api;
        async move { api.send(Method::PUT, &path, Some(&token), Some(body)).await }
    };
    let refused = [
        ("queues/q", json!({ "max_running": 1_000_001 }), Some("max_running")),
        ("queues/q", json!({ "max_running": -1 }), None),
        ("queues/q", json!({ "max_running": u64::MAX }), None),
        ("queues/q", json!({ "priority": 2_147_483_648_i64 }), None),
        ("queues/q", json!({ "max_runing": 1 }), None),
        ("queues/q", json!("1"), None),
        ("queues/a%20b", json!({}), Some("queue")),
        (&format!("queues/{}", "q".repeat(129)), json!({}), Some("queue")),
        ("jobs/j", json!({ "max_concurrency": u32::MAX }), Some("max_concurrency")),
        ("jobs/j", json!({ "rate": { "tasks": 0, "per_ms": 1000 } }), Some("rate.tasks")),
        ("jobs/j", json!({ "rate": { "tasks": u32::MAX, "per_ms": 1000 } }), Some("rate.tasks")),
        ("jobs/j", json!({ "rate": { "tasks": 1, "per_ms": 0 } }), Some("rate.per_ms")),
        ("jobs/j", json!({ "rate": { "tasks": 1, "per_ms": u64::MAX } }), Some("rate.per_ms")),
        ("jobs/j", json!({ "rate": { "tasks": 1 } }), None),
        ("jobs/a%20b", json!({}), Some("name")),
    ];
    for (path, body, field) in refused {
        let answer = put(&mine, path, body.clone()).await;
        assert!(answer.status.is_client_error(), "{path} {body}: {answer}");
        if let Some(field) = field {
            assert_eq!(
                (answer.status, answer.body["error"]["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
                "{path} {body}: {answer}"
            );
        }
    }
    let listed = api.get("/v1/limits", &mine).await;
    assert_eq!(listed.body, json!({ "queues": [], "jobs": [] }), "nothing stored");

    let set =
        put(&mine, "jobs/Crawl", json!({ "max_concurrency": 0, "rate": { "tasks": 1_000_000, "per_ms": 1 } })).await;
    assert_eq!(set.status, StatusCode::OK, "{set}");
    assert_eq!(set.body["job"], "crawl");
    assert_eq!(put(&mine, "queues/emails", json!({ "priority": -7 })).await.status, StatusCode::OK);
    let listed = api.get("/v1/limits", &mine).await.body;
    assert_eq!(listed["queues"], json!([{ "queue": "emails", "limits": { "priority": -7 } }]));
    assert_eq!(listed["jobs"][0]["limits"]["rate"], json!({ "tasks": 1_000_000, "per_ms": 1 }));
    // Another tenant sees none of it and cannot delete it.
    assert_eq!(api.get("/v1/limits", &theirs).await.body, json!({ "queues": [], "jobs": [] }));
    let theirs_deleted = api.send(Method::DELETE, "/v1/limits/jobs/crawl", Some(&theirs), None).await;
    assert_eq!(theirs_deleted.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.send(Method::DELETE, "/v1/limits/jobs/CRAWL", Some(&mine), None).await.status,
        StatusCode::NO_CONTENT
    );

    // At most `MAX_LIMITED` queues with limits.
    for i in 0..wasmjob::limits::MAX_LIMITED {
        let answer = put(&theirs, &format!("queues/q{i}"), json!({ "max_running": 1 })).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer}");
    }
    let over = put(&theirs, "queues/one-more", json!({})).await;
    assert_eq!((over.status, over.code()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"), "{over}");
    assert_eq!(put(&theirs, "queues/q0", json!({ "priority": 1 })).await.status, StatusCode::OK, "a replacement");
}
