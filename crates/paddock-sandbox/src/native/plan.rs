//! Spec validation and the init plan: everything `paddock init` needs, computed in the daemon
//! process (where it is cheap to cache) and sent to init as one JSON message.
//!
//! Owns: the rules for what may be mounted where (protected targets), the layout of a run
//! directory, and [`InitPlan`]. Never: touches the kernel beyond `stat`.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{SandboxError, SandboxSpec, TtySize, WorkspaceMode};

/// Host directories bind-mounted read-only into every sandbox when they exist.
pub const SYSTEM_DIRS: &[&str] = &[
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt",
];

/// Targets nothing may be mounted on or under (besides the runtime itself).
const PROTECTED: &[&str] = &[
    "/proc", "/dev", "/sys", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Directories of `$PADDOCK_HOME` whose subdirectories the daemon itself mounts into
/// sandboxes: agents' per-workspace state, git worktrees of worktree runs, and docker:host
/// runs' socket directories. Nothing else of `$PADDOCK_HOME` (its keys, logs, database,
/// other runs) is ever a mount source.
const SHAREABLE: &[&str] = &["agents", "worktrees", "docker-host"];

/// Where things live inside `run_dir`.
#[derive(Debug, Clone)]
pub struct RunLayout {
    pub run_dir: PathBuf,
}

impl RunLayout {
    pub fn new(run_dir: &Path) -> Self {
        RunLayout {
            run_dir: run_dir.to_path_buf(),
        }
    }
    pub fn layer(&self) -> PathBuf {
        self.run_dir.join("layer")
    }
    pub fn upper(&self) -> PathBuf {
        self.run_dir.join("layer/upper")
    }
    pub fn work(&self) -> PathBuf {
        self.run_dir.join("layer/work")
    }
    pub fn home(&self) -> PathBuf {
        self.run_dir.join("home")
    }
    pub fn files(&self) -> PathBuf {
        self.run_dir.join("files")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.run_dir.join("rootfs")
    }
    pub fn control_sock(&self) -> PathBuf {
        self.run_dir.join("control.sock")
    }
    pub fn log(&self) -> PathBuf {
        self.run_dir.join("log.jsonl")
    }
    pub fn exit_json(&self) -> PathBuf {
        self.run_dir.join("exit.json")
    }
}

/// A path under `/etc` to hide (root mode: the agent's kernel uid is 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    pub path: PathBuf,
    pub is_dir: bool,
}

/// One bind mount init performs (extra mounts, injected files, home).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    pub is_dir: bool,
}

/// What stage 1 and PID 1 need before any run is known: the first message on the control
/// socket, sent when `paddock init` is launched (possibly long before a start). With it,
/// stage 1 creates the namespaces and PID 1, and PID 1 builds the generic part of the root
/// (system directories, `/proc`, `/dev`, `/tmp`) and brings up loopback; then PID 1 waits
/// for the [`InitPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prelude {
    /// uid/gid inside the sandbox (the maps are written before any plan).
    pub uid_inside: u32,
    pub gid_inside: u32,
    /// Mount point of the root tmpfs inside PID 1's mount namespace: a directory that no
    /// mount source lives under (`$PADDOCK_HOME/cache/root`, or the run's own `rootfs`).
    pub root: PathBuf,
    /// Where the system directories come from: an image's unpacked filesystem (see
    /// [`crate::RootfsSource`]), or the host's `/` when `None`.
    #[serde(default)]
    pub system_root: Option<PathBuf>,
}

/// Everything else `paddock init` needs for a run: the second message on the control
/// socket, sent by `start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitPlan {
    pub run_id: String,
    pub hostname: String,
    pub run_dir: PathBuf,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub workspace: PathBuf,
    pub workspace_mode: WorkspaceMode,
    /// Bind mounts in mount order (parents before children).
    pub binds: Vec<Bind>,
    /// Masks under /etc (absolute host paths, applied at the same path inside).
    pub masks: Vec<Mask>,
    /// `cgroup.procs` files PID 1 writes "0" into (joins the run's cgroups) before it
    /// creates its cgroup namespace.
    pub cgroup_procs: Vec<PathBuf>,
    pub rootless: bool,
    pub tty: bool,
    pub stdin: bool,
    pub tty_size: Option<TtySize>,
    /// Hold the command before exec until `Down::Release`.
    #[serde(default)]
    pub hold: bool,
    /// Paths the command may write (Landlock).
    pub writable_paths: Vec<PathBuf>,
    /// How long init keeps an ended sandbox's unacknowledged output for a daemon to come
    /// back and collect it.
    pub linger_secs: u64,
}

fn invalid(message: impl Into<String>, hint: impl Into<String>) -> SandboxError {
    SandboxError::InvalidSpec {
        message: message.into(),
        hint: hint.into(),
    }
}

fn is_normalized_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn under(p: &Path, base: &Path) -> bool {
    p.starts_with(base)
}

/// Is `p` paddock's state, under `$PADDOCK_HOME`? Everything there is, except what lies
/// strictly beneath a [`SHAREABLE`] directory: agents' per-workspace state and git
/// worktrees of the user's repositories (`paddock run --wt`), user data the daemon itself
/// mounts into the runs that work in them.
fn in_state(p: &Path, home: &Path) -> bool {
    under(p, home)
        && !SHAREABLE.iter().any(|d| {
            p.strip_prefix(home.join(d))
                .is_ok_and(|rest| rest.components().next().is_some())
        })
}

/// The value of `HOME` in the spec's environment, if it is usable as a mount target.
pub fn home_target(spec: &SandboxSpec) -> Option<PathBuf> {
    spec.env
        .iter()
        .rev()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| PathBuf::from(v))
        .filter(|p| is_normalized_absolute(p) && p != Path::new("/"))
}

/// Check a mount target against the protected list. `what` names it in messages.
fn check_target(
    target: &Path,
    what: &str,
    spec: &SandboxSpec,
    paddock_home: Option<&Path>,
    allow_system: bool,
) -> Result<(), SandboxError> {
    if !is_normalized_absolute(target) {
        return Err(invalid(
            format!(
                "{what} target {} is not a normalised absolute path",
                target.display()
            ),
            "use an absolute path without `.` or `..` components",
        ));
    }
    if target == Path::new("/") {
        return Err(invalid(
            format!("{what} cannot be mounted on /"),
            "pick a directory such as /data",
        ));
    }
    let always = ["/proc", "/dev", "/sys"];
    let list: &[&str] = if allow_system { &always } else { PROTECTED };
    for p in list {
        if under(target, Path::new(p)) {
            return Err(invalid(
                format!(
                    "{what} target {} is under the protected path {p}",
                    target.display()
                ),
                "system directories come from the host read-only; mount somewhere else, e.g. /data",
            ));
        }
    }
    if !allow_system && target == spec.workspace {
        return Err(invalid(
            format!("{what} target {} is the workspace itself", target.display()),
            "the workspace is mounted by paddock; mount somewhere else",
        ));
    }
    if under(target, &spec.run_dir) || paddock_home.is_some_and(|h| in_state(target, h)) {
        return Err(invalid(
            format!(
                "{what} target {} is inside paddock's own state directory",
                target.display()
            ),
            "paddock's state is never visible in a sandbox; mount somewhere else",
        ));
    }
    Ok(())
}

/// Validate what only the runtime can check. Nothing has been created when this fails.
pub fn validate(spec: &SandboxSpec, paddock_home: Option<&Path>) -> Result<(), SandboxError> {
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return Err(invalid("no command to run", "give a command after `--`"));
    }
    if spec
        .command
        .iter()
        .chain(spec.env.iter().flat_map(|(k, v)| [k, v]))
        .any(|s| s.contains('\0'))
    {
        return Err(invalid(
            "the command or environment contains a NUL byte",
            "remove it",
        ));
    }
    if spec
        .env
        .iter()
        .any(|(k, _)| k.is_empty() || k.contains('='))
    {
        return Err(invalid(
            "an environment variable name is empty or contains `=`",
            "fix the variable name",
        ));
    }
    if spec.name.is_empty() || spec.name.len() > 63 {
        return Err(invalid(
            format!("run name {:?} cannot be a hostname", spec.name),
            "use 1-63 characters",
        ));
    }
    // It need not exist yet: the start makes what it needs (see `ensure_run_dirs`).
    if !spec.run_dir.is_absolute() {
        return Err(invalid(
            format!("run directory {} is not absolute", spec.run_dir.display()),
            "the daemon passes `$PADDOCK_HOME/runs/<id>`",
        ));
    }
    if !is_normalized_absolute(&spec.workspace) {
        return Err(invalid(
            format!(
                "workspace {} is not an absolute canonical path",
                spec.workspace.display()
            ),
            "pass the canonical path of the workspace",
        ));
    }
    match std::fs::metadata(&spec.workspace) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(invalid(
                format!("workspace {} is not a directory", spec.workspace.display()),
                "point the workspace at a directory",
            ));
        }
        Err(e) => {
            return Err(invalid(
                format!(
                    "workspace {} is not accessible: {e}",
                    spec.workspace.display()
                ),
                "check that the directory exists",
            ));
        }
    }
    check_target(&spec.workspace, "workspace", spec, paddock_home, true)?;
    for p in PROTECTED {
        if under(&spec.workspace, Path::new(p)) {
            return Err(invalid(
                format!(
                    "workspace {} is inside the system directory {p}",
                    spec.workspace.display()
                ),
                "use a project directory outside the system directories",
            ));
        }
    }
    if under(&spec.workspace, &spec.run_dir)
        || under(&spec.run_dir, &spec.workspace)
        || paddock_home.is_some_and(|h| in_state(&spec.workspace, h) || under(h, &spec.workspace))
    {
        return Err(invalid(
            format!(
                "workspace {} overlaps paddock's state directory",
                spec.workspace.display()
            ),
            "use a project directory that neither contains nor is inside $PADDOCK_HOME",
        ));
    }
    if !is_normalized_absolute(&spec.cwd) {
        return Err(invalid(
            format!(
                "working directory {} is not an absolute path",
                spec.cwd.display()
            ),
            "use an absolute path inside the sandbox",
        ));
    }
    if let Some(home) = home_target(spec) {
        check_target(&home, "HOME", spec, paddock_home, false)?;
    }
    for m in &spec.mounts {
        if !m.source.is_absolute() {
            return Err(invalid(
                format!("mount source {} is not absolute", m.source.display()),
                "use an absolute host path",
            ));
        }
        if let Err(e) = std::fs::metadata(&m.source) {
            return Err(invalid(
                format!("mount source {} is not accessible: {e}", m.source.display()),
                "check that the path exists",
            ));
        }
        if paddock_home.is_some_and(|h| in_state(&m.source, h) || under(h, &m.source))
            || under(&m.source, &spec.run_dir)
        {
            return Err(invalid(
                format!(
                    "mount source {} exposes paddock's state directory",
                    m.source.display()
                ),
                "paddock's state ($PADDOCK_HOME) can never be mounted into a sandbox",
            ));
        }
        check_target(&m.target, "mount", spec, paddock_home, false)?;
    }
    for f in &spec.files {
        check_target(&f.path, "injected file", spec, paddock_home, true)?;
        if f.path.starts_with(&spec.workspace) {
            return Err(invalid(
                format!("injected file {} is inside the workspace", f.path.display()),
                "inject files outside the workspace",
            ));
        }
    }
    Ok(())
}

/// Number of path components (for ordering mounts parents-first).
pub fn depth(p: &Path) -> usize {
    p.components().count()
}
