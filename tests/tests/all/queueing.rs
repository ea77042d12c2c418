//! The task state machine on a real SQLite file: queue, run, retry, fail,
//! revoke, expire; children and their caps.

use crate::support::Backend;
use std::sync::Arc;
use std::time::Duration;
use wasmjob::tenant::DEFAULT_TENANT as T;

use chrono::Utc;
use wasmjob::clock::{ManualClock, SystemClock};
use wasmjob::store::{TaskFilter, TaskState};
use wasmjob::task::{QueueError, QueueOptions};

use crate::support::{finished, serve, test_node};

fn opts() -> QueueOptions {
    QueueOptions::default()
}

async fn a_task_goes_from_queued_to_started_to_success(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::ADDITION]).await;
    let node = Arc::new(t.node);
    let id = node.queue.queue(T, "addition", r#"{"a": 2, "b": 3}"#, &opts(), None).await.unwrap();
    let queued = node.store.task(&id).await.unwrap().unwrap();
    assert_eq!((queued.state, queued.attempt), (TaskState::Queued, 0));
    let (_stop, _serving) = serve(&node);
    let task = finished(&node, &id).await;
    assert_eq!(task.state, TaskState::Success);
    assert_eq!(task.reason.as_deref(), Some("success"));
    assert_eq!(task.result.as_deref(), Some("5"));
    assert_eq!(task.attempt, 1);
    assert!(task.fuel.unwrap() > 0);
    assert!(task.started_at.unwrap() >= task.queued_at && task.finished_at.unwrap() >= task.started_at.unwrap());
    assert_eq!(task.version, node.registry.get(T, "addition").unwrap().component.hash());
}

async fn a_task_refused_by_the_queue_rate_is_not_queued_and_takes_no_tokens(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let quotas = serde_json::json!({ "queue_rate": 1.0, "queue_burst": 3.0 });
    t.node.tenants.create("metered", quotas.as_object().unwrap().clone()).await.unwrap();
    t.node.registry.register("metered", &std::fs::read(wasmjob::examples::ADDITION).unwrap(), 10).await.unwrap();
    let queue = |n: usize| {
        let requests = vec![("addition".to_owned(), "{}".to_owned(), opts()); n];
        let queue = t.node.queue.clone();
        async move { queue.queue_many("metered", &requests).await.unwrap() }
    };
    let count = || async {
        let filter = TaskFilter { tenant: Some("metered".into()), limit: Some(100), ..TaskFilter::default() };
        t.node.store.list_tasks(filter).await.unwrap().len()
    };
    // Four at once is over the burst: refused whole, nothing queued.
    let refused = queue(4).await;
    assert!(refused.iter().all(|r| matches!(r, Err(QueueError::QuotaExceeded(m)) if m.contains("queue_rate"))));
    assert_eq!(count().await, 0);
    // The bucket kept its tokens: three pass, one alone does not.
    assert!(queue(3).await.iter().all(Result::is_ok));
    let one = t.node.queue.queue("metered", "addition", "{}", &opts(), None).await.unwrap_err();
    assert!(matches!(one, wasmjob::queue::QueueFailure::Rejected(QueueError::QuotaExceeded(_))), "{one:?}");
    assert_eq!(count().await, 3);
    // A second later, one token more.
    clock.advance(Duration::from_secs(1));
    t.node.queue.queue("metered", "addition", "{}", &opts(), None).await.unwrap();
    assert_eq!(count().await, 4);
}

async fn finished_tasks_are_pruned_past_their_tenants_retention_and_no_other(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let node = Arc::new(t.node);
    let month = serde_json::json!({ "retention_ms": 30u64 * 24 * 3600 * 1000 });
    node.tenants.create("keeper", month.as_object().unwrap().clone()).await.unwrap();
    let addition = std::fs::read(wasmjob::examples::ADDITION).unwrap();
    node.registry.register("keeper", &addition, 10).await.unwrap();
    let mut done = Vec::new();
    for tenant in [T, T, T, "keeper"] {
        done.push(node.queue.queue(tenant, "addition", "{}", &opts(), None).await.unwrap());
    }
    let later = QueueOptions { delay: Some(Duration::from_secs(365 * 24 * 3600)), ..opts() };
    let waiting = node.queue.queue(T, "addition", "{}", &later, None).await.unwrap();
    {
        let (_stop, _serving) = serve(&node);
        for id in &done {
            assert_eq!(finished(&node, id).await.state, TaskState::Success);
        }
    }
    let (pruner, defaults) = (wasmjob::retention::Pruner::default(), node.tenants.defaults().clone());
    let quotas = node.tenants.list().into_iter().collect();
    let prune = |at: chrono::DateTime<Utc>| {
        let (pruner, store, quotas, defaults) = (&pruner, &node.store, &quotas, &defaults);
        async move { pruner.prune(&**store, quotas, defaults, at.timestamp_millis()).await.unwrap() }
    };
    // Within the default retention (7 days), nothing goes.
    assert_eq!(prune(Utc::now() + chrono::Duration::days(6)).await, 0);
    // Past it, the default tenant's finished tasks go; the waiting one and
    // the tenant that keeps its tasks a month keep theirs.
    assert_eq!(prune(Utc::now() + chrono::Duration::days(8)).await, 3);
    for id in &done[..3] {
        assert!(node.store.task(id).await.unwrap().is_none(), "task {id} is still there");
    }
    assert!(node.store.task(&done[3]).await.unwrap().is_some());
    assert_eq!(node.store.task(&waiting).await.unwrap().unwrap().state, TaskState::Queued);
    assert_eq!(prune(Utc::now() + chrono::Duration::days(31)).await, 1);
    assert!(node.store.task(&waiting).await.unwrap().is_some());
}

async fn an_unknown_job_is_an_error_and_names_are_case_insensitive(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::ADDITION]).await;
    let err = t.node.queue.queue(T, "subtraction", "{}", &opts(), None).await.unwrap_err();
    assert!(matches!(err, wasmjob::queue::QueueFailure::Rejected(QueueError::UnknownJob(j)) if j == "subtraction"));
    let id = t.node.queue.queue(T, "Addition", "{}", &opts(), None).await.unwrap();
    assert_eq!(t.node.store.task(&id).await.unwrap().unwrap().job, "addition");
}

async fn args_that_are_not_an_object_are_refused_at_queue_time(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::ADDITION]).await;
    let err = t.node.queue.queue(T, "addition", "[1]", &opts(), None).await.unwrap_err();
    assert!(matches!(err, wasmjob::queue::QueueFailure::Rejected(QueueError::InvalidArgs(_))));
}

async fn a_fatal_error_fails_at_once(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::FLAKY]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    let id = node.queue.queue(T, "flaky", r#"{"fatal": true}"#, &opts(), None).await.unwrap();
    let task = finished(&node, &id).await;
    assert_eq!((task.state, task.attempt), (TaskState::Failure, 1));
    assert_eq!(task.reason.as_deref(), Some("fatal-error"));
    assert!(task.error.unwrap().contains("told to fail"));
}

async fn a_failed_or_revoked_task_retried_by_hand_runs_once_more(backend: Backend) {
    use wasmjob::store::Retried;
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::FLAKY, wasmjob::examples::ADDITION]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    let id = node.queue.queue(T, "flaky", r#"{"fatal": true}"#, &opts(), None).await.unwrap();
    assert_eq!(finished(&node, &id).await.state, TaskState::Failure);
    assert_eq!(node.queue.retry(T, &id).await.unwrap(), Retried::Queued);
    let again = finished(&node, &id).await;
    // One more attempt, and no more: the job's error is fatal.
    assert_eq!((again.state, again.attempt), (TaskState::Failure, 2));
    // A revoked task that was waiting for a later time runs now.
    let later = QueueOptions { delay: Some(Duration::from_secs(3600)), ..opts() };
    let revoked = node.queue.queue(T, "addition", r#"{"a": 1, "b": 1}"#, &later, None).await.unwrap();
    node.queue.revoke(&revoked).await.unwrap();
    assert_eq!(node.queue.retry(T, &revoked).await.unwrap(), Retried::Queued);
    let ran = finished(&node, &revoked).await;
    assert_eq!((ran.state, ran.result.as_deref()), (TaskState::Success, Some("2")));
    // A task that succeeded, or does not exist, is not retried.
    assert_eq!(node.queue.retry(T, &revoked).await.unwrap(), Retried::Not(TaskState::Success));
    assert_eq!(node.queue.retry(T, "999999999").await.unwrap(), Retried::Missing);
}

async fn retryable_errors_are_retried_until_success(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::FLAKY]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    // flaky: max 2 retries, backoff from 10 ms.
    let id = node.queue.queue(T, "flaky", r#"{"succeed_at": 3}"#, &opts(), None).await.unwrap();
    let task = finished(&node, &id).await;
    assert_eq!((task.state, task.attempt, task.result.as_deref()), (TaskState::Success, 3, Some("3")));
}

async fn retries_stop_at_max_retries(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::FLAKY]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    let id = node.queue.queue(T, "flaky", r#"{"succeed_at": 10}"#, &opts(), None).await.unwrap();
    let task = finished(&node, &id).await;
    assert_eq!((task.state, task.attempt), (TaskState::Failure, 3));
    assert_eq!(task.reason.as_deref(), Some("retryable-error"));
    // A per-task override of max_retries.
    let once = QueueOptions { max_retries: Some(0), ..opts() };
    let id = node.queue.queue(T, "flaky", r#"{"succeed_at": 10}"#, &once, None).await.unwrap();
    assert_eq!(finished(&node, &id).await.attempt, 1);
}

async fn a_retry_waits_for_its_backoff(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::FLAKY]).await;
    let store = &t.node.store;
    let id = t.node.queue.queue(T, "flaky", r#"{"succeed_at": 2}"#, &opts(), None).await.unwrap();
    let now = clock.now_millis();
    let claim = crate::support::claim(store, "n", 10, now, now + 60_000).await.unwrap();
    assert_eq!(claim.tasks.len(), 1);
    let completion = wasmjob::store::Completion {
        state: TaskState::Retry,
        reason: "retryable-error".into(),
        result: None,
        error: Some("busy".into()),
        retry_at: Some(now + 1000),
        ..crate::support::success(&id, &claim.tasks[0].lease, now, "null")
    };
    assert_eq!(store.complete(vec![completion]).await.unwrap(), [(id.clone(), TaskState::Retry)]);
    assert_eq!(store.task(&id).await.unwrap().unwrap().state, TaskState::Retry);
    assert!(
        crate::support::claim(store, "n", 10, now + 999, now + 60_000).await.unwrap().tasks.is_empty(),
        "claimed before its backoff"
    );
    let again = crate::support::claim(store, "n", 10, now + 1000, now + 60_000).await.unwrap();
    assert_eq!((again.tasks.len(), again.tasks[0].attempt), (1, 2));
}

use wasmjob::clock::Clock as _;

async fn a_task_that_does_not_start_before_its_expiry_is_revoked_and_never_runs(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let expiring = QueueOptions { expiry: Some(Duration::from_secs(10)), ..opts() };
    let id = t.node.queue.queue(T, "addition", "{}", &expiring, None).await.unwrap();
    let keeper = t.node.queue.queue(T, "addition", "{}", &opts(), None).await.unwrap();
    clock.advance(Duration::from_secs(11));
    let now = clock.now_millis();
    // Past its expiry, no claim takes it, even before the sweep revokes it.
    let claim = crate::support::claim(&t.node.store, "n", 10, now, now + 60_000).await.unwrap();
    assert_eq!(claim.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), vec![keeper]);
    let expired: Vec<String> = t.node.store.expire(now).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(expired, vec![id.clone()]);
    let task = t.node.store.task(&id).await.unwrap().unwrap();
    assert_eq!((task.state, task.reason.as_deref(), task.attempt), (TaskState::Revoked, Some("expired"), 0));
}

async fn a_delayed_task_does_not_start_before_its_delay(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let later = QueueOptions { delay: Some(Duration::from_secs(5)), ..opts() };
    t.node.queue.queue(T, "addition", "{}", &later, None).await.unwrap();
    let now = clock.now_millis();
    let claim = crate::support::claim(&t.node.store, "n", 10, now, now + 60_000).await.unwrap();
    assert!(claim.tasks.is_empty());
    assert_eq!(claim.next_run_at, Some(now + 5000));
    let claim = crate::support::claim(&t.node.store, "n", 10, now + 5000, now + 60_000).await.unwrap();
    assert_eq!(claim.tasks.len(), 1);
}

async fn higher_priority_tasks_are_claimed_first(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let low = t.node.queue.queue(T, "addition", "{}", &opts(), None).await.unwrap();
    let high = QueueOptions { priority: Some(5), ..opts() };
    let high = t.node.queue.queue(T, "addition", "{}", &high, None).await.unwrap();
    let now = clock.now_millis();
    let claim = crate::support::claim(&t.node.store, "n", 1, now, now + 60_000).await.unwrap();
    assert_eq!(claim.tasks[0].id, high);
    let claim = crate::support::claim(&t.node.store, "n", 1, now, now + 60_000).await.unwrap();
    assert_eq!(claim.tasks[0].id, low);
}

async fn a_user_revokes_a_queued_task_and_it_never_runs(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::ADDITION]).await;
    let later = QueueOptions { delay: Some(Duration::from_secs(3600)), ..opts() };
    let id = t.node.queue.queue(T, "addition", "{}", &later, None).await.unwrap();
    assert_eq!(t.node.queue.revoke(&id).await.unwrap(), Some(wasmjob::queue::Revoked::Ended(TaskState::Revoked)));
    let task = t.node.store.task(&id).await.unwrap().unwrap();
    assert_eq!((task.reason.as_deref(), task.attempt), (Some("revoked"), 0));
    assert_eq!(t.node.queue.revoke("999999").await.unwrap(), None);
}

async fn a_stale_worker_cannot_complete_a_rescued_task(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let id = t.node.queue.queue(T, "addition", "{}", &opts(), None).await.unwrap();
    let now = clock.now_millis();
    let stale = crate::support::claim(&t.node.store, "dead", 1, now, now + 1000).await.unwrap().tasks.remove(0);
    assert_eq!(t.node.store.rescue(now + 1001, false, wasmjob::retry::POISON_AFTER).await.unwrap().len(), 1);
    let task = t.node.store.task(&id).await.unwrap().unwrap();
    assert_eq!((task.state, task.reason.as_deref()), (TaskState::Retry, Some("lease-expired")));
    let fresh =
        crate::support::claim(&t.node.store, "alive", 1, now + 1001, now + 60_000).await.unwrap().tasks.remove(0);
    assert_eq!(fresh.attempt, 2);
    let done = |lease: String| crate::support::success(&id, &lease, now + 2000, "0");
    assert!(t.node.store.complete(vec![done(stale.lease)]).await.unwrap().is_empty(), "the stale lease was honoured");
    assert_eq!(t.node.store.complete(vec![done(fresh.lease)]).await.unwrap().len(), 1);
}

async fn children_record_from_task_and_root(backend: Backend) {
    let t = test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::ADDITION, wasmjob::examples::FAN_OUT]).await;
    let node = Arc::new(t.node);
    let (_stop, _serving) = serve(&node);
    let id = node.queue.queue(T, "fan-out", r#"{"n": 3}"#, &opts(), None).await.unwrap();
    let parent = finished(&node, &id).await;
    let ids: Vec<String> = serde_json::from_str(parent.result.as_deref().unwrap()).unwrap();
    assert_eq!(ids.len(), 3);
    for child in ids {
        let child = finished(&node, &child).await;
        assert_eq!(child.state, TaskState::Success);
        assert_eq!(child.from_task.as_deref(), Some(id.as_str()));
        assert_eq!(child.root_task.as_deref(), Some(id.as_str()));
        assert_eq!(child.depth, 1);
    }
}

async fn a_fork_bomb_is_stopped_by_the_tree_caps(backend: Backend) {
    let dir = crate::support::place(backend).await;
    let mut config = crate::support::node_config(&dir);
    config.caps = wasmjob::queue::TreeCaps { max_depth: 2, max_children: 4, ..Default::default() };
    let node = wasmjob::node::Node::open(config, false).await.unwrap();
    node.registry.register(T, &std::fs::read(wasmjob::examples::FORK_BOMB).unwrap(), usize::MAX).await.unwrap();
    let node = Arc::new(node);
    let (_stop, _serving) = serve(&node);
    let root = node.queue.queue(T, "fork-bomb", "{}", &opts(), None).await.unwrap();
    let root_task = finished(&node, &root).await;
    // Each task queues at most 4 children; depth 2 is the last level.
    assert_eq!(root_task.result.as_deref(), Some("4"));
    assert!(root_task.log.unwrap().contains("quota exceeded"));
    let filter = TaskFilter { job: Some("fork-bomb".into()), limit: Some(1000), ..TaskFilter::default() };
    let mut tasks = node.store.list_tasks(filter.clone()).await.unwrap();
    while tasks.iter().any(|t| !t.state.is_terminal()) {
        let pending = tasks.iter().find(|t| !t.state.is_terminal()).unwrap().id.clone();
        finished(&node, &pending).await;
        tasks = node.store.list_tasks(filter.clone()).await.unwrap();
    }
    assert_eq!(tasks.len(), 1 + 4 + 16);
    assert!(tasks.iter().all(|t| t.state == TaskState::Success && t.depth <= 2));
    let leaf = tasks.iter().find(|t| t.depth == 2).unwrap();
    assert_eq!(leaf.result.as_deref(), Some("0"));
    assert!(leaf.log.as_deref().unwrap().contains("deeper than 2"), "{:?}", leaf.log);
}

async fn a_claim_never_takes_more_than_it_asks_from_a_deep_queue(backend: Backend) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let t = test_node(backend, clock.clone(), &[wasmjob::examples::ADDITION]).await;
    let batch = vec![("addition".to_owned(), "{}".to_owned(), opts()); 1000];
    for _ in 0..5 {
        assert!(t.node.queue.queue_many(T, &batch).await.unwrap().iter().all(|a| a.is_ok()));
    }
    let (now, mut claimed) = (clock.now_millis(), 0);
    for limit in [1, 100, 128, 7] {
        let claim = crate::support::claim(&t.node.store, "n", limit, now, now + 60_000).await.unwrap();
        assert_eq!(claim.tasks.len(), limit);
        claimed += limit;
    }
    let started = TaskFilter { state: Some(TaskState::Started), limit: Some(1000), ..TaskFilter::default() };
    assert_eq!(t.node.store.list_tasks(started).await.unwrap().len(), claimed);
}

async fn a_node_running_long_tasks_claims_none_ahead_of_its_slots(backend: Backend) {
    let place = crate::support::place(backend).await;
    let mut config = crate::support::node_config(&place);
    config.concurrency = 2;
    let node = Arc::new(wasmjob::node::Node::open_with_clock(config, false, Arc::new(SystemClock)).await.unwrap());
    node.registry.register(T, &std::fs::read(wasmjob::examples::SLEEPY).unwrap(), usize::MAX).await.unwrap();
    let batch = vec![("sleepy".to_owned(), r#"{"ms": 150}"#.to_owned(), opts()); 8];
    let ids: Vec<String> = node.queue.queue_many(T, &batch).await.unwrap().into_iter().map(Result::unwrap).collect();
    let (_stop, _serving) = serve(&node);
    // Tasks of 150 ms are not short: the node claims only what it can run,
    // leaving the rest to other nodes (and to later, fairer claims). Judged
    // on the tasks' own times, not on how many the store shows `started`
    // at a moment: an ending is written after its slot frees, so a task
    // that ended may still show `started` beside the one claimed for its
    // slot.
    let mut tasks = Vec::new();
    for id in &ids {
        loop {
            let task = node.store.task(id).await.unwrap().unwrap();
            if task.state == TaskState::Success {
                break tasks.push(task);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut claimed: Vec<i64> = tasks.iter().map(|t| t.started_at.unwrap()).collect();
    let mut ended: Vec<i64> = tasks.iter().map(|t| t.finished_at.unwrap()).collect();
    claimed.sort_unstable();
    ended.sort_unstable();
    // With 2 slots, the k-th claim (from 0) comes after k - 1 tasks ended.
    for k in 2..claimed.len() {
        assert!(
            claimed[k] >= ended[k - 2],
            "task {k} was claimed at {} before {} tasks had ended (ends: {ended:?}): claimed ahead of its slots",
            claimed[k],
            k - 1
        );
    }
}

crate::conformance!(
    finished_tasks_are_pruned_past_their_tenants_retention_and_no_other,
    a_failed_or_revoked_task_retried_by_hand_runs_once_more,
    a_task_refused_by_the_queue_rate_is_not_queued_and_takes_no_tokens,
    a_node_running_long_tasks_claims_none_ahead_of_its_slots,
    a_claim_never_takes_more_than_it_asks_from_a_deep_queue,
    a_task_goes_from_queued_to_started_to_success,
    an_unknown_job_is_an_error_and_names_are_case_insensitive,
    args_that_are_not_an_object_are_refused_at_queue_time,
    a_fatal_error_fails_at_once,
    retryable_errors_are_retried_until_success,
    retries_stop_at_max_retries,
    a_retry_waits_for_its_backoff,
    a_task_that_does_not_start_before_its_expiry_is_revoked_and_never_runs,
    a_delayed_task_does_not_start_before_its_delay,
    higher_priority_tasks_are_claimed_first,
    a_user_revokes_a_queued_task_and_it_never_runs,
    a_stale_worker_cannot_complete_a_rescued_task,
    children_record_from_task_and_root,
    a_fork_bomb_is_stopped_by_the_tree_caps,
);
