//! Tenants and their quotas.
//!
//! Every job, task and schedule belongs to a tenant. [`Quotas`] bound what a
//! tenant may use; each tenant may override the engine's defaults. The
//! engine enforces them: per-task fuel, wall time and memory cap the job's
//! own limits; running tasks bound the tenant's share of the workers;
//! queued tasks, components and the queueing rate are checked at the door.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::runtime::TaskLimits;
use crate::store::{Store, StoreError, TenantRow};

/// The tenant of everything created without one (the demo, `--jobs DIR`,
/// stores from before tenants).
pub const DEFAULT_TENANT: &str = "default";

/// What a tenant may use. Every field says its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    /// Most fuel per task. Default 1e10.
    pub max_fuel: u64,
    /// Longest wall time per task, in ms. Default 60 s.
    pub max_timeout_ms: u64,
    /// Most linear memory per instance. Default 128 MiB.
    pub max_memory_bytes: u64,
    /// Most tasks running at once on a node. Default 16.
    pub max_running: usize,
    /// Most tasks queued or waiting to retry. Default 100,000.
    pub max_queued: u64,
    /// Largest component. Default 16 MiB.
    pub max_component_bytes: usize,
    /// Most registered jobs. Default 100.
    pub max_components: usize,
    /// Tasks queued per second, sustained. Default 10,000.
    pub queue_rate: f64,
    /// Tasks that may be queued in a burst above the rate. Default 20,000.
    pub queue_burst: f64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_fuel: 10_000_000_000,
            max_timeout_ms: 60_000,
            max_memory_bytes: 128 << 20,
            max_running: 16,
            max_queued: 100_000,
            max_component_bytes: 16 << 20,
            max_components: 100,
            queue_rate: 10_000.0,
            queue_burst: 20_000.0,
        }
    }
}

/// Overrides of some quotas, as a tenant stores them.
pub type QuotaOverrides = serde_json::Map<String, serde_json::Value>;

impl Quotas {
    /// These quotas with `overrides` applied. Unknown or ill-typed
    /// overrides are an error naming them.
    pub fn with(&self, overrides: &QuotaOverrides) -> Result<Quotas, String> {
        let mut merged = serde_json::to_value(self).expect("quotas serialize");
        let fields = merged.as_object_mut().expect("quotas are an object");
        for (key, value) in overrides {
            if !fields.contains_key(key) {
                return Err(format!("unknown quota `{key}`"));
            }
            fields.insert(key.clone(), value.clone());
        }
        serde_json::from_value(merged).map_err(|e| format!("invalid quota: {e}"))
    }

    /// `limits` capped by these quotas.
    pub fn cap(&self, limits: TaskLimits) -> TaskLimits {
        TaskLimits {
            fuel: limits.fuel.min(self.max_fuel),
            timeout: limits.timeout.min(Duration::from_millis(self.max_timeout_ms)),
            memory_bytes: limits.memory_bytes.min(self.max_memory_bytes),
        }
    }
}

/// A quota that a request would exceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota `{quota}` exceeded (limit {limit})")]
pub struct QuotaExceeded {
    pub quota: &'static str,
    pub limit: String,
}

/// Why a tenant could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant `{0}` exists")]
    Exists(String),
    #[error("invalid tenant name `{0}`: use 1-64 letters, digits, `-` and `_`")]
    InvalidName(String),
    #[error("{0}")]
    InvalidQuotas(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Tenant {
    quotas: Quotas,
    /// Queued or retrying tasks, as last counted plus those queued since.
    waiting: u64,
    /// The queueing-rate token bucket.
    tokens: f64,
    refilled: Instant,
}

/// The tenants this node knows, with their quotas and door-keeping counters.
pub struct Tenants {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    defaults: Quotas,
    tenants: RwLock<HashMap<String, Mutex<Tenant>>>,
}

impl Tenants {
    /// Loads every tenant from the store.
    pub async fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, defaults: Quotas) -> Result<Self, StoreError> {
        let tenants = Self { store, clock, defaults, tenants: RwLock::default() };
        for row in tenants.store.tenants().await? {
            let overrides: QuotaOverrides = serde_json::from_str(&row.quotas).unwrap_or_default();
            let quotas = tenants.defaults.with(&overrides).unwrap_or_else(|e| {
                tracing::warn!(tenant = %row.name, error = %e, "ignoring invalid quota overrides");
                tenants.defaults.clone()
            });
            tenants.insert(row.name, quotas);
        }
        Ok(tenants)
    }

    fn insert(&self, name: String, quotas: Quotas) {
        let tenant = Tenant { tokens: quotas.queue_burst, quotas, waiting: 0, refilled: Instant::now() };
        self.tenants.write().unwrap().insert(name, Mutex::new(tenant));
    }

    /// Creates a tenant with quota `overrides`.
    pub async fn create(&self, name: &str, overrides: QuotaOverrides) -> Result<Quotas, TenantError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(TenantError::InvalidName(name.to_owned()));
        }
        let quotas = self.defaults.with(&overrides).map_err(TenantError::InvalidQuotas)?;
        let row = TenantRow {
            name: name.to_owned(),
            quotas: serde_json::Value::Object(overrides).to_string(),
            created_at: self.clock.now_millis(),
        };
        if !self.store.create_tenant(row).await? {
            return Err(TenantError::Exists(name.to_owned()));
        }
        self.insert(name.to_owned(), quotas.clone());
        Ok(quotas)
    }

    /// Whether `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.tenants.read().unwrap().contains_key(name)
    }

    /// Every tenant with its quotas, by name.
    pub fn list(&self) -> Vec<(String, Quotas)> {
        let tenants = self.tenants.read().unwrap();
        let mut list: Vec<_> = tenants.iter().map(|(n, t)| (n.clone(), t.lock().unwrap().quotas.clone())).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// The quotas of `tenant` (the defaults for a tenant this node does not
    /// know yet).
    pub fn quotas(&self, tenant: &str) -> Quotas {
        match self.tenants.read().unwrap().get(tenant) {
            Some(t) => t.lock().unwrap().quotas.clone(),
            None => self.defaults.clone(),
        }
    }

    /// The default quotas.
    pub fn defaults(&self) -> &Quotas {
        &self.defaults
    }

    /// Admits `n` new tasks of `tenant` at the door: within its queueing rate
    /// and its queued-task quota. Counts them as waiting.
    pub fn admit(&self, tenant: &str, n: u64) -> Result<(), QuotaExceeded> {
        let tenants = self.tenants.read().unwrap();
        let Some(t) = tenants.get(tenant) else { return Ok(()) };
        let mut t = t.lock().unwrap();
        let now = Instant::now();
        let elapsed = now.duration_since(t.refilled).as_secs_f64();
        t.tokens = (t.tokens + elapsed * t.quotas.queue_rate).min(t.quotas.queue_burst);
        t.refilled = now;
        if t.waiting + n > t.quotas.max_queued {
            return Err(QuotaExceeded { quota: "max_queued", limit: t.quotas.max_queued.to_string() });
        }
        if t.tokens < n as f64 {
            return Err(QuotaExceeded { quota: "queue_rate", limit: format!("{}/s", t.quotas.queue_rate) });
        }
        t.tokens -= n as f64;
        t.waiting += n;
        Ok(())
    }

    /// Notes that `n` waiting tasks of `tenant` stopped waiting (claimed, or
    /// never queued after all).
    pub fn claimed(&self, tenant: &str, n: u64) {
        if let Some(t) = self.tenants.read().unwrap().get(tenant) {
            let mut t = t.lock().unwrap();
            t.waiting = t.waiting.saturating_sub(n);
        }
    }

    /// Resets the waiting counts from a fresh count of the store.
    pub fn recount(&self, waiting: &HashMap<String, u64>) {
        for (name, t) in self.tenants.read().unwrap().iter() {
            t.lock().unwrap().waiting = waiting.get(name).copied().unwrap_or(0);
        }
    }
}
