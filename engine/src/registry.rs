//! The job registry (pulsar's `JobRegistry`): each tenant's jobs by
//! lower-case name, each with its current version and any older version a
//! queued task still pins.
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
use crate::tenant::QuotaExceeded;

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
}

/// A job's key: its tenant and name.
type JobKey = (String, String);

/// Jobs by tenant and name, backed by the store.
pub struct Registry {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    current: RwLock<HashMap<JobKey, RegisteredJob>>,
    /// Every version loaded so far, by hash (the same bytes are the same
    /// code whichever tenant uploaded them).
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
            match registry.version(&row.hash).await {
                Ok(component) => {
                    let job = RegisteredJob { component, registered_at: row.registered_at };
                    registry.current.write().unwrap().insert((row.tenant, row.name), job);
                }
                Err(e) => {
                    tracing::error!(tenant = %row.tenant, job = %row.name, error = %e, "cannot load a stored job")
                }
            }
        }
        Ok(registry)
    }

    /// Validates `bytes` and registers them for `tenant` under the job's
    /// metadata name; a new component for an existing name becomes its
    /// current version. At most `max_jobs` jobs per tenant.
    pub async fn register(&self, tenant: &str, bytes: &[u8], max_jobs: usize) -> Result<JobComponent, RegisterError> {
        let component = self.runtime.load(bytes).await?;
        let name = component.metadata().name.clone();
        let existing = self.get(tenant, &name);
        if existing.as_ref().is_some_and(|job| job.component.hash() == component.hash()) {
            return Ok(component);
        }
        if existing.is_none() && self.names(tenant).len() >= max_jobs {
            return Err(QuotaExceeded { quota: "max_components", limit: max_jobs.to_string() }.into());
        }
        let metadata = serde_json::to_string(component.metadata()).expect("metadata serializes");
        let registered_at = self.clock.now_millis();
        self.store.put_component(component.hash(), bytes.to_vec()).await?;
        let row = JobRow {
            tenant: tenant.into(),
            name: name.clone(),
            hash: component.hash().into(),
            metadata,
            registered_at,
        };
        self.store.put_job(row).await?;
        let job = RegisteredJob { component: component.clone(), registered_at };
        self.current.write().unwrap().insert((tenant.into(), name), job);
        self.versions.write().unwrap().insert(component.hash().into(), component.clone());
        self.changed.notify_waiters();
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
        let deleted = self.store.delete_job(tenant, &name.to_lowercase()).await?;
        self.current.write().unwrap().remove(&(tenant.to_owned(), name.to_lowercase()));
        self.changed.notify_waiters();
        Ok(deleted)
    }

    /// The current version of `tenant`'s job `name` (case-insensitive).
    pub fn get(&self, tenant: &str, name: &str) -> Option<RegisteredJob> {
        self.current.read().unwrap().get(&(tenant.to_owned(), name.to_lowercase())).cloned()
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
        self.versions.write().unwrap().insert(hash.into(), component.clone());
        Ok(component)
    }

    /// `tenant`'s regular jobs, by name.
    pub fn regular(&self, tenant: &str) -> Vec<(String, RegisteredJob)> {
        self.current_where(|t, m| t == tenant && !m.is_periodic()).into_iter().map(|((_, n), j)| (n, j)).collect()
    }

    /// `tenant`'s periodic jobs, by name.
    pub fn periodic(&self, tenant: &str) -> Vec<(String, RegisteredJob)> {
        self.current_where(|t, m| t == tenant && m.is_periodic()).into_iter().map(|((_, n), j)| (n, j)).collect()
    }

    /// Every tenant's periodic jobs, for the scheduler.
    pub fn all_periodic(&self) -> Vec<(JobKey, RegisteredJob)> {
        self.current_where(|_, m| m.is_periodic())
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

    /// Resolves when a job is registered, replaced or deleted.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}
