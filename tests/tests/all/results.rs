//! Tasks that succeed: results, args, fuel and time, children.

use wasmjob::runtime::Outcome;

use crate::support::{load, run};

#[tokio::test]
async fn addition_returns_the_sum_as_json() {
    let job = load(wasmjob::examples::ADDITION).await;
    let (report, _) = run(&job, r#"{"a": 2, "b": 3}"#).await;
    assert_eq!(report.outcome, Outcome::Success { result: "5".into() });
}

#[tokio::test]
async fn missing_keyword_args_take_their_defaults() {
    let job = load(wasmjob::examples::ADDITION).await;
    let (report, _) = run(&job, r#"{"b": 7}"#).await;
    assert_eq!(report.outcome, Outcome::Success { result: "7".into() });
    let (report, _) = run(&job, "{}").await;
    assert_eq!(report.outcome, Outcome::Success { result: "0".into() });
}

#[tokio::test]
async fn args_of_the_wrong_type_fail_fatally_with_the_reason() {
    let job = load(wasmjob::examples::ADDITION).await;
    let (report, _) = run(&job, r#"{"a": "two"}"#).await;
    match report.outcome {
        Outcome::FatalError { message } => assert!(message.contains("invalid args"), "{message}"),
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

#[tokio::test]
async fn args_that_are_not_a_json_object_are_refused_before_running() {
    let job = load(wasmjob::examples::ADDITION).await;
    for args in ["[1, 2]", "not json", "3"] {
        let (report, _) = run(&job, args).await;
        assert_eq!(report.outcome.class(), "fatal-error", "{args}: {:?}", report.outcome);
        assert_eq!(report.fuel_consumed, 0, "{args}: nothing should have run");
    }
}

#[tokio::test]
async fn every_task_reports_fuel_and_wall_time() {
    let job = load(wasmjob::examples::ADDITION).await;
    let (report, _) = run(&job, r#"{"a": 1, "b": 1}"#).await;
    assert!(report.fuel_consumed > 0);
    assert!(report.wall_time > std::time::Duration::ZERO);
}

#[tokio::test]
async fn queued_children_carry_from_task() {
    let job = load(wasmjob::examples::FAN_OUT).await;
    let (report, children) = run(&job, r#"{"n": 3}"#).await;
    let children = children.children();
    assert_eq!(children.len(), 3);
    for (i, (id, child)) in children.iter().enumerate() {
        assert_eq!(child.from_task, "t1");
        assert_eq!(child.job, "addition");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&child.args).unwrap(),
            serde_json::json!({"a": i, "b": i})
        );
        assert_eq!(id, &format!("t1.{}", i + 1));
    }
    let ids: Vec<String> = children.into_iter().map(|(id, _)| id).collect();
    assert_eq!(report.outcome, Outcome::Success { result: serde_json::to_string(&ids).unwrap() });
}

#[tokio::test]
async fn job_errors_say_whether_to_retry() {
    let job = load(wasmjob::examples::FLAKY).await;
    let (report, _) = run(&job, r#"{"succeed_at": 2}"#).await;
    assert_eq!(report.outcome, Outcome::RetryableError { message: "attempt 1 failed".into() });
    let (report, _) = run(&job, r#"{"fatal": true}"#).await;
    assert_eq!(report.outcome, Outcome::FatalError { message: "told to fail".into() });
    let (report, _) = run(&job, r#"{"succeed_at": 1}"#).await;
    assert_eq!(report.outcome, Outcome::Success { result: "1".into() });
}

#[tokio::test]
async fn log_lines_reach_the_task_log() {
    let job = load(wasmjob::examples::NIGHTLY_REPORT).await;
    let (report, _) = run(&job, "{}").await;
    assert!(report.outcome.is_success(), "{:?}", report.outcome);
    assert!(report.log.contains("[INFO] building the nightly report"), "{}", report.log);
}
