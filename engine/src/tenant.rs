//! Tenants and their quotas.
//!
//! Every job, task and schedule belongs to a tenant. [`Quotas`] bound what a
//! tenant may use; each tenant may override the engine's defaults. The
//! engine enforces them: per-task fuel, wall time and memory cap the job's
//! own limits; running tasks bound the tenant's share of the workers;
//! queued tasks, components and the queueing rate are checked at the door.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::egress::{AllowList, Grant, HttpLimits};
use crate::runtime::TaskLimits;
use crate::store::{Store, StoreError, TenantRow, Tokens};

/// The tenant of everything created without one (the demo, `--jobs DIR`,
/// stores from before tenants).
pub const DEFAULT_TENANT: &str = "default";

/// What a tenant may use. Every field says its default and, when it has one,
/// its lower bound ([`Quotas::validate`]): a quota under it would leave the
/// tenant unable to work at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quotas {
    /// Most fuel per task. Default 1e10; at least 1.
    pub max_fuel: u64,
    /// Longest wall time per task, in ms. Default 60 s; at least 1 ms.
    pub max_timeout_ms: u64,
    /// Most memory per task (all its linear memories and tables together). Default 128 MiB; at least one Wasm
    /// page ([`MIN_MEMORY_BYTES`]).
    pub max_memory_bytes: u64,
    /// Most tasks running at once, across every node of the cluster.
    /// Default 16; at least 1.
    pub max_running: usize,
    /// Most tasks queued or waiting to retry. Default 100,000; at least 1.
    pub max_queued: u64,
    /// Largest component. Default 64 MiB (a Python job with a few
    /// dependencies fits); at least 1 byte; the engine's own cap
    /// (`--max-component-size`) bounds it.
    pub max_component_bytes: usize,
    /// Most registered jobs. Default 100; at least 1.
    pub max_components: usize,
    /// Tasks queued per second, sustained. Default 10,000; finite and
    /// greater than 0.
    pub queue_rate: f64,
    /// Tasks that may be queued in a burst above the rate. Default 20,000;
    /// finite and at least 1 (the door admits a task with one whole token).
    pub queue_burst: f64,
    /// Tasks the tenant's jobs may queue (`queue-task`) per second,
    /// sustained, on top of `queue_rate`: a bound on fork bombs across
    /// trees. Default 1,000; finite and greater than 0.
    pub children_rate: f64,
    /// Children that may be queued in a burst above `children_rate`.
    /// Default 10,000; finite and at least 1.
    pub children_burst: f64,
    /// Where the tenant's jobs may send HTTP requests
    /// (`[scheme://]host[:port]` rules, [`crate::egress::policy`]).
    /// Default: nowhere.
    #[schema(value_type = Vec<String>)]
    pub allowed_hosts: AllowList,
    /// The HTTP limits of each task ([`HttpLimits`] gives their defaults).
    /// Requests one task may make.
    pub max_http_requests: u64,
    /// Requests one task may have open at once; at least 1.
    pub max_http_in_flight: u32,
    /// Request body bytes one task may send.
    pub max_http_sent_bytes: u64,
    /// Response body bytes one task may receive.
    pub max_http_received_bytes: u64,
    /// Longest wait for a connection, in ms; at least 1 ms.
    pub http_connect_timeout_ms: u64,
    /// Longest wait for a response's head or the next chunk of its body, in
    /// ms; at least 1 ms. The task's deadline bounds it too.
    pub http_first_byte_timeout_ms: u64,
    /// How long a finished task (its args, result and log) is kept after it
    /// ended, in ms ([`crate::retention`]). Default 7 days; at least
    /// [`MIN_RETENTION_MS`].
    pub retention_ms: u64,
}

/// The shortest `retention_ms`: 1 min, time to read a result.
pub const MIN_RETENTION_MS: u64 = 60_000;

/// Tries of [`Tenants::update`] before it gives up on a tenant that keeps
/// changing under it. Default 8.
const MAX_UPDATE_TRIES: usize = 8;

/// The smallest `max_memory_bytes`: one WebAssembly page, 64 KiB.
pub const MIN_MEMORY_BYTES: u64 = 64 * 1024;

impl Default for Quotas {
    fn default() -> Self {
        let http = HttpLimits::default();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            max_fuel: 10_000_000_000,
            max_timeout_ms: 60_000,
            max_memory_bytes: 128 << 20,
            max_running: 16,
            max_queued: 100_000,
            max_component_bytes: 64 << 20,
            max_components: 100,
            queue_rate: 10_000.0,
            queue_burst: 20_000.0,
            children_rate: 1_000.0,
            children_burst: 10_000.0,
            allowed_hosts: AllowList::default(),
            max_http_requests: http.max_requests,
            max_http_in_flight: http.max_in_flight,
            max_http_sent_bytes: http.max_sent_bytes,
            max_http_received_bytes: http.max_received_bytes,
            http_connect_timeout_ms: millis(http.connect_timeout),
            http_first_byte_timeout_ms: millis(http.first_byte_timeout),
            retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Overrides of some quotas, as a tenant stores them.
pub type QuotaOverrides = serde_json::Map<String, serde_json::Value>;

/// Why quotas were refused; each names the quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("unknown quota `{0}`")]
    Unknown(String),
    /// The override is not a value of the quota's type (such as `-1` for a
    /// count).
    #[error("invalid quota `{quota}`: {message}")]
    Malformed { quota: String, message: String },
    /// The value would leave the tenant unable to work.
    #[error("invalid quota `{quota}`: {message}")]
    OutOfRange { quota: &'static str, message: &'static str },
}

impl Quotas {
    /// These quotas with `overrides` applied, then [validated](Self::validate).
    /// Unknown, ill-typed or out-of-range overrides are an error naming them.
    pub fn with(&self, overrides: &QuotaOverrides) -> Result<Quotas, QuotaError> {
        let mut quotas = self.clone();
        // One at a time, so that a value of the wrong type is named.
        for (key, value) in overrides {
            let mut merged = serde_json::to_value(&quotas).expect("quotas serialize");
            let fields = merged.as_object_mut().expect("quotas are an object");
            if !fields.contains_key(key) {
                return Err(QuotaError::Unknown(key.clone()));
            }
            fields.insert(key.clone(), value.clone());
            quotas = serde_json::from_value(merged)
                .map_err(|e| QuotaError::Malformed { quota: key.clone(), message: e.to_string() })?;
        }
        quotas.validate()?;
        Ok(quotas)
    }

    /// Checks every quota against its lower bound (see the fields): zero
    /// running tasks, fuel or components, a rate that is not a positive
    /// finite number, and the like are refused rather than leaving a tenant
    /// whose tasks can never run.
    pub fn validate(&self) -> Result<(), QuotaError> {
        let out_of_range = |quota, message| Err(QuotaError::OutOfRange { quota, message });
        if self.max_fuel == 0 {
            return out_of_range("max_fuel", "must be at least 1: no task can run without fuel");
        }
        if self.max_timeout_ms == 0 {
            return out_of_range("max_timeout_ms", "must be at least 1 ms: no task can run in no time");
        }
        if self.max_memory_bytes < MIN_MEMORY_BYTES {
            return out_of_range("max_memory_bytes", "must be at least 65536, one WebAssembly page");
        }
        if self.max_running == 0 {
            return out_of_range(
                "max_running",
                "must be at least 1: a tenant that may run no task never runs its tasks",
            );
        }
        if self.max_queued == 0 {
            return out_of_range("max_queued", "must be at least 1: a tenant that may queue no task can do nothing");
        }
        if self.max_component_bytes == 0 {
            return out_of_range("max_component_bytes", "must be at least 1: no component is empty");
        }
        if self.max_components == 0 {
            return out_of_range("max_components", "must be at least 1: a tenant without jobs can do nothing");
        }
        if !(self.queue_rate.is_finite() && self.queue_rate > 0.0) {
            return out_of_range("queue_rate", "must be a finite number of tasks per second greater than 0");
        }
        if !(self.queue_burst.is_finite() && self.queue_burst >= 1.0) {
            return out_of_range("queue_burst", "must be a finite number of tasks, at least 1");
        }
        if !(self.children_rate.is_finite() && self.children_rate > 0.0) {
            return out_of_range("children_rate", "must be a finite number of tasks per second greater than 0");
        }
        if !(self.children_burst.is_finite() && self.children_burst >= 1.0) {
            return out_of_range("children_burst", "must be a finite number of tasks, at least 1");
        }
        if self.max_http_in_flight == 0 {
            return out_of_range("max_http_in_flight", "must be at least 1: deny egress with `allowed_hosts` instead");
        }
        if self.http_connect_timeout_ms == 0 {
            return out_of_range("http_connect_timeout_ms", "must be at least 1 ms");
        }
        if self.http_first_byte_timeout_ms == 0 {
            return out_of_range("http_first_byte_timeout_ms", "must be at least 1 ms");
        }
        if self.retention_ms < MIN_RETENTION_MS {
            return out_of_range("retention_ms", "must be at least 60000 (1 min): a result must be there to read");
        }
        Ok(())
    }

    /// The HTTP limits of each of the tenant's tasks.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_requests: self.max_http_requests,
            max_in_flight: self.max_http_in_flight,
            max_sent_bytes: self.max_http_sent_bytes,
            max_received_bytes: self.max_http_received_bytes,
            connect_timeout: Duration::from_millis(self.http_connect_timeout_ms),
            first_byte_timeout: Duration::from_millis(self.http_first_byte_timeout_ms),
        }
    }

    /// What a task of a job that narrows egress to `job_hosts` (if it does)
    /// may reach: the tenant's list and the job's together.
    pub fn grant(&self, job_hosts: Option<&AllowList>) -> Grant {
        Grant { allow: self.allowed_hosts.clone(), narrow: job_hosts.cloned(), limits: self.http_limits() }
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
    #[error(transparent)]
    InvalidQuotas(QuotaError),
    #[error("no tenant `{0}`")]
    Unknown(String),
    #[error("tenant `{0}` is being changed by someone else: try again")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tenants, as a cache of the store, with their quotas and the door's
/// count of their waiting tasks.
///
/// Freshness: a tenant created here is cached at once; one created through
/// another node is read from the store the first time it is asked for
/// ([`Tenants::get`]), and [`Tenants::refresh`] (called by the catalog when
/// the store's tenant generation moves) reloads them all. A tenant this
/// node does not know is never given default quotas.
pub struct Tenants {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    defaults: Quotas,
    quotas: RwLock<HashMap<String, Quotas>>,
    /// Queued or retrying tasks per tenant, as last counted (every
    /// heartbeat) plus those this node queued since.
    waiting: Mutex<HashMap<String, u64>>,
    /// The store's tenant generation the cache was built from.
    generation: Mutex<Option<i64>>,
}

impl Tenants {
    /// Loads every tenant from the store.
    pub async fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, defaults: Quotas) -> Result<Self, StoreError> {
        let tenants = Self {
            store,
            clock,
            defaults,
            quotas: RwLock::default(),
            waiting: Mutex::default(),
            generation: Mutex::new(None),
        };
        let generation = tenants.store.generations().await?.tenants;
        tenants.refresh(generation).await?;
        Ok(tenants)
    }

    /// Reloads every tenant if the store's tenant generation is no longer
    /// `generation`'s. Tenants are never deleted, so a reload can never
    /// undo a creation made here meanwhile; a quota change made here
    /// meanwhile is in the store before this node's cache has it.
    pub async fn refresh(&self, generation: i64) -> Result<(), StoreError> {
        if *self.generation.lock().unwrap() == Some(generation) {
            return Ok(());
        }
        let rows = self.store.tenants().await?;
        let mut quotas = self.quotas.write().unwrap();
        for row in rows {
            let parsed = self.parse(&row);
            quotas.insert(row.name, parsed);
        }
        *self.generation.lock().unwrap() = Some(generation);
        Ok(())
    }

    /// A stored tenant's quotas: the defaults with its overrides.
    fn parse(&self, row: &TenantRow) -> Quotas {
        let overrides: QuotaOverrides = serde_json::from_str(&row.quotas).unwrap_or_default();
        self.defaults.with(&overrides).unwrap_or_else(|e| {
            tracing::warn!(tenant = %row.name, error = %e, "ignoring invalid quota overrides");
            self.defaults.clone()
        })
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
        self.quotas.write().unwrap().insert(name.to_owned(), quotas.clone());
        Ok(quotas)
    }

    /// Changes some of `name`'s quota overrides: each key of `changes` is set,
    /// or with `null` goes back to the default. Returns the new quotas.
    /// Other nodes see the change at their next catalog refresh (the
    /// tenant generation moves).
    pub async fn update(&self, name: &str, changes: QuotaOverrides) -> Result<Quotas, TenantError> {
        // A compare-and-set on the stored overrides: two admins changing
        // different quotas at once both land.
        for _ in 0..MAX_UPDATE_TRIES {
            let row = self.store.tenant(name).await?.ok_or_else(|| TenantError::Unknown(name.to_owned()))?;
            let mut overrides: QuotaOverrides = serde_json::from_str(&row.quotas).unwrap_or_default();
            for (key, value) in &changes {
                if value.is_null() {
                    overrides.remove(key);
                } else {
                    overrides.insert(key.clone(), value.clone());
                }
            }
            let quotas = self.defaults.with(&overrides).map_err(TenantError::InvalidQuotas)?;
            let stored = serde_json::Value::Object(overrides).to_string();
            if self.store.update_tenant(name, &row.quotas, &stored).await? {
                self.quotas.write().unwrap().insert(name.to_owned(), quotas.clone());
                return Ok(quotas);
            }
        }
        Err(TenantError::Busy(name.to_owned()))
    }

    /// The quotas of `tenant`, read from the store if this node does not
    /// know it yet; `None` if there is no such tenant.
    pub async fn get(&self, tenant: &str) -> Result<Option<Quotas>, StoreError> {
        if let Some(quotas) = self.quotas.read().unwrap().get(tenant) {
            return Ok(Some(quotas.clone()));
        }
        let Some(row) = self.store.tenant(tenant).await? else { return Ok(None) };
        let quotas = self.parse(&row);
        self.quotas.write().unwrap().insert(row.name, quotas.clone());
        Ok(Some(quotas))
    }

    /// Every tenant this node knows, with its quotas, by name.
    pub fn list(&self) -> Vec<(String, Quotas)> {
        let quotas = self.quotas.read().unwrap();
        let mut list: Vec<_> = quotas.iter().map(|(n, q)| (n.clone(), q.clone())).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Each known tenant's `max_running`, for a claim.
    pub fn max_running(&self) -> HashMap<String, usize> {
        self.quotas.read().unwrap().iter().map(|(n, q)| (n.clone(), q.max_running)).collect()
    }

    /// The default quotas.
    pub fn defaults(&self) -> &Quotas {
        &self.defaults
    }

    /// Admits `n` new tasks of `tenant` at the door within its queued-task
    /// quota, counting them as waiting, and answers the tokens their insert
    /// must take from the tenant's queueing-rate bucket
    /// ([`Store::insert_tasks`]); if it cannot, give the count back
    /// ([`Tenants::claimed`]) and refuse them with [`Tokens::refusal`].
    ///
    /// The rate's bucket is in the store, one per tenant for the whole
    /// cluster, so it holds exactly however many nodes queue. The queued
    /// count is this node's: recounted from the store at every heartbeat,
    /// plus what this node admitted since, so across `k` nodes a tenant may
    /// pass `max_queued` by what the other nodes admit within one heartbeat.
    pub async fn admit(&self, tenant: &str, n: u64) -> Result<Tokens, AdmitError> {
        let quotas = self.get(tenant).await?.ok_or_else(|| AdmitError::UnknownTenant(tenant.to_owned()))?;
        let mut counts = self.waiting.lock().unwrap();
        let waiting = counts.entry(tenant.to_owned()).or_default();
        if waiting.saturating_add(n) > quotas.max_queued {
            return Err(QuotaExceeded { quota: "max_queued", limit: quotas.max_queued.to_string() }.into());
        }
        *waiting += n;
        let now = self.clock.now_millis();
        Ok(Tokens { bucket: tenant.to_owned(), n, rate: quotas.queue_rate, burst: quotas.queue_burst, now })
    }

    /// Admits `n` tasks queued by `tenant`'s jobs, within its children rate
    /// (one bucket per tenant in the store, like the queueing rate).
    pub async fn admit_children(&self, tenant: &str, n: u64) -> Result<(), AdmitError> {
        let quotas = self.get(tenant).await?.ok_or_else(|| AdmitError::UnknownTenant(tenant.to_owned()))?;
        // A tenant name has no `/`: this bucket's key is no tenant's.
        let bucket = format!("{tenant}/children");
        let now = self.clock.now_millis();
        if !self.store.take_tokens(&bucket, n, quotas.children_rate, quotas.children_burst, now).await? {
            let limit = format!("{}/s", quotas.children_rate);
            return Err(QuotaExceeded { quota: "children_rate", limit }.into());
        }
        Ok(())
    }

    /// Notes that `n` waiting tasks of `tenant` stopped waiting (claimed, or
    /// never queued after all).
    pub fn claimed(&self, tenant: &str, n: u64) {
        if let Some(waiting) = self.waiting.lock().unwrap().get_mut(tenant) {
            *waiting = waiting.saturating_sub(n);
        }
    }

    /// Resets the waiting counts from a fresh count of the store.
    pub fn recount(&self, waiting: HashMap<String, u64>) {
        *self.waiting.lock().unwrap() = waiting;
    }
}

/// Why the door refused tasks.
impl Tokens {
    /// Why tasks whose bucket had too few tokens are refused.
    pub fn refusal(&self) -> QuotaExceeded {
        QuotaExceeded { quota: "queue_rate", limit: format!("{}/s", self.rate) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
