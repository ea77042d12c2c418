//! Helpers shared by the tests: one runtime per test binary, loading example
//! components, running tasks.

use std::sync::{Arc, LazyLock};

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
