//! Small filesystem helpers: xattrs, no-follow directory walks, stat.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstatat};

/// Read an xattr of `path` without following a final symlink. `Ok(None)` if it is absent
/// or the filesystem has no xattrs.
pub(crate) fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let cname = CString::new(name).expect("xattr names have no NUL");
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are valid NUL-terminated C strings that outlive the call, and
        // `buf` is a writable buffer of exactly `buf.len()` bytes.
        let n = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    }
}

/// Read an overlay xattr under either prefix (`trusted.overlay.*` as root,
/// `user.overlay.*` with `userxattr`).
pub(crate) fn overlay_xattr(path: &Path, suffix: &str) -> io::Result<Option<Vec<u8>>> {
    for prefix in ["trusted.overlay.", "user.overlay."] {
        if let Some(v) = lgetxattr(path, &format!("{prefix}{suffix}"))? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Flags for opening an intermediate directory without following symlinks.
pub(crate) fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Why a walk below a directory fd stopped.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// A component is a symlink (or not a directory).
    NotADir(std::path::PathBuf),
    /// Any other error.
    Io(std::path::PathBuf, io::Error),
}

/// Open `rel` (a relative path of normal components) below `root`, component by component,
/// refusing symlinks and non-directories anywhere along the way.
pub(crate) fn open_dir_beneath(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, WalkError> {
    let mut cur = root
        .try_clone()
        .map_err(|e| WalkError::Io(rel.to_path_buf(), e))?;
    let mut sofar = std::path::PathBuf::new();
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            return Err(WalkError::NotADir(rel.to_path_buf()));
        };
        sofar.push(name);
        match openat(cur.as_fd(), name, dir_flags(), Mode::empty()) {
            Ok(fd) => cur = fd,
            Err(nix::errno::Errno::ELOOP) | Err(nix::errno::Errno::ENOTDIR) => {
                return Err(WalkError::NotADir(sofar));
            }
            Err(e) => return Err(WalkError::Io(sofar, e.into())),
        }
    }
    Ok(cur)
}

/// `fstatat` without following a final symlink; `Ok(None)` if absent.
pub(crate) fn lstat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<FileStat>> {
    match fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// True if every component of `rel` is a plain name (no `..`, `.`, root or prefix).
pub(crate) fn is_plain_relative(rel: &Path) -> bool {
    rel.components().next().is_some() && rel.components().all(|c| matches!(c, Component::Normal(_)))
}
