//! The worker pool: claims due tasks in batches and runs each in its own
//! sandbox, up to `concurrency` at once.
//!
//! The loop is a `select!` over shutdown, a wake-up (a task was queued or a
//! slot freed) and a timer (the next delayed task, or the lease sweep). Each
//! claim takes as many tasks as there are free slots, so claims batch under
//! load; the store's group commit batches completions.
//!
//! Leases: a claimed task's lease lasts [`LEASE`], and the worker renews
//! the leases of its running tasks every [`HEARTBEAT`]. A task whose lease
//! ran out belonged to a worker that died (or lost its store), and any
//! node's sweep moves it to `retry` (or `failure` when out of attempts). A
//! completion presents its lease: once rescued, a stale worker's
//! completion is refused (fencing).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::queue::{Parent, Queue};
use crate::registry::Registry;
use crate::retry;
use crate::runtime::{Outcome, Runtime, TaskInput};
use crate::store::{ClaimRequest, ClaimedTask, Completion, Store, TaskState, to_millis};

/// How long a lease lasts without a heartbeat. Default 10 s.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a worker renews its running tasks' leases, sweeps expired
/// ones and recounts waiting tasks. Default 2 s.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// The longest the loop sleeps without looking at the store: a fallback for
/// tasks queued by another process, which cannot wake this one. Default 250 ms.
pub const POLL_FALLBACK: Duration = Duration::from_millis(250);
/// The most tasks one claim takes. Default 256.
pub const MAX_CLAIM: usize = 256;

/// Runs tasks from the store.
pub struct Workers {
    pub(crate) node: String,
    pub(crate) concurrency: usize,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Workers {
    /// Runs until `shutdown` turns true; then stops claiming, lets running
    /// tasks finish within `grace`, and puts the rest back in line.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) -> anyhow::Result<()> {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut running: JoinSet<()> = JoinSet::new();
        // The lease and tenant of each running task.
        let mut leases: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
        let mut per_tenant: HashMap<String, usize> = HashMap::new();
        let mut next_sweep = tokio::time::Instant::now();
        let wake = self.queue.wake.clone();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= next_sweep {
                // A store failure must not stop the workers: log it and go on.
                if let Err(e) = self.heartbeat(&leases).await {
                    tracing::error!(error = %e, "heartbeat failed");
                }
                next_sweep = now + HEARTBEAT;
            }
            let mut sleep = POLL_FALLBACK.min(next_sweep - now);
            let free = slots.available_permits().min(MAX_CLAIM);
            if free > 0 {
                let claim = match self.claim(free, &per_tenant).await {
                    Ok(claim) => claim,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim tasks");
                        crate::store::Claim::default()
                    }
                };
                if !claim.expired.is_empty() {
                    self.queue.finished(&claim.expired);
                }
                // A task due later: wake for it. One due now but not claimed
                // (its tenant has no free slot) waits for a slot to free up,
                // not in a busy loop.
                if let Some(next) = claim.next_run_at {
                    let wait = next - self.clock.now_millis();
                    if wait > 0 {
                        sleep = sleep.min(Duration::from_millis(wait as u64));
                    }
                }
                for task in claim.tasks {
                    let permit = slots.clone().acquire_owned().await?;
                    self.queue.tenants.claimed(&task.tenant, 1);
                    *per_tenant.entry(task.tenant.clone()).or_default() += 1;
                    let lease = (task.lease.clone(), task.tenant.clone());
                    let this = self.clone();
                    let wake = wake.clone();
                    let handle = running.spawn(async move {
                        this.run_task(task).await;
                        drop(permit);
                        wake.notify_one();
                    });
                    leases.insert(handle.id(), lease);
                }
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = wake.notified() => {}
                Some(done) = running.join_next_with_id() => {
                    if let Some((_, tenant)) = leases.remove(&finished_id(done)) {
                        *per_tenant.entry(tenant).or_default() -= 1;
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }

        tracing::info!(running = running.len(), "shutting down: no more claims; waiting for running tasks");
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = running.join_next_with_id().await {
                leases.remove(&finished_id(done));
            }
        })
        .await;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
            let unfinished: Vec<String> = leases.into_values().map(|(lease, _)| lease).collect();
            let released = self.store.release(unfinished, self.clock.now_millis()).await?;
            tracing::warn!(released, "grace period over: released the tasks still running");
        }
        Ok(())
    }

    /// Renews this worker's leases, rescues tasks whose lease ran out
    /// (theirs died), and recounts waiting tasks for the quotas.
    async fn heartbeat(&self, leases: &HashMap<tokio::task::Id, (String, String)>) -> anyhow::Result<()> {
        if !leases.is_empty() {
            let live: Vec<String> = leases.values().map(|(lease, _)| lease.clone()).collect();
            self.store.extend_leases(live, self.clock.now_millis() + to_millis(LEASE)).await?;
        }
        if self.store.rescue(self.clock.now_millis(), false).await? > 0 {
            self.queue.finished_some();
        }
        let waiting = self.store.waiting_by_tenant().await?.into_iter().collect();
        self.queue.tenants.recount(&waiting);
        Ok(())
    }

    /// Claims up to `limit` tasks, fairly across tenants and within each
    /// tenant's running quota (`running` counts what each runs here now).
    async fn claim(&self, limit: usize, running: &HashMap<String, usize>) -> anyhow::Result<crate::store::Claim> {
        let now = self.clock.now_millis();
        let tenants = &self.queue.tenants;
        let slots = tenants
            .list()
            .into_iter()
            .map(|(name, quotas)| {
                let busy = running.get(&name).copied().unwrap_or(0);
                (name, quotas.max_running.saturating_sub(busy))
            })
            .collect();
        let request = ClaimRequest {
            node: self.node.clone(),
            limit,
            now,
            lease_until: now + to_millis(LEASE),
            slots,
            default_slots: tenants.defaults().max_running,
        };
        Ok(self.store.claim(request).await?)
    }

    /// Runs one claimed task and records how it ended.
    async fn run_task(&self, task: ClaimedTask) {
        let ended = match self.registry.version(&task.version).await {
            Ok(job) => {
                let parent = Parent {
                    id: task.id.clone(),
                    root: task.root_task.clone().unwrap_or_else(|| task.id.clone()),
                    depth: task.depth,
                };
                let quotas = self.queue.tenants.quotas(&task.tenant);
                let input = TaskInput {
                    task_id: task.id.clone(),
                    attempt: task.attempt,
                    args: task.args.clone(),
                    limits: quotas.cap(self.runtime.task_limits(&job)),
                    children: self.queue.children_of(task.tenant.clone(), parent),
                };
                let revoked = self.queue.running(&task.id);
                let ended = tokio::select! {
                    report = self.runtime.run(&job, input) => {
                        let policy = &job.metadata().retry;
                        let decision =
                            retry::decide(policy, task.max_retries, task.attempt, &report.outcome, retry::jitter());
                        Ended::Ran(report, decision)
                    }
                    Ok(()) = revoked => Ended::Revoked,
                };
                self.queue.stopped(&task.id);
                ended
            }
            Err(e) => {
                tracing::error!(task = %task.id, job = %task.job, error = %e, "cannot load the task's job version");
                Ended::Unavailable
            }
        };
        let at = self.clock.now_millis();
        let ended_with = |state, reason: &str, error: Option<String>| Completion {
            id: task.id.clone(),
            lease: task.lease.clone(),
            state,
            reason: reason.into(),
            result: None,
            error,
            fuel: 0,
            wall_time_us: 0,
            log: String::new(),
            finished_at: at,
            retry_at: None,
        };
        let completion = match ended {
            Ended::Ran(report, decision) => {
                let (result, error) = match &report.outcome {
                    Outcome::Success { result } => (Some(result.clone()), None),
                    other => (None, Some(other.describe())),
                };
                Completion {
                    state: decision.state,
                    reason: report.outcome.class().to_owned(),
                    result,
                    error,
                    fuel: report.fuel_consumed,
                    wall_time_us: u64::try_from(report.wall_time.as_micros()).unwrap_or(u64::MAX),
                    log: report.log,
                    retry_at: decision.retry_in.map(|d| at + to_millis(d)),
                    ..ended_with(decision.state, "", None)
                }
            }
            Ended::Revoked => ended_with(TaskState::Revoked, "revoked", Some("revoked while running".into())),
            Ended::Unavailable => ended_with(
                TaskState::Failure,
                "job-unavailable",
                Some(format!("the version {} of job {} cannot be loaded", task.version, task.job)),
            ),
        };
        self.queue.metrics.ended(
            &task.tenant,
            &task.job,
            completion.state.as_str(),
            completion.fuel,
            Duration::from_micros(completion.wall_time_us),
        );
        let finished = completion.state.is_terminal();
        match self.store.complete(vec![completion]).await {
            Ok(_) if finished => self.queue.finished(std::slice::from_ref(&task.id)),
            Ok(_) => {}
            // The lease will expire and the sweep will rescue the task.
            Err(e) => tracing::error!(task = %task.id, error = %e, "cannot record a task's end"),
        }
    }
}

/// How a run ended, before it is recorded.
enum Ended {
    Ran(crate::runtime::TaskReport, retry::Decision),
    Revoked,
    Unavailable,
}

/// The id of a finished (or aborted, or panicked) worker task.
fn finished_id(done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match done {
        Ok((id, ())) => id,
        Err(e) => e.id(),
    }
}
