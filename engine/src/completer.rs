//! Task endings written in batches: a worker hands each ending to the
//! completer and goes on to its next task; the completer writes whatever
//! has piled up while its previous write was in flight in one store call,
//! then wakes whoever waits for the tasks that ended.
//!
//! The handoff frees the task's sandbox slot before its ending is
//! committed: one store round trip per batch, not per task, and no slot
//! idles waiting on the store. The task stays `started` in the store until
//! the write commits, so it still counts against its tenant's
//! `max_running`, and a node that dies in between leaves it to the lease
//! sweep as before (at least once).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::signals::Signals;
use crate::store::{Completion, Store, TaskState};
use crate::task::TaskId;
use crate::wire::{Event, EventKind};

/// Endings handed over but not yet written, at most: a worker whose store
/// is slower than its sandboxes waits here (backpressure). Default 4,096.
pub const MAX_PENDING: usize = 4096;
/// Most endings in one store call. Default 1,024.
pub const MAX_BATCH: usize = 1024;

/// The sending side; dropping every clone lets the completer write what is
/// left and stop.
#[derive(Clone)]
pub struct Completer {
    endings: mpsc::Sender<Completion>,
}

impl Completer {
    /// A completer writing to `store`, and its task (which ends once every
    /// [`Completer`] is dropped and the last batch is written).
    pub fn spawn(store: Arc<dyn Store>, signals: Arc<Signals>) -> (Self, JoinHandle<()>) {
        let (endings, pending) = mpsc::channel(MAX_PENDING);
        (Self { endings }, tokio::spawn(write(store, signals, pending)))
    }

    /// Hands an ending over, waiting while [`MAX_PENDING`] are unwritten.
    pub async fn complete(&self, ending: Completion) {
        if let Err(lost) = self.endings.send(ending).await {
            // Only after shutdown: the lease sweep rescues the task.
            tracing::error!(task = %lost.0.id, "the completer has stopped: a task's end is not recorded");
        }
    }
}

async fn write(store: Arc<dyn Store>, signals: Arc<Signals>, mut pending: mpsc::Receiver<Completion>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let n = batch.len();
        // Built only while someone watches (which costs otherwise).
        let events: Vec<(TaskId, String, Event)> =
            if signals.events.active() { batch.iter().map(event).collect() } else { Vec::new() };
        let started = std::time::Instant::now();
        let written = store.complete(std::mem::take(&mut batch)).await;
        tracing::debug!(tasks = n, took_us = started.elapsed().as_micros() as u64, "wrote endings");
        match written {
            Ok(applied) => {
                let ended: Vec<_> = applied.iter().filter(|(_, s)| s.is_terminal()).map(|(id, _)| id.clone()).collect();
                // Those that applied, in the batch's order, as the store
                // left them; before the waiters wake, so that one that
                // then reads the stream from its last event sees them.
                if !events.is_empty() {
                    let applied: HashMap<TaskId, TaskState> = applied.into_iter().collect();
                    let events = events.into_iter().filter_map(|(id, tenant, event)| {
                        Some((tenant, Event { kind: kind(*applied.get(&id)?), ..event }))
                    });
                    signals.events.emit_all(events);
                }
                signals.finished(&ended);
                // The workers claim again once the ends are in the store:
                // until then the tasks still count as started against
                // their tenant's, job's and queue's limits, and a claim
                // made at a task's end (its reaping wakes the claim loop)
                // may not see the room it left. Released children and
                // workflow steps are due now too (or, children, after
                // their delay). One wake-up per batch.
                signals.queued.notify_one();
            }
            // The leases will run out and the sweep will rescue the tasks.
            // The batch may have committed all the same (its answer lost):
            // the workers claim again, as after any batch.
            Err(e) => {
                tracing::error!(error = %e, tasks = n, "cannot record tasks' ends");
                signals.queued.notify_one();
            }
        }
    }
}

/// The event of an ending, as asked, with its task and tenant.
fn event(c: &Completion) -> (TaskId, String, Event) {
    let event = Event::task(kind(c.state), c.finished_at, &c.id, &c.job).attempt(c.attempt).reason(&c.reason);
    (c.id.clone(), c.tenant.clone(), event)
}

/// The event of an ending that left its task in `state`.
fn kind(state: TaskState) -> EventKind {
    match state {
        TaskState::Success => EventKind::TaskSucceeded,
        TaskState::Retry => EventKind::TaskRetrying,
        TaskState::Revoked => EventKind::TaskRevoked,
        _ => EventKind::TaskFailed,
    }
}
