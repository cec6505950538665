//! The docker:host policy (`paddock_daemon::fuzzing::policy`): how the proxy classifies a
//! run's Docker Engine API requests and checks and rewrites their queries and bodies.
//!
//! Input: `METHOD PATH[?QUERY]`, a newline, then the body (JSON for creates; empty reads as
//! `{}`, as the proxy reads it). Every input goes through every check, whatever its route:
//! `classify`, `query_pairs`, `add_label_filter` (on the `filters` parameter and on the
//! body), `check_build` and `pull_reference` on the query, and, when the body is JSON,
//! `check_exec`, `check_volume` and `check_container`. The network-dependent checks run with
//! each network the engine may give (`EngineNet::Cut`, `Joined` with a holder id,
//! `Governed`); `check_container` also with each workspace: a missing one
//! (`/nonexistent/ws`) and a real one (`/tmp/paddock-fuzz-docker-ws`, made on the first
//! input: a directory `src/`, links `etc-link -> /etc` and `src-link -> src`, and, to tell
//! whether rewritten bind sources still name what was checked, `colon:dir/` with
//! `colon-link` to it and a directory whose name is not UTF-8 with `bytes-link` to it),
//! each in bind and in copy-on-write mode.
//!
//! Properties (beyond never panicking), as the engine reads what the proxy forwards:
//! - `split_version` splits a path into a `/v<digits and dots>` prefix (or none) and the
//!   rest; `classify` gives the same route with or without a version prefix; a route that is
//!   not refused has a path with one spelling (no `%`, `\`, `//` or `..` segment), ids and
//!   names without `/`, and a container operation from the known list;
//! - the query pairs survive `query_string` and `query_pairs` unchanged;
//! - a label filter that is added leaves a JSON object whose `label` list ends with the
//!   run's filter and whose values are all lists (the engine's newer form);
//! - an accepted build query has exactly one `networkmode`: `none`, or the holder's
//!   `container:<id>` when joined, or `host` when governed; exactly one `labels`, a JSON
//!   object with the run's label and no other `paddock.` one; no remote context, no BuildKit,
//!   no cgroup parent; its other pairs in order; the tags it returns are its `t` values, none
//!   of paddock's own images;
//! - an accepted pull names no `fromSrc` and starts with `fromImage`; the registry checked
//!   for a pull or a push is the one the engine contacts (distribution/reference's
//!   `splitDockerDomain`), for every reference the engine accepts; no reference the engine
//!   accepts and `check_tag_name` passes names one of paddock's own repositories
//!   (`paddock`, `paddock-*`, whatever its tag);
//! - an accepted exec is an object without `Privileged: true` (nor another spelling of it);
//! - an accepted volume is an object labelled as the run's, with the local driver and no
//!   driver options;
//! - an accepted container config is an object labelled as the run's (and no other `paddock.`
//!   label); no field the policy reads is spelled in a way Go's case folding would also
//!   match; HostConfig is an object with no `Privileged: true`, no added capabilities, no
//!   devices, only `no-new-privileges` security options, no `MaskedPaths`/`ReadonlyPaths`, no
//!   cgroup parent, no published ports; its NetworkMode is `none`, `container:X` with X
//!   among the containers the proxy must verify (or the holder's, when joined), or `host`
//!   only when governed; no PidMode/IpcMode/UTSMode/UsernsMode/CgroupnsMode is `host`, and
//!   the containers named by `container:X` modes, VolumesFrom and Links are all to be
//!   verified; no endpoint config is left; every bind source (a `Binds` entry's source as
//!   the engine splits it at `:`, or a bind mount's `Source`) is its own real path, beneath
//!   the workspace, in a bind-mode run, in a container that does not run as root (as the
//!   engine resolves `User`: a name `root`, no name, or a uid that `strconv.Atoi` reads as
//!   0); named volumes are to be verified; no volume mount has driver options; no mount
//!   has a type other than bind, volume or tmpfs; and the rewritten config, its run label
//!   taken off, is accepted again and comes out the same (the rewrite is stable).
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use paddock_daemon::fuzzing::policy::{
    self, CONFIG_FIELDS, EngineNet, HOST_FIELDS, MOUNT_FIELDS, Needs, RUN_LABEL, Route,
    VOLUME_FIELDS, WorkspaceScope,
};
use serde_json::{Map, Value};

const RUN: &str = "r1";
const HOLDER: &str = "0123456789ab";
const NETS: [EngineNet<'static>; 3] = [
    EngineNet::Cut,
    EngineNet::Joined(HOLDER),
    EngineNet::Governed,
];
/// The real workspace (a fixed path, so that seeds can name files in it).
const WS: &str = "/tmp/paddock-fuzz-docker-ws";

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

fn scopes() -> &'static [WorkspaceScope] {
    static S: OnceLock<Vec<WorkspaceScope>> = OnceLock::new();
    S.get_or_init(|| {
        let root = Path::new(WS);
        let odd = OsStr::from_bytes(b"\xff-not-utf8");
        for d in [Path::new("src/sub"), Path::new("colon:dir"), Path::new(odd)] {
            let _ = std::fs::create_dir_all(root.join(d));
        }
        let _ = std::fs::write(root.join("src/file"), b"x");
        for (link, to) in [
            ("etc-link", OsStr::new("/etc")),
            ("src-link", OsStr::new("src")),
            ("colon-link", OsStr::new("colon:dir")),
            ("bytes-link", odd),
        ] {
            // Already there from another process or an earlier run: fine.
            let _ = std::os::unix::fs::symlink(to, root.join(link));
        }
        let real = std::fs::canonicalize(root).expect("the fuzz workspace exists");
        let mut v = Vec::new();
        for root in [PathBuf::from("/nonexistent/ws"), real] {
            for bind_mode in [true, false] {
                v.push(WorkspaceScope {
                    root: root.clone(),
                    bind_mode,
                });
            }
        }
        v
    })
}

/// Go's encoding/json field-name folding (ASCII case, `ſ` as `s`, the Kelvin sign as `k`).
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// No key of `obj` is another spelling of one of `fields`.
fn exact(obj: &Map<String, Value>, fields: &[&str], what: &str) {
    for k in obj.keys() {
        for f in fields {
            assert!(
                *f == k || fold(f) != fold(k),
                "{what}: the key {k:?} reads to the engine as {f:?}"
            );
        }
    }
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

/// Labels with the run's label and no other of paddock's.
fn labelled(labels: Option<&Value>, what: &str) {
    let labels = labels
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{what}: no labels object"));
    assert_eq!(
        labels.get(RUN_LABEL),
        Some(&Value::String(RUN.into())),
        "{what}: not labelled as the run's"
    );
    for k in labels.keys() {
        assert!(
            k == RUN_LABEL || !k.starts_with("paddock."),
            "{what}: paddock's label {k:?} passed"
        );
    }
}

/// Whether a container with this `User` runs as root, as the engine resolves it
/// (moby/sys/user, containerd's WithUser): no user is the image's (taken as root), a
/// numeric one is a uid as `strconv.Atoi` reads it (an optional sign, then digits).
fn runs_as_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("");
    let digits = name.strip_prefix(['+', '-']).unwrap_or(name);
    name.is_empty() || name == "root" || (!digits.is_empty() && digits.bytes().all(|b| b == b'0'))
}

/// One of paddock's own repositories (`paddock-base:…`, `paddock-deps:…`; `paddock`), in
/// a reference the engine accepts.
fn own_image(reference: &str) -> bool {
    if engine_registry(reference).is_none() {
        return false;
    }
    let name = reference.split('@').next().unwrap_or("");
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let repo = name.rsplit('/').next().unwrap_or(name);
    repo == "paddock" || repo.starts_with("paddock-")
}

fn check_tag(reference: &str) {
    if policy::check_tag_name(reference).is_ok() {
        assert!(
            !own_image(reference),
            "check_tag_name accepts {reference:?}, one of paddock's images"
        );
    }
}

// ------------------------------------------------------------------ image references
// distribution/reference's grammar, enough to tell which references the engine accepts.

fn path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn domain(d: &str) -> bool {
    let port = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = d.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        return !ip.is_empty()
            && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
            && (after.is_empty() || after.strip_prefix(':').is_some_and(port));
    }
    let host = match d.split_once(':') {
        Some((h, p)) if port(p) => h,
        Some(_) => return false,
        None => d,
    };
    host.split('.').all(|l| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

fn tag(t: &str) -> bool {
    let w = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty() && b.len() <= 128 && w(b[0]) && b.iter().all(|&c| w(c) || c == b'.' || c == b'-')
}

fn digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    algo.split(['-', '_', '+', '.']).all(|p| {
        p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && p.bytes().all(|b| b.is_ascii_alphanumeric())
    }) && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the first component of `name` is a registry, as the engine decides it.
fn names_registry(name: &str) -> Option<&str> {
    let (first, _) = name.split_once('/')?;
    (first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase()))
    .then_some(first)
}

/// The registry the engine contacts for `reference`, if the engine accepts it.
fn engine_registry(reference: &str) -> Option<&str> {
    let (name_tag, dig) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if dig.is_some_and(|d| !digest(d)) {
        return None;
    }
    let name = match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => {
            if !tag(&name_tag[i + 1..]) {
                return None;
            }
            &name_tag[..i]
        }
        _ => name_tag,
    };
    if name.is_empty() || name.len() > 255 {
        return None;
    }
    let registry = names_registry(name);
    let path = match registry {
        Some(r) => {
            if !domain(r) {
                return None;
            }
            &name[r.len() + 1..]
        }
        None => name,
    };
    path.split('/')
        .all(path_component)
        .then_some(registry.unwrap_or("docker.io"))
}

/// The registry the proxy checks for `checked` is the one the engine contacts for
/// `engine` (what it parses from the same request).
fn same_registry(engine: &str, checked: &str) {
    let Some(reg) = engine_registry(engine) else {
        return;
    };
    let (ours, _) = policy::split_registry(checked);
    assert_eq!(
        policy::registry_hosts(ours),
        policy::registry_hosts(reg),
        "the proxy checks the registry {ours:?} for {checked:?}; the engine contacts {reg:?} for {engine:?}"
    );
}

// ------------------------------------------------------------------ the checks

fn check_route(method: &str, path: &str) -> Route {
    let (prefix, bare) = policy::split_version(path);
    assert_eq!(format!("{prefix}{bare}"), path, "split_version loses bytes");
    if let Some(v) = prefix.strip_prefix("/v") {
        assert!(
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
            "the version prefix {prefix:?}"
        );
        assert!(
            bare.is_empty() || bare.starts_with('/'),
            "after the version: {bare:?}"
        );
    } else {
        assert!(prefix.is_empty(), "the version prefix {prefix:?}");
    }
    let route = policy::classify(method, path);
    if !matches!(route, Route::Refused(_)) {
        assert!(
            !bare.contains(['%', '\\'])
                && !bare.contains("//")
                && !bare.split('/').any(|s| s == ".."),
            "{method} {path:?}: an odd path is {route:?}"
        );
    }
    if prefix.is_empty() && (path.is_empty() || path.starts_with('/')) {
        assert_eq!(
            policy::classify(method, &format!("/v1.41{path}")),
            route,
            "{method} {path:?}: the version prefix changes the route"
        );
    }
    match &route {
        Route::Container { id, op } => {
            assert!(!id.contains('/'), "container id {id:?}");
            assert!(
                if op.is_empty() {
                    method == "DELETE"
                } else {
                    CONTAINER_OPS.contains(&op.as_str())
                },
                "{method} {path:?}: the container operation {op:?}"
            );
        }
        Route::CreateExec { id } | Route::Exec { id, .. } | Route::Volume { name: id } => {
            assert!(!id.contains('/'), "{route:?}");
        }
        _ => {}
    }
    route
}

fn check_filters(filters: Option<&str>) {
    let Ok(f) = policy::add_label_filter(filters, RUN) else {
        return;
    };
    let v: Value = serde_json::from_str(&f).expect("the filters are JSON");
    let obj = v.as_object().expect("the filters are an object");
    let labels = obj["label"].as_array().expect("a label list");
    assert_eq!(
        labels.last(),
        Some(&Value::String(policy::run_filter(RUN))),
        "the run's label filter is not in {f}"
    );
    assert!(
        !obj.values().any(Value::is_object),
        "an old-form filter is left in {f}"
    );
}

fn check_build(pairs: &[(String, String)], net: EngineNet) {
    let mut p = pairs.to_vec();
    let Ok(tags) = policy::check_build(&mut p, RUN, net) else {
        return;
    };
    let all = |k: &str| -> Vec<&str> {
        p.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let modes = all("networkmode");
    assert_eq!(modes.len(), 1, "{net:?}: networkmode {modes:?}");
    let joined = format!("container:{HOLDER}");
    let ok = match net {
        EngineNet::Cut => modes[0] == "none",
        EngineNet::Joined(_) => modes[0] == "none" || modes[0] == joined,
        EngineNet::Governed => modes[0] == "none" || modes[0] == "host",
    };
    assert!(ok, "{net:?}: a build with networkmode={}", modes[0]);
    let labels = all("labels");
    assert_eq!(labels.len(), 1, "labels {labels:?}");
    let l: Value = serde_json::from_str(labels[0]).expect("the build labels are JSON");
    labelled(Some(&l), "build");
    for (k, v) in pairs {
        match k.as_str() {
            "remote" => assert!(v.is_empty(), "a remote build context {v:?}"),
            "version" => assert_ne!(v, "2", "a BuildKit build"),
            "cgroupparent" => assert!(v.is_empty(), "a cgroup parent {v:?}"),
            _ => {}
        }
    }
    let kept: Vec<_> = pairs
        .iter()
        .filter(|(k, _)| k != "labels" && k != "networkmode")
        .collect();
    assert_eq!(
        kept,
        p[..p.len() - 2].iter().collect::<Vec<_>>(),
        "other pairs changed"
    );
    let ts: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "t")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(tags, ts, "the tags to check");
    for t in &tags {
        assert!(
            !own_image(t),
            "a build tagged {t:?}, one of paddock's images"
        );
    }
}

fn check_query(route: &Route, query: Option<&str>) {
    let pairs = policy::query_pairs(query);
    assert_eq!(
        policy::query_pairs(Some(&policy::query_string(&pairs))),
        pairs,
        "the query changes through query_string"
    );
    check_filters(policy::param(&pairs, "filters"));
    for net in NETS {
        check_build(&pairs, net);
    }
    if let Ok(r) = policy::pull_reference(&pairs) {
        assert!(
            policy::param(&pairs, "fromSrc").is_none(),
            "an import passed"
        );
        let image = policy::param(&pairs, "fromImage").unwrap_or_default();
        assert!(
            !image.is_empty() && r.starts_with(image),
            "pulling {r:?} for {image:?}"
        );
        let t = policy::param(&pairs, "tag").unwrap_or_default();
        if t.is_empty() || tag(t) || digest(t) {
            same_registry(image, &r);
        }
        check_tag(&r);
    }
    if let Some(r) = policy::repo_tag(&pairs) {
        check_tag(&r);
    }
    match route {
        Route::Push { name } => same_registry(name, name),
        Route::Tag { name } | Route::RemoveImage { name } => check_tag(name),
        _ => {}
    }
}

fn check_exec(body: &Value) {
    if policy::check_exec(body).is_err() {
        return;
    }
    let o = body.as_object().expect("an accepted exec is an object");
    exact(o, &["Privileged"], "exec");
    assert_ne!(
        o.get("Privileged").and_then(Value::as_bool),
        Some(true),
        "a privileged exec"
    );
}

fn check_volume(body: &Value) {
    let mut v = body.clone();
    if policy::check_volume(&mut v, RUN).is_err() {
        return;
    }
    let o = v.as_object().expect("an accepted volume is an object");
    exact(o, VOLUME_FIELDS, "volume");
    assert!(
        matches!(
            o.get("Driver").and_then(Value::as_str),
            None | Some("" | "local")
        ),
        "the volume driver {:?}",
        o.get("Driver")
    );
    assert!(!non_empty(o.get("DriverOpts")), "volume driver options");
    labelled(o.get("Labels"), "volume");
}

/// A bind source the engine will mount: its own real path, beneath a bind-mode workspace,
/// for a container that does not run as root.
fn bound(src: &str, ws: &WorkspaceScope, user: &str, out: &Value) {
    assert!(
        ws.bind_mode,
        "a bind of {src:?} in a copy-on-write run: {out}"
    );
    let real = std::fs::canonicalize(src).unwrap_or_else(|e| {
        panic!("the bind source {src:?} the engine reads is not there ({e}): {out}")
    });
    assert_eq!(
        real,
        Path::new(src),
        "the bind source {src:?} is not its real path: {out}"
    );
    assert!(
        real.starts_with(&ws.root),
        "a bind of {src:?} outside {:?}",
        ws.root
    );
    assert!(
        !runs_as_root(user),
        "a container as {user:?} (root to the engine) with a workspace bind: {out}"
    );
}

fn check_created(out: &Value, needs: &Needs, ws: &WorkspaceScope, net: EngineNet) {
    let cfg = out.as_object().expect("an accepted config is an object");
    exact(cfg, CONFIG_FIELDS, "config");
    labelled(cfg.get("Labels"), "container");
    if let Some(Value::Object(nc)) = cfg.get("NetworkingConfig") {
        exact(nc, &["EndpointsConfig"], "NetworkingConfig");
        assert!(
            !nc.contains_key("EndpointsConfig"),
            "an endpoint config is left: {out}"
        );
    }
    let host = cfg
        .get("HostConfig")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no HostConfig object: {out}"));
    exact(host, HOST_FIELDS, "HostConfig");
    assert_ne!(
        host.get("Privileged").and_then(Value::as_bool),
        Some(true),
        "privileged: {out}"
    );
    for k in [
        "CapAdd",
        "Devices",
        "DeviceRequests",
        "DeviceCgroupRules",
        "CgroupParent",
        "PortBindings",
    ] {
        assert!(!non_empty(host.get(k)), "{k}: {out}");
    }
    assert_ne!(
        host.get("PublishAllPorts").and_then(Value::as_bool),
        Some(true),
        "{out}"
    );
    if let Some(Value::Array(opts)) = host.get("SecurityOpt") {
        for o in opts {
            assert!(
                matches!(
                    o.as_str(),
                    Some("no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true")
                ),
                "the security option {o}: {out}"
            );
        }
    }
    for k in ["MaskedPaths", "ReadonlyPaths"] {
        assert!(host.get(k).is_none_or(Value::is_null), "{k}: {out}");
    }
    let verified = |c: &str| needs.containers.iter().any(|n| n == c);
    let mode = host
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no NetworkMode: {out}"));
    let ok = match mode.strip_prefix("container:") {
        Some(c) => verified(c) || (net == EngineNet::Joined(HOLDER) && c == HOLDER),
        None => mode == "none" || (mode == "host" && net == EngineNet::Governed),
    };
    assert!(ok, "{net:?}: NetworkMode {mode:?}: {out}");
    for k in [
        "PidMode",
        "IpcMode",
        "UTSMode",
        "UsernsMode",
        "CgroupnsMode",
    ] {
        assert_ne!(str_of(host, k), "host", "{k}: {out}");
    }
    for k in ["PidMode", "IpcMode"] {
        if let Some(c) = str_of(host, k).strip_prefix("container:") {
            assert!(verified(c), "{k} joins {c:?} unverified: {out}");
        }
    }
    for k in ["VolumesFrom", "Links"] {
        if let Some(Value::Array(a)) = host.get(k) {
            for v in a {
                let name = v.as_str().unwrap_or("").split(':').next().unwrap_or("");
                assert!(verified(name.trim_start_matches('/')), "{k} {v}: {out}");
            }
        }
    }
    let user = str_of(cfg, "User");
    if let Some(Value::Array(binds)) = host.get("Binds") {
        for b in binds.iter().filter_map(Value::as_str) {
            // The engine splits a bind at every `:` (source:target[:mode]).
            let src = b.split(':').next().unwrap_or("");
            if src.starts_with('/') {
                bound(src, ws, user, out);
            } else if !src.is_empty() {
                assert!(
                    needs.volumes.iter().any(|v| v == src),
                    "volume {src:?}: {out}"
                );
            }
        }
    }
    if let Some(Value::Array(mounts)) = host.get("Mounts") {
        for m in mounts {
            let m = m
                .as_object()
                .unwrap_or_else(|| panic!("a mount {m}: {out}"));
            exact(m, MOUNT_FIELDS, "mount");
            match str_of(m, "Type") {
                "bind" => bound(str_of(m, "Source"), ws, user, out),
                "volume" | "" => {
                    if let Some(Value::Object(o)) = m.get("VolumeOptions") {
                        exact(o, &["DriverConfig"], "VolumeOptions");
                        assert!(o.get("DriverConfig").is_none_or(Value::is_null), "{out}");
                    }
                    let src = str_of(m, "Source");
                    assert!(
                        src.is_empty() || needs.volumes.iter().any(|v| v == src),
                        "volume {src:?}: {out}"
                    );
                }
                "tmpfs" => {}
                t => panic!("a mount of type {t:?}: {out}"),
            }
        }
    }
    // Stable: the rewritten config, its run label taken off, comes out the same.
    let mut again = out.clone();
    if let Some(Value::Object(l)) = again.get_mut("Labels") {
        l.remove(RUN_LABEL);
    }
    match policy::check_container(&mut again, RUN, ws, net) {
        Ok(_) => assert_eq!(&again, out, "{net:?}: the rewrite is not stable"),
        Err(r) => panic!(
            "{net:?}: the rewritten config is refused ({}): {out}",
            r.text()
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let (method, target) = head.split_once(' ').unwrap_or((&head, ""));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let route = check_route(method, path);
    check_query(&route, query);
    check_filters(std::str::from_utf8(body).ok());

    let json = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    check_exec(&json);
    check_volume(&json);
    for ws in scopes() {
        for net in NETS {
            let mut out = json.clone();
            if let Ok(needs) = policy::check_container(&mut out, RUN, ws, net) {
                check_created(&out, &needs, ws, net);
            }
        }
    }
});
