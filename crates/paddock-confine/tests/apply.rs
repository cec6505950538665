//! Real confinement tests: each one forks, applies the confinement in the child, and checks
//! from inside what the kernel now refuses and still allows.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use paddock_confine::{ConfineReport, Confinement, LandlockState, fsrules};

/// How a forked child ended.
#[derive(Debug)]
enum Outcome {
    Exited(i32, String),
    Signaled(i32),
}

/// Fork, run `f` in the child (its error text goes back through a pipe), wait with a timeout.
fn in_child(f: impl FnOnce() -> Result<(), String>) -> Outcome {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array we pass.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fork; the child only runs `f` and then _exits, never returning into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: closing the read end we own in the child.
        unsafe { libc::close(fds[0]) };
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                // SAFETY: writing a live buffer to the pipe's write end.
                unsafe { libc::write(fds[1], msg.as_ptr().cast(), msg.len()) };
                1
            }
            Err(_) => 2,
        };
        // SAFETY: terminate the child without running the harness's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing the write end we own in the parent.
    unsafe { libc::close(fds[1]) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own child that timed out.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: we own the read end.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut msg = String::new();
    let _ = pipe.read_to_string(&mut msg);
    if libc::WIFSIGNALED(status) {
        Outcome::Signaled(libc::WTERMSIG(status))
    } else {
        Outcome::Exited(libc::WEXITSTATUS(status), msg)
    }
}

fn assert_ok(o: Outcome) {
    match o {
        Outcome::Exited(0, _) => {}
        Outcome::Exited(code, msg) => panic!("child failed ({code}): {msg}"),
        Outcome::Signaled(sig) => panic!("child killed by signal {sig}"),
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `rc` must be -1 with `want` errno.
fn expect_err(what: &str, rc: libc::c_long, want: i32) -> Result<(), String> {
    let e = errno();
    if rc == -1 && e == want {
        Ok(())
    } else {
        Err(format!("{what}: rc={rc} errno={e}, wanted errno {want}"))
    }
}

fn status_field(name: &str) -> Result<String, String> {
    let s = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    s.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .ok_or_else(|| format!("{name} missing"))
}

fn check_report(r: &ConfineReport, root: bool) -> Result<(), String> {
    if !r.seccomp || r.seccomp_rules == 0 || !r.no_new_privs || !r.capabilities_dropped {
        return Err(format!("report: {r:?}"));
    }
    if fsrules::kernel_abi() > 0 && !matches!(r.landlock, LandlockState::Enforced { .. }) {
        return Err(format!("landlock not enforced: {r:?}"));
    }
    if root && !r.bounding_set_cleared {
        return Err(format!("bounding set kept as root: {r:?}"));
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A world-writable temp dir (so an unprivileged child fails only because of Landlock).
fn open_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    d
}

fn drop_to_nobody() -> Result<(), String> {
    // SAFETY: plain integer syscalls changing our own (child's) ids.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(65534, 65534, 65534) != 0
            || libc::setresuid(65534, 65534, 65534) != 0
        {
            return Err(format!("dropping to nobody: errno {}", errno()));
        }
    }
    Ok(())
}

/// Everything the deny table promises, checked from inside the confined child.
fn denied_syscalls_fail() -> Result<(), String> {
    let src = CString::new("none").unwrap();
    let dst = CString::new("/tmp").unwrap();
    let fstype = CString::new("tmpfs").unwrap();
    // SAFETY: raw syscalls with valid or null pointers to locals; any that the filter
    // unexpectedly allowed act only on this throwaway child (same for the blocks below).
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    expect_err("mount", rc.into(), libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    expect_err("unshare(CLONE_NEWUSER)", rc.into(), libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
    expect_err("unshare(CLONE_NEWNS)", rc.into(), libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    expect_err("ptrace", rc, libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe {
        libc::syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0)
    };
    expect_err("keyctl", rc, libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0) };
    expect_err("bpf", rc, libc::EPERM)?;
    let mut params = [0u8; 120];
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) };
    expect_err("io_uring_setup", rc, libc::EPERM)?;
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
    expect_err("clock_settime", rc.into(), libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0) };
    expect_err("perf_event_open", rc, libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::syscall(libc::SYS_userfaultfd, 0) };
    expect_err("userfaultfd", rc, libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::syscall(libc::SYS_setns, 0, 0) };
    expect_err("setns", rc, libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0) };
    expect_err("fsopen", rc, libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSTI, c"x".as_ptr()) };
    expect_err("ioctl(TIOCSTI)", rc.into(), libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) };
    expect_err("personality(ADDR_NO_RANDOMIZE)", rc.into(), libc::EPERM)?;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::personality(0xffff_ffff) };
    if rc == -1 {
        return Err("personality query must stay allowed".into());
    }

    // clone3: ENOSYS, whatever the flags (here: none, a plain fork).
    let mut args = [0u64; 11]; // struct clone_args, v2 size (88 bytes)
    args[4] = libc::SIGCHLD as u64; // exit_signal
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), 88usize) };
    if rc == 0 {
        // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
        unsafe { libc::_exit(0) };
    }
    expect_err("clone3", rc, libc::ENOSYS)?;

    // clone with a namespace flag: EPERM. If it were allowed the new child exits at once.
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc == 0 {
        // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
        unsafe { libc::_exit(0) };
    }
    expect_err("clone(CLONE_NEWNS)", rc, libc::EPERM)?;

    #[cfg(target_arch = "x86_64")]
    {
        // x32 ABI number of getpid.
        // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
        let rc = unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) };
        expect_err("x32 getpid", rc, libc::EPERM)?;
    }

    // A plain fork (glibc: clone without namespace flags) still works.
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
        unsafe { libc::_exit(7) };
    }
    if pid < 0 {
        return Err(format!("fork failed: errno {}", errno()));
    }
    let mut st = 0;
    // SAFETY: raw syscall with integer args or pointers to live locals, in a throwaway forked child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 7 {
        return Err(format!("forked child status {st}"));
    }
    // Threads still work (std uses clone3 -> ENOSYS -> clone fallback in glibc).
    let t = std::thread::spawn(|| 41 + 1)
        .join()
        .map_err(|_| "thread panicked")?;
    if t != 42 {
        return Err("thread".into());
    }
    Ok(())
}

fn caps_and_nnp_are_clear(expect_bounding_empty: bool) -> Result<(), String> {
    for f in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        let v = status_field(f)?;
        if u64::from_str_radix(&v, 16).map_err(|e| e.to_string())? != 0 {
            return Err(format!("{f} {v}"));
        }
    }
    let bnd = u64::from_str_radix(&status_field("CapBnd:")?, 16).map_err(|e| e.to_string())?;
    if expect_bounding_empty && bnd != 0 {
        return Err(format!("CapBnd {bnd:x}"));
    }
    if status_field("NoNewPrivs:")? != "1" {
        return Err("NoNewPrivs not set".into());
    }
    if status_field("Seccomp:")? != "2" {
        return Err("Seccomp not in filter mode".into());
    }
    Ok(())
}

fn landlock_enforced(inside: &Path, outside: &Path) -> Result<(), String> {
    std::fs::write(inside.join("ok.txt"), b"hello").map_err(|e| format!("write inside: {e}"))?;
    std::fs::create_dir(inside.join("sub")).map_err(|e| format!("mkdir inside: {e}"))?;
    std::fs::rename(inside.join("ok.txt"), inside.join("sub/moved.txt"))
        .map_err(|e| format!("rename inside: {e}"))?;
    std::fs::remove_file(inside.join("sub/moved.txt")).map_err(|e| format!("rm inside: {e}"))?;
    std::fs::read_to_string("/proc/self/status").map_err(|e| format!("read: {e}"))?;
    std::fs::write("/dev/null", b"x").map_err(|e| format!("write /dev/null: {e}"))?;
    if fsrules::kernel_abi() == 0 {
        return Ok(());
    }
    match std::fs::write(outside.join("nope.txt"), b"x") {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        other => return Err(format!("write outside: {other:?}")),
    }
    match std::fs::create_dir(outside.join("nope")) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        other => return Err(format!("mkdir outside: {other:?}")),
    }
    Ok(())
}

fn confinement(inside: &Path) -> Confinement {
    Confinement {
        writable_paths: vec![
            inside.to_path_buf(),
            PathBuf::from("/nonexistent/paddock-test"),
        ],
        ..Confinement::default()
    }
}

#[test]
fn root_child_is_confined() {
    let inside = open_dir();
    let outside = open_dir();
    let prepared = confinement(inside.path()).prepare().expect("prepare");
    assert_eq!(
        prepared.skipped_paths(),
        &[PathBuf::from("/nonexistent/paddock-test")]
    );
    let root = is_root();
    assert_ok(in_child(|| {
        let report = prepared.apply().map_err(|e| format!("apply: {e}"))?;
        check_report(&report, root)?;
        caps_and_nnp_are_clear(root)?;
        denied_syscalls_fail()?;
        landlock_enforced(inside.path(), outside.path())
    }));
}

#[test]
fn unprivileged_child_is_confined() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to an unprivileged uid");
        return;
    }
    let inside = open_dir();
    let outside = open_dir();
    let prepared = confinement(inside.path()).prepare().expect("prepare");
    assert_ok(in_child(|| {
        drop_to_nobody()?;
        let report = prepared.apply().map_err(|e| format!("apply: {e}"))?;
        check_report(&report, false)?;
        // Without CAP_SETPCAP the bounding set cannot be emptied; that is reported.
        if report.bounding_set_cleared || !report.is_degraded() {
            return Err(format!(
                "expected a kept bounding set to be reported: {report:?}"
            ));
        }
        caps_and_nnp_are_clear(false)?;
        denied_syscalls_fail()?;
        landlock_enforced(inside.path(), outside.path())
    }));
}

#[test]
fn root_keeping_caps_after_setuid_still_drops_everything() {
    // The rootless sandbox case: non-zero uid but holding capabilities (as in a user namespace).
    if !is_root() {
        return;
    }
    let inside = open_dir();
    let prepared = confinement(inside.path()).prepare().expect("prepare");
    assert_ok(in_child(|| {
        // SAFETY: prctl/setresuid on our own child with integer arguments.
        unsafe {
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
            if libc::setresuid(1000, 1000, 1000) != 0 {
                return Err("setresuid".into());
            }
        }
        // Re-raise the effective set from the kept permitted set.
        let report = prepared.apply().map_err(|e| format!("apply: {e}"))?;
        if !report.bounding_set_cleared || !report.securebits_locked {
            return Err(format!("{report:?}"));
        }
        caps_and_nnp_are_clear(true)
    }));
}

#[test]
fn exec_after_apply_works_and_leaks_no_ruleset_fd() {
    let inside = open_dir();
    let outside = open_dir();
    let prepared = confinement(inside.path()).prepare().expect("prepare");
    let script = format!(
        "echo x > /dev/null && echo y > {i}/f && ! (echo z > {o}/f) 2>/dev/null && \
         for f in /proc/self/fd/*; do t=$(readlink $f); case $t in *landlock*) exit 9;; esac; done",
        i = inside.path().display(),
        o = outside.path().display(),
    );
    let sh = CString::new("/bin/sh").unwrap();
    let c = CString::new("-c").unwrap();
    let s = CString::new(script).unwrap();
    let argv = [sh.as_ptr(), c.as_ptr(), s.as_ptr(), std::ptr::null()];
    let o = in_child(|| {
        prepared.apply().map_err(|e| format!("apply: {e}"))?;
        // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call.
        unsafe { libc::execv(sh.as_ptr(), argv.as_ptr()) };
        Err(format!("execv: errno {}", errno()))
    });
    match o {
        Outcome::Exited(0, _) => {}
        other => panic!("confined shell failed: {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(inside.path().join("f")).unwrap(),
        "y\n"
    );
    assert!(!outside.path().join("f").exists());
}

#[test]
fn disabled_parts_are_reported() {
    let prepared = Confinement {
        seccomp: false,
        landlock: false,
        ..Confinement::default()
    }
    .prepare()
    .expect("prepare");
    assert_ok(in_child(|| {
        let r = prepared.apply().map_err(|e| format!("apply: {e}"))?;
        if r.seccomp || r.landlock != LandlockState::Disabled || !r.no_new_privs {
            return Err(format!("{r:?}"));
        }
        // mount is refused by missing capabilities even without seccomp.
        if status_field("Seccomp:")? != "0" {
            return Err("seccomp installed although disabled".into());
        }
        Ok(())
    }));
}

/// A 32-bit `int 0x80` syscall must not bypass the filter: the arch guard kills the process.
#[cfg(target_arch = "x86_64")]
#[test]
fn i386_syscall_is_killed() {
    fn int80_getpid() -> i64 {
        let mut ret: i64 = 20; // __NR_getpid on i386
        // SAFETY: i386 getpid via the int 0x80 gate: no memory arguments; the kernel
        // clobbers r8-r11 on this path in 64-bit mode.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inout("rax") ret,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack)
            );
        }
        ret
    }
    // Without a filter: is IA32 emulation there at all?
    match in_child(|| {
        // SAFETY: getpid has no preconditions.
        let pid = i64::from(unsafe { libc::getpid() });
        if int80_getpid() == pid {
            Ok(())
        } else {
            Err("no ia32".into())
        }
    }) {
        Outcome::Exited(0, _) => {}
        other => {
            eprintln!("skipped: IA32 emulation unavailable ({other:?}); nothing to bypass with");
            return;
        }
    }
    let prepared = Confinement::default().prepare().expect("prepare");
    let o = in_child(|| {
        prepared.apply().map_err(|e| format!("apply: {e}"))?;
        int80_getpid();
        Err("int 0x80 survived the filter".into())
    });
    match o {
        Outcome::Signaled(sig) if sig == libc::SIGSYS => {}
        other => panic!("i386 syscall not killed: {other:?}"),
    }
}

#[test]
fn rootless_child_in_a_user_namespace_is_confined() {
    // The rootless sandbox path: an unprivileged user creates a user namespace, is root with
    // full capabilities inside it, and applies the confinement there.
    if !is_root() {
        return;
    }
    let inside = open_dir();
    let outside = open_dir();
    let prepared = confinement(inside.path()).prepare().expect("prepare");
    assert_ok(in_child(|| {
        drop_to_nobody()?;
        // SAFETY: integer prctl/unshare in the throwaway child.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(format!("unshare(CLONE_NEWUSER): errno {}", errno()));
            }
        }
        std::fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
        std::fs::write("/proc/self/uid_map", "0 65534 1").map_err(|e| format!("uid_map: {e}"))?;
        std::fs::write("/proc/self/gid_map", "0 65534 1").map_err(|e| format!("gid_map: {e}"))?;
        if status_field("CapEff:")? == "0000000000000000" {
            return Err("expected full capabilities inside the user namespace".into());
        }
        let report = prepared.apply().map_err(|e| format!("apply: {e}"))?;
        check_report(&report, true)?;
        if !report.securebits_locked || report.is_degraded() {
            return Err(format!("{report:?}"));
        }
        caps_and_nnp_are_clear(true)?;
        denied_syscalls_fail()?;
        landlock_enforced(inside.path(), outside.path())
    }));
}
