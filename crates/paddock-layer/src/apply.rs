//! Applying a scanned layer to the real workspace, all-or-nothing.
//!
//! Steps:
//! 1. Finish (roll back) any interrupted earlier apply: [`recover`].
//! 2. Plan against the workspace as it is now, and check for conflicts: a path the run
//!    changed whose host entry changed since the run started (ctime or mtime newer than the
//!    run's start), appeared, or disappeared.
//! 3. Stage every new entry (file copy, symlink, empty directory) in
//!    `<workspace>/.paddock-apply-<id>/s/` — the same filesystem, so commits are renames.
//! 4. Write the journal (the full list of operations), then commit: move each replaced or
//!    deleted host entry to `.paddock-apply-<id>/b/` (backups), rename staged entries into
//!    place, then set final directory modes.
//! 5. On any failure, undo in reverse; every undo step checks the filesystem state, so the
//!    same procedure rolls back a process that was killed at any point ([`recover`]).
//! 6. Mark the journal committed and delete the staging directory (and with it the backups).
//!
//! All writes go through directory file descriptors opened component by component with
//! `O_NOFOLLOW`, so a symlink on the host can never redirect a write, and every rename into
//! the workspace uses `RENAME_NOREPLACE`, so nothing is overwritten without a backup.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{FileStat, Mode, fchmod, futimens, mkdirat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat, symlinkat};
use serde::{Deserialize, Serialize};

use crate::diff::{Summary, summary};
use crate::error::LayerError;
use crate::fsutil::{WalkError, dir_flags, is_plain_relative, lstat_at, open_dir_beneath};
use crate::protect::Held;
use crate::scan::{Change, ChangeKind, Changes, Entry, FileKind};

/// Name prefix of the staging directory at the workspace root.
pub const STAGING_PREFIX: &str = ".paddock-apply-";

const JOURNAL: &str = "journal";
const COMMITTED: &str = "committed";

/// Options for [`apply_with`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// When the run started: host entries changed after this are conflicts.
    pub run_started: SystemTime,
    /// Apply even if there are conflicts (the run's version wins).
    pub force: bool,
    /// Apply held changes under `.git` too (see [`crate::Protection`]).
    pub include_git: bool,
    /// Apply held auto-run files too.
    pub include_autorun: bool,
    /// Test hook: fail (and roll back) before commit operation number N.
    #[doc(hidden)]
    pub fail_before_op: Option<usize>,
    /// Test hook: stop dead before commit operation number N, as if the process was killed.
    #[doc(hidden)]
    pub crash_before_op: Option<usize>,
}

impl ApplyOptions {
    /// Options with the given run start time, no force.
    pub fn new(run_started: SystemTime) -> Self {
        ApplyOptions {
            run_started,
            force: false,
            include_git: false,
            include_autorun: false,
            fail_before_op: None,
            crash_before_op: None,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The changes applied.
    pub applied: Summary,
    /// Conflicting paths that were overwritten because of `force`.
    #[serde(serialize_with = "ser_paths")]
    pub conflicts_overridden: Vec<PathBuf>,
    /// Paths whose setuid/setgid bits were stripped.
    #[serde(serialize_with = "ser_paths")]
    pub setid_stripped: Vec<PathBuf>,
    /// Interrupted earlier applies that were cleaned up first.
    pub recovered: RecoverReport,
    /// Changes held back (not applied): `.git` and auto-run files without their flag.
    pub held: Summary,
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    /// Staging dirs of interrupted applies that were rolled back.
    #[serde(serialize_with = "ser_paths")]
    pub rolled_back: Vec<PathBuf>,
    /// Staging dirs of applies that had committed (or never started) and were just removed.
    #[serde(serialize_with = "ser_paths")]
    pub cleaned: Vec<PathBuf>,
}

fn ser_paths<S: serde::Serializer>(p: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(p.len()))?;
    for x in p {
        seq.serialize_element(&x.to_string_lossy())?;
    }
    seq.end()
}

/// One journaled commit operation. Paths are workspace-relative, as raw bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Op {
    /// Move the host entry at `path` to `b/<idx>`.
    Backup { idx: u64, path: Vec<u8> },
    /// Move `s/<idx>` to `path` (which must not exist).
    Put { idx: u64, path: Vec<u8> },
    /// Set the mode of the directory at `path`.
    Chmod { path: Vec<u8>, old: u32, new: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DirTime {
    path: Vec<u8>,
    atime: (i64, i64),
    mtime: (i64, i64),
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    version: u32,
    /// Absolute path of the layer's upper dir (for the restored-entries ledger).
    #[serde(default)]
    upper: Vec<u8>,
    ops: Vec<Op>,
    dir_times: Vec<DirTime>,
}

/// A host entry a rollback moved back into place. Moving it changed its ctime, so a later
/// apply must not mistake that for a change on the host: entries are exempt from the ctime
/// check while their (dev, ino, ctime) still match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Restored {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

/// Where the ledger of restored entries lives: beside the upper dir, in the run's layer
/// dir (never in the workspace, never visible to the sandbox).
fn ledger_path(upper: &Path) -> Option<PathBuf> {
    let name = upper.file_name()?;
    let mut n = name.to_os_string();
    n.push(".restored.json");
    Some(upper.parent()?.join(n))
}

fn load_ledger(upper: &Path) -> HashSet<(u64, u64, (i64, i64))> {
    ledger_path(upper)
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Vec<Restored>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.dev, r.ino, r.ctime))
        .collect()
}

/// Best effort: a missing ledger only costs the user a spurious conflict.
fn save_ledger(upper: &Path, restored: &[Restored]) {
    if restored.is_empty() || upper.as_os_str().is_empty() {
        return;
    }
    let Some(p) = ledger_path(upper) else { return };
    let mut all: Vec<Restored> = std::fs::read(&p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    all.extend(restored.iter().cloned());
    let Ok(data) = serde_json::to_vec(&all) else {
        return;
    };
    let tmp = p.with_extension("json.tmp");
    if std::fs::write(&tmp, data).is_ok() {
        let _ = std::fs::rename(&tmp, &p);
    }
}

/// An item to stage before committing.
struct Stage<'a> {
    idx: u64,
    change: &'a Change,
    owner: Option<(u32, u32)>,
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn path_of(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

fn ns(sec: i64, nsec: i64) -> i128 {
    i128::from(sec) * 1_000_000_000 + i128::from(nsec)
}

fn system_time_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or_default(),
    )
}

fn walk_err(rel: &Path, e: WalkError) -> LayerError {
    match e {
        WalkError::NotADir(at) => LayerError::UnsafePath {
            path: rel.to_path_buf(),
            reason: format!(
                "{} on the host is a symlink or not a directory; paddock never writes through symlinks",
                at.display()
            ),
        },
        WalkError::Io(at, source) => LayerError::io("open directory", at, source),
    }
}

fn is_reserved(rel: &Path) -> bool {
    rel.components().next().is_some_and(|c| {
        c.as_os_str()
            .as_bytes()
            .starts_with(STAGING_PREFIX.as_bytes())
    })
}

/// Open the workspace root and take the apply lock on it.
fn open_root(workspace: &Path) -> Result<(PathBuf, OwnedFd, Flock<OwnedFd>), LayerError> {
    let ws = workspace
        .canonicalize()
        .map_err(|e| LayerError::io("resolve workspace", workspace, e))?;
    let root = openat(
        nix::fcntl::AT_FDCWD,
        &ws,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::nix("open workspace", &ws, e))?;
    // flock belongs to the open file description: use a fresh one for the lock.
    let lockfd = openat(
        root.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::nix("open workspace", &ws, e))?;
    let lock = Flock::lock(lockfd, FlockArg::LockExclusive)
        .map_err(|(_, e)| LayerError::nix("lock workspace", &ws, e))?;
    Ok((ws, root, lock))
}

/// Apply a scanned layer to its workspace. See [`apply_with`].
pub fn apply(
    changes: &Changes,
    run_started: SystemTime,
    force: bool,
) -> Result<ApplyReport, LayerError> {
    let mut o = ApplyOptions::new(run_started);
    o.force = force;
    apply_with(changes, &o)
}

/// Apply a scanned layer to its workspace, all-or-nothing.
///
/// `changes` is normally the scan the user reviewed; the staged content is read from the
/// layer again and must still match it ([`LayerError::LayerChanged`] otherwise).
pub fn apply_with(changes: &Changes, opts: &ApplyOptions) -> Result<ApplyReport, LayerError> {
    // Held changes (marked by `Protection::mark`) stay in the layer unless asked for.
    let (kept, held): (Vec<Change>, Vec<Change>) =
        changes
            .changes
            .iter()
            .cloned()
            .partition(|c| match &c.held {
                None => true,
                Some(Held::Git) => opts.include_git,
                Some(Held::Autorun { .. }) => opts.include_autorun,
            });
    let held = summary(&Changes {
        changes: held,
        upper: changes.upper.clone(),
        workspace: changes.workspace.clone(),
    });
    let owned = Changes {
        changes: kept,
        upper: changes.upper.clone(),
        workspace: changes.workspace.clone(),
    };
    let changes = &owned;
    let (ws, root, _lock) = open_root(&changes.workspace)?;
    let recovered = recover_locked(&ws, &root, Some(&changes.upper))?;

    // Refusals that no `force` overrides.
    if let Some(c) = changes.changes.iter().find(|c| is_reserved(&c.path)) {
        return Err(LayerError::ReservedName {
            path: c.path.clone(),
        });
    }
    if let Some(c) = changes.changes.iter().find(|c| !is_plain_relative(&c.path)) {
        return Err(LayerError::UnsafePath {
            path: c.path.clone(),
            reason: "not a plain relative path".into(),
        });
    }
    let special: Vec<(PathBuf, FileKind)> = changes
        .changes
        .iter()
        .filter_map(|c| c.new.as_ref().map(|n| (c, n.kind)))
        .filter(|(_, k)| k.is_special())
        .map(|(c, k)| (c.path.clone(), k))
        .collect();
    if !special.is_empty() {
        return Err(LayerError::UnsupportedFileType { paths: special });
    }

    let plan = plan(changes, &root, opts)?;
    if !plan.conflicts.is_empty() && !opts.force {
        return Err(LayerError::Conflicts {
            paths: plan.conflicts,
        });
    }
    if let Some(p) = plan.missing_parent.first() {
        return Err(LayerError::io(
            "open directory",
            p,
            io::Error::from(io::ErrorKind::NotFound),
        ));
    }

    let report = ApplyReport {
        applied: summary(changes),
        conflicts_overridden: plan.conflicts.clone(),
        setid_stripped: changes
            .changes
            .iter()
            .filter(|c| c.new.as_ref().is_some_and(|n| n.mode & 0o6000 != 0))
            .map(|c| c.path.clone())
            .collect(),
        recovered,
        held,
    };
    if plan.ops.is_empty() {
        return Ok(report);
    }

    // Record directory times now, before the staging dir touches the root.
    let dir_times = plan
        .parents
        .iter()
        .filter_map(|p| dir_time(&root, p).ok())
        .collect::<Vec<_>>();

    let st = Staging::create(&ws, &root)?;
    let result = (|| {
        for s in &plan.stage {
            stage_one(changes, &st, s)?;
        }
        nix::unistd::syncfs(root.as_fd()).map_err(|e| LayerError::nix("sync", &ws, e))?;
        st.write_journal(&Journal {
            version: 1,
            upper: bytes(&changes.upper),
            ops: plan.ops.clone(),
            dir_times: dir_times.clone(),
        })
    })();
    if let Err(e) = result {
        // Nothing in the workspace changed yet.
        let _ = st.remove();
        restore_times(&root, &dir_times);
        return Err(e);
    }

    // Commit operations, then the commit point itself (durable, then marked). A failure
    // anywhere before the mark rolls everything back.
    let n = plan.ops.len();
    for i in 0..=n {
        if opts.crash_before_op == Some(i) {
            return Err(LayerError::Journal {
                path: st.path.clone(),
                reason: "simulated crash (test hook)".into(),
            });
        }
        let r = if opts.fail_before_op == Some(i) {
            Err(LayerError::io(
                "apply",
                Path::new("<test hook>"),
                io::Error::other("injected failure"),
            ))
        } else if i < n {
            do_op(&root, &st, &plan.ops[i])
        } else {
            nix::unistd::syncfs(root.as_fd())
                .map_err(|e| LayerError::nix("sync", &ws, e))
                .and_then(|()| st.mark_committed())
        };
        if let Err(e) = r {
            let mut restored = Vec::new();
            let r = undo(
                &root,
                &st,
                &plan.ops[..n.min(i + 1)],
                &dir_times,
                &mut restored,
            );
            save_ledger(&changes.upper, &restored);
            return Err(match r {
                Ok(()) => {
                    let _ = st.remove();
                    restore_times(&root, &dir_times);
                    LayerError::RolledBack {
                        source: Box::new(e),
                    }
                }
                Err(re) => LayerError::RollbackFailed {
                    staging: st.path.clone(),
                    source: Box::new(e),
                    rollback: Box::new(re),
                },
            });
        }
    }

    // Committed. Removing the staging dir (now only old backups) is best effort: if it
    // fails, the next apply or recover() removes it without undoing anything.
    let _ = st.remove();
    if let Some(p) = ledger_path(&changes.upper) {
        let _ = std::fs::remove_file(p);
    }
    // The root only changed because of the staging dir: put its times back.
    if !plan.root_touched {
        restore_times(&root, &dir_times[..dir_times.len().min(1)]);
    }
    Ok(report)
}

struct Plan<'a> {
    ops: Vec<Op>,
    stage: Vec<Stage<'a>>,
    conflicts: Vec<PathBuf>,
    missing_parent: Vec<PathBuf>,
    /// Host directories whose entries the commit changes ("" = root first).
    parents: Vec<PathBuf>,
    root_touched: bool,
}

/// Changed on the host since `started`, not counting the ctime bump of a rollback.
fn host_changed(st: &FileStat, started: i128, ledger: &HashSet<(u64, u64, (i64, i64))>) -> bool {
    if ns(st.st_mtime, st.st_mtime_nsec) > started {
        return true;
    }
    ns(st.st_ctime, st.st_ctime_nsec) > started
        && !ledger.contains(&(st.st_dev, st.st_ino, (st.st_ctime, st.st_ctime_nsec)))
}

fn kind_of(st: &FileStat) -> FileKind {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        _ => FileKind::File,
    }
}

fn plan<'a>(
    changes: &'a Changes,
    root: &OwnedFd,
    opts: &ApplyOptions,
) -> Result<Plan<'a>, LayerError> {
    let started = system_time_ns(opts.run_started);
    let am_root = nix::unistd::geteuid().is_root();
    let mut ops = Vec::new();
    let mut chmods = Vec::new();
    let mut stage = Vec::new();
    let mut conflicts = Vec::new();
    let mut missing_parent = Vec::new();
    // Host paths moved away (with their subtrees), and directories we create.
    let mut removed: HashSet<PathBuf> = HashSet::new();
    let mut ours: BTreeMap<PathBuf, Option<(u32, u32)>> = BTreeMap::new();
    let mut parents: Vec<PathBuf> = vec![PathBuf::new()];
    let mut parent_set: HashSet<PathBuf> = HashSet::new();
    let mut next_idx = 0u64;
    let ledger = load_ledger(&changes.upper);

    for c in &changes.changes {
        let (parent, name) = split(&c.path);
        // Below something we removed or created?
        let mut in_ours = None;
        let mut in_removed = false;
        for a in c.path.ancestors().skip(1) {
            if let Some(o) = ours.get(a) {
                in_ours = Some(*o);
                break;
            }
            if removed.contains(a) {
                in_removed = true;
                break;
            }
        }
        let (host, parent_owner) = if let Some(owner) = in_ours {
            (None, owner)
        } else {
            let pfd = match open_dir_beneath(root, parent) {
                Ok(fd) => fd,
                Err(WalkError::Io(_, e)) if in_removed && e.kind() == io::ErrorKind::NotFound => {
                    continue; // already gone on the host too
                }
                Err(WalkError::Io(at, e)) if e.kind() == io::ErrorKind::NotFound => {
                    conflicts.push(c.path.clone());
                    missing_parent.push(at);
                    continue;
                }
                Err(e) => return Err(walk_err(&c.path, e)),
            };
            let host = lstat_at(&pfd, name).map_err(|e| LayerError::io("stat", &c.path, e))?;
            let powner = nix::sys::stat::fstat(pfd.as_fd())
                .map(|s| (s.st_uid, s.st_gid))
                .ok();
            (host, powner)
        };

        // Conflicts: host changes since the run started to anything this change replaces.
        if in_ours.is_none() {
            let new_kind = c.new.as_ref().map(|n| n.kind);
            let conflict = match (c.kind, &host) {
                // Both created a directory: they merge; their children are checked one by one.
                (ChangeKind::Added, Some(h)) => {
                    !(kind_of(h) == FileKind::Dir && new_kind == Some(FileKind::Dir))
                }
                (ChangeKind::Added, None) => {
                    // Copied up from the host, yet the host no longer has it, and the host
                    // directory's entries changed since the run started: most likely
                    // deleted on the host. (Not for the root, whose entries churn.)
                    c.copied_up
                        && !parent.as_os_str().is_empty()
                        && open_dir_beneath(root, parent)
                            .ok()
                            .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
                            .is_some_and(|s| host_changed(&s, started, &ledger))
                }
                (ChangeKind::Modified, None) => true,
                (ChangeKind::Deleted, None) => false,
                (_, Some(h)) => {
                    let hk = kind_of(h);
                    let replaced = new_kind != Some(FileKind::Dir) || hk != FileKind::Dir;
                    c.old.as_ref().is_some_and(|o| o.kind != hk)
                        // A file's content or metadata; a removed directory's entries.
                        || ((hk != FileKind::Dir || replaced) && host_changed(h, started, &ledger))
                }
            };
            if conflict {
                conflicts.push(c.path.clone());
            }
        }
        if in_removed && in_ours.is_none() {
            // Goes with an ancestor that is moved away as a whole.
            continue;
        }

        // Operations.
        let touch_parent = |parents: &mut Vec<PathBuf>, parent_set: &mut HashSet<PathBuf>| {
            if in_ours.is_none() && parent_set.insert(parent.to_path_buf()) {
                parents.push(parent.to_path_buf());
            }
        };
        let host_kind = host.as_ref().map(kind_of);
        match (&c.new, host_kind) {
            (None, None) => {}
            (None, Some(_)) => {
                ops.push(Op::Backup {
                    idx: next_idx,
                    path: bytes(&c.path),
                });
                next_idx += 1;
                removed.insert(c.path.clone());
                touch_parent(&mut parents, &mut parent_set);
            }
            (Some(new), Some(FileKind::Dir)) if new.kind == FileKind::Dir => {
                let h = host.as_ref().expect("host exists");
                let old_mode = h.st_mode & 0o7777;
                let new_mode = new.mode & !0o6000;
                if old_mode != new_mode {
                    chmods.push(Op::Chmod {
                        path: bytes(&c.path),
                        old: old_mode,
                        new: new_mode,
                    });
                }
            }
            (Some(new), hk) => {
                let owner = match &host {
                    Some(h) => Some((h.st_uid, h.st_gid)),
                    None => parent_owner,
                };
                if hk.is_some() {
                    ops.push(Op::Backup {
                        idx: next_idx,
                        path: bytes(&c.path),
                    });
                    next_idx += 1;
                    removed.insert(c.path.clone());
                }
                ops.push(Op::Put {
                    idx: next_idx,
                    path: bytes(&c.path),
                });
                stage.push(Stage {
                    idx: next_idx,
                    change: c,
                    owner: if am_root { owner } else { None },
                });
                next_idx += 1;
                touch_parent(&mut parents, &mut parent_set);
                if new.kind == FileKind::Dir {
                    ours.insert(c.path.clone(), owner);
                    // Staged with 0700 so children can be placed; final mode at the end.
                    chmods.push(Op::Chmod {
                        path: bytes(&c.path),
                        old: 0o700,
                        new: new.mode & !0o6000,
                    });
                }
            }
        }
    }
    // Final modes, deepest first, so a read-only directory is closed last.
    chmods.reverse();
    ops.extend(chmods);
    let root_touched = parent_set.contains(Path::new(""));
    Ok(Plan {
        ops,
        stage,
        conflicts,
        missing_parent,
        parents,
        root_touched,
    })
}

fn dir_time(root: &OwnedFd, rel: &Path) -> Result<DirTime, LayerError> {
    let fd = open_dir_beneath(root, rel).map_err(|e| walk_err(rel, e))?;
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| LayerError::nix("stat", rel, e))?;
    Ok(DirTime {
        path: bytes(rel),
        atime: (st.st_atime, st.st_atime_nsec),
        mtime: (st.st_mtime, st.st_mtime_nsec),
    })
}

fn restore_times(root: &OwnedFd, times: &[DirTime]) {
    for t in times {
        let rel = path_of(&t.path);
        if !rel.as_os_str().is_empty() && !is_plain_relative(&rel) {
            continue;
        }
        if let Ok(fd) = open_dir_beneath(root, &rel) {
            let _ = futimens(
                fd.as_fd(),
                &TimeSpec::new(t.atime.0, t.atime.1),
                &TimeSpec::new(t.mtime.0, t.mtime.1),
            );
        }
    }
}

/// The staging directory of one apply.
struct Staging {
    path: PathBuf,
    fd: OwnedFd,
    s: OwnedFd,
    b: OwnedFd,
}

fn random_suffix() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = t ^ (u128::from(std::process::id()) << 64);
    // xorshift-mix a little so names do not look sequential.
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 29;
    format!("{:016x}", x as u64)
}

impl Staging {
    fn create(ws: &Path, root: &OwnedFd) -> Result<Staging, LayerError> {
        let mut tries = 0;
        let name = loop {
            let name = OsString::from(format!("{STAGING_PREFIX}{}", random_suffix()));
            match mkdirat(
                root.as_fd(),
                name.as_os_str(),
                Mode::from_bits_truncate(0o700),
            ) {
                Ok(()) => break name,
                Err(Errno::EEXIST) if tries < 10 => tries += 1,
                Err(e) => return Err(LayerError::nix("create staging dir in", ws, e)),
            }
        };
        let path = ws.join(&name);
        let fd = openat(root.as_fd(), name.as_os_str(), dir_flags(), Mode::empty())
            .map_err(|e| LayerError::nix("open", &path, e))?;
        for sub in ["s", "b"] {
            mkdirat(fd.as_fd(), sub, Mode::from_bits_truncate(0o700))
                .map_err(|e| LayerError::nix("create", path.join(sub), e))?;
        }
        let s = openat(fd.as_fd(), "s", dir_flags(), Mode::empty())
            .map_err(|e| LayerError::nix("open", path.join("s"), e))?;
        let b = openat(fd.as_fd(), "b", dir_flags(), Mode::empty())
            .map_err(|e| LayerError::nix("open", path.join("b"), e))?;
        Ok(Staging { path, fd, s, b })
    }

    fn open(ws: &Path, root: &OwnedFd, name: &OsStr) -> Result<Staging, LayerError> {
        let path = ws.join(name);
        let fd = openat(root.as_fd(), name, dir_flags(), Mode::empty())
            .map_err(|e| LayerError::nix("open", &path, e))?;
        let sub = |n: &str| {
            openat(fd.as_fd(), n, dir_flags(), Mode::empty())
                .map_err(|e| LayerError::nix("open", path.join(n), e))
        };
        let s = sub("s")?;
        let b = sub("b")?;
        Ok(Staging {
            path: path.clone(),
            fd,
            s,
            b,
        })
    }

    fn write_journal(&self, j: &Journal) -> Result<(), LayerError> {
        let data = serde_json::to_vec(j).map_err(|e| LayerError::Journal {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        self.write_file("journal.tmp", &data)?;
        nix::fcntl::renameat(self.fd.as_fd(), "journal.tmp", self.fd.as_fd(), JOURNAL)
            .map_err(|e| LayerError::nix("write", self.path.join(JOURNAL), e))?;
        nix::unistd::fsync(self.fd.as_fd()).map_err(|e| LayerError::nix("sync", &self.path, e))?;
        Ok(())
    }

    fn mark_committed(&self) -> Result<(), LayerError> {
        self.write_file(COMMITTED, b"1\n")?;
        nix::unistd::fsync(self.fd.as_fd()).map_err(|e| LayerError::nix("sync", &self.path, e))
    }

    fn write_file(&self, name: &str, data: &[u8]) -> Result<(), LayerError> {
        let p = self.path.join(name);
        let fd = openat(
            self.fd.as_fd(),
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_CLOEXEC
                | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| LayerError::nix("create", &p, e))?;
        let mut f = File::from(fd);
        f.write_all(data)
            .map_err(|e| LayerError::io("write", &p, e))?;
        f.sync_all().map_err(|e| LayerError::io("sync", &p, e))
    }

    fn read_journal(&self) -> Result<Option<Journal>, LayerError> {
        let p = self.path.join(JOURNAL);
        match lstat_at(&self.fd, OsStr::new(JOURNAL)) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(e) => return Err(LayerError::io("stat", &p, e)),
        }
        let fd = openat(
            self.fd.as_fd(),
            JOURNAL,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| LayerError::nix("open", &p, e))?;
        let j: Journal =
            serde_json::from_reader(File::from(fd)).map_err(|e| LayerError::Journal {
                path: p.clone(),
                reason: format!("unreadable: {e}"),
            })?;
        if j.version != 1 {
            return Err(LayerError::Journal {
                path: p,
                reason: format!("unknown version {}", j.version),
            });
        }
        for op in &j.ops {
            let rel = match op {
                Op::Backup { path, .. } | Op::Put { path, .. } | Op::Chmod { path, .. } => {
                    path_of(path)
                }
            };
            if !is_plain_relative(&rel) || is_reserved(&rel) {
                return Err(LayerError::Journal {
                    path: p,
                    reason: format!("invalid path {}", rel.display()),
                });
            }
        }
        Ok(Some(j))
    }

    fn is_committed(&self) -> bool {
        matches!(lstat_at(&self.fd, OsStr::new(COMMITTED)), Ok(Some(_)))
    }

    fn remove(&self) -> Result<(), LayerError> {
        // std's remove_dir_all never follows symlinks.
        std::fs::remove_dir_all(&self.path).map_err(|e| LayerError::io("remove", &self.path, e))
    }
}

fn idx_name(idx: u64) -> String {
    idx.to_string()
}

/// Copy one new entry from the layer into the staging dir.
fn stage_one(changes: &Changes, st: &Staging, s: &Stage<'_>) -> Result<(), LayerError> {
    let c = s.change;
    let new = c.new.as_ref().expect("staged changes have a new side");
    let up = changes.upper.join(&c.path);
    let md = std::fs::symlink_metadata(&up).map_err(|e| LayerError::io("stat", &up, e))?;
    let now = Entry::from_metadata(&up, &md).map_err(|e| LayerError::io("read link", &up, e))?;
    if now.kind != new.kind
        || now.mode != new.mode
        || (now.kind != FileKind::Dir && (now.size != new.size || now.mtime_ns != new.mtime_ns))
        || now.target_raw != new.target_raw
    {
        return Err(LayerError::LayerChanged {
            path: c.path.clone(),
        });
    }
    let name = idx_name(s.idx);
    let dst = st.path.join("s").join(&name);
    let mode = new.mode & !0o6000;
    match new.kind {
        FileKind::File => {
            let src = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&up)
                .map_err(|e| LayerError::io("open", &up, e))?;
            let fd = openat(
                st.s.as_fd(),
                name.as_str(),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| LayerError::nix("create", &dst, e))?;
            let mut out = File::from(fd);
            let mut src = src;
            io::copy(&mut src, &mut out).map_err(|e| LayerError::io("copy to", &dst, e))?;
            if let Some((u, g)) = s.owner {
                nix::unistd::fchown(out.as_fd(), Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
                    .map_err(|e| LayerError::nix("chown", &dst, e))?;
            }
            fchmod(out.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| LayerError::nix("chmod", &dst, e))?;
        }
        FileKind::Symlink => {
            let target = new.target_raw.as_deref().unwrap_or_default();
            symlinkat(target, st.s.as_fd(), name.as_str())
                .map_err(|e| LayerError::nix("create symlink", &dst, e))?;
            if let Some((u, g)) = s.owner {
                fchownat(
                    st.s.as_fd(),
                    name.as_str(),
                    Some(Uid::from_raw(u)),
                    Some(Gid::from_raw(g)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| LayerError::nix("chown", &dst, e))?;
            }
        }
        FileKind::Dir => {
            mkdirat(st.s.as_fd(), name.as_str(), Mode::from_bits_truncate(0o700))
                .map_err(|e| LayerError::nix("create", &dst, e))?;
            if let Some((u, g)) = s.owner {
                fchownat(
                    st.s.as_fd(),
                    name.as_str(),
                    Some(Uid::from_raw(u)),
                    Some(Gid::from_raw(g)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| LayerError::nix("chown", &dst, e))?;
            }
        }
        k => {
            return Err(LayerError::UnsupportedFileType {
                paths: vec![(c.path.clone(), k)],
            });
        }
    }
    Ok(())
}

fn rename_noreplace(
    from_dir: &OwnedFd,
    from: &OsStr,
    to_dir: &OwnedFd,
    to: &OsStr,
) -> Result<(), Errno> {
    match renameat2(
        from_dir.as_fd(),
        from,
        to_dir.as_fd(),
        to,
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            // Filesystem without RENAME_NOREPLACE: check, then rename (racy but rare).
            match nix::sys::stat::fstatat(to_dir.as_fd(), to, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(_) => Err(Errno::EEXIST),
                Err(Errno::ENOENT) => {
                    nix::fcntl::renameat(from_dir.as_fd(), from, to_dir.as_fd(), to)
                }
                Err(e) => Err(e),
            }
        }
        r => r,
    }
}

fn do_op(root: &OwnedFd, st: &Staging, op: &Op) -> Result<(), LayerError> {
    match op {
        Op::Backup { idx, path } => {
            let rel = path_of(path);
            let (parent, name) = split(&rel);
            let pfd = open_dir_beneath(root, parent).map_err(|e| walk_err(&rel, e))?;
            rename_noreplace(&pfd, name, &st.b, OsStr::new(&idx_name(*idx)))
                .map_err(|e| LayerError::nix("move away", &rel, e))
        }
        Op::Put { idx, path } => {
            let rel = path_of(path);
            let (parent, name) = split(&rel);
            let pfd = open_dir_beneath(root, parent).map_err(|e| walk_err(&rel, e))?;
            rename_noreplace(&st.s, OsStr::new(&idx_name(*idx)), &pfd, name)
                .map_err(|e| LayerError::nix("write", &rel, e))
        }
        Op::Chmod { path, new, .. } => {
            let rel = path_of(path);
            let fd = open_dir_beneath(root, &rel).map_err(|e| walk_err(&rel, e))?;
            fchmod(fd.as_fd(), Mode::from_bits_truncate(*new))
                .map_err(|e| LayerError::nix("chmod", &rel, e))
        }
    }
}

/// Undo `ops` in reverse. Each step checks the filesystem, so undoing an operation that
/// never ran is a no-op. Best effort: continues past errors and returns the first.
fn undo(
    root: &OwnedFd,
    st: &Staging,
    ops: &[Op],
    dir_times: &[DirTime],
    restored: &mut Vec<Restored>,
) -> Result<(), LayerError> {
    let mut first: Option<LayerError> = None;
    for op in ops.iter().rev() {
        if let Err(e) = undo_one(root, st, op, restored) {
            first.get_or_insert(e);
        }
    }
    if let Some(e) = first {
        return Err(e);
    }
    restore_times(root, dir_times);
    Ok(())
}

fn undo_one(
    root: &OwnedFd,
    st: &Staging,
    op: &Op,
    restored: &mut Vec<Restored>,
) -> Result<(), LayerError> {
    match op {
        Op::Chmod { path, old, .. } => {
            let rel = path_of(path);
            match open_dir_beneath(root, &rel) {
                Ok(fd) => fchmod(fd.as_fd(), Mode::from_bits_truncate(*old))
                    .map_err(|e| LayerError::nix("chmod", &rel, e)),
                // Not there (yet / any more): nothing to undo.
                Err(_) => Ok(()),
            }
        }
        Op::Put { idx, path } => {
            let rel = path_of(path);
            let name = idx_name(*idx);
            if lstat_at(&st.s, OsStr::new(&name))
                .map_err(|e| LayerError::io("stat", st.path.join("s").join(&name), e))?
                .is_some()
            {
                return Ok(()); // never placed
            }
            let (parent, fname) = split(&rel);
            let pfd = match open_dir_beneath(root, parent) {
                Ok(fd) => fd,
                Err(WalkError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(walk_err(&rel, e)),
            };
            if lstat_at(&pfd, fname)
                .map_err(|e| LayerError::io("stat", &rel, e))?
                .is_none()
            {
                return Ok(());
            }
            rename_noreplace(&pfd, fname, &st.s, OsStr::new(&name))
                .map_err(|e| LayerError::nix("roll back", &rel, e))
        }
        Op::Backup { idx, path } => {
            let rel = path_of(path);
            let name = idx_name(*idx);
            if lstat_at(&st.b, OsStr::new(&name))
                .map_err(|e| LayerError::io("stat", st.path.join("b").join(&name), e))?
                .is_none()
            {
                return Ok(()); // never moved away
            }
            let (parent, fname) = split(&rel);
            let pfd = open_dir_beneath(root, parent).map_err(|e| walk_err(&rel, e))?;
            rename_noreplace(&st.b, OsStr::new(&name), &pfd, fname)
                .map_err(|e| LayerError::nix("restore", &rel, e))?;
            if let Ok(Some(h)) = lstat_at(&pfd, fname) {
                restored.push(Restored {
                    dev: h.st_dev,
                    ino: h.st_ino,
                    ctime: (h.st_ctime, h.st_ctime_nsec),
                });
            }
            Ok(())
        }
    }
}

/// Roll back (or clean up) every interrupted apply left in `workspace`.
///
/// An apply that had committed is only cleaned up; one that had not is rolled back so
/// the workspace is exactly as before it started. Called at the start of every apply.
///
/// Moving entries back gives them a new ctime. When [`apply`] recovers a journal of the
/// same layer it records those entries (beside the upper dir) so they are not taken for
/// host changes; this standalone form does not know the layer, so a later apply may list
/// them as conflicts.
pub fn recover(workspace: &Path) -> Result<RecoverReport, LayerError> {
    let (ws, root, _lock) = open_root(workspace)?;
    recover_locked(&ws, &root, None)
}

/// `upper`: the layer being applied, if any. The ledger of restored entries is written only
/// for a journal of that same layer: the journal's own `upper` field is never trusted as a
/// place to write to (anything in the workspace may have been planted).
fn recover_locked(
    ws: &Path,
    root: &OwnedFd,
    upper: Option<&Path>,
) -> Result<RecoverReport, LayerError> {
    let mut report = RecoverReport::default();
    let mut names = Vec::new();
    for e in std::fs::read_dir(ws).map_err(|e| LayerError::io("read directory", ws, e))? {
        let e = e.map_err(|e| LayerError::io("read directory", ws, e))?;
        let n = e.file_name();
        if n.as_bytes().starts_with(STAGING_PREFIX.as_bytes())
            && e.file_type().is_ok_and(|t| t.is_dir())
        {
            names.push(n);
        }
    }
    names.sort();
    for name in names {
        let st = match Staging::open(ws, root, &name) {
            Ok(st) => st,
            Err(_) => {
                // Created but never finished setting up: nothing was committed from it.
                let p = ws.join(&name);
                std::fs::remove_dir_all(&p).map_err(|e| LayerError::io("remove", &p, e))?;
                report.cleaned.push(p);
                continue;
            }
        };
        if st.is_committed() {
            st.remove()?;
            report.cleaned.push(st.path.clone());
            continue;
        }
        match st.read_journal()? {
            None => {
                st.remove()?;
                report.cleaned.push(st.path.clone());
            }
            Some(j) => {
                let mut restored = Vec::new();
                let r = undo(root, &st, &j.ops, &j.dir_times, &mut restored);
                if let Some(u) = upper.filter(|u| bytes(u) == j.upper) {
                    save_ledger(u, &restored);
                }
                r?;
                st.remove()?;
                restore_times(root, &j.dir_times);
                report.rolled_back.push(st.path.clone());
            }
        }
    }
    Ok(report)
}
