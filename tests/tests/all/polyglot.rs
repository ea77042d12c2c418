//! Jobs written in Python (componentize-py) and JavaScript (componentize-js):
//! the examples under `examples/python/` and `examples/js/`, built by
//! `tests/build.rs` with their own toolchains, behave as the Rust ones do,
//! in the sandbox and through the engine; each language's helper computes
//! pulsar's `is_due` as the Rust SDK does.

use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use wasmjob::runtime::Outcome;

use crate::support::{load, run};

include!(concat!(env!("OUT_DIR"), "/polyglot.rs"));

/// (language, regular job, periodic job, the regular job's name).
const LANGUAGES: [(&str, &str, &str, &str); 2] = [
    ("python", POLYGLOT_PYTHON_ADDITION, POLYGLOT_PYTHON_TICK, "addition-py"),
    ("js", POLYGLOT_JS_ADDITION, POLYGLOT_JS_TICK, "addition-js"),
];

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn passes(mut command: Command, what: &str) {
    let output = command.current_dir(root()).output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_python_helper_passes_the_shared_is_due_table() {
    let mut python = Command::new("python3");
    python.arg("examples/python/test_wasmjob.py");
    passes(python, "the Python helper's tests");
}

#[test]
fn the_javascript_helper_passes_the_shared_is_due_table() {
    let mut node = Command::new("node");
    node.arg("examples/js/test.mjs");
    passes(node, "the JavaScript helper's tests");
}

#[tokio::test]
async fn a_regular_job_adds_logs_queues_a_child_and_fails_as_told_in_every_language() {
    for (language, addition, _, name) in LANGUAGES {
        let job = load(addition).await;
        assert_eq!(job.metadata().name, name, "{language}");

        let (report, children) = run(&job, r#"{"a": 40, "b": 2, "then": 1}"#).await;
        assert_eq!(report.outcome, Outcome::Success { result: "42".into() }, "{language}: {}", report.log);
        assert!(report.log.contains("40 + 2 = 42"), "{language}: the log was {:?}", report.log);
        let children = children.children();
        assert_eq!(children.len(), 1, "{language}");
        let (_, child) = &children[0];
        assert_eq!((child.job.as_str(), child.from_task.as_str()), (name, "t1"), "{language}");
        let args: serde_json::Value = serde_json::from_str(&child.args).unwrap();
        assert_eq!(args, json!({"a": 42, "b": 2, "then": 0}), "{language}");

        let (flaky, _) = run(&job, r#"{"a": 1, "flaky": 2}"#).await;
        assert_eq!(flaky.outcome, Outcome::RetryableError { message: "attempt 1 failed".into() }, "{language}");
        let (bad, _) = run(&job, r#"{"a": "forty"}"#).await;
        assert_eq!(bad.outcome, Outcome::FatalError { message: "a and b must be integers".into() }, "{language}");
    }
}

#[tokio::test]
async fn a_periodic_job_is_due_as_the_rust_sdk_computes_it_in_every_language() {
    let at = |ms: i64| -> DateTime<Utc> { Utc.timestamp_millis_opt(ms).unwrap() };
    let t0 = 1_800_000_000_000; // a whole minute
    // (last run, now): before, at and after the next minute, late, clock back.
    let moments = [(t0, t0), (t0, t0 + 59_999), (t0, t0 + 60_000), (t0 + 5, t0 + 61_000), (t0, t0 + 3_600_123)];
    for (language, _, tick, _) in LANGUAGES {
        let job = load(tick).await;
        // Built against the contract before the newest: it still runs.
        assert_eq!(job.contract(), "0.2.0", "{language}");
        let wasmjob::job::JobKind::Periodic(schedule) = job.metadata().kind.clone() else {
            panic!("{language}: tick is not periodic");
        };
        let (every, anchor) = (schedule.run_every, schedule.anchor);
        assert_eq!((every, anchor.map(|a| a.timestamp_millis())), (Duration::from_secs(60), Some(0)), "{language}");
        for (last, now) in moments.into_iter().chain([(t0 + 1, t0 - 1_000)]) {
            let got = crate::support::RUNTIME.is_due(&job, at(last), at(now)).await.unwrap();
            let want = wasmjob_sdk::schedule::is_due(every, Some(0), last, now);
            assert_eq!(
                (got.is_due, got.next_run_in),
                (want.is_due, Duration::from_millis(want.next_run_in)),
                "{language}: last {last}, now {now}"
            );
        }
        let (report, _) = run(&job, "{}").await;
        assert!(matches!(report.outcome, Outcome::Success { .. }), "{language}: {:?}", report.outcome);
        assert!(report.log.contains("tick at "), "{language}: the log was {:?}", report.log);
    }
}

#[tokio::test]
async fn python_and_javascript_jobs_run_through_the_engine_with_their_children() {
    let api = crate::api_support::Api::start(4).await;
    let (token, _) = api.tenant("polyglot", json!({})).await;
    for (language, addition, _, name) in LANGUAGES {
        let uploaded = api.upload(&token, addition).await;
        assert_eq!(uploaded.status, axum::http::StatusCode::CREATED, "{language}: {uploaded}");
        let id = api.queue(&token, name, json!({"a": 2, "b": 3, "then": 1})).await;
        let done = api.wait(&token, &id).await;
        assert_eq!((done["state"].as_str(), done["result"].as_i64()), (Some("success"), Some(5)), "{language}");
        let parent = api.get(&format!("/v1/tasks/{id}"), &token).await;
        let child = parent.body["children"][0].as_str().unwrap_or_else(|| panic!("{language}: {parent}"));
        let child = api.wait(&token, child).await;
        assert_eq!((child["result"].as_i64(), child["from_task"].as_str()), (Some(8), Some(id.as_str())));
    }
}
