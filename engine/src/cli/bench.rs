//! `wasmjob bench`: what the sandbox costs.
//!
//! 1. Per-task overhead of the trivial `addition` job (fresh instance, call,
//!    drop, fuel on): µs per task on one thread, and tasks/s on all cores.
//! 2. A compute-heavy job (recursive `fib`) in the sandbox with fuel on, with
//!    fuel off, and the same Rust code run natively, with the ratios.
//! 3. The same two in the same run on a bare wasmtime host (`bench_bare.rs`):
//!    `addition` on the pooling allocator with its default settings and on
//!    the default on-demand allocator, `fib` with neither fuel nor epoch
//!    interruption, with each alone and with both; each beside our figure.
//!    What the sandbox costs beyond that host is ours to win back; what the
//!    host costs beyond native is wasmtime's.
//!
//! Every figure is the median of several rounds. Run it on a release build:
//! `cargo run --release -- bench`.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bench_bare::{BareHost, BareSettings};
use crate::runtime::{JobComponent, RecordingQueue, Runtime, RuntimeConfig, TaskInput};
use anyhow::Context as _;
use clap::Args;

/// The args of every `addition` task.
const ADDITION_ARGS: &str = r#"{"a":1,"b":2}"#;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Tasks per round of the overhead benchmark.
    #[arg(long, default_value_t = 5000)]
    tasks: u32,
    /// Rounds of each benchmark; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// `n` of the fib benchmark.
    #[arg(long, default_value_t = 30)]
    fib: u32,
    /// Also measure the per-task cost of this component (repeatable): a job
    /// in another language, such as `target/polyglot/python/addition.wasm`
    /// (`scripts/polyglot-bench.sh` builds and measures the examples).
    #[arg(long = "job", value_name = "PATH")]
    jobs: Vec<std::path::PathBuf>,
    /// The args of every task of the `--job` components.
    #[arg(long, default_value = ADDITION_ARGS)]
    job_args: String,
    /// Tasks per round for each `--job` component.
    #[arg(long, default_value_t = 300)]
    job_tasks: u32,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -- bench` for real figures");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one_thread = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let all_cores = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?;

    let metered = Arc::new(Runtime::new(RuntimeConfig::default())?);
    let unmetered = Arc::new(Runtime::new(RuntimeConfig { consume_fuel: false, ..RuntimeConfig::default() })?);
    let addition = one_thread.block_on(load(&metered, crate::examples::ADDITION))?;
    let fib_metered = one_thread.block_on(load(&metered, crate::examples::FIB))?;
    let fib_unmetered = one_thread.block_on(load(&unmetered, crate::examples::FIB))?;

    println!(
        "per-task overhead of `addition` (instantiate + call + drop, fuel on), {} tasks x {} rounds",
        args.tasks, args.rounds
    );
    let per_task = median(args.rounds, || {
        let start = Instant::now();
        one_thread.block_on(async {
            for i in 0..args.tasks {
                let report = metered.run(&addition, input(&metered, &addition, i, ADDITION_ARGS)).await;
                assert!(report.outcome.is_success(), "{report:?}");
            }
        });
        start.elapsed() / args.tasks
    });
    println!("  one thread:   {:.2} µs/task", micros(per_task));

    let throughput =
        median(args.rounds, || spread(&all_cores, cores, &metered, &addition, ADDITION_ARGS, args.tasks * 4));
    println!("  {cores} cores:      {:.0} tasks/s", 1.0 / throughput.as_secs_f64());
    for path in &args.jobs {
        measure_job(&args, (&one_thread, &all_cores, cores), &metered, path, per_task)?;
    }

    println!("fib({}), median of {} rounds", args.fib, args.rounds);
    let fib_args = format!(r#"{{"n":{}}}"#, args.fib);
    let run_fib = |runtime: &Runtime, job: &JobComponent| {
        median(args.rounds, || {
            one_thread.block_on(async {
                let report = runtime.run(job, input(runtime, job, 0, &fib_args)).await;
                assert!(report.outcome.is_success(), "{report:?}");
                report.wall_time
            })
        })
    };
    let fueled = run_fib(&metered, &fib_metered);
    let unfueled = run_fib(&unmetered, &fib_unmetered);
    let native = median(args.rounds, || {
        let start = Instant::now();
        black_box(fib(black_box(args.fib)));
        start.elapsed()
    });
    println!("  native:       {:>8.3} ms", millis(native));
    println!("  wasm, no fuel: {:>7.3} ms  ({:.2}x native)", millis(unfueled), ratio(unfueled, native));
    println!("  wasm, fuel:   {:>8.3} ms  ({:.2}x native)", millis(fueled), ratio(fueled, native));

    let ours = Figures { per_task, native, unfueled, fueled };
    compare_with_bare_host(&args, &one_thread, &ours)?;
    Ok(ExitCode::SUCCESS)
}

/// Per-task cost (instantiate + call + drop, fuel on, one thread) of the
/// component at `path`, beside `addition`'s.
/// Runs `total` tasks of `job` with `args` spread over `cores` workers of
/// `all_cores`; the wall time per task.
fn spread(
    all_cores: &tokio::runtime::Runtime,
    cores: usize,
    runtime: &Arc<Runtime>,
    job: &JobComponent,
    args: &str,
    total: u32,
) -> Duration {
    let start = Instant::now();
    all_cores.block_on(async {
        let mut workers = tokio::task::JoinSet::new();
        let per_worker = total / cores as u32;
        for w in 0..cores as u32 {
            let (runtime, job, args) = (runtime.clone(), job.clone(), args.to_owned());
            workers.spawn(async move {
                for i in 0..per_worker {
                    let report = runtime.run(&job, input(&runtime, &job, w * per_worker + i, &args)).await;
                    assert!(report.outcome.is_success(), "{report:?}");
                }
            });
        }
        while workers.join_next().await.is_some() {}
    });
    start.elapsed() / (total / cores as u32 * cores as u32).max(1)
}

fn measure_job(
    args: &BenchArgs,
    (one_thread, all_cores, cores): (&tokio::runtime::Runtime, &tokio::runtime::Runtime, usize),
    runtime: &Arc<Runtime>,
    path: &std::path::Path,
    addition: Duration,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let compiling = Instant::now();
    let job = one_thread.block_on(runtime.load(&bytes)).with_context(|| format!("{} was rejected", path.display()))?;
    let compiled = compiling.elapsed();
    let first = one_thread.block_on(runtime.run(&job, input(runtime, &job, 0, &args.job_args)));
    anyhow::ensure!(first.outcome.is_success(), "{}: {:?}", path.display(), first.outcome);
    let per_task = median(args.rounds, || {
        let start = Instant::now();
        one_thread.block_on(async {
            for i in 0..args.job_tasks {
                let report = runtime.run(&job, input(runtime, &job, i, &args.job_args)).await;
                assert!(report.outcome.is_success(), "{report:?}");
            }
        });
        start.elapsed() / args.job_tasks
    });
    let throughput = median(args.rounds, || spread(all_cores, cores, runtime, &job, &args.job_args, args.job_tasks));
    println!(
        "  {} `{}` ({:.1} MB, compiled in {:.1} s): {:.0} µs/task, {:.0}x addition's, {:.0} tasks/s on {cores} cores; \
         fuel {} per task",
        path.display(),
        job.metadata().name,
        bytes.len() as f64 / 1e6,
        compiled.as_secs_f64(),
        micros(per_task),
        ratio(per_task, addition),
        1.0 / throughput.as_secs_f64(),
        first.fuel_consumed
    );
    Ok(())
}

/// The sandbox's figures, printed again beside the bare host's.
struct Figures {
    /// µs per `addition` task on one thread, fuel on.
    per_task: Duration,
    native: Duration,
    /// `fib` with epoch interruption only.
    unfueled: Duration,
    /// `fib` with fuel and epoch interruption.
    fueled: Duration,
}

/// Measures a bare wasmtime host (`bench_bare.rs`) and prints each figure
/// beside ours.
fn compare_with_bare_host(
    args: &BenchArgs,
    one_thread: &tokio::runtime::Runtime,
    ours: &Figures,
) -> anyhow::Result<()> {
    println!(
        "bare wasmtime host, same run (wasmtime's defaults but what is named, default WASI, no-op host imports, \
         a fresh instance per call)"
    );
    compare_overhead(args, one_thread, ours.per_task)?;
    compare_fib(args, one_thread, ours)
}

/// `addition` on the pooling allocator with its default settings, then on
/// wasmtime's default on-demand allocator, instrumented as ours is.
fn compare_overhead(args: &BenchArgs, one_thread: &tokio::runtime::Runtime, ours: Duration) -> anyhow::Result<()> {
    for pooling in [true, false] {
        let settings = BareSettings { fuel: true, epoch: true, pooling };
        let bare = bare_per_task(&BareHost::new(settings)?, one_thread, args)?;
        println!(
            "  addition, {:<9} {}: {:>7.2} µs/task  (ours {:.2} µs/task: {:.2}x bare)",
            settings.allocator(),
            settings.metering(),
            micros(bare),
            micros(ours),
            ratio(ours, bare)
        );
    }
    Ok(())
}

/// `fib` with neither fuel nor epoch interruption, each alone, and both, each
/// beside the run of ours it compares with (ours always checks the epoch).
fn compare_fib(args: &BenchArgs, one_thread: &tokio::runtime::Runtime, ours: &Figures) -> anyhow::Result<()> {
    let fib_args = format!(r#"{{"n":{}}}"#, args.fib);
    let on_demand = |fuel, epoch| BareSettings { fuel, epoch, pooling: false };
    let variants = [
        (on_demand(false, false), None),
        (on_demand(false, true), Some(("no fuel", ours.unfueled))),
        (on_demand(true, false), Some(("fuel", ours.fueled))),
        (on_demand(true, true), Some(("fuel", ours.fueled))),
    ];
    for (settings, ours_beside) in variants {
        let bare = bare_fib(&BareHost::new(settings)?, one_thread, args, &fib_args)?;
        let beside = match ours_beside {
            Some((label, ours_fib)) => format!("; ours, {label}: {:.2}x", ratio(ours_fib, ours.native)),
            None => String::new(),
        };
        println!(
            "  fib, {:<18} {:>8.3} ms  ({:.2}x native{beside})",
            format!("{}:", settings.metering()),
            millis(bare),
            ratio(bare, ours.native),
        );
    }
    Ok(())
}

async fn load(runtime: &Runtime, path: &str) -> anyhow::Result<JobComponent> {
    Ok(runtime.load(&std::fs::read(path)?).await?)
}

fn input(runtime: &Runtime, job: &JobComponent, i: u32, args: &str) -> TaskInput {
    TaskInput {
        task_id: i.to_string(),
        attempt: 1,
        args: args.to_owned(),
        limits: runtime.task_limits(job),
        children: Arc::new(RecordingQueue::default()),
        progress: Arc::new(crate::runtime::NoProgress),
        egress: crate::egress::Grant::default(),
        secrets: Default::default(),
    }
}

/// The same code as the `fib` example, compiled natively.
#[inline(never)]
fn fib(n: u32) -> u64 {
    if n < 2 { u64::from(n) } else { fib(n - 1) + fib(n - 2) }
}

/// µs per `addition` task on `host`, on one thread, measured as ours is.
fn bare_per_task(host: &BareHost, one_thread: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<Duration> {
    let job = host.load(crate::examples::ADDITION)?;
    try_median(args.rounds, || {
        let start = Instant::now();
        one_thread.block_on(async {
            for _ in 0..args.tasks {
                host.call(&job, ADDITION_ARGS).await?;
            }
            anyhow::Ok(())
        })?;
        Ok(start.elapsed() / args.tasks)
    })
}

/// The wall time of one `fib` task on `host` (instantiate + call), measured as ours is.
fn bare_fib(
    host: &BareHost,
    one_thread: &tokio::runtime::Runtime,
    args: &BenchArgs,
    fib_args: &str,
) -> anyhow::Result<Duration> {
    let job = host.load(crate::examples::FIB)?;
    try_median(args.rounds, || one_thread.block_on(host.call(&job, fib_args)))
}

fn median(rounds: u32, mut measure: impl FnMut() -> Duration) -> Duration {
    middle((0..rounds.max(1)).map(|_| measure()).collect())
}

/// [`median`] of a measure that may fail; the first failure ends it.
fn try_median(rounds: u32, mut measure: impl FnMut() -> anyhow::Result<Duration>) -> anyhow::Result<Duration> {
    Ok(middle((0..rounds.max(1)).map(|_| measure()).collect::<anyhow::Result<_>>()?))
}

fn middle(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
