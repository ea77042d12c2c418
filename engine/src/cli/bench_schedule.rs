//! `wasmjob bench-schedule`: the store-backed periodic scheduler at scale.
//!
//! 1. Setup, on a fresh store: `--tenants` tenants get `--jobs / --tenants`
//!    periodic jobs each, due every 10 s with no anchor (the
//!    `bench-periodic` example under the names `bench-periodic-000`,
//!    `-001`...; tenants share the components), registered through the
//!    registry, concurrently.
//! 2. `--seconds` of scheduling: `--nodes` nodes in this process, each
//!    with its own node id so that they contend for the same schedules as
//!    separate processes would, run the catalog and the scheduler and no
//!    workers, so the process's CPU time is the scheduler's (and, on
//!    SQLite, the store's).
//! 3. From the store: without an anchor a tick is due 10 s after the
//!    previous one ran, so its lag is the gap between two consecutive
//!    tasks of its job, minus 10 s. A job's first tick is its phase (when
//!    it was registered, or when the schedulers started if that was over
//!    10 s later) and is not measured.
//!
//! Run it on a release build: `cargo run --release -- bench-schedule`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::node::{Node, NodeConfig};
use crate::store::{Millis, TaskFilter};

/// The name in the `bench-periodic` component that the benchmark replaces.
const MARKER: &[u8] = b"bench-periodic-000";
/// How often every benchmark job is due, as its metadata says.
const PERIOD_MS: Millis = 10_000;
/// A gap between two ticks of a job shorter than this means a tick ran twice.
const TWICE_UNDER_MS: Millis = 9_000;
/// A gap longer than this means a tick was skipped.
const SKIPPED_OVER_MS: Millis = 19_000;
/// Registrations in flight at a time, once every component is compiled.
const REGISTERING: usize = 16;
/// Registrations between two refreshes of the nodes' catalogs.
const REFRESH_EVERY: usize = 1000;

#[derive(Debug, Args)]
pub struct BenchScheduleArgs {
    /// Periodic jobs in all, spread evenly over the tenants.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Tenants.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 35)]
    seconds: u64,
    /// The store: `postgres://...`. Its wasmjob tables are dropped and
    /// recreated, so give the benchmark a schema of its own, e.g. after
    /// `CREATE SCHEMA IF NOT EXISTS wjbench`:
    /// `postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dwjbench`.
    /// Default: SQLite in a temp dir.
    #[arg(long, verbatim_doc_comment)]
    store: Option<String>,
    /// Schedulers: nodes in this process on the same store (PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

/// What the benchmark measured.
#[derive(Debug, Serialize)]
struct Report {
    store: &'static str,
    nodes: usize,
    jobs: usize,
    tenants: usize,
    seconds: u64,
    /// Opening the nodes, compiling and registering, in seconds.
    setup_s: f64,
    #[serde(flatten)]
    registration: Registration,
    #[serde(flatten)]
    ticks: TickStats,
    /// User + system CPU time of this process over the window, in seconds.
    cpu_s: f64,
    /// `cpu_s` as a percentage of one core.
    cpu_percent: f64,
    /// The process's peak resident memory, in MiB.
    peak_rss_mib: f64,
}

/// How long registering took, in seconds.
#[derive(Debug, Serialize)]
struct Registration {
    /// The first tenant's jobs: compiling each distinct component.
    compile_s: f64,
    /// Every other tenant's jobs.
    register_s: f64,
}

/// What the ticks in the window say.
#[derive(Debug, Default, Serialize)]
struct TickStats {
    /// Ticks measured: every tick in the window but each job's first.
    ticks: usize,
    /// Lag behind the due time, over the measured ticks that did not run twice.
    lag_ms: Lag,
    /// Gaps under 9,000 ms between two ticks of a job.
    ticks_run_twice: usize,
    /// Ticks missing from gaps over 19,000 ms, and after each job's last tick.
    ticks_skipped: usize,
    /// Jobs with no tick at all.
    jobs_never_ticked: usize,
    /// From the earliest first tick of a job to the latest, in seconds.
    first_ticks_spread_s: f64,
}

#[derive(Debug, Default, Serialize)]
struct Lag {
    p50: Millis,
    p99: Millis,
    max: Millis,
}

/// A measured window: when it started and ended, by the store's clock,
/// and the CPU time this process spent in it, in seconds.
struct Window {
    start: Millis,
    end: Millis,
    cpu_s: f64,
}

pub async fn bench_schedule(args: BenchScheduleArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -- bench-schedule` for real figures");
    }
    anyhow::ensure!(args.tenants >= 1 && args.jobs >= args.tenants, "--jobs must be at least --tenants (>= 1)");
    anyhow::ensure!(args.jobs.is_multiple_of(args.tenants), "--jobs must be a multiple of --tenants");
    let per_tenant = args.jobs / args.tenants;
    anyhow::ensure!(per_tenant <= 1000, "at most 1,000 jobs per tenant (names end in three digits)");
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    anyhow::ensure!(args.nodes == 1 || args.store.is_some(), "--nodes needs a PostgreSQL --store");
    let components = Arc::new(job_components(crate::examples::BENCH_PERIODIC, per_tenant)?);
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };

    let started = Instant::now();
    let dir = TempDir(std::env::temp_dir().join(format!("wasmjob-bench-schedule-{}", std::process::id())));
    let nodes = open_nodes(&args, &dir.0).await?;
    let tenants = create_tenants(&nodes[0], args.tenants).await?;
    let on = if args.store.is_some() { "PostgreSQL" } else { "SQLite in a temp dir" };
    say(format!(
        "registering {} periodic jobs due every 10 s: {} tenants x {per_tenant} jobs, {} node(s) on {on}...",
        args.jobs, args.tenants, args.nodes
    ));
    let registration = register_all(&nodes, &tenants, &components).await?;
    let setup = started.elapsed().as_secs_f64();
    say(format!(
        "  setup {setup:.1} s: compiling {per_tenant} components {:.1} s, registering the rest {:.1} s",
        registration.compile_s, registration.register_s
    ));
    say(format!("scheduling for {} s (schedulers only, no workers)...", args.seconds));

    let window = schedule_for(&nodes, Duration::from_secs(args.seconds)).await?;
    let ticks = ticks_by_job(&nodes[0], window.start, window.end).await?;
    let report = Report {
        store: if args.store.is_some() { "postgres" } else { "sqlite" },
        nodes: args.nodes,
        jobs: args.jobs,
        tenants: args.tenants,
        seconds: args.seconds,
        setup_s: setup,
        registration,
        ticks: TickStats::measure(&ticks, args.jobs, &window),
        cpu_s: window.cpu_s,
        cpu_percent: 100.0 * window.cpu_s / ((window.end - window.start) as f64 / 1000.0),
        peak_rss_mib: super::usage::peak_rss_mib().unwrap_or(f64::NAN),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    Ok(ExitCode::SUCCESS)
}

/// The benchmark's data dir (the SQLite store, the compile cache), removed
/// when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens `--nodes` nodes on a fresh store in `dir` or at `--store`.
async fn open_nodes(args: &BenchScheduleArgs, dir: &Path) -> anyhow::Result<Vec<Arc<Node>>> {
    std::fs::create_dir_all(dir)?;
    if let Some(url) = &args.store {
        crate::store::postgres::drop_tables(url).await?;
    }
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        // One data dir for all: the nodes share the compile cache, so each
        // component is compiled once, by the first node.
        let mut config = NodeConfig::new(dir);
        config.store_url = args.store.clone();
        config.node_id = Some(format!("bench-{i}"));
        nodes.push(Arc::new(Node::open(config, true).await?));
    }
    Ok(nodes)
}

/// Creates `n` tenants, `bench-000`..., with quotas high enough to measure
/// the scheduler, not the door.
async fn create_tenants(node: &Node, n: usize) -> anyhow::Result<Vec<String>> {
    let quotas =
        serde_json::json!({ "max_queued": 100_000_000, "queue_rate": 1e9, "queue_burst": 1e9, "max_running": 100_000 });
    let tenants: Vec<String> = (0..n).map(|t| format!("bench-{t:03}")).collect();
    for tenant in &tenants {
        node.tenants.create(tenant, quotas.as_object().expect("an object").clone()).await?;
    }
    Ok(tenants)
}

/// Registers every component for every tenant: the first tenant's through
/// the first node, as many at once as there are cores (each compiles its
/// component into the shared cache), then the others' from the cache.
async fn register_all(
    nodes: &[Arc<Node>],
    tenants: &[String],
    components: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<Registration> {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    register(&nodes[..1], &tenants[..1], components, cores).await?;
    let compile_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    register(nodes, &tenants[1..], components, REGISTERING).await?;
    Ok(Registration { compile_s, register_s: started.elapsed().as_secs_f64() })
}

/// Runs every node's catalog and scheduler for `duration`, then stops them.
///
/// They start once every job is registered: while they run, each
/// registration wakes every node's scheduler and catalog, which makes setup
/// slow on PostgreSQL. Jobs registered over 10 s before are then due at
/// once, as after a restart: their phases bunch up at the start.
async fn schedule_for(nodes: &[Arc<Node>], duration: Duration) -> anyhow::Result<Window> {
    let (stop, shutdown) = watch::channel(false);
    let clock = nodes[0].clock.clone();
    let start = clock.now_millis();
    let cpu_start = super::usage::cpu_time()?;
    let scheduling: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (node, shutdown) = (node.clone(), shutdown.clone());
            tokio::spawn(async move { node.schedule(shutdown).await })
        })
        .collect();
    tokio::time::sleep(duration).await;
    let cpu_s = super::usage::cpu_time()? - cpu_start;
    let end = clock.now_millis();
    let _ = stop.send(true);
    for node in scheduling {
        node.await??;
    }
    Ok(Window { start, end, cpu_s })
}

impl TickStats {
    /// Lag, ticks run twice and ticks skipped in `window`, from each job's
    /// ticks: a tick is measured if it ran in the window and is not its
    /// job's first.
    fn measure(ticks: &HashMap<(String, String), Vec<Millis>>, jobs: usize, window: &Window) -> Self {
        let missing =
            |gap: Millis| if gap > SKIPPED_OVER_MS { ((gap - TWICE_UNDER_MS) / PERIOD_MS) as usize } else { 0 };
        let mut stats = Self::default();
        let mut lags = Vec::new();
        for queued in ticks.values() {
            for pair in queued.windows(2).filter(|pair| pair[1] >= window.start) {
                let gap = pair[1] - pair[0];
                stats.ticks += 1;
                if gap < TWICE_UNDER_MS {
                    stats.ticks_run_twice += 1;
                } else {
                    lags.push(gap - PERIOD_MS);
                    stats.ticks_skipped += missing(gap);
                }
            }
            // No tick since the last one, for longer than a skipped one takes.
            stats.ticks_skipped += queued.last().map_or(0, |last| missing(window.end - last));
        }
        let firsts: Vec<Millis> = ticks.values().filter_map(|q| q.first().copied()).collect();
        stats.jobs_never_ticked = jobs.saturating_sub(firsts.len());
        let spread = firsts.iter().max().zip(firsts.iter().min()).map_or(0, |(max, min)| max - min);
        stats.first_ticks_spread_s = spread as f64 / 1000.0;
        lags.sort_unstable();
        let pct = |p: f64| lags.get((lags.len().saturating_sub(1) as f64 * p).round() as usize).copied().unwrap_or(0);
        stats.lag_ms = Lag { p50: pct(0.5), p99: pct(0.99), max: lags.last().copied().unwrap_or(0) };
        stats
    }
}

impl Report {
    fn print(&self) {
        let t = &self.ticks;
        println!(
            "ticks measured: {} (not each job's first, its phase; first ticks spread over {:.1} s)",
            t.ticks, t.first_ticks_spread_s
        );
        println!("lag behind due time: p50 {} ms, p99 {} ms, max {} ms", t.lag_ms.p50, t.lag_ms.p99, t.lag_ms.max);
        println!(
            "ticks run twice (gap < 9 s): {}; ticks skipped (gap > 19 s, or none since): {}; jobs never ticked: {}",
            t.ticks_run_twice, t.ticks_skipped, t.jobs_never_ticked
        );
        let store = if self.store == "postgres" { "the PostgreSQL server's not counted" } else { "SQLite's included" };
        println!(
            "scheduler CPU: {:.2} s over the window = {:.1}% of one core ({} node(s) in this process; {store})",
            self.cpu_s, self.cpu_percent, self.nodes
        );
        println!("peak memory: {:.0} MiB", self.peak_rss_mib);
    }
}

/// The `bench-periodic` component at `path` under `n` names: the marker
/// replaced by `bench-periodic-000`, `-001`...
fn job_components(path: &str, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let template = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    let found: Vec<usize> =
        template.windows(MARKER.len()).enumerate().filter(|(_, w)| *w == MARKER).map(|(i, _)| i).collect();
    let [at] = found[..] else {
        anyhow::bail!(
            "the name marker `{}` occurs {} times in {path}; it must occur exactly once",
            String::from_utf8_lossy(MARKER),
            found.len()
        );
    };
    Ok((0..n)
        .map(|i| {
            let mut bytes = template.clone();
            let name = format!("bench-periodic-{i:03}");
            bytes[at..at + MARKER.len()].copy_from_slice(name.as_bytes());
            bytes
        })
        .collect())
}

/// Registers every component for every tenant in `tenants`, at most
/// `concurrency` at once, each tenant through one of `nodes` in turn.
///
/// Every registration loads its component anew and the registry keeps
/// that copy until the catalog next refreshes, which shares one copy per
/// version (`wasmjob serve` refreshes within 250 ms): refreshing every
/// [`REFRESH_EVERY`] registrations bounds the memory the copies take.
async fn register(
    nodes: &[Arc<Node>],
    tenants: &[String],
    components: &Arc<Vec<Vec<u8>>>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let work: Vec<(usize, usize)> =
        (0..tenants.len()).flat_map(|t| (0..components.len()).map(move |j| (t, j))).collect();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    for chunk in work.chunks(REFRESH_EVERY) {
        let mut registering = JoinSet::new();
        for &(t, j) in chunk {
            let permit = permits.clone().acquire_owned().await?;
            let (node, components, tenant) = (nodes[t % nodes.len()].clone(), components.clone(), tenants[t].clone());
            registering.spawn(async move {
                let _permit = permit;
                node.registry
                    .register(&tenant, &components[j], usize::MAX)
                    .await
                    .with_context(|| format!("cannot register job {j} for {tenant}"))
            });
            while let Some(done) = registering.try_join_next() {
                done??;
            }
        }
        while let Some(done) = registering.join_next().await {
            done??;
        }
        for node in nodes {
            node.refresh().await?;
        }
    }
    Ok(())
}

/// When each job's tasks were queued in `[from, until)`, oldest first, by
/// tenant and job: one pass over the tasks, newest first, a page at a time.
async fn ticks_by_job(
    node: &Node,
    from: Millis,
    until: Millis,
) -> anyhow::Result<HashMap<(String, String), Vec<Millis>>> {
    let mut ticks: HashMap<(String, String), Vec<Millis>> = HashMap::new();
    let mut before_id = None;
    loop {
        let filter = TaskFilter {
            queued_after: Some(from),
            queued_before: Some(until),
            limit: Some(1000),
            before_id,
            ..TaskFilter::default()
        };
        let page = node.store.list_tasks(filter).await?;
        let Some(last) = page.last() else { break };
        before_id = Some(last.id.clone());
        for task in page {
            ticks.entry((task.tenant, task.job)).or_default().push(task.queued_at);
        }
    }
    for queued in ticks.values_mut() {
        queued.sort_unstable();
    }
    Ok(ticks)
}
