//! The event bus: typed events fanned out to subscribers (SSE streams, log followers).
//!
//! Publishing never blocks. Each subscriber reads from a bounded ring (tokio's broadcast
//! channel): a subscriber that falls behind loses the *oldest* events, and the loss is
//! counted in [`EventBus::stats`] (shown by `/v1/health`). The audit writer must not lose
//! anything, so it is not a subscription: [`EventBus::publish`] hands every event to it
//! first ([`crate::audit::Audit::record`]), and blocks while the audit queue is full
//! (backpressure on the producer, never a dropped entry).
//!
//! The bus also keeps the last [`HISTORY`] events, so that an SSE client that reconnects
//! with `Last-Event-ID` gets what it missed ([`EventBus::stream`]); what is older than that
//! (or what a slow client lost) arrives as one [`Delivery::Dropped`] with the count, never
//! as a silent gap and never by making the publisher wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use paddock_api::{Event, EventBusStats};
use tokio::sync::broadcast;

use crate::audit::Audit;
use crate::store::now_rfc3339;

/// Buffered events per subscriber before the oldest are dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// Events kept for resuming streams (`Last-Event-ID`).
pub const HISTORY: usize = 4096;

#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<Event>>,
    /// The last [`HISTORY`] events, in the order they were sent (which is `seq` order
    /// but for publishers racing each other). Keeping and sending happen under this lock,
    /// so an event is either in a new stream's backlog or live on it, never both.
    history: Mutex<VecDeque<Arc<Event>>>,
    seq: AtomicU64,
    dropped: AtomicU64,
    audit: Option<Arc<Audit>>,
    /// Sees every event as it is published (the metrics' counters); set once.
    observer: std::sync::OnceLock<Observer>,
}

/// A function shown every published event, on the publisher's thread: it must be quick
/// and must not publish.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// One subscription for the daemon's own followers: an [`EventStream`] from now on whose
/// losses are only counted. Dropping it unsubscribes.
pub struct Subscription(EventStream);

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A bus whose every event is also recorded in the audit log.
    pub fn with_audit(audit: Arc<Audit>) -> Self {
        Self::build(Some(audit))
    }

    fn build(audit: Option<Arc<Audit>>) -> Self {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        EventBus {
            inner: Arc::new(Inner {
                tx,
                history: Mutex::new(VecDeque::with_capacity(HISTORY)),
                seq: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                audit,
                observer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Show every event published from now on to `f` (once; a second call is ignored).
    pub fn set_observer(&self, f: Observer) {
        let _ = self.inner.observer.set(f);
    }

    /// The audit writer, when the bus records to one.
    pub fn audit(&self) -> Option<&Arc<Audit>> {
        self.inner.audit.as_ref()
    }

    /// Publish an event: first to the audit writer (blocking while its queue is full), then
    /// to subscribers (never blocking; with none the event is simply not kept).
    pub fn publish(&self, run_id: Option<&str>, kind: &str, data: serde_json::Value) -> Arc<Event> {
        self.publish_inner(run_id, kind, data).0
    }

    /// Publish, and return only once the audit entry is durable (fsynced). Returns false
    /// when it could not be recorded (or there is no audit writer).
    pub fn publish_recorded(
        &self,
        run_id: Option<&str>,
        kind: &str,
        data: serde_json::Value,
    ) -> bool {
        match self.publish_inner(run_id, kind, data).1 {
            Some(done) => done.recv().unwrap_or(false),
            None => false,
        }
    }

    fn publish_inner(
        &self,
        run_id: Option<&str>,
        kind: &str,
        data: serde_json::Value,
    ) -> (Arc<Event>, Option<std::sync::mpsc::Receiver<bool>>) {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let event = Arc::new(Event {
            seq,
            ts: now_rfc3339(),
            run_id: run_id.map(str::to_string),
            kind: kind.to_string(),
            data,
        });
        // Recorded before anyone sees it: a client reacting to an event makes entries
        // that come after it in the log.
        let done = self.inner.audit.as_ref().and_then(|a| a.record(&event));
        if let Some(observe) = self.inner.observer.get() {
            observe(&event);
        }
        let mut history = self.inner.history.lock().expect("bus history poisoned");
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        let _ = self.inner.tx.send(event.clone());
        drop(history);
        (event, done)
    }

    /// A stream for one client: events after `after` (from the history, then live), those
    /// matching `filter`, with losses reported as [`Delivery::Dropped`].
    pub fn stream(&self, filter: Filter, after: Option<u64>) -> EventStream {
        let Some(after) = after else {
            return EventStream {
                rx: self.inner.tx.subscribe(),
                bus: self.clone(),
                filter,
                pending: VecDeque::new(),
            };
        };
        let history = self.inner.history.lock().expect("bus history poisoned");
        // Subscribed under the lock: nothing published between the copy and the
        // subscription is missed or seen twice.
        let rx = self.inner.tx.subscribe();
        let mut pending = VecDeque::new();
        let oldest = history.front().map_or(after.saturating_add(1), |e| e.seq);
        let newest = self.inner.seq.load(Ordering::Relaxed);
        // An id from the future (another daemon's, or made up) resumes from now.
        if after < newest {
            let lost = oldest.saturating_sub(after.saturating_add(1));
            if lost > 0 {
                self.inner.dropped.fetch_add(lost, Ordering::Relaxed);
                pending.push_back(Delivery::Dropped(lost));
            }
            let missed = history
                .iter()
                .filter(|e| e.seq > after && filter.matches(e));
            pending.extend(missed.cloned().map(Delivery::Event));
        }
        drop(history);
        EventStream {
            rx,
            bus: self.clone(),
            filter,
            pending,
        }
    }

    /// Subscribe to everything, or to one run's events.
    pub fn subscribe(&self, run_filter: Option<String>) -> Subscription {
        let filter = Filter {
            run: run_filter,
            kinds: Vec::new(),
        };
        Subscription(self.stream(filter, None))
    }

    pub fn stats(&self) -> EventBusStats {
        EventBusStats {
            published: self.inner.seq.load(Ordering::Relaxed),
            subscribers: self.inner.tx.receiver_count() as u64,
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Which events a stream carries: one run's (or all), of kinds starting with one of the
/// prefixes (or all).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub run: Option<String>,
    /// Kind prefixes (`net.`, `run.state`); empty is every kind.
    pub kinds: Vec<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        if let Some(r) = &self.run
            && e.run_id.as_deref() != Some(r.as_str())
        {
            return false;
        }
        self.kinds.is_empty() || self.kinds.iter().any(|k| e.kind.starts_with(k.as_str()))
    }
}

/// What an [`EventStream`] hands out.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<Event>),
    /// This many events were lost (the client was too slow, or resumed from further back
    /// than the history holds).
    Dropped(u64),
}

/// One client's stream: its backlog first, then live events. Dropping it unsubscribes.
pub struct EventStream {
    rx: broadcast::Receiver<Arc<Event>>,
    bus: EventBus,
    filter: Filter,
    pending: VecDeque<Delivery>,
}

impl EventStream {
    /// The next delivery; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<Delivery> {
        if let Some(d) = self.pending.pop_front() {
            return Some(d);
        }
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    if self.filter.matches(&ev) {
                        return Some(Delivery::Event(ev));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.bus.inner.dropped.fetch_add(n, Ordering::Relaxed);
                    return Some(Delivery::Dropped(n));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Subscription {
    /// The next matching event; `None` when the bus is gone.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            if let Delivery::Event(ev) = self.0.next().await? {
                return Some(ev);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_subscriber_loses_oldest_and_drops_are_counted() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(None);
        let total = SUBSCRIBER_BUFFER as u64 + 10;
        for i in 0..total {
            bus.publish(None, "test", serde_json::json!(i));
        }
        let first = sub.recv().await.unwrap();
        assert_eq!(
            first.data,
            serde_json::json!(10),
            "the 10 oldest were dropped"
        );
        assert_eq!(bus.stats().dropped, 10);
        assert_eq!(bus.stats().published, total);
    }

    #[tokio::test]
    async fn filter_by_run() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(Some("run_a".into()));
        bus.publish(Some("run_b"), "x", serde_json::Value::Null);
        bus.publish(Some("run_a"), "y", serde_json::Value::Null);
        assert_eq!(sub.recv().await.unwrap().kind, "y");
    }

    fn kinds(list: &[&str]) -> Filter {
        Filter {
            run: None,
            kinds: list.iter().map(|s| s.to_string()).collect(),
        }
    }

    async fn next_event(s: &mut EventStream) -> Arc<Event> {
        match s.next().await.unwrap() {
            Delivery::Event(e) => e,
            Delivery::Dropped(n) => panic!("unexpected drop of {n}"),
        }
    }

    #[tokio::test]
    async fn a_resumed_stream_gets_what_it_missed_then_live_events_once() {
        let bus = EventBus::new();
        for i in 1..=5 {
            bus.publish(None, "t", serde_json::json!(i));
        }
        let mut s = bus.stream(Filter::default(), Some(3));
        bus.publish(None, "t", serde_json::json!(6));
        let seqs: Vec<u64> = [
            next_event(&mut s).await,
            next_event(&mut s).await,
            next_event(&mut s).await,
        ]
        .iter()
        .map(|e| e.seq)
        .collect();
        assert_eq!(seqs, [4, 5, 6]);
        // Without an id: only what comes next.
        let mut fresh = bus.stream(Filter::default(), None);
        bus.publish(None, "t", serde_json::json!(7));
        assert_eq!(next_event(&mut fresh).await.seq, 7);
        // An id from the future resumes from now.
        let mut future = bus.stream(Filter::default(), Some(u64::MAX));
        bus.publish(None, "t", serde_json::json!(8));
        assert_eq!(next_event(&mut future).await.seq, 8);
    }

    #[tokio::test]
    async fn resuming_from_before_the_history_reports_the_loss_first() {
        let bus = EventBus::new();
        let total = HISTORY as u64 + 20;
        for i in 0..total {
            bus.publish(None, "t", serde_json::json!(i));
        }
        let mut s = bus.stream(Filter::default(), Some(0));
        match s.next().await.unwrap() {
            Delivery::Dropped(n) => assert_eq!(n, 20),
            Delivery::Event(e) => panic!("expected a drop first, got {}", e.seq),
        }
        assert_eq!(next_event(&mut s).await.seq, 21);
    }

    #[tokio::test]
    async fn a_slow_stream_is_told_how_many_it_lost() {
        let bus = EventBus::new();
        let mut s = bus.stream(Filter::default(), None);
        for i in 0..(SUBSCRIBER_BUFFER as u64 + 7) {
            bus.publish(None, "t", serde_json::json!(i));
        }
        match s.next().await.unwrap() {
            Delivery::Dropped(n) => assert_eq!(n, 7),
            Delivery::Event(e) => panic!("expected a drop, got {}", e.seq),
        }
        assert_eq!(next_event(&mut s).await.data, serde_json::json!(7));
        assert_eq!(bus.stats().dropped, 7);
    }

    #[tokio::test]
    async fn streams_filter_by_kind_prefix_and_run() {
        let bus = EventBus::new();
        let mut s = bus.stream(kinds(&["net.", "run.exit"]), None);
        let mut one = bus.stream(
            Filter {
                run: Some("run_a".into()),
                kinds: vec![],
            },
            None,
        );
        bus.publish(Some("run_b"), "run.state", serde_json::Value::Null);
        bus.publish(Some("run_b"), "net.denied", serde_json::Value::Null);
        bus.publish(Some("run_a"), "run.exit", serde_json::Value::Null);
        assert_eq!(next_event(&mut s).await.kind, "net.denied");
        assert_eq!(next_event(&mut s).await.kind, "run.exit");
        assert_eq!(next_event(&mut one).await.kind, "run.exit");
    }
}
