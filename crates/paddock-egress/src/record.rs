//! Network log records: one per HTTP request, tunnel, passthrough connection or DNS query.
//!
//! Records carry grant *names*, never credential values. The daemon passes a sink that
//! forwards them to the event bus and the run's log.
//!
//! The sink may block: the daemon's bus waits while its audit queue is full, so that no
//! audit entry is ever dropped. It therefore never runs on a tokio worker: each
//! [`Recorder`] hands records over a bounded queue ([`QUEUE`]) to a thread of its own
//! (started by the first record, so a run that makes no request costs no thread), which
//! calls the sink in order. [`Recorder::emit`] only enqueues; when the queue is full
//! it waits (backpressure, never a drop), inside `block_in_place` on a multi-thread
//! runtime so the worker's other tasks move elsewhere meanwhile.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::policy::Decision;

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// One HTTP request (plain or intercepted TLS).
    Http,
    /// A TLS connection passed through by SNI only (no interception).
    Passthrough,
    /// A connection refused before any request was seen (no SNI/Host, fronting, not
    /// interceptable, denied at connection level).
    Connection,
    /// One DNS query to the stub.
    Dns,
    /// A credential about to be injected into a request (names only). Emitted, and handed
    /// to the sink, before the request leaves for the upstream: the use is on the record
    /// even when the request never completes. The request's own record follows.
    GrantUse,
}

/// One network log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetRecord {
    /// The run (filled in by the run's [`Recorder`]).
    pub run_id: String,
    /// Start, milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub kind: RecordKind,
    /// HTTP method; the query type for DNS.
    pub method: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// HTTP status; the rcode for DNS.
    pub status: Option<u16>,
    /// Bytes from the sandbox (request body, or everything up for a tunnel).
    pub bytes_up: u64,
    /// Bytes to the sandbox.
    pub bytes_down: u64,
    pub duration_us: u64,
    pub decision: Decision,
    /// Names of the grants whose credentials were injected.
    pub grants: Vec<String>,
    /// Extra detail: the synthetic address of a DNS answer, the error of a failed request.
    pub detail: Option<String>,
    #[serde(skip)]
    started: Option<Instant>,
}

impl NetRecord {
    pub fn new(kind: RecordKind, host: impl Into<String>, decision: Decision) -> Self {
        NetRecord {
            run_id: String::new(),
            time_ms: now_ms(),
            kind,
            method: None,
            host: host.into(),
            port: None,
            path: None,
            status: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_us: 0,
            decision,
            grants: vec![],
            detail: None,
            started: Some(Instant::now()),
        }
    }

    /// Set the duration from `t0`.
    pub fn finish(&mut self, t0: Instant) {
        self.duration_us = t0.elapsed().as_micros() as u64;
    }

    /// Set the duration from when the record was created.
    pub fn finish_now(&mut self) {
        if let Some(t) = self.started {
            self.duration_us = t.elapsed().as_micros() as u64;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where records go. Called on the recorder's own thread, in order; may block.
pub type RecordSink = Arc<dyn Fn(NetRecord) + Send + Sync>;

/// Records a run's recorder holds before [`Recorder::emit`] waits for its thread.
pub const QUEUE: usize = 4096;

struct Job {
    /// None: a marker, delivered once every record before it was ([`Recorder::flushed`]).
    record: Option<NetRecord>,
    /// Told once the sink has returned for `record`.
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A run's record emitter: stamps the run id and hands the record to the sink's thread.
#[derive(Clone)]
pub struct Recorder {
    run_id: Arc<str>,
    inner: Arc<Inner>,
}

struct Inner {
    sink: RecordSink,
    /// The sink's thread, started by the first record (a run that never uses the network
    /// costs no thread); it ends when the last clone of the recorder is dropped and every
    /// queued record was handed over.
    tx: std::sync::OnceLock<std::sync::mpsc::SyncSender<Job>>,
    starting: std::sync::Mutex<()>,
}

fn start_thread(sink: RecordSink) -> std::io::Result<std::sync::mpsc::SyncSender<Job>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
    std::thread::Builder::new()
        .name("paddock-netlog".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            for job in rx {
                deliver(&sink, job);
            }
        })?;
    Ok(tx)
}

fn deliver(sink: &RecordSink, job: Job) {
    if let Some(record) = job.record {
        let call = std::panic::AssertUnwindSafe(|| sink(record));
        if std::panic::catch_unwind(call).is_err() {
            tracing::error!("the network record sink panicked; record lost");
        }
    }
    if let Some(done) = job.done {
        let _ = done.send(());
    }
}

/// Run `f`, which may block, without holding up the other tasks of a multi-thread
/// runtime's worker.
fn blocking(f: impl FnOnce()) {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f);
    } else {
        f();
    }
}

impl Recorder {
    /// A recorder whose records go to `sink`, in order, on a thread of its own (started
    /// with the first record).
    pub fn new(run_id: &str, sink: RecordSink) -> std::io::Result<Self> {
        Ok(Recorder {
            run_id: run_id.into(),
            inner: Arc::new(Inner {
                sink,
                tx: std::sync::OnceLock::new(),
                starting: std::sync::Mutex::new(()),
            }),
        })
    }

    /// Hands `r` to the sink's thread. Returns at once unless [`QUEUE`] records are
    /// waiting; then it waits for room (a record is never dropped), without holding up
    /// the other tasks of a multi-thread runtime's worker.
    pub fn emit(&self, mut r: NetRecord) {
        r.run_id = self.run_id.to_string();
        self.send(Job {
            record: Some(r),
            done: None,
        });
    }

    /// Resolves once every record emitted before this call has been through the sink (at
    /// once when none ever was: the thread starts with the first record).
    pub async fn flushed(&self) {
        if self.inner.tx.get().is_none() {
            return;
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Job {
            record: None,
            done: Some(done),
        });
        let _ = wait.await;
    }

    /// Like [`emit`](Self::emit), and resolves once the sink has returned for `r` (for
    /// the daemon: once the bus has it and its audit entry is queued).
    pub async fn emit_published(&self, mut r: NetRecord) {
        r.run_id = self.run_id.to_string();
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Job {
            record: Some(r),
            done: Some(done),
        });
        let _ = wait.await;
    }

    /// The sink's thread, started on first use; `None` if it cannot be started.
    fn thread(&self) -> Option<&std::sync::mpsc::SyncSender<Job>> {
        if let Some(tx) = self.inner.tx.get() {
            return Some(tx);
        }
        let _one = self
            .inner
            .starting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.inner.tx.get().is_none() {
            match start_thread(self.inner.sink.clone()) {
                Ok(tx) => {
                    let _ = self.inner.tx.set(tx);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the network record thread; recording in place")
                }
            }
        }
        self.inner.tx.get()
    }

    fn send(&self, job: Job) {
        use std::sync::mpsc::TrySendError;
        let Some(tx) = self.thread() else {
            // No thread could be started (and so none ever took a record): the sink is
            // called here, in order, rather than lose the record.
            let sink = self.inner.sink.clone();
            blocking(move || deliver(&sink, job));
            return;
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                blocking(move || {
                    let _ = tx.send(job);
                });
            }
            // Only if the thread died, which catching the sink's panics prevents.
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the network record thread is gone; record lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn rec(host: &str) -> NetRecord {
        NetRecord::new(RecordKind::Http, host, Decision::builtin_deny("test"))
    }

    /// A sink that blocks (a full audit queue) neither drops records nor stops the
    /// runtime's other tasks, and records arrive in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_blocked_sink_backpressures_without_dropping_or_stalling_the_worker() {
        let gate = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (g, s) = (gate.clone(), seen.clone());
        let r = Recorder::new(
            "run_t",
            Arc::new(move |rec: NetRecord| {
                while !g.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                s.lock().unwrap().push(rec.host);
            }),
        )
        .unwrap();
        let n = QUEUE + 50;
        let producer = {
            let r = r.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    r.emit(rec(&i.to_string()));
                }
            })
        };
        // Another task on the one worker runs while the producer waits for room. (This
        // thread only watches: it is not a worker.)
        let other = tokio::spawn(async {});
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (stalled, producer_done) = (!other.is_finished(), producer.is_finished());
        gate.store(true, Ordering::SeqCst);
        assert!(!stalled, "the worker is stalled by a full queue");
        assert!(
            !producer_done,
            "{QUEUE} records in the queue and none waited"
        );
        producer.await.unwrap();
        r.emit_published(rec("last")).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), n + 1);
        assert!(
            seen.iter()
                .take(n)
                .enumerate()
                .all(|(i, h)| *h == i.to_string())
        );
        assert_eq!(seen[n], "last");
    }

    #[test]
    fn emit_works_outside_a_runtime() {
        let seen: Arc<Mutex<Vec<NetRecord>>> = Arc::default();
        let s = seen.clone();
        let r = Recorder::new("run_x", Arc::new(move |rec| s.lock().unwrap().push(rec))).unwrap();
        r.emit(rec("a"));
        drop(r);
        for _ in 0..200 {
            if !seen.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].run_id, "run_x");
    }
}
