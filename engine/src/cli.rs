//! The `wasmjob` command line: its subcommands, one module each. Exit codes:
//! 0 success, 1 the task failed, 2 bad usage, 3 any other error (unreadable
//! or rejected component...).

mod args;
mod bench;
mod bench_api;
mod bench_bare;
mod bench_egress;
mod bench_queue;
mod bench_schedule;
mod client;
mod compile;
mod inspect;
mod limit;
mod remote;
mod run;
mod schedule;
mod serve;
mod usage;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The task ran and did not succeed.
pub const EXIT_TASK_FAILED: u8 = 1;
/// Anything else went wrong.
pub const EXIT_ERROR: u8 = 3;

/// wasmjob: a job engine whose jobs are WebAssembly components.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    server: client::ServerArgs,
    /// How the engine's own log lines (on stderr) are written: `text`, in
    /// colour only on a terminal, or `json`, one object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The format of the engine's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve: the workers, the scheduler and the HTTP API on the embedded SQLite store.
    Serve(serve::ServeArgs),
    /// Upload a job component to the server.
    Upload(remote::UploadArgs),
    /// List the tenant's jobs, regular and periodic apart.
    Jobs,
    /// Queue a task (and optionally wait for it).
    Queue(remote::QueueArgs),
    /// Show one task.
    Status(remote::TaskArgs),
    /// Wait for a task to end, then show it.
    Wait(remote::WaitArgs),
    /// List tasks, newest first.
    Tasks(remote::TasksArgs),
    /// Revoke a task (a queued one never runs, a running one is stopped), its whole tree, or a job's tasks.
    Revoke(remote::RevokeArgs),
    /// Print a task's log.
    Logs(remote::TaskArgs),
    /// A task and every task it queued (and they queued...), with their states.
    Tree(remote::TaskArgs),
    /// Put a failed or revoked task back in line for one more attempt.
    Retry(remote::TaskArgs),
    /// Print the tenant's task and job events as they happen (until interrupted).
    Watch(remote::WatchArgs),
    /// Manage tenants (admin).
    #[command(subcommand)]
    Tenant(remote::TenantCommand),
    /// Manage tokens (admin).
    #[command(subcommand)]
    Token(remote::TokenCommand),
    /// Manage the tenant's secrets, which jobs read by name (write-only).
    #[command(subcommand)]
    Secret(remote::SecretCommand),
    /// Limit the tenant's queues (tasks running at once, priority) and jobs
    /// (tasks running at once, tasks started per period), cluster-wide.
    #[command(subcommand)]
    Limit(limit::LimitCommand),
    /// Manage the tenant's schedules, which queue a job with given args on a
    /// cron expression or an interval.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Start a workflow (a chain, a group, a chord or stages of tasks) and follow it.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Print the HTTP API's OpenAPI document (what `/v1/openapi.json` serves), to generate a client offline.
    Openapi,
    /// Run one task of a job component and print its outcome.
    Run(run::RunArgs),
    /// Print a job component's metadata (and when a periodic job is next due).
    Inspect(inspect::InspectArgs),
    /// Measure the sandbox: per-task overhead and compute speed against native.
    Bench(bench::BenchArgs),
    /// Measure the HTTP API: two tenants' throughput, and fairness under a flood.
    BenchApi(bench_api::BenchApiArgs),
    /// Measure jobs waiting on the network at scale, and the egress hook's overhead.
    BenchEgress(bench_egress::BenchEgressArgs),
    /// Measure the durable queue: throughput and idle latency on SQLite.
    BenchQueue(bench_queue::BenchQueueArgs),
    /// Measure the periodic scheduler: lag, double and skipped ticks, and CPU, with thousands of jobs.
    BenchSchedule(bench_schedule::BenchScheduleArgs),
    /// Compile a component read on stdin, under limits (the engine's own child process).
    #[command(hide = true)]
    Compile(compile::CompileArgs),
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::serve(args)),
        Command::Upload(args) => remote::upload(&cli.server, args),
        Command::Jobs => remote::jobs(&cli.server),
        Command::Watch(args) => remote::watch(&cli.server, args),
        Command::Openapi => {
            // Into a pipe that closes early (`| head`) as well: no panic.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{}", crate::api::document().to_pretty_json()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Queue(args) => remote::queue(&cli.server, args),
        Command::Status(args) => remote::status(&cli.server, args),
        Command::Wait(args) => remote::wait(&cli.server, args),
        Command::Tasks(args) => remote::tasks(&cli.server, args),
        Command::Revoke(args) => remote::revoke(&cli.server, args),
        Command::Logs(args) => remote::logs(&cli.server, args),
        Command::Tree(args) => remote::tree(&cli.server, args),
        Command::Retry(args) => remote::retry(&cli.server, args),
        Command::Tenant(command) => remote::tenant(&cli.server, command),
        Command::Token(command) => remote::token(&cli.server, command),
        Command::Secret(command) => remote::secret(&cli.server, command),
        Command::Limit(command) => limit::run(&cli.server, command),
        Command::Schedule(command) => schedule::schedule(&cli.server, command),
        Command::Workflow(command) => workflow::workflow(&cli.server, command),
        Command::Run(args) => runtime.block_on(run::run(args)),
        Command::Inspect(args) => runtime.block_on(inspect::inspect(args)),
        Command::BenchApi(args) => runtime.block_on(bench_api::bench_api(args)),
        Command::BenchEgress(args) => runtime.block_on(bench_egress::bench_egress(args)),
        Command::BenchQueue(args) => runtime.block_on(bench_queue::bench_queue(args)),
        Command::BenchSchedule(args) => runtime.block_on(bench_schedule::bench_schedule(args)),
        Command::Compile(args) => Ok(compile::compile(args)),
        Command::Bench(args) => {
            drop(runtime);
            bench::bench(args)
        }
    }
}

/// Parses the process's arguments, sets up logging, runs the command and
/// turns errors into an exit code: the whole of `wasmjob`'s `main`.
pub fn run_from_args() -> ExitCode {
    let args = Cli::parse();
    // The scheduler logs every task it queues: at thousands a second, that
    // would be most of what `bench-schedule` measures (RUST_LOG overrides).
    let default_filter = if matches!(args.command, Command::BenchSchedule(_)) { "warn" } else { "info,wasmtime=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let lines = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => lines.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => lines.json().with_current_span(true).with_span_list(false).init(),
    }
    match main(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
