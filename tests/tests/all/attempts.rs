//! Every attempt of a task is kept: those that asked for a retry, those
//! whose worker died, and the last one of a task retried by hand; and they
//! go with their task.

use std::sync::Arc;

use chrono::Utc;
use wasmjob::clock::{Clock, ManualClock, SystemClock};
use wasmjob::store::{ATTEMPT_LOG_KEPT, Completion, TaskState};
use wasmjob::task::QueueOptions;
use wasmjob::tenant::DEFAULT_TENANT as T;
use wasmjob::wire::Attempt;

use crate::support::{Backend, claim, finished, serve, success, test_node};

async fn every_attempt_of_a_retried_task_is_kept_with_how_it_ended(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::FLAKY]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    // flaky: retryable errors until its third attempt.
    let id = node.queue.queue(T, "flaky", r#"{"succeed_at": 3}"#, &QueueOptions::default(), None).await.unwrap();
    let task = finished(&node, &id).await;
    assert_eq!((task.state, task.attempt), (TaskState::Success, 3));
    let kept = node.store.attempts(&id, 100).await.unwrap();
    assert_eq!(kept.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2]);
    for a in &kept {
        assert_eq!((a.state, a.reason.as_deref()), (TaskState::Retry, Some("retryable-error")), "{a:?}");
        assert!(a.error.is_some() && a.fuel.is_some_and(|f| f > 0) && a.started_at.is_some(), "{a:?}");
        assert!(a.lease.as_deref().is_some_and(|l| l.ends_with(&format!(":{id}:{}", a.attempt))), "{a:?}");
    }
    assert!(kept[0].finished_at <= kept[1].started_at.unwrap());
    // As the API shows them: both kept, then the last from the task's row.
    let all = Attempt::all(&task, kept);
    let states: Vec<_> = all.iter().map(|a| (a.attempt, a.state)).collect();
    assert_eq!(states, [(1, TaskState::Retry), (2, TaskState::Retry), (3, TaskState::Success)]);
    assert_eq!(all[2].reason.as_deref(), Some("success"));
    assert!(all[0].node.is_some(), "the node of a kept attempt is known from its lease");
}

async fn an_attempt_whose_worker_died_is_kept_as_lease_expired(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let id = t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    let now = clock.now_millis();
    let dead = claim(store, "dead-node", 1, now, now + 1000).await.unwrap().tasks.remove(0);
    assert_eq!(store.rescue(now + 1001, false, wasmjob::retry::POISON_AFTER).await.unwrap().len(), 1);
    let kept = store.attempts(&id, 100).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].attempt, kept[0].state), (1, TaskState::Retry));
    assert_eq!(kept[0].reason.as_deref(), Some("lease-expired"));
    assert_eq!(kept[0].lease.as_deref(), Some(dead.lease.as_str()));
    assert_eq!((kept[0].started_at, kept[0].finished_at), (Some(now), now + 1001));
    // Its successor runs and succeeds: two attempts in all.
    let alive = claim(store, "alive", 1, now + 1001, now + 60_000).await.unwrap().tasks.remove(0);
    store.complete(vec![success(&id, &alive.lease, now + 1500, "0")]).await.unwrap();
    let task = store.task(&id).await.unwrap().unwrap();
    let all = Attempt::all(&task, store.attempts(&id, 100).await.unwrap());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].node.as_deref(), Some("dead-node"));
    assert_eq!((all[1].attempt, all[1].state), (2, TaskState::Success));
}

async fn a_task_retried_by_hand_keeps_the_attempt_that_failed(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::FLAKY]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    let id = node.queue.queue(T, "flaky", r#"{"fatal": true}"#, &QueueOptions::default(), None).await.unwrap();
    assert_eq!(finished(&node, &id).await.state, TaskState::Failure);
    assert!(
        node.store.attempts(&id, 100).await.unwrap().is_empty(),
        "a task ended at once keeps its attempt in its row"
    );
    node.queue.retry(T, &id).await.unwrap();
    let again = finished(&node, &id).await;
    assert_eq!((again.state, again.attempt), (TaskState::Failure, 2));
    let kept = node.store.attempts(&id, 100).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].attempt, kept[0].state), (1, TaskState::Failure));
    assert_eq!(kept[0].reason.as_deref(), Some("fatal-error"));
    assert!(kept[0].error.as_deref().is_some_and(|e| e.contains("told to fail")), "{:?}", kept[0]);
    let all = Attempt::all(&again, kept);
    assert_eq!(all.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2]);
    // A task revoked before it ever ran and retried by hand keeps nothing.
    let later = QueueOptions { delay: Some(std::time::Duration::from_secs(3600)), ..QueueOptions::default() };
    let never = node.queue.queue(T, "flaky", r#"{"fatal": true}"#, &later, None).await.unwrap();
    node.queue.revoke(&never).await.unwrap();
    node.queue.retry(T, &never).await.unwrap();
    finished(&node, &never).await;
    assert!(node.store.attempts(&never, 100).await.unwrap().is_empty());
}

async fn a_kept_attempt_keeps_the_end_of_a_huge_log(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let id = t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    let now = clock.now_millis();
    let lease = claim(store, "n", 1, now, now + 60_000).await.unwrap().tasks.remove(0).lease;
    // 1 MiB of two-byte characters, then a marker at its end.
    let log = format!("{}THE END", "é".repeat(512 * 1024));
    let retried = Completion {
        state: TaskState::Retry,
        reason: "retryable-error".into(),
        result: None,
        error: Some("x".repeat(100_000)),
        log: log.clone(),
        retry_at: Some(now),
        ..success(&id, &lease, now + 5, "null")
    };
    assert_eq!(store.complete(vec![retried]).await.unwrap(), [(id.clone(), TaskState::Retry)]);
    let kept = store.attempts(&id, 100).await.unwrap().remove(0);
    let tail = kept.log.unwrap();
    assert_eq!(tail.chars().count(), ATTEMPT_LOG_KEPT as usize);
    assert!(tail.ends_with("THE END") && log.ends_with(&tail));
    assert_eq!(kept.error.map(|e| e.len()), Some(100_000));
}

async fn attempts_go_with_their_task(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &t.node.store;
    let id = t.node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    let now = clock.now_millis();
    claim(store, "dead", 1, now, now + 1000).await.unwrap();
    store.rescue(now + 1001, false, wasmjob::retry::POISON_AFTER).await.unwrap();
    // Still live: retention leaves it and its attempts alone.
    let numeric: i64 = id.parse().unwrap();
    assert_eq!(store.delete_finished(vec![numeric]).await.unwrap(), 0);
    assert_eq!(store.attempts(&id, 100).await.unwrap().len(), 1);
    let lease = claim(store, "alive", 1, now + 1001, now + 60_000).await.unwrap().tasks.remove(0).lease;
    store.complete(vec![success(&id, &lease, now + 1500, "0")]).await.unwrap();
    assert_eq!(store.delete_finished(vec![numeric]).await.unwrap(), 1);
    assert!(store.attempts(&id, 100).await.unwrap().is_empty());
    assert!(store.attempts("not-an-id", 100).await.unwrap().is_empty());
}

crate::conformance!(
    every_attempt_of_a_retried_task_is_kept_with_how_it_ended,
    an_attempt_whose_worker_died_is_kept_as_lease_expired,
    a_task_retried_by_hand_keeps_the_attempt_that_failed,
    a_kept_attempt_keeps_the_end_of_a_huge_log,
    attempts_go_with_their_task,
);
