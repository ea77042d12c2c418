//! The job registry (pulsar's `JobRegistry`): each tenant's jobs by
//! lower-case name, each with its current version and any older version a
//! queued task still pins.
//!
//! Versioning: a task runs the version that was current when it was
//! *queued*. Its args were written for that version, and a retry reruns the
//! same code; uploading a new version affects only tasks queued afterwards.
//!
//! The registry is a cache of the store's `jobs`: a change made through
//! this node is in it at once; one made through another node arrives when
//! the catalog ([`crate::catalog`]) sees the store's job generation move
//! and calls [`Registry::refresh`] (at once on a notification, within
//! [`crate::catalog::CHECK`] otherwise).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::clock::Clock;
use crate::job::JobMetadata;
use crate::runtime::{JobComponent, LoadError, Runtime};
use crate::signals::Signals;
use crate::store::{JobRow, Millis, ScheduleRow, Store, StoreError};
use crate::tenant::QuotaExceeded;
use crate::wire::{Event, EventKind};

/// A registered job: its current version and when that was registered.
#[derive(Clone)]
pub struct RegisteredJob {
    pub component: JobComponent,
    pub registered_at: Millis,
}

/// Why a component could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Rejected(#[from] LoadError),
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node holds as many uploads waiting for their compile as it takes.
    #[error(
        "this node is compiling {0} uploads already (each held in memory until compiled): upload again once \
         one has ended"
    )]
    Busy(usize),
    /// The upload declared another name than its job's.
    #[error("the upload declares job `{declared}`, but its job is named `{named}`")]
    Misnamed { declared: String, named: String },
}

/// Whether the bytes being registered are in the store already (an
/// upload's), with the name the upload declared.
#[derive(Clone, Copy)]
enum Stored<'a> {
    No,
    Yes { declared: Option<&'a str> },
}

/// A job's key: its tenant and name.
type JobKey = (String, String);

/// Jobs by tenant and name, backed by the store.
pub struct Registry {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    signals: Arc<Signals>,
    current: RwLock<HashMap<JobKey, RegisteredJob>>,
    /// Jobs whose current version in the store is still compiling here (a
    /// refresh found them): their version, so that tasks of them can be
    /// held meanwhile ([`crate::queue`]'s held tasks).
    pending: RwLock<HashMap<JobKey, String>>,
    /// Every version loaded so far, by hash (the same bytes are the same
    /// code whichever tenant uploaded them).
    versions: Arc<RwLock<HashMap<String, JobComponent>>>,
    /// Versions compiled here since the worker's heartbeat last wrote them
    /// to the store ([`Registry::take_compiled`]), which counts the nodes
    /// ready to run each version.
    compiled: Arc<Mutex<Vec<String>>>,
    /// Versions being loaded in the background for a refresh, and versions
    /// the engine refused (never tried again).
    loading: Arc<Mutex<std::collections::HashSet<String>>>,
    refused: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Held while this node changes jobs, and while a refresh replaces the
    /// cache, so that a refresh never undoes a change made here.
    writes: tokio::sync::Mutex<()>,
    /// The store's job generation the cache was built from.
    generation: Mutex<Option<i64>>,
}

impl Registry {
    /// Loads every job the store knows, and gives periodic jobs from
    /// stores of earlier versions their schedules.
    pub async fn open(
        runtime: Arc<Runtime>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        signals: Arc<Signals>,
    ) -> anyhow::Result<Self> {
        let registry = Self {
            runtime,
            store,
            clock,
            signals,
            current: RwLock::default(),
            pending: RwLock::default(),
            versions: Arc::default(),
            compiled: Arc::default(),
            loading: Arc::default(),
            refused: Arc::default(),
            writes: tokio::sync::Mutex::new(()),
            generation: Mutex::new(None),
        };
        // At start, every stored job is loaded before the node serves.
        for row in registry.store.jobs().await? {
            if let Err(e) = registry.version(&row.hash).await {
                tracing::error!(tenant = %row.tenant, job = %row.name, error = %e, "cannot load a stored job");
            }
        }
        let generation = registry.store.generations().await?.jobs;
        registry.refresh(generation).await?;
        for ((tenant, name), job) in registry.current_where(|_, m| m.is_periodic()) {
            registry.store.ensure_schedule(&tenant, &name, job.component.hash(), job.registered_at).await?;
        }
        Ok(registry)
    }

    /// Rebuilds the cache from the store if its job generation is no longer
    /// `generation`'s. Components already compiled are reused; a version not
    /// compiled here yet is compiled in the background (one tenant's slow
    /// upload must not hold up every other change), and the cache is
    /// rebuilt again when it is ready: until then that one job is unknown
    /// on this node.
    pub async fn refresh(&self, mut generation: i64) -> Result<(), StoreError> {
        loop {
            if *self.generation.lock().unwrap() == Some(generation) {
                return Ok(());
            }
            // Rows and versions read under the lock of registrations: a
            // registration between them (its row written, its version not
            // yet) would leave its job out of the rebuilt cache until the
            // next rebuild (seen: a job just uploaded answered 404).
            let _writing = self.writes.lock().await;
            let mut current = HashMap::new();
            let mut compiling = HashMap::new();
            let mut pending = false;
            for row in self.store.jobs().await? {
                let known = self.versions.read().unwrap().get(&row.hash).cloned();
                match known {
                    Some(component) => {
                        let job = RegisteredJob { component, registered_at: row.registered_at };
                        current.insert((row.tenant, row.name), job);
                    }
                    None if self.refused.lock().unwrap().contains(&row.hash) => {}
                    None => {
                        pending = true;
                        self.load_in_background(row.hash.clone());
                        compiling.insert((row.tenant, row.name), row.hash);
                    }
                }
            }
            // A change since `generation` was read may be missing from the
            // rows: read again rather than install them.
            let now = self.store.generations().await?.jobs;
            if now == generation {
                *self.current.write().unwrap() = current;
                *self.pending.write().unwrap() = compiling;
                // With versions still loading, the next check rebuilds again.
                *self.generation.lock().unwrap() = if pending { None } else { Some(generation) };
                return Ok(());
            }
            generation = now;
        }
    }

    /// Starts compiling version `hash` in the background, unless loaded,
    /// loading or refused already.
    pub fn preload(&self, hash: &str) {
        if !self.loaded(hash) && !self.refused.lock().unwrap().contains(hash) {
            self.load_in_background(hash.to_owned());
        }
    }

    /// Loads version `hash` in a task of its own, then has the catalog
    /// refresh; a version the engine refuses is never tried again.
    fn load_in_background(&self, hash: String) {
        if !self.loading.lock().unwrap().insert(hash.clone()) {
            return;
        }
        let (runtime, store, versions) = (self.runtime.clone(), self.store.clone(), self.versions.clone());
        let compiled = self.compiled.clone();
        let (loading, refused, signals) = (self.loading.clone(), self.refused.clone(), self.signals.clone());
        tokio::spawn(async move {
            let loaded = match store.component(&hash).await {
                Ok(Some(bytes)) => runtime.load(&bytes).await.map_err(RegisterError::from),
                Ok(None) => Err(StoreError::Corrupt(format!("component {hash} is missing")).into()),
                Err(e) => Err(e.into()),
            };
            match loaded {
                Ok(component) => {
                    versions.write().unwrap().insert(hash.clone(), component);
                    compiled.lock().unwrap().push(hash.clone());
                }
                Err(RegisterError::Rejected(e @ (LoadError::ShuttingDown | LoadError::Compiler(_)))) => {
                    tracing::warn!(version = %hash, error = %e, "cannot load a job version yet");
                }
                Err(e @ RegisterError::Rejected(_)) => {
                    tracing::error!(version = %hash, error = %e, "cannot load a stored job version");
                    refused.lock().unwrap().insert(hash.clone());
                }
                // Tried again at the next refresh.
                Err(e) => tracing::warn!(version = %hash, error = %e, "cannot load a job version yet"),
            }
            loading.lock().unwrap().remove(&hash);
            signals.catalog.notify_one();
        });
    }

    /// Validates `bytes` and registers them for `tenant` under the job's
    /// metadata name; a new component for an existing name becomes its
    /// current version. At most `max_jobs` jobs per tenant.
    pub async fn register(&self, tenant: &str, bytes: &[u8], max_jobs: usize) -> Result<JobComponent, RegisterError> {
        self.register_as(tenant, bytes, max_jobs, Stored::No).await
    }

    /// [`Registry::register`] of bytes the store holds already (an upload
    /// stores them before compiling): they are not written again. With a
    /// name `declared`, a job of another name is refused.
    pub async fn register_stored(
        &self,
        tenant: &str,
        bytes: &[u8],
        max_jobs: usize,
        declared: Option<&str>,
    ) -> Result<JobComponent, RegisterError> {
        self.register_as(tenant, bytes, max_jobs, Stored::Yes { declared }).await
    }

    async fn register_as(
        &self,
        tenant: &str,
        bytes: &[u8],
        max_jobs: usize,
        stored: Stored<'_>,
    ) -> Result<JobComponent, RegisterError> {
        // The same bytes are the same job, whoever uploaded them: load once.
        let known = self.versions.read().unwrap().get(&crate::runtime::content_hash(bytes)).cloned();
        let component = match known {
            Some(component) => component,
            None => self.runtime.load(bytes).await?,
        };
        let name = component.metadata().name.clone();
        if let Stored::Yes { declared: Some(declared) } = stored
            && declared != name
        {
            return Err(RegisterError::Misnamed { declared: declared.to_owned(), named: name });
        }
        let _writing = self.writes.lock().await;
        let existing = self.get(tenant, &name);
        if existing.as_ref().is_some_and(|job| job.component.hash() == component.hash()) {
            // The store may have lost it since this cache saw it (deleted
            // through another node): writing it again is a no-op otherwise.
            let row = JobRow {
                tenant: tenant.into(),
                name: name.clone(),
                hash: component.hash().into(),
                metadata: serde_json::to_string(component.metadata()).expect("metadata serializes"),
                registered_at: self.clock.now_millis(),
            };
            self.store.put_job(row, component.metadata().is_periodic()).await?;
            return Ok(component);
        }
        if existing.is_none() && self.names(tenant).len() >= max_jobs {
            return Err(QuotaExceeded { quota: "max_components", limit: max_jobs.to_string() }.into());
        }
        let metadata = serde_json::to_string(component.metadata()).expect("metadata serializes");
        let registered_at = self.clock.now_millis();
        if let Stored::No = stored {
            self.store.put_component(component.hash(), bytes.to_vec()).await?;
        }
        let row = JobRow {
            tenant: tenant.into(),
            name: name.clone(),
            hash: component.hash().into(),
            metadata,
            registered_at,
        };
        let periodic = component.metadata().is_periodic();
        self.store.put_job(row, periodic).await?;
        let job = RegisteredJob { component: component.clone(), registered_at };
        self.pending.write().unwrap().remove(&(tenant.to_owned(), name.clone()));
        self.current.write().unwrap().insert((tenant.into(), name), job);
        if self.versions.write().unwrap().insert(component.hash().into(), component.clone()).is_none() {
            self.compiled.lock().unwrap().push(component.hash().into());
        }
        // A new or replaced schedule is due at once; one that stopped being
        // periodic must not be asked again.
        self.signals.schedules.notify_one();
        Ok(component)
    }

    /// Registers every `.wasm` file in `dir` for `tenant` (pulsar's
    /// `JobRegistry.load`). Returns each file with its job name or why it
    /// was refused.
    pub async fn register_dir(
        &self,
        tenant: &str,
        dir: &Path,
    ) -> std::io::Result<Vec<(PathBuf, Result<String, RegisterError>)>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        let mut results = Vec::new();
        for path in paths {
            let result = match std::fs::read(&path) {
                Ok(bytes) => self.register(tenant, &bytes, usize::MAX).await.map(|c| c.metadata().name.clone()),
                Err(e) => Err(RegisterError::Rejected(LoadError::Invalid(format!("cannot read: {e}")))),
            };
            results.push((path, result));
        }
        Ok(results)
    }

    /// Unregisters `tenant`'s job `name`. Its tasks keep their version.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let _writing = self.writes.lock().await;
        let name = name.to_ascii_lowercase();
        let deleted = self.store.delete_job(tenant, &name).await?;
        self.current.write().unwrap().remove(&(tenant.to_owned(), name.clone()));
        self.pending.write().unwrap().remove(&(tenant.to_owned(), name.clone()));
        if deleted {
            let event = Event::job(EventKind::JobDeleted, self.clock.now_millis(), Some(&name), None);
            self.signals.events.emit(tenant, event);
        }
        Ok(deleted)
    }

    /// Every version `tenant`'s job `name` has had: hash and registration
    /// time, oldest first.
    pub async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        self.store.job_versions(tenant, &name.to_ascii_lowercase()).await
    }

    /// The schedule of `tenant`'s periodic job `name`: when it last ran and
    /// when the scheduler asks it next.
    pub async fn schedule(&self, tenant: &str, name: &str) -> Result<Option<ScheduleRow>, StoreError> {
        self.store.schedule(tenant, &name.to_ascii_lowercase()).await
    }

    /// The current version of `tenant`'s job `name` (case-insensitive).
    pub fn get(&self, tenant: &str, name: &str) -> Option<RegisteredJob> {
        self.current.read().unwrap().get(&(tenant.to_owned(), name.to_ascii_lowercase())).cloned()
    }

    /// The current version of `tenant`'s job `name` if the store has one
    /// that this node is still compiling.
    pub fn pending(&self, tenant: &str, name: &str) -> Option<String> {
        self.pending.read().unwrap().get(&(tenant.to_owned(), name.to_ascii_lowercase())).cloned()
    }

    /// Version `hash` if it is compiled on this node.
    pub fn loaded_version(&self, hash: &str) -> Option<JobComponent> {
        self.versions.read().unwrap().get(hash).cloned()
    }

    /// Whether this node refused version `hash` (it never loads).
    pub fn refused(&self, hash: &str) -> bool {
        self.refused.lock().unwrap().contains(hash)
    }

    /// A specific version, loading it from the store if needed.
    pub async fn version(&self, hash: &str) -> Result<JobComponent, RegisterError> {
        if let Some(component) = self.versions.read().unwrap().get(hash) {
            return Ok(component.clone());
        }
        let bytes = self
            .store
            .component(hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("component {hash} is missing")))?;
        let component = self.runtime.load(&bytes).await?;
        if self.versions.write().unwrap().insert(hash.into(), component.clone()).is_none() {
            self.compiled.lock().unwrap().push(hash.into());
        }
        Ok(component)
    }

    /// The versions compiled on this node since the last call, to record
    /// in the store; [`Registry::give_back`] returns them if that failed.
    pub fn take_compiled(&self) -> Vec<String> {
        std::mem::take(&mut *self.compiled.lock().unwrap())
    }

    /// Returns versions [`Registry::take_compiled`] took, not recorded.
    pub fn give_back(&self, versions: Vec<String>) {
        self.compiled.lock().unwrap().extend(versions);
    }

    /// Whether version `hash` is compiled on this node.
    pub fn loaded(&self, hash: &str) -> bool {
        self.versions.read().unwrap().contains_key(hash)
    }

    /// `tenant`'s regular jobs, by name.
    pub fn regular(&self, tenant: &str) -> Vec<(String, RegisteredJob)> {
        self.current_where(|t, m| t == tenant && !m.is_periodic()).into_iter().map(|((_, n), j)| (n, j)).collect()
    }

    /// `tenant`'s periodic jobs, by name.
    pub fn periodic(&self, tenant: &str) -> Vec<(String, RegisteredJob)> {
        self.current_where(|t, m| t == tenant && m.is_periodic()).into_iter().map(|((_, n), j)| (n, j)).collect()
    }

    fn names(&self, tenant: &str) -> Vec<String> {
        self.current_where(|t, _| t == tenant).into_iter().map(|((_, n), _)| n).collect()
    }

    fn current_where(&self, keep: impl Fn(&str, &JobMetadata) -> bool) -> Vec<(JobKey, RegisteredJob)> {
        let current = self.current.read().unwrap();
        let mut jobs: Vec<_> = current
            .iter()
            .filter(|((t, _), j)| keep(t, j.component.metadata()))
            .map(|(k, j)| (k.clone(), j.clone()))
            .collect();
        jobs.sort_by(|a, b| a.0.cmp(&b.0));
        jobs
    }
}
