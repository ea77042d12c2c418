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
    assert_eq!(api.wait(&token, &id).await["result"], 5);
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

#[tokio::test]
async fn tasks_queued_while_their_job_compiles_wait_and_run_once_it_is_ready() {
    let api = Api::start(2).await;
    let (token, _) = api.tenant("acme", json!({})).await;
    let bytes = std::fs::read(crate::polyglot::POLYGLOT_PYTHON_ADDITION).unwrap();
    let path = "/v1/jobs?name=Addition-PY";
    let uploaded = api.send_bytes(Method::POST, path, Some(&token), Some(bytes), "application/wasm").await;
    assert_eq!(uploaded.status, StatusCode::ACCEPTED, "{uploaded}");
    assert_eq!(uploaded.body["name"], "addition-py", "the declared name, lower-cased: {uploaded}");

    // The job shows as compiling; tasks of it are taken and wait.
    let shown = api.get("/v1/jobs/addition-py", &token).await;
    assert_eq!((shown.status, shown.body["state"].as_str()), (StatusCode::OK, Some("compiling")), "{shown}");
    let first = api.queue(&token, "addition-py", json!({"a": 2, "b": 3})).await;
    let held = api.get(&format!("/v1/tasks/{first}"), &token).await;
    assert_eq!(
        (held.body["state"].as_str(), held.body["reason"].as_str()),
        (Some("queued"), Some("compiling")),
        "{held}"
    );
    let batch = json!({ "tasks": [
        { "job": "addition-py", "args": {"a": 1, "b": 1}, "options": { "priority": 5 } },
        { "job": "addition-py", "args": {"a": 1, "b": 2} },
    ]});
    let batched = api.post("/v1/tasks/batch", &token, batch).await;
    assert_eq!(batched.status, StatusCode::OK, "{batched}");
    let ids: Vec<String> =
        batched.body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{batched}");
    // One revoked while held stays revoked.
    let revoked = api.post(&format!("/v1/tasks/{}/revoke", ids[1]), &token, json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked}");

    let done = api.wait(&token, &first).await;
    assert_eq!((done["state"].as_str(), done["result"].as_i64()), (Some("success"), Some(5)), "{done}");
    let done = api.wait(&token, &ids[0]).await;
    assert_eq!((done["state"].as_str(), done["priority"].as_i64()), (Some("success"), Some(5)), "{done}");
    let done = api.wait(&token, &ids[1]).await;
    assert_eq!(done["state"], "revoked", "{done}");
    let shown = api.get("/v1/jobs/addition-py", &token).await;
    assert_eq!(shown.body["state"], "ready", "{shown}");
}

#[tokio::test]
async fn tasks_held_for_an_upload_that_is_rejected_fail_with_its_reason() {
    let api = Api::start(1).await;
    let (token, _) = api.tenant("acme", json!({})).await;
    // A Python job declared under another name than its own: rejected once compiled.
    let bytes = std::fs::read(crate::polyglot::POLYGLOT_PYTHON_TICK).unwrap();
    let path = "/v1/jobs?name=nightly";
    let uploaded = api.send_bytes(Method::POST, path, Some(&token), Some(bytes), "application/wasm").await;
    assert_eq!(uploaded.status, StatusCode::ACCEPTED, "{uploaded}");
    let id = api.queue(&token, "nightly", json!({})).await;
    let done = api.wait(&token, &id).await;
    assert_eq!((done["state"].as_str(), done["reason"].as_str()), (Some("failure"), Some("rejected")), "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("declares job `nightly`") && error.contains("`tick-py`"), "{done}");
    let upload = settled(&api, &token, uploaded.body["location"].as_str().unwrap()).await;
    assert_eq!(upload["state"], "rejected", "{upload}");
    // Its place in `max_queued` is back, and a name nothing declares is unknown.
    let unknown = api.post("/v1/tasks", &token, json!({ "job": "nightly", "args": {} })).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "unknown_job"), "{unknown}");
    let bad = api.send_bytes(Method::POST, "/v1/jobs?name=no%20spaces", Some(&token), Some(vec![0]), "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad}");
}

#[tokio::test]
async fn an_upload_past_the_compiles_a_node_takes_in_is_refused_busy_and_loses_nothing() {
    let api = Api::start_with(1, |config| config.max_compiling = 1).await;
    let (token, _) = api.tenant("acme", json!({})).await;
    let first = post(&api, &token, crate::polyglot::POLYGLOT_PYTHON_ADDITION).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first}");
    let second = post(&api, &token, crate::polyglot::POLYGLOT_JS_ADDITION).await;
    assert_eq!((second.status, second.code()), (StatusCode::SERVICE_UNAVAILABLE, "busy"), "{second}");
    // The first is not disturbed, and once it ends the second is taken in.
    let done = settled(&api, &token, first.body["location"].as_str().unwrap()).await;
    assert_eq!(done["state"], "ready", "{done}");
    let again = post(&api, &token, crate::polyglot::POLYGLOT_JS_ADDITION).await;
    assert!(matches!(again.status, StatusCode::ACCEPTED | StatusCode::CREATED), "{again}");
}

#[tokio::test]
async fn tasks_held_for_an_upload_whose_node_died_mid_compile_fail_once_it_is_judged_interrupted() {
    use wasmjob::store::{UploadRow, UploadState};
    let api = Api::start(1).await;
    let (token, _) = api.tenant("acme", json!({})).await;
    // An upload some other node took in and is compiling: its row alone.
    let now = api.node.clock.now_millis();
    let mut upload = UploadRow {
        tenant: "acme".into(),
        id: "0".repeat(64),
        state: UploadState::Compiling,
        name: Some("ghost".into()),
        reason: None,
        size: 1,
        created_at: now,
        updated_at: now,
    };
    api.node.store.put_upload(upload.clone()).await.unwrap();
    let id = api.queue(&token, "ghost", json!({})).await;
    let held = api.get(&format!("/v1/tasks/{id}"), &token).await;
    assert_eq!(held.body["reason"], "compiling", "{held}");
    // Heartbeats meanwhile leave it held.
    tokio::time::sleep(wasmjob::worker::HEARTBEAT * 2).await;
    assert_eq!(api.get(&format!("/v1/tasks/{id}"), &token).await.body["state"], "queued");
    // That node dies: its upload is no longer written, and goes stale.
    let stale = i64::try_from(wasmjob::upload::STALE_AFTER.as_millis()).unwrap() + 1;
    upload.updated_at = api.node.clock.now_millis() - stale;
    api.node.store.put_upload(upload).await.unwrap();
    let done = api.wait(&token, &id).await;
    assert_eq!((done["state"].as_str(), done["reason"].as_str()), (Some("failure"), Some("rejected")), "{done}");
    assert!(done["error"].as_str().unwrap().contains("interrupted"), "{done}");
}
