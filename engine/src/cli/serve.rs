//! `wasmjob serve`: an engine node on the embedded SQLite store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::node::{Node, NodeConfig};
use crate::task::QueueOptions;
use crate::tenant::DEFAULT_TENANT;
use clap::Args;
use tokio::sync::watch;

use super::args::parse_duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Register every component (.wasm) in this directory at start.
    #[arg(long)]
    jobs: Option<PathBuf>,
    /// Tasks run at once (default: 16 per core).
    #[arg(long)]
    concurrency: Option<usize>,
    /// How long running tasks may finish after Ctrl-C or SIGTERM.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    grace: Duration,
    /// Also survive power loss (an fsync per group commit).
    #[arg(long)]
    fsync: bool,
    /// Register the example jobs and run a few tasks to show the engine working.
    #[arg(long)]
    demo: bool,
}

/// Where the engine keeps its data.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// The data directory: the SQLite store and the compile cache.
    #[arg(long = "data", env = "WASMJOB_DATA", default_value = "wasmjob-data")]
    pub dir: PathBuf,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = NodeConfig::new(&args.data.dir);
    if let Some(concurrency) = args.concurrency {
        config.concurrency = concurrency.max(1);
    }
    config.grace = args.grace;
    if args.fsync {
        config.durability = crate::store::sqlite::Durability::Full;
    }
    let node = Node::open(config, true).await?;
    tracing::info!(data = %args.data.dir.display(), "store open");
    if let Some(dir) = &args.jobs {
        for (path, result) in node.registry.register_dir(DEFAULT_TENANT, dir).await? {
            match result {
                Ok(name) => tracing::info!(job = %name, path = %path.display(), "registered"),
                Err(e) => tracing::error!(path = %path.display(), error = %e, "refused"),
            }
        }
    }
    if args.demo {
        for path in [
            crate::examples::ADDITION,
            crate::examples::FAN_OUT,
            crate::examples::NIGHTLY_REPORT,
            crate::examples::EXCLUSIVE,
            crate::examples::FLAKY,
        ] {
            let job = node.registry.register(DEFAULT_TENANT, &std::fs::read(path)?, usize::MAX).await?;
            tracing::info!(job = %job.metadata().name, version = &job.hash()[..12], "registered");
        }
    }

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop.send(true);
    });
    let serving = node.serve(shutdown);
    if args.demo {
        let demo = demo(&node);
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => return result.map(|()| ExitCode::SUCCESS),
            result = demo => result?,
        }
        println!("The engine keeps serving (Ctrl-C to stop).");
        serving.await?;
    } else {
        serving.await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Queues an addition and a fan-out, and prints how they went.
async fn demo(node: &Node) -> anyhow::Result<()> {
    let options = QueueOptions::default();
    let id = node.queue.queue(DEFAULT_TENANT, "addition", r#"{"a": 1, "b": 2}"#, &options, None).await?;
    let task = node.queue.wait(&id, Duration::from_secs(30)).await?.expect("the task exists");
    println!(
        "demo: task {id} addition(a=1, b=2) -> {} = {}",
        task.state.as_str(),
        task.result.as_deref().unwrap_or("-")
    );
    let id = node.queue.queue(DEFAULT_TENANT, "fan-out", r#"{"n": 3}"#, &options, None).await?;
    let task = node.queue.wait(&id, Duration::from_secs(30)).await?.expect("the task exists");
    println!("demo: task {id} fan-out(n=3) -> {} = {}", task.state.as_str(), task.result.as_deref().unwrap_or("-"));
    let children: Vec<String> = serde_json::from_str(task.result.as_deref().unwrap_or("[]"))?;
    for child in children {
        let child = node.queue.wait(&child, Duration::from_secs(30)).await?.expect("the child exists");
        println!(
            "demo:   child {} {} from_task={} -> {} = {}",
            child.id,
            child.args,
            child.from_task.as_deref().unwrap_or("-"),
            child.state.as_str(),
            child.result.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
