//! The Landlock ruleset: write-class filesystem access only beneath the writable paths.
//!
//! Owns: building the ruleset (before fork: opens the rule paths, allocates) and the raw
//! `landlock_restrict_self` (after fork, in the child). Never: decides which paths are
//! writable (the caller does), or mounts anything.
//!
//! # Policy
//!
//! Only write-class rights are *handled*: write_file, remove_dir, remove_file, make_char,
//! make_dir, make_reg, make_sock, make_fifo, make_block, make_sym, refer (ABI 2), truncate
//! (ABI 3), ioctl_dev (ABI 5). Those are granted beneath each writable path and nowhere else.
//! Read and execute are deliberately not handled, which is exactly "allowed everywhere beneath
//! /" and avoids a trap: a rule on "/" is tied to the inode of the root seen at prepare time,
//! and would deny every read if the caller's root later changed (pivot_root) before apply.
//! What the agent can read at all is decided by the mount namespace the sandbox built.
//!
//! # Paths are resolved at prepare time
//!
//! Rules bind to inodes, not names. Call [`build`] in the mount namespace and root the agent
//! will run in, after the filesystem view is final (an overlay mounted later over a writable
//! path has different inodes and would not be writable). Paths that do not exist are skipped
//! and listed. The ruleset uses the best ABI the kernel offers (best-effort compatibility).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr,
};

use crate::ConfineError;

/// Device nodes and directories a normal program writes to (`> /dev/null`, terminals, POSIX
/// shared memory). Added to the writable set when [`crate::Confinement::standard_devices`] is on.
pub const STANDARD_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// `LANDLOCK_CREATE_RULESET_VERSION`
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;

/// The Landlock ABI version this kernel offers: 0 if unsupported (not built or not enabled in
/// `lsm=`), else 1, 2, ….
pub fn kernel_abi() -> u32 {
    // SAFETY: with a NULL attr, size 0 and the VERSION flag, landlock_create_ruleset only
    // returns the ABI version (or an error); it reads and creates nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 { 0 } else { rc as u32 }
}

/// A ruleset ready to enforce.
#[derive(Debug)]
pub struct PreparedRuleset {
    /// None when the kernel has no Landlock.
    fd: Option<OwnedFd>,
    /// ABI used for the handled rights (min of kernel and crate).
    abi: u32,
    skipped: Vec<PathBuf>,
}

impl PreparedRuleset {
    /// ABI version the ruleset was built for, 0 if Landlock is unavailable.
    pub fn abi(&self) -> u32 {
        self.abi
    }
    /// Writable paths that did not exist and got no rule.
    pub fn skipped(&self) -> &[PathBuf] {
        &self.skipped
    }
    /// Whether there is a ruleset to enforce.
    pub fn is_active(&self) -> bool {
        self.fd.is_some()
    }
    /// The ruleset fd, if any (CLOEXEC).
    pub fn raw_fd(&self) -> Option<libc::c_int> {
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }
}

fn ll_err(e: impl std::fmt::Display) -> ConfineError {
    ConfineError::Landlock(e.to_string())
}

fn open_path(p: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(p)
}

/// Build the ruleset (allocates and opens files; call before fork).
pub fn build(
    writable: &[PathBuf],
    standard_devices: bool,
) -> Result<PreparedRuleset, ConfineError> {
    let kabi = kernel_abi();
    if kabi == 0 {
        return Ok(PreparedRuleset {
            fd: None,
            abi: 0,
            skipped: Vec::new(),
        });
    }
    let abi = ABI::from(i32::try_from(kabi).unwrap_or(i32::MAX));
    let handled: BitFlags<AccessFs> = AccessFs::from_write(abi);
    let file_rights: BitFlags<AccessFs> = handled & AccessFs::from_file(abi);

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled)
        .map_err(ll_err)?
        .create()
        .map_err(ll_err)?;

    let devices: &[&str] = if standard_devices {
        STANDARD_DEVICES
    } else {
        &[]
    };
    let devices = devices.iter().map(PathBuf::from);
    let mut skipped = Vec::new();
    for path in writable.iter().cloned().chain(devices) {
        let file = match open_path(&path) {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                skipped.push(path);
                continue;
            }
            Err(source) => return Err(ConfineError::LandlockPath { path, source }),
        };
        let is_dir = file
            .metadata()
            .map_err(|source| ConfineError::LandlockPath {
                path: path.clone(),
                source,
            })?
            .is_dir();
        let access = if is_dir { handled } else { file_rights };
        ruleset = ruleset
            .add_rule(PathBeneath::new(file, access))
            .map_err(ll_err)?;
    }

    let fd: Option<OwnedFd> = ruleset.into();
    if let Some(fd) = &fd {
        // SAFETY: F_SETFD on an fd we own; plain integer argument. The kernel already creates
        // ruleset fds O_CLOEXEC; this makes it explicit so it never leaks into the command.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        if rc != 0 {
            return Err(ll_err(io::Error::last_os_error()));
        }
    }
    Ok(PreparedRuleset {
        abi: if fd.is_some() { abi as u32 } else { 0 },
        fd,
        skipped,
    })
}

/// Enforce the ruleset on the calling thread (needs no_new_privs or CAP_SYS_ADMIN).
/// Raw syscall, no allocation. The fd stays open; it is CLOEXEC.
pub fn restrict(prepared: &PreparedRuleset) -> Result<bool, ConfineError> {
    let Some(fd) = prepared.raw_fd() else {
        return Ok(false);
    };
    // SAFETY: `fd` is a live Landlock ruleset fd owned by `prepared`; flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0 as libc::c_uint) };
    if rc != 0 {
        return Err(ConfineError::LandlockRestrict(io::Error::last_os_error()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_has_landlock() {
        // This machine's kernel offers ABI 7; elsewhere just make sure the probe does not panic.
        let abi = kernel_abi();
        eprintln!("landlock abi {abi}");
    }

    #[test]
    fn missing_paths_are_skipped_and_fd_is_cloexec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope/deeper");
        let p = build(&[dir.path().to_path_buf(), missing.clone()], false).expect("build");
        if kernel_abi() == 0 {
            assert!(!p.is_active());
            return;
        }
        assert_eq!(p.skipped(), &[missing]);
        let fd = p.raw_fd().expect("fd");
        // SAFETY: F_GETFD on an fd owned by `p`.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
    }
}
