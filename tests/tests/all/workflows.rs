//! Workflows: a chain passes each result on, a chord's callback gets every
//! result of its group in order, a step retries on its own, a failed step
//! fails the workflow and the stages after it never run, on both stores
//! through real workers; on PostgreSQL, a group finishing on two nodes at
//! once releases its callback exactly once. A job starts one
//! (`start-workflow`) that commits with its attempt. Bad workflows are
//! refused whole, naming the step, with nothing queued.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use wasmjob::clock::{Clock as _, ManualClock, SystemClock};
use wasmjob::node::Node;
use wasmjob::queue::QueueFailure;
use wasmjob::store::{TaskFilter, TaskState};
use wasmjob::task::{QueueError, QueueOptions};
use wasmjob::tenant::DEFAULT_TENANT as T;
use wasmjob::wire::Workflow;
use wasmjob::workflow::Step;

use crate::support::{Backend, finished};

/// A step of `tally` adding `add`, with `more` args.
fn tally(add: i64, more: Value) -> Step {
    let mut args = json!({ "add": add });
    args.as_object_mut().unwrap().extend(more.as_object().cloned().unwrap_or_default());
    Step { job: "tally".into(), args: args.to_string(), options: QueueOptions::default() }
}

/// The workflow `id` once its last step ended, as the API shows it.
async fn ended(node: &Node, stages: &[Vec<String>], id: &str) -> Workflow {
    for step in stages.iter().flatten() {
        finished(node, step).await;
    }
    node.store.workflow(id).await.unwrap().expect("the workflow exists").into()
}

/// The args a step ran with.
async fn args_of(node: &Node, id: &str) -> Value {
    serde_json::from_str(&node.store.task(id).await.unwrap().unwrap().args).unwrap()
}

async fn a_chain_passes_each_result_to_the_next_step(backend: Backend) {
    let t = crate::support::test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::TALLY]).await;
    let node = Arc::new(t.node);
    let (stop, serving) = crate::support::serve(&node);
    let stages = vec![vec![tally(1, json!({}))], vec![tally(10, json!({}))], vec![tally(100, json!({}))]];
    let started = node.queue.start_workflow(T, &stages).await.unwrap();
    let workflow = ended(&node, &started.stages, &started.id).await;
    assert_eq!(workflow.state, wasmjob::workflow::WorkflowState::Success, "{workflow:#?}");
    assert_eq!(workflow.result, Some(json!(111)));
    assert_eq!(args_of(&node, &started.stages[1][0]).await, json!({ "add": 10, "previous": 1 }));
    assert_eq!(args_of(&node, &started.stages[2][0]).await, json!({ "add": 100, "previous": 11 }));
    // Each step knows its workflow.
    let step = node.store.task(&started.stages[2][0]).await.unwrap().unwrap();
    assert_eq!(step.workflow.as_deref(), Some(started.id.as_str()));
    drop(stop);
    serving.await.unwrap();
}

async fn a_chords_callback_gets_every_result_of_its_group_in_order(backend: Backend) {
    let t = crate::support::test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::TALLY]).await;
    let node = Arc::new(t.node);
    let (stop, serving) = crate::support::serve(&node);
    // The first members retry twice, so that they end last.
    let group: Vec<Step> =
        (1..=6).map(|n| tally(n, if n <= 2 { json!({ "succeed_at": 3 }) } else { json!({}) })).collect();
    let stages = vec![group, vec![tally(0, json!({}))]];
    let started = node.queue.start_workflow(T, &stages).await.unwrap();
    let workflow = ended(&node, &started.stages, &started.id).await;
    assert_eq!(workflow.state, wasmjob::workflow::WorkflowState::Success, "{workflow:#?}");
    assert_eq!(workflow.result, Some(json!(21)));
    let callback = &started.stages[1][0];
    assert_eq!(args_of(&node, callback).await, json!({ "add": 0, "previous": [1, 2, 3, 4, 5, 6] }));
    assert_eq!(workflow.stages[0][0].attempt, 3, "retries are per step");
    // A group alone answers the list of its results.
    let group = vec![(1..=3).map(|n| tally(n, json!({}))).collect()];
    let started = node.queue.start_workflow(T, &group).await.unwrap();
    assert_eq!(ended(&node, &started.stages, &started.id).await.result, Some(json!([1, 2, 3])));
    drop(stop);
    serving.await.unwrap();
}

async fn a_failed_step_fails_the_workflow_and_the_stages_after_it_never_run(backend: Backend) {
    let t = crate::support::test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::TALLY]).await;
    let node = Arc::new(t.node);
    let (stop, serving) = crate::support::serve(&node);
    let stages = vec![
        vec![tally(1, json!({}))],
        vec![tally(2, json!({})), tally(3, json!({ "fail": true })), tally(4, json!({}))],
        vec![tally(5, json!({}))],
        vec![tally(6, json!({}))],
    ];
    let started = node.queue.start_workflow(T, &stages).await.unwrap();
    let workflow = ended(&node, &started.stages, &started.id).await;
    assert_eq!(workflow.state, wasmjob::workflow::WorkflowState::Failure, "{workflow:#?}");
    let failed = &started.stages[1][1];
    assert_eq!(workflow.failed_step.as_ref(), Some(failed));
    let reason = workflow.reason.clone().unwrap();
    assert!(reason.contains(failed) && reason.contains("told to fail"), "{reason}");
    // Its own stage ran on; the later stages were revoked, never started.
    for (i, step) in workflow.stages[1].iter().enumerate() {
        let expected = if i == 1 { TaskState::Failure } else { TaskState::Success };
        assert_eq!(step.state, expected, "{workflow:#?}");
    }
    for step in workflow.stages[2..].iter().flatten() {
        assert_eq!((step.state, step.reason.as_deref(), step.attempt), (TaskState::Revoked, Some("upstream"), 0));
    }
    assert_eq!(workflow.result, None);
    drop(stop);
    serving.await.unwrap();
}

async fn a_step_revoked_while_it_waits_fails_the_workflow_at_the_next_sweep(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = crate::support::test_node(backend, clock.clone(), &[wasmjob::examples::TALLY]).await;
    let node = &t.node;
    // The first step waits an hour: revoked by a user meanwhile.
    let first = Step {
        options: QueueOptions { delay: Some(std::time::Duration::from_secs(3600)), ..Default::default() },
        ..tally(1, json!({}))
    };
    let stages = vec![vec![first], vec![tally(2, json!({}))], vec![tally(3, json!({}))]];
    let started = node.queue.start_workflow(T, &stages).await.unwrap();
    let waiting = node.store.task(&started.stages[1][0]).await.unwrap().unwrap();
    assert_eq!((waiting.state, waiting.reason.as_deref()), (TaskState::Queued, Some("workflow")));
    node.queue.revoke(&started.stages[0][0]).await.unwrap();
    // Its step is not pruned while the workflow waits.
    let first = wasmjob::task::parse_id(&started.stages[0][0]).unwrap();
    assert_eq!(node.store.delete_finished(vec![first]).await.unwrap(), 0);
    let aborted = node.store.abort_workflows(clock.now_millis()).await.unwrap();
    let mut ids: Vec<String> = aborted.into_iter().map(|a| a.id).collect();
    ids.sort();
    assert_eq!(ids, [started.stages[1][0].clone(), started.stages[2][0].clone()]);
    assert!(node.store.abort_workflows(clock.now_millis()).await.unwrap().is_empty(), "aborted twice");
    let workflow: Workflow = node.store.workflow(&started.id).await.unwrap().unwrap().into();
    assert_eq!(workflow.state, wasmjob::workflow::WorkflowState::Failure);
    assert_eq!(workflow.failed_step.as_ref(), Some(&started.stages[0][0]));
    // A claim never takes a waiting step.
    let now = clock.now_millis() + 7_200_000;
    assert!(crate::support::claim(&node.store, "n", 10, now, now + 60_000).await.unwrap().tasks.is_empty());
    // Over: its steps go with retention, and then so does it.
    let steps: Vec<i64> = started.stages.iter().flatten().map(|id| wasmjob::task::parse_id(id).unwrap()).collect();
    assert_eq!(node.store.delete_finished(steps).await.unwrap(), 3);
    assert!(node.store.workflow(&started.id).await.unwrap().is_none_or(|w| w.stages.is_empty()));
}

async fn a_bad_workflow_is_refused_whole_naming_the_step(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let jobs = [wasmjob::examples::TALLY, wasmjob::examples::EXCLUSIVE];
    let t = crate::support::test_node(backend, clock.clone(), &jobs).await;
    let node = &t.node;
    let refused = |stages: Vec<Vec<Step>>| async move {
        match node.queue.start_workflow(T, &stages).await {
            Err(QueueFailure::Rejected(e)) => e,
            other => panic!("not refused: {other:?}"),
        }
    };
    let field = |e: QueueError| match e {
        QueueError::InvalidOption { field, .. } => field,
        other => panic!("not an invalid option: {other:?}"),
    };
    assert_eq!(field(refused(vec![]).await), "stages");
    assert_eq!(field(refused(vec![vec![tally(1, json!({}))], vec![]]).await), "stages");
    let many = vec![(0..1001).map(|n| tally(n, json!({}))).collect()];
    assert_eq!(field(refused(many).await), "stages");
    let delayed = Step {
        options: QueueOptions { delay: Some(std::time::Duration::from_secs(1)), ..Default::default() },
        ..tally(2, json!({}))
    };
    assert_eq!(field(refused(vec![vec![tally(1, json!({}))], vec![delayed]]).await), "stages[1][0].options.delay");
    let unique = Step {
        options: QueueOptions { unique_for: Some(std::time::Duration::from_secs(1)), ..Default::default() },
        ..tally(2, json!({}))
    };
    assert_eq!(field(refused(vec![vec![unique]]).await), "stages[0][0].options.unique_for");
    let exclusive = Step { job: "settle".into(), args: r#"{"account": "a"}"#.into(), options: QueueOptions::default() };
    assert_eq!(field(refused(vec![vec![tally(1, json!({})), exclusive]]).await), "stages[0][1].job");
    let retries =
        Step { options: QueueOptions { max_retries: Some(u32::MAX), ..Default::default() }, ..tally(1, json!({})) };
    assert_eq!(field(refused(vec![vec![retries]]).await), "stages[0][0].options.max_retries");
    let previous = tally(2, json!({ "previous": 1 }));
    let e = refused(vec![vec![tally(1, json!({}))], vec![previous]]).await;
    assert!(matches!(&e, QueueError::InvalidArgs(why) if why.starts_with("stages[1][0]:")), "{e:?}");
    let not_object = Step { args: "[1]".into(), ..tally(1, json!({})) };
    assert!(matches!(refused(vec![vec![not_object]]).await, QueueError::InvalidArgs(_)));
    let huge = Step { args: json!({ "x": "y".repeat(2 << 20) }).to_string(), ..tally(1, json!({})) };
    assert!(matches!(refused(vec![vec![tally(1, json!({}))], vec![huge]]).await, QueueError::InvalidArgs(_)));
    let unknown = Step { job: "nope".into(), ..tally(1, json!({})) };
    assert!(matches!(refused(vec![vec![tally(1, json!({}))], vec![unknown]]).await, QueueError::UnknownJob(_)));
    // Nothing of any of them was queued.
    let queued = node.store.list_tasks(TaskFilter::default()).await.unwrap();
    assert!(queued.is_empty(), "{queued:#?}");
    assert!(node.store.workflow("1").await.unwrap().is_none());
}

/// The workflow a task started, from its log.
fn started_by(task: &wasmjob::store::TaskRecord) -> String {
    let log = task.log.as_deref().unwrap_or_default();
    let at = log.find("started workflow ").unwrap_or_else(|| panic!("no workflow in the log: {log}"));
    log[at + "started workflow ".len()..].chars().take_while(char::is_ascii_digit).collect()
}

async fn a_job_starts_a_workflow_that_commits_with_its_attempt(backend: Backend) {
    let t = crate::support::test_node(backend, Arc::new(SystemClock), &[wasmjob::examples::TALLY]).await;
    let node = Arc::new(t.node);
    let (stop, serving) = crate::support::serve(&node);
    // A chord of 1 and 2, then 3: started by a task that succeeds.
    let args = json!({ "add": 0, "then": [[1, 2], [3]] }).to_string();
    let parent = node.queue.queue(T, "tally", &args, &QueueOptions::default(), None).await.unwrap();
    let parent = finished(&node, &parent).await;
    assert_eq!(parent.state, TaskState::Success, "{parent:?}");
    let id = started_by(&parent);
    let record = node.store.workflow(&id).await.unwrap().expect("the workflow exists");
    let stages: Vec<Vec<String>> = record.stages.iter().map(|s| s.iter().map(|t| t.id.clone()).collect()).collect();
    let workflow = ended(&node, &stages, &id).await;
    assert_eq!((workflow.state, workflow.result.clone()), (wasmjob::workflow::WorkflowState::Success, Some(json!(6))));
    // Its steps are the task's children, in its tree.
    for step in record.stages.iter().flatten() {
        assert_eq!((step.from_task.as_deref(), step.depth), (Some(parent.id.as_str()), 1), "{step:?}");
    }
    // Started by a task that then fails: none of it ever runs.
    let args = json!({ "then": [[1], [2]], "fail": true }).to_string();
    let parent = node.queue.queue(T, "tally", &args, &QueueOptions::default(), None).await.unwrap();
    let parent = finished(&node, &parent).await;
    assert_eq!(parent.state, TaskState::Failure);
    let record = node.store.workflow(&started_by(&parent)).await.unwrap().unwrap();
    let stages: Vec<Vec<String>> = record.stages.iter().map(|s| s.iter().map(|t| t.id.clone()).collect()).collect();
    let workflow = ended(&node, &stages, &record.id).await;
    assert_eq!(workflow.state, wasmjob::workflow::WorkflowState::Failure);
    let reasons: Vec<_> = workflow.stages.iter().flatten().map(|s| (s.state, s.reason.clone(), s.attempt)).collect();
    let discarded = (TaskState::Revoked, Some("discarded".to_owned()), 0);
    let upstream = (TaskState::Revoked, Some("upstream".to_owned()), 0);
    assert_eq!(reasons, [discarded, upstream]);
    drop(stop);
    serving.await.unwrap();
}

/// A job floods `start-workflow` with 200,000 steps (and an empty stage):
/// refused by shape, naming the bound, nothing queued; the engine serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_flooding_start_workflow_is_refused_and_nothing_is_queued() {
    let t = crate::support::test_node(Backend::Sqlite, Arc::new(SystemClock), &[wasmjob::examples::TALLY]).await;
    let node = Arc::new(t.node);
    let (stop, serving) = crate::support::serve(&node);
    for (args, refusal) in [
        (json!({ "flood": 200_000 }), "at most 1000 steps, not 200000"),
        (json!({ "then": [[1], []] }), "every stage a step"),
    ] {
        let id = node.queue.queue(T, "tally", &args.to_string(), &QueueOptions::default(), None).await.unwrap();
        let task = finished(&node, &id).await;
        assert_eq!(task.state, TaskState::Failure, "{task:?}");
        assert!(task.error.as_deref().unwrap_or_default().contains(refusal), "{args}: {task:?}");
    }
    assert_eq!(node.store.list_tasks(Default::default()).await.unwrap().len(), 2, "no step was queued");
    let id = node.queue.queue(T, "tally", r#"{"add": 5}"#, &QueueOptions::default(), None).await.unwrap();
    assert_eq!(finished(&node, &id).await.result.as_deref(), Some("5"));
    drop(stop);
    serving.await.unwrap();
}

crate::conformance!(
    a_job_starts_a_workflow_that_commits_with_its_attempt,
    a_chain_passes_each_result_to_the_next_step,
    a_chords_callback_gets_every_result_of_its_group_in_order,
    a_failed_step_fails_the_workflow_and_the_stages_after_it_never_run,
    a_step_revoked_while_it_waits_fails_the_workflow_at_the_next_sweep,
    a_bad_workflow_is_refused_whole_naming_the_step,
);

/// Two nodes on one PostgreSQL run a group of 40 whose members end at
/// about the same time on both: the callback is released once, with every
/// result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_ending_on_two_nodes_at_once_releases_its_callback_once() {
    let place = crate::support::place(Backend::Postgres).await;
    let a = Arc::new(crate::support::open_node(&place, Arc::new(SystemClock), &[wasmjob::examples::TALLY]).await);
    let b = Arc::new(crate::support::open_node(&place, Arc::new(SystemClock), &[]).await);
    let (stop_a, serving_a) = crate::support::serve(&a);
    let (stop_b, serving_b) = crate::support::serve(&b);
    for round in 0..5 {
        let group: Vec<Step> = (1..=40).map(|n| tally(n, json!({}))).collect();
        let started = a.queue.start_workflow(T, &[group, vec![tally(0, json!({}))]]).await.unwrap();
        let workflow = ended(&b, &started.stages, &started.id).await;
        assert_eq!(workflow.result, Some(json!(820)), "round {round}: {workflow:#?}");
        let callback = b.store.task(&started.stages[1][0]).await.unwrap().unwrap();
        assert_eq!(callback.attempt, 1, "round {round}");
        let previous = &args_of(&b, &callback.id).await["previous"];
        assert_eq!(previous, &json!((1..=40).collect::<Vec<i64>>()), "round {round}");
    }
    drop((stop_a, stop_b));
    serving_a.await.unwrap();
    serving_b.await.unwrap();
}

/// Through the API: started as a chord, read as a whole, another tenant's
/// is not found, a bad one is a 422 naming the step.
#[tokio::test]
async fn the_api_starts_a_workflow_and_shows_it_only_to_its_tenant() {
    let api = crate::api_support::Api::start(4).await;
    let (acme, acme_read) = api.tenant("acme", json!({})).await;
    let (globex, _) = api.tenant("globex", json!({})).await;
    assert_eq!(api.upload(&acme, wasmjob::examples::TALLY).await.status, StatusCode::CREATED);
    let step = |add: i64| json!({ "job": "tally", "args": { "add": add } });
    let chord = json!({ "chord": { "group": [step(1), step(2)], "callback": step(3) } });
    let started = api.post("/v1/workflows", &acme, chord).await;
    assert_eq!(started.status, StatusCode::CREATED, "{started}");
    let id = started.body["id"].as_str().unwrap().to_owned();
    api.wait(&acme_read, started.body["stages"][1][0].as_str().unwrap()).await;
    let shown = api.get(&format!("/v1/workflows/{id}"), &acme_read).await;
    assert_eq!((shown.body["state"].clone(), shown.body["result"].clone()), (json!("success"), json!(6)), "{shown}");
    assert_eq!(shown.body["stages"][0].as_array().unwrap().len(), 2);
    assert_eq!(api.get(&format!("/v1/workflows/{id}"), &globex).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/v1/workflows/01", &acme_read).await.status, StatusCode::NOT_FOUND);
    let bad = json!({ "chain": [step(1), { "job": "tally", "options": { "delay": 1000 } }] });
    let refused = api.post("/v1/workflows", &acme, bad).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused.body["error"]["field"], "stages[1][0].options.delay", "{refused}");
    let shapeless = api.post("/v1/workflows", &acme, json!({ "chain": [], "group": [] })).await;
    assert!(shapeless.status.is_client_error(), "{shapeless}");
    // A failed step is not retried by hand: its workflow does not go on.
    let failing = json!({ "chain": [{ "job": "tally", "args": { "fail": true } }, step(1)] });
    let started = api.post("/v1/workflows", &acme, failing).await;
    let first = started.body["stages"][0][0].as_str().unwrap().to_owned();
    assert_eq!(api.wait(&acme_read, &first).await["state"], "failure");
    let retried = api.post(&format!("/v1/tasks/{first}/retry"), &acme, json!({})).await;
    assert_eq!(retried.status, StatusCode::CONFLICT, "{retried}");
    assert!(retried.body["error"]["message"].as_str().unwrap().contains("workflow"), "{retried}");
}
