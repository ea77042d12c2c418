//! `wasmjob bench-queue`: the durable queue end to end, on a fresh SQLite
//! store in a temporary directory.
//!
//! 1. Throughput: `--tasks` trivial `addition` tasks are queued (in batches
//!    of 1,000), then a node burns them down; the clock runs from the start
//!    of serving until every task is `success` with its result committed.
//! 2. Latency on an idle engine: one task at a time, from the `queue` call
//!    until its waiter sees it `success` (an upper bound of queue→start),
//!    p50 and p99 over `--samples` tasks.
//!
//! Run it on a release build: `cargo run --release -- bench-queue`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::watch;

use crate::node::{Node, NodeConfig};
use crate::store::TaskState;
use crate::task::QueueOptions;

/// The benchmark's tenant.
const TENANT: &str = "bench";

#[derive(Debug, Args)]
pub struct BenchQueueArgs {
    /// Tasks in the throughput run.
    #[arg(long, default_value_t = 50_000)]
    tasks: usize,
    /// Tasks in the latency run.
    #[arg(long, default_value_t = 500)]
    samples: usize,
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
}

pub async fn bench_queue(args: BenchQueueArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -- bench-queue` for real figures");
    }
    let dir = tempfile_dir()?;
    let mut config = NodeConfig::new(&dir);
    if let Some(c) = args.concurrency {
        config.concurrency = c;
    }
    anyhow::ensure!(args.nodes == 1 || args.store.is_some(), "--nodes needs a PostgreSQL --store");
    if let Some(url) = &args.store {
        reset_postgres(url).await?;
        config.store_url = Some(url.clone());
    }
    let concurrency = config.concurrency;
    let node = Arc::new(Node::open(config, true).await?);
    // A tenant with quotas high enough to measure the engine, not the door.
    let quotas =
        serde_json::json!({ "max_queued": 100_000_000, "queue_rate": 1e9, "queue_burst": 1e9, "max_running": 100_000 });
    node.tenants.create(TENANT, quotas.as_object().expect("an object").clone()).await?;
    node.registry.register(TENANT, &std::fs::read(crate::examples::ADDITION)?, usize::MAX).await?;

    println!("queueing {} addition tasks (batches of 1,000)...", args.tasks);
    let started = Instant::now();
    let request = ("addition".to_owned(), r#"{"a":1,"b":2}"#.to_owned(), QueueOptions::default());
    let mut last = String::new();
    for chunk in (0..args.tasks).collect::<Vec<_>>().chunks(1000) {
        let answers = node.queue.queue_many(TENANT, &vec![request.clone(); chunk.len()]).await?;
        last = answers.into_iter().last().expect("a non-empty batch")?;
    }
    let queue_time = started.elapsed();
    println!("  queued at {:.0} tasks/s", args.tasks as f64 / queue_time.as_secs_f64());

    let (stop, shutdown) = watch::channel(false);
    let serving = tokio::spawn({
        let node = node.clone();
        async move { node.serve(shutdown).await }
    });
    let others: Vec<KillOnDrop> = (1..args.nodes)
        .map(|i| spawn_node(args.store.as_deref().unwrap_or_default(), &dir.join(format!("node{i}")), args.concurrency))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    node.queue.wait(&last, Duration::from_secs(3600)).await?;
    loop {
        let done: u64 = node
            .store
            .count_by_state()
            .await?
            .into_iter()
            .filter(|(_, s, _)| *s == TaskState::Success)
            .map(|(_, _, n)| n)
            .sum();
        if done as usize >= args.tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let burn = started.elapsed();
    println!(
        "throughput: {} tasks queued→success in {:.2} s = {:.0} tasks/s ({} node(s), concurrency {concurrency} each)",
        args.tasks,
        burn.as_secs_f64(),
        args.tasks as f64 / burn.as_secs_f64(),
        args.nodes
    );
    drop(others);

    let mut samples = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let start = Instant::now();
        let id = node.queue.queue(TENANT, "addition", r#"{"a":1,"b":2}"#, &QueueOptions::default(), None).await?;
        let task = node.queue.wait(&id, Duration::from_secs(10)).await?.expect("the task exists");
        anyhow::ensure!(task.state == TaskState::Success, "task {id} ended {:?}", task.state);
        samples.push(start.elapsed());
        // Idle between samples, as a lone client would be.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "idle latency, queue→success (bounds queue→start): p50 {:.0} µs, p99 {:.0} µs over {} tasks",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        args.samples
    );
    let _ = stop.send(true);
    serving.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
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

/// Drops wasmjob's tables, so that the run starts from an empty store.
async fn reset_postgres(url: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS tasks, schedules, job_versions, jobs, tokens, tenants, components, rates, generations, \
             wasmjob_schema",
        )
        .await?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("wasmjob-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
