//! The seccomp filter, as data: a deny table of `(syscall, action, condition, reason)` rows
//! (firecracker style), compiled once into classic BPF and installed as the very last step
//! before `execve`.
//!
//! Owns: the deny table, its compilation to BPF, the architecture guards, and the raw
//! `seccomp(SECCOMP_SET_MODE_FILTER)` call. Never: decides *whether* seccomp is wanted (the
//! caller's [`crate::Confinement`] does), sets no_new_privs (see [`crate::caps`]), or allocates
//! during [`install`] (it runs in a forked child of a multi-threaded daemon).
//!
//! # Why seccompiler, plus a hand-written guard
//!
//! seccompiler (firecracker's compiler) turns a map of syscall -> argument conditions into
//! BPF and gets the fiddly parts right (64-bit argument splitting, jump offsets, size limit).
//! Two things it does not do, so this module adds them:
//!
//! * **One action per filter.** seccompiler has a single on-match action, but the table needs
//!   two (`EPERM` for most rows, `ENOSYS` for `clone3`). Rows are grouped by action and each
//!   group becomes its own program; all programs are installed. The kernel runs every
//!   installed filter and takes the most severe result; since a syscall appears in at most one
//!   group, exactly one program decides it.
//! * **ABI traps.** seccompiler checks `seccomp_data.arch` (a 32-bit `int 0x80` syscall on
//!   x86_64 arrives with `AUDIT_ARCH_I386` and different numbers, so a native-numbered deny
//!   list would not match it), but not the x32 ABI: x32 syscalls arrive with
//!   `AUDIT_ARCH_X86_64` and `nr | 0x4000_0000`, which would slip past every row. Every program
//!   therefore starts with a guard: wrong arch -> `SECCOMP_RET_KILL_PROCESS`; on x86_64,
//!   `nr >= 0x4000_0000` -> `EPERM`. The guard is *prepended*, so seccompiler's own forward
//!   jumps are untouched.
//!
//! The default action is allow: this is a deny list for the dangerous kernel surfaces, not an
//! allow list (the agent runs arbitrary toolchains). Namespaces, capabilities and Landlock
//! carry the rest.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::ConfineError;

/// What the filter does when a row matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Fail with `EPERM` ("you may not").
    Eperm,
    /// Fail with `ENOSYS` ("no such syscall"), so libc falls back to an older, inspectable one.
    Enosys,
}

impl Action {
    fn errno(self) -> u32 {
        match self {
            Action::Eperm => libc::EPERM as u32,
            Action::Enosys => libc::ENOSYS as u32,
        }
    }
}

/// When a row applies, in terms of the syscall's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always, whatever the arguments.
    Always,
    /// When argument `arg` (its low 32 bits) has any of `bits` set.
    AnyBit {
        /// Argument index (0-based).
        arg: u8,
        /// Single-bit masks; the row matches if any one is set.
        bits: &'static [u64],
    },
    /// Like [`When::AnyBit`], except when the argument equals `unless` exactly (a query value).
    AnyBitUnless {
        /// Argument index (0-based).
        arg: u8,
        /// Single-bit masks; the row matches if any one is set.
        bits: &'static [u64],
        /// The argument value that never matches (e.g. `personality(0xffffffff)` = query).
        unless: u64,
    },
    /// When argument `arg` (its low 32 bits) equals one of `values`.
    ArgIn {
        /// Argument index (0-based).
        arg: u8,
        /// Values that match.
        values: &'static [u64],
    },
}

/// One row of the deny table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenyRule {
    /// Syscall name, for humans and tests.
    pub name: &'static str,
    /// Native syscall number on the build architecture.
    pub nr: libc::c_long,
    /// What happens when the row matches.
    pub action: Action,
    /// When the row matches.
    pub when: When,
    /// Why this syscall is denied.
    pub reason: &'static str,
}

const fn always(name: &'static str, nr: libc::c_long, reason: &'static str) -> DenyRule {
    DenyRule {
        name,
        nr,
        action: Action::Eperm,
        when: When::Always,
        reason,
    }
}

/// Every namespace flag `clone(2)` accepts (CLONE_NEWTIME only exists for clone3/unshare, but
/// the bit is checked on clone too: harmless and future-proof).
pub const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x0000_0080, // CLONE_NEWTIME
];

/// personality(2) flags that weaken exploit mitigations (ASLR off, W^X off, page 0 mapped).
pub const DANGEROUS_PERSONALITY_FLAGS: &[u64] = &[
    0x0040000, // ADDR_NO_RANDOMIZE
    0x0400000, // READ_IMPLIES_EXEC
    0x0100000, // MMAP_PAGE_ZERO
    0x0200000, // ADDR_COMPAT_LAYOUT
];

/// Terminal ioctls that inject input into, or control, a terminal shared with the user.
// `Ioctl` is not u64 on every libc target.
#[allow(clippy::unnecessary_cast)]
pub const DENIED_TTY_IOCTLS: &[u64] = &[libc::TIOCSTI as u64, libc::TIOCLINUX as u64];

/// `open_tree_attr(2)` (Linux 6.15); not yet in libc. Same number on every arch (>= 424 are unified).
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

const COMMON: &[DenyRule] = &[
    // Mounts and the root: the sandbox's filesystem view is fixed by paddock-sandbox.
    always(
        "mount",
        libc::SYS_mount,
        "changes the filesystem view set up by the sandbox",
    ),
    always(
        "umount2",
        libc::SYS_umount2,
        "could reveal what the sandbox mounted over",
    ),
    always(
        "pivot_root",
        libc::SYS_pivot_root,
        "changes the root of the mount namespace",
    ),
    always(
        "fsopen",
        libc::SYS_fsopen,
        "new mount API: creates a filesystem context",
    ),
    always(
        "fsconfig",
        libc::SYS_fsconfig,
        "new mount API: configures a filesystem context",
    ),
    always(
        "fsmount",
        libc::SYS_fsmount,
        "new mount API: creates a mount",
    ),
    always(
        "fspick",
        libc::SYS_fspick,
        "new mount API: reconfigures an existing mount",
    ),
    always(
        "move_mount",
        libc::SYS_move_mount,
        "new mount API: attaches/moves a mount",
    ),
    always(
        "open_tree",
        libc::SYS_open_tree,
        "new mount API: clones a mount tree",
    ),
    always(
        "open_tree_attr",
        SYS_OPEN_TREE_ATTR,
        "new mount API: clones a mount tree with new attributes",
    ),
    always(
        "mount_setattr",
        libc::SYS_mount_setattr,
        "changes mount flags (e.g. read-only off)",
    ),
    // Namespaces: the agent stays in the sandbox's namespaces.
    always(
        "unshare",
        libc::SYS_unshare,
        "new namespaces (esp. user) are kernel attack surface and escape routes",
    ),
    always(
        "setns",
        libc::SYS_setns,
        "joining another namespace leaves the sandbox",
    ),
    DenyRule {
        name: "clone",
        nr: libc::SYS_clone,
        action: Action::Eperm,
        when: When::AnyBit {
            arg: 0,
            bits: CLONE_NAMESPACE_FLAGS,
        },
        reason: "clone with a CLONE_NEW* flag creates namespaces (plain fork/threads stay allowed)",
    },
    DenyRule {
        name: "clone3",
        nr: libc::SYS_clone3,
        action: Action::Enosys,
        when: When::Always,
        reason: "flags live in memory seccomp cannot read; ENOSYS makes libc fall back to clone",
    },
    // Host-wide state.
    always("swapon", libc::SYS_swapon, "host swap configuration"),
    always("swapoff", libc::SYS_swapoff, "host swap configuration"),
    always(
        "reboot",
        libc::SYS_reboot,
        "reboots the host (or the pid namespace)",
    ),
    always("kexec_load", libc::SYS_kexec_load, "loads a new kernel"),
    always(
        "kexec_file_load",
        libc::SYS_kexec_file_load,
        "loads a new kernel",
    ),
    always("init_module", libc::SYS_init_module, "loads kernel code"),
    always("finit_module", libc::SYS_finit_module, "loads kernel code"),
    always(
        "delete_module",
        libc::SYS_delete_module,
        "unloads kernel code",
    ),
    always("acct", libc::SYS_acct, "host process accounting"),
    always("quotactl", libc::SYS_quotactl, "host filesystem quotas"),
    always(
        "quotactl_fd",
        libc::SYS_quotactl_fd,
        "host filesystem quotas",
    ),
    always(
        "lookup_dcookie",
        libc::SYS_lookup_dcookie,
        "profiling interface leaking host paths",
    ),
    always(
        "syslog",
        libc::SYS_syslog,
        "kernel log reveals host addresses and activity",
    ),
    always(
        "vhangup",
        libc::SYS_vhangup,
        "hangs up the controlling terminal",
    ),
    always(
        "clock_settime",
        libc::SYS_clock_settime,
        "sets the host clock",
    ),
    always(
        "clock_adjtime",
        libc::SYS_clock_adjtime,
        "adjusts the host clock",
    ),
    always(
        "settimeofday",
        libc::SYS_settimeofday,
        "sets the host clock",
    ),
    always("adjtimex", libc::SYS_adjtimex, "adjusts the host clock"),
    // Other processes' memory and descriptors.
    always(
        "ptrace",
        libc::SYS_ptrace,
        "reads/writes other processes; classic sandbox escape aid",
    ),
    always(
        "process_vm_readv",
        libc::SYS_process_vm_readv,
        "reads another process's memory",
    ),
    always(
        "process_vm_writev",
        libc::SYS_process_vm_writev,
        "writes another process's memory",
    ),
    always(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        "steals a file descriptor from another process",
    ),
    always(
        "kcmp",
        libc::SYS_kcmp,
        "inspects other processes' kernel objects (ptrace-class)",
    ),
    // Large, historically buggy kernel surfaces.
    always("bpf", libc::SYS_bpf, "eBPF: large kernel attack surface"),
    always(
        "perf_event_open",
        libc::SYS_perf_event_open,
        "performance counters: kernel attack surface and side channels",
    ),
    always(
        "userfaultfd",
        libc::SYS_userfaultfd,
        "used to win kernel race conditions in exploits",
    ),
    always(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        "io_uring bypasses seccomp for the operations it performs",
    ),
    always(
        "io_uring_enter",
        libc::SYS_io_uring_enter,
        "io_uring bypasses seccomp for the operations it performs",
    ),
    always(
        "io_uring_register",
        libc::SYS_io_uring_register,
        "io_uring bypasses seccomp for the operations it performs",
    ),
    // Kernel keyrings are not namespaced: they could hold or leak host secrets.
    always(
        "keyctl",
        libc::SYS_keyctl,
        "kernel keyring is not namespaced",
    ),
    always(
        "add_key",
        libc::SYS_add_key,
        "kernel keyring is not namespaced",
    ),
    always(
        "request_key",
        libc::SYS_request_key,
        "kernel keyring is not namespaced",
    ),
    // File handles bypass path-based checks (the "shocker" escape).
    always(
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        "opens files by handle, bypassing the mount view (shocker)",
    ),
    always(
        "name_to_handle_at",
        libc::SYS_name_to_handle_at,
        "produces handles for open_by_handle_at",
    ),
    // Argument-dependent.
    DenyRule {
        name: "personality",
        nr: libc::SYS_personality,
        action: Action::Eperm,
        when: When::AnyBitUnless {
            arg: 0,
            bits: DANGEROUS_PERSONALITY_FLAGS,
            unless: 0xffff_ffff,
        },
        reason: "flags that disable ASLR or W^X weaken exploit mitigations",
    },
    DenyRule {
        name: "ioctl",
        nr: libc::SYS_ioctl,
        action: Action::Eperm,
        when: When::ArgIn {
            arg: 1,
            values: DENIED_TTY_IOCTLS,
        },
        reason: "TIOCSTI/TIOCLINUX inject keystrokes into / control the user's terminal",
    },
];

#[cfg(target_arch = "x86_64")]
const ARCH_EXTRA: &[DenyRule] = &[
    always("iopl", libc::SYS_iopl, "raw I/O port access"),
    always("ioperm", libc::SYS_ioperm, "raw I/O port access"),
    always("uselib", libc::SYS_uselib, "obsolete loader interface"),
];

#[cfg(not(target_arch = "x86_64"))]
const ARCH_EXTRA: &[DenyRule] = &[];

/// The full deny table for the build architecture.
pub fn deny_table() -> Vec<DenyRule> {
    COMMON.iter().chain(ARCH_EXTRA).copied().collect()
}

#[cfg(target_arch = "x86_64")]
const NATIVE: (TargetArch, u32) = (TargetArch::x86_64, 0xC000_003E); // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE: (TargetArch, u32) = (TargetArch::aarch64, 0xC000_00B7); // AUDIT_ARCH_AARCH64

/// `__X32_SYSCALL_BIT`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
// offsetof(struct seccomp_data, nr / arch)
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The guard every program starts with (see the module docs).
fn abi_guard() -> Vec<sock_filter> {
    let mut g = vec![
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        jump(BPF_JMP_JEQ_K, NATIVE.1, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    if cfg!(target_arch = "x86_64") {
        g.extend([
            stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR),
            jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
            stmt(BPF_RET_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ]);
    }
    g
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ConfineError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| ConfineError::SeccompCompile(e.to_string()))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, ConfineError> {
    SeccompRule::new(conds).map_err(|e| ConfineError::SeccompCompile(e.to_string()))
}

/// seccompiler rules for one row; an empty vector means "always" to seccompiler.
fn rules_for(when: When) -> Result<Vec<SeccompRule>, ConfineError> {
    match when {
        When::Always => Ok(Vec::new()),
        When::AnyBit { arg, bits } => bits
            .iter()
            .map(|&b| rule(vec![cond(arg, SeccompCmpOp::MaskedEq(b), b)?]))
            .collect(),
        When::AnyBitUnless { arg, bits, unless } => bits
            .iter()
            .map(|&b| {
                rule(vec![
                    cond(arg, SeccompCmpOp::Ne, unless)?,
                    cond(arg, SeccompCmpOp::MaskedEq(b), b)?,
                ])
            })
            .collect(),
        When::ArgIn { arg, values } => values
            .iter()
            .map(|&v| rule(vec![cond(arg, SeccompCmpOp::Eq, v)?]))
            .collect(),
    }
}

/// A compiled filter: one BPF program per action group, each starting with the ABI guard.
#[derive(Debug, Clone)]
pub struct Compiled {
    programs: Vec<BpfProgram>,
    rules: usize,
}

impl Compiled {
    /// Number of table rows compiled in.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// The programs, in install order.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }
}

/// Compile a deny table into BPF programs (allocates; call before fork).
pub fn compile(table: &[DenyRule]) -> Result<Compiled, ConfineError> {
    let mut groups: BTreeMap<Action, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for row in table {
        let group = groups.entry(row.action).or_default();
        if !seen.insert(row.nr) {
            return Err(ConfineError::SeccompCompile(format!(
                "syscall {} appears twice in the table",
                row.name
            )));
        }
        group.insert(row.nr, rules_for(row.when)?);
    }
    let mut programs = Vec::with_capacity(groups.len());
    for (action, rules) in groups {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(action.errno()),
            NATIVE.0,
        )
        .map_err(|e| ConfineError::SeccompCompile(e.to_string()))?;
        let body: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| ConfineError::SeccompCompile(e.to_string()))?;
        let mut prog = abi_guard();
        prog.extend(body);
        if prog.len() > usize::from(u16::MAX) {
            return Err(ConfineError::SeccompCompile("filter too large".into()));
        }
        programs.push(prog);
    }
    Ok(Compiled {
        programs,
        rules: table.len(),
    })
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

/// Install the compiled programs on the calling thread. Needs no_new_privs (or
/// CAP_SYS_ADMIN). Performs only raw syscalls; no allocation.
pub fn install(compiled: &Compiled) -> Result<(), ConfineError> {
    for prog in &compiled.programs {
        let fprog = SockFprog {
            // Length checked in compile().
            len: prog.len() as libc::c_ushort,
            filter: prog.as_ptr(),
        };
        // SAFETY: `fprog` points at `prog`, a live, correctly laid out (repr(C) sock_filter)
        // BPF program of `len` instructions; the kernel copies it before returning.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &fprog as *const SockFprog,
            )
        };
        if rc != 0 {
            return Err(ConfineError::SeccompInstall(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_row_has_a_reason_and_no_duplicates() {
        let table = deny_table();
        let mut names = HashSet::new();
        let mut nrs = HashSet::new();
        for row in &table {
            assert!(!row.reason.trim().is_empty(), "{} has no reason", row.name);
            assert!(names.insert(row.name), "duplicate name {}", row.name);
            assert!(
                nrs.insert(row.nr),
                "duplicate syscall number for {}",
                row.name
            );
        }
    }

    #[test]
    fn table_covers_the_required_syscalls() {
        let names: HashSet<_> = deny_table().iter().map(|r| r.name).collect();
        for required in [
            "mount",
            "umount2",
            "pivot_root",
            "swapon",
            "swapoff",
            "reboot",
            "kexec_load",
            "kexec_file_load",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "keyctl",
            "add_key",
            "request_key",
            "init_module",
            "finit_module",
            "delete_module",
            "open_by_handle_at",
            "name_to_handle_at",
            "clock_settime",
            "clock_adjtime",
            "settimeofday",
            "adjtimex",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "acct",
            "quotactl",
            "lookup_dcookie",
            "syslog",
            "vhangup",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "personality",
            "ioctl",
        ] {
            assert!(
                names.contains(required),
                "{required} missing from the deny table"
            );
        }
    }

    #[test]
    fn clone3_is_enosys_everything_else_eperm() {
        for row in deny_table() {
            let expect = if row.name == "clone3" {
                Action::Enosys
            } else {
                Action::Eperm
            };
            assert_eq!(row.action, expect, "{}", row.name);
        }
    }

    #[test]
    fn compiles_into_guarded_programs() {
        let c = compile(&deny_table()).expect("compile");
        assert_eq!(c.programs().len(), 2, "one program per action");
        for p in c.programs() {
            assert_eq!(p[0], stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH));
            assert_eq!(p[2].k, libc::SECCOMP_RET_KILL_PROCESS);
        }
    }

    #[test]
    fn duplicate_rows_are_rejected() {
        let mut t = deny_table();
        t.push(t[0]);
        assert!(compile(&t).is_err());
    }
}
