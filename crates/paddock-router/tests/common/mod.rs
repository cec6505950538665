//! Shared helpers for the router's integration tests: real sandboxes from the native
//! runtime, a `Dialer` built on its `socket_in_netns`, and curl as the client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use paddock_router::{Dialer, RouteState, Router, RunRoute};
use paddock_sandbox::native::{NativeConfig, NativeRuntime};
use paddock_sandbox::*;
use tokio::net::TcpStream;

pub const PYTHON: &str = "/usr/bin/python3";

pub fn init_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_paddock-router-test-init"))
}

pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

/// Why the sandbox tests cannot run here, if they cannot.
pub fn sandbox_missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root for real sandboxes".into());
    }
    if !std::path::Path::new(PYTHON).exists() {
        return Some(format!("{PYTHON} is missing"));
    }
    curl_missing()
}

pub fn curl_missing() -> Option<String> {
    match std::process::Command::new("curl").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("curl is missing".into()),
    }
}

/// The daemon's side of routing, as the lead will wire it: run id → sandbox handle, and a
/// socket created inside that sandbox's network namespace.
#[derive(Clone)]
pub struct NetnsDialer {
    pub rt: Arc<NativeRuntime>,
    pub handles: Arc<Mutex<HashMap<String, SandboxHandle>>>,
}

#[async_trait]
impl Dialer for NetnsDialer {
    async fn dial(&self, run_id: &str, port: u16) -> io::Result<TcpStream> {
        let handle = self
            .handles
            .lock()
            .unwrap()
            .get(run_id)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such sandbox"))?;
        let rt = self.rt.clone();
        let fd = tokio::task::spawn_blocking(move || {
            rt.as_netns()
                .expect("native runtime has netns")
                .socket_in_netns(&handle, libc::AF_INET, libc::SOCK_STREAM)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
        paddock_router::connect_loopback(fd, port).await
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A running sandbox with its workspace.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub workspace: PathBuf,
    pub run_id: String,
    pub handle: SandboxHandle,
    rt: Arc<NativeRuntime>,
}

impl Drop for Sandbox {
    /// A failed test must not leave sandboxes behind: stop and destroy on a helper thread
    /// with its own runtime (idempotent after `World::stop`).
    fn drop(&mut self) {
        let (rt, h) = (self.rt.clone(), self.handle.clone());
        let _ = std::thread::spawn(move || {
            let Ok(r) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            r.block_on(async {
                let _ = rt.kill(&h, libc::SIGKILL).await;
                let _ = rt.destroy(&h).await;
            });
        })
        .join();
    }
}

pub struct World {
    pub rt: Arc<NativeRuntime>,
    pub dialer: NetnsDialer,
    pub router: Router,
}

impl World {
    pub fn new() -> World {
        let rt = Arc::new(NativeRuntime::new(NativeConfig::new(init_exe())));
        let dialer = NetnsDialer {
            rt: rt.clone(),
            handles: Arc::default(),
        };
        let router = Router::new(Arc::new(dialer.clone()));
        World { rt, dialer, router }
    }

    /// Start a sandbox running `script` (sh -c) with `files` written to its workspace
    /// first, and register it under `name` with `endpoints`.
    pub async fn start(
        &self,
        name: &str,
        script: &str,
        files: &[(&str, &str)],
        endpoints: &[(&str, u16)],
    ) -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("pdkr")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let run_id = format!("run_{:06x}{:06x}", std::process::id() & 0xffffff, n);
        let run_dir = tmp.path().join("ph/runs").join(&run_id);
        std::fs::create_dir_all(&run_dir).unwrap();
        let workspace = tmp.path().join("ws");
        std::fs::create_dir_all(&workspace).unwrap();
        for (f, content) in files {
            std::fs::write(workspace.join(f), content).unwrap();
        }
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let spec = SandboxSpec {
            run_id: run_id.clone(),
            name: name.into(),
            run_dir,
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![
                (
                    "PATH".into(),
                    "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
                ),
                ("HOME".into(), "/home/agent".into()),
                ("LANG".into(), "C.UTF-8".into()),
            ],
            cwd: workspace.clone(),
            workspace: workspace.clone(),
            workspace_mode: WorkspaceMode::Overlay,
            mounts: vec![],
            files: vec![],
            limits: Limits::default(),
            tty: false,
            stdin: false,
            user: SandboxUser { uid, gid },
            tty_size: None,
            hold_until_released: false,
            runtime: paddock_sandbox::RuntimeKind::Native,
            image: None,
            dependencies: Vec::new(),
        };
        let h = self.rt.create(&spec).await.expect("create");
        let handle = self
            .rt
            .start(&h, &spec, Arc::new(|_| {}))
            .await
            .expect("start");
        self.dialer
            .handles
            .lock()
            .unwrap()
            .insert(run_id.clone(), handle.clone());
        self.router
            .upsert_run(RunRoute {
                name: name.into(),
                run_id: run_id.clone(),
                endpoints: endpoints.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
                state: RouteState::Running,
            })
            .expect("route");
        Sandbox {
            tmp,
            workspace,
            run_id,
            handle,
            rt: self.rt.clone(),
        }
    }

    /// Stop and destroy a sandbox (the router's route is left to the test).
    pub async fn stop(&self, sb: &Sandbox) {
        let _ = self.rt.stop(&sb.handle, Duration::from_secs(2)).await;
        let _ = self.rt.destroy(&sb.handle).await;
        self.dialer.handles.lock().unwrap().remove(&sb.run_id);
    }
}

/// `python3 -m http.server PORT` on the sandbox's loopback, serving the workspace.
pub fn http_server(port: u16) -> String {
    format!("exec {PYTHON} -m http.server {port} --bind 127.0.0.1")
}

pub struct Reply {
    pub status: u16,
    pub version: String,
    pub body: String,
}

/// curl `url` with its host resolved to 127.0.0.1, plus `extra` arguments.
pub async fn curl(url: &str, extra: &[&str]) -> Reply {
    let (host, port) = {
        let rest = url.split_once("://").unwrap().1;
        let hp = rest.split('/').next().unwrap();
        let (h, p) = hp.rsplit_once(':').unwrap();
        (h.to_string(), p.to_string())
    };
    let resolve = format!("{host}:{port}:127.0.0.1");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--resolve", &resolve])
        .args(["-w", "\n@@%{http_code} %{http_version}"])
        .args(extra)
        .arg(url)
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once("\n@@").unwrap_or((&text, "0 0"));
    let (status, version) = tail.trim().split_once(' ').unwrap_or(("0", "0"));
    if !out.status.success() {
        eprintln!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Reply {
        status: status.parse().unwrap_or(0),
        version: version.to_string(),
        body: body.to_string(),
    }
}

/// Poll `url` until it answers `want` (services inside sandboxes take a moment to start).
pub async fn wait_for(url: &str, want: u16) -> Reply {
    let t = Instant::now();
    loop {
        let r = curl(url, &[]).await;
        if r.status == want || t.elapsed() > Duration::from_secs(20) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback dialer that counts its dials (so tests see backend connection reuse).
#[derive(Default)]
pub struct Counting {
    pub dials: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Dialer for Counting {
    async fn dial(&self, run_id: &str, port: u16) -> io::Result<TcpStream> {
        self.dials.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        paddock_router::LoopbackDialer.dial(run_id, port).await
    }
}

/// A router (`cfg`) whose one run, "app", has endpoint "web" on host loopback port
/// `port`, dialled through a [`Counting`] dialer.
pub async fn serve_app(
    port: u16,
    cfg: paddock_router::RouterConfig,
) -> (Arc<Counting>, Router, paddock_router::RouterHandle) {
    let dialer = Arc::new(Counting::default());
    let router = Router::new(dialer.clone());
    router
        .upsert_run(RunRoute {
            name: "app".into(),
            run_id: "run_0123456789ab".into(),
            endpoints: [("web".to_string(), port)].into(),
            state: RouteState::Running,
        })
        .unwrap();
    let h = router.serve(cfg).await.unwrap();
    (dialer, router, h)
}
