//! Agent presets (`agents:`): what `paddock claude`, `paddock codex`, `paddock gemini` and
//! `paddock run --agent NAME` set up. A preset is data: the built-in ones are the YAML in
//! `agents.yaml` (embedded in the binary and read by the same parser as every config
//! file), and `agents.<name>` in the user config and in paddock.yaml lays keys over them.
//!
//! Layering, per agent: scalars (`command`, `package`, `version`, `telemetry`) replace;
//! lists (`allow`, `telemetry_hosts`, `login`, `state`) append, each entry once; `env`
//! merges by name. An agent that no layer names does not exist.
//!
//! Never: decides where a tool is installed or which grants exist; that is the CLI's and
//! the daemon's business.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::model::{Config, NetworkConfig, NetworkPolicy, Rule, RuleAction};
use crate::values::{HostPattern, ValueError};

/// The built-in presets, as shipped.
pub const BUILTIN_AGENTS_YAML: &str = include_str!("agents.yaml");

/// The home directory inside every sandbox; preset paths are written under it.
pub const SANDBOX_HOME: &str = "/home/paddock";

/// One layer's keys for one agent (every key optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentLayer {
    /// The argv the agent starts with; the user's arguments follow it.
    pub command: Option<Vec<String>>,
    /// npm package that provides the command when it is not on the host's PATH.
    pub package: Option<String>,
    /// The package's pinned version.
    pub version: Option<String>,
    /// Hosts the agent may reach (model API, auth).
    pub allow: Vec<HostPattern>,
    /// Telemetry and error-reporting hosts: allowed only with `telemetry: true`.
    pub telemetry_hosts: Vec<HostPattern>,
    /// Allow `telemetry_hosts` (default false: denied, and recorded in the trace).
    pub telemetry: Option<bool>,
    /// Grants that log the agent in, best first: the first one that exists is used.
    pub login: Vec<String>,
    /// Sandbox paths (directories) kept per workspace between runs: history, settings,
    /// answered trust prompts.
    pub state: Vec<PathBuf>,
    /// Environment for the agent.
    pub env: BTreeMap<String, String>,
    /// More environment when a given login grant is the one used (grant → variables),
    /// e.g. what selects the CLI's OAuth mode.
    pub login_env: BTreeMap<String, BTreeMap<String, String>>,
    /// Files written into the state directories when they do not exist yet (sandbox path
    /// → contents), e.g. the CLI's "onboarding done" settings. Never overwritten.
    pub seed: BTreeMap<PathBuf, String>,
}

impl AgentLayer {
    /// Lay `over` on top of `self` (see the module docs).
    pub fn merge(&mut self, over: &AgentLayer) {
        fn set<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        fn extend<T: Clone + PartialEq>(dst: &mut Vec<T>, src: &[T]) {
            for v in src {
                if !dst.contains(v) {
                    dst.push(v.clone());
                }
            }
        }
        set(&mut self.command, &over.command);
        set(&mut self.package, &over.package);
        set(&mut self.version, &over.version);
        set(&mut self.telemetry, &over.telemetry);
        extend(&mut self.allow, &over.allow);
        extend(&mut self.telemetry_hosts, &over.telemetry_hosts);
        extend(&mut self.login, &over.login);
        extend(&mut self.state, &over.state);
        self.env
            .extend(over.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.seed
            .extend(over.seed.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (grant, vars) in &over.login_env {
            self.login_env
                .entry(grant.clone())
                .or_default()
                .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

/// A resolved preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub name: String,
    pub command: Vec<String>,
    /// npm package and version, when the agent can be installed.
    pub package: Option<NpmPackage>,
    pub allow: Vec<HostPattern>,
    pub telemetry_hosts: Vec<HostPattern>,
    pub telemetry: bool,
    pub login: Vec<String>,
    pub state: Vec<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub login_env: BTreeMap<String, BTreeMap<String, String>>,
    pub seed: BTreeMap<PathBuf, String>,
}

/// An npm package at a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpmPackage {
    pub name: String,
    pub version: String,
}

impl NpmPackage {
    /// `name@version`, as npm takes it.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

impl Agent {
    /// The network this agent gets: strict, the preset's hosts allowed (telemetry hosts
    /// only when `telemetry` is on), after the user's own rules so that a `deny` there
    /// still wins.
    pub fn network(&self, user: &NetworkConfig) -> NetworkConfig {
        let mut n = user.clone();
        n.policy = NetworkPolicy::Strict;
        let hosts = self.allow.iter().chain(
            self.telemetry
                .then_some(&self.telemetry_hosts)
                .into_iter()
                .flatten(),
        );
        for host in hosts {
            n.rules.push(Rule {
                host: host.clone(),
                port: None,
                allow_methods: Vec::new(),
                deny_methods: Vec::new(),
                allow_paths: Vec::new(),
                deny_paths: Vec::new(),
                action: RuleAction::Allow,
            });
        }
        n
    }
}

/// Why an agent cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    pub message: String,
    pub hint: String,
}

fn builtin() -> &'static BTreeMap<String, AgentLayer> {
    static B: OnceLock<BTreeMap<String, AgentLayer>> = OnceLock::new();
    B.get_or_init(|| {
        let origin = crate::Origin {
            path: PathBuf::from("<built-in agents.yaml>"),
            layer: crate::ConfigLayer::User,
            home: None,
        };
        // A test parses the same text and fails on any error: this cannot fail in a build
        // that passed its tests.
        crate::load_from_str(BUILTIN_AGENTS_YAML, &origin)
            .map(|c| c.agents)
            .unwrap_or_default()
    })
}

/// The names of every agent: built in, then configured.
pub fn agent_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = builtin().keys().cloned().collect();
    for k in config.agents.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    names
}

/// The built-in layer of `name`, if it is built in.
pub fn builtin_agent(name: &str) -> Option<&'static AgentLayer> {
    builtin().get(name)
}

/// Resolve agent `name`: the built-in preset with `config.agents[name]` over it.
pub fn resolve_agent(name: &str, config: &Config) -> Result<Agent, AgentError> {
    let mut layer = builtin().get(name).cloned();
    if let Some(over) = config.agents.get(name) {
        layer.get_or_insert_with(AgentLayer::default).merge(over);
    }
    let Some(l) = layer else {
        return Err(AgentError {
            message: format!("no agent named `{name}`"),
            hint: format!(
                "known agents: {}; define others under `agents:` in paddock.yaml",
                agent_names(config).join(", ")
            ),
        });
    };
    let Some(command) = l.command.filter(|c| !c.is_empty()) else {
        return Err(AgentError {
            message: format!("agent `{name}` has no command"),
            hint: format!("set `agents.{name}.command` in paddock.yaml, e.g. `command: [{name}]`"),
        });
    };
    let package = match (l.package, l.version) {
        (Some(name), Some(version)) => Some(NpmPackage { name, version }),
        (Some(p), None) => {
            return Err(AgentError {
                message: format!("agent `{name}`: package `{p}` has no version"),
                hint: format!("pin one with `agents.{name}.version`, e.g. `version: 1.2.3`"),
            });
        }
        (None, _) => None,
    };
    Ok(Agent {
        name: name.to_string(),
        command,
        package,
        allow: l.allow,
        telemetry_hosts: l.telemetry_hosts,
        telemetry: l.telemetry.unwrap_or(false),
        login: l.login,
        state: l.state,
        env: l.env,
        login_env: l.login_env,
        seed: l.seed,
    })
}

/// An npm package name: `name` or `@scope/name`, lowercase URL-safe characters, at most
/// 214 characters (npm's own rule), never starting with `-` or `.`.
pub fn validate_npm_package(s: &str) -> Result<(), ValueError> {
    let bad = |why: &str| {
        Err(
            ValueError::new(format!("npm package {} {why}", crate::values::show(s))).with_hint(
                "write it as npm does, e.g. `@anthropic-ai/claude-code` or `aider-chat`",
            ),
        )
    };
    if s.is_empty() || s.len() > 214 {
        return bad("must be 1 to 214 characters long");
    }
    let ok_part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-', '_'])
            && p.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'.' | b'_' | b'~')
            })
    };
    let valid = match s.strip_prefix('@') {
        Some(rest) => {
            matches!(rest.split_once('/'), Some((scope, name)) if ok_part(scope) && ok_part(name))
        }
        None => ok_part(s),
    };
    if !valid {
        return bad("is not a valid package name");
    }
    Ok(())
}

/// A pinned version: digits, letters, `.`, `-`, `+` (semver), not starting with `-`.
pub fn validate_npm_version(s: &str) -> Result<(), ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'));
    if !ok {
        return Err(ValueError::new(format!(
            "version {} is not a version npm can pin",
            crate::values::show(s)
        ))
        .with_hint("write an exact version such as `1.2.3`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_presets_parse_and_resolve() {
        let origin = crate::Origin {
            path: PathBuf::from("agents.yaml"),
            layer: crate::ConfigLayer::User,
            home: None,
        };
        let c = crate::load_from_str(BUILTIN_AGENTS_YAML, &origin).expect("agents.yaml parses");
        for name in ["claude", "codex", "gemini"] {
            assert!(c.agents.contains_key(name), "{name} is built in");
            let a = resolve_agent(name, &Config::default()).expect("resolves");
            assert!(a.package.is_some(), "{name} can be installed");
            assert!(!a.allow.is_empty(), "{name} reaches its API");
            assert!(!a.login.is_empty(), "{name} can log in");
        }
    }

    #[test]
    fn layers_append_lists_and_replace_scalars() {
        let mut base = builtin_agent("claude").cloned().unwrap();
        let over = AgentLayer {
            version: Some("9.9.9".into()),
            allow: vec!["registry.npmjs.org".parse().unwrap()],
            ..Default::default()
        };
        let before = base.allow.len();
        base.merge(&over);
        assert_eq!(base.version.as_deref(), Some("9.9.9"));
        assert_eq!(base.allow.len(), before + 1);
    }

    #[test]
    fn package_names() {
        for ok in ["@anthropic-ai/claude-code", "left-pad", "a.b_c"] {
            validate_npm_package(ok).unwrap();
        }
        for bad in ["", "-x", "@x", "@/x", "Foo", "a b", "@a/b/c", "../x"] {
            assert!(validate_npm_package(bad).is_err(), "{bad}");
        }
        validate_npm_version("2.1.332").unwrap();
        assert!(validate_npm_version("--registry=x").is_err());
    }
}
