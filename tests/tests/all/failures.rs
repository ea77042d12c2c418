//! Each way a hostile or broken job can end, told apart, with the engine
//! still serving afterwards.

use std::time::Duration;

use wasmjob::runtime::{Outcome, RecordingQueue, TaskInput};

use crate::support::{RUNTIME, assert_engine_still_works, load, run};

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel() {
    let job = load(wasmjob::examples::INFINITE_LOOP).await;
    let mut limits = RUNTIME.task_limits(&job);
    limits.fuel = 50_000_000;
    let input = TaskInput {
        task_id: "t".into(),
        attempt: 1,
        args: "{}".into(),
        limits,
        children: std::sync::Arc::new(RecordingQueue::default()),
        progress: std::sync::Arc::new(wasmjob::runtime::NoProgress),
        egress: wasmjob::egress::Grant::default(),
        secrets: Default::default(),
    };
    let report = RUNTIME.run(&job, input).await;
    assert_eq!(report.outcome, Outcome::FuelExhausted { fuel: 50_000_000 });
    assert_eq!(report.fuel_consumed, 50_000_000);
    assert_engine_still_works().await;
}

#[tokio::test]
async fn an_infinite_loop_with_ample_fuel_stops_at_its_deadline() {
    let job = load(wasmjob::examples::INFINITE_LOOP).await;
    let mut limits = RUNTIME.task_limits(&job);
    limits.fuel = RUNTIME.limits().max_fuel;
    limits.timeout = Duration::from_millis(200);
    let input = TaskInput {
        task_id: "t".into(),
        attempt: 1,
        args: "{}".into(),
        limits,
        children: std::sync::Arc::new(RecordingQueue::default()),
        progress: std::sync::Arc::new(wasmjob::runtime::NoProgress),
        egress: wasmjob::egress::Grant::default(),
        secrets: Default::default(),
    };
    let report = RUNTIME.run(&job, input).await;
    assert_eq!(report.outcome, Outcome::DeadlineExceeded { timeout_ms: 200 });
    assert!(report.wall_time >= Duration::from_millis(200));
    assert_engine_still_works().await;
}

#[tokio::test]
async fn a_memory_hog_hits_its_memory_limit() {
    let job = load(wasmjob::examples::MEMORY_HOG).await;
    let (report, _) = run(&job, "{}").await;
    assert_eq!(report.outcome, Outcome::MemoryLimit { memory_bytes: RUNTIME.limits().default_memory_bytes });
    assert_engine_still_works().await;
}

#[tokio::test]
async fn deep_recursion_traps_with_a_stack_overflow() {
    let job = load(wasmjob::examples::DEEP_RECURSION).await;
    let (report, _) = run(&job, "{}").await;
    match report.outcome {
        Outcome::Trap { message } => assert!(message.contains("stack overflow"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_engine_still_works().await;
}

#[tokio::test]
async fn a_panic_is_a_trap_and_its_message_is_in_the_log() {
    let job = load(wasmjob::examples::PANIC).await;
    let (report, _) = run(&job, "{}").await;
    assert_eq!(report.outcome.class(), "trap");
    assert!(report.log.contains("this job panics on purpose"), "{}", report.log);
    assert_engine_still_works().await;
}

#[tokio::test]
async fn an_oversized_result_fails_instead_of_being_cut() {
    let job = load(wasmjob::examples::HUGE_OUTPUT).await;
    let (report, _) = run(&job, r#"{"mib": 4}"#).await;
    match report.outcome {
        Outcome::OutputTooLarge { bytes, limit } => {
            assert!(bytes > 4 << 20);
            assert_eq!(limit, RUNTIME.limits().max_result_bytes);
        }
        other => panic!("expected output-too-large, got {other:?}"),
    }
    assert_engine_still_works().await;
}

#[tokio::test]
async fn a_flood_of_stdout_is_bounded_and_the_drop_is_noted() {
    let job = load(wasmjob::examples::HUGE_OUTPUT).await;
    let (report, _) = run(&job, r#"{"mib": 8, "stdout": true}"#).await;
    assert!(report.outcome.is_success(), "{:?}", report.outcome);
    let max = RUNTIME.limits().max_log_bytes;
    assert!(report.log.len() < max + 200, "log of {} bytes", report.log.len());
    assert!(report.log.contains("bytes of log dropped"), "the drop is not noted");
}

#[tokio::test]
async fn a_fork_bomb_in_run_mode_is_recorded_not_run() {
    let job = load(wasmjob::examples::FORK_BOMB).await;
    let (report, children) = run(&job, r#"{"width": 50}"#).await;
    assert_eq!(report.outcome, Outcome::Success { result: "50".into() });
    assert!(children.children().iter().all(|(_, c)| c.from_task == "t1" && c.job == "fork-bomb"));
}

#[test]
fn wasmjob_run_applies_the_servers_caps_on_children() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
        .args(["run", wasmjob::examples::FORK_BOMB, "--args", r#"{"width": 5000}"#, "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // As on the server: a task may queue at most 1,000 children.
    assert_eq!((&report["outcome"], &report["result"]), (&"success".into(), &"1000".into()));
    assert_eq!(report["queued"].as_array().unwrap().len(), 1000);
    assert!(report["log"].as_str().unwrap().contains("at most 1000 children"), "{}", report["log"]);
}
