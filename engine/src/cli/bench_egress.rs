//! `wasmjob bench-egress`: jobs waiting on the network, at scale, and the
//! cost of the egress hook.
//!
//! A local HTTP server (in this process, on 127.0.0.1, which the benchmark's
//! operator configuration allows) answers `/slow` after `--delay` and
//! `/now` at once. On one node with a fresh SQLite store:
//!
//! 1. Waiting: `--tasks` `fetch` tasks each GET `/slow`, all at once
//!    (concurrency = tasks). Reports the wall time from the first queueing
//!    until the node has told of the last ending, the process's peak RSS
//!    and its CPU time (server included), what each task in flight costs
//!    in memory, and when the last task was queued, claimed and ended
//!    (`--timeline`: how many were claimed and ended per 250 ms).
//! 2. Overhead: one task makes `--requests` GETs of `/now` one after
//!    another (requests per second from one task), then 100 tasks make
//!    `--requests / 100` each, all at once (from many).
//!
//! Run it on a release build: `cargo run --release -- bench-egress`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use super::usage;
use crate::node::{Node, NodeConfig};
use crate::task::QueueOptions;

/// The benchmark's tenant.
const TENANT: &str = "bench";
/// Tasks in the "from many" overhead run.
const MANY: usize = 100;

#[derive(Debug, Args)]
pub struct BenchEgressArgs {
    /// Tasks waiting on the slow server at once.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// How long the slow server takes to answer.
    #[arg(long, value_parser = super::args::parse_duration, default_value = "1s")]
    delay: Duration,
    /// Requests in each overhead run.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Print one JSON line per measurement instead of prose.
    #[arg(long)]
    json: bool,
    /// Also print, per 250 ms of the waiting run, how many tasks were
    /// claimed and how many ended (on stderr).
    #[arg(long)]
    timeline: bool,
}

#[derive(Debug, Serialize)]
struct Waiting {
    kind: &'static str,
    tasks: usize,
    delay_ms: u128,
    /// From the start of serving until the last task's success.
    wall_s: f64,
    /// The process's peak resident memory, server included.
    peak_rss_mib: f64,
    /// The process's CPU time (user + system) during the run.
    cpu_s: f64,
    /// Peak RSS growth during the run, per task.
    rss_per_task_kib: f64,
    /// From the start until the last task was queued, started, finished.
    last_queued_s: f64,
    last_started_s: f64,
    last_finished_s: f64,
}

#[derive(Debug, Serialize)]
struct Overhead {
    kind: &'static str,
    tasks: usize,
    requests: usize,
    wall_s: f64,
    requests_per_s: f64,
}

pub async fn bench_egress(args: BenchEgressArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -- bench-egress` for real figures");
    }
    anyhow::ensure!(args.tasks > 0 && args.requests >= MANY, "--tasks must be at least 1, --requests at least 100");
    let port = serve_local(args.delay).await?;
    let dir = std::env::temp_dir().join(format!("wasmjob-bench-egress-{}", std::process::id()));
    let mut config = NodeConfig::new(&dir);
    config.concurrency = args.tasks.max(MANY);
    config.runtime.egress.allow_networks = vec!["127.0.0.1".into()];
    let node = Arc::new(Node::open(config, true).await?);
    let quotas = json!({
        "max_queued": 100_000_000, "queue_rate": 1e9, "queue_burst": 1e9, "max_running": 1_000_000,
        "allowed_hosts": ["http://127.0.0.1"], "max_http_requests": args.requests,
    });
    node.tenants.create(TENANT, quotas.as_object().expect("an object").clone()).await?;
    node.registry.register(TENANT, &std::fs::read(crate::examples::FETCH)?, usize::MAX).await?;

    let (stop, shutdown) = watch::channel(false);
    let serving = tokio::spawn({
        let node = node.clone();
        async move { node.serve(shutdown).await }
    });

    // 1. Waiting.
    let slow = json!({ "url": format!("http://127.0.0.1:{port}/slow") }).to_string();
    let rss_before = usage::rss_mib().unwrap_or(f64::NAN);
    let cpu_before = usage::cpu_time()?;
    let since = crate::clock::Clock::now_millis(&*node.clock);
    let (wall, tasks) = run_all(&node, vec![slow; args.tasks]).await?;
    let wall_s = wall.as_secs_f64();
    if args.timeline {
        print_timeline(&tasks, since);
    }
    let last = |at: fn(&crate::store::TaskRecord) -> Option<i64>| {
        tasks.iter().filter_map(at).max().map_or(f64::NAN, |ms| (ms - since) as f64 / 1000.0)
    };
    let peak = usage::peak_rss_mib().unwrap_or(f64::NAN);
    let waiting = Waiting {
        kind: "waiting",
        tasks: args.tasks,
        delay_ms: args.delay.as_millis(),
        wall_s,
        peak_rss_mib: peak,
        cpu_s: usage::cpu_time()? - cpu_before,
        rss_per_task_kib: (peak - rss_before).max(0.0) * 1024.0 / args.tasks as f64,
        last_queued_s: last(|t| Some(t.queued_at)),
        last_started_s: last(|t| t.started_at),
        last_finished_s: last(|t| t.finished_at),
    };
    report(&args, &waiting, || {
        format!(
            "{} tasks waiting {} ms on the network at once: all done in {:.2} s; peak RSS {:.0} MiB \
             ({:.0} KiB per task in flight), CPU {:.2} s; the last was queued at {:.2} s, started at {:.2} s, \
             finished at {:.2} s",
            waiting.tasks,
            waiting.delay_ms,
            waiting.wall_s,
            waiting.peak_rss_mib,
            waiting.rss_per_task_kib,
            waiting.cpu_s,
            waiting.last_queued_s,
            waiting.last_started_s,
            waiting.last_finished_s
        )
    })?;

    // 2. Overhead, from one task and from many.
    let now = format!("http://127.0.0.1:{port}/now");
    for tasks in [1, MANY] {
        let each = args.requests / tasks;
        let job_args = json!({ "url": now, "repeat": each }).to_string();
        let (wall, _) = run_all(&node, vec![job_args; tasks]).await?;
        let wall_s = wall.as_secs_f64();
        let overhead = Overhead {
            kind: "overhead",
            tasks,
            requests: each * tasks,
            wall_s,
            requests_per_s: (each * tasks) as f64 / wall_s,
        };
        report(&args, &overhead, || {
            format!(
                "{} requests from {} task(s) to a server that answers at once: {:.0} requests/s",
                overhead.requests, overhead.tasks, overhead.requests_per_s
            )
        })?;
    }

    let _ = stop.send(true);
    serving.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

/// Queues a `fetch` task per args and waits for all; returns the time from
/// the first queueing until the last ending was heard of, and the tasks as
/// they ended. Fails if any did not succeed or met a network error.
///
/// It waits as a client of the node would, on the endings the node
/// signals, registered as each batch is queued (a task cannot end within
/// the moment in between, and a wait that hears nothing for a second reads
/// the task); the tasks are read once all have ended, outside the time.
async fn run_all(node: &Node, all_args: Vec<String>) -> anyhow::Result<(Duration, Vec<crate::store::TaskRecord>)> {
    let requests: Vec<_> = all_args.into_iter().map(|a| ("fetch".to_owned(), a, QueueOptions::default())).collect();
    let started = Instant::now();
    let mut waits = Vec::with_capacity(requests.len());
    for batch in requests.chunks(1000) {
        for answer in node.queue.queue_many(TENANT, batch).await? {
            let id = answer?;
            waits.push((node.signals.on_finish(&id), id));
        }
    }
    for (ended, id) in &mut waits {
        while tokio::time::timeout(Duration::from_secs(1), &mut *ended).await.is_err() {
            let task = node.store.task(id).await?.ok_or_else(|| anyhow::anyhow!("task {id} is gone"))?;
            if task.state.is_terminal() {
                break;
            }
        }
    }
    let wall = started.elapsed();
    let mut tasks = Vec::with_capacity(waits.len());
    for (_, id) in waits {
        node.signals.forget(&id);
        let task = node.store.task(&id).await?.ok_or_else(|| anyhow::anyhow!("task {id} is gone"))?;
        let result = task.result.clone().unwrap_or_default();
        anyhow::ensure!(
            task.state == crate::store::TaskState::Success && !result.contains("\"error\""),
            "task {id} ended {}: {} {}",
            task.state.as_str(),
            task.error.unwrap_or_default(),
            result.chars().take(300).collect::<String>()
        );
        tasks.push(task);
    }
    Ok((wall, tasks))
}

/// Tasks claimed and ended per 250 ms since `since`, on stderr.
fn print_timeline(tasks: &[crate::store::TaskRecord], since: i64) {
    const STEP_MS: i64 = 250;
    let mut steps = std::collections::BTreeMap::<i64, (u32, u32)>::new();
    for task in tasks {
        if let Some(at) = task.started_at {
            steps.entry((at - since) / STEP_MS).or_default().0 += 1;
        }
        if let Some(at) = task.finished_at {
            steps.entry((at - since) / STEP_MS).or_default().1 += 1;
        }
    }
    for (step, (claimed, ended)) in steps {
        eprintln!("{:>6} ms  claimed {claimed:>6}  ended {ended:>6}", step * STEP_MS);
    }
}

fn report<T: Serialize>(args: &BenchEgressArgs, figures: &T, prose: impl FnOnce() -> String) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string(figures)?);
    } else {
        println!("{}", prose());
    }
    Ok(())
}

/// The local server: `/slow` answers after `delay`, `/now` at once.
async fn serve_local(delay: Duration) -> anyhow::Result<u16> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(delay).await;
                "slow"
            }),
        )
        .route("/now", get(|| async { "now" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}
