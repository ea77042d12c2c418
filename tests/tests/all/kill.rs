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
    node.store.count_by_state().await.unwrap().into_iter().map(|(_, state, n)| (state, n)).collect()
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
