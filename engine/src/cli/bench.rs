//! `wasmjob bench`: what the sandbox costs.
//!
//! 1. Per-task overhead of the trivial `addition` job (fresh instance, call,
//!    drop, fuel on): µs per task on one thread, and tasks/s on all cores.
//! 2. A compute-heavy job (recursive `fib`) in the sandbox with fuel on, with
//!    fuel off, and the same Rust code run natively, with the ratios.
//!
//! Every figure is the median of several rounds. Run it on a release build:
//! `cargo run --release -- bench`.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::{JobComponent, RecordingQueue, Runtime, RuntimeConfig, TaskInput};
use clap::Args;

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
                let report = metered.run(&addition, input(&metered, &addition, i, r#"{"a":1,"b":2}"#)).await;
                assert!(report.outcome.is_success(), "{report:?}");
            }
        });
        start.elapsed() / args.tasks
    });
    println!("  one thread:   {:.2} µs/task", micros(per_task));

    let throughput = median(args.rounds, || {
        let start = Instant::now();
        let total = args.tasks * 4;
        all_cores.block_on(async {
            let mut workers = tokio::task::JoinSet::new();
            for w in 0..cores as u32 {
                let (runtime, job) = (metered.clone(), addition.clone());
                let per_worker = total / cores as u32;
                workers.spawn(async move {
                    for i in 0..per_worker {
                        let report =
                            runtime.run(&job, input(&runtime, &job, w * per_worker + i, r#"{"a":1,"b":2}"#)).await;
                        assert!(report.outcome.is_success());
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        });
        start.elapsed() / total
    });
    println!("  {cores} cores:      {:.0} tasks/s", 1.0 / throughput.as_secs_f64());

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
    Ok(ExitCode::SUCCESS)
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
    }
}

/// The same code as the `fib` example, compiled natively.
#[inline(never)]
fn fib(n: u32) -> u64 {
    if n < 2 { u64::from(n) } else { fib(n - 1) + fib(n - 2) }
}

fn median(rounds: u32, mut measure: impl FnMut() -> Duration) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds.max(1)).map(|_| measure()).collect();
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
