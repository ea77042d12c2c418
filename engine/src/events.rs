//! The events of every tenant's tasks and jobs, as a live feed: what
//! `GET /v1/events` streams (pulsar's `task_queued`, `task_started`,
//! `task_done`...).
//!
//! Events are announced, not stored: the store holds the state, events say
//! that it changed. Each is emitted once, by the node where the change was
//! committed, after the commit; with PostgreSQL the node also sends it to
//! every other node (`NOTIFY`, gathered a few milliseconds at a time, by
//! [`crate::store::postgres`]), so a client of any node sees the events of
//! the whole cluster, in the order this node heard of them. Each is emitted
//! after its change committed, so changes that commit close together may
//! be told in another order (a task queued through one node and run by
//! another may show `task-started`, or even its end, before `task-queued`;
//! an upload's `job-compiled` may follow a task a client queued as soon as
//! it read the job ready). An event is a hint to re-read, or to order by
//! the task's state, not a state itself.
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
//!
//! Events cost only while someone watches. A node keeps and sends the
//! events of the tenants that have a stream open on some node, and for
//! [`KEEP_AFTER`] after the last one closed (so that a client that
//! reconnects finds what it missed); each node tells the others which
//! tenants it watches every [`WATCH_RENEW`] and whenever it starts watching
//! one, and a node that starts asks the others. When no tenant is watched
//! anywhere, emitting is one atomic load (measured: keeping and sending
//! every event cut the queue's rate by a sixth on SQLite and a fifth on
//! PostgreSQL).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::wire::Event;

/// Events kept for resumption, all tenants together. Default 10,000.
pub const BACKLOG: usize = 10_000;
/// Events a subscriber may fall behind before it skips some. Default 4,096.
pub const LIVE: usize = 4096;
/// How long a tenant's events are still kept after its last stream on
/// this node closed, for a client that reconnects. Default 10 min.
pub const KEEP_AFTER: Duration = Duration::from_secs(600);
/// How often a node tells the others which tenants it watches. Default 30 s.
pub const WATCH_RENEW: Duration = Duration::from_secs(30);
/// How long a node sends a tenant's events after another node last said
/// it watches it: a few renewals, so that one lost notification loses
/// nothing. Default 2 min.
pub const WATCH_LEASE: Duration = Duration::from_secs(120);

/// An event of a tenant, with its id in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub id: String,
    pub tenant: String,
    pub event: Event,
}

/// What a node tells the others about watching: the tenants it watches,
/// or a question, from a node that started, to say so now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Watching {
    Tenants { node: String, tenants: Vec<String> },
    Who { node: String },
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
    /// Whether some tenant may be watched, here or elsewhere: when not,
    /// emitting does nothing else.
    active: AtomicBool,
    interest: Mutex<Interest>,
    /// Wakes whoever tells the other nodes (this node started watching a
    /// tenant, or a node asked).
    pub announce: Notify,
}

/// Which tenants are watched: here, by how many streams (or until when,
/// after the last closed), and elsewhere, until when.
#[derive(Default)]
struct Interest {
    here: HashMap<String, Watch>,
    elsewhere: HashMap<String, Instant>,
}

#[derive(Clone, Copy)]
struct Watch {
    streams: usize,
    until: Instant,
}

impl Interest {
    fn here(&self, tenant: &str, now: Instant) -> bool {
        self.here.get(tenant).is_some_and(|w| w.streams > 0 || w.until > now)
    }

    fn elsewhere(&self, tenant: &str, now: Instant) -> bool {
        self.elsewhere.get(tenant).is_some_and(|until| *until > now)
    }

    /// Forgets what ended; whether anything is left.
    fn prune(&mut self, now: Instant) -> bool {
        self.here.retain(|_, w| w.streams > 0 || w.until > now);
        self.elsewhere.retain(|_, until| *until > now);
        !(self.here.is_empty() && self.elsewhere.is_empty())
    }
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
            active: AtomicBool::new(false),
            interest: Mutex::default(),
            announce: Notify::new(),
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

/// One subscriber's view of its tenant's events; its tenant is watched
/// until it drops (and [`KEEP_AFTER`] more).
pub struct Subscription {
    pub start: Start,
    live: broadcast::Receiver<Arc<Stamped>>,
    tenant: String,
    events: Arc<Events>,
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

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut interest = self.events.interest.lock().unwrap();
        if let Some(watch) = interest.here.get_mut(&self.tenant) {
            watch.streams = watch.streams.saturating_sub(1);
            watch.until = Instant::now() + KEEP_AFTER;
        }
    }
}

impl Events {
    /// Whether any tenant may be watched: emitters check this before they
    /// build events, which costs nothing when none is.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Emits `event` of `tenant`, made on this node.
    pub fn emit(&self, tenant: &str, event: Event) {
        self.emit_all([(tenant.to_owned(), event)]);
    }

    /// Emits events made on this node, in order; those of tenants nobody
    /// watches are dropped (the iterator is not even read if none is).
    pub fn emit_all(&self, events: impl IntoIterator<Item = (String, Event)>) {
        if !self.active() {
            return;
        }
        let now = Instant::now();
        let (mut keep, mut send) = (Vec::new(), Vec::new());
        {
            let mut interest = self.interest.lock().unwrap();
            if !interest.prune(now) {
                self.active.store(false, Ordering::Relaxed);
                return;
            }
            let mut kept = self.kept.lock().unwrap();
            for (tenant, event) in events {
                let (here, elsewhere) = (interest.here(&tenant, now), interest.elsewhere(&tenant, now));
                if !here && !elsewhere {
                    continue;
                }
                let count = kept.counts.entry(tenant.clone()).or_default();
                *count += 1;
                let id = format!("{}-{count}", self.incarnation);
                let stamped = Arc::new(Stamped { id, tenant, event });
                if here {
                    keep.push(stamped.clone());
                }
                if elsewhere {
                    send.push(stamped);
                }
            }
            self.hear(&mut kept, &keep);
        }
        if !send.is_empty()
            && let Some(outbox) = self.outbox.lock().unwrap().as_ref()
        {
            let _ = outbox.send(send);
        }
    }

    /// Events another node made, heard through the store: kept if their
    /// tenant is watched here.
    pub fn received(&self, events: Vec<Stamped>) {
        let mine = format!("{}-", self.incarnation);
        let now = Instant::now();
        let interest = self.interest.lock().unwrap();
        let events: Vec<Arc<Stamped>> = events
            .into_iter()
            .filter(|e| !e.id.starts_with(&mine) && interest.here(&e.tenant, now))
            .map(Arc::new)
            .collect();
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
    pub fn subscribe(self: &Arc<Self>, tenant: &str, last: Option<&str>) -> Subscription {
        let first = {
            let mut interest = self.interest.lock().unwrap();
            let watch = interest.here.entry(tenant.to_owned()).or_insert(Watch { streams: 0, until: Instant::now() });
            watch.streams += 1;
            watch.streams == 1
        };
        self.active.store(true, Ordering::Relaxed);
        if first {
            self.announce.notify_one();
        }
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
        Subscription { start, live, tenant: tenant.to_owned(), events: self.clone() }
    }

    /// What to tell the other nodes now: the tenants watched here.
    pub fn watching(&self) -> Watching {
        let now = Instant::now();
        let interest = self.interest.lock().unwrap();
        let tenants = interest.here.iter().filter(|(_, w)| w.streams > 0 || w.until > now).map(|(t, _)| t.clone());
        Watching::Tenants { node: self.incarnation.clone(), tenants: tenants.collect() }
    }

    /// The question a node that starts asks the others.
    pub fn asking(&self) -> Watching {
        Watching::Who { node: self.incarnation.clone() }
    }

    /// What another node told: the tenants it watches (their events are
    /// sent to it for [`WATCH_LEASE`]), or that it asks.
    pub fn heard(&self, watching: Watching) {
        match watching {
            Watching::Tenants { node, .. } | Watching::Who { node } if node == self.incarnation => {}
            Watching::Tenants { tenants, .. } => {
                if tenants.is_empty() {
                    return;
                }
                let until = Instant::now() + WATCH_LEASE;
                let mut interest = self.interest.lock().unwrap();
                for tenant in tenants {
                    interest.elsewhere.insert(tenant, until);
                }
                self.active.store(true, Ordering::Relaxed);
            }
            Watching::Who { .. } => self.announce.notify_one(),
        }
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

    fn kept(events: &Events) -> Vec<Arc<Stamped>> {
        events.kept.lock().unwrap().events.iter().cloned().collect()
    }

    #[tokio::test]
    async fn a_subscriber_gets_its_tenants_events_and_resumes_after_its_last_or_is_told_it_cannot() {
        let events = Arc::new(Events::default());
        let mut a = events.subscribe("a", None);
        let _b = events.subscribe("b", None);
        events.emit("a", queued("1"));
        events.emit("b", queued("2"));
        events.emit("a", queued("3"));
        assert_eq!((task(a.next().await), task(a.next().await)), ("1".into(), "3".into()));
        let first = kept(&events)[0].id.clone();
        let mut again = events.subscribe("a", Some(&first));
        let Start::Resumed(missed) = std::mem::replace(&mut again.start, Start::Now) else { panic!("not resumed") };
        let missed: Vec<_> = missed.iter().map(|e| e.event.task.clone().unwrap()).collect();
        assert_eq!(missed, ["3"]);
        // Another tenant's id (b has no second event), or one not kept,
        // resumes nothing.
        let second = kept(&events)[2].id.clone();
        assert!(matches!(events.subscribe("b", Some(&second)).start, Start::Reset));
        assert!(matches!(events.subscribe("a", Some("elsewhere-1")).start, Start::Reset));
    }

    #[test]
    fn ids_count_each_tenants_events_apart() {
        let events = Arc::new(Events::default());
        let (_a, _b) = (events.subscribe("a", None), events.subscribe("b", None));
        events.emit_all([("a".into(), queued("1")), ("b".into(), queued("2")), ("a".into(), queued("3"))]);
        let seq: Vec<String> = kept(&events).iter().map(|e| e.id.rsplit('-').next().unwrap().to_owned()).collect();
        assert_eq!(seq, ["1", "1", "2"]);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_skips_with_a_notice_and_the_feed_never_waits() {
        let events = Arc::new(Events::default());
        let mut slow = events.subscribe("a", None);
        for i in 0..LIVE + 10 {
            events.emit("a", queued(&i.to_string()));
        }
        assert!(matches!(slow.next().await, Some(Delivery::Lost)));
        assert_eq!(task(slow.next().await), "10");
        assert_eq!(kept(&events).len(), LIVE + 10);
    }

    #[test]
    fn events_of_tenants_nobody_watches_are_neither_kept_nor_sent_nor_built() {
        let events = Arc::new(Events::default());
        let mut outgoing = events.outgoing().unwrap();
        let mut built = 0;
        events.emit_all(
            std::iter::from_fn(|| {
                built += 1;
                Some(("a".to_owned(), queued("1")))
            })
            .take(3),
        );
        assert_eq!(built, 0, "events were built while nobody watched");
        // Watched on another node: sent, not kept; watched here: kept.
        events.heard(Watching::Tenants { node: "other".into(), tenants: vec!["b".into()] });
        let _c = events.subscribe("c", None);
        events.emit_all([("a".into(), queued("1")), ("b".into(), queued("2")), ("c".into(), queued("3"))]);
        let sent: Vec<String> = outgoing.try_recv().unwrap().iter().map(|e| e.tenant.clone()).collect();
        assert_eq!(sent, ["b"]);
        let here: Vec<String> = kept(&events).iter().map(|e| e.tenant.clone()).collect();
        assert_eq!(here, ["c"]);
    }

    #[test]
    fn a_closed_stream_keeps_its_tenant_watched_for_a_while_and_a_node_ignores_itself() {
        let events = Arc::new(Events::default());
        drop(events.subscribe("a", None));
        events.emit("a", queued("1"));
        assert_eq!(kept(&events).len(), 1, "a client reconnecting would miss it");
        let Watching::Tenants { tenants, .. } = events.watching() else { panic!("not tenants") };
        assert_eq!(tenants, ["a"]);
        events.heard(events.watching());
        assert!(events.interest.lock().unwrap().elsewhere.is_empty(), "it heard itself");
    }

    #[test]
    fn events_heard_back_from_the_store_are_not_kept_twice() {
        let events = Arc::new(Events::default());
        let mut outgoing = events.outgoing().unwrap();
        let _a = events.subscribe("a", None);
        events.heard(Watching::Tenants { node: "other".into(), tenants: vec!["a".into()] });
        events.emit("a", queued("1"));
        let sent: Vec<Stamped> = outgoing.try_recv().unwrap().iter().map(|e| (**e).clone()).collect();
        events.received(sent);
        assert_eq!(kept(&events).len(), 1);
    }
}
