//! The audit writer: every event published on the [`EventBus`](crate::bus::EventBus) is
//! appended to a tamper-evident log (paddock-audit) over a path that never drops.
//!
//! Owns: the signing key (`$PADDOCK_HOME/audit/signing.key`, 0600, directory 0700; never
//! under `runs/`, never mounted into a sandbox), one log per run (`runs/<id>/audit/`), the
//! daemon log (`$PADDOCK_HOME/audit/daemon/`), routing events to them, the acknowledgement
//! counters shown in `/v1/health`, and the read side the API serves (entries, export,
//! proofs, the public key).
//! Never: drops an entry (a full queue blocks the publisher: backpressure), records an
//! environment variable's value, signs anything but through paddock-audit, lets a sandbox
//! see a log or the key.
//!
//! How an event travels: `EventBus::publish` calls [`Audit::record`] *before* fanning the
//! event out to subscribers. `record` hands the entry to the log's group-commit writer,
//! blocking while its bounded queue is full; the writer thread counts the entry (acked or
//! failed) once its batch is fsynced, and tells a caller that waits
//! ([`EventBus::publish_recorded`](crate::bus::EventBus::publish_recorded)).
//!
//! Writers: every log (each run's and the daemon's) is served by one pool of
//! [`WRITER_THREADS`] threads ([`paddock_audit::WriterPool`]) started with the daemon. A log
//! is placed on the least loaded thread when it is opened and closed there (final
//! checkpoint, files released) when its run ends: creating a run, or ending one, starts no
//! thread, and a hundred open logs cost the same threads as one.
//!
//! Routing: an event with a `run_id` goes to that run's log, opened when the run is created
//! (or, after a daemon restart, re-opened for every run that is not over). An event for a
//! run whose log is not open (diff/apply after the run ended, an end recorded while no
//! daemon watched) opens it, appends, and closes it again with a signed checkpoint.
//! Events without a run, `run.removed`, and events of a run already removed (or whose
//! directory is gone) go to the daemon log (with the run id added to the data). A run's
//! terminal `run.state` (stopped/failed) closes its log: the writer commits what is queued
//! and signs the run-end checkpoint. Otherwise checkpoints are signed every N entries or T
//! seconds (`audit.checkpoint_every` / `audit.checkpoint_interval` in the user config).
//!
//! Event kinds recorded today (the entry `type` is the event kind, `data` its payload):
//! - `run.created`: name, command, workspace, workspace mode, runtime, limits, mounts, tty,
//!   grants, config sources and the *names* of the extra environment variables (never
//!   values);
//! - `run.state`: every lifecycle transition (`from`, `to`, `reason`, `exit_code`), the
//!   removal of a run that never started included;
//! - `init.step`: each setup step of the sandbox's PID 1;
//! - `run.started` (pid), `run.exit` (exit code, signal, OOM, reason);
//! - `run.exec`: a command exec'd into the running sandbox (`command`, `tty`, `stdin`, the
//!   *names* of its extra environment variables), recorded before it starts;
//!   `run.exec.exit`: how it ended (`exec_id` ties the two together);
//! - `net.request` (allowed) and `net.denied` (refused): one per HTTP request, tunnel,
//!   passthrough connection or DNS query (`kind`: http, passthrough, connection, dns), with
//!   the policy decision and the deciding `rule` (see `crate::egress`);
//! - `grant.used`: a credential injected into a request (grant name, host, method, path;
//!   never the value);
//! - `layer.diffed` (summary of a diff), `layer.applied` (the apply report);
//! - `run.removed` (daemon log): the run's name and the final checkpoint of its log, so the
//!   daemon log keeps a signed record of a log whose files `rm` deletes;
//! - `grant.added`, `grant.updated`, `grant.revoked` (daemon log): grant name and kind;
//! - `daemon.start`, `daemon.stop` (daemon log; `daemon.stop` carries the `error` when the
//!   daemon ended on one).
//!
//! Anything else published on the bus is recorded the same way, with no change here.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use paddock_api::{AuditEntries, AuditEntry, AuditKey, AuditStats, Event, RunState};
use paddock_audit::{
    AuditError, AuditLog, Bundle, Checkpoint, CommitError, CommitterConfig, LogConfig, LogReader,
    NewEntry, PooledLog, Signer, WriterPool,
};
use serde_json::Value;

use crate::DaemonError;
use crate::home::Home;

/// Threads that write every audit log. Each fsyncs one log's batch at a time, so a few
/// let logs on different threads commit at once; more would only add idle threads.
pub const WRITER_THREADS: usize = 4;
/// Queue sizes of a writer thread (shared by the logs it serves). A run's log sees a
/// handful of events a second (more once network requests are recorded); the queue only
/// has to absorb bursts, and every slot is allocated up front, so it is kept small. A full
/// queue blocks the publisher (backpressure), so nothing is dropped.
const WRITER_CONFIG: CommitterConfig = CommitterConfig {
    queue: 1024,
    max_batch: 256,
    tick: Duration::from_millis(250),
};
/// Log id of the daemon-level log.
pub const DAEMON_LOG: &str = "daemon";

/// Checkpoint schedule (from the user config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Sign a checkpoint once this many entries are not covered (N).
    pub checkpoint_every: u64,
    /// Sign a checkpoint once the oldest uncovered entry waited this long (T).
    pub checkpoint_interval: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        let d = LogConfig::default();
        AuditOptions {
            checkpoint_every: d.checkpoint_every,
            checkpoint_interval: d.checkpoint_interval,
        }
    }
}

/// Which log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRef {
    Run(String),
    Daemon,
}

impl LogRef {
    fn id(&self) -> &str {
        match self {
            LogRef::Run(id) => id,
            LogRef::Daemon => DAEMON_LOG,
        }
    }
}

struct Slot {
    log_id: String,
    dir: PathBuf,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    committer: Option<PooledLog>,
    /// The run is not over: keep the writer open between events.
    live: bool,
    /// A log being closed by its writer thread (final commit, signed checkpoint, fsync):
    /// a run's end must not wait for it. Anything that reads or reopens the log first
    /// waits for it ([`Audit::settle`]); the receiver hears once the log is released.
    closing: Option<mpsc::Receiver<()>>,
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    logs_open: AtomicU64,
}

/// The daemon's audit writer.
pub struct Audit {
    home: Home,
    signer: Arc<Signer>,
    log_config: LogConfig,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    removed: Mutex<HashSet<String>>,
    counters: Arc<Counters>,
    /// The writer threads of every log.
    writers: WriterPool,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("key_id", &self.signer.key_id())
            .finish_non_exhaustive()
    }
}

fn audit_err(e: AuditError) -> DaemonError {
    let hint = e.hint().to_string();
    DaemonError::Audit {
        message: e.to_string(),
        hint,
    }
}

/// Where the signing key lives.
pub fn key_path(home: &Home) -> PathBuf {
    home.root().join("audit").join("signing.key")
}

/// The directory of a run's log.
pub fn run_log_dir(home: &Home, run_id: &str) -> PathBuf {
    home.run_dir(run_id).join("audit")
}

impl Audit {
    /// Loads (or creates) the signing key and opens the daemon log.
    pub fn open(home: &Home, opts: AuditOptions) -> Result<Arc<Audit>, DaemonError> {
        let key = key_path(home);
        let signer = Signer::load_or_create(&key).map_err(audit_err)?;
        if let Some(dir) = key.parent() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| DaemonError::io("chmod", dir, e))?;
        }
        let counters = Arc::new(Counters::default());
        let writers = WriterPool::new(WRITER_THREADS, WRITER_CONFIG, "paddock-audit-w")
            .map_err(|e| DaemonError::io("start the audit writers for", &key, e))?;
        let audit = Arc::new(Audit {
            home: home.clone(),
            signer: Arc::new(signer),
            log_config: LogConfig {
                checkpoint_every: opts.checkpoint_every.max(1),
                checkpoint_interval: opts.checkpoint_interval,
            },
            slots: Mutex::new(HashMap::new()),
            removed: Mutex::new(HashSet::new()),
            counters,
            writers,
        });
        audit.open_live(&LogRef::Daemon)?;
        Ok(audit)
    }

    fn dir_of(&self, log: &LogRef) -> PathBuf {
        match log {
            LogRef::Run(id) => run_log_dir(&self.home, id),
            LogRef::Daemon => self.home.root().join("audit").join(DAEMON_LOG),
        }
    }

    fn slot(&self, log: &LogRef) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("audit slots poisoned");
        slots
            .entry(log.id().to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    log_id: log.id().to_string(),
                    dir: self.dir_of(log),
                    state: Mutex::new(SlotState::default()),
                })
            })
            .clone()
    }

    /// A run's log opened by [`Audit::open_live`] and not yet closed: its directory was
    /// there when it was opened, and only the run's removal takes it away.
    fn is_live(&self, run_id: &str) -> bool {
        let slot = self
            .slots
            .lock()
            .expect("audit slots poisoned")
            .get(run_id)
            .cloned();
        slot.is_some_and(|s| s.state.lock().expect("audit slot poisoned").live)
    }

    /// How many threads write the audit logs (however many logs are open).
    pub fn writer_threads(&self) -> usize {
        self.writers.threads()
    }

    /// Places a log on a writer thread. The writer opens (or creates) the log itself, so
    /// the caller — a run's creation — never waits for the fsyncs of creating it, nor for a
    /// thread to start; entries queue meanwhile, and an acknowledgement still means
    /// "fsynced". A log that cannot be opened fails its entries (counted in `failed`, and
    /// logged).
    fn open_writer(&self, slot: &Slot) -> Result<PooledLog, DaemonError> {
        // The directory now (cheap, no fsync): routing sends a run's events to its log once
        // the log's directory exists; the writer fills it in.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&slot.dir)
                .map_err(|e| DaemonError::io("create", &slot.dir, e))?;
        }
        let (dir, log_id) = (slot.dir.clone(), slot.log_id.clone());
        let (signer, config) = (self.signer.clone(), self.log_config);
        let committer = self
            .writers
            .open_with(move || {
                let (log, recovery) = AuditLog::open(&dir, &log_id, signer, config)?;
                if recovery.entries_tail.is_some() || recovery.checkpoints_tail.is_some() {
                    tracing::warn!(log = %log_id, ?recovery, "audit log recovered from a torn tail");
                }
                Ok(log)
            })
            .map_err(|e| DaemonError::Audit {
                message: format!("the audit writer of {} is gone: {e}", slot.dir.display()),
                hint: "see $PADDOCK_HOME/daemon.log; restart the daemon".into(),
            })?;
        self.counters.logs_open.fetch_add(1, Ordering::SeqCst);
        Ok(committer)
    }

    fn finish(&self, slot: &Slot, committer: PooledLog) -> Option<Checkpoint> {
        self.counters.logs_open.fetch_sub(1, Ordering::SeqCst);
        match committer.close().wait() {
            Ok(cp) => Some(cp),
            Err(e) => {
                tracing::error!(log = %slot.log_id, error = %e, "could not close an audit log");
                None
            }
        }
    }

    /// Close a log without waiting (its writer thread does it); `settle` waits for it.
    fn finish_in_background(&self, slot: &Arc<Slot>, st: &mut SlotState, committer: PooledLog) {
        self.counters.logs_open.fetch_sub(1, Ordering::SeqCst);
        let log_id = slot.log_id.clone();
        let (done, closed) = mpsc::sync_channel(1);
        committer.close_then(move |r| {
            if let Err(e) = r {
                tracing::error!(log = %log_id, error = %e, "could not close an audit log");
            }
            let _ = done.send(());
        });
        st.closing = Some(closed);
    }

    /// Wait for a background close of this log, if one is under way.
    fn settle(st: &mut SlotState) {
        if let Some(closed) = st.closing.take() {
            // An error means the writer is gone, and the log with it.
            let _ = closed.recv();
        }
    }

    /// Opens a log and keeps its writer open (a run that is not over; the daemon log).
    pub fn open_live(&self, log: &LogRef) -> Result<(), DaemonError> {
        let slot = self.slot(log);
        let mut st = slot.state.lock().expect("audit slot poisoned");
        Self::settle(&mut st);
        st.live = true;
        if st.committer.is_none() {
            st.committer = Some(self.open_writer(&slot)?);
        }
        Ok(())
    }

    fn route(&self, ev: &Event) -> (LogRef, Value) {
        let Some(run_id) = ev.run_id.as_deref() else {
            return (LogRef::Daemon, ev.data.clone());
        };
        let removed = self
            .removed
            .lock()
            .expect("audit removed set poisoned")
            .contains(run_id);
        // The writer never creates a run's directory: an id that is not a plain name, or
        // whose directory is gone, is recorded in the daemon log instead.
        let plain = !run_id.is_empty()
            && run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !removed
            && ev.kind != "run.removed"
            && plain
            && (self.is_live(run_id) || self.home.run_dir(run_id).is_dir())
        {
            return (LogRef::Run(run_id.to_string()), ev.data.clone());
        }
        let data = match &ev.data {
            Value::Object(m) => {
                let mut m = m.clone();
                m.insert("run_id".into(), Value::String(run_id.to_string()));
                Value::Object(m)
            }
            other => serde_json::json!({ "run_id": run_id, "value": other }),
        };
        (LogRef::Daemon, data)
    }

    /// Records an event (called by the bus for every event). Blocks while the log's queue
    /// is full. Returns the pending acknowledgement, or `None` when the entry could not be
    /// queued at all (counted as failed and logged).
    pub fn record(&self, ev: &Event) -> Option<mpsc::Receiver<bool>> {
        let (log, data) = self.route(ev);
        let ends_run = matches!(log, LogRef::Run(_))
            && ev.kind == "run.state"
            && ev
                .data
                .get("to")
                .and_then(Value::as_str)
                .and_then(RunState::parse)
                .is_some_and(RunState::is_terminal);
        let slot = self.slot(&log);
        let mut st = slot.state.lock().expect("audit slot poisoned");
        if st.committer.is_none() {
            Self::settle(&mut st);
            match self.open_writer(&slot) {
                Ok(c) => st.committer = Some(c),
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::SeqCst);
                    tracing::error!(log = %slot.log_id, kind = %ev.kind, error = %e, "could not open the audit log; the event was not recorded");
                    return None;
                }
            }
        }
        let committer = st.committer.as_ref()?;
        self.counters.submitted.fetch_add(1, Ordering::SeqCst);
        // The writer counts it once durable; a caller that needs durability waits on `done`.
        let (done_tx, done) = mpsc::sync_channel(1);
        let counters = self.counters.clone();
        let counted = move |r: Result<u64, CommitError>| {
            let ok = match r {
                Ok(_) => {
                    counters.acked.fetch_add(1, Ordering::SeqCst);
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "an audit entry was not recorded");
                    counters.failed.fetch_add(1, Ordering::SeqCst);
                    false
                }
            };
            // Nobody may be waiting: that is fine.
            let _ = done_tx.try_send(ok);
        };
        if let Err(e) = committer
            .handle()
            .submit_then(NewEntry::now(ev.kind.clone(), data), counted)
        {
            self.counters.failed.fetch_add(1, Ordering::SeqCst);
            tracing::error!(log = %slot.log_id, kind = %ev.kind, error = %e, "the audit writer refused an event");
            return None;
        }
        if ends_run || !st.live {
            st.live = false;
            if let Some(c) = st.committer.take() {
                self.finish_in_background(&slot, &mut st, c);
            }
        }
        Some(done)
    }

    /// Closes a run's log before `rm` deletes it: commits what is queued, makes sure every
    /// entry is covered by a signed checkpoint, and routes the run's later events to the
    /// daemon log. Returns the final checkpoint (None when the run has no log).
    pub fn close_removed_run(&self, run_id: &str) -> Result<Option<Checkpoint>, DaemonError> {
        let log = LogRef::Run(run_id.to_string());
        let slot = self.slot(&log);
        let mut st = slot.state.lock().expect("audit slot poisoned");
        Self::settle(&mut st);
        self.removed
            .lock()
            .expect("audit removed set poisoned")
            .insert(run_id.to_string());
        st.live = false;
        let cp = match st.committer.take() {
            Some(c) => self.finish(&slot, c),
            None if slot.dir.join(paddock_audit::store::META_FILE).exists() => {
                Some(self.sign_closed(&slot)?)
            }
            None => None,
        };
        drop(st);
        self.slots
            .lock()
            .expect("audit slots poisoned")
            .remove(run_id);
        Ok(cp)
    }

    /// Signs a checkpoint over a closed log if entries are uncovered; returns the last one.
    fn sign_closed(&self, slot: &Slot) -> Result<Checkpoint, DaemonError> {
        let (mut log, _) = AuditLog::open(
            &slot.dir,
            &slot.log_id,
            self.signer.clone(),
            self.log_config,
        )
        .map_err(audit_err)?;
        let signed = log.checkpoints().last().map_or(0, |c| c.tree_size);
        match log.checkpoints().last() {
            Some(cp) if signed == log.len() => Ok(cp.clone()),
            _ => log.checkpoint().map_err(audit_err),
        }
    }

    /// Makes every acknowledged entry of a log covered by a signed checkpoint (the writer
    /// signs one if entries are pending), so that exports and proofs verify strictly.
    fn cover(&self, log: &LogRef) -> Result<(), DaemonError> {
        let slot = self.slot(log);
        let mut st = slot.state.lock().expect("audit slot poisoned");
        Self::settle(&mut st);
        if !log_exists(&slot.dir, st.committer.is_some()) {
            return Err(no_log(log));
        }
        match &st.committer {
            Some(c) => {
                let (reader, _) = LogReader::open(&slot.dir).map_err(audit_err)?;
                let signed = reader.checkpoints().last().map_or(0, |c| c.tree_size);
                if signed < reader.len() || reader.checkpoints().is_empty() {
                    c.handle().checkpoint().map_err(|e| DaemonError::Audit {
                        message: e.to_string(),
                        hint: "see $PADDOCK_HOME/daemon.log".into(),
                    })?;
                }
            }
            None => {
                self.sign_closed(&slot)?;
            }
        }
        Ok(())
    }

    fn reader(&self, log: &LogRef) -> Result<LogReader, DaemonError> {
        let writer_open = {
            let slot = self.slot(log);
            let mut st = slot.state.lock().expect("audit slot poisoned");
            Self::settle(&mut st);
            st.committer.is_some()
        };
        let dir = self.dir_of(log);
        if !log_exists(&dir, writer_open) {
            return Err(no_log(log));
        }
        Ok(LogReader::open(&dir).map_err(audit_err)?.0)
    }

    /// Entries of a log, filtered: `kind` (exact, or a prefix ending in `.`), `since_ms`,
    /// and the newest `limit` of what matches.
    pub fn entries(
        &self,
        log: &LogRef,
        kind: Option<&str>,
        since_ms: Option<u64>,
        limit: Option<usize>,
    ) -> Result<AuditEntries, DaemonError> {
        let reader = self.reader(log)?;
        let all = reader.read_entries(0..reader.len()).map_err(audit_err)?;
        let mut entries: Vec<AuditEntry> = all
            .into_iter()
            .filter(|e| match kind {
                Some(k) if k.ends_with('.') => e.kind.starts_with(k),
                Some(k) => e.kind == k,
                None => true,
            })
            .filter(|e| since_ms.is_none_or(|s| e.ts >= s))
            .map(|e| AuditEntry {
                seq: e.seq,
                ts: e.ts,
                kind: e.kind,
                data: e.data,
            })
            .collect();
        let matched = entries.len() as u64;
        if let Some(n) = limit
            && entries.len() > n
        {
            entries.drain(..entries.len() - n);
        }
        Ok(AuditEntries {
            log_id: reader.log_id().to_string(),
            size: reader.len(),
            signed_size: reader.checkpoints().last().map_or(0, |c| c.tree_size),
            checkpoints: reader.checkpoints().len() as u64,
            matched,
            entries,
        })
    }

    /// The export bundle, every entry covered by a signed checkpoint. A live log may grow
    /// while it is read: the bundle then ends at the last checkpoint.
    pub fn export(&self, log: &LogRef) -> Result<Bundle, DaemonError> {
        self.cover(log)?;
        let reader = self.reader(log)?;
        let mut bundle = reader.export_bundle().map_err(audit_err)?;
        let signed = bundle.checkpoints.last().map_or(0, |c| c.tree_size);
        bundle.entries.truncate(signed as usize);
        Ok(bundle)
    }

    /// Inclusion proof of entry `seq` in the tree of a signed checkpoint: the one of size
    /// `size`, else the latest.
    pub fn prove(&self, log: &LogRef, seq: u64, size: Option<u64>) -> Result<Value, DaemonError> {
        self.cover(log)?;
        let reader = self.reader(log)?;
        let cp = pick_checkpoint(&reader, size)?;
        if seq >= cp.tree_size {
            return Err(DaemonError::bad_request(
                format!(
                    "entry {seq} is not covered by the checkpoint of tree size {}",
                    cp.tree_size
                ),
                format!(
                    "entries are numbered from 0; this log has {} entries",
                    reader.len()
                ),
            ));
        }
        let entry = reader.read_entry(seq).map_err(audit_err)?;
        let proof = reader
            .inclusion_proof(seq, cp.tree_size)
            .map_err(audit_err)?;
        Ok(serde_json::json!({
            "log_id": reader.log_id(),
            "entry": entry,
            "proof": proof,
            "checkpoint": cp,
            "public_key": reader.public_key(),
        }))
    }

    /// Consistency proof between the signed checkpoints of sizes `from` and `to` (default:
    /// the latest).
    pub fn consistency(
        &self,
        log: &LogRef,
        from: u64,
        to: Option<u64>,
    ) -> Result<Value, DaemonError> {
        self.cover(log)?;
        let reader = self.reader(log)?;
        let old = pick_checkpoint(&reader, Some(from))?;
        let new = pick_checkpoint(&reader, to)?;
        if old.tree_size > new.tree_size {
            return Err(DaemonError::bad_request(
                format!(
                    "--from {} is larger than the target size {}",
                    old.tree_size, new.tree_size
                ),
                "a consistency proof goes from an older (smaller) checkpoint to a newer one",
            ));
        }
        let proof = reader
            .consistency_proof(old.tree_size, new.tree_size)
            .map_err(audit_err)?;
        Ok(serde_json::json!({
            "log_id": reader.log_id(),
            "proof": proof,
            "old": old,
            "new": new,
            "public_key": reader.public_key(),
        }))
    }

    /// The public key that signs every checkpoint.
    pub fn key(&self) -> AuditKey {
        let k = self.signer.public_key();
        AuditKey {
            algorithm: k.algorithm.clone(),
            public_key: k.public_key.clone(),
            key_id: k.key_id.to_hex(),
            pin: format!("ed25519:{}", k.public_key),
        }
    }

    /// Figures for `/v1/health`.
    pub fn stats(&self) -> AuditStats {
        let c = &self.counters;
        let submitted = c.submitted.load(Ordering::SeqCst);
        let acked = c.acked.load(Ordering::SeqCst);
        let failed = c.failed.load(Ordering::SeqCst);
        AuditStats {
            logs_open: c.logs_open.load(Ordering::SeqCst),
            submitted,
            acked_entries: acked,
            pending: submitted.saturating_sub(acked + failed),
            failed,
            key_id: self.signer.key_id().to_hex(),
        }
    }

    /// Checkpoints signed since the daemon started (every log; for `/metrics`).
    pub fn checkpoints(&self) -> u64 {
        self.signer.signatures()
    }

    /// At daemon stop: commit what is queued and sign a checkpoint in every open log.
    pub fn close_all(&self) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .expect("audit slots poisoned")
            .values()
            .cloned()
            .collect();
        for slot in slots {
            let mut st = slot.state.lock().expect("audit slot poisoned");
            Self::settle(&mut st);
            if let Some(c) = st.committer.take() {
                self.finish(&slot, c);
            }
        }
    }
}

/// Whether a log's files exist. A writer creates them on its own thread when it is
/// opened: a read right behind a new log (a run just created) waits for them, briefly,
/// instead of reporting that there is no log.
fn log_exists(dir: &std::path::Path, writer_open: bool) -> bool {
    let meta = dir.join(paddock_audit::store::META_FILE);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if meta.exists() {
            return true;
        }
        if !writer_open || std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn no_log(log: &LogRef) -> DaemonError {
    DaemonError::Conflict {
        message: match log {
            LogRef::Run(id) => format!("run {id} has no audit log"),
            LogRef::Daemon => "the daemon has no audit log yet".into(),
        },
        hint: "runs created by a daemon without the audit writer have no log".into(),
    }
}

fn pick_checkpoint(reader: &LogReader, size: Option<u64>) -> Result<Checkpoint, DaemonError> {
    let cps = reader.checkpoints();
    let found = match size {
        Some(s) => cps.iter().rev().find(|c| c.tree_size == s),
        None => cps.last(),
    };
    found.cloned().ok_or_else(|| {
        let sizes: Vec<String> = cps
            .iter()
            .rev()
            .take(8)
            .map(|c| c.tree_size.to_string())
            .collect();
        DaemonError::bad_request(
            match size {
                Some(s) => format!("no signed checkpoint has tree size {s}"),
                None => "the log has no signed checkpoint".into(),
            },
            format!(
                "use the size of a signed checkpoint (latest first: {})",
                if sizes.is_empty() {
                    "none".into()
                } else {
                    sizes.join(", ")
                }
            ),
        )
    })
}

/// Parses `since`: RFC 3339, or a duration back from now (`10m`, `2h`).
pub fn parse_since(s: &str) -> Result<u64, DaemonError> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000).max(0) as u64);
    }
    match paddock_config::parse_duration(s) {
        Ok(d) => Ok(paddock_audit::entry::now_ms().saturating_sub(d.as_millis() as u64)),
        Err(_) => Err(DaemonError::bad_request(
            format!("invalid `since` {s:?}"),
            "give an RFC 3339 time (2026-01-02T15:04:05Z) or a duration back from now (10m, 2h)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::EventBus;

    fn setup() -> (tempfile::TempDir, Home, Arc<Audit>, EventBus) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        let audit = Audit::open(&home, AuditOptions::default()).unwrap();
        let bus = EventBus::with_audit(audit.clone());
        (dir, home, audit, bus)
    }

    fn kinds(a: &Audit, log: &LogRef) -> Vec<String> {
        a.entries(log, None, None, None)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn events_are_routed_acknowledged_and_a_run_end_signs_its_log() {
        let (_d, home, audit, bus) = setup();
        let run = LogRef::Run("run_000000000001".into());
        audit.open_live(&run).unwrap();
        assert_eq!(audit.stats().logs_open, 2);
        bus.publish(None, "daemon.start", serde_json::json!({"pid": 1}));
        bus.publish(
            Some("run_000000000001"),
            "run.created",
            serde_json::json!({}),
        );
        bus.publish(
            Some("run_000000000001"),
            "run.state",
            serde_json::json!({"from": "running", "to": "stopped"}),
        );
        // The terminal state closed the run's log with a signed checkpoint.
        assert_eq!(audit.stats().logs_open, 1);
        let e = audit.entries(&run, None, None, None).unwrap();
        assert_eq!(e.size, 2);
        assert_eq!(e.signed_size, 2);
        // A later event (apply) opens, appends and signs again.
        assert!(bus.publish_recorded(
            Some("run_000000000001"),
            "layer.applied",
            serde_json::json!({})
        ));
        assert_eq!(audit.stats().logs_open, 1);
        let e = audit.entries(&run, None, None, None).unwrap();
        assert_eq!((e.size, e.signed_size), (3, 3));
        // Removal: final checkpoint, and later events go to the daemon log.
        let cp = audit
            .close_removed_run("run_000000000001")
            .unwrap()
            .unwrap();
        assert_eq!(cp.tree_size, 3);
        assert!(bus.publish_recorded(
            Some("run_000000000001"),
            "run.removed",
            serde_json::json!({"name": "x"})
        ));
        bus.publish(Some("run_000000000001"), "run.exit", serde_json::json!({}));
        assert!(bus.publish_recorded(None, "daemon.stop", serde_json::json!({})));
        assert_eq!(
            kinds(&audit, &LogRef::Daemon),
            ["daemon.start", "run.removed", "run.exit", "daemon.stop"]
        );
        let d = audit
            .entries(&LogRef::Daemon, Some("run."), None, None)
            .unwrap();
        assert!(
            d.entries
                .iter()
                .all(|e| e.data["run_id"] == "run_000000000001")
        );
        let s = audit.stats();
        assert_eq!(s.failed, 0);
        assert_eq!(s.acked_entries + s.pending, s.submitted);
        // The key is private, and export covers everything with a signature.
        let mode = std::fs::metadata(key_path(&home))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let b = audit.export(&LogRef::Daemon).unwrap();
        assert_eq!(b.entries.len(), 4);
        paddock_audit::verify_bundle(&b).unwrap();
    }

    #[test]
    fn many_runs_share_the_writer_threads_and_each_log_is_signed_at_its_end() {
        let (_d, _home, audit, bus) = setup();
        let runs: Vec<String> = (0..WRITER_THREADS * 3 + 2)
            .map(|i| format!("run_{i:012x}"))
            .collect();
        for id in &runs {
            audit.open_live(&LogRef::Run(id.clone())).unwrap();
        }
        assert_eq!(audit.stats().logs_open, runs.len() as u64 + 1);
        assert_eq!(audit.writer_threads(), WRITER_THREADS);
        for id in &runs {
            bus.publish(Some(id), "run.created", serde_json::json!({}));
            assert!(bus.publish_recorded(
                Some(id),
                "run.state",
                serde_json::json!({"from": null, "to": "created"})
            ));
        }
        // Every run ends: its log is closed by its writer thread, in the background.
        for id in &runs {
            bus.publish(
                Some(id),
                "run.state",
                serde_json::json!({"from": "created", "to": "stopped"}),
            );
        }
        assert_eq!(audit.stats().logs_open, 1);
        for id in &runs {
            let e = audit
                .entries(&LogRef::Run(id.clone()), None, None, None)
                .unwrap();
            assert_eq!((e.size, e.signed_size), (3, 3), "{id}");
            let b = audit.export(&LogRef::Run(id.clone())).unwrap();
            paddock_audit::verify_bundle(&b).unwrap();
        }
        let s = audit.stats();
        assert_eq!(s.failed, 0);
        assert_eq!(s.submitted, runs.len() as u64 * 3);
    }

    #[test]
    fn a_restarted_daemon_extends_the_same_logs_with_the_same_key() {
        let (_d, home, audit, bus) = setup();
        bus.publish(None, "daemon.start", serde_json::json!({}));
        audit.close_all();
        drop(bus);
        drop(audit);
        let audit = Audit::open(&home, AuditOptions::default()).unwrap();
        let bus = EventBus::with_audit(audit.clone());
        assert!(bus.publish_recorded(None, "daemon.start", serde_json::json!({})));
        let b = audit.export(&LogRef::Daemon).unwrap();
        assert_eq!(b.entries.len(), 2);
        paddock_audit::verify_bundle(&b).unwrap();
    }

    #[test]
    fn more_events_than_the_queue_holds_are_all_recorded() {
        let (_d, _home, audit, bus) = setup();
        let n = CommitterConfig::default().queue as u64 * 2 + 7;
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    for i in 0..n / 4 {
                        bus.publish(None, "test.load", serde_json::json!({ "p": p, "i": i }));
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        assert!(bus.publish_recorded(None, "test.end", Value::Null));
        let total = n / 4 * 4 + 1;
        let s = audit.stats();
        assert_eq!(s.failed, 0);
        assert_eq!(s.submitted, total);
        let e = audit
            .entries(&LogRef::Daemon, Some("test."), None, Some(1))
            .unwrap();
        assert_eq!(e.size, total);
        assert_eq!(e.matched, total);
        // Each producer's entries stay in its order.
        let all = audit
            .entries(&LogRef::Daemon, Some("test.load"), None, None)
            .unwrap();
        let mut next = [0u64; 4];
        for en in all.entries {
            let p = en.data["p"].as_u64().unwrap() as usize;
            assert_eq!(en.data["i"].as_u64().unwrap(), next[p]);
            next[p] += 1;
        }
    }

    #[test]
    fn since_takes_rfc3339_or_a_duration() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1000);
        // `parse_since` reads the clock itself, between these two readings.
        let before = paddock_audit::entry::now_ms();
        let ten_min = parse_since("10m").unwrap();
        let after = paddock_audit::entry::now_ms();
        assert!(ten_min >= before - 600_000 && ten_min <= after - 600_000);
        assert!(parse_since("yesterday").is_err());
    }
}
