//! `wasmjob bench-api`: the HTTP API end to end, over loopback, on a fresh
//! store.
//!
//! 0. Batch enqueue: `--batch-tasks` tasks queued through
//!    `POST /v1/tasks/batch`, [`MAX_BATCH`] per request, from
//!    `--batch-clients` clients at once, before any worker runs (they are
//!    delayed by a day, so they never run); the rate compares with
//!    graphile-worker's `addJobs` (`push_rate`).
//! 1. Throughput: `--clients` threads, half for each of two tenants, each
//!    queueing a trivial `addition` task and waiting for it over HTTP, for
//!    `--tasks` tasks in all.
//! 2. Fairness: a heavy tenant floods the queue with `--flood` tasks; a
//!    light tenant then queues tasks one by one and waits for each. Its
//!    queue→success latency (p50, p99) is compared with the same on an idle
//!    engine.
//!
//! Run it on a release build: `cargo run --release -- bench-api`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::sync::watch;

use crate::api::{ApiState, MAX_BATCH, router};
use crate::auth::Scope;
use crate::node::{Node, NodeConfig};
use crate::store::TaskState;
use crate::task::QueueOptions;
use crate::wire::{BatchAnswer, BatchItem, BatchRequest, QueueRequest, Queued, Task};

#[derive(Debug, Args)]
pub struct BenchApiArgs {
    /// Tasks in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Client threads in the throughput run.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Tasks the heavy tenant floods the queue with.
    #[arg(long, default_value_t = 20_000)]
    flood: usize,
    /// Tasks the light tenant times.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Tasks in the batch enqueue run.
    #[arg(long, default_value_t = 20_000)]
    batch_tasks: usize,
    /// Clients sending batches at once.
    #[arg(long, default_value_t = 4)]
    batch_clients: usize,
}

pub async fn bench_api(args: BenchApiArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -- bench-api` for real figures");
    }
    let dir = std::env::temp_dir().join(format!("wasmjob-bench-api-{}", std::process::id()));
    let node = Arc::new(Node::open(NodeConfig::new(&dir), true).await?);
    node.auth.ensure_admin(Some("wj_bench_admin")).await?;
    let auth = node.auth.clone();
    let mut tokens = Vec::new();
    let addition = std::fs::read(crate::examples::ADDITION)?;
    // High quotas: this measures the engine, not the door.
    let quotas = json!({ "max_queued": 10_000_000, "queue_rate": 1e9, "queue_burst": 1e9, "max_running": 1000 });
    for tenant in ["heavy", "light", "bulk"] {
        node.tenants.create(tenant, quotas.as_object().unwrap().clone()).await?;
        tokens.push(auth.create(Some(tenant), Scope::Write).await?.token);
        node.registry.register(tenant, &addition, 10).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, shutdown) = watch::channel(false);
    let api = router(ApiState { node: node.clone() });
    tokio::spawn(async move { axum::serve(listener, api).await });

    // 0. Batch enqueue, before the workers start.
    let rate = batch_enqueue(&url, &tokens[2], args.batch_tasks, args.batch_clients).await?;
    println!(
        "HTTP batch enqueue: {} tasks, {MAX_BATCH} per request, {} clients: {rate:.0} tasks/s",
        args.batch_tasks, args.batch_clients
    );

    let serving = tokio::spawn({
        let node = node.clone();
        async move { node.serve(shutdown).await }
    });

    // 1. Throughput with two tenants.
    let per_client = args.tasks / args.clients.max(1);
    let start = Instant::now();
    let threads: Vec<_> = (0..args.clients)
        .map(|i| {
            let (url, token) = (url.clone(), tokens[i % 2].clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent = ureq::Agent::new_with_defaults();
                for _ in 0..per_client {
                    queue_and_wait(&agent, &url, &token)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread panicked")?;
    }
    let elapsed = start.elapsed();
    let done = per_client * args.clients;
    println!(
        "HTTP queue-and-wait, 2 tenants, {} clients: {done} tasks in {:.2} s = {:.0} tasks/s",
        args.clients,
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );

    // 2. The light tenant, idle, then under the heavy tenant's flood.
    let idle = light_latencies(&url, &tokens[1], args.samples).await?;
    let flood = vec![("addition".to_owned(), r#"{"a":1,"b":2}"#.to_owned(), QueueOptions::default()); args.flood];
    for chunk in flood.chunks(1000) {
        node.queue.queue_many("heavy", chunk).await?;
    }
    let flooded = light_latencies(&url, &tokens[1], args.samples).await?;
    let waiting: u64 =
        node.store.waiting_by_tenant().await?.into_iter().filter(|(t, _)| t == "heavy").map(|(_, n)| n).sum();
    println!(
        "light tenant queue-and-wait over HTTP: idle p50 {:.0} µs, p99 {:.0} µs; during a {}-task flood p50 {:.0} µs, p99 {:.0} µs \
         ({waiting} flood tasks still waiting at the end)",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        args.flood,
        pct(&flooded, 0.5),
        pct(&flooded, 0.99),
    );
    let _ = stop.send(true);
    serving.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

/// Queues `n` day-delayed tasks through `POST /v1/tasks/batch` from
/// `clients` threads; answers tasks/s.
async fn batch_enqueue(url: &str, token: &str, n: usize, clients: usize) -> anyhow::Result<f64> {
    let clients = clients.max(1);
    let batches = n.div_ceil(MAX_BATCH);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (url, auth, next) = (url.to_owned(), format!("Bearer {token}"), next.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent = ureq::Agent::new_with_defaults();
                let options = QueueOptions { delay: Some(Duration::from_secs(86_400)), ..QueueOptions::default() };
                let task = QueueRequest { job: "addition".into(), args: json!({ "a": 1, "b": 2 }), options };
                loop {
                    let batch = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if batch >= batches {
                        return Ok(());
                    }
                    let size = MAX_BATCH.min(n - batch * MAX_BATCH);
                    let answer: BatchAnswer = agent
                        .post(format!("{url}/v1/tasks/batch"))
                        .header("Authorization", &auth)
                        .send_json(BatchRequest { tasks: vec![task.clone(); size] })?
                        .body_mut()
                        .read_json()?;
                    let queued = answer.results.iter().filter(|r| matches!(r, BatchItem::Queued(_))).count();
                    anyhow::ensure!(queued == size, "a batch of {size} queued {queued}: {answer:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn queue_and_wait(agent: &ureq::Agent, url: &str, token: &str) -> anyhow::Result<()> {
    let auth = format!("Bearer {token}");
    let request =
        QueueRequest { job: "addition".into(), args: json!({ "a": 1, "b": 2 }), options: QueueOptions::default() };
    let queued: Queued = agent
        .post(format!("{url}/v1/tasks"))
        .header("Authorization", &auth)
        .send_json(request)?
        .body_mut()
        .read_json()?;
    let id = queued.id;
    let task: Task = agent
        .get(format!("{url}/v1/tasks/{id}/wait?timeout=30s"))
        .header("Authorization", &auth)
        .call()?
        .body_mut()
        .read_json()?;
    anyhow::ensure!(task.state == TaskState::Success, "task {id} ended {}", task.state.as_str());
    Ok(())
}

/// Queue→success round trips of one client, in µs, sorted.
async fn light_latencies(url: &str, token: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let (url, token) = (url.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_defaults();
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            queue_and_wait(&agent, &url, &token)?;
            times.push(start.elapsed().as_secs_f64() * 1e6);
            std::thread::sleep(Duration::from_millis(2));
        }
        times.sort_by(f64::total_cmp);
        Ok(times)
    })
    .await?
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
