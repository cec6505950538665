//! Wire types of `/v1`. Every type tolerates unknown fields; new fields get defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The lifecycle of a run.
///
/// ```text
/// created → starting → running → stopping → stopped | failed
/// ```
/// A command that ends by itself goes straight from `running` to `stopped` (or `failed`
/// when the sandbox, not the command, ended it: out of memory, setup error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Created,
        RunState::Starting,
        RunState::Running,
        RunState::Stopping,
        RunState::Stopped,
        RunState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Created => "created",
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Stopping => "stopping",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// `stopped` and `failed` are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Stopped | RunState::Failed)
    }

    /// Is `self → next` a legal transition?
    pub fn can_become(self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            (Created, Starting)
                | (Created, Stopped)
                | (Created, Failed)
                | (Starting, Running)
                | (Starting, Stopping)
                | (Starting, Failed)
                | (Running, Stopping)
                | (Running, Stopped)
                | (Running, Failed)
                | (Stopping, Stopped)
                | (Stopping, Failed)
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the workspace is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    #[default]
    Overlay,
    Bind,
}

impl WorkspaceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceMode::Overlay => "overlay",
            WorkspaceMode::Bind => "bind",
        }
    }
}

/// An extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// cgroup limits.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub pids: Option<u64>,
    #[serde(default)]
    pub cpus: Option<f64>,
}

/// `POST /v1/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRun {
    /// DNS label; the daemon picks an adjective-animal pair when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Absolute path of the workspace on the host.
    pub workspace: PathBuf,
    /// argv. Empty means the user's shell.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub workspace_mode: WorkspaceMode,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub limits: Limits,
    /// `native` (default), `docker`, `gvisor`. Absent with an `image`: gvisor where the
    /// engine has it, else docker.
    #[serde(default)]
    pub runtime: Option<String>,
    /// The image the sandbox runs on: a name the engine knows (the container runtimes'
    /// default is paddock's base image; native runs on the host's directories without one).
    #[serde(default)]
    pub image: Option<String>,
    /// Tools the image must have, as `dependencies:` spells them (`node`, `apt:jq`, …): the
    /// run's start builds the image for them on `image` (or paddock's base) when missing.
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    /// Keep stdin open for an attached client.
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub tty_size: Option<TtySize>,
    /// Start right away (default) or leave the run `created` until `POST .../start` or an
    /// attach with `start=1`.
    #[serde(default = "default_true")]
    pub start: bool,
    /// The resolved configuration the run was made from, kept for `inspect`.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Config files that were layered, for `inspect`.
    #[serde(default)]
    pub config_sources: Vec<PathBuf>,
    /// Grants whose credentials the egress proxy injects for this run (names; the values
    /// never leave the daemon).
    #[serde(default)]
    pub grants: Vec<String>,
    /// The `network:` section (policy, rules, passthrough, headers) as paddock.yaml spells it;
    /// null means the default (permissive, no rules).
    #[serde(default)]
    pub network: serde_json::Value,
    /// Named services inside the run: endpoint (a DNS label) → TCP port on the sandbox's
    /// loopback, reached at `http://<endpoint>.<name>.localhost:<router port>`. An
    /// endpoint given twice in the JSON object is refused (never last-one-wins).
    #[serde(default, deserialize_with = "unique_ports")]
    pub ports: BTreeMap<String, u16>,
    /// The agent preset this run is (`paddock claude`, `run --agent NAME`): its name and
    /// the sandbox directories the daemon keeps per workspace between runs.
    #[serde(default)]
    pub agent: Option<AgentSetup>,
    /// Run in a git worktree of `repo` on a branch instead of `workspace` (`paddock run
    /// --wt BRANCH`): the worktree is the workspace, mounted read-write. Older daemons
    /// ignore the field; `/v1/health` lists the `worktrees` capability.
    #[serde(default)]
    pub worktree: Option<WorktreeRequest>,
}

/// What the daemon does for an agent preset (the CLI resolves the rest of the preset into
/// the command, environment, mounts, network and grants of the request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSetup {
    /// The preset's name (a DNS label).
    pub name: String,
    /// Absolute sandbox paths of directories kept per workspace between runs (history,
    /// settings, answered trust prompts): `$PADDOCK_HOME/agents/<name>/<workspace>/…`,
    /// mounted read-write. Login grants' credential files under them are written there.
    #[serde(default)]
    pub state: Vec<PathBuf>,
    /// Files written under the state directories when missing (sandbox path → contents).
    #[serde(default)]
    pub seed: BTreeMap<PathBuf, String>,
}

/// A run's workspace as a git worktree (see [`CreateRun::worktree`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeRequest {
    /// A directory inside the repository (its main checkout or any linked worktree).
    pub repo: PathBuf,
    /// The branch, created from the repository's current `HEAD` when it does not exist.
    pub branch: String,
}

fn default_true() -> bool {
    true
}

/// A JSON object of endpoint → port where a repeated key is an error.
fn unique_ports<'de, D>(d: D) -> Result<BTreeMap<String, u16>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = BTreeMap<String, u16>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of endpoint name to port")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = m.next_entry::<String, u16>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format_args!(
                        "endpoint `{}` is given twice in `ports`",
                        k.escape_default()
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// A run as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub name: String,
    pub workspace: PathBuf,
    pub command: Vec<String>,
    pub runtime: String,
    pub state: RunState,
    pub workspace_mode: WorkspaceMode,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why a run failed or stopped abnormally ("out of memory", …).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// The resolved configuration.
    #[serde(default)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub config_sources: Vec<PathBuf>,
    /// The overlay layer was applied to the workspace (or there was nothing to apply).
    #[serde(default)]
    pub applied: bool,
    /// Named services inside the run: endpoint → port on the sandbox's loopback.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Their URLs through the daemon's router, endpoint → `http://<endpoint>.<name>.localhost:<port>`
    /// (filled by daemons with the `router` capability).
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
    /// The agent preset the run was made with (`paddock claude`, `run --agent NAME`).
    #[serde(default)]
    pub agent: Option<String>,
    /// The git branch of a worktree run (`paddock run --wt BRANCH`).
    #[serde(default)]
    pub branch: Option<String>,
    /// The worktree's checkout on the host (a worktree run's `workspace`).
    #[serde(default)]
    pub worktree: Option<PathBuf>,
}

/// `GET /v1/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// `POST /v1/runs/{ref}/stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StopRequest {
    /// Seconds between SIGTERM and SIGKILL (default 10).
    #[serde(default)]
    pub grace_secs: Option<f64>,
}

/// `GET /v1/runs/{ref}/wait`: answers when the run is `stopped` or `failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitResult {
    pub id: String,
    pub state: RunState,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/runs/{ref}/exec` (capability `exec`): run another command inside a running
/// run's sandbox, confined exactly like the run's own command. The request carries
/// `Connection: upgrade` and `Upgrade: paddock-attach`; after `101 Switching Protocols` the
/// connection speaks the [`crate::attach`] framing (output, stdin, resize, signals), and
/// its last frame is `Exit` with an [`ExecResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// argv; never empty. Looked up in the sandbox's `PATH`.
    pub command: Vec<String>,
    /// Variables over the run's own environment (proxy, CA and grant placeholders, …).
    /// Only their names are recorded in the audit log. The run's identity (`PADDOCK*`)
    /// cannot be changed.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Give the command a pseudo-terminal (stdout and stderr become one stream).
    #[serde(default)]
    pub tty: bool,
    /// Forward the client's stdin; without it the command's stdin is at end of file
    /// (unless `tty`).
    #[serde(default)]
    pub stdin: bool,
    /// Initial terminal size with `tty`.
    #[serde(default)]
    pub tty_size: Option<TtySize>,
}

/// How an exec'd command ended: the payload of the exec session's `Exit` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Ties `run.exec` and `run.exec.exit` in the run's audit log together.
    #[serde(default)]
    pub exec_id: String,
    /// As a shell reports it: the command's status, 127 when not found, 128+N for signal
    /// N. `None` when it is unknown (the sandbox ended under it).
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// One line of `GET /v1/runs/{ref}/logs` (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// `stdout`, `stderr` or `tty`.
    pub stream: String,
    /// The bytes, as UTF-8 text when they are text…
    #[serde(default)]
    pub text: Option<String>,
    /// …otherwise base64.
    #[serde(default)]
    pub b64: Option<String>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub pid: u32,
    pub version: String,
    pub commit: String,
    /// RFC 3339.
    pub started_at: String,
    pub runs: RunCounts,
    /// What this daemon supports: `runs`, `events`, `logs`, `attach`, `runtime.native`, …
    pub capabilities: Vec<String>,
    pub event_bus: EventBusStats,
    /// Seconds of idleness (no active runs) before the daemon exits; 0 = never.
    #[serde(default)]
    pub idle_timeout_secs: u64,
    /// The audit writer (capability `audit`); absent from older daemons.
    #[serde(default)]
    pub audit: Option<AuditStats>,
    /// The hostname router's port on 127.0.0.1, fixed when the daemon started (whether or
    /// not it could take it; see `GET /v1/router`). Absent from older daemons.
    #[serde(default)]
    pub router_port: Option<u16>,
}

impl Health {
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunCounts {
    pub total: u64,
    /// Not yet stopped or failed.
    pub active: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventBusStats {
    pub published: u64,
    pub subscribers: u64,
    /// Events dropped because a subscriber's buffer was full (oldest first).
    pub dropped: u64,
}

/// One event on `GET /v1/events` (the SSE `data:`; the SSE `event:` is [`Event::kind`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic per daemon process.
    pub seq: u64,
    /// RFC 3339.
    pub ts: String,
    #[serde(default)]
    pub run_id: Option<String>,
    /// `run.state`, `init.step`, `run.exit`, `daemon.start`, `daemon.stop`, …
    pub kind: String,
    pub data: serde_json::Value,
}

/// Data of a `run.state` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStateChange {
    #[serde(default)]
    pub from: Option<RunState>,
    pub to: RunState,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// Data of an `init.step` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitStep {
    pub index: u32,
    pub total: u32,
    pub description: String,
}

/// Summary of an overlay run's changes (`GET /v1/runs/{ref}/diff`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffResponse {
    pub run_id: String,
    /// The structured change list as produced by the layer reader.
    pub changes: serde_json::Value,
    /// `git status --short`-style summary.
    pub summary: String,
    /// Unified diff (empty unless requested).
    #[serde(default)]
    pub patch: String,
}

/// `POST /v1/runs/{ref}/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ApplyRequest {
    #[serde(default)]
    pub force: bool,
    /// Apply changes under `.git` too (hooks and config run code on the host).
    #[serde(default)]
    pub include_git: bool,
    /// Apply auto-run files too (`.envrc`, `.vscode/tasks.json`, `paddock.yaml`, …).
    #[serde(default)]
    pub include_autorun: bool,
}

/// `POST /v1/runs/{ref}/snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SnapshotRequest {
    /// What the snapshot is for (shown by `paddock snapshots`).
    #[serde(default)]
    pub message: Option<String>,
}

/// One snapshot of a run's layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `s1`, `s2`, … in the order they were taken.
    pub id: String,
    #[serde(default)]
    pub message: Option<String>,
    pub created_at: String,
    /// Taken by paddock (before an exec, or on the agent interval), not asked for.
    #[serde(default)]
    pub auto: bool,
    /// Files in the layer then; of those, shared with the snapshot before (unchanged).
    pub files: u64,
    pub shared: u64,
    pub copied_bytes: u64,
    /// How long taking it took.
    pub took_ms: f64,
}

/// Answer of `GET /v1/runs/{ref}/snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotList {
    pub run_id: String,
    pub snapshots: Vec<Snapshot>,
}

/// `POST /v1/runs/{ref}/rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RollbackRequest {
    /// The snapshot's id.
    pub snapshot: String,
    /// Only these workspace-relative paths (and what is beneath them); all when empty.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
}

/// Answer of `POST /v1/runs/{ref}/rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackResponse {
    pub run_id: String,
    pub snapshot: String,
    /// Rolled back inside the running sandbox (it sees the restored files now), or in a
    /// stopped run's layer.
    pub live: bool,
    /// Paths removed and entries written.
    pub deleted: u64,
    pub written: u64,
}

/// `GET /v1/runs/{ref}/stats`: a live run's usage (what the runtime can tell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunStats {
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub pids: Option<u64>,
    /// CPU time used so far, in nanoseconds.
    #[serde(default)]
    pub cpu_usage_ns: Option<u64>,
}

/// `GET /v1/runs/{ref}/audit/verify`: whether the run's audit log verifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerifyStatus {
    pub ok: bool,
    /// Entries covered by signed checkpoints and checked.
    pub entries: u64,
    pub checkpoints: u64,
    /// Why it does not verify.
    #[serde(default)]
    pub error: Option<String>,
}

/// `POST /v1/runs/{ref}/discard`: throw the run's unapplied changes away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DiscardRequest {
    /// Only these workspace-relative paths (and what is beneath them); all when empty.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
}

/// Answer of `POST /v1/runs/{ref}/discard`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscardResponse {
    pub run_id: String,
    /// Discarded inside the running sandbox (it sees the workspace as it was), or in an
    /// ended run's layer.
    pub live: bool,
    /// Changed paths thrown away.
    pub discarded: u64,
}

/// Answer of `POST /v1/runs/{ref}/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub run_id: String,
    pub report: serde_json::Value,
    pub summary: String,
}

/// Audit writer figures in `/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditStats {
    /// Logs whose writer is open (the daemon log and every live run's).
    #[serde(default)]
    pub logs_open: u64,
    /// Entries handed to the writers since the daemon started.
    #[serde(default)]
    pub submitted: u64,
    /// Entries acknowledged: written and fsynced.
    #[serde(default)]
    pub acked_entries: u64,
    /// Entries queued, not yet acknowledged.
    #[serde(default)]
    pub pending: u64,
    /// Entries that could not be recorded (each one is logged as an error).
    #[serde(default)]
    pub failed: u64,
    /// Key id (SHA-256 of the public key, hex) of the checkpoint signing key.
    #[serde(default)]
    pub key_id: String,
}

/// One audit entry, as `GET /v1/runs/{ref}/audit` lists it (the shape of a bundle entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// Event kind: `run.state`, `init.step`, `net.request`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

/// `GET /v1/runs/{ref}/audit` and `GET /v1/audit/daemon`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntries {
    /// The run id, or `daemon`.
    pub log_id: String,
    /// Entries in the log.
    pub size: u64,
    /// Entries covered by the latest signed checkpoint.
    #[serde(default)]
    pub signed_size: u64,
    /// Signed checkpoints.
    #[serde(default)]
    pub checkpoints: u64,
    /// Entries that matched the filter (before `limit`).
    #[serde(default)]
    pub matched: u64,
    /// The matching entries, oldest first (the newest `limit` of them).
    pub entries: Vec<AuditEntry>,
}

/// `GET /v1/audit/key`: the public key that signs every checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditKey {
    /// `ed25519`.
    pub algorithm: String,
    /// The 32-byte public key, hex.
    pub public_key: String,
    /// SHA-256 of the public key bytes, hex.
    pub key_id: String,
    /// The key as `paddock audit verify --key` takes it: `ed25519:<hex>`.
    #[serde(default)]
    pub pin: String,
}

/// `GET /v1/router` (capability `router`): the daemon's hostname router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    /// The port URLs use (`PADDOCK_ROUTER_PORT`, else `router.port`, else 8080).
    pub port: u16,
    /// Where it listens: always `127.0.0.1:<port>`.
    pub listen: String,
    /// False when the port could not be taken; `error` and `hint` say why.
    pub listening: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub hint: Option<String>,
    /// HTTPS is served on the same port (certificates from the local CA).
    #[serde(default)]
    pub tls: bool,
    /// One entry per routed run, by name.
    #[serde(default)]
    pub routes: Vec<RouteInfo>,
}

/// A run's routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub name: String,
    pub run_id: String,
    /// `running` (forwarded) or `stopped` (answered with 503).
    pub state: String,
    /// Endpoint → port on the sandbox's loopback.
    #[serde(default)]
    pub endpoints: BTreeMap<String, u16>,
    /// Endpoint → URL.
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
}

/// `GET /v1/ca` (capability `ca`): the certificate of the local CA (never its key), to
/// trust HTTPS through the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCertificate {
    /// PEM.
    pub pem: String,
}

/// The error envelope: `{"error":{"code","message","hint"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable machine-readable code: `bad_request`, `not_found`, `ambiguous`, `conflict`,
    /// `invalid_state`, `payload_too_large`, `unsupported`, `internal`, …
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub hint: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_allows_only_forward_transitions() {
        use RunState::*;
        assert!(Created.can_become(Starting));
        assert!(Running.can_become(Stopped));
        assert!(!Stopped.can_become(Running));
        assert!(!Failed.can_become(Starting));
        assert!(!Running.can_become(Created));
        assert!(!Running.can_become(Running));
        for s in RunState::ALL {
            if s.is_terminal() {
                assert!(RunState::ALL.iter().all(|n| !s.can_become(*n)));
            }
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn an_endpoint_given_twice_is_refused_not_last_wins() {
        let ok: CreateRun =
            serde_json::from_str(r#"{"workspace":"/w","ports":{"web":3000,"api":8000}}"#).unwrap();
        assert_eq!(ok.ports.len(), 2);
        let none: CreateRun = serde_json::from_str(r#"{"workspace":"/w"}"#).unwrap();
        assert!(none.ports.is_empty());
        let e = serde_json::from_str::<CreateRun>(
            r#"{"workspace":"/w","ports":{"web":3000,"web":3001}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`web` is given twice"), "{e}");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let r: WaitResult = serde_json::from_str(
            r#"{"id":"run_000000000000","state":"stopped","exit_code":3,"from_the_future":1}"#,
        )
        .unwrap();
        assert_eq!(r.exit_code, Some(3));
    }
}

/// `POST /v1/ui/login` (daemon socket only): start the web dashboard if it is not
/// listening yet and mint a one-time login code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiLogin {
    /// Open this in a browser: it logs in once (the code expires after
    /// [`UiLogin::expires_in_s`] or on first use) and leaves a session cookie.
    pub url: String,
    /// The dashboard's address, e.g. `http://127.0.0.1:7780`.
    pub base_url: String,
    pub expires_in_s: u64,
}

/// `GET /v1/ui/token` (daemon socket only): the dashboard's bearer token, for scripts and
/// Prometheus (`Authorization: Bearer …` on `/metrics` and the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiToken {
    pub token: String,
    pub base_url: String,
}
