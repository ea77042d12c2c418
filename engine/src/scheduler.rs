//! The periodic scheduler: asks each periodic job's `is-due` export and
//! queues a task when it says so, then sleeps until the soonest next run.
//!
//! `last_run_at` lives in the store and is updated in the same transaction
//! that queues the task, only if it still holds the value this tick read.
//! So a restart neither repeats a tick (the new `last_run_at` is durable with
//! the task) nor skips one (a tick missed while down is due at once), and
//! two schedulers on one store never both run the same tick. Before its
//! first run a job's `last_run_at` is its registration time (pulsar starts
//! counting when the scheduler first sees a job).
//!
//! A periodic job that forbids overlap gets no new task while its previous
//! one is queued or running: that tick is recorded as skipped.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::contract::Due;
use crate::queue::{Queue, QueueFailure};
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::store::{Inserted, Store};
use crate::task::QueueOptions;

/// The longest the scheduler sleeps, even when nothing is due sooner: it
/// bounds the effect of a clock jump. Default 60 s.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What one tick did for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickResult {
    /// Not due; the next run is due in this long.
    NotDue(Duration),
    /// Due: a task was queued.
    Queued(String),
    /// Due, but the job forbids overlap and this task is still live.
    SkippedOverlap(String),
    /// Another scheduler ran this tick first.
    TakenElsewhere,
    /// `is-due` or queueing failed (logged).
    Failed(String),
}

/// Queues the tasks of periodic jobs.
pub struct Scheduler {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Scheduler {
    /// Looks at every tenant's periodic jobs once. Returns what happened per
    /// job (by name) and how long until the soonest next run.
    pub async fn tick(&self) -> (Vec<(String, TickResult)>, Duration) {
        let mut results = Vec::new();
        let mut sleep = MAX_SLEEP;
        for ((tenant, name), job) in self.registry.all_periodic() {
            let result = self.tick_job(&tenant, &name, &job).await;
            if let TickResult::NotDue(next) = &result {
                sleep = sleep.min(*next);
            }
            results.push((name, result));
        }
        (results, sleep)
    }

    /// What `is-due` says of `tenant`'s periodic job now, with the stored
    /// `last_run_at` it was asked about (`None` before the first run, when
    /// the registration time stands in).
    pub async fn due(
        &self,
        tenant: &str,
        name: &str,
        job: &crate::registry::RegisteredJob,
    ) -> Result<(Due, Option<i64>), String> {
        let stored = self.store.last_run_at(tenant, name).await.map_err(|e| e.to_string())?;
        let now = self.clock.now();
        let last = DateTime::from_timestamp_millis(stored.unwrap_or(job.registered_at)).unwrap_or(now);
        let due = self.runtime.is_due(&job.component, last, now).await.map_err(|e| e.to_string())?;
        Ok((due, stored))
    }

    async fn tick_job(&self, tenant: &str, name: &str, job: &crate::registry::RegisteredJob) -> TickResult {
        let (due, stored) = match self.due(tenant, name, job).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(job = name, error = %e, "is-due failed");
                return TickResult::Failed(e);
            }
        };
        let now = self.clock.now();
        if !due.is_due {
            return TickResult::NotDue(due.next_run_in);
        }
        let task = match self.queue.prepare(tenant, name, "{}", &QueueOptions::default(), None).await {
            Ok(task) => task,
            Err(QueueFailure::Rejected(e)) => return TickResult::Failed(e.to_string()),
            Err(QueueFailure::Store(e)) => return TickResult::Failed(e.to_string()),
        };
        match self.store.schedule_tick(tenant, name, stored, now.timestamp_millis(), Some(task)).await {
            Ok(Some(Inserted::Task(id))) => {
                tracing::info!(job = name, task = %id, "periodic task queued");
                self.queue.wake.notify_one();
                TickResult::Queued(id)
            }
            Ok(Some(Inserted::Duplicate(id))) => TickResult::SkippedOverlap(id),
            Ok(None) => TickResult::TakenElsewhere,
            Err(e) => TickResult::Failed(e.to_string()),
        }
    }

    /// Ticks until `shutdown` turns true, sleeping until the soonest next
    /// run (or until a job is registered).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let (_, sleep) = self.tick().await;
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = self.registry.changed() => {}
                // A little past the due time, so `is-due` agrees it is due.
                _ = tokio::time::sleep(sleep + Duration::from_millis(1)) => {}
            }
        }
    }
}
