//! paddock-confine: what the agent process is confined by, applied just before exec, and
//! probes of what this kernel supports.
//!
//! Owns: the seccomp filter (as data: a deny list with a reason per syscall), the Landlock
//! ruleset, capability dropping and no_new_privs, and kernel feature probes used by
//! `paddock doctor`.
//!
//! Never: creates namespaces or mounts (that is paddock-sandbox), or reads config files.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> Result<(), paddock_confine::ConfineError> {
//! use paddock_confine::Confinement;
//! let prepared = Confinement {
//!     writable_paths: vec!["/workspace".into(), "/tmp".into()],
//!     ..Confinement::default()
//! }
//! .prepare()?; // before fork: allocates, compiles BPF, opens the Landlock ruleset
//! // … fork; in the child, after uid/gid changes, as the last step before execve:
//! let report = prepared.apply()?;
//! # let _ = report; Ok(()) }
//! ```
//!
//! `prepare` must run in the mount namespace and root the command will see (Landlock rules
//! bind to inodes). `apply` must run on the only thread of the child: capabilities,
//! no_new_privs, Landlock and seccomp are per-thread state inherited across execve.
//!
//! # What `apply` does, in order
//!
//! 1. Capabilities ([`caps`]): raise effective to permitted, empty the bounding set
//!    (`PR_CAPBSET_DROP` up to the kernel's last cap), lock securebits, clear ambient, then
//!    `capset` everything to zero. Without `CAP_SETPCAP` the bounding set is kept and reported.
//! 2. `PR_SET_NO_NEW_PRIVS`.
//! 3. Landlock ([`fsrules`]): write-class access only beneath `writable_paths` (+ standard
//!    devices); reads/exec unrestricted. Kernel without Landlock: reported, not an error.
//! 4. seccomp ([`seccomp`]): the deny table, last, so nothing above is filtered.
//!
//! [`ConfineReport::is_degraded`] tells the caller whether to warn the user.

use std::path::PathBuf;

pub mod caps;
mod error;
pub mod fsrules;
pub mod probe;
pub mod seccomp;

pub use error::ConfineError;
pub use probe::{Check, CheckStatus, probe_all};

/// What confines the agent command. Build it, [`prepare`](Confinement::prepare) it before
/// fork, [`apply`](Prepared::apply) it in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Directories (or files) where write-class access is allowed; everything else is
    /// read/execute only. Paths that do not exist are skipped.
    pub writable_paths: Vec<PathBuf>,
    /// Install the seccomp deny filter (default true).
    pub seccomp: bool,
    /// Enforce Landlock when the kernel supports it (default true).
    pub landlock: bool,
    /// Also allow writes to the usual device nodes ([`fsrules::STANDARD_DEVICES`]: /dev/null,
    /// /dev/tty, /dev/pts, /dev/shm, …) so ordinary shell code works (default true).
    pub standard_devices: bool,
}

impl Default for Confinement {
    fn default() -> Self {
        Confinement {
            writable_paths: Vec::new(),
            seccomp: true,
            landlock: true,
            standard_devices: true,
        }
    }
}

/// A confinement with everything allocated, ready for [`Prepared::apply`] in a forked child.
#[derive(Debug)]
pub struct Prepared {
    seccomp: Option<seccomp::Compiled>,
    landlock: Option<fsrules::PreparedRuleset>,
    landlock_requested: bool,
}

/// Landlock as enforced by [`Prepared::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LandlockState {
    /// Enforced with this ABI version.
    Enforced {
        /// Landlock ABI version of the ruleset.
        abi: u32,
    },
    /// Requested, but the kernel has no Landlock (degraded).
    NotSupported,
    /// Not requested.
    Disabled,
}

/// What [`Prepared::apply`] enforced, so a degraded setup can be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConfineReport {
    /// Landlock status.
    pub landlock: LandlockState,
    /// Whether the seccomp filter is installed.
    pub seccomp: bool,
    /// Number of rows in the installed seccomp deny table (0 if off).
    pub seccomp_rules: usize,
    /// no_new_privs is set.
    pub no_new_privs: bool,
    /// Effective, permitted, inheritable and ambient sets are empty (always true on success).
    pub capabilities_dropped: bool,
    /// The bounding set is empty. False only for a caller without CAP_SETPCAP (no user
    /// namespace); no_new_privs still prevents regaining capabilities through execve.
    pub bounding_set_cleared: bool,
    /// Securebits were set and locked (needs CAP_SETPCAP).
    pub securebits_locked: bool,
}

impl ConfineReport {
    /// True when something requested could not be enforced.
    pub fn is_degraded(&self) -> bool {
        matches!(self.landlock, LandlockState::NotSupported) || !self.bounding_set_cleared
    }
}

impl Confinement {
    /// Do all allocation: compile the seccomp BPF, build the Landlock ruleset and open its
    /// rule paths. Safe to call before fork; the result can be applied in the child.
    pub fn prepare(&self) -> Result<Prepared, ConfineError> {
        let seccomp = if self.seccomp {
            Some(seccomp::compile(&seccomp::deny_table())?)
        } else {
            None
        };
        let landlock = if self.landlock {
            Some(fsrules::build(&self.writable_paths, self.standard_devices)?)
        } else {
            None
        };
        Ok(Prepared {
            seccomp,
            landlock,
            landlock_requested: self.landlock,
        })
    }
}

impl Prepared {
    /// Confine the calling thread: drop every capability, set no_new_privs, enforce Landlock,
    /// install seccomp (last). Only raw syscalls, no allocation: meant to run in a forked
    /// child, single-threaded, as the last step before execve.
    pub fn apply(&self) -> Result<ConfineReport, ConfineError> {
        let caps = caps::drop_all()?;
        caps::set_no_new_privs()?;
        let landlock = match &self.landlock {
            Some(rs) if fsrules::restrict(rs)? => LandlockState::Enforced { abi: rs.abi() },
            Some(_) => LandlockState::NotSupported,
            None if self.landlock_requested => LandlockState::NotSupported,
            None => LandlockState::Disabled,
        };
        let (seccomp, seccomp_rules) = match &self.seccomp {
            Some(c) => {
                seccomp::install(c)?;
                (true, c.rule_count())
            }
            None => (false, 0),
        };
        Ok(ConfineReport {
            landlock,
            seccomp,
            seccomp_rules,
            no_new_privs: true,
            capabilities_dropped: true,
            bounding_set_cleared: caps.bounding_set_cleared,
            securebits_locked: caps.securebits_locked,
        })
    }

    /// Writable paths that did not exist at prepare time and got no Landlock rule.
    pub fn skipped_paths(&self) -> &[PathBuf] {
        self.landlock.as_ref().map(|l| l.skipped()).unwrap_or(&[])
    }

    /// The Landlock ABI the ruleset was built for (0: none).
    pub fn landlock_abi(&self) -> u32 {
        self.landlock.as_ref().map(|l| l.abi()).unwrap_or(0)
    }
}
