//! The web console, driven in a real headless browser (Debian's `chromium`
//! and `chromedriver`) against a `wasmjob serve` process, as a user would:
//! a refused sign-in, a task queued and seen to succeed live, its page, a
//! running task revoked, a job uploaded, another tenant's console showing
//! none of it, a token revoked under a signed-in console, the admin's
//! tenants, activity charts. A screenshot of each page is kept under
//! `target/tmp/console-screenshots/`.
//!
//! Chromium and chromedriver are installed with apt when missing (as root,
//! as CI and these machines are); elsewhere the test says what to install.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::client::{ADMIN, Server, client, json, start};

/// How long the page may take to show what a step awaits (a task runs, a
/// job compiles, on a busy machine). A bound on hangs, not a measure of
/// speed. Default 120 s.
const SHOWN_WITHIN: Duration = Duration::from_secs(120);

/// The browser and its driver, stopped when dropped.
struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
}

impl Drop for Browser {
    /// Stops the driver and the Chromium it started: the driver leads a
    /// process group of its own, and the group is killed (killing the
    /// driver alone, after a failed step, left Chromium running at half a
    /// core for every test after).
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where a program is on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}

/// Chromium and chromedriver, installed with apt if missing and possible.
fn chromium() -> (PathBuf, PathBuf) {
    if which("chromium").is_none() || which("chromedriver").is_none() {
        let installed = Command::new("sh")
            .args([
                "-c",
                "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver",
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "the console test needs Debian's `chromium` and `chromium-driver` packages (apt-get install them)"
        );
    }
    (which("chromium").expect("chromium"), which("chromedriver").expect("chromedriver"))
}

async fn browser() -> Browser {
    let (chromium, chromedriver) = chromium();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let options = serde_json::json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
    });
    let capabilities = serde_json::Map::from_iter([("goog:chromeOptions".to_owned(), options)]);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    Browser { client, driver, shots }
}

impl Browser {
    /// Keeps a screenshot of the page as `name.png`, an artifact: on a
    /// loaded machine Chromium's renderer may time out taking one (seen in
    /// CI, on the activity page's charts), so it is tried again, and one
    /// that still fails is reported, not a failure of what the test checks.
    async fn shot(&self, name: &str) {
        let mut tries = 0;
        loop {
            match self.client.screenshot().await {
                Ok(png) => {
                    std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
                    return;
                }
                Err(e) if tries < 3 => {
                    tries += 1;
                    eprintln!("screenshot {name}: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    eprintln!("screenshot {name} not kept: {e}");
                    return;
                }
            }
        }
    }

    /// The element `css`, once shown.
    async fn shown(&self, css: &str) -> fantoccini::elements::Element {
        let found = self.client.wait().at_most(SHOWN_WITHIN).for_element(Locator::Css(css)).await;
        match found {
            Ok(element) => element,
            Err(e) => {
                self.shot("failed").await;
                let text = self.client.find(Locator::Css("main")).await.ok();
                let text = match text {
                    Some(main) => main.text().await.unwrap_or_default(),
                    None => String::new(),
                };
                panic!("`{css}` was not shown within {SHOWN_WITHIN:?} ({e}); the page says: {text}");
            }
        }
    }

    /// The text of `css` once it contains `what`.
    async fn says(&self, css: &str, what: &str) -> String {
        let deadline = tokio::time::Instant::now() + SHOWN_WITHIN;
        loop {
            // A stale copy (re-rendered meanwhile) reads as nothing yet.
            let text: String = self.shown(css).await.text().await.unwrap_or_default();
            if text.contains(what) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                self.shot("failed").await;
                panic!("`{css}` says `{text}`, never `{what}` (screenshot: failed.png)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Does `action` to the element `css`, again on a fresh copy if the
    /// page re-rendered it meanwhile (live updates do).
    async fn act<F, R>(&self, css: &str, action: F)
    where
        F: Fn(fantoccini::elements::Element) -> R,
        R: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
    {
        for _ in 0..50 {
            match action(self.shown(css).await).await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("stale element") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("`{css}`: {e}"),
            }
        }
        panic!("`{css}` kept being replaced");
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.act(css, |field| async move {
            field.clear().await?;
            field.send_keys(text).await
        })
        .await;
    }

    async fn click(&self, css: &str) {
        self.act(css, |element| async move { element.click().await }).await;
    }

    async fn open(&self, server: &Server, hash: &str) {
        self.client.goto(&format!("{}/{hash}", server.url)).await.unwrap();
    }

    async fn sign_in(&self, server: &Server, token: &str) {
        self.open(server, "").await;
        self.client.execute("sessionStorage.clear(); location.hash = ''; location.reload();", vec![]).await.unwrap();
        self.type_into("#token", token).await;
        self.click("#signin").await;
    }
}

/// A tenant and a write token for it, made with the CLI.
fn tenant(server: &Server, name: &str) -> (String, String) {
    assert_eq!(client(server, ADMIN, &["tenant", "create", name]).0, 0);
    let (code, out) = client(server, ADMIN, &["token", "create", name, "--json"]);
    assert_eq!(code, 0, "{out}");
    let token = json(&out);
    (token["token"].as_str().unwrap().to_owned(), token["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_queues_follows_revokes_uploads_shows_workflows_and_a_tenant_only_its_own() {
    let server = start();
    let (acme, _) = tenant(&server, "acme");
    let (globex, globex_id) = tenant(&server, "globex");
    for job in [wasmjob::examples::ADDITION, wasmjob::examples::SLEEPY] {
        assert_eq!(client(&server, &acme, &["upload", "--wait", job]).0, 0);
    }
    let b = browser().await;

    // A wrong token: a clear sign-in error.
    b.sign_in(&server, "wj_nope_wrong").await;
    b.says("#signin-error", "invalid or revoked token").await;
    b.shot("signin-refused").await;

    // Queue a task from the page; the list shows it succeed, live.
    b.sign_in(&server, &acme).await;
    b.type_into("#queue-job", "addition").await;
    b.type_into("#queue-args", r#"{"a": 2, "b": 3}"#).await;
    b.click("#queue button").await;
    let said = b.says("#queue-status", "Queued task").await;
    let id = said.trim_start_matches("Queued task ").trim_end_matches('.').to_owned();
    b.shown(&format!(r#"tr[data-task="{id}"] [data-state="success"]"#)).await;
    b.shot("tasks").await;

    // Its page: args, result, log, tree.
    b.click(&format!(r#"tr[data-task="{id}"] a"#)).await;
    b.says("#task-result", "5").await;
    b.says("#task-args", r#""a": 2"#).await;
    b.says("#task-tree", &id).await;
    b.shown(r#"#task-attempts tr[data-attempt="1"] [data-state="success"]"#).await;
    b.shot("task").await;

    // A running task, revoked from its page.
    b.open(&server, "#/tasks").await;
    b.type_into("#queue-job", "sleepy").await;
    b.type_into("#queue-args", r#"{"ms": 60000, "reports": 1}"#).await;
    b.click("#queue button").await;
    let said = b.says("#queue-status", "Queued task").await;
    let sleepy = said.trim_start_matches("Queued task ").trim_end_matches('.').to_owned();
    b.open(&server, &format!("#/task/{sleepy}")).await;
    b.shown(r#"#task-state [data-state="started"]"#).await;
    // Its progress, live (written at its node's next heartbeat).
    b.says("#task-progress", "50% halfway").await;
    b.click("#revoke").await;
    b.shown(r#"#task-state [data-state="revoked"]"#).await;
    b.shot("task-revoked").await;

    // A job uploaded from the page.
    b.open(&server, "#/jobs").await;
    let component = std::fs::canonicalize(wasmjob::examples::FAN_OUT).unwrap();
    let path = component.to_str().unwrap();
    b.act("#upload-file", |input| async move { input.send_keys(path).await }).await;
    b.click("#upload button").await;
    b.says("#upload-status", "Registered fan-out").await;
    b.shown(r#"#jobs-regular tr[data-job="fan-out"]"#).await;
    b.shot("jobs").await;

    // A schedule made with the CLI, paused from the page.
    let set = ["schedule", "set", "nightly-sum", "--job", "addition", "--cron", "0 3 * * *", "--zone", "Europe/Paris"];
    assert_eq!(client(&server, &acme, &set).0, 0);
    // (Made elsewhere, it tells no event: the page shows it when opened again.)
    b.open(&server, "#/activity").await;
    b.shown("#activity-totals").await;
    b.open(&server, "#/jobs").await;
    let row = r#"#schedules tr[data-schedule="nightly-sum"]"#;
    b.says(row, "Europe/Paris").await;
    b.click(&format!("{row} button")).await;
    b.says(row, "paused").await;
    b.shot("schedules").await;
    let (_, shown) = client(&server, &acme, &["schedule", "show", "nightly-sum", "--json"]);
    assert_eq!(json(&shown)["paused"], true);

    // Its activity: what ran per minute, charted (each node writes its
    // counts every heartbeat, and the page reads them again meanwhile).
    b.open(&server, "#/activity").await;
    b.says("#activity-totals", "1 succeeded").await;
    b.says("#activity-totals", "1 revoked").await;
    b.shown("#chart-throughput rect.ok").await;
    b.shown("#chart-latency polyline").await;
    b.says("#chart-fuel", "addition").await;
    b.shot("activity").await;

    // Another tenant's console shows none of it, not even by its id.
    b.sign_in(&server, &globex).await;
    b.shown("#tasks").await;
    b.shown("#empty").await;
    let rows = b.client.find_all(Locator::Css("#tasks tr")).await.unwrap();
    assert!(rows.is_empty(), "globex's console lists {} tasks", rows.len());
    b.open(&server, &format!("#/task/{id}")).await;
    b.says("main", &format!("task {id} not found")).await;
    b.open(&server, "#/jobs").await;
    b.says("main", "None.").await;
    let jobs = b.client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(!jobs.contains("addition") && !jobs.contains("fan-out"), "globex's jobs page: {jobs}");
    b.shot("other-tenant").await;

    // Its token revoked while signed in: back to the sign-in, saying why.
    assert_eq!(client(&server, ADMIN, &["token", "revoke", &globex_id]).0, 0);
    b.open(&server, "#/tasks").await;
    b.says("#signin-error", "invalid or revoked token").await;

    // The admin sees the tenants.
    b.sign_in(&server, ADMIN).await;
    b.says("#tenants", "acme").await;
    b.says("#tenants", "globex").await;
    b.says(r#"#tenants tr[data-tenant="acme"] .usage"#, "1 succeeded").await;
    b.shot("tenants").await;
    b.open(&server, "#/activity").await;
    b.says("#chart-fuel", "acme").await;
    b.shot("activity-admin").await;

    // A workflow (a chord, started with the CLI) as a whole, and from the
    // page of one of its steps.
    assert_eq!(client(&server, &acme, &["upload", "--wait", wasmjob::examples::TALLY]).0, 0);
    let chord = r#"{"chord": {"group": [{"job": "tally", "args": {"add": 1}}, {"job": "tally", "args": {"add": 2}}],
        "callback": {"job": "tally", "args": {"add": 3}}}}"#;
    let (code, out) = client(&server, &acme, &["workflow", "start", chord, "--wait", "--json"]);
    assert_eq!(code, 0, "{out}");
    let ended = json(&out);
    assert_eq!(ended["result"], 6, "{out}");
    b.sign_in(&server, &acme).await;
    b.shown("#tasks").await;
    b.open(&server, &format!("#/task/{}", ended["stages"][1][0]["id"].as_str().unwrap())).await;
    b.click("#task-workflow a").await;
    b.shown(r#"#workflow-state [data-state="success"]"#).await;
    b.says("#workflow-result", "6").await;
    b.says("#workflow-stages", "tally success → 6").await;
    b.shot("workflow").await;
}
