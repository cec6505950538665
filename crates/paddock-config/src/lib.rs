//! paddock-config: the `paddock.yaml` schema, layering and validation.
//!
//! Never: touches the filesystem beyond reading config files, or knows about the daemon.
//!
//! # Files
//!
//! Two files are read, both optional:
//!
//! 1. the **user config**, `$XDG_CONFIG_HOME/paddock/config.yaml` (when `XDG_CONFIG_HOME`
//!    is set to an absolute path), else `~/.config/paddock/config.yaml`;
//! 2. the **project config**, `paddock.yaml`, found by walking up from the workspace
//!    directory: the first directory that contains a `paddock.yaml` wins; the walk stops
//!    after the repository root (the first directory containing `.git`, file or directory)
//!    or at the filesystem root. Only `paddock.yaml` is recognised (no dot-file variant).
//!
//! [`load`] reads both and returns the merged [`Config`] plus the files it read.
//! [`load_from_str`] / [`load_layers`] do the same from text, for tests and tools.
//!
//! # Layering rules
//!
//! The project config is laid over the user config:
//!
//! - **Scalars** (`name`, `command`, `runtime`, `workspace.mode`, `limits.*`,
//!   `network.policy`, `upstream.extra_ca`, …): the project's value replaces the user's; a
//!   key the project does not set keeps the user's value. `command` is one scalar: a
//!   project command replaces the user's whole argv. Nested mappings are merged key by key
//!   (`limits.memory` from the project, `limits.pids` from the user is fine).
//! - **Maps** (`env`, `ports`, `upstream.resolve`): merged by key; on the same key the
//!   project wins.
//! - **Lists** (`mounts`, `grants`, `network.rules`, `network.passthrough`,
//!   `network.headers`): the user's entries first, then the project's. `grants` and
//!   `passthrough` are sets: a repeated entry is kept once, at its first place. Two mounts
//!   with the same target are an error. `network.headers` entries apply in order, so on the
//!   same header of the same host the project's value wins.
//! - **User-only keys** (`router.port`, `ui.port`, `ui.browser`, `daemon.idle_timeout`, `audit.checkpoint_every`,
//!   `audit.checkpoint_interval`, `upstream.extra_ca`, `upstream.resolve`): an error when
//!   set in a project file, with a hint to move them. A project must not be able to
//!   reconfigure the user's daemon or point credentials at another server.
//!
//! Relative paths (mount sources, `upstream.extra_ca`) are resolved against the directory
//! of the file they are written in; `~` expands to `$HOME`.
//!
//! # Errors
//!
//! Every problem is a [`ConfigError`] whose `Display` is `path:line:column: message`,
//! pointing at the offending key or value, with [`ConfigError::hint`] for the fix
//! (`did you mean `name`?`, the valid memory units, where to move a user-only key).
//! Unknown keys, duplicate keys, wrong types, YAML syntax errors and invalid values are
//! all reported this way. Values are checked after parsing but keep their positions, so a
//! bad host pattern in a rule points at that host pattern.
//!
//! # YAML parser: serde-saphyr
//!
//! `serde_yaml` is deprecated and its fork `serde_yml` is unmaintained. Of the maintained
//! options, `serde_norway` (a serde_yaml 0.9 fork over `unsafe-libyaml`) and
//! `serde-saphyr` (2.x, `forbid(unsafe_code)`, over the granit/saphyr parser) were compared on exactly
//! the cases this crate must report (both were tried on the same inputs):
//!
//! | case                              | serde_norway                   | serde-saphyr                    |
//! |-----------------------------------|--------------------------------|---------------------------------|
//! | syntax error                      | line:column                    | line:column                     |
//! | unknown key                       | line:column, message text only | line:column, structured (`SerdeUnknownField { field, expected }`) |
//! | type error                        | line:column                    | line:column                     |
//! | duplicate struct key              | error, but at the mapping's start (1:1) | error at the duplicate key |
//! | duplicate key in a map (`env`)    | **silently last-wins**         | error at the duplicate key      |
//! | position of a valid-but-bad value | none (no spanned values)       | `Spanned<T>` gives line:column  |
//! | alias bombs / deep nesting        | fixed built-in limits          | configurable `Budget` and alias limits |
//!
//! serde-saphyr is the only one that gives line *and* column for all five kinds of error
//! and positions for semantic errors, so it is the parser here. Its budget is tightened
//! for config files (see [`MAX_FILE_BYTES`] and the limits in the parser options).
//!
//! # Keys
//!
//! ```yaml
//! name: my-agent                 # DNS label
//! command: "claude --resume"     # string (split like a shell would) or a list (argv)
//! env: {FOO: bar}                # valid env names
//! mounts:
//!   - "~/data:/data:ro"          # SRC:DST[:ro|:rw]
//!   - {source: ./cache, target: /cache, read_only: false}
//! workspace: {mode: overlay}     # overlay (default) | bind
//! limits: {memory: 1.5G, pids: 512, cpus: 2}
//! runtime: native                # native (default) | docker | gvisor
//! image: debian:bookworm         # container runtimes: the image to run on (default: paddock's base)
//! dependencies: [node, "apt:jq", "pip:requests==2.32.3", "npm:typescript@5"]  # built into an image
//!                                # (and `docker:host`: the host engine behind a policy proxy)
//! network:
//!   policy: strict               # permissive (default) | strict
//!   rules:
//!     - {host: api.github.com, port: 443, allow_methods: [GET], allow_paths: ["/repos/**"]}
//!     - {host: "*.example.com", action: deny}
//!   passthrough: ["*.pinned.example"]
//!   headers:                     # per host: set (replace) and remove request headers
//!     - {host: api.github.com, set: {X-GitHub-Api-Version: "2022-11-28"}, remove: [User-Agent]}
//! grants: [github]
//! ports: {web: 3000}
//! agents:                        # presets for `paddock claude|codex|gemini`, `run --agent`
//!   claude: {version: 2.1.332, allow: [registry.npmjs.org], env: {FOO: bar}}
//! upstream: {extra_ca: ./corp-ca.pem, resolve: {internal.example: "10.0.0.5:443"}}
//! # user config only:
//! router: {port: 8080}
//! ui: {port: 7780, browser: firefox}  # the web dashboard (`paddock ui`)
//! daemon: {idle_timeout: 5m}
//! audit: {checkpoint_every: 1000, checkpoint_interval: 1h}
//! review:
//!   autorun: [Makefile.local, scripts/hooks/]   # held back by apply, besides the defaults
//!   snapshot_every: 10m          # agent runs: an automatic snapshot this often (0: never)
//! ```

mod agents;
mod error;
mod model;
mod raw;
mod values;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use agents::{
    Agent, AgentError, AgentLayer, BUILTIN_AGENTS_YAML, NpmPackage, SANDBOX_HOME, agent_names,
    builtin_agent, resolve_agent, validate_npm_package, validate_npm_version,
};
pub use error::{ConfigError, ErrorKind};
pub use model::{
    AuditConfig, Config, DaemonConfig, HeaderRule, Limits, NetworkConfig, NetworkPolicy,
    ReviewConfig, RouterConfig, Rule, RuleAction, RuntimeKind, UiConfig, UpstreamConfig,
    WorkspaceConfig, WorkspaceMode,
};
pub use values::{
    CATALOG_NAMES, Dependency, DependencyEntry, HostPattern, HttpMethod, MANAGED_HEADERS,
    MountSpec, PortMapping, Service, ValueError, check_header_value, format_duration, is_service,
    parse_autorun_pattern, parse_cpus, parse_dependency, parse_dependency_entry, parse_duration,
    parse_header_name, parse_host_pattern, parse_image, parse_memory, parse_mount_spec,
    parse_port_mapping, parse_service, services_conflict, validate_dns_label, validate_grant_name,
};

use error::Pos;
use raw::{Ctx, Layer, RawConfig};

/// The project config's file name.
pub const PROJECT_FILE: &str = "paddock.yaml";

/// Config files larger than this are refused without being parsed.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Which layer a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigLayer {
    /// `~/.config/paddock/config.yaml`: may set everything.
    User,
    /// A project's `paddock.yaml`: may not set user-only keys.
    Project,
}

/// Where a config text comes from: the path (for messages and for resolving relative
/// paths), its layer, and the home directory used to expand `~`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file's path; relative paths in it resolve against its directory.
    pub path: PathBuf,
    /// User or project config.
    pub layer: ConfigLayer,
    /// Home directory for `~`; `None` makes `~` an error.
    pub home: Option<PathBuf>,
}

impl Origin {
    /// A user config at `path`, with `~` taken from `$HOME`.
    pub fn user(path: impl Into<PathBuf>) -> Self {
        Origin {
            path: path.into(),
            layer: ConfigLayer::User,
            home: values::home_from_env(),
        }
    }

    /// A project config at `path`, with `~` taken from `$HOME`.
    pub fn project(path: impl Into<PathBuf>) -> Self {
        Origin {
            path: path.into(),
            layer: ConfigLayer::Project,
            home: values::home_from_env(),
        }
    }

    /// Use `home` to expand `~` instead of `$HOME`.
    #[must_use]
    pub fn with_home(mut self, home: Option<PathBuf>) -> Self {
        self.home = home;
        self
    }
}

/// The merged config and the files it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// Merged and resolved.
    pub config: Config,
    /// The files that were read, user config first. Empty when neither exists.
    pub sources: Vec<PathBuf>,
}

/// Load the config for a workspace: the user config (from the environment) and the
/// project's `paddock.yaml`, merged. Missing files are fine; an empty result is
/// `Config::default()`.
pub fn load(workspace: &Path) -> Result<LoadedConfig, ConfigError> {
    Loader::from_env().load(workspace)
}

/// Loads config with explicit locations, for the daemon, the CLI and tests.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    user_config: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl Loader {
    /// No user config and no home directory; set them with the builder methods.
    pub fn new() -> Self {
        Loader::default()
    }

    /// The user config path and home directory from the environment.
    pub fn from_env() -> Self {
        Loader {
            user_config: user_config_path(),
            home: values::home_from_env(),
        }
    }

    /// Read the user config from `path` (`None`: no user config).
    #[must_use]
    pub fn user_config(mut self, path: Option<PathBuf>) -> Self {
        self.user_config = path;
        self
    }

    /// Expand `~` to `home` (`None`: `~` is an error).
    #[must_use]
    pub fn home(mut self, home: Option<PathBuf>) -> Self {
        self.home = home;
        self
    }

    /// Only the user config (the daemon's own settings: idle timeout, audit schedule,
    /// router port, `upstream:`). No file means the defaults.
    pub fn load_user(&self) -> Result<Config, ConfigError> {
        let Some(path) = &self.user_config else {
            return Ok(Config::default());
        };
        let Some(bytes) = read_config_file(path, true)? else {
            return Ok(Config::default());
        };
        let origin = Origin {
            path: path.clone(),
            layer: ConfigLayer::User,
            home: self.home.clone(),
        };
        load_layers(&[(bytes.as_slice(), origin)])
    }

    /// Find, read, check and merge the user config and the project config for `workspace`.
    pub fn load(&self, workspace: &Path) -> Result<LoadedConfig, ConfigError> {
        let mut files: Vec<(Vec<u8>, Origin)> = Vec::new();
        if let Some(path) = &self.user_config
            && let Some(bytes) = read_config_file(path, true)?
        {
            let origin = Origin {
                path: path.clone(),
                layer: ConfigLayer::User,
                home: self.home.clone(),
            };
            files.push((bytes, origin));
        }
        if let Some(path) = find_project_config(workspace)
            && let Some(bytes) = read_config_file(&path, false)?
        {
            let origin = Origin {
                path,
                layer: ConfigLayer::Project,
                home: self.home.clone(),
            };
            files.push((bytes, origin));
        }
        let sources = files.iter().map(|(_, o)| o.path.clone()).collect();
        let layers: Vec<(&[u8], Origin)> = files
            .iter()
            .map(|(b, o)| (b.as_slice(), o.clone()))
            .collect();
        Ok(LoadedConfig {
            config: load_layers(&layers)?,
            sources,
        })
    }
}

/// The user config path: `$XDG_CONFIG_HOME/paddock/config.yaml` when `XDG_CONFIG_HOME` is
/// an absolute path, else `$HOME/.config/paddock/config.yaml`; `None` without either.
pub fn user_config_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
    user_config_path_from(xdg, values::home_from_env())
}

fn user_config_path_from(xdg: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    let base = match xdg.filter(|p| p.is_absolute()) {
        Some(x) => x,
        None => home?.join(".config"),
    };
    Some(base.join("paddock").join("config.yaml"))
}

/// Find the project's `paddock.yaml`: walk up from `workspace`; the first directory
/// holding a `paddock.yaml` file wins; stop after the first directory holding `.git`
/// (the repository root) or at the filesystem root.
pub fn find_project_config(workspace: &Path) -> Option<PathBuf> {
    let mut dir = std::path::absolute(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    loop {
        let candidate = dir.join(PROJECT_FILE);
        if candidate.is_file() {
            return Some(candidate);
        }
        if dir.join(".git").exists() || !dir.pop() {
            return None;
        }
    }
}

/// Read a config file, refusing ones over [`MAX_FILE_BYTES`]. `Ok(None)` when the file
/// does not exist and `missing_ok`.
fn read_config_file(path: &Path, missing_ok: bool) -> Result<Option<Vec<u8>>, ConfigError> {
    let io_err = |e: std::io::Error| ConfigError::File {
        kind: ErrorKind::Io,
        path: path.to_path_buf(),
        message: format!("cannot read config file: {e}"),
        hint: None,
        source: Some(e),
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    Ok(Some(bytes))
}

/// Parse and check one config text (as if it were the only layer) and resolve it.
pub fn load_from_str(text: &str, origin: &Origin) -> Result<Config, ConfigError> {
    load_layers(&[(text.as_bytes(), origin.clone())])
}

/// Like [`load_from_str`] for raw bytes: non-UTF-8 input is an error with its position.
pub fn load_from_bytes(bytes: &[u8], origin: &Origin) -> Result<Config, ConfigError> {
    load_layers(&[(bytes, origin.clone())])
}

/// Parse, check and merge several config texts, lowest layer first (normally the user
/// config, then the project config). See the crate docs for the layering rules.
pub fn load_layers(layers: &[(&[u8], Origin)]) -> Result<Config, ConfigError> {
    let mut parsed = Vec::with_capacity(layers.len());
    for (bytes, origin) in layers {
        parsed.push(parse_layer(bytes, origin)?);
    }
    merge(parsed)
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES);
    budget.max_events = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.flow_nesting_limit = 32;
    budget.max_nodes = 50_000;
    budget.max_documents = 2; // a second document is reported as such below
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_recorded_anchor_bytes = MAX_FILE_BYTES;
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    opts.alias_limits.max_total_replayed_events = 100_000;
    opts.alias_limits.max_replay_stack_depth = 16;
    opts.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    opts.strict_booleans = true;
    opts.reject_unsupported_tags = true;
    opts.with_snippet = false;
    opts
}

fn parse_layer(bytes: &[u8], origin: &Origin) -> Result<Layer, ConfigError> {
    let path = origin.path.as_path();
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ConfigError::File {
            kind: ErrorKind::Limit,
            path: path.to_path_buf(),
            message: format!("config file is larger than {} KiB", MAX_FILE_BYTES / 1024),
            hint: Some("config files are small; is this the right file?".to_string()),
            source: None,
        });
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return Err(not_utf8(path, bytes, e.valid_up_to())),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw: Option<RawConfig> = serde_saphyr::from_str_with_options(text, yaml_options())
        .map_err(|e| error::from_yaml(path, text, &e))?;
    let Some(raw) = raw else {
        return Ok(Layer::default());
    };
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base_dir = abs.parent().unwrap_or(Path::new("/"));
    let cx = Ctx {
        path,
        base_dir,
        home: origin.home.as_deref(),
        layer: origin.layer,
    };
    raw.resolve(&cx)
}

fn not_utf8(path: &Path, bytes: &[u8], valid_up_to: usize) -> ConfigError {
    // Everything before `valid_up_to` is valid UTF-8, so this cannot fail.
    let before = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or("");
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
    Pos {
        path: path.to_path_buf(),
        line,
        column,
    }
    .error(
        ErrorKind::NotUtf8,
        format!(
            "file is not valid UTF-8 (byte 0x{:02x} at offset {valid_up_to})",
            bytes[valid_up_to]
        ),
        Some("save the file as UTF-8".to_string()),
    )
}

/// Merge layers, lowest first, into the final config (see the crate docs for the rules).
fn merge(layers: Vec<Layer>) -> Result<Config, ConfigError> {
    let mut c = Config::default();
    let mut env = BTreeMap::new();
    let mut mount_pos: Vec<Pos> = Vec::new();
    for l in layers {
        fn set<T>(dst: &mut Option<T>, src: Option<T>) {
            if src.is_some() {
                *dst = src;
            }
        }
        set(&mut c.name, l.name);
        set(&mut c.command, l.command);
        env.extend(l.env);
        for (m, pos) in l.mounts {
            if let Some(i) = c.mounts.iter().position(|o| o.target == m.target) {
                return Err(pos.error(
                    ErrorKind::Value,
                    format!(
                        "mounts: target {} is already mounted by the entry at {}",
                        values::show(&m.target.to_string_lossy()),
                        mount_pos[i]
                    ),
                    Some("each target may be mounted once; remove or change one".to_string()),
                ));
            }
            c.mounts.push(m);
            mount_pos.push(pos);
        }
        if let Some(mode) = l.workspace_mode {
            c.workspace.mode = mode;
        }
        set(&mut c.limits.memory_bytes, l.memory_bytes);
        set(&mut c.limits.pids, l.pids);
        set(&mut c.limits.cpus, l.cpus);
        if let Some(r) = l.runtime {
            c.runtime = r;
        }
        if l.image.is_some() {
            c.image = l.image;
        }
        for d in l.dependencies {
            if !c.dependencies.contains(&d) {
                c.dependencies.push(d);
            }
        }
        // One docker service per run: a later layer's replaces an earlier one's.
        for s in l.services {
            c.services.retain(|o| *o == s);
            if c.services.is_empty() {
                c.services.push(s);
            }
        }
        if let Some(p) = l.policy {
            c.network.policy = p;
        }
        c.network.rules.extend(l.rules);
        c.network.headers.extend(l.headers);
        for p in l.passthrough {
            if !c.network.passthrough.contains(&p) {
                c.network.passthrough.push(p);
            }
        }
        for g in l.grants {
            if !c.grants.contains(&g) {
                c.grants.push(g);
            }
        }
        c.ports.extend(l.ports);
        set(&mut c.upstream.extra_ca, l.extra_ca);
        c.upstream.resolve.extend(l.resolve);
        set(&mut c.router.port, l.router_port);
        set(&mut c.ui.port, l.ui_port);
        set(&mut c.ui.browser, l.ui_browser);
        set(&mut c.daemon.idle_timeout, l.idle_timeout);
        set(&mut c.audit.checkpoint_every, l.checkpoint_every);
        set(&mut c.audit.checkpoint_interval, l.checkpoint_interval);
        set(&mut c.review.snapshot_every, l.snapshot_every);
        for p in l.autorun {
            if !c.review.autorun.contains(&p) {
                c.review.autorun.push(p);
            }
        }
        for (name, a) in l.agents {
            c.agents.entry(name).or_default().merge(&a);
        }
    }
    c.env = env;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_config_path_prefers_absolute_xdg() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            user_config_path_from(Some("/x".into()), home.clone()),
            Some(PathBuf::from("/x/paddock/config.yaml"))
        );
        assert_eq!(
            user_config_path_from(Some("rel".into()), home.clone()),
            Some(PathBuf::from("/home/u/.config/paddock/config.yaml"))
        );
        assert_eq!(
            user_config_path_from(None, home),
            Some(PathBuf::from("/home/u/.config/paddock/config.yaml"))
        );
        assert_eq!(user_config_path_from(None, None), None);
    }
}
