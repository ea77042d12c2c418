//! `wasmjob bench-queue`: the durable queue end to end, on a fresh SQLite
//! store in a temporary directory (or a PostgreSQL schema of its own).
//!
//! 1. Latency on an idle engine: one `stamp` task at a time, `--gap` apart
//!    (as a lone client would queue them). queue→start runs from the
//!    `queue` call until the guest's call begins (the `stamp` job answers
//!    with its wall clock); queue→success until its waiter sees it end.
//!    p50 and p99 over `--samples` tasks.
//! 2. Throughput: `--tasks` trivial `addition` tasks are queued (in batches
//!    of 1,000), then the nodes burn them down; the rate runs from the
//!    first claim of them (the `started_at` it wrote, to the millisecond)
//!    until the last of them is `success` with its result committed, near
//!    graphile-worker's `proc_s` (from its first job's start until its
//!    runner has stopped); the time from the start of serving until that
//!    claim is apart. `--backlog N` queues N more behind them first, so that
//!    the rate is measured with N tasks waiting in the store; `--limited`
//!    gives the job a limit, so that every claim is the grouped one.
//!
//! `--json` prints one JSON line per measurement, with the field names of
//! `../shared/peers/graphile/run.sh` where they mean the same
//! (`proc_rate`, `p50_ms`, `p99_ms`). Run it on a release build:
//! `cargo run --release -- bench-queue`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;
use tokio::sync::watch;

use crate::node::{Node, NodeConfig};
use crate::store::{TaskFilter, TaskState};
use crate::task::QueueOptions;

/// The benchmark's tenant.
const TENANT: &str = "bench";
/// Most of the benchmark tenant's tasks running at once, and of the job's
/// with `--limited`: more than any node runs.
const MAX_RUNNING: u32 = 100_000;
/// Tasks queued per call while filling the queue.
const QUEUE_BATCH: usize = 1000;

#[derive(Debug, Args)]
pub struct BenchQueueArgs {
    /// Tasks in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Tasks queued behind the measured ones before the clock starts.
    #[arg(long, default_value_t = 0)]
    backlog: usize,
    /// Tasks run to success before anything is measured, so that the store
    /// holds this many finished tasks (as it does within their retention).
    #[arg(long, default_value_t = 0)]
    finished: usize,
    /// Tasks in the latency run.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Idle time between two latency samples, in ms.
    #[arg(long, default_value_t = 5)]
    gap: u64,
    /// Tasks run at once per node (default: the engine's default).
    #[arg(long)]
    concurrency: Option<usize>,
    /// The store: `postgres://...` (its tables are dropped and recreated:
    /// use a database or schema of its own). Default: SQLite in a temp dir.
    #[arg(long)]
    store: Option<String>,
    /// Engine nodes burning down the queue: this process plus `nodes - 1`
    /// `wasmjob serve` processes on the same store (PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Give the measured job a limit (as many at once as the tenant may
    /// run), so that every claim is the grouped claim that limits take.
    #[arg(long)]
    limited: bool,
    /// Print one JSON line per measurement instead of prose.
    #[arg(long)]
    json: bool,
}

/// The throughput run's figures.
#[derive(Debug, Serialize)]
struct Burn {
    kind: &'static str,
    store: &'static str,
    /// Whether the job had a limit (`--limited`).
    limited: bool,
    nodes: usize,
    concurrency: usize,
    n: usize,
    backlog: usize,
    /// Finished tasks in the store before the run.
    finished: usize,
    /// Tasks/s queued through `queue_many` while filling the queue.
    push_rate: f64,
    /// Seconds from the start of serving until the claim that started the
    /// first measured task (its `now`, taken before the claim's round trip;
    /// compare graphile-worker's `start_s`): starting the node. The store
    /// records starts to the millisecond: this reads up to 1 ms low, and 0
    /// when under it.
    start_s: f64,
    /// Seconds from that claim until the last measured task's success:
    /// near the interval of graphile-worker's `proc_s` (which starts when
    /// its first job is entered and ends once its runner has stopped), so
    /// that the two rates compare.
    proc_s: f64,
    proc_rate: f64,
    /// `n` over `start_s + proc_s`: from the start of serving.
    serve_rate: f64,
}

/// The latency run's figures, in milliseconds.
#[derive(Debug, Serialize)]
struct Latency {
    kind: &'static str,
    store: &'static str,
    /// Whether the tenant had a job with a limit (`--limited`): its
    /// claims were grouped ones.
    limited: bool,
    samples: usize,
    gap_ms: u64,
    /// queue→start: the `queue` call until the guest's call begins.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// queue→success: the `queue` call until its waiter sees it end.
    success_p50_ms: f64,
    success_p99_ms: f64,
    /// The `queue` call alone (until its insert committed), within
    /// queue→start (the task may start before the call returns).
    queue_p50_ms: f64,
    queue_p99_ms: f64,
}

pub async fn bench_queue(args: BenchQueueArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -- bench-queue` for real figures");
    }
    anyhow::ensure!(args.nodes == 1 || args.store.is_some(), "--nodes needs a PostgreSQL --store");
    anyhow::ensure!(args.tasks > 0 && args.samples > 0, "--tasks and --samples must be at least 1");
    let dir = tempfile_dir()?;
    let mut config = NodeConfig::new(&dir);
    if let Some(c) = args.concurrency {
        config.concurrency = c.max(1);
    }
    if let Some(url) = &args.store {
        crate::store::postgres::drop_tables(url).await?;
        config.store_url = Some(url.clone());
    }
    let store = if args.store.is_some() { "postgres" } else { "sqlite" };
    let concurrency = config.concurrency;
    let node = Arc::new(Node::open(config, true).await?);
    // A tenant with quotas high enough to measure the engine, not the door.
    let quotas = serde_json::json!({ "max_queued": 100_000_000, "queue_rate": 1e9, "queue_burst": 1e9, "max_running": MAX_RUNNING });
    node.tenants.create(TENANT, quotas.as_object().expect("an object").clone()).await?;
    node.registry.register(TENANT, &std::fs::read(crate::examples::ADDITION)?, usize::MAX).await?;
    node.registry.register(TENANT, &std::fs::read(crate::examples::STAMP)?, usize::MAX).await?;
    if args.limited {
        let limits = crate::limits::JobLimits { max_concurrency: Some(MAX_RUNNING), rate: None };
        node.store.put_job_limits(TENANT, "addition", &limits, node.clock.now_millis(), usize::MAX).await?;
    }

    finish(&node, args.finished, args.json).await?;
    if let (Some(url), true) = (&args.store, args.finished > 0) {
        // Autovacuum would have visited the tables within its naptime (a
        // minute) of that much churn; the run starts from there.
        crate::store::postgres::vacuum(url).await?;
    }
    let latency = measure_latency(&node, &args, store).await?;
    if !args.json {
        println!(
            "idle latency over {} tasks, {} ms apart: queue→start p50 {:.2} ms, p99 {:.2} ms (max {:.2}); \
             queue→success p50 {:.2} ms, p99 {:.2} ms; the queue call alone p50 {:.2} ms, p99 {:.2} ms",
            latency.samples,
            latency.gap_ms,
            latency.p50_ms,
            latency.p99_ms,
            latency.max_ms,
            latency.success_p50_ms,
            latency.success_p99_ms,
            latency.queue_p50_ms,
            latency.queue_p99_ms
        );
    }

    let (push_rate, first, last) = fill(&node, &args).await?;
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let started_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() * 1e3;
    let serving = tokio::spawn({
        let node = node.clone();
        async move { node.serve(shutdown).await }
    });
    let others: Vec<KillOnDrop> = (1..args.nodes)
        .map(|i| spawn_node(args.store.as_deref().unwrap_or_default(), &dir.join(format!("node{i}")), args.concurrency))
        .collect::<anyhow::Result<_>>()?;
    node.queue.wait(&last, Duration::from_secs(3600)).await?;
    // Claims go oldest first: once the last measured task has ended, the
    // others have too, or are the last few still running (with a backlog,
    // those are within one task's run of the last).
    while args.backlog == 0 && has_any(&node, TaskState::Started).await? {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let serve_s = started.elapsed().as_secs_f64();
    drop(others);
    let _ = stop.send(true);
    serving.await??;
    for state in [TaskState::Failure, TaskState::Revoked] {
        anyhow::ensure!(!has_any(&node, state).await?, "some tasks ended {}", state.as_str());
    }
    // Claims go oldest first: the first measured task is among the first
    // started, all at the same moment (their claim's).
    let first = node.queue.task(&first).await?.ok_or_else(|| anyhow::anyhow!("task {first} is gone"))?;
    let first_ms = first.started_at.ok_or_else(|| anyhow::anyhow!("task {} never started", first.id))? as f64;
    let start_s = ((first_ms - started_ms) / 1e3).clamp(0.0, serve_s);
    let proc_s = serve_s - start_s;
    let burn = Burn {
        kind: "burn",
        store,
        limited: args.limited,
        nodes: args.nodes,
        concurrency,
        n: args.tasks,
        backlog: args.backlog,
        finished: args.finished,
        push_rate,
        start_s,
        proc_s,
        proc_rate: args.tasks as f64 / proc_s,
        serve_rate: args.tasks as f64 / serve_s,
    };
    if args.json {
        println!("{}", serde_json::to_string(&burn)?);
        println!("{}", serde_json::to_string(&latency)?);
    } else {
        println!(
            "throughput: {} tasks first start→last success in {:.3} s = {:.0} tasks/s, {:.0} tasks/s counting \
             the {:.3} s from the start of serving to the first start ({} node(s), concurrency {concurrency} \
             each, {} more queued behind, {} finished before); queued at {:.0} tasks/s",
            burn.n,
            burn.proc_s,
            burn.proc_rate,
            burn.serve_rate,
            burn.start_s,
            burn.nodes,
            burn.backlog,
            burn.finished,
            burn.push_rate
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

/// The idle latency run, on a node serving alone.
async fn measure_latency(node: &Arc<Node>, args: &BenchQueueArgs, store: &'static str) -> anyhow::Result<Latency> {
    let (stop, shutdown) = watch::channel(false);
    let serving = tokio::spawn({
        let node = node.clone();
        async move { node.serve(shutdown).await }
    });
    let mut start = Vec::with_capacity(args.samples);
    let mut success = Vec::with_capacity(args.samples);
    let mut queued = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let queued_at = SystemTime::now();
        let clock = Instant::now();
        let id = node.queue.queue(TENANT, "stamp", "{}", &QueueOptions::default(), None).await?;
        queued.push(clock.elapsed());
        let task = node.queue.wait(&id, Duration::from_secs(10)).await?;
        let task = task.ok_or_else(|| anyhow::anyhow!("task {id} is gone"))?;
        success.push(clock.elapsed());
        anyhow::ensure!(task.state == TaskState::Success, "task {id} ended {:?}", task.state);
        let answer: serde_json::Value = serde_json::from_str(task.result.as_deref().unwrap_or("null"))?;
        let began = answer["started_ns"].as_u64().ok_or_else(|| anyhow::anyhow!("`stamp` answered {answer}"))?;
        let queued_ns = queued_at.duration_since(UNIX_EPOCH)?.as_nanos();
        start.push(Duration::from_nanos(u64::try_from(u128::from(began).saturating_sub(queued_ns))?));
        tokio::time::sleep(Duration::from_millis(args.gap)).await;
    }
    let _ = stop.send(true);
    serving.await??;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    start.sort();
    success.sort();
    queued.sort();
    Ok(Latency {
        kind: "latency",
        store,
        limited: args.limited,
        samples: args.samples,
        gap_ms: args.gap,
        p50_ms: ms(percentile(&start, 0.5)),
        p99_ms: ms(percentile(&start, 0.99)),
        max_ms: ms(percentile(&start, 1.0)),
        success_p50_ms: ms(percentile(&success, 0.5)),
        success_p99_ms: ms(percentile(&success, 0.99)),
        queue_p50_ms: ms(percentile(&queued, 0.5)),
        queue_p99_ms: ms(percentile(&queued, 0.99)),
    })
}

/// Runs `n` tasks to success, so that the store holds them finished.
async fn finish(node: &Arc<Node>, n: usize, json: bool) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    if !json {
        println!("running {n} tasks to success first...");
    }
    let request = ("addition".to_owned(), r#"{"a":1,"b":2}"#.to_owned(), QueueOptions::default());
    let mut last = None;
    let mut queued = 0;
    while queued < n {
        let batch = QUEUE_BATCH.min(n - queued);
        last = node.queue.queue_many(TENANT, &vec![request.clone(); batch]).await?.into_iter().last();
        queued += batch;
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("no task was queued"))??;
    let (stop, shutdown) = watch::channel(false);
    let serving = tokio::spawn({
        let node = node.clone();
        async move { node.serve(shutdown).await }
    });
    node.queue.wait(&last, Duration::from_secs(3600)).await?;
    while has_any(node, TaskState::Started).await? || has_any(node, TaskState::Queued).await? {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    serving.await??;
    Ok(())
}

/// Queues the measured tasks, then the backlog behind them; answers the
/// rate and the first and last measured tasks' ids.
async fn fill(node: &Node, args: &BenchQueueArgs) -> anyhow::Result<(f64, String, String)> {
    if !args.json {
        println!("queueing {} addition tasks and {} behind them...", args.tasks, args.backlog);
    }
    let request = ("addition".to_owned(), r#"{"a":1,"b":2}"#.to_owned(), QueueOptions::default());
    let started = Instant::now();
    let (mut first, mut last) = (None, None);
    let mut queued = 0;
    while queued < args.tasks + args.backlog {
        // The measured tasks and the backlog never share a batch.
        let end = if queued < args.tasks { args.tasks } else { args.tasks + args.backlog };
        let n = QUEUE_BATCH.min(end - queued);
        let answers = node.queue.queue_many(TENANT, &vec![request.clone(); n]).await?;
        if queued < args.tasks {
            if first.is_none() {
                first = answers.first().cloned();
            }
            last = answers.into_iter().last();
        }
        queued += n;
    }
    let rate = queued as f64 / started.elapsed().as_secs_f64();
    let none = || anyhow::anyhow!("no task was queued");
    Ok((rate, first.ok_or_else(none)??, last.ok_or_else(none)??))
}

/// Whether any task is in `state` (one indexed row at most).
async fn has_any(node: &Node, state: TaskState) -> anyhow::Result<bool> {
    let filter = TaskFilter { state: Some(state), limit: Some(1), ..TaskFilter::default() };
    Ok(!node.store.list_tasks(filter).await?.is_empty())
}

/// The `p`th percentile of sorted `samples`.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

/// A `wasmjob serve` process, killed when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_node(url: &str, dir: &std::path::Path, concurrency: Option<usize>) -> anyhow::Result<KillOnDrop> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--store", url, "--admin-token", "wj_bench_admin", "--data"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    if let Some(c) = concurrency {
        cmd.args(["--concurrency", &c.to_string()]);
    }
    Ok(KillOnDrop(cmd.spawn()?))
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("wasmjob-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
