//! `wasmjob inspect`: a component's metadata.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::job::JobKind;
use crate::runtime::{Runtime, RuntimeConfig};
use anyhow::Context as _;
use chrono::Utc;
use clap::Args;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The job component (.wasm).
    component: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.component).with_context(|| format!("cannot read {}", args.component.display()))?;
    let runtime =
        Runtime::new(RuntimeConfig { cache_dir: super::args::user_cache_dir(), ..RuntimeConfig::isolated() })?;
    let job = runtime.load(&bytes).await.with_context(|| format!("{} was rejected", args.component.display()))?;
    let metadata = job.metadata();
    let next_due = if metadata.is_periodic() {
        // As if it had just run: when would it be due next?
        let now = Utc::now();
        let due = runtime.is_due(&job, now, now).await?;
        // A job may answer any `next-run-in`: past the calendar's end, say so.
        chrono::Duration::from_std(due.next_run_in).ok().and_then(|d| now.checked_add_signed(d))
    } else {
        None
    };
    if args.json {
        let value = serde_json::json!({
            "version": job.hash(),
            "contract": job.contract(),
            "metadata": metadata,
            "next_due": next_due,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:       {}", metadata.name);
    println!("version:    {}", job.hash());
    println!("contract:   wasmjob:job@{}", job.contract());
    match &metadata.kind {
        JobKind::Regular => println!("kind:       regular"),
        JobKind::Periodic(schedule) => {
            println!("kind:       periodic, every {}", humantime::format_duration(schedule.run_every));
            if let Some(anchor) = schedule.anchor {
                println!("anchor:     {anchor}");
            }
        }
        JobKind::Cron(cron) => println!("kind:       periodic, cron \"{}\" in {}", cron.expression, cron.zone),
    }
    if let Some(next_due) = next_due {
        println!("next due:   {next_due} (if it ran now)");
    }
    println!("overlap:    {:?}", metadata.overlap);
    match metadata.expiry {
        Some(expiry) => println!("expiry:     {}", humantime::format_duration(expiry)),
        None => println!("expiry:     never"),
    }
    let limits = runtime.task_limits(&job);
    println!(
        "limits:     fuel {}, timeout {}, memory {} MiB",
        limits.fuel,
        humantime::format_duration(limits.timeout),
        limits.memory_bytes >> 20
    );
    let retry = metadata.retry;
    println!(
        "retries:    {} (backoff {} .. {}, on trap: {}, on timeout: {})",
        retry.max_retries,
        humantime::format_duration(retry.initial_backoff),
        humantime::format_duration(retry.max_backoff),
        retry.retry_on_trap,
        retry.retry_on_timeout
    );
    match &metadata.allowed_hosts {
        None => println!("egress:     whatever its tenant allows"),
        Some(hosts) if hosts.is_empty() => println!("egress:     none"),
        Some(hosts) => println!("egress:     {} (within its tenant's allow-list)", hosts.to_strings().join(", ")),
    }
    if !metadata.secrets.is_empty() {
        println!("secrets:    {}", metadata.secrets.join(", "));
    }
    if !metadata.doc.is_empty() {
        println!("doc ({:?}):\n{}", metadata.doc_syntax, metadata.doc);
    }
    Ok(ExitCode::SUCCESS)
}
