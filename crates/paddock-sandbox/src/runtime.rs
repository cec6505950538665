//! The `Runtime` trait: the seam between the daemon's run manager and a sandbox backend.
//!
//! The daemon owns run records, names and the state machine; a runtime owns processes,
//! namespaces, mounts, cgroups and the run's output. Everything a runtime needs is in a
//! [`SandboxSpec`]; everything the daemon must persist to find a sandbox again after a
//! restart is in a [`SandboxHandle`] (serialisable, stored as JSON in state.db).
//!
//! Backend-specific features (exec into a running sandbox, stats, a network-namespace
//! handle) are optional capabilities reached through `Runtime::as_*` accessors that return
//! `None` when a backend does not have them: callers check, they never get a stub.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::SandboxError;

/// Which backend runs a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Native,
    Docker,
    Gvisor,
}

impl RuntimeKind {
    /// Every kind, in the order `doctor` lists them.
    pub const ALL: [RuntimeKind; 3] = [
        RuntimeKind::Native,
        RuntimeKind::Docker,
        RuntimeKind::Gvisor,
    ];

    /// Parse a `--runtime` / `runtime:` value.
    pub fn parse(s: &str) -> Option<RuntimeKind> {
        RuntimeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Native => "native",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Gvisor => "gvisor",
        }
    }
}

/// How the workspace appears inside the sandbox (always at the same absolute path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// overlayfs: lower = the real workspace, upper = `run_dir/layer/upper`. Host untouched.
    #[default]
    Overlay,
    /// Direct read-write bind mount of the real workspace.
    Bind,
}

/// One extra mount (`-m SRC:DST[:ro]` or `mounts:` in config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute host path (must exist).
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    pub read_only: bool,
}

/// A file the runtime places inside the sandbox, read-only (resolv.conf, CA bundle, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFile {
    /// Absolute path inside the sandbox.
    pub path: PathBuf,
    /// Shared, not copied: the CA bundle (hundreds of KiB) goes into every run's spec.
    pub contents: Arc<[u8]>,
}

/// cgroup limits. `None` means "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Number of CPUs (fractional allowed, e.g. 0.5).
    pub cpus: Option<f64>,
}

/// Who the agent runs as: the invoking user's uid/gid, mapped into the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

/// Everything a runtime needs to create a sandbox. Built and validated by the daemon from
/// CLI flags and config; the runtime re-validates what only it can check (paths exist,
/// protected mount targets, kernel support).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// `run_<12 hex>`.
    pub run_id: String,
    /// DNS-label run name; used as the sandbox hostname.
    pub name: String,
    /// `$PADDOCK_HOME/runs/<run_id>`: exists, 0700, owned by the daemon. The runtime keeps
    /// everything it creates for this run under it (layer, home, logs, control socket).
    pub run_dir: PathBuf,
    /// argv; never empty.
    pub command: Vec<String>,
    /// The complete environment of the command (the daemon computes it; nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox (defaults to the workspace path).
    pub cwd: PathBuf,
    /// Absolute, canonical host path of the workspace.
    pub workspace: PathBuf,
    pub workspace_mode: WorkspaceMode,
    pub mounts: Vec<MountSpec>,
    /// Written by `create`; `start` and later calls use only their paths (a caller may
    /// persist the spec with the contents dropped).
    pub files: Vec<InjectedFile>,
    pub limits: Limits,
    /// Allocate a pseudo-terminal for the command.
    pub tty: bool,
    /// Keep stdin open for an attached client (`-i`); otherwise stdin is /dev/null.
    pub stdin: bool,
    pub user: SandboxUser,
    /// Initial terminal size when `tty` is set.
    pub tty_size: Option<TtySize>,
    /// Hold the command before exec until [`NetnsCapability::release`]: `start` then
    /// returns with the sandbox fully set up (its network namespace exists) and the
    /// command waiting, so the daemon can put the run's network in place first.
    #[serde(default)]
    pub hold_until_released: bool,
    /// Which backend makes the sandbox (a [`crate::Runtimes`] dispatches on it).
    #[serde(default = "native_kind")]
    pub runtime: RuntimeKind,
    /// The image whose root the sandbox runs on (container runtimes; `None`: the runtime's
    /// default, which for native is the host's system directories).
    #[serde(default)]
    pub image: Option<String>,
    /// Tools the run's image must have: built at `start` (when missing) on `image`, or on
    /// paddock's base image when `image` is `None`, with the build's steps as init steps.
    /// A native run with dependencies runs on that image too.
    #[serde(default)]
    pub dependencies: Vec<paddock_config::Dependency>,
}

impl SandboxSpec {
    /// Whether the native runtime runs this spec on an image rather than the host's system
    /// directories.
    pub fn on_image(&self) -> bool {
        self.image.is_some() || !self.dependencies.is_empty()
    }
}

/// Where the native runtime gets a run's image as a directory (the Docker backend builds
/// it when the spec's dependencies need it, then exports it from the engine:
/// [`crate::docker::rootfs`]).
#[async_trait]
pub trait RootfsSource: Send + Sync {
    /// A directory holding the filesystem of `spec`'s image (see
    /// [`SandboxSpec::dependencies`]), kept under `cache` (one per image id), with the
    /// build's steps sent to `events` as init steps.
    async fn rootfs(
        &self,
        spec: &SandboxSpec,
        cache: &Path,
        events: &EventSink,
    ) -> Result<PathBuf, SandboxError>;
}

fn native_kind() -> RuntimeKind {
    RuntimeKind::Native
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// What the daemon persists to find a sandbox again (after a daemon restart too).
/// Opaque to the daemon apart from being JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxHandle {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub kind: RuntimeKind,
    /// Backend-specific state (pids, start times, cgroup paths, container ids, …).
    pub state: serde_json::Value,
}

/// How a sandbox's command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code as a shell reports it: the command's status, or 128+N for signal N.
    /// `None` when it cannot be known (the sandbox died while no daemon was watching and
    /// left no record).
    pub exit_code: Option<i32>,
    /// The signal that killed the command, if any.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended the command (cgroup memory limit).
    pub oom_killed: bool,
    /// Human-readable reason for an abnormal end ("out of memory", "command not found", …).
    pub reason: Option<String>,
}

/// Output stream of the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
    /// The pty (stdout and stderr are one stream when a tty is allocated).
    Tty,
}

/// One chunk of output, as recorded in `runs/<id>/log.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub stream: OutputStream,
    pub data: Vec<u8>,
}

/// Input from an attached client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachInput {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(TtySize),
    /// Deliver this signal to the command's process group.
    Signal(i32),
}

/// A live connection to a running sandbox's I/O.
pub struct Attachment {
    /// Output from the moment of attaching (earlier output is in the log). Closed when the
    /// command has exited and all its output was delivered.
    pub output: mpsc::Receiver<OutputChunk>,
    pub input: mpsc::Sender<AttachInput>,
}

/// What to read from a run's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogQuery {
    /// Only the last N lines of output.
    pub tail: Option<usize>,
    /// Keep streaming new output until the command exits.
    pub follow: bool,
}

/// Progress and lifecycle notifications from a runtime. Publishing never blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxEvent {
    /// `paddock init` began step `index` (1-based) of `total`.
    InitStep {
        run_id: String,
        index: u32,
        total: u32,
        description: String,
    },
    /// The command is running.
    Started { run_id: String, pid: i32 },
    /// The command ended.
    Exited { run_id: String, exit: ExitInfo },
}

/// Where a runtime publishes [`SandboxEvent`]s. Must not block.
pub type EventSink = Arc<dyn Fn(SandboxEvent) + Send + Sync>;

/// Result of re-adopting a sandbox after a daemon restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// Still running; the runtime watches it again and will publish `Exited`.
    Running,
    /// It ended while no daemon was watching.
    Exited(ExitInfo),
}

/// Resource usage of a sandbox (optional capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SandboxStats {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
}

/// A sandbox runtime backend.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    fn kind(&self) -> RuntimeKind;

    /// Whether sandboxes of `kind` can be made now: `Ok` with a short description (a
    /// version), or why not and what to do. A backend answers for its own kind only.
    async fn probe(&self, kind: RuntimeKind) -> Result<String, SandboxError> {
        if kind == self.kind() {
            Ok(String::new())
        } else {
            Err(SandboxError::Unsupported {
                message: format!(
                    "the {} runtime is not available in this daemon",
                    kind.as_str()
                ),
                hint: format!("use the {} runtime", self.kind().as_str()),
            })
        }
    }

    /// Lay out an empty directory that will later become some run's `run_dir`, ahead of
    /// time and for no run in particular (empty directories only). `create` and `start`
    /// must work whether or not its directory was laid out. The default lays out nothing.
    fn lay_out(&self, run_dir: &std::path::Path) -> Result<(), SandboxError> {
        let _ = run_dir;
        Ok(())
    }

    /// Validate the spec and prepare what can be prepared without starting anything
    /// visible. Bad input fails here, before anything exists. Cheap: it is on the path of
    /// every create (directories a start needs are that start's to make).
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle, SandboxError>;

    /// Start the sandbox and its command. Init steps and exit are published on `events`.
    /// Returns once the command has been exec'd (or failed to start). The returned handle
    /// replaces the one from `create` (it now holds pids etc.).
    async fn start(
        &self,
        handle: &SandboxHandle,
        spec: &SandboxSpec,
        events: EventSink,
    ) -> Result<SandboxHandle, SandboxError>;

    /// Live I/O with a running sandbox.
    async fn attach(&self, handle: &SandboxHandle) -> Result<Attachment, SandboxError>;

    /// Wait for the command to end.
    async fn wait(&self, handle: &SandboxHandle) -> Result<ExitInfo, SandboxError>;

    /// SIGTERM to the command's process group, SIGKILL to the whole sandbox after `grace`.
    async fn stop(&self, handle: &SandboxHandle, grace: Duration)
    -> Result<ExitInfo, SandboxError>;

    /// Send a signal to the command's process group.
    async fn kill(&self, handle: &SandboxHandle, signal: i32) -> Result<(), SandboxError>;

    /// Read the run's recorded output (`runs/<id>/log.jsonl`), optionally following it.
    async fn logs(
        &self,
        handle: &SandboxHandle,
        query: LogQuery,
    ) -> Result<mpsc::Receiver<OutputChunk>, SandboxError>;

    /// Remove everything the sandbox left: processes, mounts, cgroups, netns, layer.
    /// Idempotent.
    async fn destroy(&self, handle: &SandboxHandle) -> Result<(), SandboxError>;

    /// Find a sandbox again after a daemon restart.
    async fn adopt(
        &self,
        handle: &SandboxHandle,
        events: EventSink,
    ) -> Result<Adopted, SandboxError>;

    /// Optional: run another command inside a running sandbox.
    fn as_exec(&self) -> Option<&dyn ExecCapability> {
        None
    }

    /// Optional: resource usage.
    fn as_stats(&self) -> Option<&dyn StatsCapability> {
        None
    }

    /// Optional: a handle on the sandbox's network namespace (egress listeners, routing).
    fn as_netns(&self) -> Option<&dyn NetnsCapability> {
        None
    }
}

/// Run another command inside a running sandbox, confined like the first.
#[async_trait]
pub trait ExecCapability: Send + Sync {
    async fn exec(
        &self,
        handle: &SandboxHandle,
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
    ) -> Result<Attachment, SandboxError>;

    /// Like [`exec`](ExecCapability::exec), and also reports how the command ended. The
    /// default (for backends that cannot tell) resolves the receiver with an error.
    async fn exec_with_exit(
        &self,
        handle: &SandboxHandle,
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
    ) -> Result<(Attachment, tokio::sync::oneshot::Receiver<ExitInfo>), SandboxError> {
        let attachment = self.exec(handle, command, env, tty).await?;
        let (_, rx) = tokio::sync::oneshot::channel();
        Ok((attachment, rx))
    }
}

/// Resource usage of a running sandbox.
#[async_trait]
pub trait StatsCapability: Send + Sync {
    async fn stats(&self, handle: &SandboxHandle) -> Result<SandboxStats, SandboxError>;
}

/// Access to a sandbox's network namespace from the daemon.
pub trait NetnsCapability: Send + Sync {
    /// A file descriptor of the sandbox's network namespace (`/proc/<pid>/ns/net`), usable
    /// with setns(2) where the caller has the privilege, and as proof of identity.
    fn netns_fd(&self, handle: &SandboxHandle) -> Result<std::os::fd::OwnedFd, SandboxError>;

    /// A new socket that lives in the sandbox's network namespace (a socket's namespace is
    /// fixed when it is created). The egress proxy binds and listens on such sockets; the
    /// router connects with them. As root this is setns on a short-lived thread; rootless,
    /// the sandbox's init creates it and passes it over SCM_RIGHTS.
    fn socket_in_netns(
        &self,
        handle: &SandboxHandle,
        domain: i32,
        ty: i32,
    ) -> Result<std::os::fd::OwnedFd, SandboxError>;

    /// Let a command started with [`SandboxSpec::hold_until_released`] exec. Without the
    /// hold, or once released, this does nothing.
    fn release(&self, handle: &SandboxHandle) -> Result<(), SandboxError>;

    /// Several sockets in the sandbox's network namespace, `(domain, type)` each, in order.
    /// A runtime that can switch namespaces once for all of them overrides this.
    fn sockets_in_netns(
        &self,
        handle: &SandboxHandle,
        kinds: &[(i32, i32)],
    ) -> Result<Vec<std::os::fd::OwnedFd>, SandboxError> {
        kinds
            .iter()
            .map(|&(domain, ty)| self.socket_in_netns(handle, domain, ty))
            .collect()
    }
}
