//! A task whose worker keeps being lost under it (the node dies or hangs
//! while running it) is quarantined after `poison_after` losses instead of
//! being retried until it has killed one worker per retry.

use std::sync::Arc;

use chrono::Utc;
use wasmjob::clock::{Clock, ManualClock};
use wasmjob::store::TaskState;
use wasmjob::task::QueueOptions;
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::support::{Backend, claim, success, test_node};

async fn a_task_that_loses_its_worker_again_and_again_is_quarantined(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    // Retries enough for ten losses: quarantine comes first.
    let options = QueueOptions { max_retries: Some(10), ..QueueOptions::default() };
    let id = t.node.queue.queue(T, "addition", "{}", &options, None).await.unwrap();
    let now = clock.now_millis();
    for lost in 1..=3 {
        // Claimed at `at` under a lease that ends before the next sweep.
        let at = now + 3 * lost;
        assert_eq!(claim(store, "doomed", 1, at, at + 1).await.unwrap().tasks.len(), 1, "claim {lost}");
        assert_eq!(store.rescue(at + 2, false, 3).await.unwrap().len(), 1);
        let task = store.task(&id).await.unwrap().unwrap();
        if lost < 3 {
            assert_eq!((task.state, task.reason.as_deref()), (TaskState::Retry, Some("lease-expired")));
        } else {
            assert_eq!((task.state, task.reason.as_deref()), (TaskState::Failure, Some("poisoned")));
            assert!(task.error.as_deref().is_some_and(|e| e.contains("3 times")), "{task:?}");
            assert_eq!((task.attempt, task.finished_at), (3, Some(at + 2)));
        }
    }
    assert!(claim(store, "next", 1, now + 100, now + 60_000).await.unwrap().tasks.is_empty(), "quarantined, not due");
    // Its earlier losses are kept as attempts; the last is the row's.
    assert_eq!(store.attempts(&id, 100).await.unwrap().len(), 2);
}

async fn a_revoke_wins_over_quarantine_and_fewer_losses_do_not_quarantine(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let now = clock.now_millis();
    // With poison_after 1, the first loss quarantines.
    let id = t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    claim(store, "doomed", 1, now, now + 1).await.unwrap();
    store.rescue(now + 2, false, 1).await.unwrap();
    assert_eq!(store.task(&id).await.unwrap().unwrap().reason.as_deref(), Some("poisoned"));
    // A revoke asked of a running task wins over the quarantine.
    let revoked = t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    claim(store, "doomed", 1, now, now + 1).await.unwrap();
    store.revoke(&revoked, now).await.unwrap();
    store.rescue(now + 2, false, 1).await.unwrap();
    let task = store.task(&revoked).await.unwrap().unwrap();
    assert_eq!((task.state, task.reason.as_deref()), (TaskState::Revoked, Some("revoked")));
    // A task that lost one worker and then succeeded is not poisoned.
    let fine = t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    claim(store, "doomed", 1, now, now + 1).await.unwrap();
    store.rescue(now + 2, false, 2).await.unwrap();
    let lease = claim(store, "alive", 1, now + 3, now + 60_000).await.unwrap().tasks.remove(0).lease;
    store.complete(vec![success(&fine, &lease, now + 4, "0")]).await.unwrap();
    assert_eq!(store.task(&fine).await.unwrap().unwrap().state, TaskState::Success);
}

crate::conformance!(
    a_task_that_loses_its_worker_again_and_again_is_quarantined,
    a_revoke_wins_over_quarantine_and_fewer_losses_do_not_quarantine,
);
