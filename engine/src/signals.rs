//! How the parts of a node learn that something changed, whether the change
//! was made on this node or on another one.
//!
//! A change made here fires its signal at once. With PostgreSQL, every
//! change is also announced with `NOTIFY`, and the store's listener fires
//! the same signals when another node's notification arrives
//! ([`crate::store::postgres`]); since a notification can be missed (the
//! listening connection drops), every consumer also has a fallback: the
//! catalog checks the store's generations, the workers poll, waiters
//! re-read their task, and the workers' heartbeat reads revoke requests.
//!
//! | signal | fired when | wakes |
//! |---|---|---|
//! | [`Signals::queued`] | tasks were queued or became claimable | the workers |
//! | [`Signals::catalog`] | jobs, tenants or tokens changed | the catalog ([`crate::catalog`]) |
//! | [`Signals::schedules`] | a periodic job was uploaded or deleted | the scheduler |
//! | [`Signals::finished`] | tasks ended | [`crate::queue::Queue::wait`]ers |
//! | [`Signals::stop`] | someone asked to stop a running task | the worker running it |
//! | [`Signals::events`] | tasks or jobs changed, with what changed | `GET /v1/events` ([`crate::events`]) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, oneshot};

use crate::events::Events;
use crate::task::TaskId;

/// Stop requests kept for subscribers that are slow to read them; one that
/// falls further behind catches up at its next heartbeat. Default 1,024.
const STOP_BACKLOG: usize = 1024;

/// Whether a node told to run until `shutdown` turns true must stop: it
/// did, or whoever could turn it is gone.
pub fn stopping(shutdown: &tokio::sync::watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// A node's signals.
pub struct Signals {
    /// Tasks were queued or became claimable.
    pub queued: Notify,
    /// Jobs, tenants or tokens changed somewhere.
    pub catalog: Notify,
    /// A schedule changed somewhere.
    pub schedules: Notify,
    /// What changed, for clients: the feed of events.
    pub events: Arc<Events>,
    /// The notifications of other nodes may have been missed: ask them
    /// which tenants they watch ([`crate::events`]).
    pub ask: Notify,
    waiters: Mutex<HashMap<TaskId, Vec<oneshot::Sender<()>>>>,
    stop: broadcast::Sender<TaskId>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            queued: Notify::new(),
            catalog: Notify::new(),
            schedules: Notify::new(),
            events: Arc::new(Events::default()),
            ask: Notify::new(),
            waiters: Mutex::default(),
            stop: broadcast::channel(STOP_BACKLOG).0,
        }
    }
}

impl Signals {
    /// A one-shot wake-up for when task `id` ends. Register before reading
    /// the task, so that an ending in between still wakes the caller.
    pub fn on_finish(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap();
        let list = waiters.entry(id.to_owned()).or_default();
        list.retain(|w| !w.is_closed());
        list.push(tx);
        rx
    }

    /// Forgets the waiters of `id` that no longer wait (their receiver is
    /// gone): a wait that returns without the task ending leaves none behind.
    pub fn forget(&self, id: &str) {
        let mut waiters = self.waiters.lock().unwrap();
        if let Some(list) = waiters.get_mut(id) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(id);
            }
        }
    }

    /// Tasks `ids` ended: wakes whoever waits for them.
    pub fn finished(&self, ids: &[TaskId]) {
        let mut waiters = self.waiters.lock().unwrap();
        if waiters.is_empty() {
            return;
        }
        for id in ids {
            for waiter in waiters.remove(id).into_iter().flatten() {
                let _ = waiter.send(());
            }
        }
    }

    /// Some tasks ended, which ones unknown: wakes every waiter to re-read.
    pub fn finished_some(&self) {
        for (_, list) in self.waiters.lock().unwrap().drain() {
            for waiter in list {
                let _ = waiter.send(());
            }
        }
    }

    /// Asks whichever worker of this node runs task `id` to stop it.
    pub fn stop(&self, id: TaskId) {
        let _ = self.stop.send(id);
    }

    /// Stop requests from now on.
    pub fn stops(&self) -> broadcast::Receiver<TaskId> {
        self.stop.subscribe()
    }

    /// After a gap in notifications (the listener reconnected): every
    /// consumer re-reads the store.
    pub fn resync(&self) {
        self.queued.notify_one();
        self.catalog.notify_one();
        self.schedules.notify_one();
        self.finished_some();
        self.ask.notify_one();
    }
}
