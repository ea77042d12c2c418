//! A node killed with SIGKILL mid-task loses nothing: on restart its
//! started tasks are rescued and every task reaches a terminal state.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use wasmjob::tenant::DEFAULT_TENANT as T;

use wasmjob::clock::SystemClock;
use wasmjob::store::TaskState;
use wasmjob::task::QueueOptions;

use crate::support::open_node;

/// An engine process, killed with SIGKILL when dropped (also when a test fails).
struct EngineProcess(Child);

impl EngineProcess {
    /// SIGKILL now, and reap the process.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_node(dir: &std::path::Path) -> EngineProcess {
    EngineProcess(
        Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
            .args(["serve", "--concurrency", "8", "--data"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the engine"),
    )
}

async fn counts(node: &wasmjob::node::Node) -> std::collections::HashMap<TaskState, u64> {
    let mut counts = std::collections::HashMap::new();
    for (_, _, state, n) in node.store.count_by_state().await.unwrap() {
        *counts.entry(state).or_default() += n;
    }
    counts
}

#[tokio::test]
async fn a_node_killed_mid_task_loses_no_task() {
    let dir = crate::support::place(crate::support::Backend::Sqlite).await;
    let node = open_node(&dir, Arc::new(SystemClock), &[wasmjob::examples::SLEEPY]).await;
    let requests: Vec<_> =
        (0..200).map(|_| ("sleepy".to_owned(), r#"{"ms": 20}"#.to_owned(), QueueOptions::default())).collect();
    let ids = node.queue.queue_many(T, &requests).await.unwrap();
    assert!(ids.iter().all(Result::is_ok));

    let engine = spawn_node(dir.dir.path());
    // Kill it once some tasks are done and others are running.
    let mut killed_mid_task = false;
    for _ in 0..3000 {
        let c = counts(&node).await;
        if c.get(&TaskState::Success).copied().unwrap_or(0) >= 20
            && c.get(&TaskState::Started).copied().unwrap_or(0) > 0
        {
            engine.kill();
            killed_mid_task = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(killed_mid_task, "never saw tasks both done and running: {:?}", counts(&node).await);
    let after_kill = counts(&node).await;
    assert!(after_kill.get(&TaskState::Started).copied().unwrap_or(0) > 0, "{after_kill:?}");

    let engine = spawn_node(dir.dir.path());
    let mut done = false;
    for _ in 0..6000 {
        let c = counts(&node).await;
        if c.get(&TaskState::Success).copied().unwrap_or(0) == 200 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.kill();
    assert!(done, "not every task succeeded: {:?}", counts(&node).await);
    let tasks =
        node.store.list_tasks(wasmjob::store::TaskFilter { limit: Some(1000), ..Default::default() }).await.unwrap();
    assert_eq!(tasks.len(), 200);
    let rescued = tasks.iter().filter(|t| t.attempt > 1).count();
    assert!(rescued > 0, "no task was rescued: the kill missed");
}

/// A worker whose lease was taken from it (its node lost the store for
/// longer than a lease, and another rescued the task) stops the task at its
/// next heartbeat instead of running it to an ending nobody would record.
#[tokio::test]
async fn a_worker_that_loses_its_lease_stops_the_task() {
    use wasmjob::store::TaskState;
    let place = crate::support::place(crate::support::Backend::Sqlite).await;
    let node = std::sync::Arc::new(
        crate::support::open_node(
            &place,
            std::sync::Arc::new(wasmjob::clock::SystemClock),
            &[wasmjob::examples::SLEEPY],
        )
        .await,
    );
    let (_stop, _serving) = crate::support::serve(&node);
    let options = wasmjob::task::QueueOptions::default();
    let id =
        node.queue.queue(wasmjob::tenant::DEFAULT_TENANT, "sleepy", r#"{"ms": 6000}"#, &options, None).await.unwrap();
    while node.store.task(&id).await.unwrap().unwrap().state != TaskState::Started {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Another node's sweep rescues it, as if this node's lease ran out.
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(node.store.rescue(now, true, wasmjob::retry::POISON_AFTER).await.unwrap().len(), 1);
    let task = crate::support::finished(&node, &id).await;
    assert_eq!((task.state, task.attempt), (TaskState::Success, 2));
    // The first attempt was stopped, not run to an ending: one attempt ended here.
    let metrics = node.metrics.render(&[], &[]);
    let ended = metrics.lines().find(|l| l.starts_with("wasmjob_tasks_ended_total") && l.contains("sleepy")).unwrap();
    assert!(ended.ends_with(" 1"), "{ended}");
}
