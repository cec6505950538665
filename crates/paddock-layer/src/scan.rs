//! Reading an overlayfs upper directory and classifying it against the workspace.
//!
//! The merged view a run saw is `upper` over `workspace` (the lower). Rules, as the kernel
//! applies them with `redirect_dir=off, metacopy=off, index=off`:
//!
//! * a whiteout in upper (char device 0/0, or a zero-size regular file carrying the
//!   `{trusted,user}.overlay.whiteout` xattr, as used in "xwhiteouts" directories) hides the
//!   lower entry of the same name: the path is deleted;
//! * a directory in upper with `overlay.opaque = "y"` hides the whole lower directory: lower
//!   entries missing from upper are deleted (opacity is inherited by subdirectories).
//!   `opaque = "x"` only marks a directory that contains xwhiteouts; it is not opaque;
//! * any other upper directory is merged with the lower directory of the same name, if the
//!   lower has a directory there (a lower file or symlink is simply replaced);
//! * any non-directory in upper replaces the lower entry.
//!
//! A path is *added* if the workspace has nothing there, *modified* otherwise. A copied-up
//! file whose bytes and permission bits equal the workspace's is not a change.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::error::LayerError;
use crate::fsutil::overlay_xattr;

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe (never applied).
    Fifo,
    /// Unix socket (never applied).
    Socket,
    /// Character device (never applied).
    CharDevice,
    /// Block device (never applied).
    BlockDevice,
}

impl FileKind {
    pub(crate) fn of(md: &Metadata) -> FileKind {
        let ft = md.file_type();
        if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else if ft.is_char_device() {
            FileKind::CharDevice
        } else if ft.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::File
        }
    }

    /// A human name ("regular file", "fifo", ...).
    pub fn describe(&self) -> &'static str {
        match self {
            FileKind::File => "regular file",
            FileKind::Dir => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
        }
    }

    /// Device nodes, fifos and sockets: shown, never applied.
    pub fn is_special(&self) -> bool {
        !matches!(self, FileKind::File | FileKind::Dir | FileKind::Symlink)
    }

    /// The `S_IFMT` bits git-style mode strings use.
    pub(crate) fn ifmt(&self) -> u32 {
        match self {
            FileKind::File => 0o100000,
            FileKind::Dir => 0o040000,
            FileKind::Symlink => 0o120000,
            FileKind::Fifo => 0o010000,
            FileKind::Socket => 0o140000,
            FileKind::CharDevice => 0o020000,
            FileKind::BlockDevice => 0o060000,
        }
    }
}

/// One side (layer or workspace) of a changed path.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// What it is.
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes (regular files; for symlinks the target length).
    pub size: u64,
    /// Symlink target, for display (lossy UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip)]
    pub(crate) target_raw: Option<OsString>,
    #[serde(skip)]
    pub(crate) mtime_ns: i128,
}

impl Entry {
    pub(crate) fn from_metadata(path: &Path, md: &Metadata) -> io::Result<Entry> {
        let kind = FileKind::of(md);
        let target_raw = if kind == FileKind::Symlink {
            Some(fs::read_link(path)?.into_os_string())
        } else {
            None
        };
        Ok(Entry {
            kind,
            mode: md.mode() & 0o7777,
            size: md.size(),
            target: target_raw
                .as_ref()
                .map(|t| t.to_string_lossy().into_owned()),
            target_raw,
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        })
    }

    /// Git-style full mode, e.g. `0o100644`.
    pub fn git_mode(&self) -> u32 {
        self.kind.ifmt() | self.mode
    }
}

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The workspace has nothing at this path; the run created it.
    Added,
    /// The workspace has an entry here; the run changed its content, mode or type.
    Modified,
    /// The run deleted the workspace's entry.
    Deleted,
}

impl ChangeKind {
    /// The `git status --short` letter.
    pub fn letter(&self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Path relative to the workspace root.
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// Added, modified or deleted.
    pub kind: ChangeKind,
    /// The workspace's entry (absent for added paths).
    pub old: Option<Entry>,
    /// The layer's entry (absent for deleted paths).
    pub new: Option<Entry>,
    /// File bytes or symlink target differ.
    pub content_changed: bool,
    /// Permission bits differ (same type).
    pub mode_changed: bool,
    /// The type differs (e.g. a file became a directory).
    pub type_changed: bool,
    /// The layer's entry was copied up from the workspace (overlay `origin` xattr).
    #[serde(skip)]
    pub(crate) copied_up: bool,
    /// Where each side's bytes are when not at the usual places (workspace, upper): a
    /// diff between a snapshot and now ([`crate::changes_since`]).
    #[serde(skip)]
    pub(crate) old_at: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) new_at: Option<PathBuf>,
    /// Held back from an apply unless asked for ([`crate::Protection::mark`] sets it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::protect::Held>,
}

/// Every change a run's layer makes to its workspace, sorted by path (parents first).
#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    /// The overlay upper directory that was scanned.
    #[serde(serialize_with = "ser_path")]
    pub upper: PathBuf,
    /// The workspace (lower directory).
    #[serde(serialize_with = "ser_path")]
    pub workspace: PathBuf,
    /// The changes, parents before children.
    pub changes: Vec<Change>,
}

impl Changes {
    /// True if the layer changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

pub(crate) fn ser_path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// Scan `upper` against `workspace` and return every change, parents first.
pub fn scan(upper: &Path, workspace: &Path) -> Result<Changes, LayerError> {
    let mut changes = Vec::new();
    walk(upper, workspace, &mut |c| {
        changes.push(c);
        ControlFlow::Continue(())
    })?;
    Ok(Changes {
        upper: upper.to_path_buf(),
        workspace: workspace.to_path_buf(),
        changes,
    })
}

/// True if the layer changes anything. Stops at the first change found.
pub fn has_changes(upper: &Path, workspace: &Path) -> Result<bool, LayerError> {
    let mut found = false;
    walk(upper, workspace, &mut |_| {
        found = true;
        ControlFlow::Break(())
    })?;
    Ok(found)
}

/// What the lower layer contributes below an upper directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lower {
    /// No lower directory here: every upper entry is added.
    None,
    /// Lower directory merged with upper.
    Merge,
    /// Lower directory hidden by an opaque upper directory (here or above).
    Replace,
}

type Emit<'a> = dyn FnMut(Change) -> ControlFlow<()> + 'a;

fn walk(upper: &Path, workspace: &Path, emit: &mut Emit<'_>) -> Result<(), LayerError> {
    for (what, p) in [("layer", upper), ("workspace", workspace)] {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => {}
            _ => {
                return Err(LayerError::NotADirectory {
                    what,
                    path: p.to_path_buf(),
                });
            }
        }
    }
    let mut w = Walker {
        upper,
        workspace,
        emit,
    };
    let _ = w.dir(Path::new(""), Lower::Merge)?;
    Ok(())
}

struct Walker<'a, 'e> {
    upper: &'a Path,
    workspace: &'a Path,
    emit: &'a mut Emit<'e>,
}

fn lstat_opt(p: &Path) -> Result<Option<Metadata>, LayerError> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LayerError::io("stat", p, e)),
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, LayerError> {
    let mut names = fs::read_dir(dir)
        .map_err(|e| LayerError::io("read directory", dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LayerError::io("read directory", dir, e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Is this upper entry a whiteout?
fn is_whiteout(path: &Path, md: &Metadata) -> Result<bool, LayerError> {
    let ft = md.file_type();
    if ft.is_char_device() && md.rdev() == 0 {
        return Ok(true);
    }
    if ft.is_file() && md.size() == 0 {
        return Ok(overlay_xattr(path, "whiteout")
            .map_err(|e| LayerError::io("read xattr", path, e))?
            .is_some());
    }
    Ok(false)
}

/// Compare two regular files byte by byte.
pub(crate) fn same_content(a: &Path, b: &Path) -> Result<bool, LayerError> {
    let mut fa = File::open(a).map_err(|e| LayerError::io("open", a, e))?;
    let mut fb = File::open(b).map_err(|e| LayerError::io("open", b, e))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| LayerError::io("read", a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| LayerError::io("read", b, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

macro_rules! emit {
    ($self:ident, $c:expr) => {{
        let change = $c;
        if ($self.emit)(change).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }};
}

impl Walker<'_, '_> {
    fn entry(&self, path: &Path, md: &Metadata) -> Result<Entry, LayerError> {
        Entry::from_metadata(path, md).map_err(|e| LayerError::io("read link", path, e))
    }

    fn dir(&mut self, rel: &Path, lower: Lower) -> Result<ControlFlow<()>, LayerError> {
        let udir = self.upper.join(rel);
        let unames = sorted_names(&udir)?;
        let mut names: BTreeSet<Vec<u8>> = unames.iter().map(|n| n.as_bytes().to_vec()).collect();
        let upper_set: BTreeSet<Vec<u8>> = names.clone();
        if lower == Lower::Replace {
            for n in sorted_names(&self.workspace.join(rel))? {
                names.insert(n.as_bytes().to_vec());
            }
        }
        for name in names {
            let name = OsStr::from_bytes(&name);
            let rel_child = rel.join(name);
            let host_path = self.workspace.join(&rel_child);
            let host_md = if lower == Lower::None {
                None
            } else {
                lstat_opt(&host_path)?
            };
            if !upper_set.contains(name.as_bytes()) {
                // Only in the lower, under an opaque directory: deleted.
                if let Some(hmd) = host_md {
                    emit!(self, self.deleted(&rel_child, &host_path, &hmd)?);
                    if hmd.is_dir() && self.deleted_tree(&rel_child)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                continue;
            }
            let up_path = self.upper.join(&rel_child);
            let Some(umd) = lstat_opt(&up_path)? else {
                continue; // vanished while scanning
            };
            if is_whiteout(&up_path, &umd)? {
                if let Some(hmd) = host_md {
                    emit!(self, self.deleted(&rel_child, &host_path, &hmd)?);
                    if hmd.is_dir() && self.deleted_tree(&rel_child)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                continue;
            }
            let new = self.entry(&up_path, &umd)?;
            if new.kind == FileKind::Dir {
                if overlay_xattr(&up_path, "redirect")
                    .map_err(|e| LayerError::io("read xattr", &up_path, e))?
                    .is_some()
                {
                    return Err(LayerError::UnsupportedLayer {
                        path: up_path,
                        reason: "directory has an overlay redirect xattr".into(),
                    });
                }
                let opaque = overlay_xattr(&up_path, "opaque")
                    .map_err(|e| LayerError::io("read xattr", &up_path, e))?
                    .is_some_and(|v| v == b"y");
                let child_lower = match &host_md {
                    Some(h) if h.is_dir() => {
                        if opaque || lower == Lower::Replace {
                            Lower::Replace
                        } else {
                            Lower::Merge
                        }
                    }
                    _ => Lower::None,
                };
                match host_md {
                    None => emit!(self, added(&rel_child, new, false)),
                    Some(hmd) if hmd.is_dir() => {
                        let old = self.entry(&host_path, &hmd)?;
                        if old.mode != new.mode {
                            emit!(
                                self,
                                Change {
                                    path: rel_child.clone(),
                                    kind: ChangeKind::Modified,
                                    old: Some(old),
                                    new: Some(new),
                                    content_changed: false,
                                    mode_changed: true,
                                    type_changed: false,
                                    copied_up: true,
                                    held: None,
                                    old_at: None,
                                    new_at: None,
                                }
                            );
                        }
                    }
                    Some(hmd) => {
                        let old = self.entry(&host_path, &hmd)?;
                        emit!(self, type_change(&rel_child, old, new));
                    }
                }
                if self.dir(&rel_child, child_lower)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                continue;
            }
            // Non-directory in upper.
            match host_md {
                None => {
                    let copied_up = if new.kind.is_special() {
                        false
                    } else {
                        overlay_xattr(&up_path, "origin")
                            .map_err(|e| LayerError::io("read xattr", &up_path, e))?
                            .is_some()
                    };
                    emit!(self, added(&rel_child, new, copied_up));
                }
                Some(hmd) => {
                    let old = self.entry(&host_path, &hmd)?;
                    if old.kind != new.kind {
                        emit!(self, type_change(&rel_child, old, new));
                        if hmd.is_dir() && self.deleted_tree(&rel_child)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                        continue;
                    }
                    let content_changed = match new.kind {
                        FileKind::File => {
                            old.size != new.size || !same_content(&host_path, &up_path)?
                        }
                        FileKind::Symlink => old.target_raw != new.target_raw,
                        // Same special kind: compare device numbers.
                        _ => hmd.rdev() != umd.rdev(),
                    };
                    let mode_changed = old.mode != new.mode && new.kind != FileKind::Symlink;
                    if content_changed || mode_changed {
                        emit!(
                            self,
                            Change {
                                path: rel_child,
                                kind: ChangeKind::Modified,
                                old: Some(old),
                                new: Some(new),
                                content_changed,
                                mode_changed,
                                type_changed: false,
                                copied_up: true,
                                held: None,
                                old_at: None,
                                new_at: None,
                            }
                        );
                    }
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn deleted(&self, rel: &Path, host_path: &Path, hmd: &Metadata) -> Result<Change, LayerError> {
        Ok(Change {
            path: rel.to_path_buf(),
            kind: ChangeKind::Deleted,
            old: Some(self.entry(host_path, hmd)?),
            new: None,
            content_changed: true,
            mode_changed: false,
            type_changed: false,
            copied_up: false,
            held: None,
            old_at: None,
            new_at: None,
        })
    }

    /// Emit a deletion for everything below the workspace directory `rel` (pre-order).
    fn deleted_tree(&mut self, rel: &Path) -> Result<ControlFlow<()>, LayerError> {
        let dir = self.workspace.join(rel);
        for name in sorted_names(&dir)? {
            let child = rel.join(&name);
            let hp = self.workspace.join(&child);
            let Some(hmd) = lstat_opt(&hp)? else { continue };
            emit!(self, self.deleted(&child, &hp, &hmd)?);
            if hmd.is_dir() && self.deleted_tree(&child)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

fn added(rel: &Path, new: Entry, copied_up: bool) -> Change {
    Change {
        path: rel.to_path_buf(),
        kind: ChangeKind::Added,
        old: None,
        new: Some(new),
        content_changed: true,
        mode_changed: false,
        type_changed: false,
        copied_up,
        held: None,
        old_at: None,
        new_at: None,
    }
}

fn type_change(rel: &Path, old: Entry, new: Entry) -> Change {
    Change {
        path: rel.to_path_buf(),
        kind: ChangeKind::Modified,
        old: Some(old),
        new: Some(new),
        content_changed: true,
        mode_changed: false,
        type_changed: true,
        copied_up: true,
        held: None,
        old_at: None,
        new_at: None,
    }
}
