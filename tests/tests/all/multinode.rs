//! Three engine processes on one PostgreSQL database; one is killed with
//! SIGKILL midway. Every task ends, only the killed node's in-flight tasks
//! run twice, and no periodic tick runs twice.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use wasmjob::clock::SystemClock;
use wasmjob::store::{TaskFilter, TaskState};
use wasmjob::task::QueueOptions;
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::support::{Backend, EngineProcess, open_node, place};

const TASKS: usize = 10_000;

fn spawn_node(url: &str, id: &str, dir: &std::path::Path) -> EngineProcess {
    EngineProcess(
        Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
            .args(["serve", "--listen", "127.0.0.1:0", "--node-id", id, "--store", url, "--data"])
            .arg(dir.join(id))
            .env("WASMJOB_ADMIN_TOKEN", "wj_multinode_admin")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start an engine node"),
    )
}

async fn counts(node: &wasmjob::node::Node) -> HashMap<TaskState, u64> {
    let mut counts = HashMap::new();
    for (_, _, state, n) in node.store.count_by_state().await.unwrap() {
        *counts.entry(state).or_default() += n;
    }
    counts
}

async fn all_tasks(node: &wasmjob::node::Node, job: &str) -> Vec<wasmjob::store::TaskRecord> {
    let mut tasks = Vec::new();
    let mut before = None;
    loop {
        let filter =
            TaskFilter { job: Some(job.into()), limit: Some(1000), before_id: before.clone(), ..TaskFilter::default() };
        let page = node.store.list_tasks(filter).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        tasks.extend(page);
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_nothing_when_one_is_killed() {
    let place = place(Backend::Postgres).await;
    let url = place.url.clone().unwrap();
    let jobs = [wasmjob::examples::ADDITION, wasmjob::examples::SLEEPY, wasmjob::examples::EVERY_SECOND];
    let node = open_node(&place, Arc::new(SystemClock), &jobs).await;
    // Tasks that take a little time, so that the killed node has some in flight.
    let requests: Vec<_> = (0..TASKS)
        .map(|i| match i % 4 {
            0 => ("sleepy".to_owned(), r#"{"ms": 5}"#.to_owned(), QueueOptions::default()),
            _ => ("addition".to_owned(), format!(r#"{{"a": {i}, "b": 1}}"#), QueueOptions::default()),
        })
        .collect();
    for chunk in requests.chunks(1000) {
        assert!(node.queue.queue_many(T, chunk).await.unwrap().iter().all(Result::is_ok));
    }

    let nodes: Vec<_> = ["n1", "n2", "n3"].iter().map(|id| Some(spawn_node(&url, id, place.dir.path()))).collect();
    let mut nodes = nodes;
    let mut killed = false;
    for _ in 0..12_000 {
        let done = counts(&node).await.get(&TaskState::Success).copied().unwrap_or(0);
        if done as usize >= TASKS / 3 {
            drop(nodes[0].take()); // SIGKILL n1
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(killed, "the nodes never got a third of the way: {:?}", counts(&node).await);

    // The survivors rescue n1's tasks once its leases run out.
    let mut finished = false;
    for _ in 0..1200 {
        let c = counts(&node).await;
        let live = [TaskState::Queued, TaskState::Started, TaskState::Retry]
            .iter()
            .map(|s| c.get(s).copied().unwrap_or(0))
            .sum::<u64>();
        let periodic_live = all_tasks(&node, "every-second").await.iter().filter(|t| !t.state.is_terminal()).count();
        if live == periodic_live as u64 {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(nodes);
    assert!(finished, "not every task ended: {:?}", counts(&node).await);

    let mut ran_twice = 0;
    for job in ["addition", "sleepy"] {
        for task in all_tasks(&node, job).await {
            assert_eq!(task.state, TaskState::Success, "{task:?}");
            if task.attempt > 1 {
                ran_twice += 1;
                let lease = task.rescued_lease.as_deref().unwrap_or("");
                assert!(lease.starts_with("n1:"), "task {} ran twice but was not n1's: {lease}", task.id);
            }
        }
    }
    eprintln!("{ran_twice} of {TASKS} tasks ran twice, all of them in flight on the killed node");

    let mut ticks: Vec<i64> = all_tasks(&node, "every-second").await.iter().map(|t| t.queued_at).collect();
    ticks.sort();
    assert!(ticks.len() >= 2, "the scheduler did not tick: {ticks:?}");
    for pair in ticks.windows(2) {
        // Due every second: two ticks closer than that ran one due time twice.
        assert!(pair[1] - pair[0] >= 950, "two periodic ticks {} ms apart", pair[1] - pair[0]);
    }
}
