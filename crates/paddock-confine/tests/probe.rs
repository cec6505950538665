//! `probe_all` on the real machine: every check present, no panic, bounded time, and a fix
//! for everything that is not Ok. Also run as an unprivileged uid in a forked child.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use paddock_confine::{Check, CheckStatus, probe_all};

const IDS: &[&str] = &[
    "userns",
    "userns.unprivileged",
    "mountns",
    "pidns",
    "netns",
    "ns.other",
    "overlayfs",
    "seccomp",
    "landlock",
    "cgroup",
    "docker",
    "runsc",
];

fn validate(checks: &[Check]) -> Result<(), String> {
    let ids: BTreeSet<&str> = checks.iter().map(|c| c.id).collect();
    let want: BTreeSet<&str> = IDS.iter().copied().collect();
    if ids != want || checks.len() != IDS.len() {
        return Err(format!("ids {ids:?} != {want:?}"));
    }
    for c in checks {
        if c.title.is_empty() || c.detail.is_empty() {
            return Err(format!("{} lacks title/detail", c.id));
        }
        match (c.status, &c.fix) {
            (CheckStatus::Ok, None) => {}
            (CheckStatus::Ok, Some(_)) => return Err(format!("{} is ok but has a fix", c.id)),
            (_, Some(f)) if !f.is_empty() => {}
            _ => return Err(format!("{} is not ok and has no fix", c.id)),
        }
    }
    Ok(())
}

#[test]
fn probes_return_every_check_quickly() {
    // Warm up (first fork of a fresh test binary pays page-fault costs).
    let _ = probe_all();
    let start = Instant::now();
    let checks = probe_all();
    let took = start.elapsed();
    println!("{}", serde_json::to_string_pretty(&checks).unwrap());
    println!("probe_all took {took:?}");
    validate(&checks).unwrap();
    // 100 ms is the target on an idle machine; allow slack for a loaded shared CI box.
    assert!(took < Duration::from_millis(500), "probes took {took:?}");
}

#[test]
fn as_root_the_kernel_basics_are_ok() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let checks = probe_all();
    for id in ["userns", "mountns", "pidns", "netns", "ns.other", "seccomp"] {
        let c = checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
    }
    let ll = checks.iter().find(|c| c.id == "landlock").unwrap();
    if paddock_confine::fsrules::kernel_abi() >= 5 {
        assert_eq!(ll.status, CheckStatus::Ok, "{ll:?}");
    }
}

#[test]
fn probes_work_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child drops to nobody, probes, reports through the pipe and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: integer-only syscalls in the child, then writes of live buffers.
        unsafe {
            let ok = libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(65534, 65534, 65534) == 0
                && libc::setresuid(65534, 65534, 65534) == 0;
            let msg = if ok {
                let checks = probe_all();
                match validate(&checks) {
                    Ok(()) => serde_json::to_string(&checks).unwrap(),
                    Err(e) => format!("INVALID {e}"),
                }
            } else {
                "INVALID setresuid".to_string()
            };
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    // SAFETY: closing our write end, waiting for our child, reading our read end.
    let out = unsafe {
        libc::close(fds[1]);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let mut s = String::new();
        std::fs::File::from_raw_fd(fds[0])
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    println!("{out}");
    assert!(!out.starts_with("INVALID"), "{out}");
    assert!(out.contains("\"id\":\"userns.unprivileged\""));
}
