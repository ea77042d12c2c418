//! `wasmjob schedule`: a tenant's schedules made as data, which queue a job
//! with given args on a cron expression or an interval.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::args::parse_duration;
use super::client::{Client, ServerArgs};
use super::remote::{or_dash, print_json};
use crate::wire::{Schedule, ScheduleList, ScheduleRequest};

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Make a schedule, or replace the one of that name.
    Set(SetArgs),
    /// List the tenant's schedules.
    List,
    /// Show one schedule.
    Show { name: String },
    /// Stop a schedule queueing tasks until it is resumed.
    Pause { name: String },
    /// Resume a paused schedule from its next time after now.
    Resume { name: String },
    /// Delete a schedule (the tasks it queued stay).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The schedule's name: letters, digits, `-`, `_` and `.`.
    name: String,
    /// The job each tick queues.
    #[arg(long)]
    job: String,
    /// The args of every task, a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// A cron expression: five fields, or six with seconds first, such as
    /// "0 3 * * MON-FRI".
    #[arg(long, conflicts_with = "every", required_unless_present = "every")]
    cron: Option<String>,
    /// The IANA time zone the cron expression is read in. Default UTC.
    #[arg(long, requires = "cron")]
    zone: Option<String>,
    /// An interval instead, such as 10m (at least 1s).
    #[arg(long, value_parser = parse_duration)]
    every: Option<Duration>,
    /// Make it paused.
    #[arg(long)]
    paused: bool,
    /// The named queue its tasks go to. Default `default`.
    #[arg(long)]
    queue: Option<String>,
}

pub fn schedule(server: &ServerArgs, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let shown = |schedule: Schedule| {
        if server.json {
            print_json(&schedule);
        } else {
            print_schedule(&schedule);
        }
    };
    match command {
        ScheduleCommand::Set(args) => {
            checked(&args.name)?;
            let args_json = serde_json::from_str(&args.args)
                .map_err(|e| anyhow::anyhow!("--args is not JSON ({e}): give an object such as '{{\"n\": 1}}'"))?;
            let every_ms = args.every.map(|every| u64::try_from(every.as_millis()).unwrap_or(u64::MAX));
            let request = ScheduleRequest {
                job: args.job,
                args: args_json,
                cron: args.cron,
                zone: args.zone,
                every_ms,
                paused: args.paused,
                queue: args.queue,
            };
            shown(client.put(&format!("/v1/schedules/{}", args.name), &request)?);
        }
        ScheduleCommand::List => {
            let answer: ScheduleList = client.get("/v1/schedules")?;
            if server.json {
                print_json(&answer);
            } else {
                for schedule in &answer.schedules {
                    print_schedule(schedule);
                }
            }
        }
        ScheduleCommand::Show { name } => {
            checked(&name)?;
            shown(client.get(&format!("/v1/schedules/{name}"))?);
        }
        ScheduleCommand::Pause { name } => {
            checked(&name)?;
            shown(client.post(&format!("/v1/schedules/{name}/pause"), &())?);
        }
        ScheduleCommand::Resume { name } => {
            checked(&name)?;
            shown(client.post(&format!("/v1/schedules/{name}/resume"), &())?);
        }
        ScheduleCommand::Delete { name } => {
            checked(&name)?;
            client.delete::<()>(&format!("/v1/schedules/{name}"))?;
            println!("schedule {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checked here too, so that a name is never read as a path.
fn checked(name: &str) -> anyhow::Result<()> {
    crate::job::validate_name(name).map_err(|e| anyhow::anyhow!(e.to_string().replace("job's name", "schedule's name")))
}

fn print_schedule(schedule: &Schedule) {
    let when = match (&schedule.cron, &schedule.zone, schedule.every_ms) {
        (Some(cron), zone, _) => format!("cron \"{cron}\" in {}", zone.as_deref().unwrap_or("UTC")),
        (None, _, Some(every)) => format!("every {}", humantime::format_duration(Duration::from_millis(every))),
        _ => "-".into(),
    };
    let next = if schedule.paused { "paused".into() } else { or_dash(schedule.next_run_at.map(|at| at.to_rfc3339())) };
    println!(
        "{:<24} {:<24} {when}  next {next}  last {}  args {}",
        or_dash(Some(&schedule.name)),
        or_dash(Some(&schedule.job)),
        or_dash(schedule.last_run_at.map(|at| at.to_rfc3339())),
        or_dash(Some(&schedule.args)),
    );
}
