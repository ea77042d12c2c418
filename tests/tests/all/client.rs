//! The command-line client against a real server process, as a user would
//! drive it.

use std::process::{Command, Stdio};

use serde_json::Value;

/// A `wasmjob serve` process on a free port, killed when dropped.
pub(crate) struct Server {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) const ADMIN: &str = "wj_cli_admin-secret";

pub(crate) fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.path())
        .env("WASMJOB_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
    for _ in 0..3000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the server did not start");
}

/// Runs the client; returns its exit code and stdout.
pub(crate) fn client(server: &Server, token: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
        .args(args)
        .env("WASMJOB_URL", &server.url)
        .env("WASMJOB_TOKEN", token)
        .env("XDG_CONFIG_HOME", server._dir.path())
        .output()
        .unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn the_client_drives_a_server_from_tenant_to_task() {
    let server = start();
    assert_eq!(client(&server, ADMIN, &["tenant", "create", "acme"]).0, 0);
    let (code, out) = client(&server, ADMIN, &["token", "create", "acme", "--json"]);
    assert_eq!(code, 0, "{out}");
    let token = json(&out)["token"].as_str().unwrap().to_owned();
    let token_id = json(&out)["id"].as_str().unwrap().to_owned();

    let (code, out) = client(&server, &token, &["upload", "--wait", wasmjob::examples::FAN_OUT]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("registered fan-out"), "{out}");
    client(&server, &token, &["upload", "--wait", wasmjob::examples::ADDITION]);
    let (_, out) = client(&server, &token, &["jobs", "--json"]);
    assert_eq!(json(&out)["regular"].as_array().unwrap().len(), 2);

    let (code, out) = client(&server, &token, &["queue", "fan-out", "--arg", "n=2", "--wait", "--json"]);
    assert_eq!(code, 0, "{out}");
    let task = json(&out);
    assert_eq!(task["state"], "success");
    let id = task["id"].as_str().unwrap().to_owned();

    let (_, out) = client(&server, &token, &["status", &id, "--json"]);
    assert_eq!(json(&out)["children"].as_array().unwrap().len(), 2);
    let (_, out) = client(&server, &token, &["tasks", "--job", "addition", "--json"]);
    assert_eq!(json(&out)["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(client(&server, &token, &["logs", &id]).0, 0);

    let (code, out) = client(&server, &token, &["queue", "addition", "--delay", "1h"]);
    assert_eq!(code, 0);
    let later = out.trim().to_owned();
    let (_, out) = client(&server, &token, &["revoke", &later, "--json"]);
    assert_eq!(json(&out)["state"], "revoked");

    // Schedules: made, listed, paused, resumed and deleted.
    let set = ["schedule", "set", "sums", "--job", "addition", "--args", r#"{"a": 1}"#, "--cron", "0 3 * * *"];
    let (code, out) = client(&server, &token, &[&set[..], &["--zone", "Asia/Tokyo", "--json"]].concat());
    assert_eq!(code, 0, "{out}");
    assert_eq!((json(&out)["zone"].as_str(), json(&out)["args"]["a"].as_i64()), (Some("Asia/Tokyo"), Some(1)));
    let (_, out) = client(&server, &token, &["schedule", "list"]);
    assert!(out.contains("sums") && out.contains("Asia/Tokyo"), "{out}");
    assert_eq!(json(&client(&server, &token, &["schedule", "pause", "sums", "--json"]).1)["paused"], true);
    assert_eq!(json(&client(&server, &token, &["schedule", "resume", "sums", "--json"]).1)["paused"], false);
    assert_eq!(client(&server, &token, &["schedule", "set", "bad", "--job", "addition", "--every", "1ms"]).0, 3);
    assert_eq!(client(&server, &token, &["schedule", "delete", "sums"]).0, 0);
    assert_eq!(client(&server, &token, &["schedule", "show", "sums"]).0, 3);

    // Workflows: a chain started inline and waited for; one that fails
    // exits 1; one from a file, shown later; a malformed one exits 3.
    client(&server, &token, &["upload", "--wait", wasmjob::examples::TALLY]);
    let chain = r#"{"chain": [{"job": "tally", "args": {"add": 1}}, {"job": "tally", "args": {"add": 10}}]}"#;
    let (code, out) = client(&server, &token, &["workflow", "start", chain, "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("success") && out.contains("result: 11"), "{out}");
    let failing = r#"{"chain": [{"job": "tally", "args": {"fail": true}}, {"job": "tally"}]}"#;
    let (code, out) = client(&server, &token, &["workflow", "start", failing, "--wait", "--json"]);
    assert_eq!((code, json(&out)["state"].as_str()), (1, Some("failure")), "{out}");
    assert_eq!(json(&out)["stages"][1][0]["reason"], "upstream", "{out}");
    let file = server._dir.path().join("chord.json");
    let group = r#"[{"job": "tally", "args": {"add": 1}}, {"job": "tally", "args": {"add": 2}}]"#;
    std::fs::write(&file, format!(r#"{{"chord": {{"group": {group}, "callback": {{"job": "tally"}}}}}}"#)).unwrap();
    let (code, out) = client(&server, &token, &["workflow", "start", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{out}");
    let started = json(&out);
    let callback = started["stages"][1][0].as_str().unwrap();
    assert_eq!(client(&server, &token, &["wait", callback]).0, 0);
    let (_, out) = client(&server, &token, &["workflow", "show", started["id"].as_str().unwrap(), "--json"]);
    assert_eq!(json(&out)["result"], 3, "{out}");
    assert_eq!(client(&server, &token, &["workflow", "start", r#"{"chain": "no"}"#]).0, 3);

    // Limits: set on a queue and a job, listed, cleared; out of bounds
    // refused before or by the server.
    let (code, out) = client(&server, &token, &["limit", "queue", "emails", "--max-running", "2", "--priority", "-3"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) =
        client(&server, &token, &["limit", "job", "Addition", "--max-concurrency", "1", "--rate", "10/1s"]);
    assert!(code == 0 && out.contains("at most 10 started per 1s"), "{out}");
    let listed = json(&client(&server, &token, &["limit", "list", "--json"]).1);
    assert_eq!(listed["queues"][0]["limits"], serde_json::json!({ "max_running": 2, "priority": -3 }));
    assert_eq!(listed["jobs"][0]["limits"]["rate"], serde_json::json!({ "tasks": 10, "per_ms": 1000 }));
    assert_eq!(client(&server, &token, &["limit", "job", "addition", "--rate", "0/1s"]).0, 2);
    assert_eq!(client(&server, &token, &["limit", "queue", "emails", "--max-running", "1000001"]).0, 3);
    assert_eq!(client(&server, &token, &["limit", "job", "addition", "--clear"]).0, 0);
    assert_eq!(client(&server, &token, &["limit", "queue", "emails", "--clear"]).0, 0);
    assert_eq!(client(&server, &token, &["limit", "queue", "emails", "--clear"]).0, 3, "no limits left");
    assert_eq!(json(&client(&server, &token, &["limit", "list", "--json"]).1)["jobs"], serde_json::json!([]));

    // A failing task exits 1; a refused request exits 3.
    assert_eq!(client(&server, &token, &["queue", "addition", "--arg", "a=\"x\"", "--wait"]).0, 1);
    assert_eq!(client(&server, &token, &["queue", "subtraction"]).0, 3);

    assert_eq!(client(&server, ADMIN, &["token", "revoke", &token_id]).0, 0);
    assert_eq!(client(&server, &token, &["jobs"]).0, 3);
}

#[test]
fn watch_prints_a_tenants_events_as_they_happen() {
    use std::io::BufRead;
    let server = start();
    assert_eq!(client(&server, ADMIN, &["tenant", "create", "acme"]).0, 0);
    let (_, out) = client(&server, ADMIN, &["token", "create", "acme", "--json"]);
    let token = json(&out)["token"].as_str().unwrap().to_owned();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
        .args(["watch", "--json"])
        .env("WASMJOB_URL", &server.url)
        .env("WASMJOB_TOKEN", &token)
        .env("XDG_CONFIG_HOME", server._dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(watch.stderr.take().unwrap());
    let mut said = String::new();
    stderr.read_line(&mut said).unwrap();
    assert!(said.starts_with("watching"), "{said}");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    client(&server, &token, &["upload", "--wait", wasmjob::examples::ADDITION]);
    let (code, out) =
        client(&server, &token, &["queue", "addition", "--arg", "a=1", "--arg", "b=2", "--wait", "--json"]);
    assert_eq!(code, 0, "{out}");
    let id = json(&out)["id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["type"] == "task-succeeded" && e["task"] == id.as_str()) {
        let line = lines.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|_| panic!("{seen:#?}"));
        seen.push(json(&line));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    // Each object's events, as a set: changes that commit close together
    // may be told in another order (the job's compile and a task queued as
    // soon as the client read it ready).
    let kinds = |keep: &dyn Fn(&Value) -> bool| -> Vec<&str> {
        let mut kinds: Vec<&str> = seen.iter().filter(|e| keep(e)).filter_map(|e| e["type"].as_str()).collect();
        kinds.sort();
        kinds
    };
    let job = kinds(&|e| e["type"].as_str().is_some_and(|t| t.starts_with("job-")));
    assert_eq!(job, ["job-compiled", "job-uploaded"], "{seen:#?}");
    let task = kinds(&|e| e["task"] == id.as_str());
    assert_eq!(task, ["task-queued", "task-started", "task-succeeded"], "{seen:#?}");
}

#[test]
fn run_and_inspect_share_one_compile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let wasmjob = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
            .args(args)
            .env("WASMJOB_CACHE_DIR", cache.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    };
    let entries = || -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for dir in std::fs::read_dir(cache.path()).unwrap().flatten() {
            found.extend(std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.path()));
        }
        found
    };
    wasmjob(&["run", wasmjob::examples::ADDITION, "--args", r#"{"a": 1, "b": 2}"#]);
    let after_run = entries();
    assert_eq!(after_run.len(), 1, "one compiled component: {after_run:?}");
    assert!(after_run[0].extension().is_some_and(|e| e == "cwasm"), "{after_run:?}");
    let written = std::fs::metadata(&after_run[0]).unwrap().modified().unwrap();
    wasmjob(&["inspect", wasmjob::examples::ADDITION]);
    let again = wasmjob(&["run", wasmjob::examples::ADDITION, "--args", r#"{"a": 40, "b": 2}"#]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "42");
    assert_eq!(entries(), after_run, "inspect and the second run compiled nothing new");
    assert_eq!(std::fs::metadata(&after_run[0]).unwrap().modified().unwrap(), written, "nor rewrote the entry");
}
