//! `paddock init`: the process side of the native runtime.
//!
//! Stage 1 is `init_exe init` as spawned by the runtime (a fresh, single-threaded process
//! with the control socket as stdin). It reads the [`Prelude`] (sent at launch, which may
//! be long before any run: see `launch`), unshares user+mount+net+uts+ipc+pid namespaces,
//! writes single-line uid/gid maps (`setgroups` denied), and creates PID 1 with
//! `clone(CLONE_PARENT)` so that PID 1 is a direct child of the daemon (which can then wait
//! for it with a pidfd and get its real status, without being a subreaper). It sends PID
//! 1's pid and the netns fd to the daemon and exits.
//!
//! Stage 2 ([`pid1`]) is PID 1 of the sandbox: it builds the generic part of the root,
//! then waits for the run's [`super::plan::InitPlan`], joins the run's cgroups, creates its
//! cgroup namespace and finishes the sandbox for that run.
//!
//! Owns: everything that runs inside the sandbox's namespaces before the command. Never:
//! writes files other than its control socket and, only when no daemon acknowledged the
//! exit, `exit.json` (see `pid1`).

mod mounts;
mod pid1;
mod spawn;

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;

use super::plan::Prelude;
use super::proto::{self, Up};
use super::sys;

/// A setup failure, reported to the daemon as `Up::SetupFailed`.
#[derive(Debug)]
pub struct SetupError {
    pub step: String,
    pub message: String,
}

/// The fd on which `paddock init` receives its control socket (its stdin).
const CONTROL_FD: i32 = 0;

/// Entry point of `paddock init` (see `native::init_main`).
pub fn main() -> i32 {
    // fd 3 must be a socket handed to us by the runtime; anything else means a human ran
    // the hidden subcommand.
    if !sys::fd_is_socket(CONTROL_FD) || !sys::is_seqpacket(CONTROL_FD) {
        eprintln!("paddock init is internal: it is started by the paddock daemon to run a sandbox");
        return 2;
    }
    // Move the socket off stdin (close-on-exec) and put /dev/null there.
    let ctl = match sys::dup_cloexec(CONTROL_FD) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("paddock init: {e}");
            return 2;
        }
    };
    // 0 becomes /dev/null; 1 and 2 must be open too (fds PID 1 creates later are then
    // never 0/1/2, which the command's stdio setup relies on).
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = sys::dup_onto(null.as_fd(), CONTROL_FD);
        for fd in [1, 2] {
            if !sys::fd_is_open(fd) {
                let _ = sys::dup_onto(null.as_fd(), fd);
            }
        }
    }
    match stage1(&ctl) {
        Ok(()) => 0,
        Err(e) => {
            let msg = proto::encode_json(&Up::SetupFailed {
                step: e.step,
                message: e.message,
            });
            let _ = sys::send_msg(ctl.as_fd(), &msg, None, false);
            1
        }
    }
}

fn setup_err(step: &str, what: &str, e: impl std::fmt::Display) -> SetupError {
    SetupError {
        step: step.into(),
        message: format!("{what}: {e}"),
    }
}

/// Read one tagged JSON message from the control socket, blocking.
pub(super) fn recv_json<T: serde::de::DeserializeOwned>(
    ctl: &OwnedFd,
    step: &str,
    what: &str,
) -> Result<Option<T>, SetupError> {
    let mut buf = vec![0u8; 8 << 20];
    let (n, _) = sys::recv_msg(ctl.as_fd(), &mut buf, false)
        .map_err(|e| setup_err(step, &format!("reading the {what}"), e))?;
    if n == 0 {
        return Ok(None);
    }
    if buf[0] != proto::TAG_JSON {
        return Err(setup_err(
            step,
            &format!("reading the {what}"),
            "not a JSON message",
        ));
    }
    serde_json::from_slice(&buf[1..n])
        .map(Some)
        .map_err(|e| setup_err(step, &format!("parsing the {what}"), e))
}

fn stage1(ctl: &OwnedFd) -> Result<(), SetupError> {
    let step = "creating namespaces";
    let Some(prelude) = recv_json::<Prelude>(ctl, step, "prelude")? else {
        // The runtime went away before using this (spare) stage 1.
        return Ok(());
    };

    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    // No cgroup namespace yet: PID 1 creates it once it has joined the run's cgroups,
    // which are known only with the plan.
    nix::sched::unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| {
        let hint = if e == nix::errno::Errno::EPERM || e == nix::errno::Errno::ENOSPC {
            " (are unprivileged user namespaces disabled? see kernel.unprivileged_userns_clone / user.max_user_namespaces)"
        } else {
            ""
        };
        setup_err(step, &format!("unshare{hint}"), e)
    })?;
    std::fs::write("/proc/self/setgroups", "deny")
        .map_err(|e| setup_err(step, "writing setgroups", e))?;
    std::fs::write(
        "/proc/self/uid_map",
        format!("{} {euid} 1\n", prelude.uid_inside),
    )
    .map_err(|e| setup_err(step, "writing uid_map", e))?;
    std::fs::write(
        "/proc/self/gid_map",
        format!("{} {egid} 1\n", prelude.gid_inside),
    )
    .map_err(|e| setup_err(step, "writing gid_map", e))?;
    let netns: OwnedFd = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| setup_err(step, "opening the network namespace", e))?
        .into();

    // SAFETY: stage 1 is a freshly exec'd single-threaded process (no thread was spawned).
    let pid = unsafe { sys::clone_parent() }.map_err(|e| setup_err(step, "creating PID 1", e))?;
    if pid == 0 {
        drop(netns);
        let code = pid1::run(prelude, ctl);
        std::process::exit(code);
    }
    let msg = proto::encode_json(&Up::Stage1 { pid });
    sys::send_msg(ctl.as_fd(), &msg, Some(netns.as_fd()), false)
        .map_err(|e| setup_err(step, "reporting PID 1", e))?;
    Ok(())
}
