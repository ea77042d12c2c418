//! Running tasks' progress reports (contract 0.3.0's `progress` import):
//! each running task has a slot here that its reports overwrite, and every
//! heartbeat writes the reports made since the last one to the store (one
//! write for them all) and tells them on the event stream. So a task's
//! progress costs the store at most one write per heartbeat
//! ([`crate::worker::HEARTBEAT`]) however often it reports: the latest
//! report wins, and reporting more often is not an error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::runtime::{Progress, ProgressSink};
use crate::store::{Store, StoreError};
use crate::wire::{Event, EventKind, TaskProgress};

/// The latest unwritten report of each task running on this node that
/// reported, by lease.
#[derive(Default)]
pub struct Board {
    slots: Mutex<HashMap<String, Slot>>,
}

/// A task's latest report not yet written.
struct Slot {
    task: String,
    tenant: String,
    job: String,
    latest: Option<Progress>,
}

/// Where one running attempt's reports go: its slot on the board, made at
/// its first report and dropped with it (a report not yet written then is
/// dropped: the attempt's ending says more).
pub struct Reporter {
    board: Arc<Board>,
    lease: String,
    task: String,
    tenant: String,
    job: String,
    reported: AtomicBool,
}

impl Reporter {
    /// The reporter of the attempt holding `lease`.
    pub fn new(board: Arc<Board>, lease: &str, task: &str, tenant: &str, job: &str) -> Self {
        Self {
            board,
            lease: lease.to_owned(),
            task: task.to_owned(),
            tenant: tenant.to_owned(),
            job: job.to_owned(),
            reported: AtomicBool::new(false),
        }
    }
}

impl ProgressSink for Reporter {
    fn report(&self, progress: Progress) {
        self.reported.store(true, Ordering::Relaxed);
        let mut slots = self.board.slots.lock().unwrap();
        let slot = slots.entry(self.lease.clone()).or_insert_with(|| Slot {
            task: self.task.clone(),
            tenant: self.tenant.clone(),
            job: self.job.clone(),
            latest: None,
        });
        slot.latest = Some(progress);
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if self.reported.load(Ordering::Relaxed) {
            self.board.slots.lock().unwrap().remove(&self.lease);
        }
    }
}

impl Board {
    /// Writes the reports made since the last flush at `now`, and answers
    /// their events (tenant and event), to tell once written.
    pub async fn flush(&self, store: &dyn Store, now: i64) -> Result<Vec<(String, Event)>, StoreError> {
        let reports: Vec<(String, String, String, String, Progress)> = {
            let mut slots = self.slots.lock().unwrap();
            slots
                .iter_mut()
                .filter_map(|(lease, slot)| {
                    let p = slot.latest.take()?;
                    Some((lease.clone(), slot.task.clone(), slot.tenant.clone(), slot.job.clone(), p))
                })
                .collect()
        };
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let rows = reports
            .iter()
            .map(|(lease, .., p)| {
                let wire = TaskProgress { fraction: p.fraction, message: p.message.clone() };
                (lease.clone(), serde_json::to_string(&wire).expect("progress serializes"))
            })
            .collect();
        // Events only for the attempts still running: one that ended
        // meanwhile has told its ending.
        let recorded: std::collections::HashSet<String> = store.record_progress(rows).await?.into_iter().collect();
        Ok(reports
            .into_iter()
            .filter(|(lease, ..)| recorded.contains(lease))
            .map(|(_, task, tenant, job, p)| {
                let event = Event {
                    progress: Some(TaskProgress { fraction: p.fraction, message: p.message }),
                    ..Event::task(EventKind::TaskProgress, now, &task, &job)
                };
                (tenant, event)
            })
            .collect())
    }
}
