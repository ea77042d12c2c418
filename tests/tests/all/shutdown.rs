//! Graceful shutdown: stop claiming, let running tasks finish within the
//! grace period, put the rest back in line.

use std::sync::Arc;
use std::time::Duration;
use wasmjob::tenant::DEFAULT_TENANT as T;

use wasmjob::clock::SystemClock;
use wasmjob::store::{TaskFilter, TaskState};
use wasmjob::task::QueueOptions;

use crate::support::{node_config, open_node};

async fn wait_until_started(node: &wasmjob::node::Node, n: usize) {
    for _ in 0..6000 {
        let filter = TaskFilter { state: Some(TaskState::Started), ..TaskFilter::default() };
        if node.store.list_tasks(filter).await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the tasks never started");
}

#[tokio::test]
async fn shutdown_lets_running_tasks_finish_and_claims_no_more() {
    let dir = crate::support::place(crate::support::Backend::Sqlite).await;
    let node = Arc::new(open_node(&dir, Arc::new(SystemClock), &[wasmjob::examples::SLEEPY]).await);
    let o = QueueOptions::default();
    let running = node.queue.queue(T, "sleepy", r#"{"ms": 300}"#, &o, None).await.unwrap();
    let (stop, serving) = crate::support::serve(&node);
    wait_until_started(&node, 1).await;
    let waiting = node
        .queue
        .queue(T, "sleepy", r#"{"ms": 0}"#, &QueueOptions { delay: Some(Duration::from_millis(500)), ..o }, None)
        .await
        .unwrap();
    stop.send(true).unwrap();
    serving.await.unwrap();
    assert_eq!(node.store.task(&running).await.unwrap().unwrap().state, TaskState::Success);
    assert_eq!(node.store.task(&waiting).await.unwrap().unwrap().state, TaskState::Queued);
}

#[tokio::test]
async fn tasks_still_running_after_the_grace_period_are_put_back_in_line() {
    let dir = crate::support::place(crate::support::Backend::Sqlite).await;
    let mut config = node_config(&dir);
    config.grace = Duration::from_millis(50);
    let node = wasmjob::node::Node::open(config, false).await.unwrap();
    node.registry.register(T, &std::fs::read(wasmjob::examples::SLEEPY).unwrap(), usize::MAX).await.unwrap();
    let node = Arc::new(node);
    let id = node.queue.queue(T, "sleepy", r#"{"ms": 60000}"#, &QueueOptions::default(), None).await.unwrap();
    let (stop, serving) = crate::support::serve(&node);
    wait_until_started(&node, 1).await;
    stop.send(true).unwrap();
    serving.await.unwrap();
    let task = node.store.task(&id).await.unwrap().unwrap();
    assert_eq!(
        (task.state, task.attempt, task.reason.as_deref()),
        (TaskState::Queued, 0, Some("released-at-shutdown"))
    );
}
