//! Parsers and validators for single values.
//!
//! These are shared by the config file loader and the CLI (for flags such as
//! `--memory 512M` or `--mount src:dst:ro`), so a bad value gets the same message
//! whichever way it was given. Each returns a [`ValueError`] that carries a message
//! and, where one helps, a hint; the loader adds the file, line and column.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A value that failed to parse or validate: what is wrong, and optionally how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValueError {
    message: String,
    hint: Option<String>,
}

impl ValueError {
    /// A new error with no hint.
    pub fn new(message: impl Into<String>) -> Self {
        ValueError {
            message: message.into(),
            hint: None,
        }
    }

    /// Attach a hint ("did you mean …", "valid units are …").
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How to fix it, if there is something useful to say.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub(crate) fn into_parts(self) -> (String, Option<String>) {
        (self.message, self.hint)
    }
}

/// Show a user-supplied value in a message: quoted with backticks, control characters
/// escaped, and cut short when very long.
pub(crate) fn show(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::from("`");
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

/// Check that `s` is a DNS label: 1–63 characters from `[a-z0-9-]`, not starting or
/// ending with `-`. Used for run names and port endpoint names.
pub fn validate_dns_label(s: &str) -> Result<(), ValueError> {
    validate_label(s, "name", false)
}

/// Check a grant name: like a DNS label, but `_` is also allowed.
/// A grant name as `grants:` and `paddock grant` accept it.
pub fn validate_grant_name(s: &str) -> Result<(), ValueError> {
    validate_label(s, "grant name", true)
}

fn validate_label(s: &str, what: &str, allow_underscore: bool) -> Result<(), ValueError> {
    if s.is_empty() {
        return Err(ValueError::new(format!("{what} is empty")));
    }
    let len = s.chars().count();
    if len > 63 {
        return Err(ValueError::new(format!(
            "{what} {} is {len} characters long; the limit is 63",
            show(s)
        )));
    }
    let allowed = if allow_underscore {
        "lowercase letters, digits, '-' and '_'"
    } else {
        "lowercase letters, digits and '-'"
    };
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (allow_underscore && c == '_');
        if !ok {
            let err = ValueError::new(format!(
                "{what} {} contains {} at position {}; only {allowed} are allowed",
                show(s),
                show(&c.to_string()),
                i + 1
            ));
            let lower = s.to_ascii_lowercase();
            return Err(
                if c.is_ascii_uppercase() && validate_label(&lower, what, allow_underscore).is_ok()
                {
                    err.with_hint(format!("use lowercase: {}", show(&lower)))
                } else {
                    err
                },
            );
        }
    }
    if s.starts_with('-') || (allow_underscore && s.starts_with('_')) {
        return Err(ValueError::new(format!(
            "{what} {} must start with a letter or digit",
            show(s)
        )));
    }
    if s.ends_with('-') {
        return Err(ValueError::new(format!(
            "{what} {} must not end with '-'",
            show(s)
        )));
    }
    Ok(())
}

/// Check an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn validate_env_name(s: &str) -> Result<(), ValueError> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err(ValueError::new("environment variable name is empty")),
        Some(c) if c.is_ascii_digit() => {
            return Err(ValueError::new(format!(
                "environment variable name {} must not start with a digit",
                show(s)
            )));
        }
        _ => {}
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(ValueError::new(format!(
            "environment variable name {} contains {}; only letters, digits and '_' are allowed",
            show(s),
            show(&c.to_string())
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Sizes, numbers, durations
// ---------------------------------------------------------------------------------------

const MEMORY_UNITS_HINT: &str = "valid units: B, K, M, G, T (also KB/MB/GB/TB and KiB/MiB/GiB/TiB; all base 1024), e.g. `512M` or `1.5G`";

/// Parse a memory size such as `512M`, `1.5G`, `2GiB` or `1048576` (bytes).
///
/// Units are case-insensitive and all base 1024: `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB`, `T`/`TB`/`TiB`. A fraction is allowed (`1.5G`); the result is rounded
/// down to a whole byte. Zero and sizes that overflow 64 bits are errors.
pub fn parse_memory(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ValueError::new("memory size is empty").with_hint(MEMORY_UNITS_HINT));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim_start();
    let shift: u32 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(ValueError::new(format!(
                "unknown memory unit {} in {}",
                show(unit),
                show(s)
            ))
            .with_hint(MEMORY_UNITS_HINT));
        }
    };
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int_part.is_empty() && frac_part.is_empty()
        || frac_part.contains('.')
        || (num.contains('.') && frac_part.is_empty())
    {
        return Err(ValueError::new(format!("{} is not a memory size", show(s)))
            .with_hint(MEMORY_UNITS_HINT));
    }
    let too_large = || ValueError::new(format!("memory size {} is too large", show(s)));
    // Exact decimal arithmetic: value = (int + frac / 10^n) * 2^shift.
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| too_large())?
    };
    if int > u128::from(u64::MAX) {
        return Err(too_large());
    }
    // int < 2^64 and shift <= 40, so this cannot overflow u128.
    let mut bytes = int << shift;
    // Only the first 18 fractional digits matter for a 2^40 multiplier; beyond that
    // the contribution is below one byte.
    let frac_digits: String = frac_part.chars().take(18).collect();
    if !frac_digits.is_empty() {
        let frac: u128 = frac_digits.parse().map_err(|_| too_large())?;
        let denom = 10u128.pow(frac_digits.len() as u32);
        bytes += (frac << shift) / denom;
    }
    let bytes = u64::try_from(bytes).map_err(|_| too_large())?;
    if bytes == 0 {
        return Err(ValueError::new(format!(
            "memory size {} must be greater than zero",
            show(s)
        )));
    }
    Ok(bytes)
}

/// Check an image reference (`debian:bookworm`, `registry.example/team/img@sha256:…`): what
/// the engine would take, without asking it.
pub fn parse_image(s: &str) -> Result<String, ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', ':', '@', '/'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(
            ValueError::new(format!("{} is not an image name", show(s))).with_hint(
                "name an image as docker does, e.g. `debian:bookworm` or `paddock-base:latest`",
            ),
        )
    }
}

/// Parse a CPU count such as `2` or `1.5`: a finite number greater than zero.
pub fn parse_cpus(s: &str) -> Result<f64, ValueError> {
    let t = s.trim();
    let v: f64 = t.parse().map_err(|_| {
        ValueError::new(format!("{} is not a number of CPUs", show(s)))
            .with_hint("write a number greater than 0, e.g. `2` or `1.5`")
    })?;
    check_cpus(v).map_err(|e| ValueError::new(format!("{} {}", show(s), e.message)))
}

pub(crate) fn check_cpus(v: f64) -> Result<f64, ValueError> {
    if !v.is_finite() {
        return Err(ValueError::new("is not a finite number"));
    }
    if v <= 0.0 {
        return Err(ValueError::new("must be greater than 0"));
    }
    Ok(v)
}

/// Parse a duration such as `30s`, `5m`, `1h30m` or `500ms`.
///
/// The text is one or more `<integer><unit>` parts (optionally separated by spaces)
/// with units `ms`, `s`, `m`, `h`, `d`. A bare number has no unit and is an error, and
/// so is a zero duration.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    const HINT: &str = "write a number with a unit: `30s`, `5m`, `2h` or combined like `1h30m` (units: ms, s, m, h, d)";
    let t = s.trim();
    if t.is_empty() {
        return Err(ValueError::new("duration is empty").with_hint(HINT));
    }
    let mut total: u128 = 0; // milliseconds
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(ValueError::new(format!("{} is not a duration", show(s))).with_hint(HINT));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| ValueError::new(format!("duration {} is too large", show(s))))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let ms: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(
                    ValueError::new(format!("duration {} has no unit", show(s))).with_hint(HINT)
                );
            }
            _ => {
                return Err(ValueError::new(format!(
                    "unknown duration unit {} in {}",
                    show(unit),
                    show(s)
                ))
                .with_hint(HINT));
            }
        };
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= u128::from(u64::MAX))
            .ok_or_else(|| ValueError::new(format!("duration {} is too large", show(s))))?;
        rest = rest[unit_len..].trim_start();
    }
    if total == 0 {
        return Err(ValueError::new(format!(
            "duration {} must be greater than zero",
            show(s)
        )));
    }
    Ok(Duration::from_millis(total as u64))
}

/// Format a duration in the form [`parse_duration`] reads, using the largest unit
/// that divides it exactly (`300s` → `5m`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

pub(crate) fn check_port(v: i128) -> Result<u16, ValueError> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ValueError::new(format!("port {v} is out of range; ports are 1–65535")))
}

fn parse_port_text(s: &str) -> Result<u16, ValueError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::new(format!(
            "{} is not a port number (1–65535)",
            show(s)
        )));
    }
    match t.parse::<i128>() {
        Ok(v) => check_port(v),
        Err(_) => Err(ValueError::new(format!(
            "port {} is out of range; ports are 1–65535",
            show(s)
        ))),
    }
}

/// A named port: `web=3000` exposes the service on port 3000 inside the run as endpoint `web`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Endpoint name, a DNS label (becomes part of the routed host name).
    pub endpoint: String,
    /// Port inside the sandbox, 1–65535.
    pub port: u16,
}

/// Parse `ENDPOINT=PORT`, e.g. `web=3000`.
pub fn parse_port_mapping(s: &str) -> Result<PortMapping, ValueError> {
    let Some((endpoint, port)) = s.split_once('=') else {
        return Err(
            ValueError::new(format!("{} is not a port mapping", show(s)))
                .with_hint("write ENDPOINT=PORT, e.g. `web=3000`"),
        );
    };
    validate_dns_label(endpoint)
        .map_err(|e| ValueError::new(format!("endpoint {}", e.message)).with_hint_opt(e.hint))?;
    Ok(PortMapping {
        endpoint: endpoint.to_string(),
        port: parse_port_text(port)?,
    })
}

impl ValueError {
    pub(crate) fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        ValueError {
            message: format!("{prefix}{}", self.message),
            hint: self.hint,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Paths and mounts
// ---------------------------------------------------------------------------------------

/// A bind mount into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute host path (after `~` expansion and resolving against the config file's
    /// directory; lexically normalised, never touched on disk).
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Mounted read-only (the default for the short form is read-write).
    pub read_only: bool,
}

/// Parse `SRC:DST[:ro|:rw]`. `SRC` may start with `~` (the home directory, from `$HOME`)
/// and is otherwise resolved against `base_dir` when relative; `DST` must be absolute.
pub fn parse_mount_spec(s: &str, base_dir: &Path) -> Result<MountSpec, ValueError> {
    parse_mount_spec_with_home(s, base_dir, home_from_env().as_deref())
}

pub(crate) fn home_from_env() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

pub(crate) fn parse_mount_spec_with_home(
    s: &str,
    base_dir: &Path,
    home: Option<&Path>,
) -> Result<MountSpec, ValueError> {
    const HINT: &str = "write SRC:DST, SRC:DST:ro or SRC:DST:rw, e.g. `./data:/data:ro`";
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, mode] => {
            return Err(ValueError::new(format!(
                "mount {} has unknown mode {}",
                show(s),
                show(mode)
            ))
            .with_hint("the mode is `ro` (read-only) or `rw` (read-write)"));
        }
        [_] => {
            return Err(ValueError::new(format!("mount {} has no target", show(s))).with_hint(HINT));
        }
        _ => {
            return Err(ValueError::new(format!("mount {} has too many ':'", show(s)))
                .with_hint(format!("{HINT}; for paths containing ':' use the map form {{source, target, read_only}}")));
        }
    };
    mount_from_parts(src, dst, read_only, base_dir, home)
}

pub(crate) fn mount_from_parts(
    src: &str,
    dst: &str,
    read_only: bool,
    base_dir: &Path,
    home: Option<&Path>,
) -> Result<MountSpec, ValueError> {
    if src.is_empty() {
        return Err(ValueError::new("mount source is empty"));
    }
    let source =
        resolve_host_path(src, base_dir, home).map_err(|e| e.prefixed("mount source: "))?;
    let target = sandbox_path(dst).map_err(|e| e.prefixed("mount target: "))?;
    Ok(MountSpec {
        source,
        target,
        read_only,
    })
}

/// Resolve a host path written in a config file: `~` and `~/x` expand to the home
/// directory, other relative paths are joined to `base_dir`; the result is lexically
/// normalised (`.` and `..` removed).
pub(crate) fn resolve_host_path(
    p: &str,
    base_dir: &Path,
    home: Option<&Path>,
) -> Result<PathBuf, ValueError> {
    if p.contains('\0') {
        return Err(ValueError::new(format!(
            "path {} contains a NUL byte",
            show(p)
        )));
    }
    let path = if p == "~" || p.starts_with("~/") {
        let home = home.ok_or_else(|| {
            ValueError::new(format!("cannot expand `~` in {}", show(p)))
                .with_hint("$HOME is not set; write an absolute path")
        })?;
        home.join(p.trim_start_matches('~').trim_start_matches('/'))
    } else if p.starts_with('~') {
        return Err(
            ValueError::new(format!("{} uses `~user`, which is not supported", show(p)))
                .with_hint("only `~` and `~/…` (your own home directory) are expanded"),
        );
    } else {
        base_dir.join(p)
    };
    Ok(normalize(&path))
}

pub(crate) fn sandbox_path(p: &str) -> Result<PathBuf, ValueError> {
    if p.is_empty() {
        return Err(ValueError::new("path is empty"));
    }
    if p.contains('\0') {
        return Err(ValueError::new(format!(
            "path {} contains a NUL byte",
            show(p)
        )));
    }
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(ValueError::new(format!(
            "{} must be an absolute path inside the sandbox",
            show(p)
        ))
        .with_hint(format!("did you mean `/{}`?", p.trim_start_matches("./"))));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(ValueError::new(format!(
            "{} must not contain `..`",
            show(p)
        )));
    }
    let n = normalize(path);
    if n == Path::new("/") {
        return Err(ValueError::new("cannot mount over `/`"));
    }
    Ok(n)
}

/// Lexical normalisation: drop `.`, apply `..` to the preceding component, never above `/`.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------

/// A host pattern in a network rule or the passthrough list.
///
/// Serialized as the text it was written as: `api.github.com`, `*.example.com`, `10.0.0.5`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HostPattern {
    /// Exactly this host name (lowercase) or IP address.
    Exact(String),
    /// `*.SUFFIX`: any host strictly below `SUFFIX`, at any depth (not `SUFFIX` itself).
    Subdomains(String),
}

impl HostPattern {
    /// Whether `host` (case-insensitive, a trailing dot ignored) matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        match self {
            HostPattern::Exact(h) => host == *h,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Subdomains(s) => write!(f, "*.{s}"),
        }
    }
}

impl From<HostPattern> for String {
    fn from(h: HostPattern) -> String {
        h.to_string()
    }
}

impl TryFrom<String> for HostPattern {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        parse_host_pattern(&s)
    }
}

impl std::str::FromStr for HostPattern {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        parse_host_pattern(s)
    }
}

/// Parse a host pattern: an exact host name or IP address, or `*.` followed by a host name.
pub fn parse_host_pattern(s: &str) -> Result<HostPattern, ValueError> {
    if let Some(rest) = s.strip_prefix("*.") {
        if rest.parse::<IpAddr>().is_ok() {
            return Err(ValueError::new(format!(
                "host pattern {} puts a wildcard in front of an IP address",
                show(s)
            )));
        }
        return Ok(HostPattern::Subdomains(parse_hostname(rest, s)?));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok(HostPattern::Exact(s.to_ascii_lowercase()));
    }
    Ok(HostPattern::Exact(parse_hostname(s, s)?))
}

fn parse_hostname(h: &str, whole: &str) -> Result<String, ValueError> {
    let bad = |why: String| ValueError::new(format!("host pattern {} {why}", show(whole)));
    if h.is_empty() {
        return Err(bad("is empty".into()));
    }
    if let Some((scheme, rest)) = h.split_once("://") {
        let host = rest.split(['/', ':']).next().unwrap_or(rest);
        return Err(bad(format!("includes the scheme `{scheme}://`"))
            .with_hint(format!("write only the host name: {}", show(host))));
    }
    if h.contains('/') {
        let host = h.split('/').next().unwrap_or(h);
        return Err(bad("includes a path".into()).with_hint(format!(
            "write only the host name ({}) and use `allow_paths`/`deny_paths` for paths",
            show(host)
        )));
    }
    if let Some((host, port)) = h.rsplit_once(':') {
        return Err(bad("includes a port".into()).with_hint(format!(
            "write `host: {host}` and `port: {port}` separately"
        )));
    }
    if h.contains('*') {
        return Err(bad("has a `*` that is not a leading `*.`".into())
            .with_hint("a wildcard may only be the whole first label, e.g. `*.example.com`"));
    }
    if h.ends_with('.') {
        return Err(bad("ends with '.'".into())
            .with_hint(format!("write {}", show(h.trim_end_matches('.')))));
    }
    if h.len() > 253 {
        return Err(bad("is longer than 253 characters".into()));
    }
    let lower = h.to_ascii_lowercase();
    for label in lower.split('.') {
        if label.is_empty() {
            return Err(bad("has an empty label ('..' or a leading '.')".into()));
        }
        if label.len() > 63 {
            return Err(bad(format!(
                "has a label longer than 63 characters: {}",
                show(label)
            )));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(bad(format!(
                "contains {}; host names use letters, digits, '-' and '.'",
                show(&c.to_string())
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(format!(
                "has a label that starts or ends with '-': {}",
                show(label)
            )));
        }
    }
    Ok(lower)
}

/// Parse an exact host name for `upstream.resolve` (no wildcard).
pub(crate) fn parse_exact_host(s: &str) -> Result<String, ValueError> {
    match parse_host_pattern(s)? {
        HostPattern::Exact(h) => Ok(h),
        HostPattern::Subdomains(_) => Err(ValueError::new(format!(
            "{} is a wildcard; an exact host name is needed here",
            show(s)
        ))),
    }
}

/// Parse `ADDRESS:PORT` with an IP address (`127.0.0.1:8080`, `[::1]:443`).
pub(crate) fn parse_socket_addr(s: &str) -> Result<SocketAddr, ValueError> {
    let addr: SocketAddr = s.trim().parse().map_err(|_| {
        ValueError::new(format!("{} is not an address:port", show(s)))
            .with_hint("write an IP address and a port, e.g. `127.0.0.1:8080` or `[::1]:8443`")
    })?;
    if addr.port() == 0 {
        return Err(ValueError::new(format!(
            "{} has port 0; ports are 1–65535",
            show(s)
        )));
    }
    Ok(addr)
}

/// Request headers the egress proxy manages itself (framing and hop-by-hop), which
/// `network.headers` may neither set nor remove; any `proxy-*` header too.
pub const MANAGED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
];

/// Parse a request header name for `network.headers` (the `http` crate's rules: an RFC 9110
/// token) into its lowercase form. Framing and hop-by-hop headers ([`MANAGED_HEADERS`],
/// `proxy-*`) are refused.
pub fn parse_header_name(s: &str) -> Result<String, ValueError> {
    if s.is_empty() {
        return Err(ValueError::new("header name is empty"));
    }
    let name = http::HeaderName::from_bytes(s.as_bytes()).map_err(|_| {
        let why = match s.chars().find(|c| !is_token_char(*c)) {
            Some(':') => "contains `:`".to_string(),
            Some(c) if c.is_whitespace() => "contains a space".to_string(),
            Some(c) => format!("contains {}", show(&c.to_string())),
            None => "is too long".to_string(),
        };
        ValueError::new(format!("header name {} {why}", show(s))).with_hint(
            "a header name is letters, digits and `-` (or one of !#$%&'*+.^_`|~), \
             with no spaces or `:`; write the value after the `:` of the YAML mapping",
        )
    })?;
    let lower = name.as_str();
    if MANAGED_HEADERS.contains(&lower) || lower.starts_with("proxy-") {
        return Err(ValueError::new(format!(
            "header {} is managed by the egress proxy (framing or hop-by-hop) and cannot be \
             set or removed",
            show(s)
        ))
        .with_hint(
            "remove it from the entry: the proxy itself sets Host, Content-Length, \
             Transfer-Encoding, Connection, Upgrade, TE, Trailer, Keep-Alive and Proxy-*",
        ));
    }
    Ok(lower.to_string())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Check a request header value for `network.headers` (the `http` crate's rules: no
/// control character but tab). The value itself never appears in the error: it may be a
/// credential.
pub fn check_header_value(s: &str) -> Result<(), ValueError> {
    if http::HeaderValue::from_str(s).is_ok() {
        return Ok(());
    }
    let (i, c) = s
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_ascii_control() && *c != '\t')
        .unwrap_or((0, '?'));
    Err(ValueError::new(format!(
        "header value contains the control character {} at character {}",
        show(&c.to_string()),
        i + 1
    ))
    .with_hint("a header value is one line of text; remove line breaks and control characters"))
}

/// An HTTP request method, as matched by network rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl HttpMethod {
    /// Every method, in the order they are listed in messages.
    pub const ALL: [HttpMethod; 9] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Delete,
        HttpMethod::Connect,
        HttpMethod::Options,
        HttpMethod::Trace,
        HttpMethod::Patch,
    ];

    /// The method's name as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Patch => "PATCH",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parse an HTTP method; it must be written in uppercase.
pub(crate) fn parse_http_method(s: &str) -> Result<HttpMethod, ValueError> {
    if let Some(m) = HttpMethod::ALL.iter().find(|m| m.as_str() == s) {
        return Ok(*m);
    }
    let upper = s.to_ascii_uppercase();
    if HttpMethod::ALL.iter().any(|m| m.as_str() == upper) {
        return Err(
            ValueError::new(format!("HTTP method {} must be uppercase", show(s)))
                .with_hint(format!("write `{upper}`")),
        );
    }
    let all: Vec<&str> = HttpMethod::ALL.iter().map(|m| m.as_str()).collect();
    Err(ValueError::new(format!("unknown HTTP method {}", show(s)))
        .with_hint(format!("known methods: {}", all.join(", "))))
}

/// Check a path glob for `allow_paths` / `deny_paths`: starts with `/` or `*`, no
/// whitespace or control characters.
pub(crate) fn validate_path_glob(s: &str) -> Result<(), ValueError> {
    if s.is_empty() {
        return Err(ValueError::new("path pattern is empty"));
    }
    if !(s.starts_with('/') || s.starts_with('*')) {
        return Err(ValueError::new(format!(
            "path pattern {} must start with '/' or '*'",
            show(s)
        ))
        .with_hint(format!("did you mean `/{s}`?")));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValueError::new(format!(
            "path pattern {} contains whitespace or a control character",
            show(s)
        )));
    }
    Ok(())
}

/// One entry of `dependencies:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Dependency {
    /// A name from the catalog ([`CATALOG_NAMES`]), with an optional version.
    Catalog {
        name: String,
        version: Option<String>,
    },
    Apt(String),
    Npm {
        name: String,
        version: Option<String>,
    },
    Pip {
        name: String,
        version: Option<String>,
    },
}

/// The dependency catalog: name, and whether it takes `@version`. The recipes (how each
/// gets into an image) are paddock-sandbox's; a test there keeps the two lists equal.
pub const CATALOG_NAMES: &[(&str, bool)] = &[
    ("node", true),
    ("python", false),
    ("go", false),
    ("rust", true),
    ("uv", true),
    ("build-essential", false),
];

impl Dependency {
    /// How it reads in config and messages.
    pub fn label(&self) -> String {
        let with = |prefix: &str, name: &str, sep: &str, v: &Option<String>| match v {
            Some(v) => format!("{prefix}{name}{sep}{v}"),
            None => format!("{prefix}{name}"),
        };
        match self {
            Dependency::Catalog { name, version } => with("", name, "@", version),
            Dependency::Apt(p) => format!("apt:{p}"),
            Dependency::Npm { name, version } => with("npm:", name, "@", version),
            Dependency::Pip { name, version } => with("pip:", name, "==", version),
        }
    }
}

impl From<Dependency> for String {
    fn from(d: Dependency) -> String {
        d.label()
    }
}

impl TryFrom<String> for Dependency {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_dependency(&s).map_err(|e| e.message().to_string())
    }
}

/// A `dependencies:` entry that is a service paddock gives the run rather than a tool built
/// into its image: `docker:host` (the host's engine behind paddock's policy proxy) or
/// `docker:dind` (a private engine in a sidecar, behind the same proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Service {
    DockerHost,
    DockerDind,
}

impl Service {
    /// How it reads in config and messages.
    pub fn label(self) -> &'static str {
        match self {
            Service::DockerHost => "docker:host",
            Service::DockerDind => "docker:dind",
        }
    }
}

impl From<Service> for String {
    fn from(s: Service) -> String {
        s.label().to_string()
    }
}

impl TryFrom<String> for Service {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_service(&s).map_err(|e| e.message().to_string())
    }
}

/// The error for two docker services in one run: both would be its `DOCKER_HOST`.
pub fn services_conflict(a: Service, b: Service) -> ValueError {
    ValueError::new(format!(
        "`{}` and `{}` both give the run its DOCKER_HOST; a run has one",
        a.label(),
        b.label()
    ))
    .with_hint("`docker:host` shares the host's engine through paddock's policy; `docker:dind` gives the run a private engine")
}

/// Whether a `dependencies:` entry names a service (`docker:…`) rather than a tool.
pub fn is_service(s: &str) -> bool {
    s.trim().starts_with("docker:")
}

/// Parse a service entry of `dependencies:` (see [`is_service`]).
pub fn parse_service(s: &str) -> Result<Service, ValueError> {
    match s.trim() {
        "docker:host" => Ok(Service::DockerHost),
        "docker:dind" => Ok(Service::DockerDind),
        other => Err(
            ValueError::new(format!("{} is not a docker service", show(other))).with_hint(
                "write `docker:host` (the host's engine) or `docker:dind` (a private one)",
            ),
        ),
    }
}

/// One `dependencies:` entry: a tool built into the run's image, or a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyEntry {
    Tool(Dependency),
    Service(Service),
}

impl DependencyEntry {
    /// How it reads in config and messages.
    pub fn label(&self) -> String {
        match self {
            DependencyEntry::Tool(d) => d.label(),
            DependencyEntry::Service(s) => s.label().to_string(),
        }
    }
}

/// Parse one `dependencies:` entry, whichever kind it is ([`parse_service`] for `docker:…`,
/// else [`parse_dependency`]).
pub fn parse_dependency_entry(s: &str) -> Result<DependencyEntry, ValueError> {
    if is_service(s) {
        parse_service(s).map(DependencyEntry::Service)
    } else {
        parse_dependency(s).map(DependencyEntry::Tool)
    }
}

/// A `review.autorun` pattern: a relative path (a name, `dir/file`, or `dir/`), without
/// `.`/`..` components or wildcards.
pub fn parse_autorun_pattern(s: &str) -> Result<String, ValueError> {
    let p = s.trim();
    if p.is_empty() {
        return Err(ValueError::new("empty pattern")
            .with_hint("write a file name such as `.envrc` or a directory such as `.husky/`"));
    }
    if p.starts_with('/') {
        return Err(ValueError::new(format!("{} is absolute", show(p)))
            .with_hint("patterns are relative to the workspace root, e.g. `tools/hooks/`"));
    }
    if p.contains(['*', '?', '[']) {
        return Err(ValueError::new(format!("{} has a wildcard", show(p)))
            .with_hint("patterns are names, paths or directories ending in `/`; list each one"));
    }
    if p.chars().any(char::is_control)
        || p.split('/').any(|c| c == "." || c == "..")
        || p.contains("//")
    {
        return Err(
            ValueError::new(format!("{} is not a plain relative path", show(p)))
                .with_hint("write e.g. `.vscode/tasks.json` or `.husky/`"),
        );
    }
    Ok(p.to_string())
}

fn valid_pkg(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 214
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-/@".contains(c))
}

fn valid_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-~^*".contains(c))
}

/// `name@version` (an npm scope's leading `@` is part of the name) or `name==version`.
fn split_version<'a>(s: &'a str, sep: &str) -> (&'a str, Option<&'a str>) {
    let idx = if sep == "@" {
        s.get(1..).and_then(|r| r.rfind('@')).map(|i| i + 1)
    } else {
        s.find(sep)
    };
    match idx {
        Some(i) => (&s[..i], Some(&s[i + sep.len()..])),
        None => (s, None),
    }
}

/// Parse one `dependencies:` entry: `name[@version]` from the catalog, `apt:PKG`,
/// `npm:PKG[@v]` or `pip:PKG[==v]`. Names and versions are checked to a safe alphabet
/// (they become words of a build command).
pub fn parse_dependency(s: &str) -> Result<Dependency, ValueError> {
    const FORMS: &str = "write `name[@version]` from the catalog (`paddock image deps`), or `apt:PKG`, `npm:PKG[@v]`, `pip:PKG[==v]`";
    let bad = |what: String| Err(ValueError::new(what).with_hint(FORMS));
    let s = s.trim();
    let owned = |v: Option<&str>| v.map(str::to_string);
    if let Some(p) = s.strip_prefix("apt:") {
        if !valid_pkg(p) || p.contains(['/', '@']) {
            return bad(format!("{} is not a Debian package name", show(p)));
        }
        return Ok(Dependency::Apt(p.to_string()));
    }
    if let Some(p) = s.strip_prefix("npm:") {
        let (name, version) = split_version(p, "@");
        if !valid_pkg(name) || version.is_some_and(|v| !valid_version(v)) {
            return bad(format!("{} is not an npm package", show(p)));
        }
        return Ok(Dependency::Npm {
            name: name.into(),
            version: owned(version),
        });
    }
    if let Some(p) = s.strip_prefix("pip:") {
        let (name, version) = split_version(p, "==");
        if !valid_pkg(name)
            || name.contains(['/', '@'])
            || version.is_some_and(|v| !valid_version(v))
        {
            return bad(format!("{} is not a PyPI package", show(p)));
        }
        return Ok(Dependency::Pip {
            name: name.into(),
            version: owned(version),
        });
    }
    let (name, version) = split_version(s, "@");
    let Some((_, versioned)) = CATALOG_NAMES.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = CATALOG_NAMES.iter().map(|(n, _)| *n).collect();
        return Err(
            ValueError::new(format!("{} is not in the dependency catalog", show(s))).with_hint(
                format!(
                    "catalog names: {}; or use `apt:PKG`, `npm:PKG[@v]`, `pip:PKG[==v]`",
                    names.join(", ")
                ),
            ),
        );
    };
    if let Some(v) = version {
        if !versioned {
            return Err(ValueError::new(format!(
                "`{name}` comes from Debian and has no selectable version (got @{})",
                v.escape_default()
            ))
            .with_hint(format!("write `{name}` without a version")));
        }
        if !valid_version(v) {
            return bad(format!("{} is not a version", show(v)));
        }
    }
    Ok(Dependency::Catalog {
        name: name.into(),
        version: owned(version),
    })
}
