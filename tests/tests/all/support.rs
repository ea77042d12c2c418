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
        progress: std::sync::Arc::new(wasmjob::runtime::NoProgress),
        egress: wasmjob::egress::Grant::default(),
        secrets: Default::default(),
    };
    (RUNTIME.run(job, input).await, children)
}

/// Asserts that the engine still runs an ordinary task.
pub async fn assert_engine_still_works() {
    let addition = load(wasmjob::examples::ADDITION).await;
    let (report, _) = run(&addition, r#"{"a": 40, "b": 2}"#).await;
    assert_eq!(report.outcome, wasmjob::runtime::Outcome::Success { result: "42".into() });
}

/// The stores the conformance tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server of the tests: `WASMJOB_TEST_POSTGRES_URL`, by
/// default the local server's `test` database.
pub fn postgres_url() -> String {
    std::env::var("WASMJOB_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Where a test's store lives, so that it can be opened again (a restart):
/// a temporary directory, and for PostgreSQL a fresh schema of its own.
pub struct Place {
    pub dir: tempfile::TempDir,
    pub url: Option<String>,
}

/// A fresh place for `backend`.
pub async fn place(backend: Backend) -> Place {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let schema = format!("wjt_{}_{n}", std::process::id());
            let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {} (set WASMJOB_TEST_POSTGRES_URL): {e}", postgres_url()));
            tokio::spawn(connection);
            // Once per test process, drop what earlier runs left behind.
            static CLEANED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !CLEANED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let mine = format!("wjt_{}_%", std::process::id());
                let sql = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'wjt%' AND nspname NOT LIKE $1";
                for row in client.query(sql, &[&mine]).await.unwrap() {
                    let name: String = row.get(0);
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await.unwrap();
                }
            }
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
                .await
                .unwrap();
            let sep = if postgres_url().contains('?') { '&' } else { '?' };
            Some(format!("{}{sep}options=-c%20search_path%3D{schema}", postgres_url()))
        }
    };
    Place { dir, url }
}

/// A test node and where its store lives.
pub struct TestNode {
    pub node: wasmjob::node::Node,
    /// Keeps the store until the node is dropped.
    _place: Place,
}

/// The config of a test node at `place`: a small pool.
pub fn node_config(place: &Place) -> wasmjob::node::NodeConfig {
    let mut config = wasmjob::node::NodeConfig::new(place.dir.path());
    config.runtime.max_instances = 100;
    config.store_url = place.url.clone();
    config
}

/// Opens a test node on a fresh `backend` store with `clock`, registering
/// the given example components.
pub async fn test_node(backend: Backend, clock: Arc<dyn wasmjob::clock::Clock>, jobs: &[&str]) -> TestNode {
    let place = place(backend).await;
    let node = open_node(&place, clock, jobs).await;
    TestNode { node, _place: place }
}

/// Opens a node at `place` (not serving), registering `jobs`.
pub async fn open_node(place: &Place, clock: Arc<dyn wasmjob::clock::Clock>, jobs: &[&str]) -> wasmjob::node::Node {
    let node = wasmjob::node::Node::open_with_clock(node_config(place), false, clock).await.unwrap();
    for job in jobs {
        node.registry.register(T, &std::fs::read(job).unwrap(), usize::MAX).await.unwrap();
    }
    node
}

/// An engine process (`wasmjob serve` run by a test), killed with SIGKILL
/// when dropped, also when the test fails.
pub struct EngineProcess(pub std::process::Child);

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Instantiates conformance tests, `async fn name(backend: Backend)`, once
/// per store.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::support::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::support::Backend::Postgres).await })*
        }
    };
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
        tenant: "tests".into(),
        job: "tests".into(),
        attempt: 1,
        lease: lease.into(),
        state: wasmjob::store::TaskState::Success,
        reason: "success".into(),
        result: Some(result.into()),
        error: None,
        fuel: 1,
        wall_time_us: 1,
        http: Default::default(),
        log: String::new(),
        finished_at: at,
        retry_at: None,
        children: false,
        workflow: false,
    }
}

/// Claims up to `limit` due tasks for `node`, as a worker would for whom
/// every tenant may run any number of tasks.
pub async fn claim(
    store: &Arc<dyn wasmjob::store::Store>,
    node: &str,
    limit: usize,
    now: i64,
    lease_until: i64,
) -> Result<wasmjob::store::Claim, wasmjob::store::StoreError> {
    let request = wasmjob::store::ClaimRequest {
        queues: None,
        node: node.into(),
        limit,
        now,
        lease_until,
        max_running: store.tenants().await?.into_iter().map(|t| (t.name, usize::MAX)).collect(),
    };
    store.claim(request).await
}
