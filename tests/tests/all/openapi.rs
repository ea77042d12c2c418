//! The OpenAPI document against the server: every route it lists is
//! served, every operation's success was seen to answer as documented,
//! and its operations are complete (ids, tags, bodies).

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::api_support::{ADMIN, Api};
use crate::openapi_support::{document, operations};

#[tokio::test]
async fn every_route_of_the_document_is_served() {
    let api = Api::start(1).await;
    let (write, _) = api.tenant("acme", json!({})).await;
    for (method, template, operation) in operations() {
        let path = template.replace("{id}", "1").replace("{name}", "x");
        // A stream's success never ends: asked only as the admin, refused.
        let streams = operation["responses"]["200"]["content"]["text/event-stream"].is_object();
        let tokens = if streams { vec![ADMIN] } else { vec![ADMIN, write.as_str()] };
        for token in tokens {
            let answer = api.send(method.clone(), &path, Some(token), None).await;
            let unrouted = answer.status == StatusCode::METHOD_NOT_ALLOWED
                || answer.body["error"]["message"].as_str() == Some("route not found");
            assert!(!unrouted, "{method} {template} is documented but not served: {answer}");
        }
    }
}

#[test]
fn every_operation_has_an_id_a_tag_and_documented_bodies() {
    let mut ids = BTreeSet::new();
    for (method, template, operation) in operations() {
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {template}: no operationId"));
        assert!(ids.insert(id), "{method} {template}: operationId `{id}` is taken");
        assert!(operation["tags"][0].is_string(), "{method} {template}: no tag");
        let responses = operation["responses"].as_object().unwrap();
        let success = responses.keys().find(|code| code.starts_with('2'));
        let success = success.unwrap_or_else(|| panic!("{method} {template}: no success answer"));
        if success != "204" {
            assert!(responses[success]["content"].is_object(), "{method} {template}: {success} has no body");
        }
        for error in ["4XX", "5XX"] {
            let body = &responses[error]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(body, "#/components/schemas/ErrorBody", "{method} {template}: {error}");
        }
        if [Method::POST, Method::PUT, Method::PATCH].contains(&method) && !operation["requestBody"].is_object() {
            // The few that take no body say so by taking none at all.
            let actions = ["/revoke", "/revoke-tree", "/retry", "/pause", "/resume"];
            assert!(actions.iter().any(|action| template.ends_with(action)), "{method} {template}: no body");
        }
    }
    // Every schema a reference names is in the document.
    let text = document().to_string();
    for name in text.split("#/components/schemas/").skip(1).map(|rest| rest.split('"').next().unwrap()) {
        assert!(document()["components"]["schemas"][name].is_object(), "`{name}` is referenced but not defined");
    }
}

/// Drives every operation to a success, as a client would; each answer is
/// checked against the document by the harness.
#[tokio::test]
async fn every_operation_answers_a_success_as_its_document_says() {
    let api = Api::start(2).await;
    assert_eq!(api.send(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    assert_eq!(api.send(Method::GET, "/readyz", None, None).await.status, StatusCode::OK);
    assert_eq!(api.send(Method::GET, "/v1/openapi.json", None, None).await.status, StatusCode::OK);
    let (write, read) = api.tenant("acme", json!({ "max_running": 4 })).await;
    let changed =
        api.send(Method::PATCH, "/v1/tenants/acme", Some(ADMIN), Some(json!({ "quotas": { "max_running": null } })));
    assert_eq!(changed.await.status, StatusCode::OK);
    assert_eq!(api.get("/v1/tenants", ADMIN).await.status, StatusCode::OK);
    let spare = api.post("/v1/tenants/acme/tokens", ADMIN, json!({ "scope": "read" })).await;
    let spare = spare.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.send(Method::DELETE, &format!("/v1/tokens/{spare}"), Some(ADMIN), None).await.status,
        StatusCode::NO_CONTENT
    );

    let put = api.send(Method::PUT, "/v1/secrets/key", Some(&write), Some(json!({ "value": "s3cret" }))).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/v1/secrets", &read).await.body["secrets"][0]["name"], "key");
    assert_eq!(api.send(Method::DELETE, "/v1/secrets/key", Some(&write), None).await.status, StatusCode::NO_CONTENT);

    let queue = json!({ "max_running": 2, "priority": 5 });
    let put = api.send(Method::PUT, "/v1/limits/queues/emails", Some(&write), Some(queue)).await;
    assert_eq!(put.body["limits"]["priority"], 5, "{put}");
    let job = json!({ "max_concurrency": 3, "rate": { "tasks": 10, "per_ms": 1000 } });
    let put = api.send(Method::PUT, "/v1/limits/jobs/Addition", Some(&write), Some(job)).await;
    assert_eq!(put.body["job"], "addition", "{put}");
    let listed = api.get("/v1/limits", &read).await.body;
    assert_eq!(
        (listed["queues"][0]["queue"].clone(), listed["jobs"][0]["limits"]["rate"]["tasks"].clone()),
        ("emails".into(), 10.into())
    );
    for path in ["/v1/limits/queues/emails", "/v1/limits/jobs/addition"] {
        assert_eq!(api.send(Method::DELETE, path, Some(&write), None).await.status, StatusCode::NO_CONTENT);
    }

    let up = api.upload(&write, wasmjob::examples::ADDITION).await;
    let version = up.body["version"].as_str().unwrap().to_owned();
    assert_eq!(api.get(&format!("/v1/uploads/{version}"), &read).await.body["state"], "ready");
    assert_eq!(api.get("/v1/jobs", &read).await.status, StatusCode::OK);
    assert_eq!(api.get("/v1/jobs/addition", &read).await.body["state"], "ready");

    let schedule = json!({ "job": "addition", "args": { "a": 1 }, "cron": "0 3 * * *", "zone": "Europe/Paris" });
    let put = api.send(Method::PUT, "/v1/schedules/nightly", Some(&write), Some(schedule)).await;
    assert_eq!(put.status, StatusCode::OK, "{put}");
    assert_eq!(api.get("/v1/schedules", &read).await.body["schedules"][0]["name"], "nightly");
    assert_eq!(api.get("/v1/schedules/nightly", &read).await.body["zone"], "Europe/Paris");
    assert_eq!(api.post("/v1/schedules/nightly/pause", &write, json!({})).await.body["paused"], true);
    assert_eq!(api.post("/v1/schedules/nightly/resume", &write, json!({})).await.body["paused"], false);
    let deleted = api.send(Method::DELETE, "/v1/schedules/nightly", Some(&write), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let id = api.queue(&write, "addition", json!({ "a": 1, "b": 2 })).await;
    assert_eq!(api.wait(&read, &id).await["result"], 3);
    for path in [format!("/v1/tasks/{id}"), format!("/v1/tasks/{id}/tree"), format!("/v1/tasks/{id}/logs")] {
        assert_eq!(api.get(&path, &read).await.status, StatusCode::OK, "{path}");
    }
    assert_eq!(api.get("/v1/tasks?state=success", &read).await.body["tasks"][0]["id"], id.as_str());
    let chain = json!({ "chain": [{ "job": "addition", "args": { "a": 1 } }, { "job": "addition" }] });
    let started = api.post("/v1/workflows", &write, chain).await;
    assert_eq!(started.status, StatusCode::CREATED, "{started}");
    api.wait(&read, started.body["stages"][1][0].as_str().unwrap()).await;
    let workflow = api.get(&format!("/v1/workflows/{}", started.body["id"].as_str().unwrap()), &read).await;
    assert_eq!(workflow.body["state"], "success", "{workflow}");
    let later = json!({ "job": "addition", "options": { "delay": 3_600_000 } });
    let batch = api.post("/v1/tasks/batch", &write, json!({ "tasks": [later, later, later] })).await;
    let ids: Vec<String> =
        batch.body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(api.post(&format!("/v1/tasks/{}/revoke", ids[0]), &write, json!({})).await.body["state"], "revoked");
    // A task retried runs now.
    assert_eq!(api.post(&format!("/v1/tasks/{}/retry", ids[0]), &write, json!({})).await.body["state"], "queued");
    api.wait(&read, &ids[0]).await;
    assert_eq!(api.post(&format!("/v1/tasks/{}/revoke-tree", ids[1]), &write, json!({})).await.body["revoked"], 1);
    assert_eq!(api.post("/v1/jobs/addition/revoke", &write, json!({})).await.body["revoked"], 1);
    assert_eq!(api.get("/metrics", ADMIN).await.status, StatusCode::OK);
    assert_eq!(api.get("/v1/activity?minutes=5", &read).await.status, StatusCode::OK);
    assert_eq!(api.send(Method::DELETE, "/v1/jobs/addition", Some(&write), None).await.status, StatusCode::NO_CONTENT);
    drop(api.events(&read, None).await);

    let succeeded = api.succeeded.lock().unwrap().clone();
    let documented: BTreeSet<(String, &str)> = operations().into_iter().map(|(m, t, _)| (m.to_string(), t)).collect();
    let missed: Vec<_> = documented.difference(&succeeded).collect();
    assert!(missed.is_empty(), "operations never seen to succeed: {missed:?}");
}
