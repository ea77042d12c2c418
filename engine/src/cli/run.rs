//! `wasmjob run`: one task of one component, printed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::egress::AllowList;
use crate::runtime::{ChildRequest, RecordingQueue, Runtime, RuntimeConfig, TaskInput, TaskReport, escape_controls};
use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::args::{EgressArgs, parse_duration, parse_size, task_args};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job component (.wasm).
    component: PathBuf,
    /// The task's args, a JSON object.
    #[arg(long)]
    args: Option<String>,
    /// One arg as key=value (repeatable); the value is JSON if it parses, else a string.
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    arg: Vec<String>,
    /// Fuel budget (default: the job's, else the engine's).
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline, such as 5s (default: the job's, else 30s).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Memory cap, such as 64MiB (default: the job's, else 64MiB).
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Let the task send HTTP requests to HOST: `[scheme://]host[:port]`,
    /// `*.example.com` for subdomains (repeatable; default: nowhere).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_host: Vec<String>,
    /// A secret the task may read, if its job declares NAME (repeatable).
    /// The value is not printed; pass `NAME` alone to read it from the
    /// environment variable of that name instead of the command line.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secret: Vec<String>,
    #[command(flatten)]
    egress: EgressArgs,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    job: &'a str,
    version: &'a str,
    task_id: &'a str,
    #[serde(flatten)]
    report: &'a TaskReport,
    queued: Vec<Child>,
}

#[derive(Serialize)]
struct Child {
    id: String,
    #[serde(flatten)]
    request: ChildRequest,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let task_args = task_args(args.args.as_deref(), &args.arg)?;
    let bytes = std::fs::read(&args.component).with_context(|| format!("cannot read {}", args.component.display()))?;
    let config = RuntimeConfig {
        egress: args.egress.clone().into(),
        cache_dir: super::args::user_cache_dir(),
        ..RuntimeConfig::isolated()
    };
    let runtime = Runtime::new(config)?;
    let job = runtime.load(&bytes).await.with_context(|| format!("{} was rejected", args.component.display()))?;

    // What the server would apply to a task of the default tenant: its
    // quotas cap the limits, and the tree caps bound what the task queues.
    let mut limits = runtime.task_limits(&job);
    limits.fuel = args.fuel.unwrap_or(limits.fuel);
    limits.timeout = args.timeout.unwrap_or(limits.timeout);
    limits.memory_bytes = args.memory.unwrap_or(limits.memory_bytes);
    let quotas = crate::tenant::Quotas {
        allowed_hosts: AllowList::parse(&args.allow_host)?,
        ..crate::tenant::Quotas::default()
    };
    let limits = quotas.cap(limits);

    let task_id = "run-1".to_owned();
    let (max_children, refusal) = crate::queue::TreeCaps::default().for_root(&task_id);
    let children = Arc::new(RecordingQueue::capped(max_children, refusal));
    let input = TaskInput {
        task_id: task_id.clone(),
        attempt: 1,
        args: task_args,
        limits,
        children: children.clone(),
        progress: std::sync::Arc::new(crate::runtime::NoProgress),
        egress: quotas.grant(job.metadata().allowed_hosts.as_ref()),
        secrets: secrets(&args.secret)?,
    };
    let report = runtime.run(&job, input).await;
    let queued: Vec<Child> = children.children().into_iter().map(|(id, request)| Child { id, request }).collect();

    if args.json {
        let report =
            Report { job: &job.metadata().name, version: job.hash(), task_id: &task_id, report: &report, queued };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&job.metadata().name, &report, &queued);
    }
    Ok(if report.outcome.is_success() { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_TASK_FAILED) })
}

/// `NAME=VALUE` or `NAME` (read from the environment), each name checked.
fn secrets(given: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut secrets = HashMap::new();
    for text in given {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, value.to_owned()),
            None => (
                text.as_str(),
                std::env::var(text).with_context(|| format!("--secret {text}: no environment variable `{text}`"))?,
            ),
        };
        crate::secret::validate_secret_name(name).with_context(|| format!("--secret {name}"))?;
        crate::secret::validate_value(&value).with_context(|| format!("--secret {name}"))?;
        secrets.insert(name.to_owned(), value);
    }
    Ok(secrets)
}

fn print_text(job: &str, report: &TaskReport, queued: &[Child]) {
    // Everything the job produced is escaped: it never reaches a terminal raw.
    let safe = |text: &str| escape_controls(text).into_owned();
    if let crate::runtime::Outcome::Success { result } = &report.outcome {
        println!("{}", safe(result));
    }
    eprintln!("job:      {job}");
    eprintln!("outcome:  {} ({})", report.outcome.class(), safe(&report.outcome.describe()));
    eprintln!("fuel:     {}", report.fuel_consumed);
    eprintln!("time:     {:.3} ms", report.wall_time.as_secs_f64() * 1e3);
    if report.http.requests > 0 {
        let http = &report.http;
        eprintln!(
            "http:     {} requests, {} B sent, {} B received",
            http.requests, http.bytes_sent, http.bytes_received
        );
    }
    if !queued.is_empty() {
        eprintln!("queued ({}, not run):", queued.len());
        for child in queued {
            eprintln!(
                "  {}  {} {}  from_task={}",
                child.id,
                safe(&child.request.job),
                safe(&child.request.args),
                child.request.from_task
            );
        }
    }
    if !report.log.is_empty() {
        eprintln!("log:");
        for line in report.log.lines() {
            eprintln!("  {}", safe(line));
        }
    }
}
