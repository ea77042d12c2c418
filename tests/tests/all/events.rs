//! `GET /v1/events`: a tenant's task and job events, live, resumable, and
//! nothing of another tenant's; a stalled client slows nothing.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::api_support::{ADMIN, Api, Message};

/// How long a stream may stay quiet while a test awaits its next message
/// (tasks compile and run meanwhile on a busy machine).
const QUIET: Duration = Duration::from_secs(60);

/// A node with `concurrency` workers, tenant `acme` with the addition job,
/// and acme's write token.
async fn acme_with_addition(concurrency: usize) -> (Api, String) {
    let api = Api::start(concurrency).await;
    let (acme, _) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&acme, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    (api, acme)
}

fn about(task: &str) -> impl Fn(&Message) -> bool + '_ {
    move |m| m.data["task"] == task && m.event == "task-succeeded"
}

#[tokio::test]
async fn a_tenants_stream_follows_its_jobs_and_tasks_and_shows_nothing_of_another_tenant() {
    let api = Api::start(2).await;
    let (acme, _) = api.tenant("acme", json!({})).await;
    let (globex, _) = api.tenant("globex", json!({})).await;
    let mut stream = api.events(&acme, None).await;
    let mut other = api.events(&globex, None).await;

    assert_eq!(api.upload(&acme, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    assert_eq!(api.upload(&globex, wasmjob::examples::ADDITION).await.status, StatusCode::CREATED);
    let theirs = api.queue(&globex, "addition", json!({ "a": 1, "b": 1 })).await;
    let id = api.queue(&acme, "addition", json!({ "a": 2, "b": 3 })).await;
    // Events are told after their change commits: as a set (changes that
    // commit close together may be told in another order, the task's
    // success before its start), read until every one came.
    let expected = ["job-compiled", "job-uploaded", "task-queued", "task-started", "task-succeeded"];
    let came = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let seen = stream
        .until(QUIET, |m| {
            came.borrow_mut().insert(m.event.clone());
            expected.iter().all(|kind| came.borrow().contains(*kind))
        })
        .await;
    let mut kinds: Vec<&str> = seen.iter().map(|m| m.event.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, expected, "{seen:#?}");
    // (An upload names its job once compiled, unless it declared it.)
    assert!(seen.iter().filter(|m| m.event != "job-uploaded").all(|m| m.data["job"] == "addition"), "{seen:#?}");
    assert_eq!(seen.iter().find(|m| m.event == "task-succeeded").unwrap().data["attempt"], 1);
    assert!(seen.iter().all(|m| m.id.is_some() && m.data["at"].is_i64()), "{seen:#?}");
    // Globex's stream has its own, and acme's has none of them.
    let theirs_seen = other.until(QUIET, about(&theirs)).await;
    assert!(theirs_seen.iter().all(|m| m.data["task"] != id.as_str()), "{theirs_seen:#?}");

    assert_eq!(
        api.send(axum::http::Method::DELETE, "/v1/jobs/addition", Some(&acme), None).await.status,
        StatusCode::NO_CONTENT
    );
    let deleted = stream.until(QUIET, |m| m.event == "job-deleted").await;
    assert_eq!(deleted.len(), 1, "only acme's own events come: {deleted:#?}");
    assert_eq!(deleted[0].data["job"], "addition");

    // The admin acts on no tenant: no stream.
    let admin = api.get("/v1/events", ADMIN).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_stream_resumes_after_its_last_event_id_and_says_when_it_cannot() {
    let (api, acme) = acme_with_addition(2).await;
    let mut stream = api.events(&acme, None).await;
    let first = api.queue(&acme, "addition", json!({ "a": 1, "b": 2 })).await;
    let seen = stream.until(QUIET, about(&first)).await;
    let last = seen.last().unwrap().id.clone().unwrap();
    drop(stream);

    // Missed while away: queued, started, succeeded of the second task.
    let second = api.queue(&acme, "addition", json!({ "a": 3, "b": 4 })).await;
    api.wait(&acme, &second).await;
    let mut resumed = api.events(&acme, Some(&last)).await;
    let missed = resumed.until(QUIET, about(&second)).await;
    let mut kinds: Vec<&str> = missed.iter().map(|m| m.event.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["task-queued", "task-started", "task-succeeded"], "{missed:#?}");
    assert!(missed.iter().all(|m| m.data["task"] == second.as_str()), "{missed:#?}");

    // Another tenant's id, or one never given, resumes nothing: a reset first.
    let (globex, _) = api.tenant("globex", json!({})).await;
    for (token, last) in
        [(globex.as_str(), last.as_str()), (acme.as_str(), "nonsense"), (acme.as_str(), &"9".repeat(100))]
    {
        let mut stream = api.events(token, Some(last)).await;
        let notice = stream.next(QUIET).await.expect("a notice");
        assert_eq!(notice.event, "reset", "{notice:?}");
        assert!(notice.data["message"].as_str().unwrap().contains("re-read"), "{notice:?}");
    }
}

#[tokio::test]
async fn a_stalled_stream_slows_nothing_and_is_told_it_lost_events() {
    let (api, acme) = acme_with_addition(4).await;
    // Never read while the tasks run: it falls behind by more than the
    // feed keeps for a subscriber (three events per task).
    let mut stalled = api.events(&acme, None).await;
    let tasks = wasmjob::events::LIVE / 3 + 500;
    let task = json!({ "job": "addition", "args": { "a": 1, "b": 2 } });
    let mut ids = Vec::new();
    while ids.len() < tasks {
        let n = (tasks - ids.len()).min(wasmjob::api::MAX_BATCH);
        let batch = api.post("/v1/tasks/batch", &acme, json!({ "tasks": vec![task.clone(); n] })).await;
        ids.extend(batch.body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
    }
    for id in &ids {
        assert_eq!(api.wait(&acme, id).await["state"], "success");
    }
    let notice = stalled.next(QUIET).await.expect("a message");
    assert_eq!(notice.event, "lost", "{notice:?}");
    // And it goes on with the events still kept for it.
    let next = stalled.next(QUIET).await.expect("an event after the notice");
    assert!(next.event.starts_with("task-"), "{next:?}");
}

#[tokio::test]
async fn a_stream_ends_when_its_token_is_revoked() {
    let api = Api::start(1).await;
    api.tenant("acme", json!({})).await;
    let token = api.post("/v1/tenants/acme/tokens", ADMIN, json!({ "scope": "read" })).await;
    let (secret, id) =
        (token.body["token"].as_str().unwrap().to_owned(), token.body["id"].as_str().unwrap().to_owned());
    let mut stream = api.events(&secret, None).await;
    assert_eq!(
        api.send(axum::http::Method::DELETE, &format!("/v1/tokens/{id}"), Some(ADMIN), None).await.status,
        StatusCode::NO_CONTENT
    );
    // The stream checks its token again every second: it ends, it does not go quiet.
    let ended = tokio::time::timeout(QUIET, async { while stream.next(QUIET).await.is_some() {} });
    assert!(ended.await.is_ok(), "the stream of a revoked token stayed open");
    assert_eq!(api.get("/v1/events", &secret).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_task_whose_worker_is_lost_is_told_retrying_then_runs_again() {
    let (api, acme) = acme_with_addition(2).await;
    let mut stream = api.events(&acme, None).await;
    // Due in an hour, so that only the "dead" worker below claims it now,
    // under a lease that has already run out.
    let later = api.post("/v1/tasks", &acme, json!({ "job": "addition", "options": { "delay": 3_600_000 } })).await;
    let id = later.body["id"].as_str().unwrap().to_owned();
    let far = chrono::Utc::now().timestamp_millis() + 7_200_000;
    let dead = crate::support::claim(&api.node.store, "dead", 10, far, 0).await.unwrap();
    assert_eq!(dead.tasks.len(), 1);
    // The serving node's heartbeat rescues it (every 2 s), tells why, and
    // its next attempt runs now.
    let seen = stream.until(QUIET, about(&id)).await;
    let retrying = seen.iter().find(|m| m.event == "task-retrying" && m.data["task"] == id.as_str());
    let retrying =
        retrying.unwrap_or_else(|| panic!("no task-retrying: {:?}", seen.iter().map(|m| &m.event).collect::<Vec<_>>()));
    assert_eq!((retrying.data["reason"].as_str(), retrying.data["attempt"].as_u64()), (Some("lease-expired"), Some(1)));
}
