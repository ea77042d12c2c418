//! Non-overlapping jobs: duplicates are reported with the existing task's id,
//! per job or per args, and the lock goes with the task's end.

use crate::support::Backend;
use std::sync::Arc;
use wasmjob::tenant::DEFAULT_TENANT as T;

use wasmjob::clock::SystemClock;
use wasmjob::queue::QueueFailure;
use wasmjob::task::{QueueError, QueueOptions};

use crate::support::{finished, serve, test_node};

fn duplicate_of(result: Result<String, QueueFailure>) -> String {
    match result {
        Err(QueueFailure::Rejected(QueueError::Duplicate(id))) => id,
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

async fn non_overlapping_job_reports_duplicate_with_existing_id(backend: Backend) {
    // nightly-report forbids overlap.
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    let o = QueueOptions::default();
    let first = t.node.queue.queue(T, "nightlyreport", "{}", &o, None).await.unwrap();
    let again = t.node.queue.queue(T, "nightlyreport", "{}", &o, None).await;
    assert_eq!(duplicate_of(again), first);
}

async fn overlap_decided_by_args_locks_per_key(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::EXCLUSIVE]).await;
    let o = QueueOptions::default();
    let q = &t.node.queue;
    let acme = q.queue(T, "settle", r#"{"account": "acme"}"#, &o, None).await.unwrap();
    assert_eq!(duplicate_of(q.queue(T, "settle", r#"{"account": "acme"}"#, &o, None).await), acme);
    q.queue(T, "settle", r#"{"account": "globex"}"#, &o, None).await.unwrap();
    // No account: the job says these may overlap.
    q.queue(T, "settle", "{}", &o, None).await.unwrap();
    q.queue(T, "settle", "{}", &o, None).await.unwrap();
}

async fn the_overlap_lock_is_released_when_the_task_ends(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::EXCLUSIVE]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    let o = QueueOptions::default();
    let first = node.queue.queue(T, "settle", r#"{"account": "acme"}"#, &o, None).await.unwrap();
    finished(&node, &first).await;
    let second = node.queue.queue(T, "settle", r#"{"account": "acme"}"#, &o, None).await.unwrap();
    assert_ne!(first, second);
}

async fn revoking_a_task_releases_its_overlap_lock(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    let o = QueueOptions::default();
    let first = t.node.queue.queue(T, "nightlyreport", "{}", &o, None).await.unwrap();
    t.node.queue.revoke(&first).await.unwrap();
    let second = t.node.queue.queue(T, "nightlyreport", "{}", &o, None).await.unwrap();
    assert_ne!(first, second);
}

async fn a_dead_workers_lock_does_not_outlive_its_lease(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::NIGHTLY_REPORT]).await;
    let o = QueueOptions::default();
    let store = &t.node.store;
    let first = t.node.queue.queue(T, "nightlyreport", "{}", &o, None).await.unwrap();
    // A worker claims it with a lease that has already ended, and dies.
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(crate::support::claim(store, "dead", 1, now, 1).await.unwrap().tasks.len(), 1);
    // max_retries is 3: the task goes back to retry, and still holds the lock.
    // (Never quarantined here: this is about its retries running out.)
    let never = u32::MAX;
    store.rescue(now, false, never).await.unwrap();
    assert_eq!(duplicate_of(t.node.queue.queue(T, "nightlyreport", "{}", &o, None).await), first);
    // Out of attempts, the task fails and the lock is free.
    for _ in 0..3 {
        assert_eq!(crate::support::claim(store, "dead", 1, now, 1).await.unwrap().tasks.len(), 1);
        store.rescue(now, false, never).await.unwrap();
    }
    let task = store.task(&first).await.unwrap().unwrap();
    assert_eq!((task.state, task.reason.as_deref()), (wasmjob::store::TaskState::Failure, Some("lease-expired")));
    t.node.queue.queue(T, "nightlyreport", "{}", &o, None).await.unwrap();
}

crate::conformance!(
    non_overlapping_job_reports_duplicate_with_existing_id,
    overlap_decided_by_args_locks_per_key,
    the_overlap_lock_is_released_when_the_task_ends,
    revoking_a_task_releases_its_overlap_lock,
    a_dead_workers_lock_does_not_outlive_its_lease,
);
