//! Test harness: the real `paddock` binary in a temporary `$PADDOCK_HOME`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_paddock"))
}

/// A private paddock home; stops its daemon when dropped.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub config: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("paddock-test-")
            .tempdir()
            .expect("tempdir");
        let home = dir.path().join("home");
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        Env {
            dir,
            home,
            config,
            extra_env: Vec::new(),
        }
    }

    /// Make the temp tree reachable by another uid (for rootless tests).
    pub fn open_to_all(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn socket(&self) -> PathBuf {
        self.home.join("daemon.sock")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(exe());
        c.env("PADDOCK_HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.config)
            .env("NO_COLOR", "1")
            .env_remove("PADDOCK_COMMIT_OVERRIDE")
            .env_remove("PADDOCK_IDLE_TIMEOUT")
            .env_remove("PADDOCK_LOG");
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    /// Run `paddock ARGS` and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running paddock")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "paddock {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn health(&self) -> Option<serde_json::Value> {
        let (status, body) = request(&self.socket(), "GET", "/v1/health", None).ok()?;
        (status == 200).then_some(body)
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        self.health()
            .and_then(|h| h["pid"].as_u64())
            .map(|p| p as u32)
    }

    /// Block until the daemon answers (or panic).
    pub fn wait_health(&self) -> serde_json::Value {
        wait_until(Duration::from_secs(15), || self.health()).expect("daemon did not answer")
    }

    pub fn stop_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            let _ = request(&self.socket(), "POST", "/v1/shutdown", Some("{}"));
            wait_until(Duration::from_secs(15), || (!pid_alive(pid)).then_some(()));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Remove leftover runs so their sandboxes don't outlive the test.
        if self.health().is_some()
            && let Ok((_, body)) = request(&self.socket(), "GET", "/v1/runs?all=1", None)
        {
            for r in body["runs"].as_array().cloned().unwrap_or_default() {
                let id = r["id"].as_str().unwrap_or_default();
                let path = format!("/v1/runs/{id}?force=1");
                let _ = request(&self.socket(), "DELETE", &path, None);
            }
        }
        self.stop_daemon();
        remove_containers_of(&self.home);
    }
}

/// Containers (and their volumes) a container-runtime test left behind, e.g. when it
/// stopped its daemon before the end: found by the `paddock.home` label.
pub fn remove_containers_of(home: &Path) {
    if !matches!(
        std::env::var("PADDOCK_RUNTIME").as_deref(),
        Ok("docker" | "gvisor")
    ) {
        return;
    }
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=paddock.home={}", home.display()))
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-fv"])
            .args(&ids)
            .output();
    }
}

pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One raw HTTP/1.1 request over the Unix socket; returns (status, JSON body or Null).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let (status, raw) = request_raw(
        socket,
        method,
        path,
        &[("content-type", "application/json")],
        body.map(str::as_bytes),
    )?;
    Ok((
        status,
        serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
    ))
}

pub fn request_raw(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: paddock\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes())?;
    // The daemon may answer (e.g. 413) before reading the whole body.
    let _ = s.write_all(body);
    // Read until the daemon closes; a reset after a complete answer (it may answer and
    // close before reading a large body) keeps what arrived.
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            // A socket with a read timeout is not restarted after a signal (the SIGCHLD of
            // another test's child in this process): read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if !resp.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(resp.len());
    let headers_text = String::from_utf8_lossy(&resp[..split]).to_lowercase();
    let mut body = resp[split..].to_vec();
    if headers_text.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

/// A chunked HTTP/1.1 body, joined.
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// Processes running `paddock daemon` for this home.
pub fn daemon_processes(home: &Path) -> Vec<u32> {
    let exe = exe();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() < 2 || args[1] != b"daemon" {
            continue;
        }
        if std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .as_deref()
            != Some(exe.as_path())
        {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let want = format!("PADDOCK_HOME={}", home.display());
        if environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) && pid_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The docker CLI, at the engine the tests use (`DOCKER_HOST`).
pub fn docker() -> Command {
    Command::new("docker")
}

/// Whether the container `runtime` (`docker`, `gvisor`) can be tested here; false with a
/// SKIPPED line, or a panic when test.sh requires the engine (PADDOCK_REQUIRE_DOCKER=1).
pub fn docker_available(runtime: &str) -> bool {
    let out = docker()
        .args(["info", "--format", "{{json .Runtimes}}"])
        .output();
    let ok = match &out {
        Ok(o) if o.status.success() => {
            runtime == "docker" || String::from_utf8_lossy(&o.stdout).contains("\"runsc\"")
        }
        _ => false,
    };
    if !ok {
        assert!(
            std::env::var("PADDOCK_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "the {runtime} runtime is required (PADDOCK_REQUIRE_DOCKER=1) but the engine at {:?} cannot run it: {out:?}",
            std::env::var("DOCKER_HOST")
        );
        eprintln!("SKIPPED: no Docker engine with the {runtime} runtime here");
    }
    ok
}
