//! Compiling is bounded: a component shaped to make the compiler take
//! minutes or gigabytes is refused, naming the limit it hit, the compile
//! runs in a child process the engine kills, and the engine goes on
//! compiling and running other jobs.

use std::time::{Duration, Instant};

use wasmjob::runtime::{CompileLimits, LoadError, Runtime, RuntimeConfig};

use crate::support::assert_engine_still_works;

/// A component with one never-called function whose `locals` locals are
/// all live across a loop of `statements` additions: register allocation
/// grows much faster than its size. `bomb(8000, 120_000)` (1.2 MB) takes
/// about a minute of CPU to compile here, so any limit of a few seconds
/// stops it on any machine; `bomb(20_000, 200_000)` needs gigabytes.
fn bomb(locals: usize, statements: usize) -> Vec<u8> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut body = String::with_capacity(statements * 48);
    for _ in 0..statements {
        let (a, b, c) = (1 + next(locals), 1 + next(locals), 1 + next(locals));
        body.push_str(&format!("local.get {a} local.get {b} i64.add local.set {c} "));
    }
    let wat = format!(
        "(component (core module (func (param i32) (result i64) (local {}) \
         (loop $l {body} local.get 0 br_if $l) local.get 1)))",
        vec!["i64"; locals].join(" ")
    );
    wat::parse_str(wat).expect("the bomb is valid text")
}

/// A runtime that compiles in the engine's own child process under `limits`.
fn runtime(limits: CompileLimits) -> Runtime {
    Runtime::new(RuntimeConfig {
        compiler: Some(env!("CARGO_BIN_EXE_wasmjob-under-test").into()),
        compile: limits,
        max_instances: 10,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_compile_over_its_cpu_time_is_refused_naming_the_limit() {
    let runtime = runtime(CompileLimits { cpu: Duration::from_secs(1), ..CompileLimits::default() });
    let started = Instant::now();
    let refused = runtime.load(&bomb(8000, 120_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::CompileLimit(m) if m.contains("`cpu`")), "{refused}");
    eprintln!("refused after {:?}: {refused}", started.elapsed());
    assert_engine_still_works().await;
    runtime.load(&std::fs::read(wasmjob::examples::ADDITION).unwrap()).await.expect("a sound job is refused");
}

#[tokio::test]
async fn a_compile_over_its_wall_time_is_killed() {
    let limits = CompileLimits { wall: Duration::from_millis(300), ..CompileLimits::default() };
    let runtime = runtime(limits);
    let started = Instant::now();
    let refused = runtime.load(&bomb(8000, 120_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::CompileLimit(m) if m.contains("`wall`")), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(10), "the compile was not killed at its wall limit");
}

#[tokio::test]
async fn a_compile_over_its_memory_is_refused_naming_the_limit() {
    // Time limits far above the memory's, so that on a slow machine the
    // memory still runs out first (at the default 120 s of CPU it once did not).
    let limits = CompileLimits {
        memory_bytes: 512 << 20,
        cpu: Duration::from_secs(1800),
        wall: Duration::from_secs(1800),
        ..CompileLimits::default()
    };
    let runtime = runtime(limits);
    let refused = runtime.load(&bomb(20_000, 200_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::CompileLimit(m) if m.contains("`memory_bytes`")), "{refused}");
    runtime.load(&std::fs::read(wasmjob::examples::ADDITION).unwrap()).await.expect("a sound job is refused");
}

#[tokio::test]
async fn a_function_too_large_is_refused_before_compiling() {
    let runtime = runtime(CompileLimits { max_function_bytes: 64 << 10, ..CompileLimits::default() });
    let refused = runtime.load(&bomb(100, 20_000)).await.err().expect("the bomb compiled");
    assert!(matches!(&refused, LoadError::TooComplex(m) if m.contains("max_function_bytes")), "{refused}");
}

#[tokio::test]
async fn a_compile_stops_when_the_engine_stops() {
    let runtime = std::sync::Arc::new(runtime(CompileLimits::default()));
    let compiling = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.load(&bomb(8000, 120_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    runtime.stop_compiling();
    let refused = compiling.await.unwrap().err().expect("the bomb compiled");
    assert!(matches!(refused, LoadError::ShuttingDown), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A node serving uploads, killed when dropped.
struct Server {
    process: crate::support::EngineProcess,
    url: String,
    _dir: tempfile::TempDir,
}

const ADMIN: &str = "wj_compile_admin";

impl Server {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(dir.path())
            .args(extra)
            .env("WASMJOB_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server =
            Self { process: crate::support::EngineProcess(child), url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let started = Instant::now();
        while ureq::get(&format!("{}/readyz", server.url)).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A write token for a new tenant `name`.
    fn tenant(&self, name: &str) -> String {
        let agent = ureq::Agent::new_with_defaults();
        let auth = format!("Bearer {ADMIN}");
        agent
            .post(&format!("{}/v1/tenants", self.url))
            .header("authorization", &auth)
            .send_json(serde_json::json!({ "name": name }))
            .unwrap();
        let mut answer = agent
            .post(&format!("{}/v1/tenants/{name}/tokens", self.url))
            .header("authorization", &auth)
            .send_json(serde_json::json!({ "scope": "write" }))
            .unwrap();
        let body: serde_json::Value = answer.body_mut().read_json().unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// Uploads `bytes`, waiting for the compile to end: the status and the body.
    fn upload(&self, token: &str, bytes: &[u8]) -> (u16, String) {
        self.upload_with(token, bytes, "?wait=300s")
    }

    /// Uploads `bytes` with the query `query`: the status and the body.
    fn upload_with(&self, token: &str, bytes: &[u8], query: &str) -> (u16, String) {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        let agent: ureq::Agent = config.into();
        let mut answer = agent
            .post(&format!("{}/v1/jobs{query}", self.url))
            .header("authorization", &format!("Bearer {token}"))
            .send(bytes)
            .unwrap();
        (answer.status().as_u16(), answer.body_mut().read_to_string().unwrap_or_default())
    }

    /// The server's resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }
}

#[test]
fn a_compile_bomb_uploaded_to_a_server_is_refused_and_the_server_stays_small() {
    let server = Server::start(&["--compile-cpu", "2s"]);
    let hostile = server.tenant("hostile");
    let before = server.rss();
    // Answered at once, compiling; the server answers others meanwhile.
    let (status, body) = server.upload_with(&hostile, &bomb(8000, 120_000), "");
    assert_eq!(status, 202, "{body}");
    let upload: serde_json::Value = serde_json::from_str(&body).unwrap();
    let location = format!("{}{}", server.url, upload["location"].as_str().unwrap());
    let health = ureq::get(&format!("{}/healthz", server.url)).call();
    assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200), "/healthz during the compile");
    let started = Instant::now();
    let ended = loop {
        let mut answer = ureq::get(&location).header("authorization", &format!("Bearer {hostile}")).call().unwrap();
        let upload: serde_json::Value = answer.body_mut().read_json().unwrap();
        if upload["state"] != "compiling" {
            break upload;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "still compiling: {upload}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ended["state"], "rejected", "{ended}");
    assert!(ended["reason"].as_str().unwrap().contains("`cpu`"), "{ended}");
    // The compile ran in a child: the server itself did not grow with it.
    let after = server.rss();
    assert!(after < before + (64 << 20), "the server grew from {before} to {after} bytes");
    let other = server.tenant("other");
    let (status, body) = server.upload(&other, &std::fs::read(wasmjob::examples::ADDITION).unwrap());
    assert_eq!(status, 201, "{body}");
}

#[test]
fn a_server_stops_promptly_on_sigterm_mid_compile() {
    let mut server = Server::start(&[]);
    let hostile = server.tenant("hostile");
    let url = server.url.clone();
    let uploading = std::thread::spawn(move || {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        let agent: ureq::Agent = config.into();
        let _ = agent
            .post(&format!("{url}/v1/jobs"))
            .header("authorization", &format!("Bearer {hostile}"))
            .send(&bomb(8000, 120_000)[..]);
    });
    std::thread::sleep(Duration::from_secs(1));
    let pid = server.process.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    loop {
        if let Some(status) = server.process.0.try_wait().unwrap() {
            assert!(status.success(), "the server exited with {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the server did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    uploading.join().unwrap();
}
