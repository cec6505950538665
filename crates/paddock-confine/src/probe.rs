//! Kernel and host feature probes for `paddock doctor`.
//!
//! Owns: finding out, quickly and without side effects on the host, what this machine can do:
//! user/mount/pid/net namespaces and overlayfs (tested for real in short-lived forked
//! children), seccomp and Landlock support, cgroup version/controllers/writability, a
//! reachable Docker engine, gVisor's `runsc`. Every failure carries a concrete fix.
//!
//! Never: changes host state (namespace and mount tests happen in a child that exits; the
//! overlay test mounts a private tmpfs inside its own mount namespace), installs anything, or
//! blocks without a bound: children and sockets have short timeouts, and all probes run
//! concurrently so the whole set stays well under 100 ms on a healthy machine.
//!
//! Forked children only make raw syscalls (no allocation) so probing from a multi-threaded
//! daemon is safe; everything they need (paths, map strings) is prepared before the fork.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long a probe child may run before it is killed and reported as timed out.
const CHILD_TIMEOUT: Duration = Duration::from_millis(80);
/// Connect/read/write bound for the Docker socket.
const SOCKET_TIMEOUT: Duration = Duration::from_millis(60);

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Works.
    Ok,
    /// Missing or degraded, but paddock can still run (with less isolation or fewer runtimes).
    Warn,
    /// Missing and needed for the native sandbox.
    Fail,
}

/// One line of `paddock doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier (e.g. "userns", "landlock", "cgroup").
    pub id: &'static str,
    /// Human title.
    pub title: String,
    /// Ok, Warn or Fail.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// A concrete fix (command to run, package to install), when not Ok.
    pub fix: Option<String>,
}

impl Check {
    fn ok(id: &'static str, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            id,
            title: title.into(),
            status: CheckStatus::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        id: &'static str,
        status: CheckStatus,
        title: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            id,
            title: title.into(),
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Run every probe (concurrently) and return all checks, in a stable order.
pub fn probe_all() -> Vec<Check> {
    let probes: [fn() -> Vec<Check>; 8] = [
        probe_userns,
        probe_namespaces,
        probe_overlayfs,
        probe_seccomp,
        probe_landlock,
        probe_cgroup,
        probe_docker,
        probe_runsc,
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = probes.iter().map(|p| s.spawn(*p)).collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Check::bad(
                        "probe",
                        CheckStatus::Warn,
                        "Probe",
                        "a probe panicked",
                        "please report this with the output of `paddock doctor --json`",
                    )]
                })
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Forked children

/// Where a child test stopped: the step name index and errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failure {
    step: u32,
    errno: i32,
}

#[derive(Debug)]
enum ChildResult {
    Passed,
    Failed(Failure),
    Crashed(String),
    TimedOut,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn err_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

/// Turn a raw return value into a step result.
fn step(n: u32, rc: libc::c_long) -> Result<(), Failure> {
    if rc < 0 {
        Err(Failure {
            step: n,
            errno: errno(),
        })
    } else {
        Ok(())
    }
}

/// Fork, run `f` in the child (raw syscalls only), and wait at most [`CHILD_TIMEOUT`].
fn run_child(f: impl FnOnce() -> Result<(), Failure>) -> ChildResult {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return ChildResult::Crashed(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: fork; the child runs only `f` (raw syscalls) and _exits without returning.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the fds we just created.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        return ChildResult::Crashed(format!("fork: {e}"));
    }
    if pid == 0 {
        let code = match f() {
            Ok(()) => 0,
            Err(Failure { step, errno }) => {
                let buf = [step.to_ne_bytes(), errno.to_ne_bytes()];
                // SAFETY: writing 8 bytes from a live stack buffer to our pipe.
                unsafe { libc::write(fds[1], buf.as_ptr().cast(), 8) };
                1
            }
        };
        // SAFETY: leave the child immediately, without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    // SAFETY: we own the read end from here on.
    let mut pipe = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };

    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut status = 0;
    let mut nap = Duration::from_micros(100);
    let reaped = loop {
        // SAFETY: waiting for our own child, non-blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break true;
        }
        if r < 0 {
            // ECHILD: someone else (a SIGCHLD handler) reaped it.
            return ChildResult::Crashed(format!("waitpid: {}", io::Error::last_os_error()));
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
    };
    if !reaped {
        // SAFETY: killing our own child that overran its deadline.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Reap it if it dies promptly; a child stuck in uninterruptible sleep is left behind
        // rather than hanging the probe.
        for _ in 0..20 {
            // SAFETY: as above.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        return ChildResult::TimedOut;
    }
    if libc::WIFSIGNALED(status) {
        return ChildResult::Crashed(format!("killed by signal {}", libc::WTERMSIG(status)));
    }
    match libc::WEXITSTATUS(status) {
        0 => ChildResult::Passed,
        _ => {
            let mut buf = [0u8; 8];
            match pipe.read_exact(&mut buf) {
                Ok(()) => ChildResult::Failed(Failure {
                    step: u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]),
                    errno: i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]),
                }),
                Err(_) => ChildResult::Crashed("child failed without a report".into()),
            }
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Child step: become `nobody` (only meaningful when running as root).
fn become_nobody() -> Result<(), Failure> {
    // SAFETY: integer-only id syscalls in the probe child.
    unsafe {
        step(90, libc::setgroups(0, std::ptr::null()).into())?;
        step(91, libc::setresgid(65534, 65534, 65534).into())?;
        step(92, libc::setresuid(65534, 65534, 65534).into())?;
    }
    Ok(())
}

/// Child step: unshare, naming the step.
fn unshare(n: u32, flags: libc::c_int) -> Result<(), Failure> {
    // SAFETY: unshare takes only an integer.
    step(n, unsafe { libc::unshare(flags) }.into())
}

/// Child step: write a prepared string to a prepared path (for uid_map and friends).
fn write_file(n: u32, path: &CString, data: &[u8]) -> Result<(), Failure> {
    // SAFETY: `path` is a valid C string; the fd is ours and closed right after.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        step(n, fd.into())?;
        let w = libc::write(fd, data.as_ptr().cast(), data.len());
        let e = errno();
        libc::close(fd);
        if w < 0 {
            return Err(Failure { step: n, errno: e });
        }
    }
    Ok(())
}

/// Strings a rootless child needs to map itself to root in a fresh user namespace.
struct IdMaps {
    uid_map_path: CString,
    gid_map_path: CString,
    setgroups_path: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl IdMaps {
    fn for_current_user() -> Self {
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        IdMaps {
            uid_map_path: CString::from(c"/proc/self/uid_map"),
            gid_map_path: CString::from(c"/proc/self/gid_map"),
            setgroups_path: CString::from(c"/proc/self/setgroups"),
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
        }
    }

    /// Child steps 10-12.
    fn apply(&self) -> Result<(), Failure> {
        // A process whose ids changed without an exec is not dumpable, which makes its
        // /proc/self files root-owned; re-enable it in this throwaway child (step 9).
        // SAFETY: integer-only prctl.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1 as libc::c_ulong) };
        step(9, rc.into())?;
        write_file(10, &self.setgroups_path, b"deny")?;
        write_file(11, &self.uid_map_path, &self.uid_map)?;
        write_file(12, &self.gid_map_path, &self.gid_map)
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_int(path: &str) -> Option<i64> {
    read_trimmed(path)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// User namespaces

const USERNS_STEPS: &[(u32, &str)] = &[
    (1, "unshare(CLONE_NEWUSER)"),
    (2, "unshare(CLONE_NEWNS) inside the new user namespace"),
    (9, "prctl(PR_SET_DUMPABLE)"),
    (10, "writing /proc/self/setgroups"),
    (11, "writing /proc/self/uid_map"),
    (12, "writing /proc/self/gid_map"),
    (90, "setgroups"),
    (91, "setresgid(nobody)"),
    (92, "setresuid(nobody)"),
];

fn step_name(steps: &[(u32, &'static str)], n: u32) -> &'static str {
    steps
        .iter()
        .find(|(k, _)| *k == n)
        .map(|(_, v)| *v)
        .unwrap_or("setup")
}

fn describe(r: &ChildResult, steps: &[(u32, &'static str)]) -> String {
    match r {
        ChildResult::Passed => "works".into(),
        ChildResult::Failed(f) => {
            format!("{} failed: {}", step_name(steps, f.step), err_text(f.errno))
        }
        ChildResult::Crashed(m) => format!("test child failed: {m}"),
        ChildResult::TimedOut => format!("test child did not finish within {CHILD_TIMEOUT:?}"),
    }
}

/// The full user-namespace test: create one, map ourselves, and use a capability in it (an
/// AppArmor-restricted namespace lets the unshare succeed but strips the capabilities).
fn userns_child(maps: &IdMaps, as_nobody: bool) -> Result<(), Failure> {
    if as_nobody {
        become_nobody()?;
    }
    unshare(1, libc::CLONE_NEWUSER)?;
    if !as_nobody {
        maps.apply()?;
    }
    unshare(2, libc::CLONE_NEWNS)
}

fn userns_fix() -> String {
    let mut fixes = Vec::new();
    if read_int("/proc/sys/user/max_user_namespaces") == Some(0) {
        fixes.push(
            "sudo sysctl -w user.max_user_namespaces=15000 (persist: echo user.max_user_namespaces=15000 | sudo tee /etc/sysctl.d/90-paddock.conf)"
                .to_string(),
        );
    }
    if read_int("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        fixes.push(
            "sudo sysctl -w kernel.unprivileged_userns_clone=1 (persist in /etc/sysctl.d/90-paddock.conf)"
                .to_string(),
        );
    }
    if read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/usr/local/bin/paddock".into());
        fixes.push(format!(
            "AppArmor restricts unprivileged user namespaces (Ubuntu >= 23.10): allow them for paddock with printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile paddock {exe} flags=(unconfined) {{\\n  userns,\\n}}\\n' | sudo tee /etc/apparmor.d/paddock && sudo apparmor_parser -r /etc/apparmor.d/paddock (or, system-wide: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)"
        ));
    }
    if fixes.is_empty() {
        fixes.push(
            "the kernel needs CONFIG_USER_NS=y; inside a container, user namespaces are usually blocked by its seccomp profile (run paddock on the host, or as root)"
                .to_string(),
        );
    }
    fixes.join("; ")
}

fn userns_knobs() -> String {
    let show = |p: &str| read_trimmed(p).unwrap_or_else(|| "n/a".into());
    format!(
        "max_user_namespaces={}, unprivileged_userns_clone={}, apparmor_restrict_unprivileged_userns={}",
        show("/proc/sys/user/max_user_namespaces"),
        show("/proc/sys/kernel/unprivileged_userns_clone"),
        show("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
    )
}

fn probe_userns() -> Vec<Check> {
    let maps = IdMaps::for_current_user();
    let root = is_root();
    let knobs = userns_knobs();
    let current = run_child(|| userns_child(&maps, false));
    let who = if root { "root" } else { "the current user" };
    let mut out = Vec::new();
    let title = format!("User namespaces (as {who})");
    out.push(match &current {
        ChildResult::Passed => Check::ok("userns", title, format!("works; {knobs}")),
        r => Check::bad(
            "userns",
            CheckStatus::Fail,
            title,
            format!("{}; {knobs}", describe(r, USERNS_STEPS)),
            userns_fix(),
        ),
    });
    let unpriv = if root {
        run_child(|| userns_child(&maps, true))
    } else {
        current
    };
    let title = "Unprivileged user namespaces (rootless sandboxes)";
    out.push(match &unpriv {
        ChildResult::Passed => Check::ok("userns.unprivileged", title, "works"),
        r => Check::bad(
            "userns.unprivileged",
            // As root, paddock itself does not need them; as a user it does.
            if root {
                CheckStatus::Warn
            } else {
                CheckStatus::Fail
            },
            title,
            format!("{}; {knobs}", describe(r, USERNS_STEPS)),
            userns_fix(),
        ),
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Mount, pid, net (and uts/ipc/cgroup) namespaces

const NS_STEPS: &[(u32, &str)] = &[
    (1, "unshare(CLONE_NEWUSER)"),
    (9, "prctl(PR_SET_DUMPABLE)"),
    (10, "writing /proc/self/setgroups"),
    (11, "writing /proc/self/uid_map"),
    (12, "writing /proc/self/gid_map"),
    (20, "unshare(CLONE_NEWNS)"),
    (21, "making mounts private"),
    (30, "unshare(CLONE_NEWPID)"),
    (31, "fork into the new pid namespace"),
    (32, "first process is not pid 1"),
    (40, "unshare(CLONE_NEWNET)"),
    (41, "socket()"),
    (42, "bringing up lo"),
    (50, "unshare(CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWCGROUP)"),
];

/// As non-root, namespaces are created inside a fresh user namespace (as the sandbox does).
fn enter_userns_if_needed(root: bool, maps: &IdMaps) -> Result<(), Failure> {
    if !root {
        unshare(1, libc::CLONE_NEWUSER)?;
        maps.apply()?;
    }
    Ok(())
}

fn mountns_child(root: bool, maps: &IdMaps) -> Result<(), Failure> {
    enter_userns_if_needed(root, maps)?;
    unshare(20, libc::CLONE_NEWNS)?;
    // SAFETY: mount with static C strings / nulls; only changes propagation in our own ns.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    step(21, rc.into())
}

fn pidns_child(root: bool, maps: &IdMaps) -> Result<(), Failure> {
    enter_userns_if_needed(root, maps)?;
    unshare(30, libc::CLONE_NEWPID)?;
    // SAFETY: fork in a single-threaded child; the grandchild only calls getpid and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe { libc::_exit(if libc::getpid() == 1 { 0 } else { 1 }) };
    }
    step(31, pid.into())?;
    let mut st = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
        Ok(())
    } else {
        Err(Failure { step: 32, errno: 0 })
    }
}

fn netns_child(root: bool, maps: &IdMaps) -> Result<(), Failure> {
    enter_userns_if_needed(root, maps)?;
    unshare(40, libc::CLONE_NEWNET)?;
    // SAFETY: socket/ioctl/close on a socket we own, with an ifreq on our stack.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        step(41, s.into())?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        ifr.ifr_ifru.ifru_flags =
            (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
        let rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        let e = errno();
        libc::close(s);
        if rc < 0 {
            return Err(Failure { step: 42, errno: e });
        }
    }
    Ok(())
}

fn otherns_child(root: bool, maps: &IdMaps) -> Result<(), Failure> {
    enter_userns_if_needed(root, maps)?;
    unshare(
        50,
        libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWCGROUP,
    )
}

fn ns_check(id: &'static str, title: &str, r: ChildResult, root: bool, fix: &str) -> Check {
    match r {
        ChildResult::Passed => Check::ok(id, title, "works"),
        r => {
            let userns_broken = matches!(r, ChildResult::Failed(Failure { step: 1..=19, .. }));
            let fix = if userns_broken && !root {
                format!("needs user namespaces first: {}", userns_fix())
            } else {
                fix.to_string()
            };
            Check::bad(id, CheckStatus::Fail, title, describe(&r, NS_STEPS), fix)
        }
    }
}

fn probe_namespaces() -> Vec<Check> {
    let root = is_root();
    let maps = IdMaps::for_current_user();
    let container_fix = "the kernel needs CONFIG_NAMESPACES; inside a container, namespace creation is blocked by its seccomp/AppArmor profile: run paddock on the host";
    vec![
        ns_check(
            "mountns",
            "Mount namespaces",
            run_child(|| mountns_child(root, &maps)),
            root,
            container_fix,
        ),
        ns_check(
            "pidns",
            "PID namespaces",
            run_child(|| pidns_child(root, &maps)),
            root,
            container_fix,
        ),
        ns_check(
            "netns",
            "Network namespaces (loopback only)",
            run_child(|| netns_child(root, &maps)),
            root,
            "the kernel needs CONFIG_NET_NS=y; inside a container, run paddock on the host",
        ),
        ns_check(
            "ns.other",
            "UTS, IPC and cgroup namespaces",
            run_child(|| otherns_child(root, &maps)),
            root,
            "the kernel needs CONFIG_UTS_NS, CONFIG_IPC_NS and CONFIG_CGROUPS (cgroup namespaces: Linux >= 4.6)",
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// overlayfs

const OVERLAY_STEPS: &[(u32, &str)] = &[
    (1, "unshare(CLONE_NEWUSER)"),
    (9, "prctl(PR_SET_DUMPABLE)"),
    (10, "writing /proc/self/setgroups"),
    (11, "writing /proc/self/uid_map"),
    (12, "writing /proc/self/gid_map"),
    (20, "unshare(CLONE_NEWNS)"),
    (21, "making mounts private"),
    (60, "mounting a scratch tmpfs"),
    (61, "creating lower/upper/work/merged"),
    (62, "mounting overlay"),
];

struct OverlayPaths {
    base: CString,
    dirs: [CString; 4],
    opts: CString,
    opts_userxattr: CString,
}

fn overlay_child(root: bool, maps: &IdMaps, p: &OverlayPaths) -> Result<(), Failure> {
    mountns_child(root, maps)?;
    // SAFETY: mount/mkdir with prepared C strings; everything happens in our private mount
    // namespace on a tmpfs that disappears with it.
    unsafe {
        step(
            60,
            libc::mount(
                c"paddock-probe".as_ptr(),
                p.base.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
            .into(),
        )?;
        for d in &p.dirs {
            step(61, libc::mkdir(d.as_ptr(), 0o755).into())?;
        }
        let mut rc = libc::mount(
            c"overlay".as_ptr(),
            p.dirs[3].as_ptr(),
            c"overlay".as_ptr(),
            0,
            p.opts.as_ptr().cast(),
        );
        if rc < 0 && !root {
            // Rootless overlay wants user.* xattrs (Linux >= 5.11).
            rc = libc::mount(
                c"overlay".as_ptr(),
                p.dirs[3].as_ptr(),
                c"overlay".as_ptr(),
                0,
                p.opts_userxattr.as_ptr().cast(),
            );
        }
        step(62, rc.into())
    }
}

fn probe_overlayfs() -> Vec<Check> {
    let title = "overlayfs (copy-on-write workspaces)";
    let listed = std::fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    let Ok(dir) = tempdir("paddock-probe-ovl") else {
        return vec![Check::bad(
            "overlayfs",
            CheckStatus::Warn,
            title,
            "could not create a temporary directory for the test",
            "make sure $TMPDIR (or /tmp) exists and is writable",
        )];
    };
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
    let base = dir.path.clone();
    let (l, u, w, m) = (
        base.join("l"),
        base.join("u"),
        base.join("w"),
        base.join("m"),
    );
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.display(),
        u.display(),
        w.display()
    );
    let paths = OverlayPaths {
        base: c(&base),
        dirs: [c(&l), c(&u), c(&w), c(&m)],
        opts_userxattr: CString::new(format!("{opts},userxattr")).unwrap_or_default(),
        opts: CString::new(opts).unwrap_or_default(),
    };
    let root = is_root();
    let maps = IdMaps::for_current_user();
    let r = run_child(|| overlay_child(root, &maps, &paths));
    drop(dir);
    let how = if root {
        "as root"
    } else {
        "in a user namespace"
    };
    match r {
        ChildResult::Passed => vec![Check::ok(
            "overlayfs",
            title,
            format!("mounting overlay {how} works"),
        )],
        r => {
            let fix = if !listed {
                "load the module: sudo modprobe overlay (persist: echo overlay | sudo tee /etc/modules-load.d/overlay.conf)".to_string()
            } else if !root {
                "rootless overlay needs Linux >= 5.11 (or a distro kernel with unprivileged overlay); otherwise use workspace mode `bind`".to_string()
            } else {
                "check `dmesg` for overlayfs errors; otherwise use workspace mode `bind`"
                    .to_string()
            };
            let listed_txt = if listed {
                "listed in /proc/filesystems"
            } else {
                "not in /proc/filesystems"
            };
            vec![Check::bad(
                "overlayfs",
                CheckStatus::Warn,
                title,
                format!("{listed_txt}; {}", describe(&r, OVERLAY_STEPS)),
                fix,
            )]
        }
    }
}

/// A temporary directory removed on drop (std only, so probing needs no extra crate).
struct TempDir {
    path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempdir(prefix: &str) -> io::Result<TempDir> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut last = None;
    for i in 0..8u32 {
        let path = base.join(format!("{prefix}-{}-{nanos}-{i}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(TempDir { path }),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("tempdir")))
}

// ---------------------------------------------------------------------------------------------
// seccomp and Landlock

fn probe_seccomp() -> Vec<Check> {
    let title = "seccomp filters";
    // prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL) fails with EFAULT when filter mode
    // exists (the NULL program) and with EINVAL when it does not: installs nothing either way.
    // SAFETY: a NULL filter pointer is never dereferenced successfully; the kernel returns EFAULT.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    let e = errno();
    if rc == 0 || e != libc::EFAULT {
        return vec![Check::bad(
            "seccomp",
            CheckStatus::Fail,
            title,
            format!("seccomp filter mode unavailable ({})", err_text(e)),
            "the kernel needs CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y (all mainstream distro kernels have them)",
        )];
    }
    let kill_process: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from a live local.
    let avail = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_uint,
            &kill_process as *const u32,
        )
    };
    if avail != 0 {
        return vec![Check::bad(
            "seccomp",
            CheckStatus::Fail,
            title,
            "SECCOMP_RET_KILL_PROCESS unavailable (kernel older than 4.14)",
            "upgrade to Linux >= 4.14",
        )];
    }
    let mode = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_string()))
        });
    let detail = match mode.as_deref() {
        Some("2") => {
            "filter mode available (paddock itself already runs under a filter; they stack)"
        }
        _ => "filter mode available",
    };
    vec![Check::ok("seccomp", title, detail)]
}

fn probe_landlock() -> Vec<Check> {
    let title = "Landlock (filesystem write confinement)";
    let abi = crate::fsrules::kernel_abi();
    if abi == 0 {
        let lsms = read_trimmed("/sys/kernel/security/lsm").unwrap_or_else(|| "unknown".into());
        return vec![Check::bad(
            "landlock",
            CheckStatus::Warn,
            title,
            format!(
                "not available (active LSMs: {lsms}); sandboxes run without Landlock, confined by namespaces and seccomp only"
            ),
            format!(
                "needs Linux >= 5.13 with CONFIG_SECURITY_LANDLOCK=y and landlock in the boot LSM list: add lsm=landlock,{lsms} to GRUB_CMDLINE_LINUX in /etc/default/grub, then sudo update-grub and reboot"
            ),
        )];
    }
    let mut missing = Vec::new();
    if abi < 2 {
        missing.push("refer (cross-directory rename/link control, ABI 2)");
    }
    if abi < 3 {
        missing.push("truncate (ABI 3)");
    }
    if abi < 5 {
        missing.push("ioctl on devices (ABI 5)");
    }
    if missing.is_empty() {
        vec![Check::ok("landlock", title, format!("ABI version {abi}"))]
    } else {
        vec![Check::bad(
            "landlock",
            CheckStatus::Warn,
            title,
            format!("ABI version {abi}; not enforced: {}", missing.join(", ")),
            "upgrade to Linux >= 6.10 for the full Landlock filesystem ABI",
        )]
    }
}

// ---------------------------------------------------------------------------------------------
// cgroups

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const WANTED_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

fn writable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access with a valid C string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Path of our cgroup in the unified (v2) hierarchy, from /proc/self/cgroup ("0::/path").
fn own_cgroup_v2(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

/// Path of our cgroup in the v1 hierarchy holding `controller`.
fn own_cgroup_v1(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

fn v1_dir(controller: &'static str) -> Option<PathBuf> {
    let single = [controller];
    let candidates: &[&str] = match controller {
        "cpu" => &["cpu", "cpu,cpuacct", "cpuacct,cpu"][..],
        _ => &single,
    };
    candidates
        .iter()
        .map(|c| Path::new(CGROUP_ROOT).join(c))
        .find(|p| p.is_dir())
}

fn probe_cgroup() -> Vec<Check> {
    let title = "cgroups (memory, pids, cpu limits)";
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let root = is_root();
    let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers");
    let delegate_fix = if root {
        "enable the controllers for children: echo '+memory +pids +cpu' | sudo tee /sys/fs/cgroup/cgroup.subtree_control".to_string()
    } else {
        "delegate a cgroup subtree to your user: sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=memory pids cpu cpuset io\\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload, then log in again (or start paddock with: systemd-run --user --scope -p Delegate=yes paddock daemon)".to_string()
    };

    if unified.exists() {
        let own = own_cgroup_v2(&proc_cgroup).unwrap_or_else(|| "/".into());
        let dir = Path::new(CGROUP_ROOT).join(own.trim_start_matches('/'));
        let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let have: Vec<&str> = WANTED_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .collect();
        let missing: Vec<&str> = WANTED_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !have.contains(c))
            .collect();
        let can_write = writable(&dir) && writable(&dir.join("cgroup.subtree_control"));
        let detail = format!(
            "cgroup v2 at {}; controllers available: {}; writable by this user: {}",
            dir.display(),
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            },
            if can_write { "yes" } else { "no" },
        );
        return vec![if can_write && missing.is_empty() {
            Check::ok("cgroup", title, detail)
        } else {
            let detail = if missing.is_empty() {
                detail
            } else {
                format!("{detail}; missing: {}", missing.join(", "))
            };
            Check::bad(
                "cgroup",
                CheckStatus::Warn,
                title,
                format!("{detail}; runs will have no resource limits"),
                delegate_fix,
            )
        }];
    }

    // cgroup v1 (or hybrid without a usable unified hierarchy).
    let mut rows = Vec::new();
    let mut ok = true;
    for c in WANTED_CONTROLLERS {
        let Some(hier) = v1_dir(c) else {
            rows.push(format!("{c}: not mounted"));
            ok = false;
            continue;
        };
        let own = own_cgroup_v1(&proc_cgroup, c).unwrap_or_else(|| "/".into());
        let dir = hier.join(own.trim_start_matches('/'));
        let w = writable(&dir);
        ok &= w;
        rows.push(format!(
            "{c}: {} ({})",
            dir.display(),
            if w { "writable" } else { "not writable" }
        ));
    }
    if rows.iter().all(|r| r.ends_with("not mounted")) {
        return vec![Check::bad(
            "cgroup",
            CheckStatus::Warn,
            title,
            "no cgroup hierarchy found under /sys/fs/cgroup; runs will have no resource limits",
            "mount cgroup2: sudo mount -t cgroup2 none /sys/fs/cgroup (systemd does this at boot on modern distros)",
        )];
    }
    let detail = format!("cgroup v1; {}", rows.join("; "));
    vec![if ok {
        Check::ok("cgroup", title, detail)
    } else {
        let fix = if root {
            "mount the missing v1 controllers, or boot with systemd.unified_cgroup_hierarchy=1 to use cgroup v2".to_string()
        } else {
            format!(
                "cgroup v1 cannot be delegated safely to users; boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2), then: {delegate_fix}"
            )
        };
        Check::bad(
            "cgroup",
            CheckStatus::Warn,
            title,
            format!("{detail}; runs will have no resource limits"),
            fix,
        )
    }]
}

// ---------------------------------------------------------------------------------------------
// Docker and gVisor

enum DockerTarget {
    Unix(PathBuf),
    Tcp(String),
    Unsupported(String),
}

fn docker_target() -> DockerTarget {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => {
            if let Some(p) = h.strip_prefix("unix://") {
                DockerTarget::Unix(PathBuf::from(p))
            } else if let Some(a) = h.strip_prefix("tcp://") {
                DockerTarget::Tcp(a.trim_end_matches('/').to_string())
            } else {
                DockerTarget::Unsupported(h)
            }
        }
        _ => DockerTarget::Unix(PathBuf::from("/var/run/docker.sock")),
    }
}

/// Send `GET /_ping` and check for a 200 answer.
fn ping<S: Read + Write>(mut s: S) -> io::Result<bool> {
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut buf = [0u8; 256];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
        if buf[..n].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    Ok(head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"))
}

fn docker_ping(t: &DockerTarget) -> io::Result<bool> {
    match t {
        DockerTarget::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(Some(SOCKET_TIMEOUT))?;
            s.set_write_timeout(Some(SOCKET_TIMEOUT))?;
            ping(s)
        }
        DockerTarget::Tcp(a) => {
            use std::net::ToSocketAddrs;
            let addr = a
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other("no address"))?;
            let s = std::net::TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT)?;
            s.set_read_timeout(Some(SOCKET_TIMEOUT))?;
            s.set_write_timeout(Some(SOCKET_TIMEOUT))?;
            ping(s)
        }
        DockerTarget::Unsupported(h) => {
            Err(io::Error::other(format!("unsupported DOCKER_HOST {h}")))
        }
    }
}

fn probe_docker() -> Vec<Check> {
    let title = "Docker engine (docker runtime)";
    let t = docker_target();
    let what = match &t {
        DockerTarget::Unix(p) => p.display().to_string(),
        DockerTarget::Tcp(a) => format!("tcp://{a}"),
        DockerTarget::Unsupported(h) => h.clone(),
    };
    match docker_ping(&t) {
        Ok(true) => vec![Check::ok("docker", title, format!("{what} answers /_ping"))],
        Ok(false) => vec![Check::bad(
            "docker",
            CheckStatus::Warn,
            title,
            format!("{what} answered /_ping with an error"),
            "check the engine: sudo systemctl status docker; journalctl -u docker",
        )],
        Err(e) => {
            let fix = match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    "add yourself to the docker group: sudo usermod -aG docker $USER, then log in again".to_string()
                }
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    "only needed for the docker runtime: install Docker Engine (https://docs.docker.com/engine/install/) and sudo systemctl enable --now docker, or set DOCKER_HOST".to_string()
                }
                _ => "check that the engine is running and DOCKER_HOST is right (unix:// or tcp://)".to_string(),
            };
            vec![Check::bad(
                "docker",
                CheckStatus::Warn,
                title,
                format!("{what}: {e}"),
                fix,
            )]
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
                return false;
            };
            // SAFETY: access with a valid C string.
            p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
        })
}

fn probe_runsc() -> Vec<Check> {
    let title = "gVisor runsc (gvisor runtime)";
    match find_on_path("runsc") {
        Some(p) => vec![Check::ok(
            "runsc",
            title,
            format!("found at {}", p.display()),
        )],
        None => vec![Check::bad(
            "runsc",
            CheckStatus::Warn,
            title,
            "runsc not found on PATH",
            "only needed for the gvisor runtime: install gVisor (https://gvisor.dev/docs/user_guide/install/, e.g. sudo apt-get install runsc from the gVisor apt repository) and register it with Docker: sudo runsc install && sudo systemctl reload docker",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_self_cgroup() {
        let v2 = "0::/user.slice/user-1000.slice/session-2.scope\n";
        assert_eq!(
            own_cgroup_v2(v2).as_deref(),
            Some("/user.slice/user-1000.slice/session-2.scope")
        );
        let v1 = "12:pids:/user.slice\n4:cpu,cpuacct:/a\n3:memory:/b\n1:name=systemd:/c\n";
        assert_eq!(own_cgroup_v1(v1, "cpu").as_deref(), Some("/a"));
        assert_eq!(own_cgroup_v1(v1, "memory").as_deref(), Some("/b"));
        assert_eq!(own_cgroup_v1(v1, "pids").as_deref(), Some("/user.slice"));
        assert_eq!(own_cgroup_v1(v1, "io"), None);
    }

    #[test]
    fn ping_recognises_200() {
        struct Fake(io::Cursor<Vec<u8>>, Vec<u8>);
        impl Read for Fake {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                self.0.read(b)
            }
        }
        impl Write for Fake {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.1.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let ok = Fake(
            io::Cursor::new(b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\n\r\nOK".to_vec()),
            vec![],
        );
        assert!(ping(ok).unwrap());
        let bad = Fake(
            io::Cursor::new(b"HTTP/1.1 500 Internal\r\n\r\n".to_vec()),
            vec![],
        );
        assert!(!ping(bad).unwrap());
    }

    #[test]
    fn docker_ping_over_a_unix_socket_and_timeout() {
        let dir = tempdir("paddock-test-docker").unwrap();
        let sock = dir.path.join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            // First client: a healthy engine.
            let (mut c, _) = listener.accept().unwrap();
            let mut req = [0u8; 128];
            let n = c.read(&mut req).unwrap();
            assert!(req[..n].starts_with(b"GET /_ping HTTP/1.0\r\n"));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .unwrap();
            // Second client: a hung engine that never answers.
            let (c2, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop(c2);
        });
        let t = DockerTarget::Unix(sock.clone());
        assert!(docker_ping(&t).unwrap());
        let start = Instant::now();
        assert!(docker_ping(&t).is_err());
        assert!(start.elapsed() < Duration::from_millis(250));
        server.join().unwrap();
    }

    #[test]
    fn child_failures_carry_step_and_errno() {
        let r = run_child(|| {
            Err(Failure {
                step: 42,
                errno: libc::EPERM,
            })
        });
        assert!(
            matches!(r, ChildResult::Failed(Failure { step: 42, errno }) if errno == libc::EPERM)
        );
        assert!(matches!(run_child(|| Ok(())), ChildResult::Passed));
    }

    #[test]
    fn hung_child_times_out() {
        let start = Instant::now();
        let r = run_child(|| {
            loop {
                // SAFETY: pause just sleeps until a signal (SIGKILL from the parent).
                unsafe { libc::pause() };
            }
        });
        assert!(matches!(r, ChildResult::TimedOut), "{r:?}");
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}
