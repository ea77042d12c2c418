//! Retention: finished tasks (succeeded, failed or revoked), with their
//! args, results and logs, are deleted once their tenant's `retention_ms`
//! has passed since they ended (7 days by default).
//!
//! Each worker node's heartbeat prunes a little at a time, so that pruning
//! never stalls the queue: it reads the next [`PRUNE_BATCH`] tasks in id
//! order (the primary key: no index of its own to keep up at every
//! ending) from where it stopped, and deletes those finished past their
//! tenant's retention; while batches come back full of old tasks it goes on,
//! up to [`PRUNE_BATCHES`] per heartbeat. Ids grow with time, so once a
//! batch reaches tasks queued within the shortest retention of any tenant,
//! the rest cannot be due for pruning: the next pass starts again from the
//! oldest. Tasks kept longer (still waiting, or their tenant keeps them
//! longer) are read again at each pass. Several nodes pruning the same rows
//! is harmless: a delete of a task already gone deletes nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{Aged, Millis, Store, StoreError};
use crate::tenant::Quotas;

/// Tasks read per batch. Default 1,000.
pub const PRUNE_BATCH: usize = 1000;
/// Most batches per heartbeat. Default 10.
pub const PRUNE_BATCHES: usize = 10;

/// Where the pass stopped (a task id; 0 for the start).
#[derive(Default)]
pub struct Pruner {
    cursor: Mutex<i64>,
}

impl Pruner {
    /// One heartbeat's pruning at `now`: tenants keep their tasks as long as
    /// `quotas` say (a tenant not in it, as long as `defaults` say).
    /// Answers how many tasks went.
    pub async fn prune(
        &self,
        store: &dyn Store,
        quotas: &HashMap<String, Quotas>,
        defaults: &Quotas,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let retention = |tenant: &str| quotas.get(tenant).unwrap_or(defaults).retention_ms;
        let shortest = quotas.values().map(|q| q.retention_ms).chain([defaults.retention_ms]).min().unwrap_or(0);
        let before = |ms: u64| now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
        let expired = |task: &Aged| {
            task.state.is_terminal() && task.finished_at.is_some_and(|at| at < before(retention(&task.tenant)))
        };
        let mut pruned = 0;
        for _ in 0..PRUNE_BATCHES {
            let after = *self.cursor.lock().unwrap();
            let batch = store.tasks_after(after, PRUNE_BATCH).await?;
            let gone: Vec<i64> = batch.iter().filter(|t| expired(t)).map(|t| t.id).collect();
            if !gone.is_empty() {
                pruned += store.delete_finished(gone).await?;
            }
            // Go on after the last task read while the batch was full and
            // that task was queued long enough ago for some tenant's tasks
            // to be due for pruning; else start again next time.
            let next = match batch.last() {
                Some(last) if batch.len() == PRUNE_BATCH && last.queued_at < before(shortest) => last.id,
                _ => 0,
            };
            *self.cursor.lock().unwrap() = next;
            if next == 0 {
                break;
            }
        }
        Ok(pruned)
    }
}
