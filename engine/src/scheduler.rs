//! The periodic scheduler: queues the tasks of periodic jobs when their own
//! `is-due` export says so, for the whole cluster from the store.
//!
//! Each periodic job has a schedule in the store, made when the job is
//! uploaded (through any node) and deleted with it: `last_run_at`, and
//! `next_due_at`, when its `is-due` is asked next. A scheduler claims the
//! schedules that are due (on PostgreSQL with `SKIP LOCKED`; a claim lasts
//! [`CLAIM_LEASE`], so one held by a node that died is taken over after
//! that), asks each job's `is-due` about `last_run_at` (before the first
//! run, the registration time: pulsar starts counting when the scheduler
//! first sees a job), and writes the answer: the new `next_due_at`, and when
//! due, the new `last_run_at` with the task, in one transaction. The write
//! applies only if the schedule is still this claim's and `last_run_at` is
//! still what the claim read, so no tick runs twice, across nodes and
//! restarts, and a deleted or replaced job's schedule is never revived. A
//! tick missed while every node was down is due at once when one is back.
//!
//! The work per wake-up is proportional to the schedules that are due; the
//! scheduler sleeps until the soonest `next_due_at` (or until a schedule
//! changes anywhere, [`Signals::schedules`]), so a job due every second runs
//! every second.
//!
//! No tenant can starve or spin it: asks run concurrently, at most
//! [`ASKS_PER_TENANT`] of one tenant's at once (a slow `is-due` delays only
//! its own tenant), and a job is asked again no sooner than [`MIN_RECHECK`]
//! after an answer of "not due", and [`MIN_PERIOD`] after one that queued a
//! task, however small a `next-run-in` it answers. `next-run-in` is capped
//! at [`MAX_NEXT`].
//!
//! A periodic job that forbids overlap gets no new task while its previous
//! one is queued or running: that tick is recorded as skipped.
//!
//! Schedules made as data ([`crate::plan`]) are claimed and written the
//! same way; their tick computes the next time from the plan instead of
//! asking a sandbox, and queues the plan's job with the plan's args.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};

use crate::clock::Clock;
use crate::plan::Plan;
use crate::queue::{Queue, QueueFailure};
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::signals::Signals;
use crate::store::{Inserted, Millis, ScheduleClaim, ScheduleRow, ScheduleTick, Store, TickWrite, to_millis};
use crate::task::QueueOptions;

/// The longest the scheduler sleeps, even when nothing is due sooner: it
/// bounds the effect of a clock jump. Default 60 s.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long a claim on due schedules lasts: another node takes over the
/// schedules of a node that died mid-tick after this. Default 10 s.
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);
/// The most schedules one claim takes. Default 256.
pub const MAX_CLAIM: usize = 256;
/// Asks of one tenant's jobs that run at once. Default 2.
pub const ASKS_PER_TENANT: usize = 2;
/// Asks that run at once in all. Default 32.
pub const MAX_ASKS: usize = 32;
/// The soonest a job is asked again after an answer of "not due". Default 100 ms.
pub const MIN_RECHECK: Duration = Duration::from_millis(100);
/// The soonest a job is asked again after a tick that ran it: a job runs at
/// most once per this period. Default 1 s.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);
/// The latest a job is asked again, whatever `next-run-in` it answered (a
/// regular job's "never" included). Default 366 days.
pub const MAX_NEXT: Duration = Duration::from_secs(366 * 24 * 3600);
/// When a job's `is-due` failed, how long before it is asked again. Default 10 s.
pub const RETRY_FAILED: Duration = Duration::from_secs(10);

/// What one tick did for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickResult {
    /// Not due; the next run is due in this long.
    NotDue(Duration),
    /// Due: a task was queued.
    Queued(String),
    /// Due, but the job forbids overlap and this task is still live.
    SkippedOverlap(String),
    /// The schedule stopped being this scheduler's (the job was deleted or
    /// replaced, or another scheduler took it over): nothing was written.
    TakenElsewhere,
    /// `is-due` or queueing failed (logged); asked again after [`RETRY_FAILED`].
    Failed(String),
}

/// A tick decided, not yet written.
struct Decided {
    tick: ScheduleTick,
    /// What the tick means if it is written.
    result: TickResult,
}

/// Queues the tasks of periodic jobs.
pub struct Scheduler {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) signals: Arc<Signals>,
    /// Where each tenant is charged the time its `is-due` calls take.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// This node's name, in claims.
    pub(crate) node: String,
    claims: AtomicU64,
    /// When the loop plans to wake next (ms): a written tick due before
    /// that wakes it early.
    wake_at: AtomicI64,
    asks: Arc<Semaphore>,
    per_tenant: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Scheduler {
    /// The scheduler of `node`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        runtime: Arc<Runtime>,
        queue: Arc<Queue>,
        clock: Arc<dyn Clock>,
        signals: Arc<Signals>,
        metrics: Arc<crate::metrics::Metrics>,
        node: String,
    ) -> Self {
        Self {
            store,
            registry,
            runtime,
            queue,
            clock,
            signals,
            metrics,
            node,
            claims: AtomicU64::new(0),
            wake_at: AtomicI64::new(0),
            asks: Arc::new(Semaphore::new(MAX_ASKS)),
            per_tenant: Mutex::default(),
        }
    }

    /// Claims the schedules due now (up to [`MAX_CLAIM`]); returns them,
    /// when the next one is due, and the claim (its name and end).
    async fn claim(&self) -> Result<(Vec<ScheduleRow>, Option<Millis>, Claimed), crate::store::StoreError> {
        let now = self.clock.now_millis();
        let claim = format!("{}:{}", self.node, self.claims.fetch_add(1, Ordering::Relaxed));
        let request = ScheduleClaim {
            claim: claim.clone(),
            now,
            limit: MAX_CLAIM,
            lease_until: now.saturating_add(to_millis(CLAIM_LEASE)),
        };
        let until = request.lease_until;
        let claimed = self.store.claim_schedules(request).await?;
        // A schedule another scheduler holds is free again as soon as that
        // one writes its tick (or dies): look again soon, not at the end of
        // its claim.
        let held = claimed.held_until.map(|at| at.min(after(now, HELD_RECHECK)));
        let next = match (claimed.next_due_at, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((claimed.due, next, Claimed { name: claim, until }))
    }

    /// Runs one tick of every schedule due now, and waits for all of them.
    /// Returns what happened per schedule, by its name (a periodic job's
    /// own schedule by its job's name) (the loop in [`Scheduler::run`]
    /// does the same without waiting for slow asks; tests drive this).
    pub async fn tick(&self) -> Vec<(String, TickResult)> {
        let (due, _, claim) = match self.claim().await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim schedules");
                return Vec::new();
            }
        };
        let asks = due.into_iter().map(|schedule| self.ask(schedule, &claim));
        let decided = futures_util::future::join_all(asks).await;
        let names: Vec<String> = decided.iter().map(|d| shown(&d.tick)).collect();
        names.into_iter().zip(self.write(decided).await).collect()
    }

    /// Asks one claimed schedule's `is-due`, within its tenant's bound, and
    /// decides its tick.
    async fn ask(&self, schedule: ScheduleRow, claim: &Claimed) -> Decided {
        let tenant_bound = self
            .per_tenant
            .lock()
            .unwrap()
            .entry(schedule.tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(ASKS_PER_TENANT)))
            .clone();
        let _tenant = tenant_bound.acquire_owned().await.expect("never closed");
        let _any = self.asks.clone().acquire_owned().await.expect("never closed");
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let mut tick = ScheduleTick {
            tenant: schedule.tenant.clone(),
            job: schedule.job.clone(),
            name: schedule.name.clone(),
            claim: claim.name.clone(),
            expected_last: schedule.last_run_at,
            ran_at: None,
            next_due_at: after(now_ms, RETRY_FAILED),
            task: None,
        };
        if now_ms > claim.until {
            // Waited past the claim: another scheduler may have the schedule
            // now. Hand it back due, unasked.
            tick.next_due_at = now_ms;
            return Decided { tick, result: TickResult::TakenElsewhere };
        }
        if let Some(plan) = &schedule.plan {
            return self.follow(&schedule, plan, tick, now_ms).await;
        }
        let Some(job) = self.registry.get(&schedule.tenant, &schedule.job) else {
            // Deleted (the write will find the schedule gone), or uploaded
            // through another node and not in this node's registry yet.
            tick.next_due_at = after(now_ms, MIN_RECHECK);
            return Decided { tick, result: TickResult::Failed("the job is not in this node's registry yet".into()) };
        };
        if job.registered_at < schedule.since {
            // A newer version was uploaded through another node and is not
            // in this node's registry yet: never ask the old one.
            tick.next_due_at = after(now_ms, MIN_RECHECK);
            return Decided {
                tick,
                result: TickResult::Failed("a newer version is not in this node's registry yet".into()),
            };
        }
        let last = schedule.last_run_at.unwrap_or(schedule.since);
        let last = chrono::DateTime::from_timestamp_millis(last).unwrap_or(now);
        let asking = std::time::Instant::now();
        let answer = self.runtime.is_due(&job.component, last, now).await;
        self.metrics.asked(&schedule.tenant, asking.elapsed());
        let due = match answer {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(tenant = %schedule.tenant, job = %schedule.job, error = %e, "is-due failed");
                return Decided { tick, result: TickResult::Failed(e.to_string()) };
            }
        };
        let next_run_in = due.next_run_in.min(MAX_NEXT);
        if !due.is_due {
            tick.next_due_at = after(now_ms, next_run_in.max(MIN_RECHECK));
            return Decided { tick, result: TickResult::NotDue(next_run_in) };
        }
        match self.queue.prepare(&schedule.tenant, &schedule.job, "{}", &QueueOptions::default(), None).await {
            Ok(task) => {
                tick.ran_at = Some(now_ms);
                tick.next_due_at = after(now_ms, next_run_in.max(MIN_PERIOD));
                tick.task = Some(task);
                // The result is known once written.
                Decided { tick, result: TickResult::TakenElsewhere }
            }
            Err(QueueFailure::Rejected(e)) => Decided { tick, result: TickResult::Failed(e.to_string()) },
            Err(QueueFailure::Store(e)) => Decided { tick, result: TickResult::Failed(e.to_string()) },
        }
    }

    /// Decides the tick of a named schedule: queues its job with its args,
    /// due again at the plan's next time after now.
    async fn follow(&self, schedule: &ScheduleRow, plan: &str, mut tick: ScheduleTick, now_ms: Millis) -> Decided {
        let plan: Plan = match serde_json::from_str(plan) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(tenant = %schedule.tenant, schedule = %schedule.name, error = %e, "corrupt schedule");
                return Decided { tick, result: TickResult::Failed(format!("corrupt schedule: {e}")) };
            }
        };
        // Never sooner than MIN_RECHECK, whatever the plan says: no tick
        // can spin the scheduler.
        let next = plan.when.next_after(now_ms, schedule.since).map(|at| at.max(after(now_ms, MIN_RECHECK)));
        let Some(next) = next else {
            // Never again (a cron expression past its last match): paused.
            tick.next_due_at = crate::plan::PAUSED;
            return Decided { tick, result: TickResult::NotDue(MAX_NEXT) };
        };
        tick.next_due_at = next;
        let options = QueueOptions { queue: plan.queue.clone(), ..Default::default() };
        match self.queue.prepare(&schedule.tenant, &schedule.job, &plan.args, &options, None).await {
            Ok(task) => {
                tick.ran_at = Some(now_ms);
                tick.task = Some(task);
                Decided { tick, result: TickResult::TakenElsewhere }
            }
            Err(e) => {
                // Asked again at its next time, or sooner if that is far.
                tick.next_due_at = next.min(after(now_ms, RETRY_FAILED));
                let e = match e {
                    QueueFailure::Rejected(e) => e.to_string(),
                    QueueFailure::Store(e) => e.to_string(),
                };
                tracing::warn!(tenant = %schedule.tenant, schedule = %schedule.name, error = %e, "cannot queue");
                Decided { tick, result: TickResult::Failed(e) }
            }
        }
    }

    /// Writes decided ticks in one transaction; returns what each did.
    async fn write(&self, decided: Vec<Decided>) -> Vec<TickResult> {
        let (ticks, results): (Vec<_>, Vec<_>) = decided.into_iter().map(|d| (d.tick, d.result)).unzip();
        let names: Vec<(String, String)> = ticks.iter().map(|t| (t.tenant.clone(), t.job.clone())).collect();
        let written = match self.queue.write_ticks(ticks).await {
            Ok(written) => written,
            Err(e) => {
                // The claims run out and the schedules are asked again.
                tracing::warn!(error = %e, "cannot write scheduler ticks");
                return results.into_iter().map(|_| TickResult::Failed(e.to_string())).collect();
            }
        };
        let results: Vec<TickResult> = written
            .into_iter()
            .zip(results)
            .map(|(written, decided)| match written {
                TickWrite::Lost => TickResult::TakenElsewhere,
                TickWrite::Written(Some(Inserted::Task(id))) => TickResult::Queued(id),
                TickWrite::Written(Some(Inserted::Duplicate(id))) => TickResult::SkippedOverlap(id),
                TickWrite::Written(None) => decided,
            })
            .collect();
        for ((tenant, job), result) in names.iter().zip(&results) {
            if let TickResult::Queued(id) = result {
                tracing::info!(tenant = %tenant, job = %job, task = %id, "periodic task queued");
            }
        }
        results
    }

    /// Ticks until `shutdown` turns true: claims what is due, asks each
    /// concurrently and writes the answers as they come (a slow tenant's
    /// ask holds up no other's write), then sleeps until the soonest next
    /// due time, a schedule change, or [`MAX_SLEEP`].
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let (decided_tx, decided_rx) = mpsc::unbounded_channel::<Decided>();
        let writer = tokio::spawn(self.clone().write_as_they_come(decided_rx));
        while !crate::signals::stopping(&shutdown) {
            let (due, next, claim) = match self.claim().await {
                Ok(claimed) => claimed,
                Err(e) => {
                    // Try again soon: a long sleep would skip ticks.
                    tracing::warn!(error = %e, "cannot claim schedules");
                    let retry = after(self.clock.now_millis(), CLAIM_RETRY);
                    (Vec::new(), Some(retry), Claimed { name: String::new(), until: 0 })
                }
            };
            let full = due.len() >= MAX_CLAIM;
            for schedule in due {
                let (this, claim, decided_tx) = (self.clone(), claim.clone(), decided_tx.clone());
                tokio::spawn(async move {
                    let _ = decided_tx.send(this.ask(schedule, &claim).await);
                });
            }
            if full {
                continue;
            }
            let now = self.clock.now_millis();
            let sleep = next.map_or(MAX_SLEEP, |at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
            self.wake_at.store(after(now, sleep.min(MAX_SLEEP)), Ordering::Relaxed);
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = self.signals.schedules.notified() => {}
                _ = tokio::time::sleep(sleep.min(MAX_SLEEP)) => {}
            }
        }
        drop(decided_tx);
        // Asks in flight finish and are written; their claims end otherwise.
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }

    /// Writes decided ticks in batches, as they come; after each batch the
    /// loop looks again, since a written tick may be due before it planned
    /// to wake.
    async fn write_as_they_come(self: Arc<Self>, mut decided: mpsc::UnboundedReceiver<Decided>) {
        while let Some(first) = decided.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_CLAIM {
                match decided.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            let soonest = batch.iter().map(|d| d.tick.next_due_at).min().unwrap_or(Millis::MAX);
            self.write(batch).await;
            // Only a tick due before the loop's planned wake-up needs it sooner.
            if soonest < self.wake_at.load(Ordering::Relaxed) {
                self.signals.schedules.notify_one();
            }
        }
    }
}

/// How soon a scheduler looks again at a schedule another one holds.
/// Default 250 ms.
const HELD_RECHECK: Duration = Duration::from_millis(250);

/// How soon a failed claim is tried again. Default 1 s.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

/// A claim on due schedules: its name, and when it ends.
#[derive(Clone)]
struct Claimed {
    name: String,
    until: Millis,
}

/// A schedule's name as the scheduler reports it: a periodic job's own
/// schedule by its job's name.
fn shown(tick: &ScheduleTick) -> String {
    if tick.name.is_empty() { tick.job.clone() } else { tick.name.clone() }
}

/// `at` plus `by`, saturating.
fn after(at: Millis, by: Duration) -> Millis {
    at.saturating_add(to_millis(by))
}
