//! `wasmjob queue`, `status`, `tasks` and `jobs`: the task queue and the
//! registry from the command line, against the same store a `wasmjob serve`
//! uses.

use std::process::ExitCode;
use std::time::Duration;

use crate::job::JobKind;
use crate::node::{Node, NodeConfig};
use crate::store::{TaskFilter, TaskRecord, TaskState};
use crate::task::QueueOptions;
use crate::tenant::DEFAULT_TENANT;
use anyhow::bail;
use clap::Args;

use super::args::{parse_duration, task_args};
use super::serve::DataArgs;

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The job's name.
    job: String,
    /// The task's args, a JSON object.
    #[arg(long)]
    args: Option<String>,
    /// One arg as key=value (repeatable).
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    arg: Vec<String>,
    /// Do not start before this delay, such as 10s.
    #[arg(long, value_parser = parse_duration)]
    delay: Option<Duration>,
    /// Revoke the task if it has not started this long after it could.
    #[arg(long, value_parser = parse_duration)]
    expiry: Option<Duration>,
    /// Higher runs first.
    #[arg(long)]
    priority: Option<i32>,
    /// Overrides the job's maximum number of retries.
    #[arg(long)]
    max_retries: Option<u32>,
    /// Wait this long for the task to finish, and print it.
    #[arg(long, value_parser = parse_duration)]
    wait: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The task's id.
    id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Only tasks of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only tasks in this state (queued, started, retry, success, failure, revoked).
    #[arg(long)]
    state: Option<String>,
    /// How many (newest first).
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

async fn open(data: &DataArgs) -> anyhow::Result<Node> {
    Node::open(NodeConfig::new(&data.dir), false).await
}

pub async fn queue(args: QueueArgs) -> anyhow::Result<ExitCode> {
    let task_args = task_args(args.args.as_deref(), &args.arg)?;
    let node = open(&args.data).await?;
    let options =
        QueueOptions { expiry: args.expiry, delay: args.delay, priority: args.priority, max_retries: args.max_retries };
    let id = node.queue.queue(DEFAULT_TENANT, &args.job, &task_args, &options, None).await?;
    println!("{id}");
    if let Some(timeout) = args.wait {
        let task = node.queue.wait(&id, timeout).await?.expect("the task was just queued");
        print_task(&task);
        if task.state != TaskState::Success {
            return Ok(ExitCode::from(super::EXIT_TASK_FAILED));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let node = open(&args.data).await?;
    match node.store.task(&args.id).await? {
        Some(task) => print_task(&task),
        None => bail!("no task {}", args.id),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let state = match &args.state {
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| anyhow::anyhow!("unknown state `{s}`"))?),
        None => None,
    };
    let node = open(&args.data).await?;
    let filter = TaskFilter { job: args.job, state, limit: Some(args.limit), ..TaskFilter::default() };
    println!("{:>8}  {:<16} {:<8} {:>7}  {:<20} result/error", "id", "job", "state", "attempt", "reason");
    for t in node.store.list_tasks(filter).await? {
        let outcome = t.result.or(t.error).unwrap_or_default();
        println!(
            "{:>8}  {:<16} {:<8} {:>7}  {:<20} {}",
            t.id,
            t.job,
            t.state.as_str(),
            t.attempt,
            t.reason.unwrap_or_default(),
            outcome.chars().take(60).collect::<String>()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_task(task: &TaskRecord) {
    println!("{}", serde_json::to_string_pretty(task).expect("tasks serialize"));
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    data: DataArgs,
}

/// Lists the registered jobs, regular and periodic apart.
pub async fn jobs(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let node = open(&args.data).await?;
    println!("regular jobs:");
    for (name, job) in node.registry.regular(DEFAULT_TENANT) {
        let metadata = job.component.metadata();
        println!("  {name:<24} {}", metadata.doc.lines().next().unwrap_or(""));
    }
    println!("periodic jobs:");
    for (name, job) in node.registry.periodic(DEFAULT_TENANT) {
        let metadata = job.component.metadata();
        let every = match &metadata.kind {
            JobKind::Periodic(s) => humantime::format_duration(s.run_every).to_string(),
            JobKind::Regular => String::new(),
        };
        println!("  {name:<24} every {every:<10} {}", metadata.doc.lines().next().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}
