//! Launching stage 1 (`init_exe init`), with one sandbox built ahead of time.
//!
//! Exec'ing the paddock binary, creating the namespaces and mounting the system part of the
//! root cost several milliseconds on a small machine, most of a sandbox's start. None of it
//! depends on the run, so the runtime keeps one spare: stage 1 launched with a
//! [`Prelude`] (the ids inside and the root's mount point), which has created the
//! namespaces and PID 1, which has built the generic root and brought up loopback, and now
//! waits for a plan. A start hands the spare its plan instead of launching; PID 1 then
//! joins the run's cgroups, creates its cgroup namespace and does only the run's own mounts.
//!
//! A spare holds nothing of any run (no cgroup, no file, no mount of a run) until it reads
//! its plan, and it ends as soon as its control socket closes (the runtime, or the daemon,
//! went away). It is used only when it is still alive, was made for the same ids and root,
//! and the daemon's mount table has not changed since (its mount namespace is a copy taken
//! when it was made: a filesystem mounted later would be missing from it); otherwise it is
//! ended and the start launches a fresh stage 1. A run's start refills the spare in the
//! background once the run's command has started (a held command: once it is released), so
//! the refill does not compete with the start.
//!
//! Owns: the spare. Never: hands one stage 1 to two starts, or reuses one that has read a
//! plan (a spare is taken out before its plan is sent).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::plan::Prelude;
use super::proto::{self, Up};
use super::sys;

/// A launched stage 1: the daemon's end of its control socket. (Stage 1 itself exits once
/// it has created PID 1, and is reaped by a task of the runtime.)
pub(crate) struct Stage1 {
    pub ctl: OwnedFd,
    prelude: Prelude,
    /// `/proc/self/mountinfo`, opened before stage 1 copied the daemon's mount table: it
    /// polls `POLLPRI` once that table changed.
    mounts: Option<File>,
}

pub(crate) struct Launcher {
    exe: PathBuf,
    spare: Mutex<Option<Stage1>>,
    /// What the next spare is made with: set by each create (no spare before the first).
    next: Mutex<Option<Prelude>>,
    filling: AtomicBool,
    /// Told when a refill has finished (whether it made a spare or not).
    filled: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Launcher {
    pub fn new(exe: PathBuf) -> Self {
        Launcher {
            exe,
            spare: Mutex::new(None),
            next: Mutex::new(None),
            filling: AtomicBool::new(false),
            filled: tokio::sync::Notify::new(),
        }
    }

    /// Launch a stage 1 now and send it `prelude`. Needs a tokio runtime (stage 1 is
    /// reaped by a task of it).
    pub fn spawn(&self, prelude: &Prelude) -> std::io::Result<Stage1> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let mounts = File::open("/proc/self/mountinfo").ok();
        // Control socketpair: ours stays here, the other end becomes stage 1's stdin.
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        // With no pre_exec hook, std spawns with posix_spawn (vfork-like), which stays cheap
        // however large the daemon grows.
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("init")
            .env_clear()
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(false);
        let mut child = cmd.spawn()?;
        tokio::runtime::Handle::current().spawn(async move {
            let _ = child.wait().await;
        });
        let s = Stage1 {
            ctl: ours,
            prelude: prelude.clone(),
            mounts,
        };
        if let Err(e) = sys::send_msg(s.ctl.as_fd(), &proto::encode_json(prelude), None, false) {
            end(s);
            return Err(e);
        }
        Ok(s)
    }

    /// What spares are made with from now on (the ids and root of the runs being created).
    pub fn expect(&self, prelude: Prelude) {
        *lock(&self.next) = Some(prelude);
    }

    /// The spare, when there is one made with `prelude`, alive, and made with the daemon's
    /// current mounts. A spare that does not qualify is ended.
    pub fn take(&self, prelude: &Prelude) -> Option<Stage1> {
        let s = lock(&self.spare).take()?;
        if &s.prelude == prelude && usable(&s) {
            return Some(s);
        }
        tracing::debug!("the spare sandbox is stale or gone; launching a fresh one");
        end(s);
        None
    }

    /// Make sure a spare exists, launching it on a blocking thread (never on the caller's).
    /// Does nothing outside a tokio runtime, before the first create, or when a refill is
    /// already under way.
    pub fn refill(self: &std::sync::Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(prelude) = lock(&self.next).clone() else {
            return;
        };
        // The common case (a create after the spare was made): nothing to do, no task.
        if lock(&self.spare)
            .as_ref()
            .is_some_and(|s| s.prelude == prelude)
        {
            return;
        }
        if self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        rt.spawn_blocking(move || {
            let stale = {
                let mut spare = lock(&me.spare);
                match spare.as_ref() {
                    Some(s) if s.prelude == prelude => None,
                    _ => Some(spare.take()),
                }
            };
            if let Some(old) = stale {
                if let Some(old) = old {
                    end(old);
                }
                match me.spawn(&prelude) {
                    Ok(s) => *lock(&me.spare) = Some(s),
                    Err(e) => tracing::debug!(error = %e, "could not launch a spare paddock init"),
                }
            }
            me.filling.store(false, Ordering::Release);
            me.filled.notify_waiters();
        });
    }

    /// When a refill is under way, wait for it (up to `limit`): a spare that is being built
    /// is ready sooner than a stage 1 launched now, which would also compete with it for
    /// the CPU.
    pub async fn settle(&self, limit: std::time::Duration) {
        let notified = self.filled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.filling.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(limit, notified).await;
        }
    }
}

/// Whether a spare can take a plan: its PID 1 (or stage 1, still on its way) holds the other
/// end of the control socket, and the daemon's mount table has not changed since it was made.
fn usable(s: &Stage1) -> bool {
    let mut ctl = [PollFd::new(s.ctl.as_fd(), PollFlags::empty())];
    let hung_up = match poll(&mut ctl, PollTimeout::ZERO) {
        Ok(_) => ctl[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
        Err(_) => true,
    };
    if hung_up {
        return false;
    }
    let Some(mounts) = &s.mounts else {
        return false;
    };
    let mut fds = [PollFd::new(mounts.as_fd(), PollFlags::POLLPRI)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => !fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR)),
        Err(_) => false,
    }
}

/// End a stage 1 that will get no plan, and reap its PID 1: a child of this process
/// (`CLONE_PARENT`), whose pid is the first message stage 1 queues. Stage 1 exits on its own
/// (reaped by its task); its PID 1 would exit too once the control socket closes, but
/// nothing would reap it.
fn end(s: Stage1) {
    let mut pid1 = None;
    // Stage 1 reports PID 1 within milliseconds of being launched; wait that long for it.
    let mut ctl = [PollFd::new(s.ctl.as_fd(), PollFlags::POLLIN)];
    if poll(&mut ctl, PollTimeout::from(1000u16)).is_ok_and(|n| n > 0) {
        let mut buf = vec![0u8; 4096];
        if let Ok((n, _fds)) = sys::recv_msg(s.ctl.as_fd(), &mut buf, true)
            && n > 1
            && buf[0] == proto::TAG_JSON
            && let Ok(Up::Stage1 { pid }) = serde_json::from_slice::<Up>(&buf[1..n])
        {
            pid1 = Some(nix::unistd::Pid::from_raw(pid));
        }
    }
    drop(s.ctl);
    // Our child, not yet reaped: the pid cannot have been reused.
    if let Some(pid) = pid1 {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

impl Drop for Launcher {
    /// A runtime that goes away takes its spare with it (in the daemon the spare would also
    /// exit on its own once the control socket closes; this makes it immediate and reaped).
    fn drop(&mut self) {
        if let Some(s) = lock(&self.spare).take() {
            end(s);
        }
    }
}
