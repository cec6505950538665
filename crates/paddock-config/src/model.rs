//! The resolved configuration: what the daemon and the CLI use once files are merged and
//! every value is checked. All of it is `Serialize + Deserialize` so the daemon can store
//! a run's resolved config as JSON; unknown JSON fields are ignored and missing ones take
//! their defaults, so stored configs stay readable as fields are added.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::values::{HostPattern, HttpMethod, MountSpec};

/// The merged, resolved configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Run name (a DNS label), if set.
    pub name: Option<String>,
    /// The command as argv, if set.
    pub command: Option<Vec<String>>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Bind mounts, user config's first.
    pub mounts: Vec<MountSpec>,
    /// How the workspace is presented.
    pub workspace: WorkspaceConfig,
    /// Resource limits.
    pub limits: Limits,
    /// Sandbox runtime.
    pub runtime: RuntimeKind,
    /// The image a container runtime runs on (`image:`); `None` is paddock's base image.
    pub image: Option<String>,
    /// `dependencies:`, user config's first, each once: built into an image on top of
    /// `image` (or paddock's base) for the container runtimes.
    pub dependencies: Vec<crate::values::Dependency>,
    /// The services among `dependencies:` (`docker:host` or `docker:dind`, one at most): not built into an
    /// image, so they do not make a run an image run.
    #[serde(default)]
    pub services: Vec<crate::values::Service>,
    /// Egress policy.
    pub network: NetworkConfig,
    /// Credential grants by name, user config's first, without duplicates.
    pub grants: Vec<String>,
    /// Named ports inside the run: endpoint → port.
    pub ports: BTreeMap<String, u16>,
    /// How the egress proxy reaches upstreams.
    pub upstream: UpstreamConfig,
    /// Router settings (user config only).
    pub router: RouterConfig,
    /// Web dashboard settings (user config only).
    pub ui: UiConfig,
    /// Daemon settings (user config only).
    pub daemon: DaemonConfig,
    /// Audit log settings (user config only).
    pub audit: AuditConfig,
    /// What `paddock apply` holds back, besides `.git` and the default auto-run files.
    pub review: ReviewConfig,
    /// Agent preset overrides and extra agents, by name (the built-in presets are laid
    /// under these by [`crate::resolve_agent`]).
    pub agents: BTreeMap<String, crate::agents::AgentLayer>,
}

/// `workspace:`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkspaceConfig {
    /// Copy-on-write overlay (default) or a plain bind mount.
    pub mode: WorkspaceMode,
}

/// How the workspace appears inside the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// Writes land in the run's own layer; `paddock apply` brings them back.
    #[default]
    Overlay,
    /// Writes go straight to the real workspace.
    Bind,
}

/// `limits:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes/threads.
    pub pids: Option<u64>,
    /// CPU quota in CPUs (1.5 = one and a half CPUs).
    pub cpus: Option<f64>,
}

/// Which sandbox backend runs the command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Linux namespaces, seccomp, Landlock, cgroups; no container engine.
    #[default]
    Native,
    /// A Docker container with no network.
    Docker,
    /// Docker with the gVisor (runsc) runtime.
    Gvisor,
}

/// `network:`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// What happens to requests no rule matches.
    pub policy: NetworkPolicy,
    /// Rules, user config's first.
    pub rules: Vec<Rule>,
    /// Hosts whose TLS is not intercepted (policy by SNI only, no credential injection).
    pub passthrough: Vec<HostPattern>,
    /// Extra and removed request headers per host, user config's first.
    pub headers: Vec<HeaderRule>,
}

/// One `network.headers` entry: on every request the proxy intercepts for a matching host,
/// the `remove` headers are dropped, then the `set` headers replace whatever the client
/// sent. Entries apply in order (a later entry's value wins), before credentials are
/// injected. Names are lowercase; framing and hop-by-hop headers are refused at load.
///
/// `Debug` shows header names only: values may be tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRule {
    /// Host (exact, or `*.suffix` for any subdomain), as in [`Rule::host`].
    pub host: HostPattern,
    /// Header name → value to set.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Header names to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl std::fmt::Debug for HeaderRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderRule")
            .field("host", &self.host)
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("remove", &self.remove)
            .finish()
    }
}

/// Default decision for requests that match no rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkPolicy {
    /// Allowed unless a rule denies.
    #[default]
    Permissive,
    /// Denied unless a rule allows.
    Strict,
}

/// One network rule. Every condition that is present must hold for the rule to match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Host (exact, or `*.suffix` for any subdomain).
    pub host: HostPattern,
    /// Destination port; any when absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// If non-empty, only these methods match.
    #[serde(default)]
    pub allow_methods: Vec<HttpMethod>,
    /// These methods never match an `allow` rule (and always match a `deny` rule).
    #[serde(default)]
    pub deny_methods: Vec<HttpMethod>,
    /// If non-empty, only paths matching one of these globs match.
    #[serde(default)]
    pub allow_paths: Vec<String>,
    /// Paths matching these globs are excluded from an `allow` rule.
    #[serde(default)]
    pub deny_paths: Vec<String>,
    /// What a match means.
    #[serde(default)]
    pub action: RuleAction,
}

/// What a rule match means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse the request.
    Deny,
}

/// `upstream:`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    /// Extra CA bundle the proxy trusts for upstream TLS (absolute host path).
    pub extra_ca: Option<PathBuf>,
    /// Host name → fixed upstream address, bypassing DNS.
    pub resolve: BTreeMap<String, SocketAddr>,
}

/// `router:` (user config only)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    /// Port the `*.localhost` router listens on.
    pub port: Option<u16>,
}

/// `ui:` (user config only)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UiConfig {
    /// Port of the web dashboard on 127.0.0.1.
    pub port: Option<u16>,
    /// Command that opens the dashboard's login URL (`paddock ui`), e.g. `firefox`.
    pub browser: Option<String>,
}

/// `daemon:` (user config only)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonConfig {
    /// Stop the daemon after this long with no runs and no clients.
    #[serde(with = "opt_duration")]
    pub idle_timeout: Option<Duration>,
}

/// `review:` (user and project config; each list adds to the other)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewConfig {
    /// Auto-run files held back by `paddock apply` unless `--include-autorun`: a name
    /// (any depth), a path from the workspace root, or a directory ending in `/`.
    pub autorun: Vec<String>,
    /// Agent runs: an automatic snapshot of the layer this often (default 10 minutes;
    /// `0` turns it off).
    #[serde(with = "opt_duration")]
    pub snapshot_every: Option<Duration>,
}

/// `audit:` (user config only)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// Sign a checkpoint after this many entries.
    pub checkpoint_every: Option<u64>,
    /// Sign a checkpoint at least this often.
    #[serde(with = "opt_duration")]
    pub checkpoint_interval: Option<Duration>,
}

/// Durations are stored as text (`"5m"`) in JSON, in the form [`crate::parse_duration`] reads.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::values::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::values::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
