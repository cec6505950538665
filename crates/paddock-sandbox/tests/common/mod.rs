//! Shared helpers for the native runtime's integration tests (real namespaces, mounts and
//! cgroups: they need root or unprivileged user namespaces).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_sandbox::native::{NativeConfig, NativeRuntime};
use paddock_sandbox::*;

pub fn init_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_paddock-sandbox-init"))
}

pub fn runtime() -> NativeRuntime {
    NativeRuntime::new(NativeConfig::new(init_exe()))
}

/// A paddock home with one run directory and a workspace, all under a temp dir.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub run_dir: PathBuf,
    pub workspace: PathBuf,
    pub run_id: String,
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("pdk")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let home = tmp.path().join("ph");
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let run_id = format!("run_{:06x}{:06x}", std::process::id() & 0xffffff, n);
        let run_dir = home.join("runs").join(&run_id);
        std::fs::create_dir_all(&run_dir).unwrap();
        let workspace = tmp.path().join("ws");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(workspace.join("hello.txt"), "hello from host\n").unwrap();
        Env {
            tmp,
            home,
            run_dir,
            workspace,
            run_id,
        }
    }

    pub fn spec(&self, cmd: &[&str]) -> SandboxSpec {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        SandboxSpec {
            run_id: self.run_id.clone(),
            name: "test-run".into(),
            run_dir: self.run_dir.clone(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec![
                (
                    "PATH".into(),
                    "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
                ),
                ("HOME".into(), "/home/agent".into()),
                ("LANG".into(), "C.UTF-8".into()),
            ],
            cwd: self.workspace.clone(),
            workspace: self.workspace.clone(),
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
        }
    }
}

pub fn sh(env: &Env, script: &str) -> SandboxSpec {
    env.spec(&["/bin/sh", "-c", script])
}

#[derive(Default, Clone)]
pub struct Events(pub Arc<Mutex<Vec<SandboxEvent>>>);

impl Events {
    pub fn sink(&self) -> EventSink {
        let v = self.0.clone();
        Arc::new(move |e| v.lock().unwrap().push(e))
    }
    pub fn all(&self) -> Vec<SandboxEvent> {
        self.0.lock().unwrap().clone()
    }
}

pub struct Outcome {
    pub exit: ExitInfo,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<SandboxEvent>,
    pub handle: SandboxHandle,
}

/// create + start + attach + wait, collecting output; then destroy unless `keep`.
pub async fn run_spec(rt: &NativeRuntime, spec: &SandboxSpec, keep: bool) -> Outcome {
    let ev = Events::default();
    let h = rt.create(spec).await.expect("create");
    let h = rt.start(&h, spec, ev.sink()).await.expect("start");
    let exit = tokio::time::timeout(Duration::from_secs(60), rt.wait(&h))
        .await
        .expect("wait timed out")
        .expect("wait");
    let mut logs = rt.logs(&h, LogQuery::default()).await.expect("logs");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(c) = logs.recv().await {
        match c.stream {
            OutputStream::Stderr => stderr.extend_from_slice(&c.data),
            _ => stdout.extend_from_slice(&c.data),
        }
    }
    if !keep {
        rt.destroy(&h).await.expect("destroy");
    }
    Outcome {
        exit,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        events: ev.all(),
        handle: h,
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
