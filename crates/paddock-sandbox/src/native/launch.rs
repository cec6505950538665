//! Launching stage 1 (`init_exe init`), with one launched ahead of time.
//!
//! Exec'ing the paddock binary and getting it to `main` costs about 2 ms on a small machine,
//! most of a sandbox's start. The runtime therefore keeps one stage 1 spawned and blocked on
//! its control socket, waiting for a plan: a start hands it the plan instead of spawning.
//! The spare is a freshly exec'd process that holds nothing of any run (no namespace, no
//! cgroup, no file of a run) until it reads its plan; it exits as soon as its control
//! socket closes (the runtime, or the daemon, went away). A run's start refills it in the
//! background once the run's command has started (a held command: once it is released), so
//! the refill does not compete with the start.
//!
//! Owns: the spare stage 1. Never: hands one stage 1 to two starts, or reuses one that has
//! read a plan (a spare is taken out before its plan is sent).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A spawned stage 1 and the daemon's end of its control socket.
pub(crate) struct Stage1 {
    pub child: tokio::process::Child,
    pub ctl: OwnedFd,
}

pub(crate) struct Launcher {
    exe: PathBuf,
    spare: Mutex<Option<Stage1>>,
    filling: AtomicBool,
}

impl Launcher {
    pub fn new(exe: PathBuf) -> Self {
        Launcher {
            exe,
            spare: Mutex::new(None),
            filling: AtomicBool::new(false),
        }
    }

    /// Spawn a stage 1 now. Needs a tokio runtime (the child is reaped by it).
    pub fn spawn(&self) -> std::io::Result<Stage1> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
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
        let child = cmd.spawn()?;
        Ok(Stage1 { child, ctl: ours })
    }

    /// The spare, when there is one and it is still alive.
    pub fn take(&self) -> Option<Stage1> {
        let mut s = self
            .spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        matches!(s.child.try_wait(), Ok(None)).then_some(s)
    }

    /// End the spare, if any, and reap it.
    fn end_spare(&self) {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut s) = spare {
            drop(s.ctl);
            let _ = s.child.start_kill();
            if let Some(pid) = s.child.id() {
                // Reap it now (it was just killed, so this returns at once). Should the
                // runtime's own reaper get there first, this fails with ECHILD: also fine.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
            }
        }
    }

    /// Make sure a spare exists, spawning it on a blocking thread (never on the caller's).
    /// Does nothing outside a tokio runtime or when a refill is already under way.
    pub fn refill(self: &std::sync::Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        rt.spawn_blocking(move || {
            let has = me.spare.lock().unwrap_or_else(|e| e.into_inner()).is_some();
            if !has {
                match me.spawn() {
                    Ok(s) => *me.spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(s),
                    Err(e) => tracing::debug!(error = %e, "could not launch a spare paddock init"),
                }
            }
            me.filling.store(false, Ordering::Release);
        });
    }
}

impl Drop for Launcher {
    /// A runtime that goes away takes its spare with it (in the daemon the spare would also
    /// exit on its own once the control socket closes; this makes it immediate and reaped).
    fn drop(&mut self) {
        self.end_spare();
    }
}
