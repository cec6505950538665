//! Group commit for many producers: a writer thread that owns an [`AuditLog`], drains a
//! bounded queue into batches (one fsync per batch) and answers each entry with its seq
//! once it is durable.
//!
//! Owns: batching, backpressure (a full queue blocks producers: an audit entry is never
//! dropped), periodic [`AuditLog::maybe_checkpoint`] (also when idle), and the final
//! checkpoint at [`Committer::finish`].
//! Never: acknowledges an entry before its batch is fsynced; drops an entry; reorders the
//! entries of one producer.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::checkpoint::Checkpoint;
use crate::entry::{NewEntry, now_ms};
use crate::error::AuditError;
use crate::store::AuditLog;

/// Queue and batching limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitterConfig {
    /// Entries that may wait in the queue before producers block.
    pub queue: usize,
    /// Largest batch per fsync.
    pub max_batch: usize,
    /// How often an idle writer checks whether a time-based checkpoint is due.
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
    /// The writer thread has stopped (finished, or failed earlier).
    #[error("the audit writer has stopped; the entry was not recorded")]
    Closed,
    /// Writing the batch failed; none of its entries is in the log.
    #[error("the audit batch was not written: {0}")]
    Failed(String),
}

type Reply<T> = SyncSender<Result<T, CommitError>>;

enum Msg {
    Append(NewEntry, Reply<u64>),
    Checkpoint(Reply<Checkpoint>),
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

/// A cloneable handle for producers.
#[derive(Debug, Clone)]
pub struct CommitHandle {
    tx: SyncSender<Msg>,
}

impl CommitHandle {
    /// Queues an entry (blocking while the queue is full) and returns its pending ack.
    pub fn submit(&self, entry: NewEntry) -> Result<Ack, CommitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Append(entry, tx))
            .map_err(|_| CommitError::Closed)?;
        Ok(Ack(rx))
    }

    /// Appends an entry and waits until it is durable; returns its seq.
    pub fn append(&self, entry: NewEntry) -> Result<u64, CommitError> {
        self.submit(entry)?.wait()
    }

    /// Signs a checkpoint covering everything queued before this call.
    pub fn checkpoint(&self) -> Result<Checkpoint, CommitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Checkpoint(tx))
            .map_err(|_| CommitError::Closed)?;
        rx.recv().unwrap_or(Err(CommitError::Closed))
    }
}

/// The writer thread.
#[derive(Debug)]
pub struct Committer {
    handle: CommitHandle,
    thread: JoinHandle<Result<AuditLog, String>>,
}

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
        let thread = std::thread::Builder::new()
            .name("paddock-audit-writer".into())
            .spawn(move || match open() {
                Ok(log) => Ok(run(log, rx, config)),
                Err(e) => {
                    let why = format!("the audit log could not be opened: {e}");
                    // Answer everything until every handle is gone.
                    while let Ok(msg) = rx.recv() {
                        match msg {
                            Msg::Append(_, ack) => {
                                let _ = ack.send(Err(CommitError::Failed(why.clone())));
                            }
                            Msg::Checkpoint(reply) => {
                                let _ = reply.send(Err(CommitError::Failed(why.clone())));
                            }
                        }
                    }
                    Err(why)
                }
            })?;
        Ok(Committer {
            handle: CommitHandle { tx },
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

fn run(mut log: AuditLog, rx: Receiver<Msg>, config: CommitterConfig) -> AuditLog {
    let mut batch: Vec<NewEntry> = Vec::with_capacity(config.max_batch);
    let mut acks: Vec<Reply<u64>> = Vec::with_capacity(config.max_batch);
    loop {
        let first = match rx.recv_timeout(config.tick) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                let _ = log.maybe_checkpoint(now_ms());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return log,
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Append(e, ack) => {
                    batch.push(e);
                    acks.push(ack);
                }
                Msg::Checkpoint(reply) => {
                    commit(&mut log, &mut batch, &mut acks);
                    let _ = reply.send(
                        log.checkpoint()
                            .map_err(|e| CommitError::Failed(e.to_string())),
                    );
                }
            }
            if batch.len() >= config.max_batch {
                commit(&mut log, &mut batch, &mut acks);
            }
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => None,
            };
        }
        commit(&mut log, &mut batch, &mut acks);
        let _ = log.maybe_checkpoint(now_ms());
    }
}

fn commit(log: &mut AuditLog, batch: &mut Vec<NewEntry>, acks: &mut Vec<Reply<u64>>) {
    while !batch.is_empty() {
        match log.append_batch(batch) {
            Ok(range) => {
                for (seq, ack) in range.zip(acks.drain(..)) {
                    let _ = ack.send(Ok(seq));
                }
                batch.clear();
            }
            // One producer's invalid entry: nothing was written; refuse that entry alone
            // and commit the others.
            Err(AuditError::Entry { index, source }) if index >= log.len() => {
                let k = (index - log.len()) as usize;
                batch.remove(k);
                let _ = acks
                    .remove(k)
                    .send(Err(CommitError::Failed(source.to_string())));
            }
            Err(e) => {
                let err = CommitError::Failed(e.to_string());
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(err.clone()));
                }
                batch.clear();
            }
        }
    }
}
