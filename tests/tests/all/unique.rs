//! Unique tasks: a request for a job with the same args as one queued with
//! `unique_for` within that period answers `duplicate` with the first
//! task's id, even after that task has ended; args are compared as JSON.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use wasmjob::clock::{Clock, ManualClock};
use wasmjob::queue::QueueFailure;
use wasmjob::task::{QueueError, QueueOptions};
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::support::{Backend, claim, success, test_node};

fn unique(period: u64) -> QueueOptions {
    QueueOptions { unique_for: Some(Duration::from_secs(period)), ..QueueOptions::default() }
}

fn duplicate_of(result: Result<String, QueueFailure>) -> String {
    match result {
        Err(QueueFailure::Rejected(QueueError::Duplicate(id))) => id,
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

async fn a_unique_task_answers_for_its_args_within_its_period_even_once_it_ended(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let queue = &t.node.queue;
    let first = queue.queue(T, "addition", r#"{"a": 1, "b": 2}"#, &unique(60), None).await.unwrap();
    // The same args, written otherwise: the same task.
    assert_eq!(duplicate_of(queue.queue(T, "addition", r#"{ "b":2,"a":1 }"#, &unique(60), None).await), first);
    // Other args, or no uniqueness asked: other tasks.
    let other = queue.queue(T, "addition", r#"{"a": 1, "b": 3}"#, &unique(60), None).await.unwrap();
    assert_ne!(other, first);
    let plain = queue.queue(T, "addition", r#"{"a": 1, "b": 2}"#, &QueueOptions::default(), None).await.unwrap();
    assert_ne!(plain, first);
    // The first ends; within the period it still answers.
    let now = clock.now_millis();
    let claimed = claim(&t.node.store, "n", 10, now, now + 60_000).await.unwrap();
    let lease = claimed.tasks.iter().find(|c| c.id == first).unwrap().lease.clone();
    t.node.store.complete(vec![success(&first, &lease, now, "3")]).await.unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(duplicate_of(queue.queue(T, "addition", r#"{"a":1,"b":2}"#, &unique(60), None).await), first);
    // Past it, a new task holds the args for its own period.
    clock.advance(Duration::from_secs(2));
    let next = queue.queue(T, "addition", r#"{"a":1,"b":2}"#, &unique(60), None).await.unwrap();
    assert_ne!(next, first);
    assert_eq!(duplicate_of(queue.queue(T, "addition", r#"{"a":1,"b":2}"#, &unique(1), None).await), next);
    // Expired keys are pruned, live ones kept.
    assert_eq!(t.node.store.prune_uniques(clock.now_millis()).await.unwrap(), 1);
    assert_eq!(duplicate_of(queue.queue(T, "addition", r#"{"a":1,"b":2}"#, &unique(60), None).await), next);
}

async fn one_of_many_identical_unique_requests_at_once_is_queued(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let node = Arc::new(t.node);
    let requests = (0..8).map(|_| {
        let node = node.clone();
        tokio::spawn(async move { node.queue.queue(T, "addition", r#"{"a": 7}"#, &unique(60), None).await })
    });
    let answers = futures_util::future::join_all(requests).await;
    let queued: Vec<String> = answers.iter().filter_map(|a| a.as_ref().unwrap().as_ref().ok().cloned()).collect();
    assert_eq!(queued.len(), 1, "{answers:?}");
    for answer in answers {
        if let Err(e) = answer.unwrap() {
            assert_eq!(duplicate_of(Err(e)), queued[0]);
        }
    }
    // In one batch: the first of the same args is queued, the others answer it.
    let batch = vec![("addition".to_owned(), r#"{"a": 8}"#.to_owned(), unique(60)); 3];
    let answers = node.queue.queue_many(T, &batch).await.unwrap();
    let first = answers[0].clone().unwrap();
    for answer in &answers[1..] {
        assert!(matches!(answer, Err(QueueError::Duplicate(id)) if *id == first), "{answers:?}");
    }
}

crate::conformance!(
    a_unique_task_answers_for_its_args_within_its_period_even_once_it_ended,
    one_of_many_identical_unique_requests_at_once_is_queued,
);
