//! The worker pool: claims due tasks in batches and runs each in its own
//! sandbox, up to `concurrency` at once.
//!
//! The loop is a `select!` over shutdown, a wake-up (a task was queued or a
//! slot freed) and a timer (the next delayed task, or the lease sweep).
//!
//! Claims run ahead of the sandboxes while tasks are short: a node then
//! holds up to `concurrency` running tasks plus [`AHEAD`] × `concurrency`
//! claimed ones waiting for a slot, so that a slot that frees up finds its
//! next task here rather than a store round trip away. Each claim takes as
//! many tasks as there is room for, so claims batch under load. A task's
//! ending goes to the [`Completer`], which writes endings in batches, and
//! its slot frees at once.
//!
//! Leases: a claimed task's lease lasts [`LEASE`], and the worker renews
//! the leases of its running tasks every [`HEARTBEAT`]. A task whose lease
//! ran out belonged to a worker that died (or lost its store), and any
//! node's sweep moves it to `retry` (or `failure` when out of attempts). A
//! completion presents its lease: once rescued, a stale worker's
//! completion is refused (fencing), and a worker whose heartbeat finds a
//! lease gone stops that task at once rather than run it to an ending
//! nobody will record.
//!
//! Revoking a running task: the node that takes the request records it in
//! the store and signals [`Signals::stop`]; the worker running the task
//! hears it at once (through PostgreSQL's `NOTIFY` when it is another node)
//! or at its next heartbeat, which reads revoke requests with the leases.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, oneshot, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::completer::Completer;
use crate::metrics::Metrics;
use crate::queue::{Parent, Queue};
use crate::registry::Registry;
use crate::retry;
use crate::runtime::{Outcome, Runtime, TaskInput};
use crate::signals::Signals;
use crate::store::{ClaimRequest, ClaimedTask, Completion, Store, TaskState, UPSTREAM_REASON, to_millis};
use crate::task::TaskId;
use crate::tenant::Tenants;
use crate::wire::{Event, EventKind};
use tracing::Instrument as _;

/// How long a lease lasts without a heartbeat. Default 10 s.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a worker renews its running tasks' leases (stopping those it
/// lost and those someone asked to revoke), sweeps expired ones and
/// recounts waiting tasks. Default 2 s.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// The longest the loop sleeps without looking at the store: a fallback for
/// a lost notification of queued tasks. Default 250 ms.
pub const POLL_FALLBACK: Duration = Duration::from_millis(250);
/// How soon a worker claims again after a claim that skipped tenants
/// another node was claiming for. Default 5 ms.
pub const CONTENDED_RETRY: Duration = Duration::from_millis(5);
/// The most tasks one claim takes. Default 256.
pub const MAX_CLAIM: usize = 256;
/// Claimed tasks a node holds beyond its running ones, waiting for a slot,
/// as a multiple of its `concurrency`, while its tasks are short (see
/// [`SHORT`]). They are `started` in the store (under this node's lease)
/// and count against their tenant's `max_running`. Bigger claims cost less
/// per task (on PostgreSQL a claim of 256 costs about a third per task of
/// a claim of 32). Default 7.
pub const AHEAD: usize = 7;
/// Tasks are short while their recent mean run time (a moving average over
/// about the last 8) is below this; only then does a node claim ahead, so
/// that a task claimed ahead waits at most about `AHEAD` × 1 ms for its slot
/// and long tasks never wait behind others a node holds. Default 1 ms.
pub const SHORT: Duration = Duration::from_millis(1);
/// While some claimed tasks still wait here, the loop claims again only
/// once this share of its room is free (1/4), so that a busy node claims in
/// batches rather than a task at a time.
const REFILL_DIVISOR: usize = 4;

/// Why a running task is stopped before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Someone revoked it: it ends `revoked`.
    Revoked,
    /// Its lease is gone (rescued by another node after this one lost the
    /// store for too long): its ending would be refused, so it stops now.
    LeaseLost,
}

/// The task attempts running on this node, by lease (two attempts of one
/// task may overlap here, when one was rescued from under this node), with
/// their task ids and a way to stop each.
#[derive(Default)]
struct Running(Mutex<HashMap<String, (TaskId, oneshot::Sender<Stop>)>>);

impl Running {
    /// Records an attempt starting here, and answers how it is stopped;
    /// `None` if the attempt of that lease runs here already (see
    /// [`Workers::run_task`]): that run stays the only one.
    fn add(&self, id: &str, lease: &str) -> Option<oneshot::Receiver<Stop>> {
        let mut running = self.0.lock().unwrap();
        if running.contains_key(lease) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        running.insert(lease.to_owned(), (id.to_owned(), tx));
        Some(rx)
    }

    fn remove(&self, lease: &str) {
        self.0.lock().unwrap().remove(lease);
    }

    /// Stops every attempt of task `id` running here.
    fn stop(&self, id: &str, why: Stop) {
        let mut running = self.0.lock().unwrap();
        let leases: Vec<String> = running.iter().filter(|(_, (task, _))| task == id).map(|(l, _)| l.clone()).collect();
        for lease in leases {
            if let Some((_, stop)) = running.remove(&lease) {
                let _ = stop.send(why);
            }
        }
    }

    /// Stops the attempt holding `lease`; false if none runs here (any
    /// more: it may have ended since the lease was looked at).
    fn stop_lease(&self, lease: &str, why: Stop) -> bool {
        match self.0.lock().unwrap().remove(lease) {
            Some((_, stop)) => {
                let _ = stop.send(why);
                true
            }
            None => false,
        }
    }

    fn leases(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
}

/// Runs tasks from the store.
pub struct Workers {
    pub(crate) node: String,
    pub(crate) concurrency: usize,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) runtime: Arc<Runtime>,
    /// Where running tasks' `queue-task` calls go.
    pub(crate) queue: Arc<Queue>,
    pub(crate) tenants: Arc<Tenants>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) signals: Arc<Signals>,
    pub(crate) clock: Arc<dyn Clock>,
    running: Running,
    /// The moving average of recent run times, in µs.
    recent_us: AtomicU64,
    /// Whether a heartbeat has recorded this node in the store yet.
    beaten: std::sync::atomic::AtomicBool,
    /// Deletes finished tasks past their retention, a batch per heartbeat.
    pruner: crate::retention::Pruner,
    /// Workers lost under one task after which it is quarantined.
    poison_after: u32,
    /// The named queues claimed from (`None`: every queue).
    queues: Option<Vec<String>>,
    /// What this node's workers did per minute, written at each heartbeat.
    activity: crate::activity::Activity,
    /// Running tasks' progress reports, written at each heartbeat.
    progress: Arc<crate::progress::Board>,
}

impl Workers {
    /// Workers of `node` with `concurrency` slots.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: String,
        concurrency: usize,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        runtime: Arc<Runtime>,
        queue: Arc<Queue>,
        tenants: Arc<Tenants>,
        metrics: Arc<Metrics>,
        signals: Arc<Signals>,
        clock: Arc<dyn Clock>,
        poison_after: u32,
        queues: Option<Vec<String>>,
    ) -> Self {
        Self {
            activity: crate::activity::Activity::new(&node),
            node,
            concurrency,
            store,
            registry,
            runtime,
            queue,
            tenants,
            metrics,
            signals,
            clock,
            running: Running::default(),
            // Until tasks are seen to be short, no claiming ahead.
            recent_us: AtomicU64::new(2 * SHORT.as_micros() as u64),
            beaten: std::sync::atomic::AtomicBool::new(false),
            pruner: crate::retention::Pruner::default(),
            poison_after,
            // No queue named: none served, which no node means; every queue.
            // Each once: the grouped claim walks each queue named.
            queues: queues.filter(|q| !q.is_empty()).map(|mut q| {
                q.sort();
                q.dedup();
                q
            }),
            progress: Arc::default(),
        }
    }

    /// Whether recent tasks ran for less than [`SHORT`] on average.
    fn short_tasks(&self) -> bool {
        self.recent_us.load(Ordering::Relaxed) < SHORT.as_micros() as u64
    }

    /// Folds a run time into the moving average (weight 1/8).
    fn ran_for(&self, time: Duration) {
        let sample = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .recent_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| Some(mean - mean / 8 + sample / 8));
    }

    /// Runs until `shutdown` turns true; then stops claiming, lets running
    /// tasks finish within `grace`, and puts the rest back in line.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) -> anyhow::Result<()> {
        // Sandboxes at once, and claimed tasks held (running or waiting).
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let room = self.concurrency.saturating_mul(1 + AHEAD);
        let held = Arc::new(Semaphore::new(room));
        let (completer, completing) = Completer::spawn(self.store.clone(), self.signals.clone());
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut stops = self.signals.stops();
        let mut next_sweep = tokio::time::Instant::now();
        // The heartbeat runs beside this loop: renewing tens of thousands of
        // leases takes a while, and claims go on meanwhile.
        let mut beating: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            if crate::signals::stopping(&shutdown) {
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= next_sweep {
                // One still running when the next is due: that one is skipped.
                if beating.as_ref().is_none_or(|b| b.is_finished()) {
                    let this = self.clone();
                    beating = Some(tokio::spawn(async move {
                        // A store failure must not stop the workers: log it and go on.
                        if let Err(e) = this.heartbeat().await {
                            tracing::error!(error = %e, "heartbeat failed");
                        }
                    }));
                }
                next_sweep = now + HEARTBEAT;
            }
            let mut sleep = POLL_FALLBACK.min(next_sweep - now);
            let holding = room - held.available_permits();
            let running = self.concurrency - slots.available_permits();
            let allowed = if self.short_tasks() { room } else { self.concurrency };
            if let Some(free) = claim_size(allowed, holding, running) {
                let asked_at = std::time::Instant::now();
                let claim = match self.claim(free).await {
                    Ok(claim) => {
                        tracing::debug!(
                            asked = free,
                            got = claim.tasks.len(),
                            holding,
                            running,
                            took_us = asked_at.elapsed().as_micros() as u64,
                            "claimed"
                        );
                        claim
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim tasks");
                        crate::store::Claim::default()
                    }
                };
                if claim.contended && claim.tasks.len() < free {
                    sleep = sleep.min(CONTENDED_RETRY);
                }
                // A full claim: more may be due, and there may be room for
                // them now (long tasks, such as ones waiting on the network,
                // free no slot to wake this loop).
                if claim.tasks.len() == free {
                    sleep = Duration::ZERO;
                }
                // A task due later: wake for it. One due now but not claimed
                // (its tenant has no free slot) waits for a slot to free up,
                // not in a busy loop.
                // A job's next token (its rate): wake for it too.
                for next in [claim.next_run_at, claim.wake_at].into_iter().flatten() {
                    let wait = next - self.clock.now_millis();
                    if wait > 0 {
                        sleep = sleep.min(Duration::from_millis(wait as u64));
                    }
                }
                for task in claim.tasks {
                    let hold = held.clone().acquire_owned().await?;
                    self.tenants.claimed(&task.tenant, 1);
                    let (this, slots, completer) = (self.clone(), slots.clone(), completer.clone());
                    // What this task logs, the engine's lines too, carries it.
                    let span = tracing::info_span!(
                        "task",
                        id = %task.id,
                        tenant = %task.tenant,
                        job = %task.job,
                        attempt = task.attempt
                    );
                    // Boxed: the task's future (its sandbox's included)
                    // is large, and the runtime copied the whole of it
                    // when it spawned it, ended it and reaped it (seen:
                    // 5 % of this process's time in those copies).
                    tasks.spawn(
                        Box::pin(async move {
                            // Its end wakes the loop through its reaping
                            // (`join_next` below), for the room it leaves
                            // here; the completer wakes it again once the
                            // end is in the store, for the room it leaves
                            // under the limits there.
                            this.run_task(task, &slots, &completer).await;
                            drop(hold);
                        })
                        .instrument(span),
                    );
                }
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = self.signals.queued.notified() => {}
                Some(_) = tasks.join_next() => {
                    // Reap every task that has finished, not just one.
                    while tasks.try_join_next().is_some() {}
                }
                stop = stops.recv() => match stop {
                    Ok(id) => self.running.stop(&id, Stop::Revoked),
                    // Missed some: the next heartbeat reads them from the store.
                    Err(broadcast::error::RecvError::Lagged(_)) => next_sweep = tokio::time::Instant::now(),
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                _ = tokio::time::sleep(sleep) => {}
            }
        }

        if let Some(beating) = beating {
            let _ = beating.await;
        }
        tracing::info!(running = tasks.len(), "shutting down: no more claims; waiting for running tasks");
        let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            let unfinished = self.running.leases();
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let released = self.store.release(unfinished, self.clock.now_millis()).await?;
            tracing::warn!(released, "grace period over: released the tasks still running");
        }
        // The endings handed over are written before the node stops.
        drop(completer);
        completing.await?;
        if let Err(e) = self.activity.flush(&*self.store, self.clock.now_millis()).await {
            tracing::warn!(error = %e, "cannot record this node's activity");
        }
        Ok(())
    }

    /// Renews this worker's leases, stopping the tasks whose lease was lost
    /// and those someone asked to revoke; rescues tasks whose lease ran out
    /// (theirs died); revokes queued tasks whose expiry passed (no claim
    /// ever takes one); recounts waiting tasks for the quotas; records this
    /// node alive with the versions it compiled; settles held tasks; prunes
    /// finished tasks past their retention; writes this node's activity.
    async fn heartbeat(&self) -> anyhow::Result<()> {
        // First: a step below that fails must not keep the counts from
        // being written (nor from being forgotten once written).
        if let Err(e) = self.activity.flush(&*self.store, self.clock.now_millis()).await {
            tracing::warn!(error = %e, "cannot record this node's activity");
        }
        let live = self.running.leases();
        if !live.is_empty() {
            let held = self
                .store
                .extend_leases(live.clone(), self.clock.now_millis().saturating_add(to_millis(LEASE)))
                .await?;
            // By lease: a node may hold tens of thousands (tasks waiting on
            // the network), and a search per lease was quadratic.
            let held: HashMap<&str, bool> = held.iter().map(|h| (h.lease.as_str(), h.revoke_requested)).collect();
            for lease in &live {
                match held.get(lease.as_str()).copied() {
                    // Not held: lost, unless the task ended meanwhile (its
                    // ending clears the lease, and it left `running` first).
                    None => {
                        if self.running.stop_lease(lease, Stop::LeaseLost) {
                            tracing::warn!(lease = %lease, "lost a task's lease: stopped it");
                        }
                    }
                    Some(true) => {
                        self.running.stop_lease(lease, Stop::Revoked);
                    }
                    Some(false) => {}
                }
            }
        }
        let rescued = self.store.rescue(self.clock.now_millis(), false, self.poison_after).await?;
        if !rescued.is_empty() {
            self.signals.finished_some();
            // What became of each: retried, failed (out of attempts, or
            // poisoned) or revoked (asked meanwhile).
            let now = self.clock.now_millis();
            let events = rescued.into_iter().map(|r| {
                let kind = match r.state {
                    TaskState::Retry => EventKind::TaskRetrying,
                    TaskState::Revoked => EventKind::TaskRevoked,
                    _ => EventKind::TaskFailed,
                };
                (r.tenant, Event::task(kind, now, &r.id, &r.job).attempt(r.attempt).reason(&r.reason))
            });
            self.signals.events.emit_all(events);
        }
        let expired = self.store.expire(self.clock.now_millis()).await?;
        if !expired.is_empty() {
            self.signals.finished(&expired.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
            let now = self.clock.now_millis();
            let events =
                expired.into_iter().map(|e| (e.tenant, Event::task(EventKind::TaskExpired, now, &e.id, &e.job)));
            self.signals.events.emit_all(events);
        }
        let waiting = self.store.waiting_by_tenant().await?.into_iter().collect();
        self.tenants.recount(waiting);
        // Alive, with the versions compiled here since the last beat (they
        // count this node as ready to run them); the first beat replaces
        // what an earlier process of the same name recorded.
        let compiled = self.registry.take_compiled();
        let first = !self.beaten.swap(true, Ordering::Relaxed);
        if let Err(e) = self.store.beat(&self.node, self.clock.now_millis(), compiled.clone(), first).await {
            self.registry.give_back(compiled);
            if first {
                self.beaten.store(false, Ordering::Relaxed);
            }
            tracing::warn!(error = %e, "cannot record this node alive");
        }
        // Running tasks' progress, and the children of attempts that ended
        // without settling them (before the chores below, which may fail).
        let now = self.clock.now_millis();
        let reported = self.progress.flush(&*self.store, now).await?;
        self.signals.events.emit_all(reported);
        let (released, discarded) = self.store.settle_children(now).await?;
        if released + discarded > 0 {
            tracing::debug!(released, discarded, "settled the children of attempts that ended elsewhere");
        }
        if released > 0 {
            self.signals.queued.notify_one();
        }
        // Workflows one of whose steps ended without success: their later
        // stages never run (a failure here leaves the chores below be).
        match self.store.abort_workflows(now).await {
            Ok(aborted) if !aborted.is_empty() => {
                self.signals.finished(&aborted.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
                let events = aborted.into_iter().map(|e| {
                    let event = Event::task(EventKind::TaskRevoked, now, &e.id, &e.job).reason(UPSTREAM_REASON);
                    (e.tenant, event)
                });
                self.signals.events.emit_all(events);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot revoke the later stages of failed workflows"),
        }
        // Held tasks whose settling is lost or belongs here (in the
        // background: settling may take a while).
        self.queue.settle_orphans(self.store.held_uploads().await?);
        let quotas = self.tenants.list().into_iter().collect();
        let now = self.clock.now_millis();
        let pruned = self.pruner.prune(&*self.store, &quotas, self.tenants.defaults(), now).await?;
        self.metrics.pruned(pruned);
        self.store.prune_activity(now.saturating_sub(crate::activity::KEPT)).await?;
        self.store.prune_uniques(now).await?;
        Ok(())
    }

    /// Claims up to `limit` tasks, fairly across tenants and within each
    /// tenant's `max_running` across the cluster (the store counts).
    async fn claim(&self, limit: usize) -> anyhow::Result<crate::store::Claim> {
        let now = self.clock.now_millis();
        let request = ClaimRequest {
            node: self.node.clone(),
            limit,
            now,
            lease_until: now.saturating_add(to_millis(LEASE)),
            max_running: self.tenants.max_running(),
            queues: self.queues.clone(),
        };
        let claim = self.store.claim(request).await?;
        for task in &claim.tasks {
            self.activity.started(&task.tenant, &task.job, task.due_at, now);
        }
        let now = self.clock.now_millis();
        let started = claim
            .tasks
            .iter()
            .map(|t| (t.tenant.clone(), Event::task(EventKind::TaskStarted, now, &t.id, &t.job).attempt(t.attempt)));
        self.signals.events.emit_all(started);
        Ok(claim)
    }

    /// Runs one claimed task in one of the `slots` and hands how it ended
    /// to the `completer`.
    async fn run_task(&self, task: ClaimedTask, slots: &Semaphore, completer: &Completer) {
        // Running from the claim on: the heartbeat renews the lease (and
        // hears of revokes) while the task waits for a slot and while the
        // job's version loads, which may compile.
        // A lease is the node, the task and the attempt: it comes back only
        // when a claim's commit was lost with the database (claims do not
        // wait for the disk, `crate::store::postgres`) and this node claims
        // the same attempt again while running it. The run here ends it.
        let Some(mut stop) = self.running.add(&task.id, &task.lease) else {
            tracing::warn!(task = %task.id, lease = %task.lease, "claimed again while running here: left to that run");
            return;
        };
        let quotas = match self.tenants.get(&task.tenant).await {
            Ok(Some(quotas)) => Ok(quotas),
            Ok(None) => Err(format!("the task's tenant `{}` does not exist", task.tenant)),
            Err(e) => Err(e.to_string()),
        };
        let job = self.registry.version(&task.version).await;
        // Read for each task, so that a secret set on any node is seen by
        // the next task; only for jobs that declare some.
        let secrets = match &job {
            Ok(job) if !job.metadata().secrets.is_empty() => self
                .store
                .secrets(&task.tenant, &job.metadata().secrets)
                .await
                .map_err(|e| format!("cannot read the tenant's secrets: {e}")),
            _ => Ok(HashMap::new()),
        };
        // The children this attempt queues, which its ending settles.
        let mut children = None;
        let ended = match (job, quotas.and_then(|quotas| Ok((quotas, secrets?)))) {
            (Ok(job), Ok((quotas, secrets))) => {
                let parent = Parent {
                    id: task.id.clone(),
                    root: task.root_task.clone().unwrap_or_else(|| task.id.clone()),
                    depth: task.depth,
                    attempt: task.attempt,
                    queue: task.queue.clone(),
                };
                let queue = children.insert(self.queue.children_of(task.tenant.clone(), parent)).clone();
                let input = TaskInput {
                    task_id: task.id.clone(),
                    attempt: task.attempt,
                    args: task.args.clone(),
                    limits: quotas.cap(self.runtime.task_limits(&job)),
                    children: queue,
                    progress: Arc::new(crate::progress::Reporter::new(
                        self.progress.clone(),
                        &task.lease,
                        &task.id,
                        &task.tenant,
                        &task.job,
                    )),
                    egress: quotas.grant(job.metadata().allowed_hosts.as_ref()),
                    secrets,
                };
                // Wait for a sandbox slot, unless stopped meanwhile.
                let slot = tokio::select! {
                    slot = slots.acquire() => Ok(slot),
                    Ok(why) = &mut stop => Err(why),
                };
                match slot {
                    // The slots are never closed.
                    Ok(Err(_)) | Err(Stop::LeaseLost) => return,
                    Err(Stop::Revoked) => Ended::Revoked,
                    Ok(Ok(_slot)) => tokio::select! {
                        report = self.runtime.run(&job, input) => {
                            self.ran_for(report.wall_time);
                            let policy = &job.metadata().retry;
                            let decision =
                                retry::decide(policy, task.max_retries, task.attempt, &report.outcome, retry::jitter());
                            Ended::Ran(report, decision)
                        }
                        Ok(why) = &mut stop => match why {
                            Stop::Revoked => Ended::Revoked,
                            // Another node has the task now: record nothing.
                            Stop::LeaseLost => return,
                        },
                    },
                }
            }
            (Err(e), _) => {
                tracing::error!(task = %task.id, job = %task.job, error = %e, "cannot load the task's job version");
                Ended::Unavailable(format!("the version {} of job {} cannot be loaded", task.version, task.job))
            }
            (_, Err(e)) => {
                tracing::error!(task = %task.id, error = %e, "cannot read the task's tenant or its secrets");
                Ended::Unavailable(e)
            }
        };
        self.running.remove(&task.lease);
        let at = self.clock.now_millis();
        let ended_with = |state, reason: &str, error: Option<String>| Completion {
            id: task.id.clone(),
            tenant: task.tenant.clone(),
            job: task.job.clone(),
            attempt: task.attempt,
            lease: task.lease.clone(),
            state,
            reason: reason.into(),
            result: None,
            error,
            fuel: 0,
            wall_time_us: 0,
            http: Default::default(),
            log: String::new(),
            finished_at: at,
            retry_at: None,
            children: children.as_ref().is_some_and(|c| c.any()),
            workflow: task.workflow,
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
                    http: report.http,
                    log: report.log,
                    retry_at: decision.retry_in.map(|d| at.saturating_add(to_millis(d))),
                    ..ended_with(decision.state, "", None)
                }
            }
            Ended::Revoked => ended_with(TaskState::Revoked, "revoked", Some("revoked while running".into())),
            Ended::Unavailable(why) => ended_with(TaskState::Failure, "job-unavailable", Some(why)),
        };
        self.activity.ended(
            &task.tenant,
            &task.job,
            completion.state,
            completion.fuel,
            completion.wall_time_us,
            completion.finished_at,
        );
        self.metrics.ended(
            &task.tenant,
            &task.job,
            completion.state.as_str(),
            completion.fuel,
            completion.http,
            Duration::from_micros(completion.wall_time_us),
        );
        completer.complete(completion).await;
    }
}

/// How a run ended, before it is recorded.
enum Ended {
    Ran(crate::runtime::TaskReport, retry::Decision),
    Revoked,
    /// The job's version or the task's tenant could not be read: why.
    Unavailable(String),
}

/// How many tasks to claim, if any, with room for `allowed` tasks held of
/// which `holding` are (and `running` of those run): while some claimed
/// tasks wait here, only once a batch's worth is free (a quarter of the
/// room, at most one claim, so that a large concurrency does not wait for
/// a room no claim can fill); at most [`MAX_CLAIM`] at once.
fn claim_size(allowed: usize, holding: usize, running: usize) -> Option<usize> {
    let room_left = allowed.saturating_sub(holding);
    let refill = if holding > running { (allowed / REFILL_DIVISOR).clamp(1, MAX_CLAIM) } else { 1 };
    (room_left >= refill).then(|| room_left.min(MAX_CLAIM))
}

#[cfg(test)]
mod claim_size_tests {
    use super::{MAX_CLAIM, claim_size};

    #[test]
    fn a_large_concurrency_claims_again_while_claimed_tasks_wait_for_their_slot() {
        // 10,000 slots, 256 claimed and not yet running: room for more.
        assert_eq!(claim_size(10_000, 256, 0), Some(MAX_CLAIM));
        // Small: wait for a quarter of the room to free up.
        assert_eq!(claim_size(64, 60, 50), None);
        assert_eq!(claim_size(64, 48, 40), Some(16));
        // Everything claimed is running: claim for every free place.
        assert_eq!(claim_size(64, 63, 63), Some(1));
        assert_eq!(claim_size(64, 64, 64), None);
        assert_eq!(claim_size(0, 0, 0), None);
    }
}

#[cfg(test)]
mod running_tests {
    use super::{Running, Stop};

    #[test]
    fn an_attempt_claimed_again_while_it_runs_here_is_not_run_twice() {
        let running = Running::default();
        let mut first = running.add("7", "n:7:1").expect("the first run");
        assert!(running.add("7", "n:7:1").is_none(), "the same lease again: left to the run here");
        // The run here is still the one a revoke stops.
        assert!(running.stop_lease("n:7:1", Stop::Revoked));
        assert_eq!(first.try_recv(), Ok(Stop::Revoked));
        // Another attempt of the task runs beside it (a rescue's).
        assert!(running.add("7", "n:7:2").is_some());
    }
}
