//! One engine node: the store, the catalog (registry, tenants, tokens), the
//! queue, the workers and the scheduler, wired together. `wasmjob serve`
//! runs one.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::queue::{Queue, TreeCaps};
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::scheduler::Scheduler;
use crate::signals::Signals;
use crate::store::Store;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::{Durability, SqliteStore};
use crate::tenant::{Quotas, Tenants};
use crate::upload::Uploads;
use crate::worker::Workers;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Holds `wasmjob.db` (the SQLite store) and `cache/` (compiled
    /// components). Default `./wasmjob-data`.
    pub data_dir: PathBuf,
    /// Tasks run at once. Default: 16 per core. Tasks are short and yield
    /// to the executor while they wait (on the host or at each epoch tick),
    /// so many in flight hide the store's round trips without starving
    /// anyone; memory per task is capped by its limit.
    pub concurrency: usize,
    pub durability: Durability,
    /// `postgres://...` to use a PostgreSQL store instead of SQLite in the
    /// data dir. Default: none (SQLite).
    pub store_url: Option<String>,
    /// This node's name in leases. Default: random.
    pub node_id: Option<String>,
    pub runtime: RuntimeConfig,
    pub caps: TreeCaps,
    /// Quotas of tenants that do not override them.
    pub quotas: Quotas,
    /// How long running tasks may finish after a shutdown request. Default 10 s.
    pub grace: Duration,
    /// Uploads taken in and not yet compiled, at most; past it an upload
    /// is refused with `503 busy`. Default [`crate::upload::MAX_COMPILING`].
    pub max_compiling: usize,
    /// Workers lost under one task after which it is quarantined (at least
    /// 1). Default [`crate::retry::POISON_AFTER`].
    pub poison_after: u32,
    /// The named queues this node's workers claim from. Default: every
    /// queue (`None`).
    pub queues: Option<Vec<String>>,
}

/// Instances kept beside the running tasks' for control calls (`metadata`
/// at upload, `is-due`, `overlap-key`). Default 64.
const CONTROL_INSTANCES: usize = 64;

impl NodeConfig {
    /// The defaults, with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            runtime: RuntimeConfig { cache_dir: Some(data_dir.join("cache")), ..RuntimeConfig::default() },
            data_dir,
            concurrency: 16 * cores,
            durability: Durability::default(),
            store_url: None,
            node_id: None,
            caps: TreeCaps::default(),
            quotas: Quotas::default(),
            grace: Duration::from_secs(10),
            max_compiling: crate::upload::MAX_COMPILING,
            poison_after: crate::retry::POISON_AFTER,
            queues: None,
        }
    }
}

/// A running engine node's parts.
pub struct Node {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    /// Uploads compiling in the background.
    pub uploads: Arc<Uploads>,
    pub queue: Arc<Queue>,
    pub tenants: Arc<Tenants>,
    pub auth: Arc<Auth>,
    pub runtime: Arc<Runtime>,
    pub clock: Arc<dyn Clock>,
    pub signals: Arc<Signals>,
    /// This node's task counters.
    pub metrics: Arc<Metrics>,
    /// This node's name in leases and schedule claims.
    pub id: String,
    catalog: Arc<Catalog>,
    config: NodeConfig,
    /// With SQLite, held while this process serves the data dir: only one
    /// worker node may, so that at start every `started` task belongs to a
    /// dead one.
    _serving: Option<std::fs::File>,
}

impl Node {
    /// Opens the store and loads the registry, with the store's clock: the
    /// database's for PostgreSQL, the system's for SQLite.
    ///
    /// With SQLite and `serve`, takes the data dir's lock (failing if another
    /// node serves it) and rescues the tasks a dead predecessor left started.
    /// With PostgreSQL other nodes may be alive: their tasks are rescued only
    /// when their leases run out.
    pub async fn open(config: NodeConfig, serve: bool) -> anyhow::Result<Self> {
        Self::open_inner(config, serve, None).await
    }

    /// [`Node::open`] with a given clock (for tests).
    pub async fn open_with_clock(config: NodeConfig, serve: bool, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::open_inner(config, serve, Some(clock)).await
    }

    async fn open_inner(config: NodeConfig, serve: bool, clock: Option<Arc<dyn Clock>>) -> anyhow::Result<Self> {
        // The store holds tenants' secrets: the directory is the owner's alone.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let signals = Arc::new(Signals::default());
        let (store, clock, serving): (Arc<dyn Store>, Arc<dyn Clock>, _) = match &config.store_url {
            Some(url) if !url.starts_with("postgres://") && !url.starts_with("postgresql://") => {
                anyhow::bail!("unsupported store `{url}`: use postgres://... (or no --store for SQLite)")
            }
            Some(url) => {
                let store = PostgresStore::connect(url, signals.clone())
                    .await
                    .with_context(|| "cannot open the PostgreSQL store".to_owned())?;
                let clock = clock.unwrap_or_else(|| store.clock());
                (Arc::new(store), clock, None)
            }
            None => {
                let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
                let serving = if serve { Some(lock_data_dir(&config.data_dir)?) } else { None };
                let store = Arc::new(SqliteStore::open(&config.data_dir.join("wasmjob.db"), config.durability)?);
                if serve {
                    let rescued = store.rescue(clock.now_millis(), true, config.poison_after.max(1)).await?.len();
                    if rescued > 0 {
                        tracing::warn!(rescued, "rescued tasks left started by a node that died");
                    }
                }
                (store, clock, serving)
            }
        };
        // Every task running holds an instance: the pool has room for all of
        // them, plus the control calls (uploads, the scheduler) beside.
        let mut runtime_config = config.runtime.clone();
        let needed = u32::try_from(config.concurrency.saturating_add(CONTROL_INSTANCES)).unwrap_or(u32::MAX);
        runtime_config.max_instances = runtime_config.max_instances.max(needed);
        let runtime = Arc::new(Runtime::new(runtime_config)?);
        let registry = Arc::new(Registry::open(runtime.clone(), store.clone(), clock.clone(), signals.clone()).await?);
        let tenants = Arc::new(Tenants::open(store.clone(), clock.clone(), config.quotas.clone()).await?);
        let auth = Arc::new(Auth::open(store.clone(), clock.clone()).await?);
        let queue = Arc::new(Queue::new(
            store.clone(),
            registry.clone(),
            runtime.clone(),
            clock.clone(),
            config.caps,
            tenants.clone(),
            signals.clone(),
        ));
        let catalog = Arc::new(Catalog {
            store: store.clone(),
            registry: registry.clone(),
            tenants: tenants.clone(),
            auth: auth.clone(),
            signals: signals.clone(),
        });
        let id = config.node_id.clone().unwrap_or_else(|| format!("{:016x}", retry_free_random()));
        let uploads = Arc::new(Uploads::new(
            registry.clone(),
            runtime.clone(),
            store.clone(),
            clock.clone(),
            queue.clone(),
            signals.clone(),
            config.max_compiling,
        ));
        Ok(Self {
            store,
            registry,
            uploads,
            queue,
            tenants,
            auth,
            runtime,
            clock,
            signals,
            metrics: Arc::default(),
            id,
            catalog,
            config,
            _serving: serving,
        })
    }

    /// Runs the catalog, the workers and the scheduler until `shutdown`
    /// turns true, then shuts down gracefully.
    pub async fn serve(&self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        tracing::info!(node = %self.id, concurrency = self.config.concurrency, "serving");
        let workers = Arc::new(Workers::new(
            self.id.clone(),
            self.config.concurrency,
            self.store.clone(),
            self.registry.clone(),
            self.runtime.clone(),
            self.queue.clone(),
            self.tenants.clone(),
            self.metrics.clone(),
            self.signals.clone(),
            self.clock.clone(),
            self.config.poison_after.max(1),
            self.config.queues.clone(),
        ));
        let cataloging = tokio::spawn(self.catalog.clone().run(shutdown.clone()));
        let scheduling = tokio::spawn(Arc::new(self.scheduler()).run(shutdown.clone()));
        let result = workers.run(shutdown, self.config.grace).await;
        scheduling.await?;
        cataloging.await?;
        result
    }

    /// Runs the catalog and the scheduler, but no workers, until `shutdown`
    /// turns true: this node queues periodic tasks and runs none
    /// (`wasmjob bench-schedule` measures the scheduler alone this way).
    pub async fn schedule(&self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let cataloging = tokio::spawn(self.catalog.clone().run(shutdown.clone()));
        Arc::new(self.scheduler()).run(shutdown).await;
        cataloging.await?;
        Ok(())
    }

    /// Brings this node's caches of jobs, tenants and tokens up to date
    /// with the store now (serving does so continuously).
    pub async fn refresh(&self) -> Result<(), crate::store::StoreError> {
        self.catalog.refresh().await.map(|_| ())
    }

    /// The node's scheduler (tests drive its `tick` by hand).
    pub fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            self.store.clone(),
            self.registry.clone(),
            self.runtime.clone(),
            self.queue.clone(),
            self.clock.clone(),
            self.signals.clone(),
            self.metrics.clone(),
            self.id.clone(),
        )
    }
}

/// Only one node may serve a SQLite data dir: the lock is held while the
/// returned file is open.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::File::create(dir.join("serve.lock"))?;
    file.try_lock().map_err(|_| anyhow::anyhow!("another `wasmjob serve` is already serving {}", dir.display()))?;
    Ok(file)
}

fn retry_free_random() -> u64 {
    (crate::retry::jitter() * u64::MAX as f64) as u64 ^ u64::from(std::process::id())
}
