//! Three `wasmjob serve` processes on one PostgreSQL schema answer as one
//! engine, seen from outside: over HTTP only, plus reads of the store for
//! what the API does not show (how many tasks run at once, who holds a
//! lease, when the scheduler queued a tick).
//!
//! The schema starts empty: no tenant, token or job exists before the nodes
//! do, so everything the nodes know about each other they learn while
//! running. The nodes start together, as a deployment starts them; one that
//! fails to (a race on the empty store) is an observation of its own, and is
//! started again alone so that the others still run.
//!
//! Each observation uses a tenant of its own; they share one cluster because
//! starting nodes is slow. Every observation runs even when an earlier one
//! fails, and the test then fails naming all that did; each failure's
//! message says which node, which change, and what it saw, and the end of
//! every node's log follows. The periodic observation kills node A, so it
//! comes last.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio_postgres::types::ToSql;
use ureq::http::StatusCode;

use crate::api_support::Answer;
use crate::support::{Backend, EngineProcess, place};

/// The nodes, by index into [`Cluster::nodes`].
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// The admin token every node is started with.
const ADMIN: &str = "wj_cluster_admin-secret";

/// A change made through one node is visible through every other this soon
/// after its answer came back.
const SEEN_WITHIN: Duration = Duration::from_secs(1);

/// How long the setup of an observation (its tenant, token and jobs) may
/// take to reach every node: each node compiles the jobs, which takes a
/// debug build on a busy two-core machine seconds per component (seen:
/// over 2 s), so the bound is generous; the setup measures nothing, and
/// only the observation that measures [`SEEN_WITHIN`] fails on it.
const SETUP_WITHIN: Duration = Duration::from_secs(60);

/// The longest one request of [`Cluster::wait`] waits; longer waits take
/// several (a request is cut off after 45 s).
const WAIT_ROUND: Duration = Duration::from_secs(20);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(20);

/// One observation of the cluster: its name and how to make it.
type Observation = (&'static str, fn(&mut Cluster));

#[test]
fn a_cluster_of_three_nodes_answers_as_one() {
    let (mut cluster, startup) = Cluster::start(["node-a", "node-b", "node-c"]);
    let observations: [Observation; 15] = [
        ("a_tenant_created_through_one_node_is_known_to_the_others_within_a_second", tenant_is_seen_everywhere),
        ("a_token_created_through_one_node_works_on_the_others_within_a_second", token_is_seen_everywhere),
        ("a_job_uploaded_through_one_node_runs_through_the_others_within_a_second", job_upload_is_seen_everywhere),
        ("a_job_deleted_through_one_node_is_unknown_to_the_others_within_a_second", job_delete_is_seen_everywhere),
        ("an_upload_compiling_on_one_node_is_followed_through_another", upload_is_followed_everywhere),
        ("a_task_queued_through_one_node_waits_for_a_job_compiling_on_another", task_waits_for_compile_elsewhere),
        ("a_token_revoked_through_one_node_is_refused_by_every_node_within_a_second", revoked_token_is_refused),
        ("a_tenants_max_running_holds_across_the_cluster", max_running_holds_across_the_cluster),
        ("a_running_task_is_revoked_through_any_node", running_task_is_revoked_through_any_node),
        ("a_completion_on_one_node_wakes_a_waiter_on_another", completion_wakes_waiter_on_another_node),
        ("a_tenants_event_stream_on_one_node_shows_its_tasks_queued_and_run_through_others", events_reach_every_node),
        (
            "an_egress_allow_list_changed_through_one_node_governs_every_node_within_a_second",
            egress_policy_is_seen_everywhere,
        ),
        ("a_secret_changed_through_one_node_is_read_by_the_next_task_on_every_node", secret_is_read_everywhere),
        (
            "a_unique_task_through_one_node_is_a_duplicate_through_another_and_every_node_counts_it",
            unique_and_activity_are_the_clusters,
        ),
        // Kills node A: last.
        ("periodic_jobs_tick_once_across_the_cluster_survive_a_node_and_stop_when_deleted", periodic_job_ticks),
    ];
    let total = observations.len() + 1;
    let mut failed = Vec::new();
    // The first observation: started together on an empty store, every node comes up.
    let name = "three_nodes_started_together_on_an_empty_store_all_come_up";
    if startup.is_empty() {
        eprintln!("ok     {name}");
    } else {
        eprintln!("{}", startup.join("\n"));
        eprintln!("FAILED {name}");
        failed.push(name);
    }
    for (name, observe) in observations {
        let started = Instant::now();
        // A failed observation has printed its panic; the others still run.
        match catch_unwind(AssertUnwindSafe(|| observe(&mut cluster))) {
            Ok(()) => eprintln!("ok     {name} ({:.1?})", started.elapsed()),
            Err(_) => {
                eprintln!("FAILED {name} ({:.1?})", started.elapsed());
                failed.push(name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} observations failed (their messages are above):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A tenant created through A is known to B and C within a second: each
/// can create a token for it.
fn tenant_is_seen_everywhere(c: &mut Cluster) {
    let created = c.post_json(A, "/v1/tenants", ADMIN, &json!({ "name": "seen-tenant", "quotas": {} }));
    let answered = Instant::now();
    expect(&created, StatusCode::CREATED, "node-a: POST /v1/tenants `seen-tenant`");
    seen_since(
        answered,
        "tenant `seen-tenant` created through node-a, then a token for it created through node-b and node-c",
        || {
            for n in [B, C] {
                let answer = c.post_json(n, "/v1/tenants/seen-tenant/tokens", ADMIN, &json!({ "scope": "write" }));
                if answer.status != StatusCode::CREATED {
                    return Err(format!("{} answered {answer}", c.id(n)));
                }
            }
            Ok(())
        },
    );
}

/// A token created through A works on B and C within a second.
fn token_is_seen_everywhere(c: &mut Cluster) {
    let created = c.post_json(A, "/v1/tenants", ADMIN, &json!({ "name": "seen-token", "quotas": {} }));
    expect(&created, StatusCode::CREATED, "setup: node-a: POST /v1/tenants `seen-token`");
    let created = c.post_json(A, "/v1/tenants/seen-token/tokens", ADMIN, &json!({ "scope": "write" }));
    let answered = Instant::now();
    let body = expect(&created, StatusCode::CREATED, "node-a: POST /v1/tenants/seen-token/tokens");
    let token = body["token"].as_str().expect("a token in the answer");
    seen_since(answered, "a token created through node-a, used on node-b and node-c", || c.accepted(&[B, C], token));
}

/// A job uploaded through A is shown by B and C within a second, and B
/// queues it; the task succeeds.
fn job_upload_is_seen_everywhere(c: &mut Cluster) {
    let tenant = c.tenant("seen-upload", json!({}), &[]);
    let uploaded = c.upload(A, &tenant.token, wasmjob::examples::ADDITION);
    let answered = Instant::now();
    let version = expect(&uploaded, StatusCode::CREATED, "node-a: POST /v1/jobs (addition)")["version"].clone();
    let what = "job `addition` uploaded through node-a, then shown by node-b and node-c and queued through node-b";
    let id = seen_since(answered, what, || {
        for n in [B, C] {
            let shown = c.get(n, "/v1/jobs/addition", &tenant.token);
            if shown.status != StatusCode::OK || shown.body["version"] != version {
                return Err(format!("{} shows it as {shown} (uploaded version {version})", c.id(n)));
            }
        }
        let args = json!({ "job": "addition", "args": { "a": 1, "b": 2 } });
        let queued = c.post_json(B, "/v1/tasks", &tenant.token, &args);
        match queued.status {
            StatusCode::CREATED => Ok(task_id(&queued.body)),
            _ => Err(format!("node-b shows it, but answers the request to queue it with {queued}")),
        }
    });
    let task = c.wait(C, &tenant.token, &id, Duration::from_secs(10));
    assert!(
        task["state"] == "success" && task["result"] == 3,
        "task {id} of `addition`, uploaded through node-a, queued through node-b and waited for through node-c, \
         ended as {task}"
    );
}

/// An upload answered at once by A (compiling) is followed through B until
/// it is ready, and its job then runs through C.
fn upload_is_followed_everywhere(c: &mut Cluster) {
    let tenant = c.tenant("followed-upload", json!({}), &[]);
    let uploaded = c.upload_with(A, &tenant.token, wasmjob::examples::FIB, "");
    let upload = expect(&uploaded, StatusCode::ACCEPTED, "node-a: POST /v1/jobs (fib), not waiting");
    assert_eq!(upload["state"], "compiling", "{uploaded}");
    let location = upload["location"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(120), "the upload through node-a, ready as seen through node-b", || {
        let seen = c.get(B, &location, &tenant.token);
        match (seen.status, seen.body["state"].as_str(), seen.body["name"].as_str()) {
            (StatusCode::OK, Some("ready"), Some("fib")) => Ok(()),
            _ => Err(format!("node-b shows {location} as {seen}")),
        }
    });
    let id = eventually(Duration::from_secs(5), "a task of `fib` queued through node-c", || {
        let queued = c.post_json(C, "/v1/tasks", &tenant.token, &json!({ "job": "fib", "args": { "n": 10 } }));
        match queued.status {
            StatusCode::CREATED => Ok(task_id(&queued.body)),
            _ => Err(format!("node-c answers {queued}")),
        }
    });
    let task = c.wait(B, &tenant.token, &id, Duration::from_secs(10));
    assert_eq!((task["state"].as_str(), task["result"].as_i64()), (Some("success"), Some(55)), "{task}");
}

/// A task queued through C for a job whose upload A still compiles (the
/// upload declares its name) is held, then runs once A has compiled it.
fn task_waits_for_compile_elsewhere(c: &mut Cluster) {
    let tenant = c.tenant("held-elsewhere", json!({}), &[]);
    let uploaded = c.upload_with(A, &tenant.token, crate::polyglot::POLYGLOT_PYTHON_ADDITION, "?name=addition-py");
    expect(&uploaded, StatusCode::ACCEPTED, "node-a: POST /v1/jobs?name=addition-py, not waiting");
    // Compiling an 18 MB Python job takes seconds: the task comes first.
    let id = c.queue(C, &tenant.token, "addition-py", json!({ "a": 20, "b": 22 }));
    let held = c.get(B, &format!("/v1/tasks/{id}"), &tenant.token);
    assert_eq!(
        (held.body["state"].as_str(), held.body["reason"].as_str()),
        (Some("queued"), Some("compiling")),
        "{held}"
    );
    let shown = c.get(C, "/v1/jobs/addition-py", &tenant.token);
    assert_eq!(shown.body["state"], "compiling", "node-c: GET /v1/jobs/addition-py: {shown}");
    let task = c.wait(B, &tenant.token, &id, Duration::from_secs(300));
    assert_eq!((task["state"].as_str(), task["result"].as_i64()), (Some("success"), Some(42)), "{task}");
    // Every node compiles the job for itself; the job says how many have.
    eventually(Duration::from_secs(300), "addition-py compiled on every node, as node-c shows it", || {
        let shown = c.get(C, "/v1/jobs/addition-py", &tenant.token);
        let nodes = &shown.body["nodes"];
        match (nodes["ready"].as_u64(), nodes["alive"].as_u64()) {
            (Some(ready), Some(alive)) if alive >= 3 && ready == alive => Ok(()),
            _ => Err(format!("node-c shows {shown}")),
        }
    });
}

/// A job deleted through B is unknown to A and C within a second: they
/// answer 404 for it, and A refuses to queue it (404 `unknown_job`).
fn job_delete_is_seen_everywhere(c: &mut Cluster) {
    let tenant = c.tenant("seen-delete", json!({}), &[wasmjob::examples::ADDITION]);
    let deleted = c.delete(B, "/v1/jobs/addition", &tenant.token);
    let answered = Instant::now();
    expect(&deleted, StatusCode::NO_CONTENT, "node-b: DELETE /v1/jobs/addition");
    let what =
        "job `addition` deleted through node-b, then asked for through node-a and node-c and queued through node-a";
    seen_since(answered, what, || {
        for n in [A, C] {
            let shown = c.get(n, "/v1/jobs/addition", &tenant.token);
            if shown.status != StatusCode::NOT_FOUND {
                return Err(format!("{} still shows it: {shown}", c.id(n)));
            }
        }
        let args = json!({ "job": "addition", "args": { "a": 1, "b": 2 } });
        let queued = c.post_json(A, "/v1/tasks", &tenant.token, &args);
        match (queued.status, queued.code()) {
            (StatusCode::NOT_FOUND, "unknown_job") => Ok(()),
            _ => Err(format!("node-a answers the request to queue it with {queued} (expected 404 unknown_job)")),
        }
    });
}

/// A token revoked through A is refused by A at once and by B and C within
/// a second.
fn revoked_token_is_refused(c: &mut Cluster) {
    let tenant = c.tenant("revoked-token", json!({}), &[]);
    let revoked = c.delete(A, &format!("/v1/tokens/{}", tenant.token_id), ADMIN);
    let answered = Instant::now();
    expect(&revoked, StatusCode::NO_CONTENT, &format!("node-a: DELETE /v1/tokens/{}", tenant.token_id));
    let on_a = c.get(A, "/v1/jobs", &tenant.token);
    assert_eq!(on_a.status, StatusCode::UNAUTHORIZED, "node-a revoked the token, then accepted it at once: {on_a}");
    seen_since(answered, "a token revoked through node-a, refused (401) by node-b and node-c", || {
        for n in [B, C] {
            let answer = c.get(n, "/v1/jobs", &tenant.token);
            if answer.status != StatusCode::UNAUTHORIZED {
                return Err(format!("{} still answers a request with it: {answer}", c.id(n)));
            }
        }
        Ok(())
    });
}

/// A tenant created through A with `max_running: 1` never has two tasks
/// running at once anywhere in the cluster, whichever nodes queue and run
/// them: no node falls back to the default quotas for a tenant it has not
/// loaded.
fn max_running_holds_across_the_cluster(c: &mut Cluster) {
    const TASKS: usize = 6;
    let tenant = c.tenant("one-at-a-time", json!({ "max_running": 1 }), &[wasmjob::examples::SLEEPY]);
    let queued_at = Instant::now();
    let ids: Vec<String> = (0..TASKS)
        .map(|i| c.queue(if i % 2 == 0 { B } else { C }, &tenant.token, "sleepy", json!({ "ms": 300 })))
        .collect();

    // The most tasks of the tenant the store showed started at once, and when.
    let mut most = (0, Duration::ZERO);
    let sql = "SELECT count(*) FILTER (WHERE state = 'started'), \
               count(*) FILTER (WHERE state IN ('success', 'failure', 'revoked')) FROM tasks WHERE tenant = $1";
    let deadline = queued_at + Duration::from_secs(15);
    loop {
        let row = &c.db.rows(sql, &[&tenant.name])[0];
        let (running, ended): (i64, i64) = (row.get(0), row.get(1));
        if running > most.0 {
            most = (running, queued_at.elapsed());
        }
        if ended as usize >= TASKS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{TASKS} tasks of `sleepy` (300 ms each) queued through node-b and node-c did not all end within 15 s: \
             {ended} ended, {running} running; tasks {ids:?}"
        );
        sleep(Duration::from_millis(5));
    }
    assert!(
        most.0 <= 1,
        "tenant `one-at-a-time` (created through node-a with max_running 1) had {} tasks started at once, \
         {:?} after its {TASKS} tasks were queued through node-b and node-c",
        most.0,
        most.1
    );
    assert_eq!(most.0, 1, "the store never showed a task of `one-at-a-time` running: this observation saw nothing");
    for id in &ids {
        let task = c.get(A, &format!("/v1/tasks/{id}"), &tenant.token);
        assert!(
            task.status == StatusCode::OK && task.body["state"] == "success",
            "task {id} of `one-at-a-time` (max_running 1), asked for through node-a, ended as {task}"
        );
    }
}

/// A running task revoked through a node other than the one running it is
/// stopped: it ends `revoked` within 3 s, as seen through a third node,
/// long before its 20 s would be up.
fn running_task_is_revoked_through_any_node(c: &mut Cluster) {
    let tenant = c.tenant("revoke-anywhere", json!({}), &[wasmjob::examples::SLEEPY]);
    let id = c.queue(A, &tenant.token, "sleepy", json!({ "ms": 20_000 }));
    // The lease is `<node-id>:<task>:<attempt>`.
    let lease = eventually(Duration::from_secs(5), &format!("task {id} (sleepy, 20 s) started by some node"), || {
        let rows = c.db.rows("SELECT state, lease FROM tasks WHERE id::text = $1", &[&id]);
        let row = rows.first().ok_or_else(|| "no such task in the store".to_owned())?;
        let (state, lease): (String, Option<String>) = (row.get(0), row.get(1));
        match lease {
            Some(lease) if state == "started" => Ok(lease),
            _ => Err(format!("state `{state}`, lease {lease:?}")),
        }
    });
    let runner_id = lease.split(':').next().unwrap_or_default();
    let runner = (0..3)
        .find(|&n| c.id(n) == runner_id)
        .unwrap_or_else(|| panic!("task {id} holds lease `{lease}`, which names none of the nodes"));
    let (revoker, waiter) = ((runner + 1) % 3, (runner + 2) % 3);
    let runner_id = c.id(runner);

    let revoked = c.post_empty(revoker, &format!("/v1/tasks/{id}/revoke"), &tenant.token);
    let answered = Instant::now();
    let mut problems = Vec::new();
    let state = revoked.body["state"].as_str().unwrap_or_default();
    if revoked.status != StatusCode::OK || !matches!(state, "revoked" | "revoking") {
        problems.push(format!(
            "{} answered the revoke of task {id} (running on {runner_id}) with {revoked}; \
             expected 200 with state `revoked` or `revoking`",
            c.id(revoker)
        ));
    }
    let deadline = answered + Duration::from_secs(3);
    let task = loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let task = c.wait(waiter, &tenant.token, &id, left);
        if is_terminal(&task) || Instant::now() >= deadline {
            break task;
        }
    };
    if task["state"] != "revoked" {
        problems.push(format!(
            "task {id} (sleepy, 20 s), running on {runner_id} and revoked through {}, was {} `{}` {:.1?} after the \
             revoke answered, waiting through {}",
            c.id(revoker),
            task["state"],
            task["reason"],
            answered.elapsed(),
            c.id(waiter)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A completion on one node wakes a waiter on another: `addition` queued
/// through B, waited for through C.
fn completion_wakes_waiter_on_another_node(c: &mut Cluster) {
    let tenant = c.tenant("wake", json!({}), &[wasmjob::examples::ADDITION]);
    // A short delay, so that the waiter is waiting when the task ends.
    let body = json!({ "job": "addition", "args": { "a": 20, "b": 22 }, "options": { "delay": 200 } });
    let queued = c.post_json(B, "/v1/tasks", &tenant.token, &body);
    let id = task_id(expect(&queued, StatusCode::CREATED, "node-b: POST /v1/tasks (addition)"));
    let asked = Instant::now();
    let task = c.wait(C, &tenant.token, &id, Duration::from_secs(30));
    let took = asked.elapsed();
    let late = now_ms() - task["finished_at"].as_i64().unwrap_or(i64::MAX);
    assert!(
        task["state"] == "success" && task["result"] == 42 && took < Duration::from_secs(5),
        "task {id} (addition, 200 ms delay), queued through node-b and waited for through node-c: \
         the wait answered after {took:.1?} with {task}"
    );
    eprintln!("the wait through node-c answered {late} ms after task {id} finished ({took:.1?} after it was asked)");
}

/// A tenant's event stream through C shows its task queued through B
/// (an event made on B) started and ended (made on whichever node ran it),
/// and a job uploaded through A. The other nodes send a tenant's events
/// once they have heard that C watches it (a notification): until one
/// task's three events have come, a task may show only some. Events made
/// on different nodes may arrive in either order: they are awaited as a set.
/// A message of an event stream: its type and data.
type Message = (String, Value);

fn events_reach_every_node(c: &mut Cluster) {
    let tenant = c.tenant("events", json!({}), &[wasmjob::examples::ADDITION]);
    let messages = c.events(C, &tenant.token);
    let mut seen: Vec<Message> = Vec::new();
    let kinds = |seen: &[Message], key: &str, value: &str| -> Vec<String> {
        let mut kinds: Vec<String> = seen.iter().filter(|(_, d)| d[key] == value).map(|(k, _)| k.clone()).collect();
        kinds.sort();
        kinds
    };
    // Until `done`, read what comes for up to `within`.
    let read = |seen: &mut Vec<Message>, within: Duration, done: &dyn Fn(&[Message]) -> bool| {
        let deadline = Instant::now() + within;
        while !done(seen) {
            match messages.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(message) => seen.push(message),
                Err(_) => return false,
            }
        }
        true
    };
    let queue = || {
        let queued =
            c.post_json(B, "/v1/tasks", &tenant.token, &json!({ "job": "addition", "args": { "a": 1, "b": 2 } }));
        task_id(expect(&queued, StatusCode::CREATED, "node-b: POST /v1/tasks (addition)"))
    };
    let all_three = |id: String| move |seen: &[Message]| kinds(seen, "task", &id).len() == 3;
    eventually(SETUP_WITHIN, "node-c's stream shows a task queued through node-b", || {
        let probe = queue();
        match read(&mut seen, Duration::from_secs(5), &all_three(probe.clone())) {
            true => Ok(()),
            false => Err(format!("task {probe}: {seen:?}")),
        }
    });
    let id = queue();
    let fully = read(&mut seen, SETUP_WITHIN, &all_three(id.clone()));
    assert!(fully, "node-c's stream did not show task {id} queued, started and ended: {seen:#?}");
    assert_eq!(kinds(&seen, "task", &id), ["task-queued", "task-started", "task-succeeded"], "{seen:#?}");
    let uploaded = c.upload(A, &tenant.token, wasmjob::examples::SLEEPY);
    expect(&uploaded, StatusCode::CREATED, "node-a: POST /v1/jobs (sleepy)");
    let both = |seen: &[Message]| kinds(seen, "job", "sleepy").len() == 2;
    let shown = read(&mut seen, SETUP_WITHIN, &both);
    assert!(shown, "node-c's stream did not show job sleepy uploaded and compiled through node-a: {seen:#?}");
    assert_eq!(kinds(&seen, "job", "sleepy"), ["job-compiled", "job-uploaded"], "{seen:#?}");
}

/// A unique task queued through node A is a duplicate through node B (its
/// args written otherwise); once it ran on whichever node, node C's
/// activity counts it (written by that node at its heartbeat).
fn unique_and_activity_are_the_clusters(c: &mut Cluster) {
    let tenant = c.tenant("unique", json!({}), &[wasmjob::examples::ADDITION]);
    let unique = |args: Value| json!({ "job": "addition", "args": args, "options": { "unique_for": 600_000 } });
    let first = c.post_json(A, "/v1/tasks", &tenant.token, &unique(json!({ "a": 4, "b": 5 })));
    let id = task_id(expect(&first, StatusCode::CREATED, "node-a: POST /v1/tasks (unique)"));
    let again = c.post_json(B, "/v1/tasks", &tenant.token, &unique(json!({ "b": 5, "a": 4 })));
    assert_eq!(again.status, StatusCode::CONFLICT, "node-b: the same unique task: {again}");
    assert_eq!(again.body["error"]["existing_task"], id.as_str(), "node-b: {again}");
    eventually(SETUP_WITHIN, "node-c's activity counts the task run anywhere", || {
        let activity = c.get(C, "/v1/activity?minutes=10", &tenant.token);
        let minutes = activity.body["minutes"].as_array().cloned().unwrap_or_default();
        match minutes.iter().filter_map(|m| m["succeeded"].as_u64()).sum::<u64>() {
            1 => Ok(()),
            _ => Err(format!("node-c: {activity}")),
        }
    });
}

/// A tenant's egress allow-list, changed through one node, governs the
/// tasks every node runs within a second: allowed through A, a request to
/// a local server succeeds on whichever node runs it (and the stored task
/// shows the request); emptied through B, the same request is denied.
fn egress_policy_is_seen_everywhere(c: &mut Cluster) {
    let tenant = c.tenant("egress", json!({}), &[wasmjob::examples::FETCH]);
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://127.0.0.1:{}/", server.local_addr().expect("a bound port").port());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in server.incoming().flatten() {
            let mut stream = stream;
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
        }
    });
    // Tasks queued through every node, so that every node is likely to run some.
    let fetched = |c: &Cluster| -> Vec<(String, Value)> {
        let ids: Vec<(usize, String)> = [A, B, C, A, B, C]
            .iter()
            .map(|&n| (n, c.queue(n, &tenant.token, "fetch", json!({ "url": url }))))
            .collect();
        ids.into_iter()
            .map(|(n, id)| {
                let task = c.wait(n, &tenant.token, &id, Duration::from_secs(30));
                let answer: Value = task["result"].clone();
                (format!("task {id} (queued through {}) {task}", c.id(n)), answer[0].clone())
            })
            .collect()
    };
    for (what, answer) in fetched(c) {
        assert_eq!(answer["error"], "HttpRequestDenied", "before any allow-list: {what}");
    }
    let path = format!("/v1/tenants/{}", tenant.name);
    let changed = c.patch_json(A, &path, ADMIN, &json!({ "quotas": { "allowed_hosts": ["127.0.0.1"] } }));
    let answered = Instant::now();
    expect(&changed, StatusCode::OK, "node-a: PATCH the tenant's allowed_hosts");
    seen_since(answered, "127.0.0.1 allowed through node-a, then fetched by tasks on every node", || {
        for (what, answer) in fetched(c) {
            if answer["head"] != "hello" {
                return Err(what);
            }
        }
        Ok(())
    });
    let id = c.queue(C, &tenant.token, "fetch", json!({ "url": url }));
    let task = c.wait(C, &tenant.token, &id, Duration::from_secs(30));
    assert_eq!(task["http"]["requests"], 1, "the stored task shows its request: {task}");
    let changed = c.patch_json(B, &path, ADMIN, &json!({ "quotas": { "allowed_hosts": null } }));
    let answered = Instant::now();
    expect(&changed, StatusCode::OK, "node-b: PATCH the tenant's allowed_hosts back to the default");
    seen_since(answered, "the allow-list emptied through node-b, then fetches denied on every node", || {
        for (what, answer) in fetched(c) {
            if answer["error"] != "HttpRequestDenied" {
                return Err(what);
            }
        }
        Ok(())
    });
}

/// A secret is read from the store when a task starts, not cached: set
/// through B, changed through C, deleted through A, the next tasks on every
/// node read what was set last.
fn secret_is_read_everywhere(c: &mut Cluster) {
    let tenant = c.tenant("secrets", json!({}), &[wasmjob::examples::NOSY]);
    let read_everywhere = |c: &Cluster, change: &str, expected: Value| {
        for n in [A, B, C, A, B, C] {
            let id = c.queue(n, &tenant.token, "nosy", json!({ "secrets": ["mine"] }));
            let task = c.wait(n, &tenant.token, &id, Duration::from_secs(30));
            let got: Value = task["result"].clone();
            assert_eq!(got["secrets"]["mine"], expected, "{change}, then task {id} queued through {}: {task}", c.id(n));
        }
    };
    let path = "/v1/secrets/mine";
    let set = c.put_json(B, path, &tenant.token, &json!({ "value": "first" }));
    expect(&set, StatusCode::NO_CONTENT, "node-b: PUT the secret");
    read_everywhere(c, "set to `first` through node-b", json!({ "Ok": "first" }));
    let set = c.put_json(C, path, &tenant.token, &json!({ "value": "second" }));
    expect(&set, StatusCode::NO_CONTENT, "node-c: PUT the secret again");
    read_everywhere(c, "changed to `second` through node-c", json!({ "Ok": "second" }));
    let deleted = c.delete(A, path, &tenant.token);
    expect(&deleted, StatusCode::NO_CONTENT, "node-a: DELETE the secret");
    let missing = "the tenant has no secret `mine`: set it with `wasmjob secret set mine`";
    read_everywhere(c, "deleted through node-a", json!({ "Err": missing }));
}

/// A periodic job uploaded through A ticks about once a second, once per
/// due time across the cluster; its ticks go on when A dies, and stop once
/// it is deleted through B.
fn periodic_job_ticks(c: &mut Cluster) {
    let tenant = c.tenant("periodic", json!({}), &[]);
    let uploaded = c.upload(A, &tenant.token, wasmjob::examples::EVERY_SECOND);
    let start = now_ms();
    expect(&uploaded, StatusCode::CREATED, "node-a: POST /v1/jobs (every-second)");
    let ticks = |db: &Db| -> Vec<i64> {
        let sql = "SELECT queued_at FROM tasks WHERE tenant = $1 AND job = 'every-second' ORDER BY queued_at";
        db.rows(sql, &[&tenant.name]).iter().map(|r| r.get(0)).collect()
    };
    // Tick times in ms after the upload answered, for messages.
    let shown = |ticks: &[i64]| format!("{:?}", ticks.iter().map(|t| t - start).collect::<Vec<_>>());

    eventually(Duration::from_secs(5), "3 ticks of `every-second`, uploaded through node-a, within 5 s", || {
        let ticks = ticks(&c.db);
        if ticks.len() >= 3 { Ok(()) } else { Err(format!("ticks at {} ms after the upload", shown(&ticks))) }
    });

    c.kill(A);
    let killed = now_ms();
    eventually(Duration::from_secs(6), "3 more ticks from node-b and node-c within 6 s of node-a's death", || {
        let ticks = ticks(&c.db);
        match ticks.iter().filter(|&&t| t > killed).count() {
            3.. => Ok(()),
            _ => Err(format!("ticks at {} ms after the upload; node-a killed at {}", shown(&ticks), killed - start)),
        }
    });

    let deleted = c.delete(B, "/v1/jobs/every-second", &tenant.token);
    let answered = now_ms();
    expect(&deleted, StatusCode::NO_CONTENT, "node-b: DELETE /v1/jobs/every-second");
    sleep(Duration::from_millis(1500));

    let ticks = ticks(&c.db);
    let timeline = format!(
        "ticks at {} ms after the upload through node-a; node-a killed at {}; delete through node-b answered at {}",
        shown(&ticks),
        killed - start,
        answered - start
    );
    let mut problems = Vec::new();
    // One tick may have been in flight when the delete answered.
    let late: Vec<i64> = ticks.iter().filter(|&&t| t > answered + 200).map(|t| t - start).collect();
    if !late.is_empty() {
        problems.push(format!("ticks queued after the job was deleted, at {late:?} ms"));
    }
    // Due every second: two ticks closer than that ran one due time twice.
    for pair in ticks.windows(2) {
        if pair[1] - pair[0] < 900 {
            problems.push(format!(
                "two ticks {} ms apart, at {} and {} ms",
                pair[1] - pair[0],
                pair[0] - start,
                pair[1] - start
            ));
        }
    }
    assert!(problems.is_empty(), "{}\n({timeline})", problems.join("\n"));
    eprintln!("{timeline}");
}

// ---------------------------------------------------------------------------
// The cluster, and how the test talks to it.

/// Three `wasmjob serve` processes on one fresh PostgreSQL schema, and a
/// connection to that schema.
struct Cluster {
    nodes: Vec<Node>,
    http: ureq::Agent,
    db: Db,
    /// Dropped after the nodes: their data dirs and logs live here.
    place: crate::support::Place,
}

/// One `wasmjob serve` process.
struct Node {
    id: String,
    /// `--listen`.
    listen: String,
    url: String,
    /// `--store`: the cluster's schema.
    store: String,
    /// `--data`.
    data: PathBuf,
    /// The process's stdout and stderr.
    log: PathBuf,
    /// `None` once killed.
    process: Option<EngineProcess>,
}

/// A tenant of one observation, with a write token.
struct Tenant {
    name: String,
    token: String,
    token_id: String,
}

impl Cluster {
    /// Starts the nodes together on a fresh, empty schema and waits until
    /// each answers `/readyz`. A node that fails to start is started again
    /// alone; the second value says what went wrong the first time.
    fn start(ids: [&str; 3]) -> (Self, Vec<String>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let place = runtime.block_on(place(Backend::Postgres));
        let url = place.url.clone().expect("a PostgreSQL place has a URL");
        let db = Db::connect(runtime, &url);
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Longer than any one request's wait ([`WAIT_ROUND`]).
            .timeout_global(Some(Duration::from_secs(45)))
            .build()
            .into();
        let mut nodes: Vec<Node> =
            ids.iter().zip(free_ports()).map(|(id, port)| Node::new(id, port, &url, place.dir.path())).collect();
        nodes.iter_mut().for_each(Node::start);
        let mut cluster = Self { nodes, http, db, place };
        let mut problems = Vec::new();
        for n in 0..cluster.nodes.len() {
            if let Err(problem) = cluster.ready(n) {
                // Started again alone, so that the other observations still run.
                problems.push(format!("{problem}\n(started again alone after this)"));
                cluster.nodes[n].start();
                cluster.ready(n).unwrap_or_else(|e| panic!("{e}\n(the second start, alone)"));
            }
        }
        (cluster, problems)
    }

    /// Waits for node `n`'s `/readyz`; what went wrong if the process ended
    /// first or did not answer within 30 s.
    fn ready(&mut self, n: usize) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let node = &mut self.nodes[n];
            if let Some(status) = node.process.as_mut().and_then(|p| p.0.try_wait().ok().flatten()) {
                node.process = None;
                return Err(format!("{} exited while starting ({status}); its log:\n{}", node.id, tail(&node.log)));
            }
            if let Ok(response) = self.http.get(format!("{}/readyz", node.url)).call()
                && response.status() == StatusCode::OK
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("{} did not answer /readyz within 30 s; its log:\n{}", node.id, tail(&node.log)));
            }
            sleep(POLL);
        }
    }

    fn id(&self, n: usize) -> &str {
        &self.nodes[n].id
    }

    /// The nodes not killed.
    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&n| self.nodes[n].process.is_some()).collect()
    }

    /// Kills node `n` with SIGKILL.
    fn kill(&mut self, n: usize) {
        drop(self.nodes[n].process.take());
    }

    /// The messages of `token`'s event stream through node `n` (type and
    /// data), read by a thread of their own until the node stops.
    fn events(&self, n: usize, token: &str) -> std::sync::mpsc::Receiver<(String, Value)> {
        let node = &self.nodes[n];
        let agent = ureq::Agent::config_builder().timeout_connect(Some(Duration::from_secs(5))).build().new_agent();
        let response =
            agent.get(format!("{}/v1/events", node.url)).header("Authorization", format!("Bearer {token}")).call();
        let response = response.unwrap_or_else(|e| panic!("{}: GET /v1/events: {e}", node.id));
        assert_eq!(response.status(), StatusCode::OK, "{}: GET /v1/events", node.id);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut kind = None;
            for line in std::io::BufReader::new(response.into_body().into_reader()).lines() {
                let Ok(line) = line else { return };
                if let Some(k) = line.strip_prefix("event:") {
                    kind = Some(k.trim().to_owned());
                } else if let (Some(data), Some(k)) = (line.strip_prefix("data:"), kind.take()) {
                    let data = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    if tx.send((k, data)).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }

    fn get(&self, n: usize, path: &str, token: &str) -> Answer {
        let node = &self.nodes[n];
        let request = self.http.get(format!("{}{path}", node.url)).header("Authorization", format!("Bearer {token}"));
        answer(&node.id, "GET", path, request.call())
    }

    fn delete(&self, n: usize, path: &str, token: &str) -> Answer {
        let node = &self.nodes[n];
        let request =
            self.http.delete(format!("{}{path}", node.url)).header("Authorization", format!("Bearer {token}"));
        answer(&node.id, "DELETE", path, request.call())
    }

    fn post_json(&self, n: usize, path: &str, token: &str, body: &Value) -> Answer {
        let node = &self.nodes[n];
        let request = self.http.post(format!("{}{path}", node.url)).header("Authorization", format!("Bearer {token}"));
        answer(&node.id, "POST", path, request.send_json(body))
    }

    fn put_json(&self, n: usize, path: &str, token: &str, body: &Value) -> Answer {
        let node = &self.nodes[n];
        let request = self.http.put(format!("{}{path}", node.url)).header("Authorization", format!("Bearer {token}"));
        answer(&node.id, "PUT", path, request.send_json(body))
    }

    fn patch_json(&self, n: usize, path: &str, token: &str, body: &Value) -> Answer {
        let node = &self.nodes[n];
        let request = self.http.patch(format!("{}{path}", node.url)).header("Authorization", format!("Bearer {token}"));
        answer(&node.id, "PATCH", path, request.send_json(body))
    }

    fn post_empty(&self, n: usize, path: &str, token: &str) -> Answer {
        let node = &self.nodes[n];
        let request = self.http.post(format!("{}{path}", node.url)).header("Authorization", format!("Bearer {token}"));
        answer(&node.id, "POST", path, request.send_empty())
    }

    /// Uploads an example component through node `n`.
    /// Uploads `component` through node `n`, waiting for its compile.
    fn upload(&self, n: usize, token: &str, component: &str) -> Answer {
        self.upload_with(n, token, component, "?wait=300s")
    }

    /// Uploads `component` through node `n` with the query `query`.
    fn upload_with(&self, n: usize, token: &str, component: &str, query: &str) -> Answer {
        let bytes = std::fs::read(component).unwrap_or_else(|e| panic!("cannot read {component}: {e}"));
        let node = &self.nodes[n];
        let request = self
            .http
            .post(format!("{}/v1/jobs{query}", node.url))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/wasm");
        answer(&node.id, "POST", "/v1/jobs", request.send(&bytes[..]))
    }

    /// Queues a task through node `n`; its id.
    #[track_caller]
    fn queue(&self, n: usize, token: &str, job: &str, args: Value) -> String {
        let queued = self.post_json(n, "/v1/tasks", token, &json!({ "job": job, "args": args }));
        task_id(expect(&queued, StatusCode::CREATED, &format!("{}: POST /v1/tasks ({job})", self.id(n))))
    }

    /// Waits through node `n` for task `id` to end, at most `timeout`; the
    /// task as it then is.
    #[track_caller]
    fn wait(&self, n: usize, token: &str, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let round = deadline.saturating_duration_since(Instant::now()).min(WAIT_ROUND);
            let path = format!("/v1/tasks/{id}/wait?timeout={}ms", round.as_millis());
            let waited = self.get(n, &path, token);
            let task = expect(&waited, StatusCode::OK, &format!("{}: GET {path}", self.id(n))).clone();
            let ended = matches!(task["state"].as_str(), Some("success" | "failure" | "revoked"));
            if ended || Instant::now() >= deadline {
                return task;
            }
        }
    }

    /// Whether nodes `ns` all accept `token`; else what one of them said.
    fn accepted(&self, ns: &[usize], token: &str) -> Result<(), String> {
        for &n in ns {
            let answer = self.get(n, "/v1/jobs", token);
            if answer.status != StatusCode::OK {
                return Err(format!("{} answers GET /v1/jobs with it: {answer}", self.id(n)));
            }
        }
        Ok(())
    }

    /// Creates tenant `name` with `quotas`, a write token for it and the
    /// `jobs` (example components), all through node A, and returns once
    /// every live node knows them (the setup of an observation).
    #[track_caller]
    fn tenant(&self, name: &str, quotas: Value, jobs: &[&str]) -> Tenant {
        let created = self.post_json(A, "/v1/tenants", ADMIN, &json!({ "name": name, "quotas": quotas }));
        expect(&created, StatusCode::CREATED, &format!("setup: node-a: POST /v1/tenants `{name}`"));
        let created = self.post_json(A, &format!("/v1/tenants/{name}/tokens"), ADMIN, &json!({ "scope": "write" }));
        let body = expect(&created, StatusCode::CREATED, &format!("setup: node-a: POST /v1/tenants/{name}/tokens"));
        let token = body["token"].as_str().expect("a token in the answer").to_owned();
        let token_id = body["id"].as_str().expect("a token id in the answer").to_owned();
        let mut names = Vec::new();
        for job in jobs {
            let uploaded = self.upload(A, &token, job);
            let body = expect(&uploaded, StatusCode::CREATED, &format!("setup: node-a: POST /v1/jobs ({job})"));
            names.push(body["name"].as_str().expect("a job name in the answer").to_owned());
        }
        let what =
            format!("setup: tenant `{name}`, its token and jobs {names:?}, made through node-a, known to every node");
        eventually(SETUP_WITHIN, &what, || {
            self.accepted(&self.live(), &token)?;
            for n in self.live() {
                for job in &names {
                    let shown = self.get(n, &format!("/v1/jobs/{job}"), &token);
                    if shown.status != StatusCode::OK {
                        return Err(format!("{} answers GET /v1/jobs/{job} with {shown}", self.id(n)));
                    }
                }
            }
            Ok(())
        });
        Tenant { name: name.to_owned(), token, token_id }
    }
}

impl Drop for Cluster {
    /// On failure, shows the end of every node's log (the nodes are killed
    /// when the fields drop, after this).
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("--- the end of {}'s log ({}):\n{}", node.id, node.log.display(), tail(&node.log));
            }
            eprintln!("--- the nodes' data: {}", self.place.dir.path().display());
        }
    }
}

impl Node {
    /// Node `id`, not started, to listen on `port`, with its data dir and
    /// log under `dir`.
    fn new(id: &str, port: u16, store: &str, dir: &Path) -> Self {
        Self {
            id: id.to_owned(),
            listen: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            store: store.to_owned(),
            data: dir.join(id),
            log: dir.join(format!("{id}.log")),
            process: None,
        }
    }

    /// Starts the process, appending its output to the log.
    fn start(&mut self) {
        let file = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let child = Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
            .args(["serve", "--listen", &self.listen, "--node-id", &self.id, "--store", &self.store, "--data"])
            .arg(&self.data)
            .env("WASMJOB_ADMIN_TOKEN", ADMIN)
            // The egress observation's server is on loopback.
            .env("WASMJOB_EGRESS_ALLOW_NET", "127.0.0.0/8")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.id));
        self.process = Some(EngineProcess(child));
    }
}

/// Three ports free a moment ago, all different.
fn free_ports() -> [u16; 3] {
    let listeners: Vec<_> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("a bound port").port())
}

/// The answer to a request to node `id`; a request that got no answer fails
/// the test, naming the node.
fn answer(
    id: &str,
    method: &str,
    path: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Answer {
    let mut response = response.unwrap_or_else(|e| panic!("{id}: {method} {path}: no answer: {e}"));
    let status = response.status();
    let text = response.body_mut().read_to_string().unwrap_or_else(|e| panic!("{id}: {method} {path}: {e}"));
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body }
}

/// `answer`'s body, failing unless its status is `status`.
#[track_caller]
fn expect<'a>(answer: &'a Answer, status: StatusCode, what: &str) -> &'a Value {
    assert_eq!(answer.status, status, "{what}: expected {status}, got {answer}");
    &answer.body
}

/// The task id in the body of a `POST /v1/tasks` answer.
#[track_caller]
fn task_id(body: &Value) -> String {
    body["id"].as_str().unwrap_or_else(|| panic!("no task id in {body}")).to_owned()
}

fn is_terminal(task: &Value) -> bool {
    matches!(task["state"].as_str(), Some("success" | "failure" | "revoked"))
}

/// Polls `check` every 20 ms until it holds (its value) or `within` passes
/// (then fails with `what` and the last observation, the check's error).
#[track_caller]
fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        let observed = match check() {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        assert!(Instant::now() < deadline, "{what}: not so within {within:?}; last seen: {observed}");
        sleep(POLL);
    }
}

/// [`eventually`], within [`SEEN_WITHIN`] of `answered` (when the answer to
/// the change came back).
#[track_caller]
fn seen_since<T>(answered: Instant, what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    let what = format!("{what} (the bound runs from the change's answer)");
    eventually(SEEN_WITHIN.saturating_sub(answered.elapsed()), &what, check)
}

/// Milliseconds since the epoch, as the engine stamps tasks.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970").as_millis() as i64
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read it: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Blocking reads of the cluster's schema, for what the API does not show.
struct Db {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    /// Connects to the schema at `url`, on `runtime`.
    fn connect(runtime: tokio::runtime::Runtime, url: &str) -> Self {
        let (client, connection) = runtime
            .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
            .unwrap_or_else(|e| panic!("cannot connect to the store at {url}: {e}"));
        runtime.spawn(connection);
        Self { runtime, client }
    }

    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<tokio_postgres::Row> {
        self.runtime.block_on(self.client.query(sql, params)).unwrap_or_else(|e| panic!("the store: {sql}: {e}"))
    }
}
