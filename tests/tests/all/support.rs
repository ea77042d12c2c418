//! Helpers shared by the tests: one runtime per test binary, loading example
//! components, running tasks.

use std::sync::{Arc, LazyLock};
use wasmjob::tenant::DEFAULT_TENANT as T;

use wasmjob::runtime::{JobComponent, RecordingQueue, Runtime, RuntimeConfig, TaskInput, TaskReport};

/// One runtime for the whole binary: it is not tied to a tokio runtime, and
/// sharing it keeps the pooling allocator's reservations down.
pub static RUNTIME: LazyLock<Runtime> =
    LazyLock::new(|| Runtime::new(RuntimeConfig { max_instances: 200, ..RuntimeConfig::default() }).unwrap());

/// Loads an example component by path.
pub async fn load(path: &str) -> JobComponent {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    RUNTIME.load(&bytes).await.unwrap_or_else(|e| panic!("{path} was rejected: {e}"))
}

/// Runs one task of `job` with `args`, recording the tasks it queues.
pub async fn run(job: &JobComponent, args: &str) -> (TaskReport, Arc<RecordingQueue>) {
    let children = Arc::new(RecordingQueue::default());
    let input = TaskInput {
        task_id: "t1".into(),
        attempt: 1,
        args: args.into(),
        limits: RUNTIME.task_limits(job),
        children: children.clone(),
    };
    (RUNTIME.run(job, input).await, children)
}

/// Asserts that the engine still runs an ordinary task.
pub async fn assert_engine_still_works() {
    let addition = load(wasmjob::examples::ADDITION).await;
    let (report, _) = run(&addition, r#"{"a": 40, "b": 2}"#).await;
    assert_eq!(report.outcome, wasmjob::runtime::Outcome::Success { result: "42".into() });
}

/// A node on a fresh SQLite file in a temporary directory.
pub struct TestNode {
    pub node: wasmjob::node::Node,
    /// Keeps the directory until the node is dropped.
    _dir: tempfile::TempDir,
}

/// The config of a test node in `dir`: small pool, fast tree caps.
pub fn node_config(dir: &std::path::Path) -> wasmjob::node::NodeConfig {
    let mut config = wasmjob::node::NodeConfig::new(dir);
    config.runtime.max_instances = 100;
    config
}

/// Opens a test node with `clock`, registering the given example components.
pub async fn test_node(clock: Arc<dyn wasmjob::clock::Clock>, jobs: &[&str]) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let node = open_node(dir.path(), clock, jobs).await;
    TestNode { node, _dir: dir }
}

/// Opens a node on `dir` (not serving), registering `jobs`.
pub async fn open_node(
    dir: &std::path::Path,
    clock: Arc<dyn wasmjob::clock::Clock>,
    jobs: &[&str],
) -> wasmjob::node::Node {
    let node = wasmjob::node::Node::open_with_clock(node_config(dir), false, clock).await.unwrap();
    for job in jobs {
        node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
    }
    node
}

/// Runs `node`'s workers and scheduler in the background; drop the returned
/// sender (or send `true`) to stop them.
pub fn serve(node: &Arc<wasmjob::node::Node>) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let node = node.clone();
    let handle = tokio::spawn(async move { node.serve(shutdown).await.unwrap() });
    (stop, handle)
}

/// Waits (event-driven) for task `id` to finish; panics after a minute.
pub async fn finished(node: &wasmjob::node::Node, id: &str) -> wasmjob::store::TaskRecord {
    let task = node.queue.wait(id, std::time::Duration::from_secs(60)).await.unwrap().expect("the task exists");
    assert!(task.state.is_terminal(), "task {id} did not finish: {task:?}");
    task
}

/// The completion a worker would record for a task that succeeded with
/// `result` at `at` (for tests that drive the store by hand).
pub fn success(id: &str, lease: &str, at: i64, result: &str) -> wasmjob::store::Completion {
    wasmjob::store::Completion {
        id: id.into(),
        lease: lease.into(),
        state: wasmjob::store::TaskState::Success,
        reason: "success".into(),
        result: Some(result.into()),
        error: None,
        fuel: 1,
        wall_time_us: 1,
        log: String::new(),
        finished_at: at,
        retry_at: None,
    }
}

/// Claims up to `limit` due tasks for `node`, as a worker with free slots
/// for every tenant would.
pub async fn claim(
    store: &Arc<dyn wasmjob::store::Store>,
    node: &str,
    limit: usize,
    now: i64,
    lease_until: i64,
) -> Result<wasmjob::store::Claim, wasmjob::store::StoreError> {
    let request = wasmjob::store::ClaimRequest {
        node: node.into(),
        limit,
        now,
        lease_until,
        slots: Default::default(),
        default_slots: usize::MAX,
    };
    store.claim(request).await
}
