//! The daemon side of one running sandbox: a task ("actor") that owns the control connection
//! to `paddock init` and PID 1's pidfd, writes `log.jsonl` and `exit.json` (the daemon is
//! the single writer of both, except the documented case where init writes `exit.json`
//! because no daemon acknowledged the exit), fans output out to subscribers, and publishes
//! events.
//!
//! Subscribers (`attach`, `logs --follow`) get a bounded channel each; a subscriber that
//! falls more than [`SUB_BUFFER`] chunks behind is disconnected (its stream ends; the log
//! has everything) so one stuck client cannot stall the sandbox.
//!
//! Owns: the run's connection, pidfd, log and exit record. Never: blocks the runtime's
//! callers (publishing is non-blocking) or touches another run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot, watch};

use super::cgroup::RunCgroups;
use super::logfmt::{self, ExitRecord};
use super::plan::RunLayout;
use super::proto::{self, Down, Up};
use super::sys::{self, WaitOutcome};
use crate::{EventSink, ExitInfo, OutputChunk, SandboxError, SandboxEvent};

/// Chunks a subscriber may lag behind before it is disconnected.
pub const SUB_BUFFER: usize = 4096;

/// A message for init: encoded bytes.
pub type DownMsg = Vec<u8>;

/// What `start` waits for.
pub type StartResult = Result<Option<i32>, SandboxError>;

pub struct OutState {
    pub subs: Vec<mpsc::Sender<OutputChunk>>,
    /// Bytes of `log.jsonl` written so far.
    pub log_len: u64,
    pub finished: bool,
}

/// Shared state of a run, held by the runtime's registry and the actor.
pub struct Run {
    pub run_id: String,
    pub layout: RunLayout,
    pub cgroups: RunCgroups,
    pub init_pid: AtomicI32,
    pub init_start: Mutex<u64>,
    pub pidfd: Mutex<Option<Arc<OwnedFd>>>,
    pub netns: Mutex<Option<OwnedFd>>,
    pub down: mpsc::UnboundedSender<DownMsg>,
    pub out: Mutex<OutState>,
    pub exit: watch::Receiver<Option<ExitInfo>>,
    pub task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Run {
    pub fn send(&self, msg: &Down) {
        let _ = self.down.send(proto::encode_json(msg));
    }

    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    pub fn signal_init(&self, sig: i32) -> std::io::Result<()> {
        let fd = self.pidfd.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match fd {
            Some(fd) => match sys::pidfd_send_signal(fd.as_fd(), sig) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                r => r,
            },
            None => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
        }
    }

    /// Register a subscriber for live output; returns it and the log length at that moment.
    pub fn subscribe(&self) -> (Option<mpsc::Receiver<OutputChunk>>, u64) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.finished {
            return (None, out.log_len);
        }
        let (tx, rx) = mpsc::channel(SUB_BUFFER);
        out.subs.push(tx);
        (Some(rx), out.log_len)
    }
}

/// Everything the actor starts with.
pub struct ActorInit {
    pub run: Arc<Run>,
    pub conn: Option<OwnedFd>,
    pub pidfd: Option<OwnedFd>,
    pub down_rx: mpsc::UnboundedReceiver<DownMsg>,
    pub exit_tx: watch::Sender<Option<ExitInfo>>,
    pub events: EventSink,
    pub started: Option<oneshot::Sender<StartResult>>,
    pub last_seq: u64,
    pub log: File,
}

pub fn open_log(layout: &RunLayout, truncate: bool) -> Result<(File, u64), SandboxError> {
    let path = layout.log();
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    if truncate {
        o.truncate(true).write(true);
        o.append(false);
    }
    let f = o
        .open(&path)
        .map_err(|e| SandboxError::io("open log", path.clone(), e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((f, len))
}

/// Atomically write `exit.json` (runtime side).
pub fn write_exit_json(layout: &RunLayout, info: &ExitInfo) -> std::io::Result<()> {
    let rec = ExitRecord {
        exit_code: info.exit_code,
        signal: info.signal,
        oom_killed: info.oom_killed,
        reason: info.reason.clone(),
        ts_ms: proto::now_ms(),
        writer: "runtime".into(),
    };
    // temp + rename: readers see the old or the new record, never a torn one. No fsync:
    // it would double the cost of a short run, and the daemon's database is the durable
    // record; this file only bridges a daemon restart.
    let tmp = layout.run_dir.join("exit.json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(&rec).unwrap_or_default())?;
    std::fs::rename(&tmp, layout.exit_json())
}

pub fn read_exit_json(layout: &RunLayout) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(layout.exit_json()).ok()?).ok()
}

/// Register an owned fd with tokio's reactor.
pub fn async_fd(fd: OwnedFd, interest: Interest) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the fd stays open and refers to
    // the same file until the AsyncFd (and with it the registration) is dropped.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.ok()
}

/// `starttime` (field 22) of /proc/<pid>/stat, to tell a pid from its reuse.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

struct Actor {
    run: Arc<Run>,
    conn: Option<AsyncFd<OwnedFd>>,
    conn_eof: bool,
    pidfd: Option<AsyncFd<OwnedFd>>,
    init_dead: Option<Option<WaitOutcome>>,
    events: EventSink,
    started: Option<oneshot::Sender<StartResult>>,
    last_seq: u64,
    acked: u64,
    log: File,
    exit_msg: Option<(i32, Option<i32>, Option<String>)>,
    setup_failed: Option<(String, String)>,
    exec_failed: Option<String>,
    exit_recorded: bool,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    buf: Vec<u8>,
}

pub fn spawn_actor(init: ActorInit) -> tokio::task::JoinHandle<()> {
    let mut actor = Actor {
        run: init.run,
        conn: init.conn.and_then(|c| {
            let _ = sys::set_nonblocking(c.as_fd());
            async_fd(c, Interest::READABLE | Interest::WRITABLE)
        }),
        conn_eof: false,
        pidfd: init.pidfd.and_then(|p| async_fd(p, Interest::READABLE)),
        init_dead: None,
        events: init.events,
        started: init.started,
        last_seq: init.last_seq,
        acked: init.last_seq,
        log: init.log,
        exit_msg: None,
        setup_failed: None,
        exec_failed: None,
        exit_recorded: false,
        exit_tx: init.exit_tx,
        buf: vec![0u8; proto::MAX_MESSAGE],
    };
    if actor.conn.is_none() {
        actor.conn_eof = true;
    }
    let mut down_rx = init.down_rx;
    tokio::spawn(async move {
        actor.main(&mut down_rx).await;
        actor.finalize();
    })
}

enum Wake {
    Conn,
    Pid,
    Down(Option<DownMsg>),
}

impl Actor {
    async fn main(&mut self, down_rx: &mut mpsc::UnboundedReceiver<DownMsg>) {
        let mut down_open = true;
        loop {
            if self.conn_eof && (self.init_dead.is_some() || self.pidfd.is_none()) {
                return;
            }
            let wake = {
                let conn = self.conn.as_ref().filter(|_| !self.conn_eof);
                let pidfd = self.pidfd.as_ref().filter(|_| self.init_dead.is_none());
                tokio::select! {
                    r = async { conn.unwrap().readable().await }, if conn.is_some() => {
                        if let Ok(mut g) = r { g.clear_ready(); }
                        Wake::Conn
                    }
                    r = async { pidfd.unwrap().readable().await }, if pidfd.is_some() => {
                        if let Ok(mut g) = r { g.clear_ready(); }
                        Wake::Pid
                    }
                    m = down_rx.recv(), if down_open => Wake::Down(m),
                }
            };
            match wake {
                Wake::Conn => self.read_conn(),
                Wake::Pid => self.check_init(),
                Wake::Down(None) => down_open = false,
                Wake::Down(Some(msg)) => self.send_down(&msg).await,
            }
            self.send_ack().await;
        }
    }

    fn check_init(&mut self) {
        let Some(p) = &self.pidfd else { return };
        match sys::waitid_pidfd(p.get_ref().as_fd()) {
            Ok(Some(o)) => self.init_dead = Some(Some(o)),
            Ok(None) => {}
            // Not our child (adopted after a daemon restart): the pidfd being readable means
            // it exited; the status comes from init's report or exit.json.
            Err(_) => self.init_dead = Some(None),
        }
        if self.init_dead.is_some() {
            // Everything init sent is in the socket; read it, then the loop ends at EOF.
            self.read_conn();
        }
    }

    async fn send_down(&mut self, msg: &[u8]) {
        let Some(conn) = &self.conn else { return };
        if self.conn_eof {
            return;
        }
        let r = conn
            .async_io(Interest::WRITABLE, |fd| {
                sys::send_msg(fd.as_fd(), msg, None, true)
            })
            .await;
        if r.is_err() {
            self.conn_eof = true;
        }
    }

    async fn send_ack(&mut self) {
        if self.last_seq > self.acked {
            self.acked = self.last_seq;
            let msg = proto::encode_json(&Down::Ack { seq: self.acked });
            self.send_down(&msg).await;
        }
        if self.exit_msg.is_some() && !self.exit_recorded {
            // All output came before `Exited`: the command's end is final now, even though
            // PID 1 is still tearing down (the actor keeps going until it is reaped).
            let info = self.compose_exit(None);
            self.record(info);
            let msg = proto::encode_json(&Down::ExitAck);
            self.send_down(&msg).await;
        }
    }

    fn read_conn(&mut self) {
        loop {
            let Some(conn) = &self.conn else { return };
            if self.conn_eof {
                return;
            }
            match sys::recv_msg(conn.get_ref().as_fd(), &mut self.buf, true) {
                Ok((0, _)) => {
                    self.conn_eof = true;
                    return;
                }
                Ok((n, fds)) => {
                    let msg = self.buf[..n].to_vec();
                    self.handle(&msg, fds);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // Init closed with a message of ours unread: Linux reports that before
                // the messages init sent first (and clears it), so read on.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(_) => {
                    self.conn_eof = true;
                    return;
                }
            }
        }
    }

    fn handle(&mut self, msg: &[u8], mut fds: Vec<OwnedFd>) {
        match msg.first() {
            Some(&proto::TAG_OUTPUT) => {
                let Some(o) = proto::decode_output(&msg[1..]) else {
                    return;
                };
                if o.seq <= self.last_seq {
                    return;
                }
                self.last_seq = o.seq;
                let chunk = OutputChunk {
                    ts_ms: o.ts_ms,
                    stream: o.stream,
                    data: o.data.to_vec(),
                };
                let line = logfmt::encode_line(o.seq, &chunk);
                let mut out = self.run.out.lock().unwrap_or_else(|e| e.into_inner());
                match self.log.write_all(&line) {
                    Ok(()) => out.log_len += line.len() as u64,
                    Err(e) => {
                        tracing::warn!(run_id = %self.run.run_id, error = %e, "cannot append to log.jsonl")
                    }
                }
                out.subs.retain(|s| s.try_send(chunk.clone()).is_ok());
            }
            Some(&proto::TAG_JSON) => {
                let Ok(up) = serde_json::from_slice::<Up>(&msg[1..]) else {
                    return;
                };
                let run_id = self.run.run_id.clone();
                match up {
                    Up::Stage1 { pid } => {
                        self.run.init_pid.store(pid, Ordering::SeqCst);
                        if let Some(t) = proc_start_time(pid) {
                            *self
                                .run
                                .init_start
                                .lock()
                                .unwrap_or_else(|e| e.into_inner()) = t;
                        }
                        if let Some(fd) = fds.pop() {
                            *self.run.netns.lock().unwrap_or_else(|e| e.into_inner()) = Some(fd);
                        }
                        if let Ok(fd) = sys::pidfd_open(pid) {
                            if let Ok(dup) = fd.try_clone() {
                                *self.run.pidfd.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some(Arc::new(dup));
                            }
                            self.pidfd = async_fd(fd, Interest::READABLE);
                        }
                    }
                    Up::Step {
                        index,
                        total,
                        description,
                    } => {
                        (self.events)(SandboxEvent::InitStep {
                            run_id,
                            index,
                            total,
                            description,
                        });
                    }
                    Up::Held { .. } => {
                        let host_pid = self.command_host_pid();
                        if let Some(tx) = self.started.take() {
                            let _ = tx.send(Ok(Some(host_pid)));
                        }
                    }
                    Up::Started { .. } => {
                        let host_pid = self.command_host_pid();
                        (self.events)(SandboxEvent::Started {
                            run_id,
                            pid: host_pid,
                        });
                        if let Some(tx) = self.started.take() {
                            let _ = tx.send(Ok(Some(host_pid)));
                        }
                    }
                    Up::ExecFailed { reason, .. } => {
                        self.exec_failed = Some(reason);
                        if let Some(tx) = self.started.take() {
                            let _ = tx.send(Ok(None));
                        }
                    }
                    Up::SetupFailed { step, message } => {
                        if let Some(tx) = self.started.take() {
                            let _ = tx.send(Err(SandboxError::Setup {
                                step: step.clone(),
                                message: message.clone(),
                            }));
                        }
                        self.setup_failed = Some((step, message));
                    }
                    Up::Exited {
                        code,
                        signal,
                        reason,
                    } => {
                        self.exit_msg = Some((code, signal, reason));
                    }
                    // fds are requested over one-shot connections, never on this one.
                    Up::Fd { .. } => {}
                }
            }
            _ => {}
        }
    }

    /// The command's pid as the daemon sees it; if /proc does not tell (rootless: PID 1
    /// is not dumpable), PID 1's own pid.
    fn command_host_pid(&self) -> i32 {
        let init_pid = self.run.init_pid.load(Ordering::SeqCst);
        command_host_pid(init_pid).unwrap_or(init_pid)
    }

    /// Decide how the run ended. `wait` is PID 1's wait status, if we saw it.
    fn compose_exit(&self, wait: Option<WaitOutcome>) -> ExitInfo {
        let oom = self.run.cgroups.oom_killed();
        let mut info = if let Some((code, signal, reason)) = &self.exit_msg {
            ExitInfo {
                exit_code: Some(*code),
                signal: *signal,
                oom_killed: false,
                reason: reason.clone(),
            }
        } else if let Some((step, message)) = &self.setup_failed {
            ExitInfo {
                exit_code: Some(125),
                signal: None,
                oom_killed: false,
                reason: Some(format!(
                    "sandbox setup failed at step \"{step}\": {message}"
                )),
            }
        } else if let Some(rec) = read_exit_json(&self.run.layout) {
            rec.info()
        } else {
            match wait {
                Some(WaitOutcome::Exited(c)) => ExitInfo {
                    exit_code: Some(c),
                    signal: None,
                    oom_killed: false,
                    reason: None,
                },
                Some(WaitOutcome::Signaled(s)) => ExitInfo {
                    exit_code: Some(128 + s),
                    signal: Some(s),
                    oom_killed: false,
                    reason: Some(if s == libc::SIGKILL {
                        "killed".into()
                    } else {
                        format!("killed by signal {s}")
                    }),
                },
                None => ExitInfo {
                    exit_code: None,
                    signal: None,
                    oom_killed: false,
                    reason: Some("ended while the daemon was not running".into()),
                },
            }
        };
        if info.reason.is_none() {
            info.reason = self.exec_failed.clone();
        }
        if oom {
            info.oom_killed = true;
            if info.exit_code != Some(0) {
                info.reason = Some("out of memory".into());
            }
        }
        info
    }

    /// Write `exit.json`, end the output streams, publish the exit. Once.
    fn record(&mut self, info: ExitInfo) {
        if self.exit_recorded {
            return;
        }
        self.exit_recorded = true;
        if let Err(e) = write_exit_json(&self.run.layout, &info) {
            tracing::warn!(run_id = %self.run.run_id, error = %e, "cannot write exit.json");
        }
        let _ = self.log.flush();
        {
            let mut out = self.run.out.lock().unwrap_or_else(|e| e.into_inner());
            out.finished = true;
            out.subs.clear();
        }
        let _ = self.exit_tx.send(Some(info.clone()));
        (self.events)(SandboxEvent::Exited {
            run_id: self.run.run_id.clone(),
            exit: info,
        });
    }

    fn finalize(&mut self) {
        let wait = self.init_dead.flatten();
        if let Some(tx) = self.started.take() {
            let msg = match &self.setup_failed {
                Some((step, message)) => SandboxError::Setup {
                    step: step.clone(),
                    message: message.clone(),
                },
                None => SandboxError::Setup {
                    step: "starting".into(),
                    message: "paddock init ended before the command started".into(),
                },
            };
            let _ = tx.send(Err(msg));
        }
        if !self.exit_recorded {
            let info = self.compose_exit(wait);
            self.record(info);
        }
    }
}

/// The host pid of PID 1's (first) child: the command.
pub fn command_host_pid(init_pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{init_pid}/task/{init_pid}/children")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}
