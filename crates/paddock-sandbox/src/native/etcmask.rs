//! Which paths under the host's `/etc` must be hidden from a sandbox.
//!
//! As root, the sandbox's uid 1000 is host uid 0, so the agent's kernel identity owns every
//! root-owned file it can see: anything under `/etc` that is not world-readable is masked
//! (files by `/dev/null`, directories by an empty read-only tmpfs). Some paths are masked
//! always, rootless too. The scan walks `/etc` once and is cached in the daemon process.
//! While it walks, it puts an inotify watch on every directory it reads (before reading
//! it, so nothing changed during the walk is missed); any event since — an entry created,
//! removed, renamed, or its mode or owner changed — makes the next run rescan. So a start
//! normally pays one non-blocking `read` for the check, and a `chmod 600` anywhere under
//! `/etc` is seen by the very next run. Where inotify is unavailable (no instances left),
//! the cache falls back to comparing every walked directory's mtime plus a full rescan at
//! least every [`MAX_AGE`].
//!
//! Owns: the scan and its cache. Never: mounts anything (init does that).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::plan::Mask;

/// Masked in every sandbox, whatever their mode.
pub const ALWAYS_MASKED: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
];

/// Without inotify, a full rescan happens at least this often, to see `chmod`s of
/// existing files (which change no directory's mtime).
const MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Scan {
    at: Option<Instant>,
    dirs: Vec<(PathBuf, Option<SystemTime>)>,
    masks: Vec<Mask>,
    /// Watches on every walked directory; `None` when inotify could not be used.
    watch: Option<Inotify>,
}

/// What makes a cached scan stale: anything that can add, remove or re-mode an entry.
fn watch_flags() -> AddWatchFlags {
    AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl Scan {
    fn fresh(&self) -> bool {
        if self.at.is_none() {
            return false;
        }
        match &self.watch {
            // No event (EAGAIN) means nothing changed; an event, a queue overflow or an
            // error all mean rescan.
            Some(w) => matches!(w.read_events(), Err(nix::errno::Errno::EAGAIN)),
            None => {
                self.at.is_some_and(|t| t.elapsed() < MAX_AGE)
                    && self
                        .dirs
                        .iter()
                        .all(|(d, t)| fs::symlink_metadata(d).and_then(|m| m.modified()).ok() == *t)
            }
        }
    }
}

/// Cache of the `/etc` scan, shared by all runs of a runtime.
pub struct EtcMaskCache {
    root: PathBuf,
    scan: Mutex<Scan>,
}

impl EtcMaskCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        EtcMaskCache {
            root: root.into(),
            scan: Mutex::new(Scan::default()),
        }
    }

    /// The masks for a sandbox. `full` (root mode) adds every non-world-readable entry.
    pub fn masks(&self, full: bool) -> Vec<Mask> {
        let mut out: Vec<Mask> = Vec::new();
        for p in ALWAYS_MASKED {
            if let Ok(m) = fs::symlink_metadata(p)
                && !m.file_type().is_symlink()
            {
                out.push(Mask {
                    path: PathBuf::from(p),
                    is_dir: m.is_dir(),
                });
            }
        }
        if full {
            let mut scan = self.scan.lock().unwrap_or_else(|e| e.into_inner());
            if !scan.fresh() {
                *scan = scan_dir(&self.root);
            }
            for m in &scan.masks {
                if !out.iter().any(|o| m.path.starts_with(&o.path)) {
                    out.push(m.clone());
                }
            }
        }
        out
    }
}

fn scan_dir(root: &Path) -> Scan {
    let mut scan = Scan {
        at: Some(Instant::now()),
        watch: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok(),
        ..Scan::default()
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Some(w) = &scan.watch
            && w.add_watch(&dir, watch_flags()).is_err()
        {
            // Out of watches: fall back to mtimes and periodic rescans for this scan.
            scan.watch = None;
        }
        let mtime = fs::symlink_metadata(&dir).and_then(|m| m.modified()).ok();
        scan.dirs.push((dir.clone(), mtime));
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for ent in rd.flatten() {
            let path = ent.path();
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_symlink() {
                continue;
            }
            let mode = md.permissions().mode();
            if ft.is_dir() {
                if mode & 0o005 != 0o005 {
                    scan.masks.push(Mask { path, is_dir: true });
                } else if md.dev()
                    == fs::symlink_metadata(root)
                        .map(|m| m.dev())
                        .unwrap_or(md.dev())
                {
                    stack.push(path);
                }
            } else if ft.is_file() && mode & 0o004 == 0 {
                scan.masks.push(Mask {
                    path,
                    is_dir: false,
                });
            }
        }
    }
    scan.masks.sort_by(|a, b| a.path.cmp(&b.path));
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unreadable_and_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("ok")).unwrap();
        fs::write(root.join("ok/pub"), "x").unwrap();
        fs::write(root.join("secret"), "x").unwrap();
        fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(root.join("private")).unwrap();
        fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
        let cache = EtcMaskCache::new(root);
        let m = cache.masks(true);
        let paths: Vec<_> = m.iter().map(|m| m.path.clone()).collect();
        assert!(paths.contains(&root.join("secret")));
        assert!(paths.contains(&root.join("private")));
        assert!(!paths.contains(&root.join("ok/pub")));
        // New secret in a subdirectory: the subdirectory's mtime changes, the cache rescans.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(root.join("ok/key"), "x").unwrap();
        fs::set_permissions(root.join("ok/key"), fs::Permissions::from_mode(0o640)).unwrap();
        let m = cache.masks(true);
        assert!(m.iter().any(|m| m.path == root.join("ok/key")));
    }

    #[test]
    fn a_chmod_of_an_existing_file_is_seen_by_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/token"), "x").unwrap();
        fs::set_permissions(root.join("sub/token"), fs::Permissions::from_mode(0o644)).unwrap();
        let cache = EtcMaskCache::new(root);
        let token_masked = || {
            cache
                .masks(true)
                .iter()
                .any(|m| m.path == root.join("sub/token"))
        };
        assert!(!token_masked());
        // Unchanged: the cached scan is reused (and still right).
        assert!(!token_masked());
        // A chmod changes no directory's mtime; it must still be seen at once, not after
        // MAX_AGE.
        fs::set_permissions(root.join("sub/token"), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(token_masked());
    }
}
