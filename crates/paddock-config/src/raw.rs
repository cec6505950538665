//! The file as written: serde types that mirror `paddock.yaml` key for key (unknown keys
//! rejected), keeping the line and column of every value that needs checking, and the step
//! that checks one file and turns it into a [`Layer`] of resolved values.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::ConfigLayer;
use crate::agents::{AgentLayer, validate_npm_package, validate_npm_version};
use crate::error::{ConfigError, ErrorKind, Pos};
use crate::model::{HeaderRule, NetworkPolicy, Rule, RuleAction, RuntimeKind, WorkspaceMode};
use crate::values::{self, HostPattern, MountSpec, ValueError, show};

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    name: Option<S<String>>,
    command: Option<S<RawCommand>>,
    env: Option<SpannedMap<S<String>>>,
    mounts: Option<Vec<S<RawMount>>>,
    workspace: Option<RawWorkspace>,
    limits: Option<RawLimits>,
    runtime: Option<RuntimeKind>,
    image: Option<S<String>>,
    dependencies: Option<Vec<S<String>>>,
    network: Option<RawNetwork>,
    grants: Option<Vec<S<String>>>,
    ports: Option<SpannedMap<S<Scalar>>>,
    upstream: Option<RawUpstream>,
    router: Option<RawRouter>,
    ui: Option<RawUi>,
    daemon: Option<RawDaemon>,
    audit: Option<RawAudit>,
    review: Option<RawReview>,
    agents: Option<SpannedMap<RawAgent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReview {
    autorun: Option<Vec<S<String>>>,
    snapshot_every: Option<S<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    command: Option<S<RawCommand>>,
    package: Option<S<String>>,
    version: Option<S<Scalar>>,
    allow: Option<Vec<S<String>>>,
    telemetry_hosts: Option<Vec<S<String>>>,
    telemetry: Option<bool>,
    login: Option<Vec<S<String>>>,
    state: Option<Vec<S<String>>>,
    env: Option<SpannedMap<S<String>>>,
    login_env: Option<SpannedMap<SpannedMap<S<String>>>>,
    seed: Option<SpannedMap<S<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    mode: Option<WorkspaceMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<S<Scalar>>,
    pids: Option<S<Scalar>>,
    cpus: Option<S<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    policy: Option<NetworkPolicy>,
    rules: Option<Vec<RawRule>>,
    passthrough: Option<Vec<S<String>>>,
    headers: Option<Vec<S<RawHeaders>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    host: S<String>,
    set: Option<SpannedMap<S<Scalar>>>,
    remove: Option<Vec<S<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    host: S<String>,
    port: Option<S<Scalar>>,
    allow_methods: Option<Vec<S<String>>>,
    deny_methods: Option<Vec<S<String>>>,
    allow_paths: Option<Vec<S<String>>>,
    deny_paths: Option<Vec<S<String>>>,
    action: Option<RuleAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    extra_ca: Option<S<String>>,
    resolve: Option<SpannedMap<S<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    port: Option<S<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUi {
    port: Option<S<Scalar>>,
    browser: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    idle_timeout: Option<S<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_every: Option<S<Scalar>>,
    checkpoint_interval: Option<S<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMountMap {
    source: S<String>,
    target: S<String>,
    read_only: Option<bool>,
}

/// `command:` — a string (split with shell-words rules) or a list (argv as is).
enum RawCommand {
    Line(String),
    Argv(Vec<S<String>>),
    /// Something else; reported with the value's position by `resolve`.
    Bad(String),
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawCommand, E> {
                Ok(RawCommand::Bad(format!("`{v}`")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawCommand, E> {
                Ok(RawCommand::Bad(format!("`{v}`")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawCommand, E> {
                Ok(RawCommand::Bad(format!("`{v}`")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawCommand, E> {
                Ok(RawCommand::Bad(format!("`{v}`")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawCommand, E> {
                Ok(RawCommand::Bad("nothing (null)".to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCommand, E> {
                Ok(RawCommand::Line(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCommand, A::Error> {
                let mut out = Vec::new();
                while let Some(arg) = seq.next_element::<S<String>>()? {
                    out.push(arg);
                }
                Ok(RawCommand::Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mount: `"SRC:DST[:ro|:rw]"` or `{source, target, read_only}`.
enum RawMount {
    Short(String),
    Long(RawMountMap),
    /// Something else; reported with the value's position by `resolve`.
    Bad(String),
}

impl<'de> Deserialize<'de> for RawMount {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mount string `SRC:DST[:ro]` or a map {source, target, read_only}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawMount, E> {
                Ok(RawMount::Bad(format!("`{v}`")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawMount, E> {
                Ok(RawMount::Bad(format!("`{v}`")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMount, E> {
                Ok(RawMount::Bad(format!("`{v}`")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawMount, E> {
                Ok(RawMount::Bad(format!("`{v}`")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawMount, E> {
                Ok(RawMount::Bad("nothing (null)".to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMount, E> {
                Ok(RawMount::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawMount, A::Error> {
                RawMountMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawMount::Long)
            }
        }
        d.deserialize_any(V)
    }
}

/// Any scalar, kept as YAML typed it so that numbers, sizes and durations get paddock's
/// own messages ("port 70000 is out of range") instead of a generic type error.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn describe(&self) -> String {
        match self {
            Scalar::Null => "nothing (null)".into(),
            Scalar::Bool(b) => format!("`{b}`"),
            Scalar::Int(i) => format!("`{i}`"),
            Scalar::Float(f) => format!("`{f}`"),
            Scalar::Str(s) => show(s),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value (not a list or a mapping)")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
                Ok(i128::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping whose keys keep their positions, in file order.
struct SpannedMap<V>(Vec<(S<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = SpannedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<SpannedMap<V>, E> {
                Ok(SpannedMap(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpannedMap<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<S<String>>()? {
                    let v = map.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(SpannedMap(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

/// One file's values, checked and resolved but not yet merged with the other layer.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    pub name: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<(MountSpec, Pos)>,
    pub workspace_mode: Option<WorkspaceMode>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    pub runtime: Option<RuntimeKind>,
    pub image: Option<String>,
    pub dependencies: Vec<values::Dependency>,
    pub services: Vec<values::Service>,
    pub policy: Option<NetworkPolicy>,
    pub rules: Vec<Rule>,
    pub passthrough: Vec<HostPattern>,
    pub headers: Vec<HeaderRule>,
    pub grants: Vec<String>,
    pub ports: Vec<(String, u16)>,
    pub extra_ca: Option<PathBuf>,
    pub resolve: Vec<(String, SocketAddr)>,
    pub router_port: Option<u16>,
    pub ui_port: Option<u16>,
    pub ui_browser: Option<String>,
    pub idle_timeout: Option<Duration>,
    pub checkpoint_every: Option<u64>,
    pub checkpoint_interval: Option<Duration>,
    pub autorun: Vec<String>,
    pub snapshot_every: Option<Duration>,
    pub agents: Vec<(String, AgentLayer)>,
}

/// Where a file came from, for resolving it.
pub(crate) struct Ctx<'a> {
    pub path: &'a Path,
    pub base_dir: &'a Path,
    pub home: Option<&'a Path>,
    pub layer: ConfigLayer,
}

impl Ctx<'_> {
    fn pos<T>(&self, s: &S<T>) -> Pos {
        Pos {
            path: self.path.to_path_buf(),
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }

    fn check<T, U>(
        &self,
        key: &str,
        s: &S<T>,
        f: impl FnOnce(&T) -> Result<U, ValueError>,
    ) -> Result<U, ConfigError> {
        f(&s.value).map_err(|e| self.pos(s).value_error(key, e))
    }

    fn user_only<T>(&self, key: &str, s: &S<T>) -> Result<(), ConfigError> {
        if self.layer == ConfigLayer::Project {
            return Err(self.pos(s).error(
                ErrorKind::UserOnlyKey,
                format!("{key} can only be set in the user config, not in a project's paddock.yaml"),
                Some(format!(
                    "move `{key}` to $XDG_CONFIG_HOME/paddock/config.yaml (usually ~/.config/paddock/config.yaml)"
                )),
            ));
        }
        Ok(())
    }
}

fn want_int(v: &Scalar, what: &str) -> Result<i128, ValueError> {
    match v {
        Scalar::Int(i) => Ok(*i),
        Scalar::Str(s) if !s.is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) => s
            .trim()
            .parse()
            .map_err(|_| ValueError::new(format!("{} is too large", show(s)))),
        Scalar::Float(f) if f.is_finite() && f.fract() == 0.0 => Err(ValueError::new(format!(
            "{} is too large",
            other_describe(*f)
        ))),
        other => Err(ValueError::new(format!(
            "expected {what}, found {}",
            other.describe()
        ))),
    }
}

fn other_describe(f: f64) -> String {
    format!("`{f:e}`")
}

fn want_port(v: &Scalar) -> Result<u16, ValueError> {
    values::check_port(want_int(v, "a port number (1–65535)")?)
}

fn want_positive(v: &Scalar) -> Result<u64, ValueError> {
    let i = want_int(v, "a whole number greater than 0")?;
    if i <= 0 {
        return Err(ValueError::new(format!(
            "must be greater than 0, found `{i}`"
        )));
    }
    u64::try_from(i).map_err(|_| ValueError::new(format!("`{i}` is too large")))
}

fn want_duration(v: &Scalar) -> Result<Duration, ValueError> {
    match v {
        Scalar::Str(s) => values::parse_duration(s),
        Scalar::Int(i) => Err(ValueError::new(format!("duration `{i}` has no unit"))
            .with_hint(format!("write `{i}s`, `{i}m` or `{i}h`"))),
        other => Err(ValueError::new(format!(
            "expected a duration such as `5m`, found {}",
            other.describe()
        ))),
    }
}

fn want_memory(v: &Scalar) -> Result<u64, ValueError> {
    match v {
        Scalar::Str(s) => values::parse_memory(s),
        Scalar::Int(i) if *i > 0 => u64::try_from(*i)
            .map_err(|_| ValueError::new(format!("memory size `{i}` is too large"))),
        Scalar::Int(i) => Err(ValueError::new(format!(
            "memory size must be greater than zero, found `{i}`"
        ))),
        Scalar::Float(f) => Err(ValueError::new(format!("memory size `{f}` has no unit"))
            .with_hint(format!("write it with a unit, e.g. `{f}G`"))),
        other => Err(ValueError::new(format!(
            "expected a memory size such as `512M`, found {}",
            other.describe()
        ))),
    }
}

fn want_cpus(v: &Scalar) -> Result<f64, ValueError> {
    match v {
        Scalar::Int(i) => values::check_cpus(*i as f64)
            .map_err(|e| ValueError::new(format!("`{i}` {}", e.message()))),
        Scalar::Float(f) => {
            values::check_cpus(*f).map_err(|e| ValueError::new(format!("`{f}` {}", e.message())))
        }
        Scalar::Str(s) => values::parse_cpus(s),
        other => Err(ValueError::new(format!(
            "expected a number of CPUs such as `2` or `1.5`, found {}",
            other.describe()
        ))),
    }
}

fn no_nul(s: &str, what: &str) -> Result<(), ValueError> {
    if s.contains('\0') {
        return Err(ValueError::new(format!("{what} contains a NUL character")));
    }
    Ok(())
}

impl RawConfig {
    /// Check every value and resolve this file into a [`Layer`].
    pub(crate) fn resolve(self, cx: &Ctx<'_>) -> Result<Layer, ConfigError> {
        let mut l = Layer::default();

        if let Some(name) = &self.name {
            cx.check("name", name, |v| values::validate_dns_label(v))?;
            l.name = Some(name.value.clone());
        }

        if let Some(cmd) = &self.command {
            l.command = Some(resolve_command(cx, cmd)?);
        }

        if let Some(env) = self.env {
            for (k, v) in env.0 {
                cx.check("env", &k, |k| values::validate_env_name(k))?;
                let key = format!("env.{}", k.value);
                cx.check(&key, &v, |v| no_nul(v, "value"))?;
                l.env.push((k.value, v.value));
            }
        }

        for m in self.mounts.into_iter().flatten() {
            let pos = cx.pos(&m);
            let spec = match &m.value {
                RawMount::Short(s) => cx.check("mounts", &m, |_| {
                    values::parse_mount_spec_with_home(s, cx.base_dir, cx.home)
                })?,
                RawMount::Bad(found) => {
                    return Err(pos.error(
                        ErrorKind::Type,
                        format!("mounts: expected a mount string `SRC:DST[:ro]` or a map {{source, target, read_only}}, found {found}"),
                        None,
                    ));
                }
                RawMount::Long(map) => {
                    let source = cx.check("mounts.source", &map.source, |s| {
                        if s.is_empty() {
                            return Err(ValueError::new("is empty"));
                        }
                        values::resolve_host_path(s, cx.base_dir, cx.home)
                    })?;
                    let target =
                        cx.check("mounts.target", &map.target, |t| values::sandbox_path(t))?;
                    MountSpec {
                        source,
                        target,
                        read_only: map.read_only.unwrap_or(false),
                    }
                }
            };
            l.mounts.push((spec, pos));
        }

        if let Some(ws) = self.workspace {
            l.workspace_mode = ws.mode;
        }

        if let Some(lim) = self.limits {
            if let Some(m) = &lim.memory {
                l.memory_bytes = Some(cx.check("limits.memory", m, want_memory)?);
            }
            if let Some(p) = &lim.pids {
                l.pids = Some(cx.check("limits.pids", p, want_positive)?);
            }
            if let Some(c) = &lim.cpus {
                l.cpus = Some(cx.check("limits.cpus", c, want_cpus)?);
            }
        }

        l.runtime = self.runtime;
        if let Some(i) = &self.image {
            l.image = Some(cx.check("image", i, |s: &String| values::parse_image(s))?);
        }
        for d in self.dependencies.into_iter().flatten() {
            let other = l.services.first().copied();
            match cx.check("dependencies", &d, |s: &String| {
                values::parse_dependency_entry(s).and_then(|e| match (&e, other) {
                    (values::DependencyEntry::Service(s), Some(o)) if *s != o => {
                        Err(values::services_conflict(o, *s))
                    }
                    _ => Ok(e),
                })
            })? {
                values::DependencyEntry::Service(s) if !l.services.contains(&s) => {
                    l.services.push(s)
                }
                values::DependencyEntry::Tool(d) if !l.dependencies.contains(&d) => {
                    l.dependencies.push(d)
                }
                _ => {}
            }
        }

        if let Some(net) = self.network {
            l.policy = net.policy;
            for r in net.rules.into_iter().flatten() {
                l.rules.push(resolve_rule(cx, r)?);
            }
            for p in net.passthrough.into_iter().flatten() {
                let h = cx.check("network.passthrough", &p, |s| values::parse_host_pattern(s))?;
                if !l.passthrough.contains(&h) {
                    l.passthrough.push(h);
                }
            }
            for h in net.headers.into_iter().flatten() {
                l.headers.push(resolve_headers(cx, h)?);
            }
        }

        for g in self.grants.into_iter().flatten() {
            cx.check("grants", &g, |g| values::validate_grant_name(g))?;
            if !l.grants.contains(&g.value) {
                l.grants.push(g.value);
            }
        }

        if let Some(ports) = self.ports {
            for (k, v) in ports.0 {
                cx.check("ports", &k, |k| {
                    values::validate_dns_label(k).map_err(|e| e.prefixed("endpoint "))
                })?;
                let port = cx.check(&format!("ports.{}", k.value), &v, want_port)?;
                l.ports.push((k.value, port));
            }
        }

        if let Some(up) = self.upstream {
            if let Some(ca) = &up.extra_ca {
                cx.user_only("upstream.extra_ca", ca)?;
                l.extra_ca = Some(cx.check("upstream.extra_ca", ca, |p| {
                    if p.is_empty() {
                        return Err(ValueError::new("path is empty"));
                    }
                    values::resolve_host_path(p, cx.base_dir, cx.home)
                })?);
            }
            for (k, v) in up.resolve.into_iter().flat_map(|m| m.0) {
                cx.user_only("upstream.resolve", &k)?;
                let host = cx.check("upstream.resolve", &k, |h| values::parse_exact_host(h))?;
                if l.resolve.iter().any(|(h, _)| *h == host) {
                    return Err(cx.pos(&k).error(
                        ErrorKind::DuplicateKey,
                        format!(
                            "duplicate key {} (host names are case-insensitive)",
                            show(&k.value)
                        ),
                        None,
                    ));
                }
                let addr = cx.check(&format!("upstream.resolve.{host}"), &v, |a| {
                    values::parse_socket_addr(a)
                })?;
                l.resolve.push((host, addr));
            }
        }

        if let Some(p) = self.router.and_then(|r| r.port) {
            cx.user_only("router.port", &p)?;
            l.router_port = Some(cx.check("router.port", &p, want_port)?);
        }
        if let Some(ui) = self.ui {
            if let Some(p) = &ui.port {
                cx.user_only("ui.port", p)?;
                l.ui_port = Some(cx.check("ui.port", p, want_port)?);
            }
            if let Some(b) = &ui.browser {
                cx.user_only("ui.browser", b)?;
                l.ui_browser = Some(cx.check("ui.browser", b, |b| {
                    if b.trim().is_empty() {
                        Err(ValueError::new(
                            "must name a browser command, e.g. `firefox`",
                        ))
                    } else {
                        Ok(b.clone())
                    }
                })?);
            }
        }
        if let Some(t) = self.daemon.and_then(|d| d.idle_timeout) {
            cx.user_only("daemon.idle_timeout", &t)?;
            l.idle_timeout = Some(cx.check("daemon.idle_timeout", &t, want_duration)?);
        }
        if let Some(a) = self.audit {
            if let Some(n) = &a.checkpoint_every {
                cx.user_only("audit.checkpoint_every", n)?;
                l.checkpoint_every = Some(cx.check("audit.checkpoint_every", n, want_positive)?);
            }
            if let Some(t) = &a.checkpoint_interval {
                cx.user_only("audit.checkpoint_interval", t)?;
                l.checkpoint_interval =
                    Some(cx.check("audit.checkpoint_interval", t, want_duration)?);
            }
        }
        let (autorun, every) = match self.review {
            Some(r) => (r.autorun, r.snapshot_every),
            None => (None, None),
        };
        if let Some(t) = &every {
            l.snapshot_every = Some(cx.check("review.snapshot_every", t, want_duration)?);
        }
        for p in autorun.into_iter().flatten() {
            let p = cx.check("review.autorun", &p, |p| values::parse_autorun_pattern(p))?;
            if !l.autorun.contains(&p) {
                l.autorun.push(p);
            }
        }
        for (name, a) in self.agents.into_iter().flat_map(|m| m.0) {
            cx.check("agents", &name, |n| {
                values::validate_dns_label(n).map_err(|e| e.prefixed("agent "))
            })?;
            let layer = resolve_agent(cx, &name.value, a)?;
            l.agents.push((name.value, layer));
        }
        Ok(l)
    }
}

fn resolve_agent(cx: &Ctx<'_>, name: &str, a: RawAgent) -> Result<AgentLayer, ConfigError> {
    let key = |k: &str| format!("agents.{name}.{k}");
    let mut l = AgentLayer::default();
    if let Some(cmd) = &a.command {
        l.command = Some(resolve_command(cx, cmd)?);
    }
    if let Some(p) = &a.package {
        cx.check(&key("package"), p, |p| validate_npm_package(p))?;
        l.package = Some(p.value.clone());
    }
    if let Some(v) = &a.version {
        let v = cx.check(&key("version"), v, |v| {
            let text = match v {
                Scalar::Str(s) => s.clone(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                other => {
                    return Err(ValueError::new(format!(
                        "expected a version such as `1.2.3`, found {}",
                        other.describe()
                    )));
                }
            };
            validate_npm_version(&text).map(|()| text)
        })?;
        l.version = Some(v);
    }
    for (list, k, dst) in [
        (a.allow, "allow", &mut l.allow),
        (a.telemetry_hosts, "telemetry_hosts", &mut l.telemetry_hosts),
    ] {
        for h in list.into_iter().flatten() {
            let h = cx.check(&key(k), &h, |s| values::parse_host_pattern(s))?;
            if !dst.contains(&h) {
                dst.push(h);
            }
        }
    }
    l.telemetry = a.telemetry;
    for g in a.login.into_iter().flatten() {
        cx.check(&key("login"), &g, |g| values::validate_grant_name(g))?;
        if !l.login.contains(&g.value) {
            l.login.push(g.value);
        }
    }
    for p in a.state.into_iter().flatten() {
        let p = cx.check(&key("state"), &p, |p| values::sandbox_path(p))?;
        if !l.state.contains(&p) {
            l.state.push(p);
        }
    }
    for (k, v) in a.env.into_iter().flat_map(|m| m.0) {
        cx.check(&key("env"), &k, |k| values::validate_env_name(k))?;
        cx.check(&key(&format!("env.{}", k.value)), &v, |v| {
            no_nul(v, "value")
        })?;
        l.env.insert(k.value, v.value);
    }
    for (path, contents) in a.seed.into_iter().flat_map(|m| m.0) {
        let path = cx.check(&key("seed"), &path, |p| values::sandbox_path(p))?;
        cx.check(&key("seed"), &contents, |v| no_nul(v, "contents"))?;
        l.seed.insert(path, contents.value);
    }
    for (g, vars) in a.login_env.into_iter().flat_map(|m| m.0) {
        cx.check(&key("login_env"), &g, |g| values::validate_grant_name(g))?;
        let dst = l.login_env.entry(g.value.clone()).or_default();
        for (k, v) in vars.0 {
            cx.check(&key("login_env"), &k, |k| values::validate_env_name(k))?;
            cx.check(&key("login_env"), &v, |v| no_nul(v, "value"))?;
            dst.insert(k.value, v.value);
        }
    }
    Ok(l)
}

fn resolve_command(cx: &Ctx<'_>, cmd: &S<RawCommand>) -> Result<Vec<String>, ConfigError> {
    match &cmd.value {
        RawCommand::Line(line) => cx.check("command", cmd, |_| {
            no_nul(line, "command")?;
            let argv = shell_words::split(line).map_err(|_| {
                ValueError::new(format!("command {} has an unterminated quote", show(line)))
                    .with_hint("close the quote, or write the command as a list of arguments")
            })?;
            if argv.is_empty() {
                return Err(ValueError::new("command is empty"));
            }
            Ok(argv)
        }),
        RawCommand::Bad(found) => Err(cx.pos(cmd).error(
            ErrorKind::Type,
            format!("command: expected a command string or a list of arguments, found {found}"),
            None,
        )),
        RawCommand::Argv(args) => {
            if args.is_empty() {
                return Err(cx
                    .pos(cmd)
                    .value_error("command", ValueError::new("command is empty")));
            }
            let mut out = Vec::with_capacity(args.len());
            for (i, a) in args.iter().enumerate() {
                cx.check("command", a, |a| {
                    no_nul(a, "argument")?;
                    if i == 0 && a.is_empty() {
                        return Err(ValueError::new(
                            "the program name (first argument) is empty",
                        ));
                    }
                    Ok(())
                })?;
                out.push(a.value.clone());
            }
            Ok(out)
        }
    }
}

fn resolve_rule(cx: &Ctx<'_>, r: RawRule) -> Result<Rule, ConfigError> {
    let host = cx.check("network.rules.host", &r.host, |h| {
        values::parse_host_pattern(h)
    })?;
    let port = match &r.port {
        Some(p) => Some(cx.check("network.rules.port", p, want_port)?),
        None => None,
    };
    let methods = |key: &str, list: Option<Vec<S<String>>>| {
        let mut out = Vec::new();
        for m in list.into_iter().flatten() {
            let m = cx.check(key, &m, |m| values::parse_http_method(m))?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        Ok::<_, ConfigError>(out)
    };
    let paths = |key: &str, list: Option<Vec<S<String>>>| {
        let mut out = Vec::new();
        for p in list.into_iter().flatten() {
            cx.check(key, &p, |p| values::validate_path_glob(p))?;
            out.push(p.value);
        }
        Ok::<_, ConfigError>(out)
    };
    Ok(Rule {
        host,
        port,
        allow_methods: methods("network.rules.allow_methods", r.allow_methods)?,
        deny_methods: methods("network.rules.deny_methods", r.deny_methods)?,
        allow_paths: paths("network.rules.allow_paths", r.allow_paths)?,
        deny_paths: paths("network.rules.deny_paths", r.deny_paths)?,
        action: r.action.unwrap_or_default(),
    })
}

fn resolve_headers(cx: &Ctx<'_>, entry: S<RawHeaders>) -> Result<HeaderRule, ConfigError> {
    let pos = cx.pos(&entry);
    let e = entry.value;
    let host = cx.check("network.headers.host", &e.host, |h| {
        values::parse_host_pattern(h).map_err(|e| {
            if e.message().contains("includes a port") {
                e.with_hint("write only the host name: an entry applies on every port")
            } else {
                e
            }
        })
    })?;
    let mut set = BTreeMap::new();
    for (k, v) in e.set.into_iter().flat_map(|m| m.0) {
        let name = cx.check("network.headers.set", &k, |k| values::parse_header_name(k))?;
        if set.contains_key(&name) {
            return Err(cx.pos(&k).error(
                ErrorKind::DuplicateKey,
                format!(
                    "network.headers.set: duplicate header {} (header names are case-insensitive)",
                    show(&k.value)
                ),
                Some("set each header once per entry".to_string()),
            ));
        }
        let key = format!("network.headers.set.{}", k.value);
        let value = cx.check(&key, &v, want_header_value)?;
        set.insert(name, value);
    }
    let mut remove: Vec<String> = Vec::new();
    for r in e.remove.into_iter().flatten() {
        let name = cx.check("network.headers.remove", &r, |n| {
            values::parse_header_name(n)
        })?;
        if set.contains_key(&name) {
            return Err(cx.pos(&r).error(
                ErrorKind::Value,
                format!(
                    "network.headers.remove: header {} is also in `set` of this entry",
                    show(&r.value)
                ),
                Some(
                    "`set` already replaces what the client sent; drop it from `remove`"
                        .to_string(),
                ),
            ));
        }
        if !remove.contains(&name) {
            remove.push(name);
        }
    }
    if set.is_empty() && remove.is_empty() {
        return Err(pos.error(
            ErrorKind::Value,
            format!("network.headers: the entry for host `{host}` sets and removes nothing"),
            Some("add `set: {Name: value}` or `remove: [Name]`, or delete the entry".to_string()),
        ));
    }
    Ok(HeaderRule { host, set, remove })
}

/// A header value: text (never shown in errors: it may be a token), or a whole number.
fn want_header_value(v: &Scalar) -> Result<String, ValueError> {
    match v {
        Scalar::Str(s) => values::check_header_value(s).map(|()| s.clone()),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Null => Err(ValueError::new("header value is missing")
            .with_hint("write `Name: \"\"` for an empty value, or list the header under `remove`")),
        other => Err(ValueError::new(format!(
            "expected a header value (text), found {}",
            other.describe()
        ))
        .with_hint("quote the value so it stays text as written")),
    }
}
