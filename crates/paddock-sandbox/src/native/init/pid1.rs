//! PID 1 of a sandbox: builds the filesystem, starts the command, then relays its output to
//! the daemon, forwards input and signals, reaps zombies, and exits with the command's
//! status (128+N for signal N).
//!
//! Output relay: every chunk read from the command's pipes/pty gets a sequence number and
//! stays queued until the daemon acknowledges it (the daemon acks after appending to
//! `log.jsonl`). While more than [`MAX_UNACKED`] bytes are unacknowledged — daemon slow or
//! gone — PID 1 stops reading the command's output, so the command blocks on a full pipe
//! (backpressure, no loss). A daemon that connects to `control.sock` and says `Hello`
//! becomes the primary connection and receives every unacknowledged chunk again (it drops
//! sequence numbers it already logged).
//!
//! Exit: when the command exits, remaining output is drained, every other process of the
//! sandbox is killed, and `Exited` is queued after the output. PID 1 leaves once the daemon
//! acknowledged the exit (`ExitAck`, sent after the daemon wrote `exit.json`). Without a
//! daemon, PID 1 writes `exit.json` itself through a directory fd opened before
//! `pivot_root` (the only file it ever writes), waits up to `linger_secs` for a daemon to
//! collect unacknowledged output, then leaves.
//!
//! Owns: the sandbox's PID 1 process. Never: blocks on the daemon (all sockets are
//! non-blocking) or lets the command inherit one of its fds.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, accept4, bind, listen, socket,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::spawn::{self, Spawned};
use super::{SetupError, mounts};
use crate::OutputStream;
use crate::native::logfmt::ExitRecord;
use crate::native::plan::{InitPlan, Prelude};
use crate::native::proto::{self, Down, Up};
use crate::native::sys;

/// Unacknowledged output PID 1 holds before it stops reading the command's output.
pub const MAX_UNACKED: usize = 4 << 20;
/// How long PID 1 waits for a connected daemon to acknowledge the exit.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const TOTAL_STEPS: u32 = 5;
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGWINCH,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn send_blocking(ctl: BorrowedFd<'_>, msg: &Up) {
    let _ = sys::send_msg(ctl, &proto::encode_json(msg), None, false);
}

/// Stage 2 entry: returns the process exit code.
pub fn run(prelude: Prelude, ctl: &OwnedFd) -> i32 {
    let _ = nix::sys::prctl::set_dumpable(false);
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(*s);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    let failed = |e: SetupError| {
        send_blocking(
            ctl.as_fd(),
            &Up::SetupFailed {
                step: e.step,
                message: e.message,
            },
        );
        125
    };
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            return failed(SetupError {
                step: "starting init".into(),
                message: format!("signalfd: {e}"),
            });
        }
    };
    // Before any run is known (a spare may wait here a long time): the part of the
    // sandbox that is the same for every run.
    let generic = (|| -> Result<PathBuf, SetupError> {
        let root = mounts::prepare_root(&prelude.root, prelude.system_root.as_deref())?;
        sys::loopback_up().map_err(|e| SetupError {
            step: "preparing the sandbox root".into(),
            message: format!("bringing up loopback: {e}"),
        })?;
        Ok(root)
    })();
    let root = match generic {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let plan = match super::recv_json::<InitPlan>(ctl, "preparing the sandbox root", "plan") {
        Ok(Some(p)) => p,
        // The runtime went away without using this sandbox.
        Ok(None) => return 0,
        Err(e) => return failed(e),
    };
    let step = |i: u32, d: &str| {
        send_blocking(
            ctl.as_fd(),
            &Up::Step {
                index: i,
                total: TOTAL_STEPS,
                description: d.to_string(),
            },
        );
    };
    let setup = (|| -> Result<(Spawned, OwnedFd, OwnedFd), SetupError> {
        step(1, "preparing the sandbox root");
        enter_run(&plan)?;
        step(2, "mounting the workspace");
        mounts::mount_workspace_and_binds(&plan, &root)?;
        step(3, "hiding host secrets");
        mounts::apply_masks(&plan, &root)?;
        step(4, "switching to the new root");
        let s = "switching to the new root";
        let run_dir: OwnedFd = std::fs::File::open(&plan.run_dir)
            .map_err(|e| SetupError {
                step: s.into(),
                message: format!("opening the run directory: {e}"),
            })?
            .into();
        let listener = listen_control(&plan, &run_dir).map_err(|e| SetupError {
            step: s.into(),
            message: format!("binding control.sock: {e}"),
        })?;
        mounts::enter_root(&root)?;
        nix::unistd::sethostname(&plan.hostname).map_err(|e| SetupError {
            step: s.into(),
            message: format!("setting the hostname: {e}"),
        })?;
        step(5, "starting the command");
        let s = "starting the command";
        let confinement = paddock_confine::Confinement {
            writable_paths: plan.writable_paths.clone(),
            ..paddock_confine::Confinement::default()
        };
        let prepared = confinement.prepare().map_err(|e| SetupError {
            step: s.into(),
            message: format!("preparing confinement: {e} ({})", e.hint()),
        })?;
        let spawned =
            spawn::spawn(&main_spec(&plan), Some(&prepared)).map_err(|message| SetupError {
                step: s.into(),
                message,
            })?;
        Ok((spawned, listener, run_dir))
    })();
    let (spawned, listener, run_dir) = match setup {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let ctl = match ctl.try_clone() {
        Ok(c) => c,
        Err(_) => return 125,
    };
    let _ = sys::set_nonblocking(ctl.as_fd());
    let mut p = Pid1::new(plan, ctl, listener, run_dir, sigfd, spawned);
    if p.gate.is_some() {
        let held = Up::Held { pid: p.child };
        p.queue(&held, None);
    }
    p.run()
}

/// Make this sandbox the run's: join its cgroups, then create the cgroup namespace (rooted
/// at the run's cgroup, so the command sees no host cgroup path).
fn enter_run(plan: &InitPlan) -> Result<(), SetupError> {
    let step = "preparing the sandbox root";
    for f in &plan.cgroup_procs {
        std::fs::write(f, "0").map_err(|e| SetupError {
            step: step.into(),
            message: format!("joining cgroup {}: {e}", f.display()),
        })?;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| SetupError {
        step: step.into(),
        message: format!("creating the cgroup namespace: {e}"),
    })
}

fn main_spec(plan: &InitPlan) -> spawn::SpawnSpec<'_> {
    spawn::SpawnSpec {
        command: &plan.command,
        env: &plan.env,
        cwd: &plan.cwd,
        tty: plan.tty,
        stdin: plan.stdin,
        tty_size: plan.tty_size,
        hold: plan.hold,
    }
}

/// Bind `run_dir/control.sock` (0600) for reconnecting daemons.
fn listen_control(plan: &InitPlan, run_dir: &OwnedFd) -> io::Result<OwnedFd> {
    let path = plan.run_dir.join("control.sock");
    let _ = std::fs::remove_file(&path);
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    // sun_path holds 108 bytes; reach a long run_dir through our fd of it instead.
    let addr = if path.as_os_str().len() < 100 {
        UnixAddr::new(&path)?
    } else {
        UnixAddr::new(format!("/proc/self/fd/{}/control.sock", run_dir.as_raw_fd()).as_str())?
    };
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let r = bind(sock.as_raw_fd(), &addr);
    nix::sys::stat::umask(old);
    r?;
    listen(&sock, Backlog::new(16).unwrap_or(Backlog::MAXCONN))?;
    Ok(sock)
}

struct Frame {
    seq: u64,
    bytes: Vec<u8>,
}

struct OutSrc {
    fd: OwnedFd,
    stream: OutputStream,
    eof: bool,
}

/// Output an exec session may have queued before PID 1 stops reading its pipes.
const MAX_EXEC_QUEUE: usize = 1 << 20;

/// A command started with `Down::Exec`, bound to the connection that asked for it.
struct ExecSession {
    conn: Option<OwnedFd>,
    pid: i32,
    outs: Vec<OutSrc>,
    input: Option<OwnedFd>,
    pty: bool,
    stdin_buf: Vec<u8>,
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    status: Option<(i32, Option<i32>)>,
    report: Option<OwnedFd>,
    report_buf: Vec<u8>,
    reason: Option<String>,
    seq: u64,
    finished: bool,
}

impl ExecSession {
    fn push(&mut self, msg: Vec<u8>) {
        self.queued += msg.len();
        self.queue.push_back(msg);
    }

    fn flush(&mut self) {
        let Some(c) = &self.conn else {
            self.queue.clear();
            self.queued = 0;
            return;
        };
        while let Some(m) = self.queue.front() {
            match sys::send_msg(c.as_fd(), m, None, true) {
                Ok(_) => {
                    self.queued -= m.len();
                    self.queue.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.detach();
                    return;
                }
            }
        }
    }

    /// The client went away: end the command (its output has nowhere to go).
    fn detach(&mut self) {
        self.conn = None;
        self.queue.clear();
        self.queued = 0;
        if self.status.is_none() {
            let _ = nix::sys::signal::kill(Pid::from_raw(-self.pid), Signal::SIGKILL);
        }
    }

    fn read_out(&mut self, k: usize, chunk: &mut [u8], drain: bool) {
        loop {
            if !drain && self.queued >= MAX_EXEC_QUEUE {
                return;
            }
            let o = &mut self.outs[k];
            if o.eof {
                return;
            }
            match nix::unistd::read(o.fd.as_fd(), chunk) {
                Ok(0) => o.eof = true,
                Ok(n) => {
                    let stream = o.stream;
                    self.seq += 1;
                    let m = proto::encode_output(self.seq, proto::now_ms(), stream, &chunk[..n]);
                    self.push(m);
                    if !drain {
                        return;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => o.eof = true,
            }
        }
    }

    fn flush_stdin(&mut self) {
        let Some(fd) = &self.input else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match nix::unistd::write(fd.as_fd(), &self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    self.stdin_buf.clear();
                    self.input = None;
                    return;
                }
            }
        }
    }

    fn handle(&mut self, msg: &[u8]) {
        match msg.first() {
            Some(&proto::TAG_STDIN) if self.stdin_buf.len() < (8 << 20) => {
                self.stdin_buf.extend_from_slice(&msg[1..]);
                self.flush_stdin();
            }
            Some(&proto::TAG_JSON) => match serde_json::from_slice::<Down>(&msg[1..]) {
                Ok(Down::CloseStdin) => {
                    if self.pty {
                        self.stdin_buf.push(0x04);
                        self.flush_stdin();
                    } else {
                        self.flush_stdin();
                        self.input = None;
                    }
                }
                Ok(Down::Resize { rows, cols }) if self.pty => {
                    if let Some(m) = &self.input {
                        let _ = sys::set_winsize(m.as_fd(), rows, cols);
                    }
                }
                Ok(Down::Signal { signal }) if self.status.is_none() => {
                    let _ = nix::sys::signal::kill(
                        Pid::from_raw(-self.pid),
                        Signal::try_from(signal).ok(),
                    );
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn on_report(&mut self) {
        let Some(r) = &self.report else { return };
        let mut b = [0u8; 1024];
        match nix::unistd::read(r.as_fd(), &mut b) {
            Ok(0) | Err(nix::errno::Errno::EBADF) => {
                self.report = None;
                if self.report_buf.is_empty() {
                    self.push(proto::encode_json(&Up::Started { pid: self.pid }));
                } else {
                    let s = String::from_utf8_lossy(&self.report_buf).into_owned();
                    let (code, reason) = s.split_once(':').unwrap_or(("126", s.as_str()));
                    self.reason = Some(reason.to_string());
                    let msg = Up::ExecFailed {
                        code: code.parse().unwrap_or(126),
                        reason: reason.to_string(),
                    };
                    self.push(proto::encode_json(&msg));
                }
            }
            Ok(n) => self.report_buf.extend_from_slice(&b[..n]),
            Err(_) => {}
        }
    }
}

struct Pid1 {
    plan: InitPlan,
    execs: Vec<ExecSession>,
    primary: Option<OwnedFd>,
    aux: Vec<OwnedFd>,
    listener: OwnedFd,
    run_dir: OwnedFd,
    sigfd: SignalFd,
    outs: Vec<OutSrc>,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    pty: Option<OwnedFd>,
    exec_report: Option<OwnedFd>,
    exec_report_buf: Vec<u8>,
    /// The held command's gate (write end) until `Down::Release`.
    gate: Option<OwnedFd>,
    child: i32,
    child_status: Option<(i32, Option<i32>)>,
    reason: Option<String>,
    next_seq: u64,
    unacked: VecDeque<Frame>,
    unacked_bytes: usize,
    send_idx: usize,
    ctrl: VecDeque<(Vec<u8>, Option<OwnedFd>)>,
    exit_msg: Option<Vec<u8>>,
    exit_sent: bool,
    exit_acked: bool,
    exit_written: bool,
    ended_at: Option<Instant>,
    buf: Vec<u8>,
}

impl Pid1 {
    fn new(
        plan: InitPlan,
        ctl: OwnedFd,
        listener: OwnedFd,
        run_dir: OwnedFd,
        sigfd: SignalFd,
        sp: Spawned,
    ) -> Self {
        let tty = plan.tty;
        let mut outs = vec![OutSrc {
            fd: sp.stdout,
            stream: if tty {
                OutputStream::Tty
            } else {
                OutputStream::Stdout
            },
            eof: false,
        }];
        if let Some(e) = sp.stderr {
            outs.push(OutSrc {
                fd: e,
                stream: OutputStream::Stderr,
                eof: false,
            });
        }
        let (stdin, pty) = if tty {
            (None, sp.stdin)
        } else {
            (sp.stdin, None)
        };
        Pid1 {
            plan,
            execs: Vec::new(),
            primary: Some(ctl),
            aux: Vec::new(),
            listener,
            run_dir,
            sigfd,
            outs,
            stdin,
            stdin_buf: Vec::new(),
            stdin_close: false,
            pty,
            exec_report: Some(sp.exec_report),
            exec_report_buf: Vec::new(),
            gate: sp.gate,
            child: sp.pid,
            child_status: None,
            reason: None,
            next_seq: 1,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            send_idx: 0,
            ctrl: VecDeque::new(),
            exit_msg: None,
            exit_sent: false,
            exit_acked: false,
            exit_written: false,
            ended_at: None,
            buf: vec![0u8; proto::MAX_MESSAGE],
        }
    }

    fn queue(&mut self, msg: &Up, fd: Option<OwnedFd>) {
        self.ctrl.push_back((proto::encode_json(msg), fd));
    }

    fn exit_code(&self) -> i32 {
        match self.child_status {
            Some((code, _)) => code,
            None => 125,
        }
    }

    fn run(&mut self) -> i32 {
        loop {
            self.flush();
            if self.ended_at.is_some() && self.done() {
                return self.exit_code();
            }
            let timeout = self.poll_timeout();
            let (want_out, stdin_pending) = (
                self.unacked_bytes < MAX_UNACKED,
                !self.stdin_buf.is_empty() || self.stdin_close,
            );
            let mut fds: Vec<(u8, usize, PollFd<'_>)> = Vec::new();
            fds.push((0, 0, PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)));
            fds.push((1, 0, PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)));
            if let Some(p) = &self.primary {
                let mut ev = PollFlags::POLLIN;
                if self.has_pending() {
                    ev |= PollFlags::POLLOUT;
                }
                fds.push((2, 0, PollFd::new(p.as_fd(), ev)));
            }
            for (i, a) in self.aux.iter().enumerate() {
                fds.push((3, i, PollFd::new(a.as_fd(), PollFlags::POLLIN)));
            }
            if want_out && self.ended_at.is_none() {
                for (i, o) in self.outs.iter().enumerate() {
                    if !o.eof {
                        fds.push((4, i, PollFd::new(o.fd.as_fd(), PollFlags::POLLIN)));
                    }
                }
            }
            if stdin_pending
                && self.ended_at.is_none()
                && let Some(s) = self.stdin.as_ref().or(self.pty.as_ref())
            {
                fds.push((5, 0, PollFd::new(s.as_fd(), PollFlags::POLLOUT)));
            }
            if let Some(r) = &self.exec_report {
                fds.push((6, 0, PollFd::new(r.as_fd(), PollFlags::POLLIN)));
            }
            for (j, e) in self.execs.iter().enumerate() {
                if let Some(c) = &e.conn {
                    let mut ev = PollFlags::POLLIN;
                    if !e.queue.is_empty() {
                        ev |= PollFlags::POLLOUT;
                    }
                    fds.push((7, j, PollFd::new(c.as_fd(), ev)));
                }
                if e.queued < MAX_EXEC_QUEUE {
                    for (k, o) in e.outs.iter().enumerate() {
                        if !o.eof {
                            fds.push((8, j * 4 + k, PollFd::new(o.fd.as_fd(), PollFlags::POLLIN)));
                        }
                    }
                }
                if let Some(r) = &e.report {
                    fds.push((9, j, PollFd::new(r.as_fd(), PollFlags::POLLIN)));
                }
            }
            let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|(_, _, p)| p.clone()).collect();
            match poll(&mut pfds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            let ready: Vec<(u8, usize)> = fds
                .iter()
                .zip(pfds.iter())
                .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|((k, i, _), _)| (*k, *i))
                .collect();
            drop(fds);
            let mut aux_ready = Vec::new();
            for (kind, idx) in ready {
                match kind {
                    0 => self.on_signals(),
                    1 => self.on_accept(),
                    2 => self.on_primary(),
                    3 => aux_ready.push(idx),
                    4 => self.read_output(idx, false),
                    5 => self.flush_stdin(),
                    6 => self.on_exec_report(),
                    7 => self.on_exec_conn(idx),
                    8 => {
                        let mut chunk = vec![0u8; proto::MAX_OUTPUT_CHUNK];
                        self.execs[idx / 4].read_out(idx % 4, &mut chunk, false);
                    }
                    9 => self.execs[idx].on_report(),
                    _ => {}
                }
            }
            self.tend_execs();
            aux_ready.sort_unstable_by(|a, b| b.cmp(a));
            for i in aux_ready {
                self.on_aux(i);
            }
            if self.ended_at.is_none() && self.child_status.is_some() {
                self.finish_command();
            }
            if let Some(t) = self.ended_at
                && !self.exit_written
                && !self.exit_acked
                && (self.primary.is_none() || t.elapsed() > ACK_TIMEOUT)
            {
                self.write_exit_json();
            }
        }
    }

    fn poll_timeout(&self) -> PollTimeout {
        if self.ended_at.is_some() || self.execs.iter().any(|e| !e.stdin_buf.is_empty()) {
            PollTimeout::from(50u16)
        } else {
            PollTimeout::NONE
        }
    }

    fn on_exec_conn(&mut self, j: usize) {
        let e = &mut self.execs[j];
        e.flush();
        loop {
            let Some(c) = &e.conn else { return };
            match sys::recv_msg(c.as_fd(), &mut self.buf, true) {
                Ok((0, _)) => {
                    e.detach();
                    return;
                }
                Ok((n, _)) => {
                    let msg = self.buf[..n].to_vec();
                    e.handle(&msg);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    e.detach();
                    return;
                }
            }
        }
    }

    /// Finish ended exec sessions: drain, report, and drop them once delivered.
    fn tend_execs(&mut self) {
        let mut chunk = vec![0u8; proto::MAX_OUTPUT_CHUNK];
        for e in &mut self.execs {
            e.flush_stdin();
            if e.status.is_some() && !e.finished {
                if e.report.is_some() {
                    e.on_report();
                }
                for k in 0..e.outs.len() {
                    e.read_out(k, &mut chunk, true);
                }
                let (code, signal) = e.status.unwrap_or((125, None));
                e.push(proto::encode_json(&Up::Exited {
                    code,
                    signal,
                    reason: e.reason.clone(),
                }));
                e.finished = true;
            }
            e.flush();
        }
        self.execs
            .retain(|e| !(e.finished && (e.queue.is_empty() || e.conn.is_none())));
    }

    /// `Down::Exec` on a new connection: start the command, confined like the first.
    fn start_exec(
        &mut self,
        conn: OwnedFd,
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
        tty_size: Option<crate::TtySize>,
    ) {
        if self.ended_at.is_some() || command.is_empty() {
            let msg = Up::SetupFailed {
                step: "exec".into(),
                message: "the sandbox's command has ended".into(),
            };
            let _ = sys::send_msg(conn.as_fd(), &proto::encode_json(&msg), None, true);
            return;
        }
        let env = if env.is_empty() {
            self.plan.env.clone()
        } else {
            env
        };
        let spec = spawn::SpawnSpec {
            command: &command,
            env: &env,
            cwd: &self.plan.cwd,
            tty,
            stdin: true,
            tty_size,
            hold: false,
        };
        let confinement = paddock_confine::Confinement {
            writable_paths: self.plan.writable_paths.clone(),
            ..paddock_confine::Confinement::default()
        };
        let res = confinement
            .prepare()
            .map_err(|e| format!("preparing confinement: {e}"))
            .and_then(|p| spawn::spawn(&spec, Some(&p)));
        match res {
            Ok(sp) => {
                let mut outs = vec![OutSrc {
                    fd: sp.stdout,
                    stream: if tty {
                        OutputStream::Tty
                    } else {
                        OutputStream::Stdout
                    },
                    eof: false,
                }];
                if let Some(e) = sp.stderr {
                    outs.push(OutSrc {
                        fd: e,
                        stream: OutputStream::Stderr,
                        eof: false,
                    });
                }
                self.execs.push(ExecSession {
                    conn: Some(conn),
                    pid: sp.pid,
                    outs,
                    input: sp.stdin,
                    pty: tty,
                    stdin_buf: Vec::new(),
                    queue: VecDeque::new(),
                    queued: 0,
                    status: None,
                    report: Some(sp.exec_report),
                    report_buf: Vec::new(),
                    reason: None,
                    seq: 0,
                    finished: false,
                });
            }
            Err(message) => {
                let msg = Up::SetupFailed {
                    step: "exec".into(),
                    message,
                };
                let _ = sys::send_msg(conn.as_fd(), &proto::encode_json(&msg), None, true);
            }
        }
    }

    /// After the command ended: leave when the daemon has everything, or after waiting.
    fn done(&self) -> bool {
        let Some(t) = self.ended_at else { return false };
        if self.exit_acked && self.unacked.is_empty() {
            return true;
        }
        if !self.exit_written {
            return false;
        }
        if self.primary.is_some() {
            return t.elapsed() > ACK_TIMEOUT;
        }
        self.unacked.is_empty() || t.elapsed() > Duration::from_secs(self.plan.linger_secs)
    }

    fn has_pending(&self) -> bool {
        !self.ctrl.is_empty()
            || self.send_idx < self.unacked.len()
            || (self.exit_msg.is_some() && !self.exit_sent)
    }

    fn drop_primary(&mut self) {
        // A command still held was never released by a daemon (which places the run's
        // network first): with that daemon gone, nobody will. Closing the gate ends it
        // (125, it never ran) instead of leaving the sandbox waiting for ever.
        self.gate = None;
        self.primary = None;
        self.send_idx = 0;
        self.exit_sent = false;
    }

    /// Send whatever the primary connection can take now.
    fn flush(&mut self) {
        loop {
            let Some(p) = &self.primary else { return };
            let res = if let Some((msg, fd)) = self.ctrl.front() {
                sys::send_msg(p.as_fd(), msg, fd.as_ref().map(|f| f.as_fd()), true).map(|_| 0)
            } else if self.send_idx < self.unacked.len() {
                sys::send_msg(p.as_fd(), &self.unacked[self.send_idx].bytes, None, true).map(|_| 1)
            } else if let (Some(m), false) = (&self.exit_msg, self.exit_sent) {
                sys::send_msg(p.as_fd(), m, None, true).map(|_| 2)
            } else {
                return;
            };
            match res {
                Ok(0) => {
                    self.ctrl.pop_front();
                }
                Ok(1) => self.send_idx += 1,
                Ok(_) => self.exit_sent = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.drop_primary();
                    return;
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let mut reap = false;
        while let Ok(Some(si)) = self.sigfd.read_signal() {
            let signo = si.ssi_signo as i32;
            if signo == libc::SIGCHLD {
                reap = true;
            } else if self.child_status.is_none() {
                let _ = nix::sys::signal::kill(
                    Pid::from_raw(-self.child),
                    Signal::try_from(signo).ok(),
                );
            }
        }
        if reap {
            self.reap();
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == self.child => {
                    self.child_status = Some((code, None));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == self.child => {
                    self.child_status = Some((128 + sig as i32, Some(sig as i32)));
                }
                Ok(WaitStatus::Exited(pid, code)) => self.exec_ended(pid.as_raw(), (code, None)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exec_ended(pid.as_raw(), (128 + sig as i32, Some(sig as i32)))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn exec_ended(&mut self, pid: i32, status: (i32, Option<i32>)) {
        if let Some(e) = self.execs.iter_mut().find(|e| e.pid == pid) {
            e.status = Some(status);
        }
    }

    fn on_accept(&mut self) {
        while let Ok(fd) = accept4(
            self.listener.as_raw_fd(),
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) {
            // SAFETY: accept4 just returned this fd; nothing else owns it.
            self.aux.push(unsafe { sys::adopt_fd(fd) });
        }
    }

    fn on_primary(&mut self) {
        loop {
            let Some(p) = &self.primary else { return };
            match sys::recv_msg(p.as_fd(), &mut self.buf, true) {
                Ok((0, _)) => {
                    self.drop_primary();
                    return;
                }
                Ok((n, _)) => {
                    let msg = self.buf[..n].to_vec();
                    self.handle(&msg, None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.drop_primary();
                    return;
                }
            }
        }
    }

    fn on_aux(&mut self, i: usize) {
        loop {
            let res = sys::recv_msg(self.aux[i].as_fd(), &mut self.buf, true);
            match res {
                Ok((0, _)) => {
                    self.aux.remove(i);
                    return;
                }
                Ok((n, _)) => {
                    let msg = self.buf[..n].to_vec();
                    let parsed = if msg.first() == Some(&proto::TAG_JSON) {
                        serde_json::from_slice::<Down>(&msg[1..]).ok()
                    } else {
                        None
                    };
                    match parsed {
                        Some(Down::Hello) => {
                            let conn = self.aux.remove(i);
                            self.drop_primary();
                            self.primary = Some(conn);
                            return;
                        }
                        Some(Down::Exec {
                            command,
                            env,
                            tty,
                            tty_size,
                        }) => {
                            let conn = self.aux.remove(i);
                            self.start_exec(conn, command, env, tty, tty_size);
                            return;
                        }
                        _ => {}
                    }
                    let conn = self.aux[i].try_clone().ok();
                    self.handle(&msg, conn.as_ref());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.aux.remove(i);
                    return;
                }
            }
        }
    }

    /// Handle a daemon message. `reply_to` is the auxiliary connection it came on.
    fn handle(&mut self, msg: &[u8], reply_to: Option<&OwnedFd>) {
        match msg.first() {
            // Input beyond 8 MiB that the command does not read is dropped.
            Some(&proto::TAG_STDIN)
                if (self.stdin.is_some() || self.pty.is_some())
                    && self.stdin_buf.len() < (8 << 20) =>
            {
                self.stdin_buf.extend_from_slice(&msg[1..]);
                self.flush_stdin();
            }
            Some(&proto::TAG_JSON) => {
                let Ok(down) = serde_json::from_slice::<Down>(&msg[1..]) else {
                    return;
                };
                match down {
                    Down::Hello => {}
                    Down::CloseStdin => {
                        self.stdin_close = true;
                        self.flush_stdin();
                    }
                    Down::Resize { rows, cols } => {
                        if let Some(m) = &self.pty {
                            let _ = sys::set_winsize(m.as_fd(), rows, cols);
                        }
                    }
                    Down::Signal { signal } => {
                        if self.child_status.is_none() {
                            let _ = nix::sys::signal::kill(
                                Pid::from_raw(-self.child),
                                Signal::try_from(signal).ok(),
                            );
                        }
                    }
                    Down::Ack { seq } => {
                        while self.unacked.front().is_some_and(|f| f.seq <= seq) {
                            if let Some(f) = self.unacked.pop_front() {
                                self.unacked_bytes -= f.bytes.len();
                            }
                            self.send_idx = self.send_idx.saturating_sub(1);
                        }
                    }
                    Down::ExitAck => self.exit_acked = true,
                    Down::Release => {
                        if let Some(g) = self.gate.take() {
                            sys::write_all_raw(g.as_raw_fd(), b"g");
                        }
                    }
                    // Only valid as the first message of a new connection.
                    Down::Exec { .. } => {}
                    Down::Socket { id, domain, ty } => {
                        let (reply, fd) = match sys::new_socket(domain, ty) {
                            Ok(fd) => (Up::Fd { id, error: None }, Some(fd)),
                            Err(e) => (
                                Up::Fd {
                                    id,
                                    error: Some(e.to_string()),
                                },
                                None,
                            ),
                        };
                        self.reply(reply_to, &reply, fd);
                    }
                    Down::NetnsFd { id } => {
                        let (reply, fd) = match std::fs::File::open("/proc/self/ns/net") {
                            Ok(f) => (Up::Fd { id, error: None }, Some(OwnedFd::from(f))),
                            Err(e) => (
                                Up::Fd {
                                    id,
                                    error: Some(e.to_string()),
                                },
                                None,
                            ),
                        };
                        self.reply(reply_to, &reply, fd);
                    }
                }
            }
            _ => {}
        }
    }

    fn reply(&mut self, reply_to: Option<&OwnedFd>, msg: &Up, fd: Option<OwnedFd>) {
        match reply_to {
            Some(conn) => {
                let _ = sys::send_msg(
                    conn.as_fd(),
                    &proto::encode_json(msg),
                    fd.as_ref().map(|f| f.as_fd()),
                    true,
                );
            }
            None => self.queue(msg, fd),
        }
    }

    /// Read what stream `idx` has (a few chunks). `past_cap`: even beyond [`MAX_UNACKED`],
    /// for the last drain, when every writer is dead and the pipes hold all there is left.
    fn read_output(&mut self, idx: usize, past_cap: bool) {
        let mut chunk = vec![0u8; proto::MAX_OUTPUT_CHUNK];
        // A few reads per wakeup keep fairness between the streams and the control socket.
        for _ in 0..8 {
            if self.unacked_bytes >= MAX_UNACKED && self.ended_at.is_none() && !past_cap {
                return;
            }
            let o = &mut self.outs[idx];
            match nix::unistd::read(o.fd.as_fd(), &mut chunk) {
                Ok(0) => {
                    o.eof = true;
                    return;
                }
                Ok(n) => {
                    let stream = o.stream;
                    self.push_output(stream, &chunk[..n]);
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => {}
                // EIO: the pty's last slave fd closed.
                Err(_) => {
                    o.eof = true;
                    return;
                }
            }
        }
    }

    fn push_output(&mut self, stream: OutputStream, data: &[u8]) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = proto::encode_output(seq, proto::now_ms(), stream, data);
        self.unacked_bytes += bytes.len();
        self.unacked.push_back(Frame { seq, bytes });
    }

    fn flush_stdin(&mut self) {
        let Some(fd) = self.stdin.as_ref().or(self.pty.as_ref()) else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match nix::unistd::write(fd.as_fd(), &self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    self.stdin_buf.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.stdin_close {
            self.stdin_close = false;
            if self.pty.is_some() {
                // End of input on a terminal is the EOF character at the start of a line.
                self.stdin_buf.push(0x04);
                self.flush_stdin();
            } else {
                self.stdin = None;
            }
        }
    }

    fn on_exec_report(&mut self) {
        let Some(r) = &self.exec_report else { return };
        let mut b = [0u8; 4096];
        match nix::unistd::read(r.as_fd(), &mut b).map_err(io::Error::from) {
            Ok(0) => {
                self.exec_report = None;
                if self.exec_report_buf.is_empty() {
                    // EOF with the gate still closed: the held command died (stopped)
                    // before it was released; it never ran, and `Exited` follows.
                    if self.gate.is_none() {
                        self.queue(&Up::Started { pid: self.child }, None);
                    }
                } else {
                    let s = String::from_utf8_lossy(&self.exec_report_buf).into_owned();
                    let (code, reason) = s.split_once(':').unwrap_or(("126", s.as_str()));
                    let code = code.parse().unwrap_or(126);
                    self.reason = Some(reason.to_string());
                    self.queue(
                        &Up::ExecFailed {
                            code,
                            reason: reason.to_string(),
                        },
                        None,
                    );
                }
            }
            Ok(n) => self.exec_report_buf.extend_from_slice(&b[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.exec_report = None,
        }
    }

    /// The command exited: drain its output, end everything else, queue `Exited`.
    fn finish_command(&mut self) {
        if self.exec_report.is_some() {
            // The report pipe is closed by now (exec happened or the child exited).
            self.on_exec_report();
            self.on_exec_report();
        }
        // Bounded by the cap: something the command left behind may still be writing.
        self.drain_outputs(false);
        // Kill whatever the command left behind, then collect the last output they wrote.
        let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
        loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        // Every writer is dead: what the pipes hold is all there is, and it is kept even
        // past the cap (a slow daemon must not cost the output's end).
        self.drain_outputs(true);
        let (code, signal) = self.child_status.unwrap_or((125, None));
        let msg = Up::Exited {
            code,
            signal,
            reason: self.reason.clone(),
        };
        self.exit_msg = Some(proto::encode_json(&msg));
        self.ended_at = Some(Instant::now());
        self.stdin = None;
        self.pty = None;
    }

    fn drain_outputs(&mut self, past_cap: bool) {
        for i in 0..self.outs.len() {
            let mut guard = 0;
            while !self.outs[i].eof && guard < 10_000 {
                let before = self.next_seq;
                self.read_output(i, past_cap);
                if self.next_seq == before {
                    break;
                }
                guard += 1;
            }
        }
    }

    /// Record the exit for a future daemon (no daemon acknowledged it).
    fn write_exit_json(&mut self) {
        self.exit_written = true;
        let (code, signal) = self.child_status.unwrap_or((125, None));
        let rec = ExitRecord {
            exit_code: Some(code),
            signal,
            oom_killed: false,
            reason: self.reason.clone(),
            ts_ms: proto::now_ms(),
            writer: "init".into(),
        };
        let Ok(data) = serde_json::to_vec(&rec) else {
            return;
        };
        let dir = self.run_dir.as_fd();
        let tmp = c"exit.json.init.tmp";
        let _ = nix::unistd::unlinkat(dir, tmp, nix::unistd::UnlinkatFlags::NoRemoveDir);
        let fd = nix::fcntl::openat(
            dir,
            tmp,
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_EXCL
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        );
        let Ok(fd) = fd else { return };
        let mut f = std::fs::File::from(fd);
        if f.write_all(&data).is_ok() && f.sync_all().is_ok() {
            let _ = nix::fcntl::renameat(dir, tmp, dir, c"exit.json");
        }
    }
}
