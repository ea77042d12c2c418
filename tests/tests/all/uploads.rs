//! Uploads never block on compilation: `POST /v1/jobs` answers at once with
//! the upload `compiling` (unless asked to wait), the node serves meanwhile,
//! and the upload ends `ready` or `rejected` with a reason.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_support::{Answer, Api};

/// Posts a component without waiting for its compile.
async fn post(api: &Api, token: &str, path: &str) -> Answer {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    api.send_bytes(Method::POST, "/v1/jobs", Some(token), Some(bytes), "application/wasm").await
}

/// Follows an upload until it is no longer compiling; its last state.
async fn settled(api: &Api, token: &str, location: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let upload = api.get(location, token).await;
        assert_eq!(upload.status, StatusCode::OK, "{upload}");
        if upload.body["state"] != "compiling" {
            return upload.body;
        }
        assert!(Instant::now() < deadline, "still compiling after 10 min: {upload}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_upload_answers_at_once_while_its_compile_runs_and_the_node_serves_meanwhile() {
    let api = Api::start(2).await;
    let (token, _) = api.tenant("acme", json!({})).await;
    // A Python job: an 18 MB component, seconds of compiling.
    let uploaded = post(&api, &token, crate::polyglot::POLYGLOT_PYTHON_ADDITION).await;
    assert_eq!(uploaded.status, StatusCode::ACCEPTED, "{uploaded}");
    assert_eq!(uploaded.body["state"], "compiling", "{uploaded}");
    let location = uploaded.body["location"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/uploads/{}", uploaded.body["id"].as_str().unwrap()));

    // Meanwhile the node answers, and lists the upload as compiling.
    let health = api.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{health}");
    let jobs = api.get("/v1/jobs", &token).await;
    let listed: Vec<&Value> = jobs.body["uploads"].as_array().unwrap().iter().collect();
    assert!(
        listed.iter().any(|u| u["id"] == uploaded.body["id"])
            || api.get(&location, &token).await.body["state"] == "ready",
        "{jobs}"
    );

    let done = settled(&api, &token, &location).await;
    assert_eq!((done["state"].as_str(), done["name"].as_str()), (Some("ready"), Some("addition-py")), "{done}");
    let id = api.queue(&token, "addition-py", json!({"a": 2, "b": 3})).await;
    assert_eq!(api.wait(&token, &id).await["result"], "5");
    // Uploading the same bytes again registers them at once.
    let again = post(&api, &token, crate::polyglot::POLYGLOT_PYTHON_ADDITION).await;
    assert_eq!((again.status, again.body["name"].as_str()), (StatusCode::CREATED, Some("addition-py")), "{again}");
}

#[tokio::test]
async fn a_component_refused_by_its_compile_ends_rejected_with_the_reason() {
    let api = Api::start(1).await;
    let (token, _) = api.tenant("acme", json!({})).await;
    let uploaded = post(&api, &token, wasmjob::examples::FORBIDDEN_IMPORT).await;
    assert_eq!(uploaded.status, StatusCode::ACCEPTED, "{uploaded}");
    let done = settled(&api, &token, uploaded.body["location"].as_str().unwrap()).await;
    assert_eq!(done["state"], "rejected", "{done}");
    assert!(done["reason"].as_str().unwrap().contains("imports"), "{done}");
    // What can be refused without compiling is refused at once.
    let garbage = api.send_bytes(Method::POST, "/v1/jobs", Some(&token), Some(b"not wasm".to_vec()), "").await;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY, "{garbage}");
    let unknown = api.get("/v1/uploads/0123", &token).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown}");
}

#[tokio::test]
async fn twenty_uploads_at_once_each_end_ready_or_rejected_while_the_node_serves() {
    let api = Api::start(2).await;
    let (token, _) = api.tenant("acme", json!({})).await;
    let components = [
        wasmjob::examples::ADDITION,
        wasmjob::examples::STAMP,
        wasmjob::examples::NIGHTLY_REPORT,
        wasmjob::examples::EVERY_SECOND,
        wasmjob::examples::BENCH_PERIODIC,
        wasmjob::examples::FAN_OUT,
        wasmjob::examples::EXCLUSIVE,
        wasmjob::examples::FIB,
        wasmjob::examples::FLAKY,
        wasmjob::examples::SLEEPY,
        wasmjob::examples::FETCH,
        wasmjob::examples::CRAWLER,
        wasmjob::examples::WEBHOOK,
        wasmjob::examples::INFINITE_LOOP,
        wasmjob::examples::MEMORY_HOG,
        wasmjob::examples::PANIC,
        wasmjob::examples::NOT_A_JOB,
        wasmjob::examples::FORBIDDEN_IMPORT,
        wasmjob::examples::HOST_HOG,
        wasmjob::examples::NOSY,
    ];
    let posted = futures_util::future::join_all(components.iter().map(|path| post(&api, &token, path))).await;
    let health = api.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{health}");
    let mut ready = 0;
    for (path, answer) in components.iter().zip(posted) {
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{path}: {answer}");
        let done = settled(&api, &token, answer.body["location"].as_str().unwrap()).await;
        match done["state"].as_str() {
            Some("ready") => ready += 1,
            Some("rejected") => assert!(!done["reason"].as_str().unwrap_or("").is_empty(), "{path}: {done}"),
            _ => panic!("{path}: {done}"),
        }
    }
    // Two are not jobs at all (`not-a-job`, `forbidden-import`).
    assert_eq!(ready, components.len() - 2);
    let jobs = api.get("/v1/jobs", &token).await;
    let registered = jobs.body["regular"].as_array().unwrap().len() + jobs.body["periodic"].as_array().unwrap().len();
    assert_eq!(registered, ready, "{jobs}");
}
