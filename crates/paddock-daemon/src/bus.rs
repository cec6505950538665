//! The event bus: typed events fanned out to subscribers (SSE streams, log followers).
//!
//! Publishing never blocks. Each subscriber reads from a bounded ring (tokio's broadcast
//! channel): a subscriber that falls behind loses the *oldest* events, and the loss is
//! counted in [`EventBus::stats`] (shown by `/v1/health`). The audit writer must not lose
//! anything, so it is not a subscription: [`EventBus::publish`] hands every event to it
//! first ([`crate::audit::Audit::record`]), and blocks while the audit queue is full
//! (backpressure on the producer, never a dropped entry).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paddock_api::{Event, EventBusStats};
use tokio::sync::broadcast;

use crate::audit::Audit;
use crate::store::now_rfc3339;

/// Buffered events per subscriber before the oldest are dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;

#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<Event>>,
    seq: AtomicU64,
    dropped: AtomicU64,
    audit: Option<Arc<Audit>>,
}

/// One subscription. Dropping it unsubscribes.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    bus: EventBus,
    run_filter: Option<String>,
}

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
                seq: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                audit,
            }),
        }
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
        let done = self.inner.audit.as_ref().and_then(|a| a.record(&event));
        let _ = self.inner.tx.send(event.clone());
        (event, done)
    }

    /// Subscribe to everything, or to one run's events.
    pub fn subscribe(&self, run_filter: Option<String>) -> Subscription {
        Subscription {
            rx: self.inner.tx.subscribe(),
            bus: self.clone(),
            run_filter,
        }
    }

    pub fn stats(&self) -> EventBusStats {
        EventBusStats {
            published: self.inner.seq.load(Ordering::Relaxed),
            subscribers: self.inner.tx.receiver_count() as u64,
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Subscription {
    /// The next matching event; `None` when the bus is gone.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    if let Some(f) = &self.run_filter
                        && ev.run_id.as_deref() != Some(f.as_str())
                    {
                        continue;
                    }
                    return Some(ev);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.bus.inner.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
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
}
