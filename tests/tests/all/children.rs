//! Children that commit with their parent: a task queued by a running
//! attempt waits (`queued`, reason `parent`) until that attempt ends, then
//! runs if it succeeded, and is discarded (`revoked`, reason `discarded`)
//! if it did not, so that a retry never runs its children twice. Driven
//! through real workers, and by hand on the store for the endings that no
//! completion writes (a lost worker, an attempt that queues after losing
//! its lease).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wasmjob::clock::{Clock as _, ManualClock};
use wasmjob::queue::Parent;
use wasmjob::store::{TaskFilter, TaskRecord, TaskState};
use wasmjob::task::QueueOptions;
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::support::{Backend, claim, finished, open_node, success};

/// Every child of `parent`, oldest first.
async fn children(node: &wasmjob::node::Node, parent: &str) -> Vec<TaskRecord> {
    let mut all = node.store.tree(parent, 1000).await.unwrap();
    all.retain(|t| t.from_task.as_deref() == Some(parent));
    all
}

/// Waits for every child of `parent` to end.
async fn children_ended(node: &wasmjob::node::Node, parent: &str) -> Vec<TaskRecord> {
    let mut ended = Vec::new();
    for child in children(node, parent).await {
        ended.push(finished(node, &child.id).await);
    }
    ended
}

async fn a_retried_attempts_children_are_discarded_and_the_successful_ones_run(backend: Backend) {
    let t = crate::support::test_node(backend, Arc::new(wasmjob::clock::SystemClock), &[]).await;
    let node = Arc::new(t.node);
    for job in [wasmjob::examples::FAN_OUT, wasmjob::examples::ADDITION] {
        node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
    }
    let (stop, serving) = crate::support::serve(&node);
    // Attempt 1 queues three children, then fails; attempt 2 queues three and succeeds.
    let options = QueueOptions { max_retries: Some(2), ..Default::default() };
    let args = json!({ "n": 3, "fail_until": 2 }).to_string();
    let parent = node.queue.queue(T, "fan-out", &args, &options, None).await.unwrap();
    // (Its backoff is short, but a retry waits for it.)
    let parent_done = node.queue.wait(&parent, Duration::from_secs(120)).await.unwrap().unwrap();
    assert_eq!(parent_done.state, TaskState::Success, "{parent_done:?}");
    assert_eq!(parent_done.attempt, 2);
    let ended = children_ended(&node, &parent).await;
    assert_eq!(ended.len(), 6, "{ended:#?}");
    let (discarded, ran): (Vec<_>, Vec<_>) = ended.iter().partition(|c| c.state == TaskState::Revoked);
    assert_eq!(discarded.len(), 3, "{ended:#?}");
    assert!(discarded.iter().all(|c| c.reason.as_deref() == Some("discarded") && c.attempt == 0), "{discarded:#?}");
    assert!(ran.iter().all(|c| c.state == TaskState::Success), "{ran:#?}");
    // The successful attempt's answer names the children that ran.
    let answered: Vec<String> = serde_json::from_str(parent_done.result.as_deref().unwrap()).unwrap();
    let mut ran: Vec<String> = ran.iter().map(|c| c.id.clone()).collect();
    ran.sort();
    let mut answered = answered;
    answered.sort();
    assert_eq!(ran, answered);
    drop(stop);
    serving.await.unwrap();
}

async fn a_failed_parents_children_never_run(backend: Backend) {
    let t = crate::support::test_node(backend, Arc::new(wasmjob::clock::SystemClock), &[]).await;
    let node = Arc::new(t.node);
    for job in [wasmjob::examples::FAN_OUT, wasmjob::examples::ADDITION] {
        node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
    }
    let (stop, serving) = crate::support::serve(&node);
    let args = json!({ "n": 2, "fatal": true }).to_string();
    let parent = node.queue.queue(T, "fan-out", &args, &QueueOptions::default(), None).await.unwrap();
    assert_eq!(finished(&node, &parent).await.state, TaskState::Failure);
    let ended = children_ended(&node, &parent).await;
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|c| c.state == TaskState::Revoked && c.reason.as_deref() == Some("discarded")));
    // Discarded children give their tree's places back: it holds the root alone.
    assert!(node.store.grow_tree(&parent, 9_999, 10_000).await.unwrap(), "the discarded children still count");
    drop(stop);
    serving.await.unwrap();
}

/// By hand: a child is not claimable while its parent's attempt runs, and
/// is due, with its delay, once that attempt succeeds.
async fn a_child_waits_for_its_parents_attempt_and_keeps_its_delay(backend: Backend) {
    let place = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let node = open_node(&place, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &node.store;
    let now = clock.now_millis();
    let parent = node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    let lease = claim(store, "n", 10, now, now + 60_000).await.unwrap().tasks.remove(0).lease;
    let attempt = Parent { id: parent.clone(), root: parent.clone(), depth: 0, attempt: 1, queue: "default".into() };
    let delayed = QueueOptions { delay: Some(Duration::from_secs(5)), ..Default::default() };
    let child = node.queue.queue(T, "addition", "{}", &delayed, Some(&attempt)).await.unwrap();
    let waiting = store.task(&child).await.unwrap().unwrap();
    assert_eq!((waiting.state, waiting.reason.as_deref()), (TaskState::Queued, Some("parent")));
    assert!(claim(store, "n", 10, now + 3_600_000, now + 3_700_000).await.unwrap().tasks.is_empty());

    // The parent succeeds at now + 10 s: the child is due 5 s after that.
    clock.advance(Duration::from_secs(10));
    let ended = clock.now_millis();
    let mut done = success(&parent, &lease, ended, "0");
    done.children = true;
    store.complete(vec![done]).await.unwrap();
    let released = store.task(&child).await.unwrap().unwrap();
    assert_eq!((released.state, released.reason), (TaskState::Queued, None));
    assert_eq!(released.run_at, ended + 5_000);
    assert!(claim(store, "n", 10, ended + 4_999, ended + 60_000).await.unwrap().tasks.is_empty());
    assert_eq!(claim(store, "n", 10, ended + 5_000, ended + 60_000).await.unwrap().tasks[0].id, child);
}

/// By hand: the children of an attempt whose worker was lost are
/// discarded by the heartbeat's sweep, and so are those an attempt queues
/// after losing its lease, while the next attempt's wait for it.
async fn a_lost_attempts_children_are_discarded_and_the_next_attempts_kept(backend: Backend) {
    let place = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let node = open_node(&place, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &node.store;
    let now = clock.now_millis();
    let options = QueueOptions { max_retries: Some(3), ..Default::default() };
    let parent = node.queue.queue(T, "addition", "{}", &options, None).await.unwrap();
    claim(store, "lost", 10, now, now + 1_000).await.unwrap();
    let first = Parent { id: parent.clone(), root: parent.clone(), depth: 0, attempt: 1, queue: "default".into() };
    let early = node.queue.queue(T, "addition", "{}", &QueueOptions::default(), Some(&first)).await.unwrap();
    // Its worker is lost: rescued, and claimed again as attempt 2.
    clock.advance(Duration::from_secs(2));
    let now = clock.now_millis();
    assert_eq!(store.rescue(now, false, 3).await.unwrap().len(), 1);
    let second = claim(store, "n", 10, now, now + 60_000).await.unwrap().tasks.remove(0);
    assert_eq!(second.attempt, 2);
    // The lost worker, still running, queues one more; attempt 2 queues one.
    let zombie = node.queue.queue(T, "addition", "{}", &QueueOptions::default(), Some(&first)).await.unwrap();
    let next = Parent { attempt: 2, ..first.clone() };
    let kept = node.queue.queue(T, "addition", "{}", &QueueOptions::default(), Some(&next)).await.unwrap();
    assert_eq!(store.settle_children(now).await.unwrap(), (0, 2));
    for id in [&early, &zombie] {
        let task = store.task(id).await.unwrap().unwrap();
        assert_eq!((task.state, task.reason.as_deref()), (TaskState::Revoked, Some("discarded")), "{id}");
    }
    assert_eq!(store.task(&kept).await.unwrap().unwrap().reason.as_deref(), Some("parent"));
    assert_eq!(store.settle_children(now).await.unwrap(), (0, 0), "settled twice");
    // Attempt 2 succeeds without saying it queued (a lost flag): the sweep releases its child.
    let mut done = success(&parent, &second.lease, now, "0");
    done.attempt = 2;
    store.complete(vec![done]).await.unwrap();
    assert_eq!(store.settle_children(now).await.unwrap(), (1, 0));
    let filter = TaskFilter { state: Some(TaskState::Queued), ..Default::default() };
    let queued: Vec<String> = store.list_tasks(filter).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(queued, [kept]);
}

/// By hand: an attempt released at shutdown takes its children with it,
/// in the same write: the next claim reuses its attempt number, and only
/// that claim's children run.
async fn a_released_attempts_children_go_with_it(backend: Backend) {
    let place = crate::support::place(backend).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let node = open_node(&place, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let store = &node.store;
    let now = clock.now_millis();
    let parent = node.queue.queue(T, "addition", "{}", &QueueOptions::default(), None).await.unwrap();
    let first = claim(store, "stopping", 10, now, now + 60_000).await.unwrap().tasks.remove(0);
    let attempt = Parent { id: parent.clone(), root: parent.clone(), depth: 0, attempt: 1, queue: "default".into() };
    let old = node.queue.queue(T, "addition", "{}", &QueueOptions::default(), Some(&attempt)).await.unwrap();
    assert_eq!(store.release(vec![first.lease], now).await.unwrap(), 1);
    let gone = store.task(&old).await.unwrap().unwrap();
    assert_eq!((gone.state, gone.reason.as_deref()), (TaskState::Revoked, Some("discarded")));
    // Claimed again as attempt 1, it queues anew and succeeds: only the new child runs.
    let again = claim(store, "n", 10, now, now + 60_000).await.unwrap().tasks.remove(0);
    assert_eq!(again.attempt, 1);
    let new = node.queue.queue(T, "addition", "{}", &QueueOptions::default(), Some(&attempt)).await.unwrap();
    let mut done = success(&parent, &again.lease, now, "0");
    done.children = true;
    store.complete(vec![done]).await.unwrap();
    let claimed: Vec<String> =
        claim(store, "n", 10, now, now + 60_000).await.unwrap().tasks.into_iter().map(|t| t.id).collect();
    assert_eq!(claimed, [new]);
}

crate::conformance!(
    a_released_attempts_children_go_with_it,
    a_retried_attempts_children_are_discarded_and_the_successful_ones_run,
    a_failed_parents_children_never_run,
    a_child_waits_for_its_parents_attempt_and_keeps_its_delay,
    a_lost_attempts_children_are_discarded_and_the_next_attempts_kept,
);
