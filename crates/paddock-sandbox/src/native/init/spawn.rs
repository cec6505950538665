//! Starting the command from PID 1: stdio (pipes, or a pty from the sandbox's own devpts),
//! a new session, confinement as the last step, then exec with the spec's environment.
//!
//! Everything that allocates happens before `fork`; the child only calls `setsid`, `dup2`,
//! `chdir`, `Prepared::apply` and `execve` (PID 1 is single-threaded, so even allocation in
//! the child would be sound, but there is no need).
//!
//! Owns: the command's process and its stdio fds. Never: leaves an fd of init open across
//! exec (all of init's fds are close-on-exec, and the child marks every fd >= 3
//! close-on-exec again before exec).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::OFlag;

use crate::TtySize;
use crate::native::sys;

/// What PID 1 keeps of a started command.
pub struct Spawned {
    pub pid: i32,
    /// stdout (or the pty master), stderr (none with a tty).
    pub stdout: OwnedFd,
    pub stderr: Option<OwnedFd>,
    /// Where stdin goes: the pipe's write end, or the pty master (dup).
    pub stdin: Option<OwnedFd>,
    /// Readable once the exec happened (EOF) or failed (a report).
    pub exec_report: OwnedFd,
    /// With [`SpawnSpec::hold`]: the gate's write end. The child waits, fully set up and
    /// confined but before exec, until a byte arrives here; closing it unsent makes
    /// the child exit with 125 instead.
    pub gate: Option<OwnedFd>,
}

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// What to start (the run's command, or an `exec` into the running sandbox).
pub struct SpawnSpec<'a> {
    pub command: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub tty: bool,
    pub stdin: bool,
    pub tty_size: Option<TtySize>,
    /// Wait at a gate before exec (see [`Spawned::gate`]).
    pub hold: bool,
}

fn candidates(plan: &SpawnSpec<'_>) -> Result<Vec<CString>, String> {
    let prog = &plan.command[0];
    if prog.contains('/') {
        return Ok(vec![cstr(prog)?]);
    }
    let path = plan
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|d| {
            let d = if d.is_empty() { "." } else { d };
            cstr(&format!("{}/{prog}", d.trim_end_matches('/')))
        })
        .collect()
}

fn os(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Start the command. `confine` is applied in the child right before exec.
pub fn spawn(
    plan: &SpawnSpec<'_>,
    confine: Option<&paddock_confine::Prepared>,
) -> Result<Spawned, String> {
    let argv_c: Vec<CString> = plan
        .command
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<_, _>>()?;
    let env_c: Vec<CString> = plan
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cands = candidates(plan)?;
    let cwd = CString::new(plan.cwd.as_os_str().as_bytes()).map_err(os)?;
    let prog = plan.command[0].clone();

    // stdio
    struct ChildIo {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
        tty: bool,
    }
    let (child_io, parent_out, parent_err, parent_in) = if plan.tty {
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .map_err(|e| format!("opening a pty: {e}"))?;
        nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
        nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
        let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&name)
            .map_err(|e| format!("opening {name}: {e}"))?
            .into();
        let master: OwnedFd = master.into();
        if let Some(sz) = plan.tty_size {
            let _ = sys::set_winsize(master.as_fd(), sz.rows, sz.cols);
        }
        let m2 = master.try_clone().map_err(os)?;
        let s2 = slave.try_clone().map_err(os)?;
        let s3 = slave.try_clone().map_err(os)?;
        (
            ChildIo {
                stdin: slave,
                stdout: s2,
                stderr: s3,
                tty: true,
            },
            master,
            None,
            Some(m2),
        )
    } else {
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os)?;
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os)?;
        let (stdin_child, stdin_parent) = if plan.stdin {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os)?;
            (r, Some(w))
        } else {
            let null: OwnedFd = std::fs::File::open("/dev/null").map_err(os)?.into();
            (null, None)
        };
        (
            ChildIo {
                stdin: stdin_child,
                stdout: out_w,
                stderr: err_w,
                tty: false,
            },
            out_r,
            Some(err_r),
            stdin_parent,
        )
    };
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os)?;
    let gate = if plan.hold {
        Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os)?)
    } else {
        None
    };

    // SAFETY: PID 1 is single-threaded; the child only runs the code below and then execs
    // or _exits.
    let pid = unsafe { sys::fork() }.map_err(|e| format!("fork: {e}"))?;
    if pid == 0 {
        child(
            &child_io.stdin,
            &child_io.stdout,
            &child_io.stderr,
            child_io.tty,
            &cwd,
            &argv,
            &envp,
            &cands,
            &prog,
            confine,
            &report_w,
            plan.cwd,
            gate.as_ref(),
        );
    }
    drop(child_io);
    drop(report_w);
    let gate = gate.map(|(_, w)| w);
    for fd in [
        Some(&parent_out),
        parent_err.as_ref(),
        parent_in.as_ref(),
        Some(&report_r),
    ]
    .into_iter()
    .flatten()
    {
        let _ = sys::set_nonblocking(fd.as_fd());
    }
    Ok(Spawned {
        pid,
        stdout: parent_out,
        stderr: parent_err,
        stdin: parent_in,
        exec_report: report_r,
        gate,
    })
}

/// Report an exec failure: a message on the command's stderr, the code and reason on the
/// report pipe, and exit with the shell's code.
fn fail(report: &OwnedFd, code: i32, reason: &str) -> ! {
    sys::write_all_raw(2, format!("paddock: {reason}\n").as_bytes());
    sys::write_all_raw(report.as_raw_fd(), format!("{code}:{reason}").as_bytes());
    sys::exit_now(code)
}

#[allow(clippy::too_many_arguments)]
fn child(
    stdin: &OwnedFd,
    stdout: &OwnedFd,
    stderr: &OwnedFd,
    tty: bool,
    cwd: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    cands: &[CString],
    prog: &str,
    confine: Option<&paddock_confine::Prepared>,
    report: &OwnedFd,
    cwd_path: &Path,
    gate: Option<&(OwnedFd, OwnedFd)>,
) -> ! {
    if nix::unistd::setsid().is_err() {
        fail(report, 126, "cannot start a new session");
    }
    if tty && sys::set_controlling_tty(stdin.as_raw_fd()).is_err() {
        fail(report, 126, "cannot set the controlling terminal");
    }
    // init keeps 0/1/2 open (on /dev/null or its stderr), so none of these fds is 0/1/2
    // itself and the order of the dup2s does not matter.
    for (fd, target) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
        if sys::dup_onto(fd.as_fd(), target).is_err() {
            sys::exit_now(126);
        }
    }
    sys::reset_signals_in_child();
    if nix::unistd::chdir(cwd.as_c_str()).is_err() {
        fail(
            report,
            126,
            &format!(
                "cannot change to the working directory {}",
                cwd_path.display()
            ),
        );
    }
    let _ = sys::cloexec_from(3);
    // Confined before the gate: the held command waits with no capability, under Landlock
    // and seccomp (reading the gate and exec'ing are all it does next), so a release costs
    // only the wake-up.
    if let Some(c) = confine
        && let Err(e) = c.apply()
    {
        fail(report, 126, &format!("cannot confine the command: {e}"));
    }
    if let Some((g, w)) = gate {
        // Held until the daemon has the run's network ready. EOF means PID 1 gave up: for
        // that the child's own copy of the write end must be gone. The child never returns,
        // so closing the raw fd here cannot be followed by a second close.
        sys::close_raw(w.as_raw_fd());
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(g.as_fd(), &mut b) {
                Ok(1) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                _ => fail(report, 125, "the sandbox ended before the command started"),
            }
        }
    }
    let mut saw_eacces = false;
    let mut last = libc::ENOENT;
    for cand in cands {
        let errno = sys::execve(cand, argv, envp);
        match errno {
            libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
            libc::EACCES => saw_eacces = true,
            e => {
                last = e;
                break;
            }
        }
    }
    if saw_eacces || last == libc::EACCES {
        fail(report, 126, &format!("permission denied: {prog}"));
    }
    if last == libc::ENOENT {
        fail(report, 127, &format!("command not found: {prog}"));
    }
    let e = std::io::Error::from_raw_os_error(last);
    fail(report, 126, &format!("cannot execute {prog}: {e}"))
}

use std::os::unix::fs::OpenOptionsExt;
