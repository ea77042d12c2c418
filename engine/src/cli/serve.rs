//! `wasmjob serve`: an engine node on the embedded SQLite store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::node::{Node, NodeConfig};
use crate::task::QueueOptions;
use crate::tenant::DEFAULT_TENANT;
use clap::Args;
use tokio::sync::watch;

use crate::api::{ApiState, router};

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
    /// The store: `postgres://...` for several nodes on one PostgreSQL
    /// (default: SQLite in the data dir).
    #[arg(long, env = "WASMJOB_STORE")]
    store: Option<String>,
    /// This node's name in leases (default: random).
    #[arg(long)]
    node_id: Option<String>,
    /// Also survive power loss (an fsync per group commit; SQLite).
    #[arg(long)]
    fsync: bool,
    /// Register the example jobs and run a few tasks to show the engine working.
    #[arg(long)]
    demo: bool,
    /// Where the HTTP API listens.
    #[arg(long, env = "WASMJOB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Largest component any tenant may upload, such as 256MiB (default
    /// 128MiB); each tenant's quota `max_component_bytes` is within it.
    #[arg(long, value_parser = super::args::parse_size)]
    max_component_size: Option<u64>,
    /// CPU time one compile of an uploaded component may take (default 120s).
    #[arg(long, value_parser = parse_duration)]
    compile_cpu: Option<Duration>,
    /// Memory one compile may use, such as 3GiB (the default).
    #[arg(long, value_parser = super::args::parse_size)]
    compile_memory: Option<u64>,
    /// Workers lost under one task (its node died or hung while running it)
    /// after which it is quarantined as `poisoned` instead of retried.
    #[arg(long, default_value_t = crate::retry::POISON_AFTER, value_parser = clap::value_parser!(u32).range(1..))]
    poison_after: u32,
    /// Claim tasks only from these named queues, such as `default,emails`
    /// (default: every queue).
    #[arg(long, value_delimiter = ',', value_parser = parse_queue)]
    queues: Option<Vec<String>>,
    /// The admin token (default: created at first start and printed once).
    #[arg(long, env = "WASMJOB_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[command(flatten)]
    egress: super::args::EgressArgs,
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
    // Compile uploads in a child process of this binary, under limits.
    config.runtime.compiler = std::env::current_exe().ok();
    if let Some(cpu) = args.compile_cpu {
        config.runtime.compile.cpu = cpu;
    }
    if let Some(memory) = args.compile_memory {
        config.runtime.compile.memory_bytes = memory;
    }
    if let Some(size) = args.max_component_size {
        config.runtime.limits.max_component_bytes = usize::try_from(size).unwrap_or(usize::MAX);
    }
    if let Some(concurrency) = args.concurrency {
        config.concurrency = concurrency.max(1);
    }
    config.grace = args.grace;
    config.poison_after = args.poison_after;
    config.queues = args.queues.clone();
    config.runtime.egress = args.egress.clone().into();
    config.store_url = args.store.clone();
    config.node_id = args.node_id.clone();
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

    let node = Arc::new(node);
    if let Some(admin) = node.auth.ensure_admin(args.admin_token.as_deref()).await? {
        println!("Created the admin token (shown once; keep it): {}", admin.token);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(address = %address, "HTTP API listening");

    let (stop, shutdown) = watch::channel(false);
    let api = router(ApiState { node: node.clone() });
    let mut api_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, api)
            .with_graceful_shutdown(async move {
                let _ = api_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    let stopping = node.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        // Compiles in flight are killed: an upload must not hold the node up.
        stopping.runtime.stop_compiling();
        let _ = stop.send(true);
        // Open event streams end, so that the API's graceful shutdown does
        // not wait for them.
        stopping.signals.events.stop();
    });
    let serving = node.serve(shutdown);
    if args.demo {
        let demo = demo(&node);
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => return result.map(|()| ExitCode::SUCCESS),
            result = demo => result?,
        }
        println!("The engine keeps serving on http://{} (Ctrl-C to stop).", args.listen);
        serving.await?;
    } else {
        serving.await?;
    }
    // Requests in flight (long waits included) get the grace period, no more.
    match tokio::time::timeout(args.grace, http).await {
        Ok(served) => served??,
        Err(_) => tracing::warn!("grace period over: dropped the HTTP requests still open"),
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

/// A queue's name, as `--queues` takes it.
fn parse_queue(name: &str) -> Result<String, String> {
    crate::task::check_queue(name).map(|()| name.to_owned()).map_err(|e| e.to_string())
}
