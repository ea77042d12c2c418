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
//! Each node keeps, per tenant watched, the last [`BACKLOG`] events it
//! heard of, whichever node made them, numbered in the order it delivers
//! them: a stream's ids are this node's (its random incarnation and the
//! tenant's count here), so they say nothing of other tenants. A client
//! that reconnects to the same node with `Last-Event-ID` gets what it
//! missed, if that is still kept; otherwise, or on another node (which
//! heard the cluster's events in another order), its stream starts with a
//! `reset` notice: re-read what you show. A notification lost between
//! nodes (the listening connection dropped) is not replayed either.
//!
//! Emitting never waits for a subscriber: each reads from its tenant's ring
//! of [`LIVE`] events, and one that falls behind skips what it missed, with
//! a `lost` notice ([`Delivery::Lost`]); tenants share no ring, so neither
//! notices nor ids depend on another tenant's events. At most
//! [`MAX_STREAMS`] streams per tenant and node.
//!
//! Events cost only while someone watches. A node keeps and sends the
//! events of the tenants that have a stream open on some node, and for
//! [`KEEP_AFTER`] after the last one closed (so that a client that
//! reconnects finds what it missed; a tenant watched again after that
//! starts afresh, so an old id resets); each node tells the others which
//! tenants it watches every [`WATCH_RENEW`] and whenever it starts watching
//! one, and a node that (re)connects asks the others. When no tenant is
//! watched anywhere, emitting is one atomic load (measured: keeping and
//! sending every event cut the queue's rate by a sixth on SQLite and a
//! fifth on PostgreSQL).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::wire::Event;

/// Events kept per tenant watched, for resumption. Default 2,000.
pub const BACKLOG: usize = 2000;
/// Events a subscriber may fall behind before it skips some. Default 1,024.
pub const LIVE: usize = 1024;
/// Streams of one tenant open at once on one node. Default 32.
pub const MAX_STREAMS: usize = 32;
/// How long a tenant's events are still kept after its last stream on
/// this node closed, for a client that reconnects. Default 10 min.
pub const KEEP_AFTER: Duration = Duration::from_secs(600);
/// How often a node tells the others which tenants it watches. Default 30 s.
pub const WATCH_RENEW: Duration = Duration::from_secs(30);
/// How long a node sends a tenant's events after another node last said
/// it watches it: a few renewals, so that one lost notification loses
/// nothing. Default 2 min.
pub const WATCH_LEASE: Duration = Duration::from_secs(120);

/// An event of a tenant, as it travels between nodes: `origin` names the
/// process that made it, so that it does not hear its own twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub origin: String,
    pub tenant: String,
    pub event: Event,
}

/// An event as this node delivers it: with its id in the tenant's stream
/// here.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub id: String,
    pub event: Arc<Stamped>,
}

/// What a node tells the others about watching: the tenants it watches,
/// or a question, from a node that (re)connected, to say so now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Watching {
    Tenants { node: String, tenants: Vec<String> },
    Who { node: String },
}

/// Why a stream cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("at most {MAX_STREAMS} event streams of a tenant may be open on a node")]
    TooMany,
    #[error("the node is stopping")]
    Stopping,
}

/// A node's feed.
pub struct Events {
    /// This process, among every process that ever emitted events.
    incarnation: String,
    made: AtomicU64,
    kept: Mutex<Kept>,
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

/// The feeds of the tenants watched here.
#[derive(Default)]
struct Kept {
    feeds: HashMap<String, Feed>,
    /// Events delivered per tenant, ever: ids never repeat, even when a
    /// feed starts afresh.
    counts: HashMap<String, u64>,
    stopping: bool,
}

/// One tenant's events here: those kept, and the live ring.
struct Feed {
    events: VecDeque<Delivered>,
    live: broadcast::Sender<Delivered>,
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
            made: AtomicU64::new(0),
            kept: Mutex::default(),
            outbox: Mutex::new(None),
            active: AtomicBool::new(false),
            interest: Mutex::default(),
            announce: Notify::new(),
        }
    }
}

/// What a subscriber gets first.
pub enum Start {
    /// From now on.
    Now,
    /// These events, missed since its `Last-Event-ID`, then on.
    Resumed(VecDeque<Delivered>),
    /// Its `Last-Event-ID` is no longer kept here (or was never this
    /// node's): from now on, and events may have been missed.
    Reset,
}

/// The next thing a subscriber reads.
pub enum Delivery {
    Event(Delivered),
    /// It fell behind, and skipped events.
    Lost,
}

/// One subscriber's view of its tenant's events; its tenant is watched
/// until it drops (and [`KEEP_AFTER`] more).
pub struct Subscription {
    pub start: Start,
    live: broadcast::Receiver<Delivered>,
    tenant: String,
    events: Arc<Events>,
}

impl Subscription {
    /// The tenant's next event, or a notice; `None` once the node stops.
    pub async fn next(&mut self) -> Option<Delivery> {
        match self.live.recv().await {
            Ok(event) => Some(Delivery::Event(event)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Delivery::Lost),
            Err(broadcast::error::RecvError::Closed) => None,
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

impl Feed {
    fn new() -> Self {
        Self { events: VecDeque::new(), live: broadcast::channel(LIVE).0 }
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
        let mut send = Vec::new();
        {
            let mut interest = self.interest.lock().unwrap();
            let mut kept = self.kept.lock().unwrap();
            if !interest.prune(now) {
                self.active.store(false, Ordering::Relaxed);
                kept.feeds.clear();
                return;
            }
            kept.feeds.retain(|tenant, _| interest.here(tenant, now));
            for (tenant, event) in events {
                let (here, elsewhere) = (interest.here(&tenant, now), interest.elsewhere(&tenant, now));
                if !here && !elsewhere {
                    continue;
                }
                let origin = format!("{}-{}", self.incarnation, self.made.fetch_add(1, Ordering::Relaxed));
                let stamped = Arc::new(Stamped { origin, tenant, event });
                if here {
                    deliver(&self.incarnation, &mut kept, stamped.clone());
                }
                if elsewhere {
                    send.push(stamped);
                }
            }
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
        let mut kept = self.kept.lock().unwrap();
        for event in events {
            if !event.origin.starts_with(&mine) && interest.here(&event.tenant, now) {
                deliver(&self.incarnation, &mut kept, Arc::new(event));
            }
        }
    }

    /// A subscriber to `tenant`'s events from now on, or after its event
    /// `last` (a `Last-Event-ID` this node gave).
    pub fn subscribe(self: &Arc<Self>, tenant: &str, last: Option<&str>) -> Result<Subscription, SubscribeError> {
        let now = Instant::now();
        let mut interest = self.interest.lock().unwrap();
        let mut kept = self.kept.lock().unwrap();
        if kept.stopping {
            return Err(SubscribeError::Stopping);
        }
        let watched = interest.here(tenant, now);
        let watch = interest.here.entry(tenant.to_owned()).or_insert(Watch { streams: 0, until: now });
        if watch.streams >= MAX_STREAMS {
            return Err(SubscribeError::TooMany);
        }
        watch.streams += 1;
        self.active.store(true, Ordering::Relaxed);
        if !watched {
            // Events of the time nobody watched were not kept: older ids
            // must not resume as if nothing had happened.
            kept.feeds.remove(tenant);
            self.announce.notify_one();
        }
        let feed = kept.feeds.entry(tenant.to_owned()).or_insert_with(Feed::new);
        let live = feed.live.subscribe();
        let start = match last {
            None => Start::Now,
            Some(last) => match feed.events.iter().rposition(|e| e.id == last) {
                Some(at) => Start::Resumed(feed.events.iter().skip(at + 1).cloned().collect()),
                None => Start::Reset,
            },
        };
        drop((kept, interest));
        Ok(Subscription { start, live, tenant: tenant.to_owned(), events: self.clone() })
    }

    /// The node stops: every stream ends, and no other opens.
    pub fn stop(&self) {
        let mut kept = self.kept.lock().unwrap();
        kept.stopping = true;
        kept.feeds.clear();
    }

    /// What to tell the other nodes now: the tenants watched here.
    pub fn watching(&self) -> Watching {
        let now = Instant::now();
        let interest = self.interest.lock().unwrap();
        let tenants = interest.here.iter().filter(|(_, w)| w.streams > 0 || w.until > now).map(|(t, _)| t.clone());
        Watching::Tenants { node: self.incarnation.clone(), tenants: tenants.collect() }
    }

    /// The question a node that (re)connects asks the others.
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

/// Keeps and delivers `event` in its tenant's feed, numbered next.
fn deliver(incarnation: &str, kept: &mut Kept, event: Arc<Stamped>) {
    let count = kept.counts.entry(event.tenant.clone()).or_default();
    *count += 1;
    let delivered = Delivered { id: format!("{incarnation}-{count}"), event };
    let feed = kept.feeds.entry(delivered.event.tenant.clone()).or_insert_with(Feed::new);
    if feed.events.len() == BACKLOG {
        feed.events.pop_front();
    }
    feed.events.push_back(delivered.clone());
    // No subscriber: nothing to deliver.
    let _ = feed.live.send(delivered);
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
            Some(Delivery::Event(e)) => e.event.event.task.clone().unwrap(),
            _ => panic!("not an event"),
        }
    }

    fn kept(events: &Events, tenant: &str) -> Vec<Delivered> {
        events.kept.lock().unwrap().feeds.get(tenant).map(|f| f.events.iter().cloned().collect()).unwrap_or_default()
    }

    fn resumed(events: &Arc<Events>, tenant: &str, last: &str) -> Option<Vec<String>> {
        let mut subscription = events.subscribe(tenant, Some(last)).unwrap();
        match std::mem::replace(&mut subscription.start, Start::Now) {
            Start::Resumed(missed) => Some(missed.iter().map(|e| e.event.event.task.clone().unwrap()).collect()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_its_tenants_events_and_resumes_after_its_last_or_is_told_it_cannot() {
        let events = Arc::new(Events::default());
        let mut a = events.subscribe("a", None).unwrap();
        let _b = events.subscribe("b", None).unwrap();
        events.emit("a", queued("1"));
        events.emit("b", queued("2"));
        events.emit("a", queued("3"));
        assert_eq!((task(a.next().await), task(a.next().await)), ("1".into(), "3".into()));
        let first = kept(&events, "a")[0].id.clone();
        assert_eq!(resumed(&events, "a", &first), Some(vec!["3".to_owned()]));
        // Another tenant's id, or one not kept, resumes nothing.
        let second = kept(&events, "a")[1].id.clone();
        assert_eq!(resumed(&events, "b", &second), None);
        assert_eq!(resumed(&events, "a", "elsewhere-1"), None);
    }

    #[test]
    fn ids_count_each_tenants_events_apart() {
        let events = Arc::new(Events::default());
        let (_a, _b) = (events.subscribe("a", None).unwrap(), events.subscribe("b", None).unwrap());
        events.emit_all([("a".into(), queued("1")), ("b".into(), queued("2")), ("a".into(), queued("3"))]);
        let seq = |t| kept(&events, t).iter().map(|e| e.id.rsplit('-').next().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!((seq("a"), seq("b")), (vec!["1".to_owned(), "2".to_owned()], vec!["1".to_owned()]));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_skips_with_a_notice_and_another_tenants_events_do_not_count() {
        let events = Arc::new(Events::default());
        let mut slow = events.subscribe("a", None).unwrap();
        let _b = events.subscribe("b", None).unwrap();
        for i in 0..LIVE * 3 {
            events.emit("b", queued(&i.to_string()));
        }
        events.emit("a", queued("mine"));
        assert_eq!(task(slow.next().await), "mine", "b's events made a's stream skip");
        for i in 0..LIVE + 10 {
            events.emit("a", queued(&i.to_string()));
        }
        assert!(matches!(slow.next().await, Some(Delivery::Lost)));
        assert_eq!(task(slow.next().await), "10");
        assert_eq!(kept(&events, "a").len(), LIVE + 11);
    }

    #[test]
    fn events_of_tenants_nobody_watches_are_neither_kept_nor_sent_nor_built() {
        let events = Arc::new(Events::default());
        let mut outgoing = events.outgoing().unwrap();
        let mut built = 0;
        let made = std::iter::from_fn(|| {
            built += 1;
            Some(("a".to_owned(), queued("1")))
        });
        events.emit_all(made.take(3));
        assert_eq!(built, 0, "events were built while nobody watched");
        // Watched on another node: sent, not kept; watched here: kept.
        events.heard(Watching::Tenants { node: "other".into(), tenants: vec!["b".into()] });
        let _c = events.subscribe("c", None).unwrap();
        events.emit_all([("a".into(), queued("1")), ("b".into(), queued("2")), ("c".into(), queued("3"))]);
        let sent: Vec<String> = outgoing.try_recv().unwrap().iter().map(|e| e.tenant.clone()).collect();
        assert_eq!(sent, ["b"]);
        assert_eq!((kept(&events, "b").len(), kept(&events, "c").len()), (0, 1));
    }

    #[test]
    fn a_closed_stream_keeps_its_tenant_watched_for_a_while_and_a_node_ignores_itself() {
        let events = Arc::new(Events::default());
        drop(events.subscribe("a", None).unwrap());
        events.emit("a", queued("1"));
        assert_eq!(kept(&events, "a").len(), 1, "a client reconnecting would miss it");
        let Watching::Tenants { tenants, .. } = events.watching() else { panic!("not tenants") };
        assert_eq!(tenants, ["a"]);
        events.heard(events.watching());
        assert!(events.interest.lock().unwrap().elsewhere.is_empty(), "it heard itself");
    }

    #[test]
    fn a_tenant_watched_again_after_a_gap_starts_afresh_and_its_old_ids_reset() {
        let events = Arc::new(Events::default());
        drop(events.subscribe("a", None).unwrap());
        events.emit("a", queued("1"));
        let old = kept(&events, "a")[0].id.clone();
        // The keep window passes: nobody watches; events are not kept.
        events.interest.lock().unwrap().here.get_mut("a").unwrap().until = Instant::now();
        events.emit("a", queued("2"));
        assert_eq!(resumed(&events, "a", &old), None, "resumed past an event that was never kept");
        events.emit("a", queued("3"));
        let new = kept(&events, "a")[0].id.clone();
        assert_ne!(new, old, "an id was given twice");
    }

    #[tokio::test]
    async fn streams_are_bounded_per_tenant_and_end_when_the_node_stops() {
        let events = Arc::new(Events::default());
        let mut open: Vec<_> = (0..MAX_STREAMS).map(|_| events.subscribe("a", None).unwrap()).collect();
        assert_eq!(events.subscribe("a", None).err(), Some(SubscribeError::TooMany));
        assert!(events.subscribe("b", None).is_ok(), "another tenant is not bounded by a's streams");
        events.stop();
        assert!(open[0].next().await.is_none());
        assert_eq!(events.subscribe("b", None).err(), Some(SubscribeError::Stopping));
        open.clear();
    }

    #[test]
    fn events_heard_back_from_the_store_are_not_kept_twice() {
        let events = Arc::new(Events::default());
        let mut outgoing = events.outgoing().unwrap();
        let _a = events.subscribe("a", None).unwrap();
        events.heard(Watching::Tenants { node: "other".into(), tenants: vec!["a".into()] });
        events.emit("a", queued("1"));
        let sent: Vec<Stamped> = outgoing.try_recv().unwrap().iter().map(|e| (**e).clone()).collect();
        events.received(sent);
        assert_eq!(kept(&events, "a").len(), 1);
    }
}
