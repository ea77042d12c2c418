//! Contract 0.3.0: a task reports its progress (`host.progress`), seen
//! through the API, the store and the event stream while it runs, however
//! often it reports; and a cron-periodic job, due when its expression says,
//! without its `is-due` being asked.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use serde_json::json;
use wasmjob::clock::{Clock as _, ManualClock};
use wasmjob::scheduler::TickResult;
use wasmjob::tenant::DEFAULT_TENANT as T;

use crate::api_support::Api;
use crate::support::{Backend, open_node};

/// A task reporting a million times, then sleeping: its last report shows
/// while it runs, in the task and as an event, and the spam is no error.
#[tokio::test]
async fn a_running_tasks_progress_shows_in_the_api_and_the_stream() {
    let api = Api::start(2).await;
    let (write, read) = api.tenant("acme", json!({})).await;
    assert_eq!(api.upload(&write, wasmjob::examples::SLEEPY).await.status, StatusCode::CREATED);
    let mut stream = api.events(&read, None).await;
    let id = api.queue(&write, "sleepy", json!({ "reports": 1_000_000, "ms": 6000 })).await;
    let halfway =
        |m: &crate::api_support::Message| m.event == "task-progress" && m.data["progress"]["message"] == "halfway";
    let seen = stream.until(Duration::from_secs(60), halfway).await;
    // A million reports, written once per heartbeat at most (the spam may span a few).
    let told = seen.iter().filter(|m| m.event == "task-progress").count();
    assert!(told < 100, "{told} progress events for one task");
    let event = &seen.last().unwrap().data;
    assert_eq!((&event["task"], &event["progress"]), (&json!(id), &json!({ "fraction": 0.5, "message": "halfway" })));
    let task = api.get(&format!("/v1/tasks/{id}"), &read).await;
    assert_eq!(task.body["state"], "started", "{task}");
    assert_eq!(task.body["progress"], json!({ "fraction": 0.5, "message": "halfway" }), "{task}");
    let ended = api.wait(&read, &id).await;
    assert_eq!(ended["state"], "success", "{ended}");
    assert_eq!(ended["progress"]["message"], "halfway", "the last report stays: {ended}");
}

async fn a_cron_job_is_due_at_its_times_in_its_zone_without_asking_it(backend: Backend) {
    let place = crate::support::place(backend).await;
    // Friday 2026-11-27, 10:00 in Paris (09:00 UTC): next due Monday 09:00 Paris.
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap()));
    let node = open_node(&place, clock.clone(), &[wasmjob::examples::WEEKDAY_REPORT]).await;
    let job = node.registry.get(T, "weekday-report").unwrap();
    assert_eq!(job.component.contract(), "0.3.0");
    let tick = || async { node.scheduler().tick().await.into_iter().map(|(_, r)| r).collect::<Vec<_>>() };
    let monday = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    assert_eq!(tick().await, [TickResult::NotDue((monday - clock.now()).to_std().unwrap())]);
    clock.set(monday - chrono::Duration::seconds(1));
    assert_eq!(tick().await, []);
    clock.set(monday);
    assert!(matches!(&tick().await[..], [TickResult::Queued(_)]));
    // Tuesday 09:00 Paris next.
    let stored = node.store.schedule(T, "weekday-report").await.unwrap().unwrap();
    assert_eq!(stored.next_due_at, Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap().timestamp_millis());
}

crate::conformance!(a_cron_job_is_due_at_its_times_in_its_zone_without_asking_it);
