//! Group commit for many producers: writer threads that own [`AuditLog`]s, drain a bounded
//! queue into batches (one fsync per log per batch) and answer each entry with its seq once
//! it is durable.
//!
//! Two ways to run writers, one loop behind both:
//! - [`Committer`]: one thread for one log (the log is handed back at [`Committer::finish`]);
//! - [`WriterPool`]: a fixed set of threads serving any number of logs. Each log is placed
//!   on the least loaded thread when opened ([`WriterPool::open_with`]) and stays there, so
//!   opening a log spawns nothing and a thousand open logs cost the same threads as one.
//!
//! Owns: batching, backpressure (a full queue blocks producers: an audit entry is never
//! dropped), periodic [`AuditLog::maybe_checkpoint`] of every log a thread serves (also
//! when idle, and also while other logs of the same thread are busy), and the final
//! checkpoint when a log is closed ([`Committer::finish`], [`PooledLog::close`]).
//! Never: acknowledges an entry before its batch is fsynced; drops an entry; reorders the
//! entries of one producer (a log's messages all travel one FIFO queue to one thread).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoint;
use crate::entry::{NewEntry, now_ms};
use crate::error::AuditError;
use crate::store::AuditLog;

/// Queue and batching limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitterConfig {
    /// Messages that may wait in a writer thread's queue before producers block (for a
    /// [`WriterPool`], per thread, shared by the logs it serves).
    pub queue: usize,
    /// Largest batch per fsync (per log).
    pub max_batch: usize,
    /// How often a writer checks whether a time-based checkpoint is due in each of its
    /// logs (also when idle).
    pub tick: Duration,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        Self {
            queue: 8192,
            max_batch: 4096,
            tick: Duration::from_millis(250),
        }
    }
}

/// Why an entry was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The writer has stopped (finished, the log was closed, or it failed earlier).
    #[error("the audit writer has stopped; the entry was not recorded")]
    Closed,
    /// Writing the batch failed; none of its entries is in the log.
    #[error("the audit batch was not written: {0}")]
    Failed(String),
}

type Reply<T> = SyncSender<Result<T, CommitError>>;
type Opener = Box<dyn FnOnce() -> Result<AuditLog, AuditError> + Send>;
type OnClose = Box<dyn FnOnce(Result<Checkpoint, CommitError>) + Send>;
/// Which of a thread's logs a message is for.
type LogKey = u64;

enum Msg {
    Open(LogKey, Opener),
    Append(LogKey, NewEntry, AckTo),
    Checkpoint(LogKey, Reply<Checkpoint>),
    /// Commit what is queued, sign a final checkpoint, release the log (its files and
    /// lock) and then answer.
    Close(LogKey, Option<OnClose>),
}

/// Where an entry's outcome goes once its batch is fsynced (or failed).
enum AckTo {
    Channel(Reply<u64>),
    Call(Box<dyn FnOnce(Result<u64, CommitError>) + Send>),
}

impl AckTo {
    fn send(self, r: Result<u64, CommitError>) {
        match self {
            AckTo::Channel(tx) => {
                let _ = tx.send(r);
            }
            AckTo::Call(f) => f(r),
        }
    }
}

/// A pending acknowledgement: [`Ack::wait`] returns the entry's seq once it is durable.
#[derive(Debug)]
pub struct Ack(Receiver<Result<u64, CommitError>>);

impl Ack {
    /// Blocks until the entry's batch is fsynced (or failed).
    pub fn wait(self) -> Result<u64, CommitError> {
        self.0.recv().unwrap_or(Err(CommitError::Closed))
    }
}

/// A cloneable handle for producers of one log.
#[derive(Debug, Clone)]
pub struct CommitHandle {
    tx: SyncSender<Msg>,
    key: LogKey,
}

impl CommitHandle {
    /// Queues an entry (blocking while the queue is full) and returns its pending ack.
    pub fn submit(&self, entry: NewEntry) -> Result<Ack, CommitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Append(self.key, entry, AckTo::Channel(tx)))
            .map_err(|_| CommitError::Closed)?;
        Ok(Ack(rx))
    }

    /// Queues an entry (blocking while the queue is full); `then` is called with its seq
    /// on the writer thread once the entry is durable, or with the error (keep it short:
    /// the thread's other entries wait). Nothing waits for it: this is for producers that
    /// only count outcomes. When the entry cannot be queued, `then` is not called and
    /// [`CommitError::Closed`] is returned.
    pub fn submit_then<F>(&self, entry: NewEntry, then: F) -> Result<(), CommitError>
    where
        F: FnOnce(Result<u64, CommitError>) + Send + 'static,
    {
        self.tx
            .send(Msg::Append(self.key, entry, AckTo::Call(Box::new(then))))
            .map_err(|_| CommitError::Closed)
    }

    /// Appends an entry and waits until it is durable; returns its seq.
    pub fn append(&self, entry: NewEntry) -> Result<u64, CommitError> {
        self.submit(entry)?.wait()
    }

    /// Signs a checkpoint covering everything queued before this call.
    pub fn checkpoint(&self) -> Result<Checkpoint, CommitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Checkpoint(self.key, tx))
            .map_err(|_| CommitError::Closed)?;
        rx.recv().unwrap_or(Err(CommitError::Closed))
    }
}

/// A writer thread of its own for one log.
#[derive(Debug)]
pub struct Committer {
    handle: CommitHandle,
    thread: JoinHandle<Result<AuditLog, String>>,
}

/// The key of a [`Committer`]'s only log.
const ONLY: LogKey = 0;

impl Committer {
    /// Starts the writer thread; it owns `log` until [`Committer::finish`].
    pub fn spawn(log: AuditLog, config: CommitterConfig) -> std::io::Result<Committer> {
        Self::spawn_with(move || Ok(log), config)
    }

    /// Starts the writer thread, which first opens (or creates) its log with `open`.
    /// Producers may submit at once: entries wait in the queue meanwhile, so whoever
    /// starts a log never waits for its creation (files, metadata, fsyncs). If `open`
    /// fails, every queued and later entry is answered with [`CommitError::Failed`].
    pub fn spawn_with<F>(open: F, config: CommitterConfig) -> std::io::Result<Committer>
    where
        F: FnOnce() -> Result<AuditLog, AuditError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        tx.send(Msg::Open(ONLY, Box::new(open)))
            .expect("the receiver is held here");
        let thread = std::thread::Builder::new()
            .name("paddock-audit-writer".into())
            .spawn(move || {
                let mut logs = Writer::new(config).serve(&rx);
                match logs.remove(&ONLY) {
                    Some(Slot::Open(l)) => Ok(l.log),
                    Some(Slot::Failed(why)) => Err(why),
                    None => Err("the audit log was closed".into()),
                }
            })?;
        Ok(Committer {
            handle: CommitHandle { tx, key: ONLY },
            thread,
        })
    }

    /// A handle for producers.
    pub fn handle(&self) -> CommitHandle {
        self.handle.clone()
    }

    /// Stops accepting entries once every handle is dropped, commits what is queued, signs
    /// a final checkpoint (run end) and returns the log with it.
    pub fn finish(self) -> Result<(AuditLog, Checkpoint), CommitError> {
        let Committer { handle, thread } = self;
        drop(handle);
        let mut log = thread
            .join()
            .map_err(|_| CommitError::Failed("the audit writer panicked".into()))?
            .map_err(CommitError::Failed)?;
        let cp = log
            .checkpoint()
            .map_err(|e| CommitError::Failed(e.to_string()))?;
        Ok((log, cp))
    }
}

/// A fixed set of writer threads serving any number of logs.
///
/// Threads are started with the pool and live until the pool and every handle of every
/// log are gone. A log lives on one thread from [`WriterPool::open_with`] to
/// [`PooledLog::close`] (or the drop of its [`PooledLog`]); while one log's batch is being
/// fsynced, the other logs of that thread wait, which is the price of a bounded thread
/// count (batches grow meanwhile, so fsyncs per entry fall as load rises).
#[derive(Debug)]
pub struct WriterPool {
    threads: Vec<PoolThread>,
    next_key: AtomicU64,
}

#[derive(Debug)]
struct PoolThread {
    tx: SyncSender<Msg>,
    /// Logs placed on this thread and not yet closed.
    load: Arc<AtomicUsize>,
}

impl WriterPool {
    /// Starts `threads` writer threads (at least one), named `name`.
    pub fn new(threads: usize, config: CommitterConfig, name: &str) -> std::io::Result<Self> {
        let mut out = Vec::with_capacity(threads.max(1));
        for _ in 0..threads.max(1) {
            let (tx, rx) = mpsc::sync_channel::<Msg>(config.queue.max(1));
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    // Every handle is gone: what is left open gets its final checkpoint.
                    for slot in Writer::new(config).serve(&rx).into_values() {
                        if let Slot::Open(mut l) = slot {
                            let _ = sign_if_uncovered(&mut l.log);
                        }
                    }
                })?;
            out.push(PoolThread {
                tx,
                load: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(WriterPool {
            threads: out,
            next_key: AtomicU64::new(1),
        })
    }

    /// How many writer threads serve the pool's logs.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Places a log on the least loaded thread, which opens (or creates) it with `open`.
    /// Returns at once (blocking only while that thread's queue is full): entries may be
    /// submitted straight away and wait in the queue meanwhile, so whoever opens a log
    /// never waits for its creation. If `open` fails, every entry of the log is answered
    /// with [`CommitError::Failed`].
    pub fn open_with<F>(&self, open: F) -> Result<PooledLog, CommitError>
    where
        F: FnOnce() -> Result<AuditLog, AuditError> + Send + 'static,
    {
        let t = self
            .threads
            .iter()
            .min_by_key(|t| t.load.load(Ordering::Relaxed))
            .expect("a pool has at least one thread");
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        t.tx.send(Msg::Open(key, Box::new(open)))
            .map_err(|_| CommitError::Closed)?;
        t.load.fetch_add(1, Ordering::Relaxed);
        Ok(PooledLog {
            handle: CommitHandle {
                tx: t.tx.clone(),
                key,
            },
            load: t.load.clone(),
            closed: false,
        })
    }
}

/// One log served by a [`WriterPool`]. Dropping it closes the log like
/// [`PooledLog::close`], without waiting.
#[derive(Debug)]
pub struct PooledLog {
    handle: CommitHandle,
    load: Arc<AtomicUsize>,
    closed: bool,
}

impl PooledLog {
    /// A handle for producers.
    pub fn handle(&self) -> CommitHandle {
        self.handle.clone()
    }

    /// Closes the log: what was queued before is committed, a final checkpoint is signed
    /// and the log's files (and its writer lock) are released, on the writer thread.
    /// Returns at once; [`Closing::wait`] waits for it. Entries submitted afterwards
    /// through a remaining handle are answered with [`CommitError::Closed`].
    pub fn close(self) -> Closing {
        let (tx, rx) = mpsc::sync_channel(1);
        self.close_then(move |r| {
            let _ = tx.send(r);
        });
        Closing(rx)
    }

    /// Like [`PooledLog::close`], but `then` is called with the outcome on the writer
    /// thread once the log is released (keep it short: that thread's other logs wait).
    pub fn close_then<F>(mut self, then: F)
    where
        F: FnOnce(Result<Checkpoint, CommitError>) + Send + 'static,
    {
        self.send_close(Some(Box::new(then)));
    }

    fn send_close(&mut self, reply: Option<OnClose>) {
        if !self.closed {
            self.closed = true;
            let _ = self.handle.tx.send(Msg::Close(self.handle.key, reply));
            self.load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for PooledLog {
    fn drop(&mut self) {
        self.send_close(None);
    }
}

/// A close under way ([`PooledLog::close`]).
#[derive(Debug)]
pub struct Closing(Receiver<Result<Checkpoint, CommitError>>);

impl Closing {
    /// Blocks until the log is closed; returns its final checkpoint.
    pub fn wait(self) -> Result<Checkpoint, CommitError> {
        self.0.recv().unwrap_or(Err(CommitError::Closed))
    }
}

/// A log as its writer thread holds it.
enum Slot {
    Open(Box<OpenLog>),
    /// It could not be opened: why.
    Failed(String),
}

struct OpenLog {
    log: AuditLog,
    batch: Vec<NewEntry>,
    acks: Vec<AckTo>,
}

/// The loop of one writer thread.
struct Writer {
    config: CommitterConfig,
    logs: HashMap<LogKey, Slot>,
}

impl Writer {
    fn new(config: CommitterConfig) -> Self {
        Writer {
            config,
            logs: HashMap::new(),
        }
    }

    /// Serves messages until every sender is gone; returns the logs still open.
    fn serve(mut self, rx: &Receiver<Msg>) -> HashMap<LogKey, Slot> {
        let tick = self.config.tick;
        let mut next_sweep = Instant::now() + tick;
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    // Drain what is queued (bounded, so sweeps still happen under load),
                    // then commit: one fsync per log that received entries.
                    let mut next = Some(first);
                    let mut drained = 0;
                    while let Some(msg) = next.take() {
                        self.handle(msg);
                        drained += 1;
                        if drained >= self.config.queue.max(1) {
                            break;
                        }
                        // Empty or disconnected: commit what was drained.
                        next = rx.try_recv().ok();
                    }
                    self.commit_all();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit_all();
                    return self.logs;
                }
            }
            if Instant::now() >= next_sweep {
                let now = now_ms();
                for slot in self.logs.values_mut() {
                    if let Slot::Open(l) = slot {
                        let _ = l.log.maybe_checkpoint(now);
                    }
                }
                next_sweep = Instant::now() + tick;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Open(key, open) => {
                // Opening may take fsyncs: what other logs queued is committed first.
                self.commit_all();
                let slot = match std::panic::catch_unwind(AssertUnwindSafe(open)) {
                    Ok(Ok(log)) => Slot::Open(Box::new(OpenLog {
                        log,
                        batch: Vec::new(),
                        acks: Vec::new(),
                    })),
                    Ok(Err(e)) => Slot::Failed(format!("the audit log could not be opened: {e}")),
                    Err(_) => Slot::Failed("opening the audit log panicked".into()),
                };
                self.logs.insert(key, slot);
            }
            Msg::Append(key, entry, ack) => match self.logs.get_mut(&key) {
                Some(Slot::Open(l)) => {
                    l.batch.push(entry);
                    l.acks.push(ack);
                    if l.batch.len() >= self.config.max_batch.max(1) {
                        commit(l);
                    }
                }
                Some(Slot::Failed(why)) => {
                    ack.send(Err(CommitError::Failed(why.clone())));
                }
                None => {
                    ack.send(Err(CommitError::Closed));
                }
            },
            Msg::Checkpoint(key, reply) => {
                let answer = match self.logs.get_mut(&key) {
                    Some(Slot::Open(l)) => {
                        commit(l);
                        l.log
                            .checkpoint()
                            .map_err(|e| CommitError::Failed(e.to_string()))
                    }
                    Some(Slot::Failed(why)) => Err(CommitError::Failed(why.clone())),
                    None => Err(CommitError::Closed),
                };
                let _ = reply.send(answer);
            }
            Msg::Close(key, reply) => {
                let answer = match self.logs.remove(&key) {
                    Some(Slot::Open(mut l)) => {
                        commit(&mut l);
                        let cp = l
                            .log
                            .checkpoint()
                            .map_err(|e| CommitError::Failed(e.to_string()));
                        // Files and lock released before anyone hears of the close.
                        drop(l);
                        cp
                    }
                    Some(Slot::Failed(why)) => Err(CommitError::Failed(why)),
                    None => Err(CommitError::Closed),
                };
                if let Some(then) = reply {
                    then(answer);
                }
            }
        }
    }

    /// Commits every log's pending batch, each followed by its due checkpoint.
    fn commit_all(&mut self) {
        let now = now_ms();
        for slot in self.logs.values_mut() {
            if let Slot::Open(l) = slot
                && !l.batch.is_empty()
            {
                commit(l);
                let _ = l.log.maybe_checkpoint(now);
            }
        }
    }
}

/// Signs a checkpoint when some entries are not covered by one.
fn sign_if_uncovered(log: &mut AuditLog) -> Result<(), AuditError> {
    let signed = log.checkpoints().last().map_or(0, |c| c.tree_size);
    if signed < log.len() {
        log.checkpoint()?;
    }
    Ok(())
}

fn commit(l: &mut OpenLog) {
    let OpenLog { log, batch, acks } = l;
    while !batch.is_empty() {
        match log.append_batch(batch) {
            Ok(range) => {
                for (seq, ack) in range.zip(acks.drain(..)) {
                    ack.send(Ok(seq));
                }
                batch.clear();
            }
            // One producer's invalid entry: nothing was written; refuse that entry alone
            // and commit the others.
            Err(AuditError::Entry { index, source }) if index >= log.len() => {
                let k = (index - log.len()) as usize;
                batch.remove(k);
                acks.remove(k)
                    .send(Err(CommitError::Failed(source.to_string())));
            }
            Err(e) => {
                let err = CommitError::Failed(e.to_string());
                for ack in acks.drain(..) {
                    ack.send(Err(err.clone()));
                }
                batch.clear();
            }
        }
    }
}
