//! The events of every tenant's tasks and jobs, as a live feed: what
//! `GET /v1/events` streams (pulsar's `task_queued`, `task_started`,
//! `task_done`...).
//!
//! Events are announced, not stored: the store holds the state, events say
//! that it changed. Each is emitted once, by the node where the change was
//! committed, after the commit; with PostgreSQL the node also sends it to
//! every other node (`NOTIFY`, gathered a few milliseconds at a time, by
//! [`crate::store::postgres`]), so a client of any node sees the events of
//! the whole cluster, in the order this node heard of them: each node's own
//! in order, but a task queued through one node and run by another may
//! show `task-started` (or even its end) before `task-queued`. An event is
//! a hint to re-read, or to order by the task's state, not a state itself.
//!
//! Every node keeps the last [`BACKLOG`] events it heard of, whichever
//! node made them. An event's id is unique among its tenant's in the
//! cluster (the emitting process's random incarnation and a sequence number
//! of the tenant's events there: ids say nothing of other tenants'
//! activity), so a client that reconnects with `Last-Event-ID`, to this
//! node or another, gets what it missed, if that is still kept; otherwise
//! its stream starts with a `reset` notice: re-read what you show. A
//! notification lost between nodes (the listening connection dropped) is
//! not replayed either.
//!
//! Emitting never waits for a subscriber: each one reads from a shared
//! ring of [`LIVE`] events and one that falls behind skips what it missed,
//! with a `lost` notice ([`Delivery::Lost`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::wire::Event;

/// Events kept for resumption, all tenants together. Default 10,000.
pub const BACKLOG: usize = 10_000;
/// Events a subscriber may fall behind before it skips some. Default 4,096.
pub const LIVE: usize = 4096;

/// An event of a tenant, with its id in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub id: String,
    pub tenant: String,
    pub event: Event,
}

/// A node's feed.
pub struct Events {
    /// This process, among every process that ever emitted events.
    incarnation: String,
    kept: Mutex<Kept>,
    live: broadcast::Sender<Arc<Stamped>>,
    /// Where this node's own events go to reach the other nodes, once a
    /// store that has others takes them ([`Events::outgoing`]).
    outbox: Mutex<Option<mpsc::UnboundedSender<Vec<Arc<Stamped>>>>>,
}

impl Default for Events {
    fn default() -> Self {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("the OS has randomness");
        Self {
            incarnation: hex::encode(random),
            kept: Mutex::new(Kept { events: VecDeque::with_capacity(BACKLOG), counts: HashMap::new() }),
            live: broadcast::channel(LIVE).0,
            outbox: Mutex::new(None),
        }
    }
}

/// The events kept, and how many each tenant's this process made.
struct Kept {
    events: VecDeque<Arc<Stamped>>,
    counts: HashMap<String, u64>,
}

/// What a subscriber gets first.
pub enum Start {
    /// From now on.
    Now,
    /// These events, missed since its `Last-Event-ID`, then on.
    Resumed(Vec<Arc<Stamped>>),
    /// Its `Last-Event-ID` is no longer kept (or was never this cluster's):
    /// from now on, and events may have been missed.
    Reset,
}

/// The next thing a subscriber reads.
pub enum Delivery {
    Event(Arc<Stamped>),
    /// It fell behind, and skipped events (how many of its tenant's is
    /// not known: the count would tell of other tenants' events).
    Lost,
}

/// One subscriber's view of its tenant's events.
pub struct Subscription {
    pub start: Start,
    live: broadcast::Receiver<Arc<Stamped>>,
    tenant: String,
}

impl Subscription {
    /// The tenant's next event, or a notice; `None` once the node stops.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.live.recv().await {
                Ok(event) if event.tenant == self.tenant => return Some(Delivery::Event(event)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Delivery::Lost),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Events {
    /// Emits `event` of `tenant`, made on this node.
    pub fn emit(&self, tenant: &str, event: Event) {
        self.emit_all([(tenant.to_owned(), event)]);
    }

    /// Emits events made on this node, in order.
    pub fn emit_all(&self, events: impl IntoIterator<Item = (String, Event)>) {
        let mut kept = self.kept.lock().unwrap();
        let stamped: Vec<Arc<Stamped>> = events
            .into_iter()
            .map(|(tenant, event)| {
                let count = kept.counts.entry(tenant.clone()).or_default();
                *count += 1;
                let id = format!("{}-{count}", self.incarnation);
                Arc::new(Stamped { id, tenant, event })
            })
            .collect();
        if stamped.is_empty() {
            return;
        }
        self.hear(&mut kept, &stamped);
        drop(kept);
        if let Some(outbox) = self.outbox.lock().unwrap().as_ref() {
            let _ = outbox.send(stamped);
        }
    }

    /// Events another node made, heard through the store.
    pub fn received(&self, events: Vec<Stamped>) {
        let mine = format!("{}-", self.incarnation);
        let events: Vec<Arc<Stamped>> = events.into_iter().filter(|e| !e.id.starts_with(&mine)).map(Arc::new).collect();
        self.hear(&mut self.kept.lock().unwrap(), &events);
    }

    /// Keeps and delivers `events`, under the lock that
    /// [`Events::subscribe`] takes, so that a subscriber gets each event
    /// once, replayed or live.
    fn hear(&self, kept: &mut Kept, events: &[Arc<Stamped>]) {
        for event in events {
            if kept.events.len() == BACKLOG {
                kept.events.pop_front();
            }
            kept.events.push_back(event.clone());
            // No subscriber: nothing to deliver.
            let _ = self.live.send(event.clone());
        }
    }

    /// A subscriber to `tenant`'s events from now on, or after its event
    /// `last` (a `Last-Event-ID`).
    pub fn subscribe(&self, tenant: &str, last: Option<&str>) -> Subscription {
        let kept = self.kept.lock().unwrap();
        let live = self.live.subscribe();
        let theirs = |e: &&Arc<Stamped>| e.tenant == tenant;
        let start = match last {
            None => Start::Now,
            Some(last) => match kept.events.iter().rposition(|e| e.tenant == tenant && e.id == last) {
                Some(at) => Start::Resumed(kept.events.iter().skip(at + 1).filter(theirs).cloned().collect()),
                None => Start::Reset,
            },
        };
        Subscription { start, live, tenant: tenant.to_owned() }
    }

    /// This node's own events from now on, for a store with other nodes to
    /// send them to; `None` if something already takes them.
    pub fn outgoing(&self) -> Option<mpsc::UnboundedReceiver<Vec<Arc<Stamped>>>> {
        let mut outbox = self.outbox.lock().unwrap();
        if outbox.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *outbox = Some(tx);
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EventKind;

    fn queued(task: &str) -> Event {
        Event::task(EventKind::TaskQueued, 0, task, "job")
    }

    fn task(delivery: Option<Delivery>) -> String {
        match delivery {
            Some(Delivery::Event(e)) => e.event.task.clone().unwrap(),
            _ => panic!("not an event"),
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_its_tenants_events_and_resumes_after_its_last_or_is_told_it_cannot() {
        let events = Events::default();
        let mut a = events.subscribe("a", None);
        events.emit("a", queued("1"));
        events.emit("b", queued("2"));
        events.emit("a", queued("3"));
        assert_eq!((task(a.next().await), task(a.next().await)), ("1".into(), "3".into()));
        let first = events.kept.lock().unwrap().events[0].id.clone();
        let Start::Resumed(missed) = events.subscribe("a", Some(&first)).start else { panic!("not resumed") };
        let missed: Vec<_> = missed.iter().map(|e| e.event.task.clone().unwrap()).collect();
        assert_eq!(missed, ["3"]);
        // Another tenant's id (b has no second event), or one not kept,
        // resumes nothing.
        let second = events.kept.lock().unwrap().events[2].id.clone();
        assert!(matches!(events.subscribe("b", Some(&second)).start, Start::Reset));
        assert!(matches!(events.subscribe("a", Some("elsewhere-1")).start, Start::Reset));
    }

    #[test]
    fn ids_count_each_tenants_events_apart() {
        let events = Events::default();
        events.emit_all([("a".into(), queued("1")), ("b".into(), queued("2")), ("a".into(), queued("3"))]);
        let ids: Vec<String> = events.kept.lock().unwrap().events.iter().map(|e| e.id.clone()).collect();
        let seq: Vec<&str> = ids.iter().map(|id| id.rsplit('-').next().unwrap()).collect();
        assert_eq!(seq, ["1", "1", "2"]);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_skips_with_a_notice_and_the_feed_never_waits() {
        let events = Events::default();
        let mut slow = events.subscribe("a", None);
        for i in 0..LIVE + 10 {
            events.emit("a", queued(&i.to_string()));
        }
        assert!(matches!(slow.next().await, Some(Delivery::Lost)));
        assert_eq!(task(slow.next().await), "10");
        assert_eq!(events.kept.lock().unwrap().events.len(), LIVE + 10);
    }

    #[test]
    fn events_heard_back_from_the_store_are_not_kept_twice() {
        let events = Events::default();
        let mut outgoing = events.outgoing().unwrap();
        events.emit("a", queued("1"));
        let sent: Vec<Stamped> = outgoing.try_recv().unwrap().iter().map(|e| (**e).clone()).collect();
        events.received(sent);
        assert_eq!(events.kept.lock().unwrap().events.len(), 1);
    }
}
