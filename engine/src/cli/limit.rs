//! `wasmjob limit`: the limits a tenant sets on its queues (how many run at
//! once, which goes first) and its jobs (how many run at once, how many
//! start per period), cluster-wide ([`crate::limits`]).

use std::process::ExitCode;

use clap::Subcommand;

use super::args::parse_duration;
use super::client::{Client, ServerArgs};
use super::remote::print_json;
use crate::wire::{JobLimits, JobLimitsOf, LimitList, QueueLimits, QueueLimitsOf, Rate};

#[derive(Debug, Subcommand)]
pub enum LimitCommand {
    /// List the tenant's queues and jobs with limits.
    List,
    /// Set a queue's limits (replacing any), or clear them.
    Queue {
        /// The queue's name.
        name: String,
        /// Most of its tasks running at once across the cluster (0 pauses it).
        #[arg(long)]
        max_running: Option<u32>,
        /// Its due tasks go before those of queues of a lower priority (default 0).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Remove the queue's limits instead.
        #[arg(long, conflicts_with_all = ["max_running", "priority"])]
        clear: bool,
    },
    /// Set a job's limits (replacing any), or clear them.
    Job {
        /// The job's name.
        name: String,
        /// Most of its tasks running at once across the cluster.
        #[arg(long)]
        max_concurrency: Option<u32>,
        /// Most of its tasks started per period across the cluster, as
        /// TASKS/PERIOD, such as `10/1s` or `100/1h`.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<Rate>,
        /// Remove the job's limits instead.
        #[arg(long, conflicts_with_all = ["max_concurrency", "rate"])]
        clear: bool,
    },
}

/// Reads `TASKS/PERIOD` (`10/1s`).
fn parse_rate(text: &str) -> Result<Rate, String> {
    let (tasks, period) = text.split_once('/').ok_or_else(|| format!("`{text}` is not TASKS/PERIOD, such as 10/1s"))?;
    let tasks = tasks.trim().parse::<u32>().map_err(|e| format!("`{tasks}` is not a number of tasks: {e}"))?;
    let per_ms = u64::try_from(parse_duration(period.trim())?.as_millis()).unwrap_or(u64::MAX);
    let rate = Rate { tasks, per_ms };
    rate.check().map_err(|e| e.to_string())?;
    Ok(rate)
}

pub fn run(server: &ServerArgs, command: LimitCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    match command {
        LimitCommand::List => {
            let answer: LimitList = client.get("/v1/limits")?;
            if server.json {
                print_json(&answer);
                return Ok(ExitCode::SUCCESS);
            }
            for QueueLimitsOf { queue, limits } in &answer.queues {
                println!("queue {queue:<32} {}", describe_queue(limits));
            }
            for JobLimitsOf { job, limits } in &answer.jobs {
                println!("job   {job:<32} {}", describe_job(limits));
            }
        }
        LimitCommand::Queue { name, clear: true, .. } => {
            crate::task::check_queue(&name)?;
            client.delete::<()>(&format!("/v1/limits/queues/{name}"))?;
            println!("queue {name}: no limits");
        }
        LimitCommand::Queue { name, max_running, priority, clear: false } => {
            crate::task::check_queue(&name)?;
            let set: QueueLimitsOf =
                client.put(&format!("/v1/limits/queues/{name}"), &QueueLimits { max_running, priority })?;
            println!("queue {}: {}", set.queue, describe_queue(&set.limits));
        }
        LimitCommand::Job { name, clear: true, .. } => {
            crate::job::validate_name(&name)?;
            client.delete::<()>(&format!("/v1/limits/jobs/{name}"))?;
            println!("job {name}: no limits");
        }
        LimitCommand::Job { name, max_concurrency, rate, clear: false } => {
            crate::job::validate_name(&name)?;
            let set: JobLimitsOf =
                client.put(&format!("/v1/limits/jobs/{name}"), &JobLimits { max_concurrency, rate })?;
            println!("job {}: {}", set.job, describe_job(&set.limits));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_queue(limits: &QueueLimits) -> String {
    let running = limits.max_running.map_or("no limit".to_owned(), |n| format!("at most {n} running"));
    format!("{running}, priority {}", limits.priority)
}

fn describe_job(limits: &JobLimits) -> String {
    let running = limits.max_concurrency.map_or("no limit".to_owned(), |n| format!("at most {n} running"));
    match limits.rate {
        Some(rate) => format!(
            "{running}, at most {} started per {}",
            rate.tasks,
            humantime::format_duration(std::time::Duration::from_millis(rate.per_ms))
        ),
        None => running,
    }
}
