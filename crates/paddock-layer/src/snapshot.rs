//! Snapshots of a layer and rolling a layer back to one.
//!
//! A snapshot is a copy of the overlay upper directory (its files, directories, symlinks,
//! whiteouts and opaque markers) in a directory of its own, plus a manifest of where each
//! file came from. The upper holds only what the run changed, so a snapshot costs what was
//! changed, never the workspace; a file unchanged since the previous snapshot (same inode,
//! size, mtime and ctime in the upper) is a hard link to that snapshot's copy (snapshots are
//! never written after they are made, so sharing them is safe).
//!
//! Rolling back: [`plan_rollback`] compares the run's view now (upper over workspace) with
//! the snapshot's (snapshot over workspace) and lists what to delete and what to write so
//! the first becomes the second; [`write_tar`] turns the writes into a tar stream, which a
//! live run extracts inside its own sandbox (through its overlay, the only coherent way to
//! change a mounted layer). A stopped run's upper is replaced by the snapshot's copy
//! instead ([`restore_offline`]).
//!
//! Owns: the snapshot format. Never: follows a symlink while reading a layer (every file is
//! opened below a directory fd with `O_NOFOLLOW`), or writes into a snapshot after it is made.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag};
use serde::{Deserialize, Serialize};

use crate::error::LayerError;
use crate::fsutil::{dir_flags, lstat_at, overlay_xattr};
use crate::scan::{ChangeKind, FileKind, scan};

const MANIFEST: &str = "manifest.json";
const TREE: &str = "upper";

/// Where a snapshot's copy of a file came from: the upper file's identity then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Source {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// What making a snapshot did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotStats {
    /// Regular files in the snapshot.
    pub files: usize,
    /// Of those, hard links to the previous snapshot's copy (unchanged since).
    pub shared: usize,
    /// Bytes copied (files that changed since the previous snapshot).
    pub copied_bytes: u64,
    /// Directories, symlinks and whiteouts.
    pub others: usize,
}

/// The tree inside a snapshot directory (an upper directory of its own).
pub fn snapshot_tree(snapshot: &Path) -> PathBuf {
    snapshot.join(TREE)
}

fn io_at<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |e| LayerError::io(op, p, e)
}

fn open_root(p: &Path) -> Result<OwnedFd, LayerError> {
    openat(nix::fcntl::AT_FDCWD, p, dir_flags(), Mode::empty())
        .map_err(|e| LayerError::nix("open", p, e))
}

/// The names in a directory fd, sorted.
fn names(dir: &OwnedFd, path: &Path) -> Result<Vec<std::ffi::OsString>, LayerError> {
    let d = nix::dir::Dir::from_fd(dir.try_clone().map_err(io_at("read directory", path))?)
        .map_err(|e| LayerError::nix("read directory", path, e))?;
    let mut out = Vec::new();
    for ent in d {
        let ent = ent.map_err(|e| LayerError::nix("read directory", path, e))?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Copy the overlay markers of a directory (`opaque`) from `src` to `dst`.
fn copy_dir_markers(src: &Path, dst: &Path) -> Result<(), LayerError> {
    if let Some(v) = overlay_xattr(src, "opaque").map_err(io_at("read xattr", src))? {
        // The same prefix the kernel will read: trusted as root, user otherwise.
        let name = if nix::unistd::geteuid().is_root() {
            "trusted.overlay.opaque"
        } else {
            "user.overlay.opaque"
        };
        set_xattr(dst, name, &v).map_err(io_at("write xattr", dst))?;
    }
    Ok(())
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let cpath = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let cname = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()` bytes, all alive
    // for the call.
    let r = unsafe {
        libc::lsetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A whiteout (a 0/0 character device) at `p`.
fn make_whiteout(p: &Path) -> Result<(), LayerError> {
    nix::sys::stat::mknod(p, SFlag::S_IFCHR, Mode::empty(), 0)
        .map_err(|e| LayerError::nix("make whiteout", p, e))
}

struct Copier {
    prev: Option<(PathBuf, BTreeMap<String, Source>)>,
    manifest: BTreeMap<String, Source>,
    stats: SnapshotStats,
    /// Record sources (for a snapshot) or not (a restore).
    record: bool,
}

impl Copier {
    /// Copy the directory `src_fd` (at `src`, for xattrs and messages) into the new
    /// directory `dst`; `rel` is its path inside the layer.
    fn copy_dir(
        &mut self,
        src_fd: &OwnedFd,
        src: &Path,
        dst: &Path,
        rel: &Path,
    ) -> Result<(), LayerError> {
        for name in names(src_fd, src)? {
            let Some(st) = lstat_at(src_fd, &name).map_err(io_at("stat", src))? else {
                continue;
            };
            let (s, d, r) = (src.join(&name), dst.join(&name), rel.join(&name));
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            let mode = st.st_mode & 0o7777;
            match kind {
                SFlag::S_IFDIR => {
                    std::fs::create_dir(&d).map_err(io_at("create directory", &d))?;
                    copy_dir_markers(&s, &d)?;
                    let fd = match openat(
                        src_fd.as_fd(),
                        name.as_os_str(),
                        dir_flags(),
                        Mode::empty(),
                    ) {
                        Ok(fd) => fd,
                        // Swapped for something else while we looked: skipped, like a race lost.
                        Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => continue,
                        Err(e) => return Err(LayerError::nix("open", &s, e)),
                    };
                    self.copy_dir(&fd, &s, &d, &r)?;
                    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))
                        .map_err(io_at("chmod", &d))?;
                    self.stats.others += 1;
                }
                _ => self.copy_entry(src_fd, &name, &st, &s, &d, &r)?,
            }
        }
        Ok(())
    }

    /// Copy the non-directory entry `name` of `dir` (stat `st`, path `s`) to `d`.
    fn copy_entry(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        st: &nix::sys::stat::FileStat,
        s: &Path,
        d: &Path,
        rel: &Path,
    ) -> Result<(), LayerError> {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(dir.as_fd(), name)
                    .map_err(|e| LayerError::nix("read link", s, e))?;
                std::os::unix::fs::symlink(&target, d).map_err(io_at("symlink", d))?;
                self.stats.others += 1;
            }
            SFlag::S_IFCHR if st.st_rdev == 0 => {
                make_whiteout(d)?;
                self.stats.others += 1;
            }
            SFlag::S_IFREG => self.copy_file(dir, name, s, d, rel, st)?,
            // Devices, fifos, sockets: never applied, not kept.
            _ => {}
        }
        Ok(())
    }

    fn copy_file(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        s: &Path,
        d: &Path,
        rel: &Path,
        st: &nix::sys::stat::FileStat,
    ) -> Result<(), LayerError> {
        let src = Source {
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
        };
        let key = rel.to_string_lossy().into_owned();
        self.stats.files += 1;
        if self.record {
            self.manifest.insert(key.clone(), src);
        }
        if let Some((prev_tree, prev)) = &self.prev
            && prev.get(&key) == Some(&src)
            && std::fs::hard_link(prev_tree.join(rel), d).is_ok()
        {
            self.stats.shared += 1;
            return Ok(());
        }
        let fd = match openat(
            dir.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(LayerError::nix("open", s, e)),
        };
        let mut from = File::from(fd);
        if !from.metadata().map_err(io_at("stat", s))?.is_file() {
            return Ok(());
        }
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(d)
            .map_err(io_at("create", d))?;
        self.stats.copied_bytes += io::copy(&mut from, &mut to).map_err(io_at("copy", s))?;
        to.set_permissions(std::fs::Permissions::from_mode(st.st_mode & 0o7777))
            .map_err(io_at("chmod", d))?;
        Ok(())
    }
}

/// Snapshot `upper` into `dest` (a new directory), sharing unchanged files with the
/// previous snapshot `prev` when given.
pub fn snapshot(
    upper: &Path,
    dest: &Path,
    prev: Option<&Path>,
) -> Result<SnapshotStats, LayerError> {
    let prev = prev.and_then(|p| {
        let m: BTreeMap<String, Source> =
            serde_json::from_slice(&std::fs::read(p.join(MANIFEST)).ok()?).ok()?;
        Some((snapshot_tree(p), m))
    });
    std::fs::create_dir(dest).map_err(io_at("create directory", dest))?;
    let tree = snapshot_tree(dest);
    std::fs::create_dir(&tree).map_err(io_at("create directory", &tree))?;
    let mut c = Copier {
        prev,
        manifest: BTreeMap::new(),
        stats: SnapshotStats::default(),
        record: true,
    };
    if upper.exists() {
        let root = open_root(upper)?;
        copy_dir_markers(upper, &tree)?;
        c.copy_dir(&root, upper, &tree, Path::new(""))?;
    }
    let m = serde_json::to_vec(&c.manifest).expect("a manifest serialises");
    std::fs::write(dest.join(MANIFEST), m).map_err(io_at("write", dest))?;
    Ok(c.stats)
}

/// A stopped run: replace its `upper` with the snapshot's tree (whole), or, for `paths`,
/// each path's subtree (a path the snapshot shows as deleted becomes a whiteout). `work` is
/// the overlay's work directory, emptied.
pub fn restore_offline(
    snapshot: &Path,
    upper: &Path,
    work: &Path,
    workspace: &Path,
    paths: &[PathBuf],
) -> Result<(), LayerError> {
    let tree = snapshot_tree(snapshot);
    let mut c = Copier {
        prev: None,
        manifest: BTreeMap::new(),
        stats: SnapshotStats::default(),
        record: false,
    };
    if paths.is_empty() {
        let fresh = upper.with_file_name(".upper-restore");
        let _ = remove_all(&fresh);
        std::fs::create_dir(&fresh).map_err(io_at("create directory", &fresh))?;
        copy_dir_markers(&tree, &fresh)?;
        c.copy_dir(&open_root(&tree)?, &tree, &fresh, Path::new(""))?;
        remove_all(upper).map_err(io_at("remove", upper))?;
        std::fs::rename(&fresh, upper).map_err(io_at("rename", upper))?;
    } else {
        let snap_changes = scan(&tree, workspace)?;
        for p in paths {
            let (dst, src) = (upper.join(p), tree.join(p));
            let parent = dst.parent().unwrap_or(upper);
            if !parent.is_dir() {
                return Err(LayerError::UnsafePath {
                    path: p.clone(),
                    reason: "its parent directory is deleted or replaced in the run's layer; roll back the parent instead".into(),
                });
            }
            remove_all(&dst).map_err(io_at("remove", &dst))?;
            match std::fs::symlink_metadata(&src) {
                Ok(md) if md.is_dir() => {
                    std::fs::create_dir(&dst).map_err(io_at("create directory", &dst))?;
                    copy_dir_markers(&src, &dst)?;
                    c.copy_dir(&open_root(&src)?, &src, &dst, p)?;
                    std::fs::set_permissions(&dst, md.permissions())
                        .map_err(io_at("chmod", &dst))?;
                }
                Ok(_) => {
                    let parent_src = src.parent().unwrap_or(&tree);
                    let fd = open_root(parent_src)?;
                    let name = src.file_name().unwrap_or_default();
                    if let Some(st) = lstat_at(&fd, name).map_err(io_at("stat", parent_src))? {
                        c.copy_entry(&fd, name, &st, &src, &dst, p)?;
                    }
                }
                Err(_) => {
                    let deleted = snap_changes
                        .changes
                        .iter()
                        .any(|ch| ch.path == *p && ch.kind == ChangeKind::Deleted);
                    if deleted {
                        make_whiteout(&dst)?;
                    }
                }
            }
        }
    }
    remove_all(work).map_err(io_at("remove", work))?;
    std::fs::create_dir_all(work).map_err(io_at("create directory", work))?;
    Ok(())
}

/// Remove a tree (fixing permissions that block removal); absent is fine.
fn remove_all(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if !m.is_dir() => std::fs::remove_file(p),
        Ok(m) => {
            if m.permissions().mode() & 0o700 != 0o700 {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            }
            for e in std::fs::read_dir(p)? {
                remove_all(&e?.path())?;
            }
            std::fs::remove_dir(p)
        }
    }
}

/// One entry as a view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: FileKind,
    mode: u32,
    size: u64,
    target: Option<std::ffi::OsString>,
    /// Where its bytes are (files).
    at: PathBuf,
}

/// What a rollback writes and deletes, in the workspace's terms.
#[derive(Debug, Clone, Default)]
pub struct RollbackPlan {
    /// Paths to remove first (whole subtrees), parents before children.
    pub delete: Vec<PathBuf>,
    /// Entries to write after, parents first: (path, kind, mode, source of bytes or link
    /// target).
    pub write: Vec<(PathBuf, FileKind, u32, PathBuf)>,
}

impl RollbackPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.write.is_empty()
    }
}

/// Each changed path's entry in the view `upper` over `workspace`: `None` = absent.
fn view(upper: &Path, workspace: &Path) -> Result<BTreeMap<PathBuf, Option<Seen>>, LayerError> {
    let mut out = BTreeMap::new();
    for c in scan(upper, workspace)?.changes {
        let seen = c.new.map(|e| Seen {
            kind: e.kind,
            mode: e.mode & 0o777,
            size: e.size,
            target: e.target_raw.clone(),
            at: upper.join(&c.path),
        });
        out.insert(c.path, seen);
    }
    Ok(out)
}

fn lower_entry(workspace: &Path, rel: &Path) -> Option<Seen> {
    let p = workspace.join(rel);
    let md = std::fs::symlink_metadata(&p).ok()?;
    let kind = FileKind::of(&md);
    if kind.is_special() {
        return None;
    }
    Some(Seen {
        kind,
        mode: md.mode() & 0o777,
        size: md.size(),
        target: std::fs::read_link(&p).ok().map(PathBuf::into_os_string),
        at: p,
    })
}

/// `p` as `view` shows it: its changed entry there, else the workspace's.
fn seen_in(view: &BTreeMap<PathBuf, Option<Seen>>, workspace: &Path, p: &Path) -> Option<Seen> {
    match view.get(p) {
        Some(s) => s.clone(),
        None => lower_entry(workspace, p),
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let (Ok(mut x), Ok(mut y)) = (File::open(a), File::open(b)) else {
        return false;
    };
    let (mut bx, mut by) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let (Ok(n), Ok(m)) = (x.read(&mut bx), y.read(&mut by)) else {
            return false;
        };
        if n != m || bx[..n] != by[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

/// What makes the view `current` (the run's upper over `workspace`) show what the view
/// of `snapshot` shows, for every path (or those under `only`).
pub fn plan_rollback(
    current: &Path,
    snapshot: &Path,
    workspace: &Path,
    only: &[PathBuf],
) -> Result<RollbackPlan, LayerError> {
    let now = view(current, workspace)?;
    let then = view(&snapshot_tree(snapshot), workspace)?;
    let paths: BTreeSet<&PathBuf> = now
        .keys()
        .chain(then.keys())
        .filter(|p| only.is_empty() || only.iter().any(|o| p.starts_with(o)))
        .collect();
    let mut plan = RollbackPlan::default();
    let mut deleted: Vec<PathBuf> = Vec::new();
    for p in paths {
        // A directory deleted above: the snapshot shows nothing there (a path is deleted
        // only when the snapshot has none, or has a non-directory, in its place).
        if deleted.iter().any(|d| p.starts_with(d)) {
            continue;
        }
        let want = seen_in(&then, workspace, p);
        let have = seen_in(&now, workspace, p);
        match (&have, &want) {
            (None, None) => {}
            (Some(_), None) => {
                plan.delete.push(p.clone());
                deleted.push(p.clone());
            }
            (None, Some(w)) => {
                plan.write
                    .push((p.clone(), w.kind, w.mode, write_source(w)));
                if w.kind == FileKind::Dir {
                    lower_subtree(workspace, p, &then, &mut plan);
                }
            }
            (Some(h), Some(w)) => {
                let same = h.kind == w.kind
                    && h.mode == w.mode
                    && match w.kind {
                        FileKind::File => h.size == w.size && same_bytes(&h.at, &w.at),
                        FileKind::Symlink => h.target == w.target,
                        _ => true,
                    };
                if same {
                    continue;
                }
                let replace = h.kind != w.kind || w.kind == FileKind::Symlink;
                if replace {
                    plan.delete.push(p.clone());
                    if h.kind == FileKind::Dir {
                        deleted.push(p.clone());
                    }
                }
                plan.write
                    .push((p.clone(), w.kind, w.mode, write_source(w)));
                if replace && w.kind == FileKind::Dir {
                    lower_subtree(workspace, p, &then, &mut plan);
                }
            }
        }
    }
    Ok(plan)
}

/// A directory written anew at `dir`: what the snapshot's view shows beneath it from the
/// workspace (entries the snapshot has itself are written by the main pass).
fn lower_subtree(
    workspace: &Path,
    dir: &Path,
    then: &BTreeMap<PathBuf, Option<Seen>>,
    plan: &mut RollbackPlan,
) {
    let Ok(rd) = std::fs::read_dir(workspace.join(dir)) else {
        return;
    };
    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let rel = dir.join(&n);
        if then.contains_key(&rel) {
            continue;
        }
        if let Some(s) = lower_entry(workspace, &rel) {
            plan.write
                .push((rel.clone(), s.kind, s.mode, write_source(&s)));
            if s.kind == FileKind::Dir {
                lower_subtree(workspace, &rel, then, plan);
            }
        }
    }
}

fn entry_of(s: &Seen) -> Option<crate::scan::Entry> {
    let md = std::fs::symlink_metadata(&s.at).ok()?;
    crate::scan::Entry::from_metadata(&s.at, &md).ok()
}

/// What changed since a snapshot: the snapshot's view (its tree over `workspace`) as the
/// old side, the run's view now (`upper` over `workspace`) as the new, for [`crate::diff`]
/// and [`crate::summary`].
pub fn changes_since(
    snapshot: &Path,
    upper: &Path,
    workspace: &Path,
) -> Result<crate::scan::Changes, LayerError> {
    let now = view(upper, workspace)?;
    let then = view(&snapshot_tree(snapshot), workspace)?;
    let paths: BTreeSet<&PathBuf> = now.keys().chain(then.keys()).collect();
    let mut changes = Vec::new();
    for p in paths {
        let old = seen_in(&then, workspace, p);
        let new = seen_in(&now, workspace, p);
        let (kind, content_changed, mode_changed, type_changed) = match (&old, &new) {
            (None, None) => continue,
            (None, Some(_)) => (ChangeKind::Added, true, false, false),
            (Some(_), None) => (ChangeKind::Deleted, true, false, false),
            (Some(o), Some(n)) => {
                let type_changed = o.kind != n.kind;
                let content_changed = !type_changed
                    && match n.kind {
                        FileKind::File => o.size != n.size || !same_bytes(&o.at, &n.at),
                        FileKind::Symlink => o.target != n.target,
                        _ => false,
                    };
                let mode_changed = !type_changed && o.mode != n.mode;
                if !type_changed && !content_changed && !mode_changed {
                    continue;
                }
                (
                    ChangeKind::Modified,
                    content_changed,
                    mode_changed,
                    type_changed,
                )
            }
        };
        changes.push(crate::scan::Change {
            path: p.clone(),
            kind,
            old: old.as_ref().and_then(entry_of),
            new: new.as_ref().and_then(entry_of),
            content_changed,
            mode_changed,
            type_changed,
            copied_up: false,
            old_at: old.map(|s| s.at),
            new_at: new.map(|s| s.at),
            held: None,
        });
    }
    Ok(crate::scan::Changes {
        upper: upper.to_path_buf(),
        workspace: workspace.to_path_buf(),
        changes,
    })
}

fn write_source(s: &Seen) -> PathBuf {
    match (&s.kind, &s.target) {
        (FileKind::Symlink, Some(t)) => PathBuf::from(t),
        _ => s.at.clone(),
    }
}

/// The plan's writes as a tar stream (relative paths), for `tar -x -p` in the sandbox.
pub fn write_tar(plan: &RollbackPlan) -> Result<Vec<u8>, LayerError> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    for (rel, kind, mode, src) in &plan.write {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        let r = match kind {
            FileKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, rel, io::empty())
            }
            FileKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, rel, src)
            }
            FileKind::File => {
                let fd = openat(
                    nix::fcntl::AT_FDCWD,
                    src.as_path(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
                .map_err(|e| LayerError::nix("open", src, e))?;
                let f = File::from(fd);
                let len = f.metadata().map_err(io_at("stat", src))?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(len);
                b.append_data(&mut h, rel, f.take(len))
            }
            _ => continue,
        };
        r.map_err(io_at("write the rollback stream", rel))?;
    }
    b.into_inner()
        .map_err(io_at("write the rollback stream", Path::new("")))
}
