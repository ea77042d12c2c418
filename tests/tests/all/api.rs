//! Every endpoint, and every error status with its code.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

use crate::api_support::{ADMIN, Api};

#[tokio::test]
async fn every_endpoint_serves_its_tenant() {
    let api = Api::start(8).await;
    let (write, read) = api.tenant("acme", json!({})).await;

    let up = api.upload(&write, wasmjob::examples::ADDITION).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    assert_eq!(up.body["name"], "addition");
    let version = up.body["version"].as_str().unwrap().to_owned();
    assert_eq!(api.upload(&write, wasmjob::examples::NIGHTLY_REPORT).await.status, StatusCode::CREATED);

    let jobs = api.get("/v1/jobs", &read).await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert_eq!(jobs.body["regular"][0]["name"], "addition");
    assert_eq!(jobs.body["periodic"][0]["name"], "nightlyreport");

    let job = api.get("/v1/jobs/addition", &read).await;
    assert_eq!(job.status, StatusCode::OK);
    assert_eq!(job.body["metadata"]["doc"], "Add two numbers");
    assert_eq!(job.body["versions"][0]["version"], version.as_str());
    assert!(job.body["next_due"].is_null());
    let periodic = api.get("/v1/jobs/nightlyreport", &read).await;
    assert!(periodic.body["next_due"].is_string(), "{}", periodic.body);

    let id = api.queue(&write, "addition", json!({ "a": 2, "b": 3 })).await;
    let done = api.wait(&read, &id).await;
    assert_eq!((done["state"].as_str(), done["result"].as_i64()), (Some("success"), Some(5)));

    let task = api.get(&format!("/v1/tasks/{id}"), &read).await;
    assert_eq!(task.status, StatusCode::OK);
    assert_eq!(task.body["children"], json!([]));
    // Args and result come back as the JSON values they are, not as text.
    assert_eq!((&task.body["args"], &task.body["result"]), (&json!({ "a": 2, "b": 3 }), &json!(5)), "{task}");
    let listed = api.get("/v1/tasks?job=addition&limit=1", &read).await;
    assert_eq!(listed.body["tasks"][0]["args"], json!({ "a": 2, "b": 3 }), "{listed}");
    assert!(task.body["fuel"].as_u64().unwrap() > 0);

    let list = api.get("/v1/tasks?job=addition&state=success&limit=10", &read).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["tasks"][0]["id"], id.as_str());

    let logs = api.get(&format!("/v1/tasks/{id}/logs"), &read).await;
    assert_eq!(logs.status, StatusCode::OK);

    let later = api.post("/v1/tasks", &write, json!({ "job": "addition", "options": { "delay": 3_600_000 } })).await;
    let later = later.body["id"].as_str().unwrap().to_owned();
    let revoked = api.post(&format!("/v1/tasks/{later}/revoke"), &write, json!({})).await;
    assert_eq!((revoked.status, revoked.body["state"].as_str()), (StatusCode::OK, Some("revoked")));

    let deleted = api.send(Method::DELETE, "/v1/jobs/addition", Some(&write), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/v1/jobs/addition", &read).await.status, StatusCode::NOT_FOUND);

    assert_eq!(api.send(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    assert_eq!(api.send(Method::GET, "/readyz", None, None).await.status, StatusCode::OK);
    let openapi = api.send(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(openapi.body["openapi"], "3.1.0");
    let metrics = api.get("/metrics", ADMIN).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains(r#"wasmjob_tasks_ended_total{tenant="acme",job="addition",state="success"} 1"#), "{text}");
    assert!(text.contains("wasmjob_queue_depth"), "{text}");
    // The cluster's tasks, from the store, by tenant, job and state.
    assert!(text.contains(r#"wasmjob_tasks{tenant="acme",job="addition",state="success"} 1"#), "{text}");
}

#[tokio::test]
async fn a_running_task_is_stopped_when_revoked() {
    let api = Api::start(4).await;
    let (write, _) = api.tenant("acme", json!({})).await;
    api.upload(&write, wasmjob::examples::SLEEPY).await;
    let id = api.queue(&write, "sleepy", json!({ "ms": 60_000 })).await;
    for _ in 0..2000 {
        if api.get(&format!("/v1/tasks/{id}"), &write).await.body["state"] == "started" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let revoked = api.post(&format!("/v1/tasks/{id}/revoke"), &write, json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK);
    let task = api.wait(&write, &id).await;
    assert_eq!((task["state"].as_str(), task["reason"].as_str()), (Some("revoked"), Some("revoked")));
}

#[tokio::test]
async fn every_error_status_has_its_code() {
    let api = Api::start(2).await;
    let (write, read) = api.tenant("acme", json!({ "max_queued": 1, "max_component_bytes": 1000 })).await;
    // 413 (quota) comes first: this tenant may not upload real components.
    let big = api.upload(&write, wasmjob::examples::ADDITION).await;
    assert_eq!((big.status, big.code()), (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"));
    assert!(big.body["error"]["message"].as_str().unwrap().contains("max_component_bytes"));
    let (other, _) = api.tenant("globex", json!({ "max_queued": 2 })).await;
    assert_eq!(api.upload(&other, wasmjob::examples::NIGHTLY_REPORT).await.status, StatusCode::CREATED);

    // 400
    let bad =
        api.send_bytes(Method::POST, "/v1/tasks", Some(&other), Some(b"{not json".to_vec()), "application/json").await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "bad_request"));
    let bad = api.get("/v1/tasks?state=sleeping", &other).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "bad_request"));
    // 401
    let none = api.send(Method::GET, "/v1/jobs", None, None).await;
    assert_eq!((none.status, none.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let wrong = api.get("/v1/jobs", "wj_nope_nope").await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    // 403
    let ro = api.post("/v1/tasks", &read, json!({ "job": "nightlyreport" })).await;
    assert_eq!((ro.status, ro.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let admin_on_jobs = api.get("/v1/jobs", ADMIN).await;
    assert_eq!((admin_on_jobs.status, admin_on_jobs.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let tenant_on_admin = api.get("/v1/tenants", &write).await;
    assert_eq!((tenant_on_admin.status, tenant_on_admin.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(api.get("/metrics", &write).await.status, StatusCode::FORBIDDEN);
    // 404
    let missing = api.get("/v1/tasks/424242", &other).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"));
    let unknown = api.post("/v1/tasks", &other, json!({ "job": "subtraction" })).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "unknown_job"));
    // 409: nightlyreport forbids overlap. The first task waits an hour, so
    // that it is still queued when the second is asked for, however fast
    // the worker.
    let first =
        api.post("/v1/tasks", &other, json!({ "job": "nightlyreport", "options": { "delay": 3_600_000 } })).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first}");
    let dup = api.post("/v1/tasks", &other, json!({ "job": "nightlyreport" })).await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "duplicate"));
    let again = api.post("/v1/tenants", ADMIN, json!({ "name": "acme" })).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "conflict"));

    // 422
    let invalid = api
        .send_bytes(Method::POST, "/v1/jobs", Some(&other), Some(b"\0asm\x01\0\0\0".to_vec()), "application/wasm")
        .await;
    assert_eq!((invalid.status, invalid.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_component"));
    let args = api.post("/v1/tasks", &other, json!({ "job": "nightlyreport", "args": [1, 2] })).await;
    assert_eq!((args.status, args.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_args"));
    let bad_tenant = api.post("/v1/tenants", ADMIN, json!({ "name": "no spaces" })).await;
    assert_eq!(bad_tenant.status, StatusCode::UNPROCESSABLE_ENTITY);
    // 429: globex may have two tasks queued; delayed ones stay queued (the
    // first is the delayed `nightlyreport` above).
    assert_eq!(api.upload(&other, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    let later = json!({ "job": "addition", "options": { "delay": 3_600_000 } });
    assert_eq!(api.post("/v1/tasks", &other, later.clone()).await.status, StatusCode::CREATED);
    let over = api.post("/v1/tasks", &other, later).await;
    assert_eq!((over.status, over.code()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
    assert!(over.body["error"]["message"].as_str().unwrap().contains("max_queued"), "{}", over.body);
}

#[tokio::test]
async fn malformed_uploads_are_refused_with_a_reason() {
    let api = Api::start(2).await;
    let (write, _) = api.tenant("acme", json!({})).await;
    let cases: [(&str, Vec<u8>, StatusCode); 5] = [
        ("random bytes", b"random bytes, not wasm".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("core module", b"\0asm\x01\0\0\0".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("missing export", std::fs::read(wasmjob::examples::NOT_A_JOB).unwrap(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "forbidden import",
            std::fs::read(wasmjob::examples::FORBIDDEN_IMPORT).unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("oversized body", vec![0u8; (64 << 20) + 1], StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (what, bytes, status) in cases {
        let answer =
            api.send_bytes(Method::POST, "/v1/jobs?wait=300s", Some(&write), Some(bytes), "application/wasm").await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert!(!answer.body["error"]["message"].as_str().unwrap_or("").is_empty(), "{what}: no message");
    }
    let jobs = api.get("/v1/jobs", &write).await;
    assert_eq!((&jobs.body["regular"], &jobs.body["periodic"]), (&json!([]), &json!([])), "{jobs}");
    // Refused before compiling, nothing was stored; refused by the compile,
    // the upload is listed with why.
    let reasons: Vec<&str> = jobs.body["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["state"] == "rejected")
        .filter_map(|u| u["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "the component that is no job and the one importing a socket: {jobs}");
    assert!(reasons.iter().any(|r| r.contains("imports")), "{jobs}");
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let api = Api::start(2).await;
    api.tenant("acme", json!({})).await;
    let created = api.post("/v1/tenants/acme/tokens", ADMIN, json!({ "scope": "read" })).await;
    let (id, token) = (created.body["id"].as_str().unwrap(), created.body["token"].as_str().unwrap());
    assert_eq!(api.get("/v1/jobs", token).await.status, StatusCode::OK);
    let revoked = api.send(Method::DELETE, &format!("/v1/tokens/{id}"), Some(ADMIN), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let refused = api.get("/v1/jobs", token).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let twice = api.send(Method::DELETE, &format!("/v1/tokens/{id}"), Some(ADMIN), None).await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tree_or_all_of_a_jobs_tasks_are_revoked_in_one_call_and_only_the_callers() {
    let api = Api::start(1).await;
    let (write, _) = api.tenant("acme", json!({})).await;
    let (other, _) = api.tenant("other", json!({})).await;
    api.upload(&write, wasmjob::examples::SLEEPY).await;
    api.upload(&other, wasmjob::examples::SLEEPY).await;
    let later = json!({ "job": "sleepy", "options": { "delay": 3_600_000 } });
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(api.post("/v1/tasks", &write, later.clone()).await.body["id"].as_str().unwrap().to_owned());
    }
    let theirs = api.post("/v1/tasks", &other, later.clone()).await.body["id"].as_str().unwrap().to_owned();
    // Another tenant's task is not found, whatever the route.
    let refused = api.post(&format!("/v1/tasks/{theirs}/revoke-tree"), &write, json!({})).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let tree = api.post(&format!("/v1/tasks/{}/revoke-tree", ids[0]), &write, json!({})).await;
    assert_eq!((tree.status, tree.body["revoked"].as_u64()), (StatusCode::OK, Some(1)), "{tree}");
    let job = api.post("/v1/jobs/sleepy/revoke", &write, json!({})).await;
    assert_eq!((job.status, job.body["revoked"].as_u64()), (StatusCode::OK, Some(2)), "{job}");
    let task = api.get(&format!("/v1/tasks/{theirs}"), &other).await;
    assert_eq!(task.body["state"], "queued", "another tenant's task was revoked");
}

#[tokio::test]
async fn a_batch_queues_each_task_and_answers_each_one_in_order() {
    let api = Api::start(8).await;
    let (write, read) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);

    let tasks = json!([
        { "job": "addition", "args": { "a": 1, "b": 2 } },
        { "job": "no-such-job" },
        { "job": "addition", "args": { "a": 40, "b": 2 }, "options": { "priority": 3 } },
        { "job": "addition", "options": { "delay": 1_000_000_000_000u64 } },
    ]);
    let batch = api.post("/v1/tasks/batch", &write, json!({ "tasks": tasks })).await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    let results = batch.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[1]["error"]["code"], "unknown_job", "{}", batch.body);
    assert_eq!(results[3]["error"]["code"], "invalid_option", "{}", batch.body);
    let three = api.wait(&read, results[0]["id"].as_str().unwrap()).await;
    let forty_two = api.wait(&read, results[2]["id"].as_str().unwrap()).await;
    assert_eq!((three["result"].as_i64(), forty_two["result"].as_i64()), (Some(3), Some(42)));

    // Over the cap, or malformed: refused whole, nothing queued.
    let before = api.get("/v1/tasks?limit=1000", &read).await.body["tasks"].as_array().unwrap().len();
    let many = vec![json!({ "job": "addition" }); wasmjob::api::MAX_BATCH + 1];
    let over = api.post("/v1/tasks/batch", &write, json!({ "tasks": many })).await;
    assert_eq!((over.status, over.code()), (StatusCode::BAD_REQUEST, "bad_request"), "{}", over.body);
    let malformed =
        api.post("/v1/tasks/batch", &write, json!({ "tasks": [{ "job": "addition" }, { "jbo": 1 }] })).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{}", malformed.body);
    let after = api.get("/v1/tasks?limit=1000", &read).await.body["tasks"].as_array().unwrap().len();
    assert_eq!(before, after);

    // A reader may not queue.
    assert_eq!(api.post("/v1/tasks/batch", &read, json!({ "tasks": [] })).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_batch_item_over_the_args_cap_is_refused_alone_and_an_oversized_body_queues_nothing() {
    let api = Api::start(8).await;
    let (write, read) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);

    // 1.5 MiB of args: past the 1 MiB cap on args, within the 2 MiB body.
    let huge = "x".repeat(3 << 19);
    let tasks =
        json!([{ "job": "addition", "args": { "a": 1, "pad": huge } }, { "job": "addition", "args": { "a": 2 } }]);
    let batch = api.post("/v1/tasks/batch", &write, json!({ "tasks": tasks })).await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    assert_eq!(batch.body["results"][0]["error"]["code"], "invalid_args", "{}", batch.body);
    let kept = api.wait(&read, batch.body["results"][1]["id"].as_str().unwrap()).await;
    assert_eq!(kept["result"].as_i64(), Some(2));

    // Over the body limit: refused whole.
    let tasks = json!([{ "job": "addition", "args": { "pad": huge } }, { "job": "addition", "args": { "pad": huge } }]);
    let over = api.post("/v1/tasks/batch", &write, json!({ "tasks": tasks })).await;
    assert_eq!((over.status, over.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{}", over.body);
    let listed = api.get("/v1/tasks?limit=1000", &read).await.body["tasks"].as_array().unwrap().len();
    assert_eq!(listed, 1);
}

#[tokio::test]
async fn uploads_are_bounded_by_the_engines_cap_and_the_tenants_quota_whichever_is_lower() {
    let addition = std::fs::metadata(wasmjob::examples::ADDITION).unwrap().len() as usize;
    let cap = addition - 1;
    let api = Api::start_with(1, |config| config.runtime.limits.max_component_bytes = cap).await;
    // The default quota (64 MiB) is far above the engine's cap: the cap refuses.
    let (write, _) = api.tenant("acme", json!({})).await;
    let big = api.upload(&write, wasmjob::examples::ADDITION).await;
    assert_eq!((big.status, big.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{big}");
    assert!(big.body["error"]["message"].as_str().unwrap().contains(&cap.to_string()), "{big}");
    // A body of a gigabyte, streamed, is refused once past the cap, not read whole.
    let chunks = futures_util::stream::iter(
        (0..1024).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from_static(&[0u8; 1 << 20]))),
    );
    let request = axum::http::Request::post("/v1/jobs")
        .header("authorization", format!("Bearer {write}"))
        .body(axum::body::Body::from_stream(chunks))
        .unwrap();
    let refused = tower::ServiceExt::oneshot(wasmjob::api::router(api.state.clone()), request).await.unwrap();
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Under the cap, the quota decides.
    let quota = json!({ "max_component_bytes": 1000 });
    let (small, _) = api.tenant("small", quota).await;
    let over = api.upload(&small, wasmjob::examples::ADDITION).await;
    assert_eq!((over.status, over.code()), (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"), "{over}");
    assert_eq!(wasmjob::tenant::Quotas::default().max_component_bytes, 64 << 20, "a Python job fits by default");
}

#[tokio::test]
async fn an_upload_of_tens_of_megabytes_within_the_quota_is_accepted() {
    // `addition` with a 20 MiB custom section appended: a Python job's size,
    // ten times the API's limit on other bodies.
    let mut bytes = std::fs::read(wasmjob::examples::ADDITION).unwrap();
    let payload = 20usize << 20;
    let name = b"padding";
    let mut size = name.len() + 1 + payload;
    let mut leb = Vec::new();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        leb.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    bytes.push(0); // custom section
    bytes.extend(leb);
    bytes.push(name.len() as u8);
    bytes.extend(name);
    bytes.resize(bytes.len() + payload, 0);
    let api = Api::start(1).await;
    let (write, _) = api.tenant("acme", json!({})).await;
    let answer =
        api.send_bytes(Method::POST, "/v1/jobs?wait=300s", Some(&write), Some(bytes), "application/wasm").await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer.body["name"], "addition");
}

#[tokio::test]
async fn revoking_a_queued_task_gives_its_place_in_max_queued_back_at_once() {
    let api = Api::start(1).await;
    let (write, _) = api.tenant("acme", json!({ "max_queued": 1 })).await;
    assert_eq!(api.upload(&write, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    let later = json!({ "job": "addition", "options": { "delay": 3_600_000 } });
    let first = api.post("/v1/tasks", &write, later.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first}");
    let full = api.post("/v1/tasks", &write, later.clone()).await;
    assert_eq!((full.status, full.code()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
    let id = first.body["id"].as_str().unwrap();
    let revoked = api.post(&format!("/v1/tasks/{id}/revoke"), &write, json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked}");
    let again = api.post("/v1/tasks", &write, later.clone()).await;
    assert_eq!(again.status, StatusCode::CREATED, "the revoked task's place was not given back: {again}");
    // The same for a job's tasks revoked together.
    let revoked = api.post("/v1/jobs/addition/revoke", &write, json!({})).await;
    assert_eq!(revoked.body["revoked"], 1, "{revoked}");
    let after = api.post("/v1/tasks", &write, later).await;
    assert_eq!(after.status, StatusCode::CREATED, "{after}");
}

#[tokio::test]
async fn a_task_tree_shows_every_descendant_with_its_state_and_a_subtree_only_its_own() {
    let api = Api::start_with(4, |config| {
        config.caps = wasmjob::queue::TreeCaps { max_depth: 2, max_children: 3, ..Default::default() };
    })
    .await;
    let (write, read) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::FORK_BOMB).await.status, StatusCode::CREATED);
    let root = api.queue(&write, "fork-bomb", json!({})).await;
    // The root, 3 children, 9 grandchildren (deeper is refused by the cap).
    let tree = loop {
        let tree = api.get(&format!("/v1/tasks/{root}/tree"), &read).await;
        assert_eq!(tree.status, StatusCode::OK, "{tree}");
        let tasks = tree.body["tasks"].as_array().unwrap();
        if tasks.len() == 13 && tasks.iter().all(|t| t["state"] == "success" || t["state"] == "failure") {
            break tree.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((tree["root"].as_str(), tree["truncated"].as_bool()), (Some(root.as_str()), Some(false)), "{tree}");
    let tasks = tree["tasks"].as_array().unwrap();
    assert_eq!(tasks[0]["id"], root.as_str());
    let child = tasks.iter().find(|t| t["depth"] == 1).unwrap()["id"].as_str().unwrap().to_owned();
    let subtree = api.get(&format!("/v1/tasks/{child}/tree"), &read).await.body;
    let below: Vec<&Value> = subtree["tasks"].as_array().unwrap().iter().collect();
    assert_eq!(below.len(), 4, "{subtree}");
    assert!(below[1..].iter().all(|t| t["from_task"] == child.as_str()), "{subtree}");
    assert_eq!(subtree["root"], root.as_str());
    // Another tenant's tree is not found.
    let (other, _) = api.tenant("other", json!({})).await;
    let hidden = api.get(&format!("/v1/tasks/{root}/tree"), &other).await;
    assert_eq!((hidden.status, hidden.code()), (StatusCode::NOT_FOUND, "not_found"), "{hidden}");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_with_the_documented_error() {
    let api = Api::start(1).await;
    let (write, _) = api.tenant("acme", json!({})).await;
    for path in ["/nowhere", "/v1/nowhere", "/v1/tasks/1/nowhere"] {
        let answer = api.get(path, &write).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::NOT_FOUND, "not_found"), "{path}: {answer}");
    }
    for (method, path) in [(Method::DELETE, "/v1/tasks"), (Method::PUT, "/healthz"), (Method::POST, "/v1/jobs/x")] {
        let answer = api.send(method.clone(), path, Some(&write), None).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            "{method} {path}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_failed_task_is_retried_by_hand_through_the_api() {
    let api = Api::start(2).await;
    let (write, read) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::FLAKY).await.status, StatusCode::CREATED);
    let id = api.queue(&write, "flaky", json!({ "fatal": true })).await;
    assert_eq!(api.wait(&read, &id).await["state"], "failure");
    let denied = api.post(&format!("/v1/tasks/{id}/retry"), &read, json!({})).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied}");
    let retried = api.post(&format!("/v1/tasks/{id}/retry"), &write, json!({})).await;
    assert_eq!((retried.status, retried.body["state"].as_str()), (StatusCode::OK, Some("queued")), "{retried}");
    let again = api.wait(&read, &id).await;
    assert_eq!((again["state"].as_str(), again["attempt"].as_u64()), (Some("failure"), Some(2)), "{again}");
    let (other, _) = api.tenant("other", json!({})).await;
    let hidden = api.post(&format!("/v1/tasks/{id}/retry"), &other, json!({})).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{hidden}");
}
