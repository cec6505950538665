//! Git worktree runs (`paddock run --wt BRANCH`): the run's workspace is a worktree of the
//! user's repository on BRANCH, under `$PADDOCK_HOME/worktrees/`, mounted read-write, so
//! the agent's commits are real, while the repository itself stays out of its reach.
//!
//! How ("the shadow common dir"): a linked worktree keeps its own `HEAD` and index in
//! `<repo>/.git/worktrees/<id>/` (its *gitdir*) and shares everything else (objects,
//! refs, config, hooks) through the *common dir* its `commondir` file names. paddock points
//! that file at a common dir of its own, `$PADDOCK_HOME/worktrees/.common/<name>/`:
//! `objects/` borrowing the repository's objects through `objects/info/alternates`, the
//! repository's refs copied into `packed-refs`, a config written here, empty `hooks/`.
//! Git inside the sandbox then writes new objects and refs only there; the repository's
//! own `.git` is mounted read-only. The branch alone is carried back ([`sync`]): its
//! commit's missing objects are packed from the shadow, indexed (hash-checked) into the
//! repository's store by `git index-pack --strict`, and the branch moved with
//! `git update-ref`; no other ref is ever read from the shadow.
//!
//! Why not simply mount the repository's `.git` read-write: the agent could then rewrite
//! `.git/config` (`core.fsmonitor`, `core.hooksPath`) or a hook, which the host's next git
//! command executes, move any branch, and delete the objects.
//!
//! What the sandbox gets ([`Worktree::mounts`]): the checkout (the workspace, read-write)
//! with its `.git` file read-only; the repository's `.git` read-only; the worktree's
//! gitdir read-write but its `commondir` and `gitdir` files read-only; the shadow
//! read-write but its `config`, `hooks/` and `objects/info/` read-only. Each read-only
//! piece is something git on the host would follow or execute when someone later runs git
//! in the worktree, or that the daemon reads during a sync: with them read-only the agent
//! cannot redirect the host's git to a config, hook or object store of its making.
//!
//! Never: runs git with the shadow as its repository (a repository git opens may name a
//! further `commondir`, and its config is read), or runs git in the checkout while a run
//! uses it. Git on the host always runs with a clean environment, `core.fsmonitor` and
//! hooks off.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_api::WorktreeRequest;
use paddock_sandbox::MountSpec;
use serde::{Deserialize, Serialize};

use crate::bus::EventBus;
use crate::home::Home;
use crate::store::{RunRecord, now_ms};

/// Where worktrees live, under `$PADDOCK_HOME`. Also known to the native runtime, which
/// lets a workspace and mounts be beneath it (user data, never paddock's state).
pub const WORKTREES_DIR: &str = "worktrees";
/// The shadow common dirs, under [`WORKTREES_DIR`].
const SHADOW_DIR: &str = ".common";
/// How often a live run's branch is looked at.
const POLL: Duration = Duration::from_secs(1);

/// What went wrong with a worktree.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error("invalid branch name `{branch}`: {why}")]
    InvalidBranch { branch: String, why: &'static str },

    #[error("{path} is not inside a git repository")]
    NotARepo { path: String },

    #[error("{path} is a paddock worktree")]
    InsideWorktree { path: String },

    #[error("{message}")]
    Unsupported { message: String },

    #[error("the worktree of branch `{branch}` is in use by run {run_id} ({run_name})")]
    InUse {
        branch: String,
        run_id: String,
        run_name: String,
    },

    #[error("branch `{branch}` is checked out at {path}")]
    CheckedOut { branch: String, path: String },

    #[error("the worktree of branch `{branch}` ({path}) has uncommitted changes")]
    Dirty { branch: String, path: String },

    #[error("git {op} failed: {detail}")]
    Git { op: String, detail: String },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl WorktreeError {
    pub fn status(&self) -> u16 {
        match self {
            WorktreeError::InvalidBranch { .. }
            | WorktreeError::NotARepo { .. }
            | WorktreeError::InsideWorktree { .. } => 400,
            WorktreeError::Unsupported { .. } => 501,
            WorktreeError::InUse { .. }
            | WorktreeError::Dirty { .. }
            | WorktreeError::CheckedOut { .. } => 409,
            WorktreeError::Git { .. } | WorktreeError::Io { .. } => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            WorktreeError::InvalidBranch { .. } => "bad_branch",
            WorktreeError::NotARepo { .. } => "not_a_repo",
            WorktreeError::InsideWorktree { .. } => "bad_request",
            WorktreeError::Unsupported { .. } => "unsupported",
            WorktreeError::InUse { .. } => "worktree_in_use",
            WorktreeError::Dirty { .. } => "worktree_dirty",
            WorktreeError::CheckedOut { .. } => "branch_checked_out",
            WorktreeError::Git { .. } => "git",
            WorktreeError::Io { .. } => "internal",
        }
    }

    pub fn hint(&self) -> String {
        match self {
            WorktreeError::InvalidBranch { .. } => {
                "use a git branch name such as `fix/login-bug` (see `git check-ref-format --branch`)".into()
            }
            WorktreeError::NotARepo { .. } => {
                "run it from inside a git repository, or pass one with -w; `git init` makes one".into()
            }
            WorktreeError::InsideWorktree { .. } => {
                "run `paddock run --wt` from the repository's own checkout".into()
            }
            WorktreeError::Unsupported { .. } => {
                "use a repository with the default (files) ref storage".into()
            }
            WorktreeError::InUse { run_name, .. } => format!(
                "wait for it to end (`paddock wait {run_name}`), stop it with `paddock stop {run_name}`, or use another branch"
            ),
            WorktreeError::CheckedOut { branch, .. } => format!(
                "a branch lives in one checkout at a time: give the run a new branch (`--wt {branch}-2` starts one from HEAD), or switch that checkout to another branch"
            ),
            WorktreeError::Dirty { .. } => {
                "commit or discard the changes in the worktree first, or remove it anyway with `paddock rm --force` (the branch stays)".into()
            }
            WorktreeError::Git { .. } | WorktreeError::Io { .. } => {
                "see $PADDOCK_HOME/daemon.log; the repository itself was not changed".into()
            }
        }
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> WorktreeError {
    WorktreeError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// A run's worktree, as state.db keeps it (daemon-private; the API shows `branch` and
/// `path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    pub branch: String,
    /// The checkout: `$PADDOCK_HOME/worktrees/<name>`, the run's workspace.
    pub path: PathBuf,
    /// The repository's own common dir (`<repo>/.git`).
    pub repo_git: PathBuf,
    /// The worktree's gitdir, `<repo>/.git/worktrees/<id>`.
    pub gitdir: PathBuf,
    /// The shadow common dir.
    pub shadow: PathBuf,
}

impl Worktree {
    /// The sandbox's mounts besides the workspace (the checkout, read-write), in an order
    /// where a parent comes before its children.
    pub fn mounts(&self) -> Vec<MountSpec> {
        let m = |p: PathBuf, read_only| MountSpec {
            source: p.clone(),
            target: p,
            read_only,
        };
        vec![
            m(self.path.join(".git"), true),
            m(self.repo_git.clone(), true),
            m(self.gitdir.clone(), false),
            m(self.gitdir.join("commondir"), true),
            m(self.gitdir.join("gitdir"), true),
            m(self.shadow.clone(), false),
            m(self.shadow.join("config"), true),
            m(self.shadow.join("hooks"), true),
            m(self.shadow.join("objects").join("info"), true),
        ]
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }
}

/// `git check-ref-format --branch` rules, checked before git sees the name (which is then
/// never taken for an option).
pub fn check_branch_name(name: &str) -> Result<(), WorktreeError> {
    let bad = |why| {
        Err(WorktreeError::InvalidBranch {
            branch: name.escape_default().to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 200 {
        return bad("it is longer than 200 bytes");
    }
    if name.starts_with('-') {
        return bad("it starts with `-`");
    }
    if name == "HEAD" || name == "@" {
        return bad("it is reserved by git");
    }
    if name.contains("..") {
        return bad("it contains `..`");
    }
    if name.contains("@{") {
        return bad("it contains `@{`");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_ascii_control() || " ~^:?*[\\".contains(*c))
    {
        return if c.is_ascii_control() {
            bad("it contains a control character")
        } else if c == ' ' {
            bad("it contains a space")
        } else {
            bad("it contains one of ~ ^ : ? * [ \\")
        };
    }
    if name.ends_with('.') {
        return bad("it ends with `.`");
    }
    for part in name.split('/') {
        if part.is_empty() {
            return bad("it has an empty path component (a leading, trailing or double `/`)");
        }
        if part.starts_with('.') {
            return bad("a component starts with `.`");
        }
        if part.ends_with(".lock") {
            return bad("a component ends with `.lock`");
        }
    }
    Ok(())
}

/// A clean `git` on the host: no `GIT_*` variables from the daemon's environment, no
/// fsmonitor, no hooks, no prompts; any owner's repository accepted (a root daemon serves
/// repositories of other users).
fn git() -> Command {
    let mut c = Command::new("git");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            c.env_remove(k);
        }
    }
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .args(["-c", "safe.directory=*", "-c", "core.fsmonitor=false"])
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.untrackedCache=false",
        ])
        .stdin(Stdio::null());
    c
}

/// Run a git command; its stdout (trimmed) or its stderr as the error.
fn run(op: &str, mut cmd: Command) -> Result<String, WorktreeError> {
    let out = cmd.output().map_err(|e| WorktreeError::Git {
        op: op.into(),
        detail: format!("could not run git: {e}"),
    })?;
    if !out.status.success() {
        return Err(WorktreeError::Git {
            op: op.into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn git_in(dir: &Path) -> Command {
    let mut c = git();
    c.arg("-C").arg(dir);
    c
}

/// Write a file by temp + rename.
fn write_atomic(path: &Path, contents: &str) -> Result<(), WorktreeError> {
    let tmp = path.with_extension("paddock-tmp");
    std::fs::write(&tmp, contents).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", path, e))
}

fn mkdirs(p: &Path) -> Result<(), WorktreeError> {
    std::fs::create_dir_all(p).map_err(|e| io("create", p, e))
}

/// A name for the worktree's directory: `<repo>@<branch>-<hash>`, readable and unique
/// per (repository, branch).
fn dir_name(repo_git: &Path, branch: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '/' => '+',
                c if c.is_ascii_alphanumeric() || "-_.+".contains(c) => c,
                _ => '_',
            })
            .collect()
    };
    let repo = if repo_git.file_name().is_some_and(|n| n == ".git") {
        repo_git.parent().unwrap_or(repo_git)
    } else {
        repo_git
    };
    let repo = repo
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".git").to_string())
        .unwrap_or_default();
    let mut repo = clean(&repo);
    repo.truncate(40);
    let mut branch_part = clean(branch);
    branch_part.truncate(60);
    // FNV-1a: stable across builds (the name must be found again by a later daemon).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in repo_git
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain(b"\0")
        .chain(branch.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{}@{}-{:08x}",
        repo.trim_start_matches('.'),
        branch_part,
        h as u32
    )
}

/// Where `branch` is checked out already (another worktree of the repository, the main
/// checkout included), from `git worktree list --porcelain`.
fn checked_out_at(repo: &Path, branch: &str) -> Option<String> {
    let mut c = git_in(repo);
    c.args(["worktree", "list", "--porcelain"]);
    let list = run("worktree list", c).ok()?;
    let want = format!("branch refs/heads/{branch}");
    let mut path = None;
    for line in list.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            path = Some(p.to_string());
        } else if line == want {
            return path;
        }
    }
    None
}

/// The daemon's worktrees: creation, the branch's sync while a run lives, removal.
pub struct Worktrees {
    root: PathBuf,
    bus: EventBus,
    /// Serialises prepare and remove; worktree path → when a create claimed it (a create
    /// inserts its run only later: the claim covers the time between).
    claims: Mutex<HashMap<PathBuf, i64>>,
    /// The sync task of each live worktree run.
    pollers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

/// How long a claim without a run record holds (a create that failed leaves one behind).
const CLAIM_MS: i64 = 120_000;

impl Worktrees {
    pub fn new(home: &Home, bus: EventBus) -> Arc<Self> {
        Arc::new(Worktrees {
            root: home.root().join(WORKTREES_DIR),
            bus,
            claims: Mutex::new(HashMap::new()),
            pollers: Mutex::new(HashMap::new()),
        })
    }

    /// Make (or find again) the worktree a create asks for, refusing one a live run uses.
    /// `runs` are the stored runs. Nothing is created when the request is invalid.
    pub fn prepare(
        &self,
        req: &WorktreeRequest,
        runs: &[RunRecord],
    ) -> Result<Worktree, WorktreeError> {
        check_branch_name(&req.branch)?;
        let branch = req.branch.as_str();
        let not_repo = || WorktreeError::NotARepo {
            path: req.repo.display().to_string(),
        };
        let repo = std::fs::canonicalize(&req.repo).map_err(|_| not_repo())?;
        if !repo.is_dir() {
            return Err(not_repo());
        }
        let mut c = git_in(&repo);
        c.args(["rev-parse", "--path-format=absolute", "--git-common-dir"]);
        let common = run("rev-parse", c).map_err(|_| not_repo())?;
        let repo_git =
            std::fs::canonicalize(&common).map_err(|e| io("open", Path::new(&common), e))?;
        let root = std::fs::canonicalize(self.root.parent().unwrap_or(&self.root))
            .unwrap_or_else(|_| self.root.parent().unwrap_or(&self.root).to_path_buf())
            .join(WORKTREES_DIR);
        if repo_git.starts_with(&root) || repo.starts_with(&root) {
            return Err(WorktreeError::InsideWorktree {
                path: repo.display().to_string(),
            });
        }
        let mut c = git_in(&repo_git);
        c.args(["config", "--get", "extensions.refStorage"]);
        if run("config", c).is_ok_and(|v| v == "reftable") {
            return Err(WorktreeError::Unsupported {
                message: format!(
                    "{} keeps its refs in a reftable, which worktree runs do not support",
                    repo_git.display()
                ),
            });
        }

        let name = dir_name(&repo_git, branch);
        let path = root.join(&name);
        let shadow = root.join(SHADOW_DIR).join(&name);

        let mut claims = self.claims.lock().expect("claims lock poisoned");
        if let Some(r) = runs.iter().find(|r| {
            !r.run.state.is_terminal() && r.worktree.as_ref().is_some_and(|w| w.path == path)
        }) {
            return Err(WorktreeError::InUse {
                branch: branch.into(),
                run_id: r.run.id.clone(),
                run_name: r.run.name.clone(),
            });
        }
        let now = now_ms();
        if let Some(at) = claims.get(&path).copied()
            && now - at < CLAIM_MS
            && !runs
                .iter()
                .any(|r| r.created_ms >= at && r.worktree.as_ref().is_some_and(|w| w.path == path))
        {
            return Err(WorktreeError::InUse {
                branch: branch.into(),
                run_id: "(being created)".into(),
                run_name: "another run".into(),
            });
        }

        let fresh = !path.exists();
        if fresh {
            mkdirs(&root)?;
            let mut c = git_in(&repo_git);
            c.args(["rev-parse", "--verify", "--quiet"])
                .arg(format!("refs/heads/{branch}"));
            let exists = run("rev-parse", c).is_ok();
            if exists && let Some(at) = checked_out_at(&repo, branch) {
                return Err(WorktreeError::CheckedOut {
                    branch: branch.into(),
                    path: at,
                });
            }
            let mut c = git_in(&repo);
            c.args(["worktree", "add", "--quiet", "--lock", "--reason"])
                .arg("in use by paddock (`paddock rm` removes it)");
            if exists {
                c.arg("--").arg(&path).arg(branch);
            } else {
                let mut h = git_in(&repo);
                h.args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]);
                let head = run("rev-parse HEAD", h).map_err(|_| WorktreeError::Git {
                    op: "rev-parse HEAD".into(),
                    detail: format!(
                        "{} has no commit to start branch `{branch}` from",
                        repo.display()
                    ),
                })?;
                c.arg("-b").arg(branch).arg("--").arg(&path).arg(head);
            }
            run("worktree add", c)?;
        }
        let gitdir = read_gitdir(&path)?;
        if !gitdir.starts_with(repo_git.join("worktrees")) {
            return Err(WorktreeError::Git {
                op: "worktree".into(),
                detail: format!(
                    "{} is not a worktree of {}; remove the directory",
                    path.display(),
                    repo_git.display()
                ),
            });
        }
        let wt = Worktree {
            branch: branch.into(),
            path,
            repo_git,
            gitdir,
            shadow,
        };
        build_shadow(&wt, fresh)?;
        claims.insert(wt.path.clone(), now);
        Ok(wt)
    }

    /// A create that claimed `path` failed: the branch is free for the next one at once.
    pub fn release(&self, path: &Path) {
        self.claims
            .lock()
            .expect("claims lock poisoned")
            .remove(path);
    }

    /// Start carrying a live run's branch back to the repository (after every change of
    /// the branch in the shadow, looked at every second) until [`Worktrees::ended`].
    pub fn watch(self: &Arc<Self>, run_id: &str, wt: Worktree) {
        let (me, id) = (self.clone(), run_id.to_string());
        let task = tokio::spawn(async move {
            let mut seen = ref_stamp(&wt);
            loop {
                tokio::time::sleep(POLL).await;
                let now = ref_stamp(&wt);
                if now == seen {
                    continue;
                }
                seen = now;
                let (me2, wt2, id2) = (me.clone(), wt.clone(), id.clone());
                let _ = tokio::task::spawn_blocking(move || me2.sync_logged(&id2, &wt2)).await;
            }
        });
        if let Some(old) = self
            .pollers
            .lock()
            .expect("pollers lock poisoned")
            .insert(run_id.to_string(), task)
        {
            old.abort();
        }
    }

    /// A run ended: its watch ends, and the branch is carried back a last time.
    pub fn ended(&self, run_id: &str, wt: &Worktree) {
        if let Some(t) = self
            .pollers
            .lock()
            .expect("pollers lock poisoned")
            .remove(run_id)
        {
            t.abort();
        }
        self.sync_logged(run_id, wt);
    }

    fn sync_logged(&self, run_id: &str, wt: &Worktree) {
        match sync(wt) {
            Ok(Some((from, to))) => {
                tracing::info!(run = run_id, branch = %wt.branch, %to, "branch carried back");
                self.bus.publish(
                    Some(run_id),
                    "worktree.sync",
                    serde_json::json!({ "branch": wt.branch, "from": from, "to": to }),
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(run = run_id, branch = %wt.branch, error = %e, "could not carry the branch back")
            }
        }
    }

    /// Before `rm` of run `run_id`: the worktree to remove once the run is gone (`None`
    /// when another run still refers to it). Refuses a worktree with uncommitted changes
    /// unless `force`. The branch is carried back first.
    pub fn check_remove(
        &self,
        run_id: &str,
        wt: &Worktree,
        force: bool,
        runs: &[RunRecord],
    ) -> Result<Option<Worktree>, WorktreeError> {
        if runs
            .iter()
            .any(|r| r.run.id != run_id && r.worktree.as_ref().is_some_and(|w| w.path == wt.path))
        {
            return Ok(None);
        }
        if !wt.path.exists() {
            return Ok(Some(wt.clone()));
        }
        sync(wt)?;
        if !force {
            let mut c = git_in(&wt.path);
            c.args([
                "status",
                "--porcelain",
                "--ignore-submodules=all",
                "--untracked-files=normal",
            ]);
            let status = run("status", c)?;
            if !status.is_empty() {
                return Err(WorktreeError::Dirty {
                    branch: wt.branch.clone(),
                    path: wt.path.display().to_string(),
                });
            }
        }
        Ok(Some(wt.clone()))
    }

    /// Remove the worktree: checkout, registration (the repository's
    /// `.git/worktrees/<id>`) and shadow. The branch stays.
    pub fn remove(&self, wt: &Worktree) -> Result<(), WorktreeError> {
        let _g = self.claims.lock().expect("claims lock poisoned");
        for p in [&wt.gitdir, &wt.path, &wt.shadow] {
            match std::fs::remove_dir_all(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", p, e)),
            }
        }
        Ok(())
    }
}

/// `<path>/.git` says `gitdir: <gitdir>`.
fn read_gitdir(path: &Path) -> Result<PathBuf, WorktreeError> {
    let dotgit = path.join(".git");
    let text = read_small(&dotgit).map_err(|e| io("read", &dotgit, e))?;
    let dir = text
        .strip_prefix("gitdir:")
        .map(str::trim)
        .ok_or_else(|| WorktreeError::Git {
            op: "worktree".into(),
            detail: format!("{} is not a worktree's .git file", dotgit.display()),
        })?;
    std::fs::canonicalize(dir).map_err(|e| io("open", Path::new(dir), e))
}

/// Read a regular file of at most 1 MiB without following a symlink or blocking on a FIFO.
fn read_small(p: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut s = String::new();
    f.take(1 << 20).read_to_string(&mut s)?;
    Ok(s)
}

/// (Re)build the shadow common dir and point the worktree's gitdir at it. The pieces the
/// sandbox sees read-only are rewritten every time (whatever the host did to them); the
/// refs are seeded from the repository only when the worktree is new.
fn build_shadow(wt: &Worktree, fresh: bool) -> Result<(), WorktreeError> {
    let s = &wt.shadow;
    if fresh && s.exists() {
        std::fs::remove_dir_all(s).map_err(|e| io("remove", s, e))?;
    }
    for d in [
        "objects/info",
        "objects/pack",
        "refs/heads",
        "refs/tags",
        "logs",
        "info",
    ] {
        mkdirs(&s.join(d))?;
    }
    // hooks/: always empty.
    let hooks = s.join("hooks");
    if std::fs::symlink_metadata(&hooks).is_ok() {
        let _ = std::fs::remove_dir_all(&hooks).or_else(|_| std::fs::remove_file(&hooks));
    }
    mkdirs(&hooks)?;
    let objects = wt.repo_git.join("objects");
    write_atomic(
        &s.join("objects/info/alternates"),
        &format!("{}\n", objects.display()),
    )?;
    write_atomic(&s.join("config"), &shadow_config(&wt.repo_git)?)?;
    if fresh || !s.join("HEAD").exists() {
        let mut c = git_in(&wt.repo_git);
        c.args(["for-each-ref", "--format=%(objectname) %(refname)"])
            .args(["refs/heads", "refs/tags", "refs/remotes"]);
        let refs = run("for-each-ref", c)?;
        let head = refs
            .lines()
            .find_map(|l| {
                l.split_once(' ')
                    .filter(|(_, r)| *r == wt.branch_ref())
                    .map(|(o, _)| o.to_string())
            })
            .ok_or_else(|| WorktreeError::Git {
                op: "for-each-ref".into(),
                detail: format!("branch `{}` not found after creating it", wt.branch),
            })?;
        let mut packed = String::from("# pack-refs with: sorted\n");
        let mut lines: Vec<&str> = refs.lines().filter(|l| !l.is_empty()).collect();
        lines.sort_by_key(|l| l.split_once(' ').map(|(_, r)| r).unwrap_or(l));
        for l in lines {
            packed.push_str(l);
            packed.push('\n');
        }
        write_atomic(&s.join("packed-refs"), &packed)?;
        // The shadow's own HEAD is only what git takes for "the main worktree's": detached,
        // so that it claims no branch.
        write_atomic(&s.join("HEAD"), &format!("{head}\n"))?;
    }
    write_atomic(&wt.gitdir.join("commondir"), &format!("{}\n", s.display()))?;
    write_atomic(
        &wt.gitdir.join("gitdir"),
        &format!("{}\n", wt.path.join(".git").display()),
    )?;
    // A previous run may have switched the worktree to another branch: back to its own.
    let head = format!("ref: {}\n", wt.branch_ref());
    if read_small(&wt.gitdir.join("HEAD")).ok().as_deref() != Some(head.as_str()) {
        write_atomic(&wt.gitdir.join("HEAD"), &head)?;
    }
    Ok(())
}

/// The shadow's config: written here, never copied (the repository's may name commands,
/// or hooks relative to the worktree, which the agent could then supply). Only the object
/// format and the remotes' URLs and refspecs are taken over.
fn shadow_config(repo_git: &Path) -> Result<String, WorktreeError> {
    let get = |key: &str| {
        let mut c = git_in(repo_git);
        c.args(["config", "--get", key]);
        run("config", c).ok()
    };
    let format = get("extensions.objectFormat");
    let mut cfg = String::from("[core]\n");
    cfg.push_str(&format!(
        "\trepositoryformatversion = {}\n",
        if format.is_some() { 1 } else { 0 }
    ));
    cfg.push_str("\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n");
    if let Some(f) = format.filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric())) {
        cfg.push_str(&format!("[extensions]\n\tobjectFormat = {f}\n"));
    }
    // objects/info is read-only in the sandbox: nothing may need to write there.
    cfg.push_str("[repack]\n\tupdateServerInfo = false\n[gc]\n\twriteCommitGraph = false\n");
    cfg.push_str("[fetch]\n\twriteCommitGraph = false\n");
    let mut c = git_in(repo_git);
    c.args(["config", "--get-regexp", r"^remote\.[^.]+\.(url|fetch)$"]);
    let remotes = run("config", c).unwrap_or_default();
    for line in remotes.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let Some((name, field)) = key.strip_prefix("remote.").and_then(|k| k.rsplit_once('.'))
        else {
            continue;
        };
        let safe = |s: &str| !s.chars().any(|c| c.is_control() || c == '"' || c == '\\');
        if !safe(name) || !safe(value) || value.starts_with("ext::") {
            continue;
        }
        cfg.push_str(&format!("[remote \"{name}\"]\n\t{field} = \"{value}\"\n"));
    }
    Ok(cfg)
}

/// What changes when the branch moves in the shadow (its loose ref or `packed-refs`).
fn ref_stamp(wt: &Worktree) -> Vec<Option<(i64, i64, u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    [
        wt.shadow.join(wt.branch_ref()),
        wt.shadow.join("packed-refs"),
    ]
    .iter()
    .map(|p| {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec(), m.ino(), m.size()))
    })
    .collect()
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The branch's commit in the shadow, read from its files (never with git opening the
/// shadow): the loose ref, else its `packed-refs` line. A symbolic or malformed ref is
/// not followed.
fn shadow_branch(wt: &Worktree) -> Result<Option<String>, WorktreeError> {
    let loose = wt.shadow.join(wt.branch_ref());
    match read_small(&loose) {
        Ok(text) => {
            let id = text.trim();
            return if is_object_id(id) {
                Ok(Some(id.to_ascii_lowercase()))
            } else {
                Err(WorktreeError::Git {
                    op: "sync".into(),
                    detail: format!("{} is not a commit id", loose.display()),
                })
            };
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", &loose, e)),
    }
    let packed = wt.shadow.join("packed-refs");
    let text = match read_packed(&packed) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &packed, e)),
    };
    let want = wt.branch_ref();
    Ok(text.lines().find_map(|l| {
        let (id, name) = l.split_once(' ')?;
        (name == want && is_object_id(id)).then(|| id.to_ascii_lowercase())
    }))
}

fn read_packed(p: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut s = String::new();
    f.take(256 << 20).read_to_string(&mut s)?;
    Ok(s)
}

/// Carry the branch from the shadow back to the repository: its missing objects are
/// packed from the shadow (as an alternate of the repository, for this command only) and
/// indexed into the repository's store by `index-pack --strict` (every object hashed and
/// checked), the commit's history is checked complete without the shadow, then the branch
/// is moved. Returns (old, new) when it moved.
pub fn sync(wt: &Worktree) -> Result<Option<(Option<String>, String)>, WorktreeError> {
    let Some(new) = shadow_branch(wt)? else {
        return Ok(None);
    };
    let repo = &wt.repo_git;
    let mut c = git_in(repo);
    c.args(["rev-parse", "--verify", "--quiet"])
        .arg(wt.branch_ref());
    let old = run("rev-parse", c).ok().filter(|o| is_object_id(o));
    if old.as_deref() == Some(new.as_str()) {
        return Ok(None);
    }
    let alternate = wt.shadow.join("objects");
    let with_shadow = |c: &mut Command| {
        c.env("GIT_ALTERNATE_OBJECT_DIRECTORIES", &alternate);
    };
    let mut c = git_in(repo);
    with_shadow(&mut c);
    c.args(["cat-file", "-t", &new]);
    if run("cat-file", c)? != "commit" {
        return Err(WorktreeError::Git {
            op: "sync".into(),
            detail: format!("{new} is not a commit"),
        });
    }
    // The objects the repository lacks (its own branches, tags and remotes exclude the
    // rest; `--all` would take in this worktree's HEAD, which resolves in the shadow).
    let mut c = git_in(repo);
    with_shadow(&mut c);
    c.args([
        "rev-list",
        "--objects",
        &new,
        "--not",
        "--branches",
        "--tags",
        "--remotes",
    ]);
    let objects = run("rev-list", c)?;
    if !objects.is_empty() {
        let mut pack = git_in(repo);
        with_shadow(&mut pack);
        pack.args(["pack-objects", "--stdout", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut pack = pack.spawn().map_err(|e| WorktreeError::Git {
            op: "pack-objects".into(),
            detail: e.to_string(),
        })?;
        let mut stdin = pack.stdin.take().expect("piped");
        let list = format!("{objects}\n");
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(list.as_bytes());
        });
        let mut index = git_in(repo);
        index
            .args(["index-pack", "--stdin", "--strict"])
            .stdin(pack.stdout.take().expect("piped"));
        let indexed = run("index-pack", index);
        let _ = writer.join();
        let packed = pack.wait_with_output().map_err(|e| WorktreeError::Git {
            op: "pack-objects".into(),
            detail: e.to_string(),
        })?;
        if !packed.status.success() {
            return Err(WorktreeError::Git {
                op: "pack-objects".into(),
                detail: String::from_utf8_lossy(&packed.stderr).trim().to_string(),
            });
        }
        indexed?;
    }
    // Complete in the repository's own store, without the shadow?
    let mut c = git_in(repo);
    c.args([
        "rev-list",
        "--quiet",
        "--objects",
        &new,
        "--not",
        "--branches",
        "--tags",
        "--remotes",
    ]);
    run("rev-list (connectivity)", c)?;
    let mut c = git_in(repo);
    c.args(["update-ref", "-m", "paddock: worktree run"])
        .arg(wt.branch_ref())
        .arg(&new)
        .arg(old.clone().unwrap_or_else(|| "0".repeat(new.len())));
    run("update-ref", c)?;
    Ok(Some((old, new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git() {
        for ok in ["main", "fix/login-bug", "a.b", "feature_1", "x@y", "ü"] {
            assert!(check_branch_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "--force", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "/a",
            "a/", "a//b", ".a", "a/.b", "a.lock", "a/b.lock", "a.", "HEAD", "@", "a@{1}", "a\nb",
            "a\x7f",
        ] {
            assert!(check_branch_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dir_names_are_readable_and_distinct() {
        let a = dir_name(Path::new("/src/proj/.git"), "feature/x");
        let b = dir_name(Path::new("/src/proj/.git"), "feature+x");
        assert!(a.starts_with("proj@feature+x-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, dir_name(Path::new("/src/proj/.git"), "feature/x"));
        assert!(dir_name(Path::new("/srv/bare.git"), "m").starts_with("bare@m-"));
    }
}
