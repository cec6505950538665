//! What a run may ask of the host's Docker engine: the endpoint classification and the
//! checks and rewrites of request bodies and queries. Pure (no I/O but resolving a bind
//! source's symlinks); the proxy ([`super::proxy`]) does the engine lookups the checks ask for.
//!
//! Refused: privileged containers, added capabilities, the host's network/pid/ipc/uts/user/
//! cgroup namespaces, devices, bind mounts outside the run's workspace (after resolving
//! symlinks; none at all in a copy-on-write run, whose workspace the engine cannot see),
//! security options other than `no-new-privileges`, unmasked `/proc` paths, volume driver
//! options (a local volume can bind any host path), published ports, plugins, swarm,
//! registry logins, image imports and loads, and tags over images the run did not build.
//! Allowed: build, pull and push (the registry must pass the run's egress policy), and
//! run/exec/logs/rm of the run's own containers (labelled [`RUN_LABEL`]), and its volumes.
//! Containers and builds get no network (`none`): the engine's bridge would bypass the
//! run's egress policy.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

/// The label on every container, volume and built image a run made through docker:host.
/// (Not `paddock.run`: that marks the docker runtime's own sandbox containers.)
pub const RUN_LABEL: &str = "paddock.dockerhost.run";

/// A request the policy refuses: the rule's name and what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            rule,
            message: message.into(),
        }
    }

    /// The Docker API error message (the CLI prints it after "Error response from daemon:").
    pub fn text(&self) -> String {
        format!(
            "paddock refuses this Docker request: {} (rule: {})",
            self.message, self.rule
        )
    }
}

/// An endpoint, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Harmless: forwarded as is (ping, version, info, image and network listings).
    Pass,
    /// A listing or prune narrowed to the run's objects (a label filter is added).
    Filtered,
    /// `POST /containers/create`: the body is checked and labelled.
    CreateContainer,
    /// An operation on one container, which must be the run's (`op` is the rest of the
    /// path: `start`, `json`, `logs`, …; empty for `DELETE /containers/{id}`).
    Container {
        id: String,
        op: String,
    },
    /// `POST /containers/{id}/exec`: the container must be the run's, the body is checked.
    CreateExec {
        id: String,
    },
    /// `/exec/{id}/{op}`: the exec's container must be the run's.
    Exec {
        id: String,
        op: String,
    },
    /// `POST /images/create`: a pull.
    Pull,
    /// `POST /images/{name}/push`.
    Push {
        name: String,
    },
    /// `POST /images/{name}/tag`.
    Tag {
        name: String,
    },
    /// `DELETE /images/{name}`: only images the run built.
    RemoveImage {
        name: String,
    },
    /// `POST /build`.
    Build,
    /// `POST /commit`.
    Commit,
    /// `POST /volumes/create`.
    CreateVolume,
    /// `GET|DELETE /volumes/{name}`: the run's volumes only.
    Volume {
        name: String,
    },
    Refused(Refusal),
}

/// The operations on a container a run may ask for (on its own containers).
const CONTAINER_OPS: &[&str] = &[
    "json",
    "start",
    "stop",
    "restart",
    "kill",
    "wait",
    "attach",
    "attach/ws",
    "logs",
    "top",
    "stats",
    "resize",
    "pause",
    "unpause",
    "update",
    "rename",
    "archive",
    "export",
    "changes",
];

/// Strip the `/v1.41` version prefix, if any: (prefix, rest).
pub fn split_version(path: &str) -> (&str, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let v = &rest[..end];
        if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return (&path[..end + 2], &path[end + 2..]);
        }
    }
    ("", path)
}

fn refused(rule: &'static str, message: impl Into<String>) -> Route {
    Route::Refused(Refusal::new(rule, message))
}

/// Classify a request by method and path (without its query).
pub fn classify(method: &str, path: &str) -> Route {
    let (_, p) = split_version(path);
    // One spelling of each path: what is checked is what the engine routes.
    if p.contains(['%', '\\']) || p.contains("//") || p.split('/').any(|s| s == "..") {
        return refused("odd path", format!("the path {}", p.escape_default()));
    }
    let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (_, ["_ping"]) | ("GET", ["version"]) | ("GET", ["info"]) => Route::Pass,
        ("GET", ["containers", "json"]) => Route::Filtered,
        ("POST", ["containers", "create"]) => Route::CreateContainer,
        ("POST", ["containers", "prune"]) => Route::Filtered,
        ("POST", ["containers", id, "exec"]) => Route::CreateExec { id: id.to_string() },
        ("DELETE", ["containers", id]) => Route::Container {
            id: id.to_string(),
            op: String::new(),
        },
        (_, ["containers", id, op @ ..]) if !op.is_empty() => {
            let op = op.join("/");
            if CONTAINER_OPS.contains(&op.as_str()) {
                Route::Container {
                    id: id.to_string(),
                    op,
                }
            } else {
                refused(
                    "unknown endpoint",
                    format!("{method} /containers/{{id}}/{op}"),
                )
            }
        }
        (_, ["exec", id, op @ ("start" | "resize" | "json")]) => Route::Exec {
            id: id.to_string(),
            op: op.to_string(),
        },
        ("GET", ["images", "json"]) => Route::Pass,
        ("GET", ["images", "search"]) => refused(
            "registry search",
            "searching a registry (the engine would reach it outside the run's egress policy)",
        ),
        ("POST", ["images", "create"]) => Route::Pull,
        ("POST", ["images", "load"]) => refused(
            "image import",
            "loading images from a tarball (it can replace any tag on the host)",
        ),
        ("POST", ["images", "prune"]) => Route::Filtered,
        ("GET", ["images", "get"]) => Route::Pass,
        ("POST", ["images", name @ .., "push"]) if !name.is_empty() => Route::Push {
            name: name.join("/"),
        },
        ("POST", ["images", name @ .., "tag"]) if !name.is_empty() => Route::Tag {
            name: name.join("/"),
        },
        ("GET", ["images", name @ .., "json" | "history" | "get"]) if !name.is_empty() => {
            Route::Pass
        }
        ("DELETE", ["images", name @ ..]) if !name.is_empty() => Route::RemoveImage {
            name: name.join("/"),
        },
        ("POST", ["build"]) => Route::Build,
        ("POST", ["build", "prune"]) => refused(
            "build cache",
            "pruning the engine's build cache (shared with the host)",
        ),
        (_, ["session"] | ["grpc"]) => refused(
            "BuildKit",
            "BuildKit sessions through docker:host; build with the classic builder (DOCKER_BUILDKIT=0, as the run's environment sets)",
        ),
        ("POST", ["commit"]) => Route::Commit,
        ("GET", ["volumes"]) => Route::Filtered,
        ("POST", ["volumes", "create"]) => Route::CreateVolume,
        ("POST", ["volumes", "prune"]) => Route::Filtered,
        ("GET" | "DELETE", ["volumes", name]) => Route::Volume {
            name: name.to_string(),
        },
        ("GET", ["networks"]) | ("GET", ["networks", _]) => Route::Pass,
        (_, ["networks", ..]) => refused(
            "networks",
            "creating, changing or removing engine networks (a run's containers have its network or none)",
        ),
        ("GET", ["events"]) => Route::Filtered,
        (_, ["auth"]) => refused("registry login", "logging the engine in to a registry"),
        (_, ["plugins", ..]) => refused("plugins", "managing engine plugins"),
        (_, [s, ..])
            if matches!(
                *s,
                "swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs"
            ) =>
        {
            refused("swarm", format!("the swarm endpoint /{s}"))
        }
        (_, ["distribution", ..]) => refused(
            "registry",
            "asking a registry about an image (the engine would reach it outside the run's egress policy)",
        ),
        (_, ["system", "df"]) => refused("system", "the engine's disk usage of every object"),
        _ => refused("unknown endpoint", format!("{method} {p}")),
    }
}

/// The label filter value that selects a run's objects.
pub fn run_filter(run_id: &str) -> String {
    format!("{RUN_LABEL}={run_id}")
}

/// Add `label=<RUN_LABEL>=<run>` to a `filters` query value (either JSON form the engine
/// reads: `{"label":["a=b"]}` or the older `{"label":{"a=b":true}}`). An unreadable value
/// is refused rather than passed on.
pub fn add_label_filter(filters: Option<&str>, run_id: &str) -> Result<String, Refusal> {
    let mut map: Map<String, Value> = match filters {
        None | Some("") => Map::new(),
        Some(s) => match serde_json::from_str(s) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(Refusal::new(
                    "filters",
                    "a `filters` value that is not a JSON object",
                ));
            }
        },
    };
    // The engine reads every key as a list of strings; the older form is normalised too.
    for v in map.values_mut() {
        if let Value::Object(o) = v {
            let keys: Vec<Value> = o
                .iter()
                .filter(|(_, b)| b.as_bool() == Some(true))
                .map(|(k, _)| Value::String(k.clone()))
                .collect();
            *v = Value::Array(keys);
        }
    }
    let mut labels: Vec<Value> = match map.remove("label") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(Refusal::new(
                "filters",
                "a `label` filter that is not a list",
            ));
        }
    };
    labels.push(Value::String(run_filter(run_id)));
    map.insert("label".into(), Value::Array(labels));
    Ok(Value::Object(map).to_string())
}

/// What a checked create asks the proxy to verify with the engine.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Containers named by `container:X` modes, `VolumesFrom` and `Links`: must be the run's.
    pub containers: Vec<String>,
    /// Named volumes mounted: must be the run's (a missing one is created, labelled).
    pub volumes: Vec<String>,
}

/// Where the run's workspace is and how it is presented (for bind mount checks).
#[derive(Debug, Clone)]
pub struct WorkspaceScope {
    /// The workspace's real path.
    pub root: PathBuf,
    /// `--workspace bind`: the engine sees the same files as the sandbox.
    pub bind_mode: bool,
}

/// The engine (Go's encoding/json) matches field names without regard to case, folding `ſ`
/// to `s` and the Kelvin sign to `k` as well: a body spelling a field the policy reads in any
/// other way (`hostconfig`, `Privileged` twice in two spellings) is refused, so that what is
/// checked is what the engine reads.
fn exact_keys(obj: &Map<String, Value>, fields: &[&str]) -> Result<(), Refusal> {
    fn fold(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '\u{17F}' => 's',
                '\u{212A}' => 'k',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    }
    for k in obj.keys() {
        let f = fold(k);
        if let Some(field) = fields.iter().find(|n| **n != k && fold(n) == f) {
            return Err(Refusal::new(
                "body",
                format!(
                    "the key `{}` (write it `{field}`, as the Docker API spells it)",
                    k.escape_default()
                ),
            ));
        }
    }
    Ok(())
}

/// The fields the policy reads, in the spelling the engine would match in any case (a body
/// with another spelling of one is refused: see `exact_keys`).
pub const CONFIG_FIELDS: &[&str] = &["HostConfig", "Labels", "User", "NetworkingConfig"];
pub const HOST_FIELDS: &[&str] = &[
    "Privileged",
    "CapAdd",
    "Devices",
    "DeviceRequests",
    "DeviceCgroupRules",
    "SecurityOpt",
    "MaskedPaths",
    "ReadonlyPaths",
    "CgroupParent",
    "PortBindings",
    "PublishAllPorts",
    "NetworkMode",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
    "VolumesFrom",
    "Links",
    "Binds",
    "Mounts",
];
pub const MOUNT_FIELDS: &[&str] = &["Type", "Source", "VolumeOptions"];
pub const VOLUME_FIELDS: &[&str] = &["Driver", "DriverOpts", "Labels", "Name"];

fn set_label(obj: &mut Map<String, Value>, key: &str, run_id: &str) -> Result<(), Refusal> {
    let labels = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    let Value::Object(labels) = labels else {
        return Err(Refusal::new("labels", "labels that are not an object"));
    };
    claim(labels, run_id)
}

/// Put the run's label among `labels`, which may not hold any of paddock's own.
fn claim(labels: &mut Map<String, Value>, run_id: &str) -> Result<(), Refusal> {
    if let Some(k) = labels.keys().find(|k| k.starts_with("paddock.")) {
        return Err(Refusal::new(
            "labels",
            format!(
                "the label `{}` (labels under `paddock.` are paddock's)",
                k.escape_default()
            ),
        ));
    }
    labels.insert(RUN_LABEL.into(), Value::String(run_id.into()));
    Ok(())
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(_) => true,
    }
}

fn str_of<'a>(o: &'a Map<String, Value>, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A namespace mode (`PidMode`, `IpcMode`, …): `host` is refused, `container:X` needs X
/// to be the run's.
fn ns_mode(
    host: &Map<String, Value>,
    key: &str,
    what: &'static str,
    needs: &mut Needs,
) -> Result<(), Refusal> {
    let mode = str_of(host, key);
    if mode == "host" {
        return Err(Refusal::new(what, format!("{key}: host")));
    }
    if let Some(c) = mode.strip_prefix("container:") {
        needs.containers.push(c.to_string());
    }
    Ok(())
}

/// Whether `User` runs as root: no user, `root`, or any number the engine reads as uid 0
/// (it parses digits with a sign and leading zeros: `0`, `00`, `+0`, `-0`).
fn is_root_user(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("");
    name.is_empty() || name == "root" || name.parse::<i64>() == Ok(0)
}

/// The network an engine's containers and builds may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineNet<'a> {
    /// None (the host's engine: its bridge and host network bypass the run's policy).
    Cut,
    /// The network namespace of the container with this id (docker:host: the run's network
    /// holder, whose namespace holds the run's egress listeners and nothing else).
    Joined(&'a str),
    /// The engine's host network, which is the run's (docker:dind: the sidecar's network
    /// namespace holds the run's egress listeners and nothing else).
    Governed,
}

impl EngineNet<'_> {
    /// The network mode a container or build asking for `mode` gets, or the refusal.
    fn mode(self, mode: &str) -> Result<String, Refusal> {
        match (self, mode) {
            (_, "none") => Ok("none".into()),
            (EngineNet::Cut, "" | "default" | "bridge") => Ok("none".into()),
            (EngineNet::Joined(id), "" | "default" | "bridge") => Ok(format!("container:{id}")),
            (EngineNet::Cut | EngineNet::Joined(_), "host") => {
                Err(Refusal::new("host network", "NetworkMode: host"))
            }
            (EngineNet::Governed, "" | "default" | "bridge" | "host") => Ok("host".into()),
            (_, m) => Err(Refusal::new(
                "networks",
                format!(
                    "the network `{}` (a run's containers have the run's network or none)",
                    m.escape_default()
                ),
            )),
        }
    }
}

/// Check (and rewrite) a `POST /containers/create` body: labels it as the run's, sets its
/// network ([`EngineNet`]), resolves bind sources to real paths. Returns what the proxy
/// must verify.
pub fn check_container(
    body: &mut Value,
    run_id: &str,
    ws: &WorkspaceScope,
    net: EngineNet,
) -> Result<Needs, Refusal> {
    let Value::Object(cfg) = body else {
        return Err(Refusal::new(
            "body",
            "a container config that is not a JSON object",
        ));
    };
    exact_keys(cfg, CONFIG_FIELDS)?;
    if let Some(Value::Object(nc)) = cfg.get("NetworkingConfig") {
        exact_keys(nc, &["EndpointsConfig"])?;
    }
    if let Some(Value::Object(h)) = cfg.get("HostConfig") {
        exact_keys(h, HOST_FIELDS)?;
        if let Some(Value::Array(ms)) = h.get("Mounts") {
            for m in ms.iter().filter_map(Value::as_object) {
                exact_keys(m, MOUNT_FIELDS)?;
                if let Some(Value::Object(o)) = m.get("VolumeOptions") {
                    exact_keys(o, &["DriverConfig"])?;
                }
            }
        }
    }
    set_label(cfg, "Labels", run_id)?;
    let user = str_of(cfg, "User").to_string();
    let mut needs = Needs::default();
    let host = cfg
        .entry("HostConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if host.is_null() {
        *host = Value::Object(Map::new());
    }
    let Value::Object(host) = host else {
        return Err(Refusal::new(
            "body",
            "a HostConfig that is not a JSON object",
        ));
    };
    if host.get("Privileged").and_then(Value::as_bool) == Some(true) {
        return Err(Refusal::new("privileged", "a privileged container"));
    }
    if non_empty(host.get("CapAdd")) {
        return Err(Refusal::new(
            "capabilities",
            format!("adding capabilities ({})", host["CapAdd"]),
        ));
    }
    for key in ["Devices", "DeviceRequests", "DeviceCgroupRules"] {
        if non_empty(host.get(key)) {
            return Err(Refusal::new("devices", format!("{key}: {}", host[key])));
        }
    }
    if let Some(Value::Array(opts)) = host.get("SecurityOpt") {
        for o in opts {
            let o = o.as_str().unwrap_or("");
            if !matches!(
                o,
                "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
            ) {
                return Err(Refusal::new(
                    "security-opt",
                    format!(
                        "the security option `{}` (only no-new-privileges may be added)",
                        o.escape_default()
                    ),
                ));
            }
        }
    }
    for key in ["MaskedPaths", "ReadonlyPaths"] {
        if host.get(key).is_some_and(|v| !v.is_null()) {
            return Err(Refusal::new(
                "security-opt",
                format!("{key} (it unmasks the kernel's files in /proc and /sys)"),
            ));
        }
    }
    if non_empty(host.get("CgroupParent")) {
        return Err(Refusal::new(
            "cgroup",
            "choosing the container's cgroup parent",
        ));
    }
    if non_empty(host.get("PortBindings"))
        || host.get("PublishAllPorts").and_then(Value::as_bool) == Some(true)
    {
        return Err(Refusal::new(
            "published ports",
            "publishing ports on the host (a run's containers are reachable only inside the run)",
        ));
    }
    // The network: none, or another of the run's containers'.
    let mode = str_of(host, "NetworkMode").to_string();
    match mode.as_str() {
        m if m.starts_with("container:") => needs.containers.push(m["container:".len()..].into()),
        m => {
            let set = net.mode(m)?;
            host.insert("NetworkMode".into(), Value::String(set));
        }
    }
    if let Some(Value::Object(nc)) = cfg.get_mut("NetworkingConfig") {
        nc.remove("EndpointsConfig");
    }
    let host = cfg
        .get_mut("HostConfig")
        .and_then(Value::as_object_mut)
        .expect("HostConfig was made an object above");
    ns_mode(host, "PidMode", "host pid namespace", &mut needs)?;
    ns_mode(host, "IpcMode", "host ipc namespace", &mut needs)?;
    for (key, what) in [
        ("UTSMode", "host uts namespace"),
        ("UsernsMode", "host user namespace"),
        ("CgroupnsMode", "host cgroup namespace"),
    ] {
        if str_of(host, key) == "host" {
            return Err(Refusal::new(what, format!("{key}: host")));
        }
    }
    for key in ["VolumesFrom", "Links"] {
        if let Some(Value::Array(a)) = host.get(key) {
            for v in a {
                let s = v.as_str().unwrap_or("");
                // `name[:ro|rw]` and `name:alias`: the container is the first part.
                let name = s.split(':').next().unwrap_or("").trim_start_matches('/');
                needs.containers.push(name.to_string());
            }
        }
    }
    let mut binds = 0usize;
    if let Some(Value::Array(list)) = host.get_mut("Binds") {
        for b in list.iter_mut() {
            let s = b.as_str().unwrap_or("").to_string();
            let mut parts = s.splitn(2, ':');
            let src = parts.next().unwrap_or("");
            let rest = parts.next().unwrap_or("");
            if src.starts_with('/') {
                let real = check_bind(Path::new(src), ws)?;
                *b = Value::String(format!("{}:{rest}", real.display()));
                binds += 1;
            } else if !src.is_empty() {
                needs.volumes.push(src.to_string());
            }
        }
    }
    if let Some(Value::Array(list)) = host.get_mut("Mounts") {
        for m in list.iter_mut() {
            let Value::Object(m) = m else {
                return Err(Refusal::new("body", "a mount that is not an object"));
            };
            match str_of(m, "Type") {
                "bind" => {
                    let real = check_bind(Path::new(str_of(m, "Source")), ws)?;
                    m.insert("Source".into(), Value::String(real.display().to_string()));
                    binds += 1;
                }
                "volume" | "" => {
                    if m.get("VolumeOptions")
                        .and_then(|o| o.get("DriverConfig"))
                        .is_some_and(|d| !d.is_null())
                    {
                        return Err(Refusal::new(
                            "volume driver",
                            "a volume with driver options (a local volume can bind any host path)",
                        ));
                    }
                    let src = str_of(m, "Source");
                    if !src.is_empty() {
                        needs.volumes.push(src.to_string());
                    }
                }
                "tmpfs" => {}
                t => {
                    return Err(Refusal::new(
                        "mounts",
                        format!("a mount of type `{}`", t.escape_default()),
                    ));
                }
            }
        }
    }
    if binds > 0 && is_root_user(&user) {
        return Err(Refusal::new(
            "root with a workspace bind",
            "a container running as root with a bind mount of the workspace (it could leave setuid-root files there); run it as your user, e.g. `--user $(id -u):$(id -g)`",
        ));
    }
    Ok(needs)
}

/// A bind source: its real path (symlinks resolved), which must be the workspace or
/// beneath it, in a bind-mode run.
pub fn check_bind(src: &Path, ws: &WorkspaceScope) -> Result<PathBuf, Refusal> {
    if !src.is_absolute() || src.components().any(|c| c == Component::ParentDir) {
        return Err(Refusal::new(
            "bind mounts",
            format!("the bind source {}", src.display()),
        ));
    }
    let real = std::fs::canonicalize(src).map_err(|e| {
        Refusal::new(
            "bind mounts",
            format!("the bind source {} ({e})", src.display()),
        )
    })?;
    // The real path is written back into the request: as `src:dst` (which the engine
    // splits at the first `:`) or as JSON text. Either must name exactly the checked path.
    if real.to_str().is_none_or(|r| r.contains(':')) {
        return Err(Refusal::new(
            "bind mounts",
            format!(
                "the bind source {} (really {}): a path with `:` or that is not UTF-8 cannot be passed on unchanged",
                src.display(),
                real.display()
            ),
        ));
    }
    if !real.starts_with(&ws.root) {
        return Err(Refusal::new(
            "bind mounts",
            format!(
                "a bind mount of {} (really {}), outside the run's workspace {}",
                src.display(),
                real.display(),
                ws.root.display()
            ),
        ));
    }
    if !ws.bind_mode {
        return Err(Refusal::new(
            "workspace bind in a copy-on-write run",
            format!(
                "a bind mount of {}: the engine would see your real files, not the run's copy-on-write view; copy files in (`docker cp`, a build context), or start the run with `--workspace bind`",
                src.display()
            ),
        ));
    }
    Ok(real)
}

/// Check a `POST /containers/{id}/exec` body.
pub fn check_exec(body: &Value) -> Result<(), Refusal> {
    let Some(obj) = body.as_object() else {
        return Err(Refusal::new(
            "body",
            "an exec config that is not a JSON object",
        ));
    };
    exact_keys(obj, &["Privileged"])?;
    if body.get("Privileged").and_then(Value::as_bool) == Some(true) {
        return Err(Refusal::new("privileged", "a privileged exec"));
    }
    Ok(())
}

/// Check (and label) a `POST /volumes/create` body.
pub fn check_volume(body: &mut Value, run_id: &str) -> Result<(), Refusal> {
    let Value::Object(v) = body else {
        return Err(Refusal::new(
            "body",
            "a volume config that is not a JSON object",
        ));
    };
    exact_keys(v, VOLUME_FIELDS)?;
    if !matches!(str_of(v, "Driver"), "" | "local") {
        return Err(Refusal::new(
            "volume driver",
            format!(
                "the volume driver `{}`",
                str_of(v, "Driver").escape_default()
            ),
        ));
    }
    if non_empty(v.get("DriverOpts")) {
        return Err(Refusal::new(
            "volume driver",
            "a volume with driver options (a local volume can bind any host path)",
        ));
    }
    set_label(v, "Labels", run_id)
}

/// The query pairs of a request.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of query parameter `key`.
pub fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The image a `repo` and `tag` pair names (`POST /images/{name}/tag`, `POST /commit`).
pub fn repo_tag(pairs: &[(String, String)]) -> Option<String> {
    let repo = param(pairs, "repo").filter(|r| !r.is_empty())?;
    Some(match param(pairs, "tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    })
}

/// Query pairs back to a query string.
pub fn query_string(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Check and rewrite a `POST /build` query: no remote context, no BuildKit, no host network
/// (the build's network is none), the run's label on the image. Returns the tags to check.
pub fn check_build(
    pairs: &mut Vec<(String, String)>,
    run_id: &str,
    net: EngineNet,
) -> Result<Vec<String>, Refusal> {
    let mut tags = Vec::new();
    let mut labels: Option<String> = None;
    let mut network = "";
    for (k, v) in pairs.iter() {
        match k.as_str() {
            "remote" if !v.is_empty() => {
                return Err(Refusal::new(
                    "remote build context",
                    format!(
                        "a build context the engine fetches itself ({})",
                        v.escape_default()
                    ),
                ));
            }
            "version" if v == "2" => {
                return Err(Refusal::new(
                    "BuildKit",
                    "a BuildKit build through docker:host; build with the classic builder (DOCKER_BUILDKIT=0)",
                ));
            }
            // Checked below, as a container's network is (`EngineNet::mode`).
            "networkmode" => network = v.as_str(),
            "cgroupparent" if !v.is_empty() => {
                return Err(Refusal::new("cgroup", "choosing the build's cgroup parent"));
            }
            "t" => tags.push(v.clone()),
            "labels" => labels = Some(v.clone()),
            _ => {}
        }
    }
    let mut l: Value = match labels.as_deref() {
        None | Some("") => Value::Object(Map::new()),
        Some(s) => serde_json::from_str(s)
            .map_err(|_| Refusal::new("labels", "build labels that are not a JSON object"))?,
    };
    let Value::Object(obj) = &mut l else {
        return Err(Refusal::new(
            "labels",
            "build labels that are not a JSON object",
        ));
    };
    claim(obj, run_id)?;
    let network = net.mode(network)?;
    pairs.retain(|(k, _)| k != "labels" && k != "networkmode");
    pairs.push(("labels".into(), l.to_string()));
    pairs.push(("networkmode".into(), network));
    for t in &tags {
        check_tag_name(t)?;
    }
    Ok(tags)
}

/// A name the run may tag: not one of paddock's own images.
pub fn check_tag_name(reference: &str) -> Result<(), Refusal> {
    let (_, path) = split_registry(reference);
    let last = path.rsplit('/').next().unwrap_or(path);
    // The name without its `:tag` or `@digest`.
    let repo = last.split([':', '@']).next().unwrap_or(last);
    if repo == "paddock" || repo.starts_with("paddock-") {
        return Err(Refusal::new(
            "image tags",
            format!(
                "the tag `{}` (paddock's own images)",
                reference.escape_default()
            ),
        ));
    }
    Ok(())
}

/// The registry a reference names (`docker.io` by default) and the rest.
pub fn split_registry(reference: &str) -> (&str, &str) {
    // The engine's rule (distribution/reference): a first component with a `.` or `:`, or
    // `localhost`, or any upper-case letter (repository names are lower-case) is a host.
    match reference.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, rest)
        }
        _ => ("docker.io", reference),
    }
}

/// The hosts the engine contacts for a registry, and the port: `docker.io` is served by
/// `registry-1.docker.io`; `host:port` names its port.
pub fn registry_hosts(registry: &str) -> (Vec<String>, u16) {
    if registry == "docker.io" || registry == "index.docker.io" {
        return (vec!["docker.io".into(), "registry-1.docker.io".into()], 443);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (vec![h.to_string()], p.parse().unwrap_or(443)),
        _ => (vec![registry.to_string()], 443),
    }
}

/// The image a pull (`POST /images/create`) asks for; an import (`fromSrc`) is refused.
pub fn pull_reference(pairs: &[(String, String)]) -> Result<String, Refusal> {
    let get = |k: &str| param(pairs, k);
    if get("fromSrc").is_some() {
        return Err(Refusal::new(
            "image import",
            "importing an image from a tarball or URL (it can replace any tag on the host)",
        ));
    }
    let Some(image) = get("fromImage").filter(|s| !s.is_empty()) else {
        return Err(Refusal::new("body", "a pull without `fromImage`"));
    };
    Ok(match get("tag").filter(|t| !t.is_empty()) {
        Some(t) if !image.contains('@') => format!("{image}:{t}"),
        _ => image.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_and_builds_get_the_network_the_engine_may_give() {
        let w = ws(Path::new("/nonexistent/ws"), false);
        let mode = |net: EngineNet, asked: &str| {
            let mut b = json!({"Image": "x", "HostConfig": {"NetworkMode": asked}});
            check_container(&mut b, "r1", &w, net)
                .map(|_| b["HostConfig"]["NetworkMode"].as_str().unwrap().to_string())
                .map_err(|r| r.rule)
        };
        let holder = EngineNet::Joined("abc123");
        for asked in ["", "default", "bridge"] {
            assert_eq!(mode(EngineNet::Cut, asked).unwrap(), "none");
            assert_eq!(mode(holder, asked).unwrap(), "container:abc123");
            assert_eq!(mode(EngineNet::Governed, asked).unwrap(), "host");
        }
        for net in [EngineNet::Cut, holder, EngineNet::Governed] {
            assert_eq!(mode(net, "none").unwrap(), "none");
            assert_eq!(mode(net, "mynet").unwrap_err(), "networks");
        }
        assert_eq!(mode(EngineNet::Cut, "host").unwrap_err(), "host network");
        assert_eq!(mode(holder, "host").unwrap_err(), "host network");
        assert_eq!(mode(EngineNet::Governed, "host").unwrap(), "host");
        let build = |net: EngineNet, q: &str| {
            let mut p = query_pairs(Some(q));
            check_build(&mut p, "r1", net)
                .map(|_| param(&p, "networkmode").unwrap_or_default().to_string())
                .map_err(|r| r.rule)
        };
        assert_eq!(build(EngineNet::Cut, "t=a").unwrap(), "none");
        assert_eq!(build(holder, "t=a").unwrap(), "container:abc123");
        assert_eq!(
            build(holder, "networkmode=host").unwrap_err(),
            "host network"
        );
        assert_eq!(
            build(EngineNet::Governed, "networkmode=host").unwrap(),
            "host"
        );
    }

    #[test]
    fn the_engines_readings_of_names_users_and_paths_are_the_policys() {
        // Upper case in the first component makes it a registry host, as for the engine.
        assert_eq!(split_registry("EVIL/x:1"), ("EVIL", "x:1"));
        assert_eq!(split_registry("NAS/me/app"), ("NAS", "me/app"));
        assert_eq!(split_registry("me/app"), ("docker.io", "me/app"));
        for root in ["", "root", "0", "00", "+0", "-0", "0:0"] {
            assert!(is_root_user(root), "{root:?}");
        }
        for user in ["1000", "1000:0", "paddock", "01000"] {
            assert!(!is_root_user(user), "{user:?}");
        }
        for tag in [
            "paddock",
            "paddock:1",
            "paddock@sha256:ab",
            "x/paddock-base:1",
        ] {
            assert_eq!(check_tag_name(tag).unwrap_err().rule, "image tags", "{tag}");
        }
        assert!(check_tag_name("mypaddock:1").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("colon:dir")).unwrap();
        std::os::unix::fs::symlink(root.join("colon:dir"), root.join("link")).unwrap();
        let w = ws(&root, true);
        assert_eq!(
            check_bind(&root.join("link"), &w).unwrap_err().rule,
            "bind mounts"
        );
        std::fs::create_dir(root.join("plain")).unwrap();
        assert!(check_bind(&root.join("plain"), &w).is_ok());
    }

    fn ws(root: &Path, bind_mode: bool) -> WorkspaceScope {
        WorkspaceScope {
            root: root.to_path_buf(),
            bind_mode,
        }
    }

    #[test]
    fn routes() {
        assert_eq!(classify("GET", "/v1.41/_ping"), Route::Pass);
        assert_eq!(classify("HEAD", "/_ping"), Route::Pass);
        assert_eq!(classify("GET", "/v1.41/containers/json"), Route::Filtered);
        assert_eq!(
            classify("POST", "/v1.41/containers/abc/start"),
            Route::Container {
                id: "abc".into(),
                op: "start".into()
            }
        );
        assert_eq!(
            classify("DELETE", "/containers/abc"),
            Route::Container {
                id: "abc".into(),
                op: String::new()
            }
        );
        assert_eq!(
            classify("GET", "/v1.41/images/library/alpine:3/json"),
            Route::Pass
        );
        assert_eq!(
            classify("DELETE", "/v1.41/images/reg.io/a/b:1"),
            Route::RemoveImage {
                name: "reg.io/a/b:1".into()
            }
        );
        assert_eq!(
            classify("POST", "/v1.41/images/x/y/push"),
            Route::Push { name: "x/y".into() }
        );
        for (m, p, rule) in [
            (
                "POST",
                "/v1.41/containers/abc/checkpoints",
                "unknown endpoint",
            ),
            ("POST", "/v1.41/swarm/init", "swarm"),
            ("GET", "/services", "swarm"),
            ("POST", "/plugins/pull", "plugins"),
            ("POST", "/auth", "registry login"),
            ("POST", "/images/load", "image import"),
            ("POST", "/networks/create", "networks"),
            ("POST", "/session", "BuildKit"),
            ("GET", "/containers/..%2f/json", "odd path"),
            ("GET", "/containers/../json", "odd path"),
            ("GET", "/v1.41//containers/json", "odd path"),
            ("GET", "/whatever", "unknown endpoint"),
        ] {
            match classify(m, p) {
                Route::Refused(r) => assert_eq!(r.rule, rule, "{m} {p}"),
                other => panic!("{m} {p}: {other:?}"),
            }
        }
    }

    #[test]
    fn version_prefix() {
        assert_eq!(split_version("/v1.41/info"), ("/v1.41", "/info"));
        assert_eq!(split_version("/info"), ("", "/info"));
        assert_eq!(split_version("/volumes"), ("", "/volumes"));
    }

    #[test]
    fn filters_gain_the_run_label() {
        let f = add_label_filter(None, "r1").unwrap();
        assert_eq!(f, r#"{"label":["paddock.dockerhost.run=r1"]}"#);
        let f = add_label_filter(
            Some(r#"{"label":{"x=1":true},"status":{"running":true}}"#),
            "r1",
        )
        .unwrap();
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["label"], json!(["x=1", "paddock.dockerhost.run=r1"]));
        assert_eq!(v["status"], json!(["running"]));
        assert!(add_label_filter(Some("[1]"), "r1").is_err());
        assert!(add_label_filter(Some(r#"{"label":3}"#), "r1").is_err());
    }

    fn refused_rule(body: Value, w: &WorkspaceScope) -> &'static str {
        let mut b = body;
        check_container(&mut b, "r1", w, EngineNet::Cut)
            .unwrap_err()
            .rule
    }

    #[test]
    fn container_bodies() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(root.join("src")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        let w = ws(&root, true);
        let mut ok = json!({"Image": "x", "HostConfig": {"NetworkMode": "default"}});
        let needs = check_container(&mut ok, "r1", &w, EngineNet::Cut).unwrap();
        assert_eq!(needs, Needs::default());
        assert_eq!(ok["HostConfig"]["NetworkMode"], "none");
        assert_eq!(ok["Labels"][RUN_LABEL], "r1");
        for (body, rule) in [
            (json!({"HostConfig": {"Privileged": true}}), "privileged"),
            (
                json!({"HostConfig": {"CapAdd": ["SYS_ADMIN"]}}),
                "capabilities",
            ),
            (
                json!({"HostConfig": {"NetworkMode": "host"}}),
                "host network",
            ),
            (json!({"HostConfig": {"NetworkMode": "mynet"}}), "networks"),
            (
                json!({"HostConfig": {"PidMode": "host"}}),
                "host pid namespace",
            ),
            (
                json!({"HostConfig": {"IpcMode": "host"}}),
                "host ipc namespace",
            ),
            (
                json!({"HostConfig": {"UTSMode": "host"}}),
                "host uts namespace",
            ),
            (
                json!({"HostConfig": {"UsernsMode": "host"}}),
                "host user namespace",
            ),
            (
                json!({"HostConfig": {"CgroupnsMode": "host"}}),
                "host cgroup namespace",
            ),
            (
                json!({"HostConfig": {"Devices": [{"PathOnHost": "/dev/sda"}]}}),
                "devices",
            ),
            (
                json!({"HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}}),
                "security-opt",
            ),
            (
                json!({"HostConfig": {"SecurityOpt": ["apparmor=unconfined"]}}),
                "security-opt",
            ),
            (json!({"HostConfig": {"MaskedPaths": []}}), "security-opt"),
            (
                json!({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "80"}]}}}),
                "published ports",
            ),
            (
                json!({"User": "1000", "HostConfig": {"Binds": ["/etc:/x"]}}),
                "bind mounts",
            ),
            (
                json!({"User": "1000", "HostConfig": {"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}}),
                "bind mounts",
            ),
            (
                json!({"User": "1000", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]}}),
                "bind mounts",
            ),
            (
                json!({"User": "1000", "HostConfig": {"Binds": [format!("{}/etc-link:/x", root.display())]}}),
                "bind mounts",
            ),
            (
                json!({"HostConfig": {"Binds": [format!("{}/src:/x", root.display())]}}),
                "root with a workspace bind",
            ),
            (
                json!({"HostConfig": {"Mounts": [{"Type": "volume", "Source": "v", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"device": "/", "o": "bind"}}}}]}}),
                "volume driver",
            ),
            (json!({"Labels": {"paddock.run": "other"}}), "labels"),
            (json!({"HostConfig": {"CgroupParent": "/"}}), "cgroup"),
            (json!({"hostconfig": {"Privileged": true}}), "body"),
            (
                json!({"NetworkingConfig": {"endpointsconfig": {"bridge": {}}}}),
                "body",
            ),
            (json!({"HostConfig": {"privileged": true}}), "body"),
            (
                json!({"HostConfig": {"PRIVILEGED": true, "Privileged": false}}),
                "body",
            ),
            (
                json!({"HostConfig": {"NetworkMode": "none", "networkmode": "host"}}),
                "body",
            ),
            (
                json!({"HostConfig": {"Mounts": [{"type": "bind", "source": "/"}]}}),
                "body",
            ),
            (
                json!({"HostConfig": {"Binds": [], "Mount\u{17F}": [{"Type": "bind", "Source": "/"}]}}),
                "body",
            ),
        ] {
            assert_eq!(refused_rule(body.clone(), &w), rule, "{body}");
        }
        // A bind beneath the workspace, as the user: resolved and kept.
        let mut b = json!({"User": "1000:1000", "HostConfig": {"Binds": [format!("{}/src:/src:ro", root.display())]}});
        check_container(&mut b, "r1", &w, EngineNet::Cut).unwrap();
        assert_eq!(
            b["HostConfig"]["Binds"][0],
            format!("{}/src:/src:ro", root.display())
        );
        // …but not in a copy-on-write run.
        let cow = ws(&root, false);
        let b = json!({"User": "1000", "HostConfig": {"Binds": [format!("{}/src:/src", root.display())]}});
        assert_eq!(
            refused_rule(b, &cow),
            "workspace bind in a copy-on-write run"
        );
        // Names of other containers and volumes are for the proxy to check.
        let mut b = json!({"HostConfig": {"NetworkMode": "container:web", "VolumesFrom": ["data:ro"], "Binds": ["cache:/c"]}});
        let needs = check_container(&mut b, "r1", &w, EngineNet::Cut).unwrap();
        assert_eq!(needs.containers, vec!["web".to_string(), "data".into()]);
        assert_eq!(needs.volumes, vec!["cache".to_string()]);
        assert!(check_container(&mut json!([1]), "r1", &w, EngineNet::Cut).is_err());
        assert!(check_container(&mut json!({"HostConfig": 3}), "r1", &w, EngineNet::Cut).is_err());
    }

    #[test]
    fn builds_pulls_tags_volumes() {
        let mut q = query_pairs(Some(
            "t=app%3A1&networkmode=default&labels=%7B%22a%22%3A%22b%22%7D",
        ));
        let tags = check_build(&mut q, "r1", EngineNet::Cut).unwrap();
        assert_eq!(tags, vec!["app:1".to_string()]);
        let qs = query_string(&q);
        assert!(qs.contains("networkmode=none"), "{qs}");
        assert!(qs.contains("paddock.dockerhost.run"), "{qs}");
        for (q, rule) in [
            ("remote=https://x/y.git", "remote build context"),
            ("version=2", "BuildKit"),
            ("networkmode=host", "host network"),
            ("t=paddock-base:abc", "image tags"),
        ] {
            let mut p = query_pairs(Some(q));
            assert_eq!(
                check_build(&mut p, "r1", EngineNet::Cut).unwrap_err().rule,
                rule,
                "{q}"
            );
        }
        assert_eq!(
            pull_reference(&query_pairs(Some("fromImage=alpine&tag=3"))).unwrap(),
            "alpine:3"
        );
        assert_eq!(
            pull_reference(&query_pairs(Some("fromSrc=-&repo=x")))
                .unwrap_err()
                .rule,
            "image import"
        );
        assert_eq!(split_registry("alpine"), ("docker.io", "alpine"));
        assert_eq!(
            split_registry("localhost:5000/a/b"),
            ("localhost:5000", "a/b")
        );
        assert_eq!(
            registry_hosts("localhost:5000"),
            (vec!["localhost".to_string()], 5000)
        );
        assert!(check_tag_name("ghcr.io/me/paddock-deps:1").is_err());
        assert!(check_tag_name("myapp:1").is_ok());
        let mut v =
            json!({"Name": "v", "Driver": "local", "DriverOpts": {"o": "bind", "device": "/"}});
        assert_eq!(
            check_volume(&mut v, "r1").unwrap_err().rule,
            "volume driver"
        );
        let mut v = json!({"Name": "v"});
        check_volume(&mut v, "r1").unwrap();
        assert_eq!(v["Labels"][RUN_LABEL], "r1");
        assert!(check_exec(&json!({"Privileged": true})).is_err());
        assert!(check_exec(&json!({"privileged": true})).is_err());
        assert_eq!(
            check_volume(&mut json!({"driveropts": {"o": "bind"}}), "r1")
                .unwrap_err()
                .rule,
            "body"
        );
        assert!(check_exec(&json!({"Cmd": ["true"]})).is_ok());
    }

    /// Hostile bodies: random shapes under the keys the checks read never panic, and a
    /// body that passes always comes out labelled, with no network.
    #[test]
    fn random_bodies_never_panic() {
        use rand::{Rng, SeedableRng};
        const KEYS: &[&str] = &[
            "HostConfig",
            "Labels",
            "User",
            "NetworkMode",
            "Privileged",
            "CapAdd",
            "Devices",
            "SecurityOpt",
            "MaskedPaths",
            "Binds",
            "Mounts",
            "Type",
            "Source",
            "VolumeOptions",
            "DriverConfig",
            "PidMode",
            "IpcMode",
            "VolumesFrom",
            "Links",
            "NetworkingConfig",
            "PortBindings",
            "Driver",
            "DriverOpts",
            "label",
            "CgroupParent",
        ];
        fn value(r: &mut rand::rngs::StdRng, depth: u32) -> Value {
            let strs = [
                "",
                "host",
                "none",
                "container:x",
                "/etc:/x",
                "/",
                "v:/d",
                "bind",
                "volume",
                "root",
                "paddock.run",
                "no-new-privileges",
            ];
            match r.random_range(0..if depth > 3 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => Value::Bool(r.random()),
                2 => json!(r.random_range(-3i64..3)),
                3 | 4 => Value::String(strs[r.random_range(0..strs.len())].into()),
                5 => Value::Array(
                    (0..r.random_range(0..4))
                        .map(|_| value(r, depth + 1))
                        .collect(),
                ),
                _ => Value::Object(
                    (0..r.random_range(0..5))
                        .map(|_| {
                            (
                                KEYS[r.random_range(0..KEYS.len())].to_string(),
                                value(r, depth + 1),
                            )
                        })
                        .collect(),
                ),
            }
        }
        let w = ws(Path::new("/nonexistent-workspace"), true);
        let mut r = rand::rngs::StdRng::seed_from_u64(19);
        for _ in 0..20_000 {
            let mut v = value(&mut r, 0);
            if check_container(&mut v, "r1", &w, EngineNet::Cut).is_ok() {
                assert_eq!(v["Labels"][RUN_LABEL], "r1", "{v}");
                assert_eq!(v["HostConfig"]["NetworkMode"], "none", "{v}");
                assert_ne!(v["HostConfig"]["Privileged"], json!(true), "{v}");
            }
            let mut v2 = value(&mut r, 0);
            let _ = check_volume(&mut v2, "r1");
            let _ = check_exec(&v2);
            let _ = add_label_filter(Some(&value(&mut r, 0).to_string()), "r1");
            let mut q = vec![("labels".to_string(), value(&mut r, 0).to_string())];
            let _ = check_build(&mut q, "r1", EngineNet::Cut);
        }
    }
}
