//! Tenants never see, use or slow each other: a cross-tenant matrix,
//! quotas, and fairness under a flood.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::api_support::Api;

#[tokio::test]
async fn a_tenant_cannot_touch_another_tenants_jobs_or_tasks() {
    let api = Api::start(4).await;
    let (a, _) = api.tenant("a", json!({})).await;
    let (b, _) = api.tenant("b", json!({})).await;
    api.upload(&b, wasmjob::examples::ADDITION).await;
    api.upload(&b, wasmjob::examples::SLEEPY).await;
    let done = api.queue(&b, "addition", json!({ "a": 1 })).await;
    api.wait(&b, &done).await;
    let later = api.post("/v1/tasks", &b, json!({ "job": "sleepy", "options": { "delay": 3_600_000 } })).await;
    let later = later.body["id"].as_str().unwrap().to_owned();

    let matrix = [
        (Method::GET, "/v1/jobs/addition".to_owned()),
        (Method::DELETE, "/v1/jobs/addition".to_owned()),
        (Method::GET, format!("/v1/tasks/{done}")),
        (Method::GET, format!("/v1/tasks/{done}/wait?timeout=1s")),
        (Method::GET, format!("/v1/tasks/{done}/logs")),
        (Method::POST, format!("/v1/tasks/{later}/revoke")),
        (Method::GET, format!("/v1/tasks/{later}")),
    ];
    for (method, path) in matrix {
        let answer = api.send(method.clone(), &path, Some(&a), Some(json!({}))).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}: {}", answer.body);
    }
    let queue = api.post("/v1/tasks", &a, json!({ "job": "addition" })).await;
    assert_eq!((queue.status, queue.code()), (StatusCode::NOT_FOUND, "unknown_job"));
    let jobs = api.get("/v1/jobs", &a).await;
    assert_eq!(jobs.body, json!({ "regular": [], "periodic": [], "uploads": [] }));
    let tasks = api.get("/v1/tasks", &a).await;
    assert_eq!(tasks.body["tasks"], json!([]));
    // Nothing changed for b.
    assert_eq!(api.get(&format!("/v1/tasks/{later}"), &b).await.body["state"], "queued");
    assert_eq!(api.get("/v1/jobs/addition", &b).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_jobs_queue_task_stays_inside_its_tenant() {
    let api = Api::start(4).await;
    let (a, _) = api.tenant("a", json!({})).await;
    let (b, _) = api.tenant("b", json!({})).await;
    // Only b has `addition`; a's fan-out cannot reach it.
    api.upload(&b, wasmjob::examples::ADDITION).await;
    api.upload(&a, wasmjob::examples::FAN_OUT).await;
    let id = api.queue(&a, "fan-out", json!({ "n": 1 })).await;
    let task = api.wait(&a, &id).await;
    assert_eq!(task["state"], "failure");
    assert!(task["error"].as_str().unwrap().contains("unknown job"), "{task}");
    assert_eq!(api.get("/v1/tasks", &b).await.body["tasks"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn quotas_are_enforced_and_named() {
    let api = Api::start(4).await;
    let quotas = json!({ "max_components": 1, "max_fuel": 1_000_000, "queue_rate": 0.001, "queue_burst": 2.0 });
    let (a, _) = api.tenant("a", quotas).await;
    assert_eq!(api.upload(&a, wasmjob::examples::INFINITE_LOOP).await.status, StatusCode::CREATED);
    let second = api.upload(&a, wasmjob::examples::ADDITION).await;
    assert_eq!((second.status, second.code()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
    assert_eq!(second.body["error"]["quota"], "max_components");
    // The tenant's fuel quota caps the job's budget.
    let id = api.queue(&a, "infinite-loop", json!({})).await;
    let task = api.wait(&a, &id).await;
    assert_eq!((task["reason"].as_str(), task["fuel"].as_u64()), (Some("fuel-exhausted"), Some(1_000_000)));
    // Two in a burst, then the rate.
    api.queue(&a, "infinite-loop", json!({})).await;
    let over = api.post("/v1/tasks", &a, json!({ "job": "infinite-loop" })).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(over.body["error"]["message"].as_str().unwrap().contains("queue_rate"), "{}", over.body);
}

#[tokio::test]
async fn a_flooding_tenant_does_not_starve_another() {
    let api = Api::start(4).await;
    let (heavy, _) = api.tenant("heavy", json!({})).await;
    let (light, _) = api.tenant("light", json!({})).await;
    api.upload(&heavy, wasmjob::examples::SLEEPY).await;
    api.upload(&light, wasmjob::examples::SLEEPY).await;
    let flood: Vec<_> =
        (0..200).map(|_| ("sleepy".to_owned(), r#"{"ms": 20}"#.to_owned(), Default::default())).collect();
    api.node.queue.queue_many("heavy", &flood).await.unwrap();
    let mut light_ids = Vec::new();
    for _ in 0..5 {
        light_ids.push(api.queue(&light, "sleepy", json!({ "ms": 20 })).await);
    }
    for id in &light_ids {
        assert_eq!(api.wait(&light, id).await["state"], "success");
    }
    // The light tenant's tasks went through while most of the flood waited.
    let waiting = api.get("/v1/tasks?state=queued&limit=1000", &heavy).await;
    let waiting = waiting.body["tasks"].as_array().unwrap().len();
    assert!(waiting >= 100, "the light tenant waited for the flood: only {waiting} of 200 left");
}
