//! Named queues: a task goes to the queue its request names (`default`
//! otherwise), and a node claims only from the queues it serves (`wasmjob
//! serve --queues`), every queue by default; on both stores, by hand and
//! through serving nodes.

use std::sync::Arc;
use std::time::Duration;

use wasmjob::clock::{Clock as _, ManualClock, SystemClock};
use wasmjob::store::{ClaimRequest, TaskState};
use wasmjob::task::{QueueError, QueueOptions};
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::support::{Backend, finished};

fn to(queue: &str) -> QueueOptions {
    QueueOptions { queue: Some(queue.into()), ..Default::default() }
}

async fn a_claim_takes_only_from_the_queues_it_serves(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let plain = t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    let emails = t.node.queue.queue(T, "addition", "{}", &to("emails"), None).await.unwrap();
    assert_eq!(store.task(&plain).await.unwrap().unwrap().queue, "default");
    assert_eq!(store.task(&emails).await.unwrap().unwrap().queue, "emails");
    let now = clock.now_millis();
    let claim = |queues: Option<Vec<&str>>| ClaimRequest {
        node: "n".into(),
        limit: 10,
        now,
        lease_until: now + 60_000,
        max_running: [(T.to_owned(), usize::MAX)].into(),
        queues: queues.map(|q| q.into_iter().map(str::to_owned).collect()),
    };
    let ids = |claim: wasmjob::store::Claim| claim.tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert!(ids(store.claim(claim(Some(vec!["reports"]))).await.unwrap()).is_empty());
    assert_eq!(ids(store.claim(claim(Some(vec!["reports", "emails"]))).await.unwrap()), [emails]);
    assert_eq!(ids(store.claim(claim(Some(vec!["default"]))).await.unwrap()), [plain]);
    // Every queue, by default.
    let later = t.node.queue.queue(T, "addition", "{}", &to("later"), None).await.unwrap();
    assert_eq!(ids(store.claim(claim(None)).await.unwrap()), [later]);
}

async fn a_queue_name_is_checked(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock, &[wasmjob::examples::ADDITION]).await;
    for bad in ["", "a b", "..", &"q".repeat(129), "é"] {
        match t.node.queue.queue(T, "addition", "{}", &to(bad), None).await {
            Err(wasmjob::queue::QueueFailure::Rejected(QueueError::InvalidOption { field, .. })) => {
                assert_eq!(field, "queue")
            }
            other => panic!("queue {bad:?} was not refused: {other:?}"),
        }
    }
    assert!(t.node.store.list_tasks(Default::default()).await.unwrap().is_empty());
}

async fn a_jobs_children_go_to_its_queue(backend: Backend) {
    let place = crate::support::place(backend).await;
    let mut config = crate::support::node_config(&place);
    config.queues = Some(vec!["reports".into()]);
    let node = Arc::new(wasmjob::node::Node::open_with_clock(config, false, Arc::new(SystemClock)).await.unwrap());
    for job in [wasmjob::examples::FAN_OUT, wasmjob::examples::ADDITION] {
        node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
    }
    let (stop, serving) = crate::support::serve(&node);
    // Served only there: its children would wait forever in `default`.
    let parent = node.queue.queue(T, "fan-out", r#"{"n": 3}"#, &to("reports"), None).await.unwrap();
    assert_eq!(finished(&node, &parent).await.state, TaskState::Success);
    let children = node.store.tree(&parent, 100).await.unwrap();
    let children: Vec<_> = children.into_iter().filter(|t| t.id != parent).collect();
    assert_eq!(children.len(), 3);
    for child in &children {
        let child = finished(&node, &child.id).await;
        assert_eq!((child.queue.as_str(), child.state), ("reports", TaskState::Success), "{child:?}");
    }
    drop(stop);
    serving.await.unwrap();
}

/// A node serving some queues wakes for the earliest task of those
/// queues, whatever its job and priority: not for another queue's task
/// due sooner, nor only for the earliest of each job's highest priority.
async fn a_node_serving_some_queues_learns_when_their_next_task_is_due(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let jobs = [wasmjob::examples::ADDITION, wasmjob::examples::TALLY];
    let t = crate::support::test_node(backend, clock.clone(), &jobs).await;
    let now = clock.now_millis();
    for (job, queue, priority, delay_ms) in [
        ("addition", "default", 0, 1000),
        ("addition", "emails", 5, 8000),
        ("addition", "emails", 0, 3000),
        ("addition", "emails", i32::MIN, 2500),
        ("tally", "emails", 1, 4000),
        ("tally", "emails", i32::MAX, 6000),
        ("tally", "reports", 0, 2000),
    ] {
        let delay = Some(Duration::from_millis(delay_ms));
        let options = QueueOptions { priority: Some(priority), delay, ..to(queue) };
        t.node.queue.queue(T, job, "{}", &options, None).await.unwrap();
    }
    let due = |queues: &[&str]| {
        let request = ClaimRequest {
            node: "n".into(),
            limit: 10,
            now,
            lease_until: now + 60_000,
            max_running: [(T.to_owned(), usize::MAX)].into(),
            queues: Some(queues.iter().map(|q| (*q).to_owned()).collect()),
        };
        let store = t.node.store.clone();
        async move {
            let claim = store.claim(request).await.unwrap();
            assert!(claim.tasks.is_empty(), "nothing is due yet: {:?}", claim.tasks);
            claim.next_run_at.map(|at| at - now)
        }
    };
    assert_eq!(due(&["emails"]).await, Some(2500));
    assert_eq!(due(&["emails", "reports"]).await, Some(2000));
    assert_eq!(due(&["emails", "default"]).await, Some(1000));
    assert_eq!(due(&["nightly"]).await, None);
}

crate::conformance!(
    a_node_serving_some_queues_learns_when_their_next_task_is_due,
    a_claim_takes_only_from_the_queues_it_serves,
    a_queue_name_is_checked,
    a_jobs_children_go_to_its_queue
);

/// Two nodes on one PostgreSQL, one serving `emails` only and the other
/// `default` only: each runs its queue's tasks (told apart by job: `tally`
/// to `emails`, `addition` to `default`, counted per node by the activity
/// each node writes), and a task of a queue no node serves waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serve_their_queues_only() {
    let place = crate::support::place(Backend::Postgres).await;
    let open = |queues: &str, jobs: &'static [&'static str]| {
        let mut config = crate::support::node_config(&place);
        config.queues = Some(vec![queues.to_owned()]);
        async move {
            let node = wasmjob::node::Node::open_with_clock(config, false, Arc::new(SystemClock)).await.unwrap();
            for job in jobs {
                node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
            }
            Arc::new(node)
        }
    };
    let mailer = open("emails", &[wasmjob::examples::ADDITION, wasmjob::examples::TALLY]).await;
    let general = open("default", &[]).await;
    let (stop_m, serving_m) = crate::support::serve(&mailer);
    let (stop_g, serving_g) = crate::support::serve(&general);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(general.queue.queue(T, "tally", "{}", &to("emails"), None).await.unwrap());
        ids.push(mailer.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap());
    }
    let nobody = general.queue.queue(T, "addition", "{}", &to("nobody"), None).await.unwrap();
    for id in &ids {
        assert_eq!(finished(&general, id).await.state, TaskState::Success);
    }
    // Each node's activity (written at its heartbeats) names what it ran.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = general.store.activity(Some(T), 0).await.unwrap();
        if rows.iter().map(|r| r.succeeded).sum::<u64>() >= 40 {
            break rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "the nodes' activity never showed 40 tasks: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for row in rows.iter().filter(|r| r.succeeded > 0) {
        let expected = if row.node.starts_with(&format!("{}/", mailer.id)) { "tally" } else { "addition" };
        assert!(row.node.starts_with(&format!("{}/", mailer.id)) || row.node.starts_with(&format!("{}/", general.id)));
        assert_eq!(row.job, expected, "{rows:?}");
    }
    assert_eq!(general.store.task(&nobody).await.unwrap().unwrap().state, TaskState::Queued);
    drop((stop_m, stop_g));
    serving_m.await.unwrap();
    serving_g.await.unwrap();
}
