//! Fork bombs are bounded in total, not only per task and per level: a
//! tree stops at its cap, a tenant's jobs queue children within a rate, and
//! a whole tree or all of a job's tasks are revoked in one call.

use std::sync::Arc;

use wasmjob::clock::SystemClock;
use wasmjob::queue::{Parent, TreeCaps};
use wasmjob::store::{RevokeScope, TaskFilter, TaskState};
use wasmjob::task::QueueOptions;
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::support::{Backend, finished, open_node, serve};

/// Every task of `job` once none is left to run.
async fn drained(node: &wasmjob::node::Node, job: &str) -> Vec<wasmjob::store::TaskRecord> {
    let filter = TaskFilter { job: Some(job.into()), limit: Some(1000), ..TaskFilter::default() };
    loop {
        let tasks = node.store.list_tasks(filter.clone()).await.unwrap();
        match tasks.iter().find(|t| !t.state.is_terminal()) {
            Some(pending) => {
                finished(node, &pending.id).await;
            }
            None => return tasks,
        }
    }
}

async fn a_fork_bomb_stops_at_its_tree_cap(backend: Backend) {
    let place = crate::support::place(backend).await;
    let mut config = crate::support::node_config(&place);
    config.caps = TreeCaps { max_tree: 30, ..TreeCaps::default() };
    let node = wasmjob::node::Node::open(config, false).await.unwrap();
    node.registry.register(T, &std::fs::read(wasmjob::examples::FORK_BOMB).unwrap(), usize::MAX).await.unwrap();
    node.tenants.create("other", Default::default()).await.unwrap();
    node.registry.register("other", &std::fs::read(wasmjob::examples::ADDITION).unwrap(), 10).await.unwrap();
    let node = Arc::new(node);
    let (_stop, _serving) = serve(&node);
    let o = QueueOptions::default();
    node.queue.queue(T, "fork-bomb", r#"{"width": 10}"#, &o, None).await.unwrap();
    let tasks = drained(&node, "fork-bomb").await;
    // Depth 16 and 1,000 children per task would allow far more.
    assert_eq!(tasks.len(), 30, "the tree grew past its cap");
    let stopped = tasks.iter().filter(|t| t.log.as_deref().unwrap_or("").contains("may hold at most 30 tasks")).count();
    assert!(stopped > 0, "no task was told why it could queue no more");
    // Another tenant's task runs right after.
    let id = node.queue.queue("other", "addition", r#"{"a": 1, "b": 2}"#, &o, None).await.unwrap();
    assert_eq!(finished(&node, &id).await.state, TaskState::Success);
}

async fn a_tenants_jobs_queue_children_within_its_children_rate(backend: Backend) {
    let place = crate::support::place(backend).await;
    let node = Arc::new(open_node(&place, Arc::new(SystemClock), &[]).await);
    let quotas = serde_json::json!({ "children_rate": 0.001, "children_burst": 3 });
    node.tenants.create("bomber", quotas.as_object().unwrap().clone()).await.unwrap();
    node.registry.register("bomber", &std::fs::read(wasmjob::examples::FORK_BOMB).unwrap(), 10).await.unwrap();
    let (_stop, _serving) = serve(&node);
    node.queue.queue("bomber", "fork-bomb", r#"{"width": 10}"#, &QueueOptions::default(), None).await.unwrap();
    // Every bomb of the tenant draws on one bucket of 3: the root and 3 children in all.
    let tasks = drained(&node, "fork-bomb").await;
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    assert!(tasks.iter().any(|t| t.log.as_deref().unwrap_or("").contains("children_rate")), "{tasks:?}");
}

async fn a_whole_tree_is_revoked_in_one_call(backend: Backend) {
    let place = crate::support::place(backend).await;
    let node = open_node(&place, Arc::new(SystemClock), &[wasmjob::examples::ADDITION]).await;
    let o = QueueOptions::default();
    let root = node.queue.queue(T, "addition", "{}", &o, None).await.unwrap();
    let other = node.queue.queue(T, "addition", "{}", &o, None).await.unwrap();
    let parent = Parent { id: root.clone(), root: root.clone(), depth: 0, attempt: 1, queue: "default".into() };
    let child = node.queue.queue(T, "addition", "{}", &o, Some(&parent)).await.unwrap();
    let grandparent = Parent { id: child.clone(), root: root.clone(), depth: 1, attempt: 1, queue: "default".into() };
    for _ in 0..5 {
        node.queue.queue(T, "addition", "{}", &o, Some(&grandparent)).await.unwrap();
    }
    let done = node.queue.revoke_many(RevokeScope::Tree { tenant: T.into(), root: root.clone() }).await.unwrap();
    assert_eq!(done.revoked.len(), 7);
    assert_eq!(node.store.task(&other).await.unwrap().unwrap().state, TaskState::Queued);
    // Another tenant cannot reach the tree.
    let none = node.queue.revoke_many(RevokeScope::Tree { tenant: "nobody".into(), root }).await.unwrap();
    assert!(none.revoked.is_empty());
}

async fn all_tasks_of_a_job_are_revoked_in_one_call(backend: Backend) {
    let place = crate::support::place(backend).await;
    let jobs = [wasmjob::examples::ADDITION, wasmjob::examples::SLEEPY];
    let node = open_node(&place, Arc::new(SystemClock), &jobs).await;
    let o = QueueOptions::default();
    for _ in 0..4 {
        node.queue.queue(T, "addition", "{}", &o, None).await.unwrap();
    }
    let sleepy = node.queue.queue(T, "sleepy", "{}", &o, None).await.unwrap();
    let done = node.queue.revoke_many(RevokeScope::Job { tenant: T.into(), job: "addition".into() }).await.unwrap();
    assert_eq!(done.revoked.len(), 4);
    assert_eq!(node.store.task(&sleepy).await.unwrap().unwrap().state, TaskState::Queued);
}

async fn duplicates_do_not_use_up_the_tree_cap(backend: Backend) {
    let place = crate::support::place(backend).await;
    let mut config = crate::support::node_config(&place);
    config.caps = TreeCaps { max_tree: 3, ..TreeCaps::default() };
    let node = wasmjob::node::Node::open(config, false).await.unwrap();
    for job in [wasmjob::examples::ADDITION, wasmjob::examples::NIGHTLY_REPORT] {
        node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
    }
    let o = QueueOptions::default();
    let root = node.queue.queue(T, "addition", "{}", &o, None).await.unwrap();
    let parent = Parent { id: root.clone(), root: root.clone(), depth: 0, attempt: 1, queue: "default".into() };
    // nightlyreport forbids overlap: one child, then duplicates of it.
    node.queue.queue(T, "nightlyreport", "{}", &o, Some(&parent)).await.unwrap();
    for _ in 0..5 {
        let duplicate = node.queue.queue(T, "nightlyreport", "{}", &o, Some(&parent)).await;
        assert!(matches!(
            duplicate,
            Err(wasmjob::queue::QueueFailure::Rejected(wasmjob::task::QueueError::Duplicate(_)))
        ));
    }
    // The tree holds 2 of its 3: one more child fits.
    node.queue.queue(T, "addition", "{}", &o, Some(&parent)).await.unwrap();
    assert!(node.queue.queue(T, "addition", "{}", &o, Some(&parent)).await.is_err(), "the tree cap did not hold");
}

crate::conformance!(
    duplicates_do_not_use_up_the_tree_cap,
    a_fork_bomb_stops_at_its_tree_cap,
    a_tenants_jobs_queue_children_within_its_children_rate,
    a_whole_tree_is_revoked_in_one_call,
    all_tasks_of_a_job_are_revoked_in_one_call,
);
