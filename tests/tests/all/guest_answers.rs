//! Every value a guest hands the engine is bounded where it crosses: a huge
//! job-error message is cut, a huge overlap key refuses the task, and an
//! `is-due` that is never due again before the end of time is capped. The
//! engine answers each clearly and keeps serving the other tenants.

use axum::http::StatusCode;
use serde_json::json;

use crate::api_support::Api;

/// A healthy task of another tenant still succeeds.
async fn others_still_served(api: &Api) {
    let (other, _) = api.tenant("other", json!({})).await;
    api.upload(&other, wasmjob::examples::ADDITION).await;
    let id = api.queue(&other, "addition", json!({ "a": 40, "b": 2 })).await;
    let task = api.wait(&other, &id).await;
    assert_eq!((task["state"].as_str(), task["result"].as_i64()), (Some("success"), Some(42)), "{task}");
}

#[tokio::test]
async fn a_huge_job_error_message_is_cut_where_it_is_stored() {
    let api = Api::start(2).await;
    let (token, _) = api.tenant("hostile", json!({})).await;
    assert_eq!(api.upload(&token, wasmjob::examples::BIG_ANSWERS).await.status, StatusCode::CREATED);
    let id = api.queue(&token, "big-answers", json!({ "error_bytes": 30 << 20 })).await;
    let task = api.wait(&token, &id).await;
    assert_eq!(task["state"], "failure", "{}", task["reason"]);
    let error = task["error"].as_str().unwrap();
    assert!(error.len() < 20 << 10, "an error of {} bytes was stored", error.len());
    assert!(error.contains("message cut at"), "the cut is not said");
    others_still_served(&api).await;
}

#[tokio::test]
async fn a_huge_overlap_key_refuses_the_task() {
    let api = Api::start(2).await;
    let (token, _) = api.tenant("hostile", json!({})).await;
    api.upload(&token, wasmjob::examples::BIG_ANSWERS).await;
    let answer =
        api.post("/v1/tasks", &token, json!({ "job": "big-answers", "args": { "key_bytes": 20 << 20 } })).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_args"), "{answer}");
    assert!(answer.body["error"]["message"].as_str().unwrap().contains("overlap key"), "{answer}");
    // (The scheduler queues the periodic job's own ticks, with no args.)
    let listed = api.get("/v1/tasks", &token).await;
    let queued = listed.body["tasks"].as_array().unwrap().iter().filter(|t| t["args"] != serde_json::json!({})).count();
    assert_eq!(queued, 0, "the task was queued");
    others_still_served(&api).await;
}

#[tokio::test]
async fn a_next_run_past_the_end_of_time_is_capped_not_a_panic() {
    let api = Api::start(2).await;
    let (token, _) = api.tenant("hostile", json!({})).await;
    api.upload(&token, wasmjob::examples::BIG_ANSWERS).await;
    // The scheduler asks it at once (serving), and it answers u64::MAX ms.
    let mut shown = api.get("/v1/jobs/big-answers", &token).await;
    for _ in 0..200 {
        if shown.body["last_run"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        shown = api.get("/v1/jobs/big-answers", &token).await;
    }
    assert_eq!(shown.status, StatusCode::OK, "{shown}");
    let next_due = chrono::DateTime::parse_from_rfc3339(shown.body["next_due"].as_str().unwrap()).unwrap();
    let in_a_year = chrono::Utc::now() + chrono::Duration::days(400);
    assert!(next_due < in_a_year, "next due {next_due}: not capped");
    let inspect = std::process::Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
        .args(["inspect", wasmjob::examples::BIG_ANSWERS])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "inspect failed: {}", String::from_utf8_lossy(&inspect.stderr));
    others_still_served(&api).await;
}
