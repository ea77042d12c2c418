//! The job registry (pulsar's `JobRegistry`): jobs by lower-case name, each
//! with its current version and any older version a queued task still pins.
//!
//! Versioning: a task runs the version that was current when it was
//! *queued*. Its args were written for that version, and a retry reruns the
//! same code; uploading a new version affects only tasks queued afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::job::JobMetadata;
use crate::runtime::{JobComponent, LoadError, Runtime};
use crate::store::{JobRow, Millis, Store, StoreError};

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
    Store(#[from] StoreError),
}

/// Jobs by name, backed by the store.
pub struct Registry {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    current: RwLock<HashMap<String, RegisteredJob>>,
    /// Every version loaded so far, by hash.
    versions: RwLock<HashMap<String, JobComponent>>,
    changed: Notify,
}

impl Registry {
    /// Loads every job the store knows.
    pub async fn open(runtime: Arc<Runtime>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let registry = Self {
            runtime,
            store,
            clock,
            current: RwLock::default(),
            versions: RwLock::default(),
            changed: Notify::new(),
        };
        for row in registry.store.jobs().await? {
            match registry.load_version(&row.hash).await {
                Ok(component) => {
                    let job = RegisteredJob { component, registered_at: row.registered_at };
                    registry.current.write().unwrap().insert(row.name, job);
                }
                Err(e) => tracing::error!(job = %row.name, error = %e, "cannot load a stored job"),
            }
        }
        Ok(registry)
    }

    /// Validates and registers a component under its metadata name; a new
    /// component for an existing name becomes its current version.
    pub async fn register(&self, bytes: &[u8]) -> Result<JobComponent, RegisterError> {
        let component = self.runtime.load(bytes).await?;
        let name = component.metadata().name.clone();
        let unchanged = self.get(&name).is_some_and(|job| job.component.hash() == component.hash());
        if !unchanged {
            let metadata = serde_json::to_string(component.metadata()).expect("metadata serializes");
            let registered_at = self.clock.now_millis();
            self.store.put_component(component.hash(), bytes.to_vec()).await?;
            let row = JobRow { name: name.clone(), hash: component.hash().into(), metadata, registered_at };
            self.store.put_job(row).await?;
            let job = RegisteredJob { component: component.clone(), registered_at };
            self.current.write().unwrap().insert(name, job);
            self.versions.write().unwrap().insert(component.hash().into(), component.clone());
            self.changed.notify_waiters();
        }
        Ok(component)
    }

    /// Registers every `.wasm` file in `dir` (pulsar's `JobRegistry.load`).
    /// Returns each file with its job name or why it was refused.
    pub async fn register_dir(&self, dir: &Path) -> std::io::Result<Vec<(PathBuf, Result<String, RegisterError>)>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        let mut results = Vec::new();
        for path in paths {
            let result = match std::fs::read(&path) {
                Ok(bytes) => self.register(&bytes).await.map(|c| c.metadata().name.clone()),
                Err(e) => Err(RegisterError::Rejected(LoadError::Invalid(format!("cannot read: {e}")))),
            };
            results.push((path, result));
        }
        Ok(results)
    }

    /// The current version of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<RegisteredJob> {
        let current = self.current.read().unwrap();
        current.get(name).or_else(|| current.get(&name.to_lowercase())).cloned()
    }

    /// A specific version, loading it from the store if needed.
    pub async fn version(&self, hash: &str) -> Result<JobComponent, RegisterError> {
        if let Some(component) = self.versions.read().unwrap().get(hash) {
            return Ok(component.clone());
        }
        self.load_version(hash).await
    }

    async fn load_version(&self, hash: &str) -> Result<JobComponent, RegisterError> {
        let bytes = self
            .store
            .component(hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("component {hash} is missing")))?;
        let component = self.runtime.load(&bytes).await?;
        self.versions.write().unwrap().insert(hash.into(), component.clone());
        Ok(component)
    }

    /// Regular jobs, by name.
    pub fn regular(&self) -> Vec<(String, RegisteredJob)> {
        self.current_where(|m| !m.is_periodic())
    }

    /// Periodic jobs, by name.
    pub fn periodic(&self) -> Vec<(String, RegisteredJob)> {
        self.current_where(JobMetadata::is_periodic)
    }

    fn current_where(&self, keep: impl Fn(&JobMetadata) -> bool) -> Vec<(String, RegisteredJob)> {
        let current = self.current.read().unwrap();
        let mut jobs: Vec<_> =
            current.iter().filter(|(_, j)| keep(j.component.metadata())).map(|(n, j)| (n.clone(), j.clone())).collect();
        jobs.sort_by(|a, b| a.0.cmp(&b.0));
        jobs
    }

    /// Resolves when a job is registered or replaced.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}
