//! `/v1/activity` through the API: what ran per minute, job and tenant,
//! each tenant seeing its own and the admin everyone's; and a task's
//! attempts in its detail.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{ADMIN, Api};

/// `field` added up over the window's minutes.
fn total(activity: &Value, field: &str) -> u64 {
    activity["minutes"].as_array().unwrap().iter().map(|m| m[field].as_u64().unwrap()).sum()
}

/// Reads `path` as `token` until `done` holds of the answer: nodes write
/// their activity at each heartbeat (every 2 s); panics after a minute.
async fn until(api: &Api, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = api.get(path, token).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer}");
        if done(&answer.body) {
            return answer.body;
        }
        assert!(std::time::Instant::now() < deadline, "never seen: {}", answer.body);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_tenants_activity_counts_its_own_tasks_and_the_admin_sees_every_tenant() {
    let api = Api::start(4).await;
    let (acme, acme_read) = api.tenant("acme", json!({})).await;
    let (other, _) = api.tenant("other", json!({})).await;
    for token in [&acme, &other] {
        assert_eq!(api.upload(token, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    }
    assert_eq!(api.upload(&acme, wasmjob::examples::FLAKY).await.status, StatusCode::CREATED);
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(api.queue(&acme, "addition", json!({ "a": n, "b": 1 })).await);
    }
    ids.push(api.queue(&acme, "flaky", json!({ "fatal": true })).await);
    for _ in 0..2 {
        ids.push(api.queue(&other, "addition", json!({ "a": 1, "b": 1 })).await);
    }
    for id in &ids[..4] {
        api.wait(&acme_read, id).await;
    }
    let mine = until(&api, "/v1/activity", &acme_read, |a| total(a, "succeeded") == 3 && total(a, "failed") == 1).await;
    assert_eq!(mine["minutes"].as_array().unwrap().len(), 60, "the default window is the last hour, minute by minute");
    assert_eq!(total(&mine, "started"), 4);
    assert!(total(&mine, "fuel") > 0);
    let busy = mine["minutes"].as_array().unwrap().iter().find(|m| m["started"].as_u64() > Some(0)).unwrap();
    assert!(busy["wait_p50_ms"].as_u64().is_some() && busy["wait_p99_ms"].as_u64() >= busy["wait_p50_ms"].as_u64());
    // Only its own jobs and tenant; the failing job first.
    let jobs: Vec<(&str, &str, u64)> = mine["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["tenant"].as_str().unwrap(), j["job"].as_str().unwrap(), j["failed"].as_u64().unwrap()))
        .collect();
    assert_eq!(jobs, [("acme", "flaky", 1), ("acme", "addition", 0)]);
    assert_eq!(mine["tenants"].as_array().unwrap().len(), 1);
    // Another tenant's activity is not for acme's token to read.
    let denied = api.get("/v1/activity?tenant=other", &acme_read).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied}");
    // The admin sees both tenants, or one.
    let all = until(&api, "/v1/activity?minutes=5", ADMIN, |a| total(a, "succeeded") == 5).await;
    let tenants: Vec<&str> = all["tenants"].as_array().unwrap().iter().map(|t| t["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants.len(), 2, "{all}");
    assert!(tenants.contains(&"acme") && tenants.contains(&"other"));
    let theirs = api.get("/v1/activity?tenant=other&minutes=5", ADMIN).await;
    assert_eq!(total(&theirs.body, "succeeded"), 2, "{theirs}");
    assert_eq!(theirs.body["minutes"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn an_activity_window_out_of_bounds_is_refused() {
    let api = Api::start(1).await;
    let (_, read) = api.tenant("acme", json!({})).await;
    for query in ["minutes=0", "minutes=1441", "minutes=abc", "minutes=99999999999999999999", "unknown=1"] {
        let answer = api.get(&format!("/v1/activity?{query}"), &read).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}: {answer}");
    }
    assert_eq!(api.get("/v1/activity?minutes=1440", &read).await.body["minutes"].as_array().unwrap().len(), 1440);
    assert_eq!(api.send(axum::http::Method::GET, "/v1/activity", None, None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tasks_detail_lists_every_attempt() {
    let api = Api::start(2).await;
    let (write, read) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::FLAKY).await.status, StatusCode::CREATED);
    let id = api.queue(&write, "flaky", json!({ "succeed_at": 3 })).await;
    assert_eq!(api.wait(&read, &id).await["state"], "success");
    let detail = api.get(&format!("/v1/tasks/{id}"), &read).await;
    let attempts = detail.body["attempts"].as_array().unwrap();
    let shown: Vec<(u64, &str, &str)> = attempts
        .iter()
        .map(|a| (a["attempt"].as_u64().unwrap(), a["state"].as_str().unwrap(), a["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(shown, [(1, "retry", "retryable-error"), (2, "retry", "retryable-error"), (3, "success", "success")]);
    assert!(attempts.iter().all(|a| a["started_at"].is_i64() && a["finished_at"].is_i64()), "{detail}");
    // The node that ran an earlier attempt is known from its lease.
    assert!(attempts[..2].iter().all(|a| a["node"].is_string()), "{detail}");
}
