//! The Docker backend (and, with the `runsc` OCI runtime, the gVisor one): a sandbox is one
//! container of the user's engine (`DOCKER_HOST` or the default socket), reached with bollard.
//!
//! The runtime changes the box, never the rules. A container starts with `--network none`
//! (only a loopback device in its own network namespace); the daemon enters that namespace by
//! the container's pid and places the same listeners as for a native run (see
//! [`NetnsCapability`]). The workspace's copy-on-write layer is the native one: an overlay
//! whose upper and work directories are `run_dir/layer/{upper,work}`, mounted by the engine
//! as a local volume (so the host's mount table holds it only while the container lives), or
//! the workspace itself in bind mode. Hardening: the spec's uid:gid, every capability
//! dropped, no_new_privs, a read-only root with tmpfs on /tmp, /run and /var/tmp, paddock's
//! seccomp table as the container's profile ([`seccomp`]), pids/memory/cpu limits, and no
//! Docker socket: nothing of the host but what the spec lists is mounted.
//!
//! Holding the command until the network is in place: the container's command is
//! `/bin/sh -c 'read -r _ || exit 125; exec "$@"'` over the real argv, and stdin is the
//! attach stream, so [`NetnsCapability::release`] is one newline on stdin (then EOF when
//! the run has no stdin). Images therefore need `/bin/sh`; the base image has it.
//!
//! Output: the container is attached before it starts; every chunk goes to
//! `run_dir/log.jsonl` (the native format, [`crate::native::logfmt`]) and to attached
//! clients. After a daemon restart, [`Runtime::adopt`] re-attaches and copies what the
//! engine logged meanwhile (`docker logs --since`).
//!
//! Owns: containers labelled `paddock.run=<run_id>`, volumes named `paddock-<run_id>`, and
//! `run_dir/{layer,home,files,log.jsonl,exit.json}`. Never: publishes ports, attaches a
//! network, mounts the engine's socket, or mounts anything in the daemon's mount namespace
//! (the engine does the overlay mount).

pub mod dind;
pub mod image;
pub mod rootfs;
pub mod seccomp;
mod views;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    ResizeContainerTTYOptionsBuilder, StatsOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OnceCell, mpsc, watch};

use crate::native::logfmt::{self, ExitRecord};
use crate::native::nsworker::NsWorker;
use crate::native::plan::{self, RunLayout};
use crate::native::run::{open_log, proc_start_time, read_exit_json, write_exit_json};
use crate::{
    Adopted, AttachInput, Attachment, EventSink, ExecCapability, ExitInfo, LogQuery,
    NetnsCapability, OutputChunk, OutputStream, Runtime, RuntimeKind, SandboxError, SandboxEvent,
    SandboxHandle, SandboxSpec, SandboxStats, StatsCapability, WorkspaceMode,
};

/// Label every paddock container carries: its run id.
pub const RUN_LABEL: &str = "paddock.run";

/// Label with the `$PADDOCK_HOME` whose daemon made the container.
pub const HOME_LABEL: &str = "paddock.home";

/// Chunks an attached client may lag behind before it is disconnected (the log has all).
const SUB_BUFFER: usize = 4096;

/// The shell line that holds the command until the daemon writes a newline on stdin, then
/// runs it (a missing command is reported as the native runtime does, with status 127).
const HOLD: &str = "read -r _ || exit 125; command -v \"$1\" >/dev/null 2>&1 || { echo \"paddock: command not found: $1\" >&2; exit 127; }; exec \"$@\"";

/// For `exec` with a terminal: held until the first newline, so the client's terminal size
/// is in place before the command starts.
const EXEC_TTY: &str = "read -r _ || exit 125; command -v \"$1\" >/dev/null 2>&1 || { echo \"paddock: command not found: $1\" >&2; exit 127; }; exec \"$@\"";

/// The same without the hold, for `exec`.
const EXEC: &str = "command -v \"$1\" >/dev/null 2>&1 || { echo \"paddock: command not found: $1\" >&2; exit 127; }; exec \"$@\"";

/// Configuration of a Docker-engine runtime.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Docker or gVisor.
    pub kind: RuntimeKind,
    /// The OCI runtime the engine knows gVisor as (`runsc`).
    pub gvisor_runtime: String,
    /// `$PADDOCK_HOME`: never mountable into a sandbox.
    pub paddock_home: Option<PathBuf>,
    /// How long `start` waits for the engine.
    pub timeout: Duration,
}

impl DockerConfig {
    pub fn new(kind: RuntimeKind) -> Self {
        DockerConfig {
            kind,
            gvisor_runtime: "runsc".into(),
            paddock_home: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// What a docker [`SandboxHandle`] stores in `state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DockerState {
    pub container: String,
    /// The overlay volume (overlay mode only).
    #[serde(default)]
    pub volume: Option<String>,
    /// Host pid of the container's first process (0 before start).
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub pid_start: u64,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
    /// Host-side idmapped views under `run_dir/mnt` (root callers), in unmount order.
    #[serde(default)]
    pub host_mounts: Vec<PathBuf>,
}

/// The uid:gid the agent runs as: the caller's, or [`views::AGENT_ID`] for root (whose
/// files it then sees through idmapped views).
fn agent_ids(spec: &SandboxSpec) -> (u32, u32) {
    if spec.user.uid == 0 {
        (views::AGENT_ID, views::AGENT_ID)
    } else {
        (spec.user.uid, spec.user.gid)
    }
}

fn state_of(handle: &SandboxHandle) -> Result<DockerState, SandboxError> {
    serde_json::from_value(handle.state.clone()).map_err(|e| SandboxError::InvalidSpec {
        message: format!("run {} has a damaged docker handle: {e}", handle.run_id),
        hint: "remove the run with `paddock rm -f`".into(),
    })
}

fn make_handle(kind: RuntimeKind, run_id: &str, run_dir: &Path, st: &DockerState) -> SandboxHandle {
    SandboxHandle {
        run_id: run_id.into(),
        run_dir: run_dir.into(),
        kind,
        state: serde_json::to_value(st).unwrap_or_default(),
    }
}

fn engine_err(what: &str, e: bollard::errors::Error) -> SandboxError {
    use bollard::errors::Error as E;
    let hint = match &e {
        E::DockerResponseServerError {
            status_code: 404, ..
        } => "check the name with `docker ps -a` / `docker images`",
        E::SocketNotFoundError(_) | E::IOError { .. } | E::HyperResponseError { .. } => {
            "start the Docker engine (Debian: `apt install docker.io`), or point DOCKER_HOST at it; check with `docker info`"
        }
        _ => "`paddock doctor` shows what each runtime needs",
    };
    SandboxError::Unsupported {
        message: format!("docker: {what}: {e}"),
        hint: hint.into(),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

type Stdin = Pin<Box<dyn AsyncWrite + Send>>;

struct OutState {
    subs: Vec<mpsc::Sender<OutputChunk>>,
    /// Bytes of `log.jsonl` written so far: a subscriber reads the file up to here and
    /// gets every later chunk live, so nothing is delivered twice or missed.
    log_len: u64,
    finished: bool,
}

/// One live container, as the daemon's process sees it.
struct Run {
    container: String,
    layout: RunLayout,
    /// Keep stdin open after the release (`-i`).
    stdin_open: bool,
    stdin: tokio::sync::Mutex<Option<Stdin>>,
    /// Set once the hold's newline is written; client input waits for it.
    released: watch::Sender<bool>,
    out: Mutex<OutState>,
    exit: watch::Receiver<Option<ExitInfo>>,
    /// Host pid of the container's first process and its start time (0 before start).
    pid: Mutex<(i32, u64)>,
}

impl Run {
    /// Live output from now on, and how much of the log precedes it.
    fn subscribe(&self) -> (Option<mpsc::Receiver<OutputChunk>>, u64) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.finished {
            return (None, out.log_len);
        }
        let (tx, rx) = mpsc::channel(SUB_BUFFER);
        out.subs.push(tx);
        (Some(rx), out.log_len)
    }

    /// Append a chunk to the log and hand it to the subscribers, as one step.
    fn record(&self, log: &mut File, seq: u64, chunk: OutputChunk) {
        let line = logfmt::encode_line(seq, &chunk);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if log.write_all(&line).is_ok() {
            out.log_len += line.len() as u64;
        }
        out.subs.retain(|s| s.try_send(chunk.clone()).is_ok());
    }

    fn finish(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.finished = true;
        out.subs.clear();
    }

    /// Write the hold's newline (once), then close stdin unless the run keeps it.
    async fn release(&self) {
        let mut g = self.stdin.lock().await;
        if *self.released.borrow() {
            return;
        }
        if let Some(w) = g.as_mut() {
            let _ = w.write_all(b"\n").await;
            let _ = w.flush().await;
        }
        if !self.stdin_open
            && let Some(mut w) = g.take()
        {
            let _ = w.shutdown().await;
        }
        self.released.send_replace(true);
    }

    /// Client input: only after the release, so the hold never eats a line of it.
    async fn write_stdin(&self, data: &[u8]) {
        let mut rx = self.released.subscribe();
        let _ = rx.wait_for(|r| *r).await;
        let mut g = self.stdin.lock().await;
        if let Some(w) = g.as_mut()
            && (w.write_all(data).await.is_err() || w.flush().await.is_err())
        {
            *g = None;
        }
    }

    async fn close_stdin(&self) {
        let mut rx = self.released.subscribe();
        let _ = rx.wait_for(|r| *r).await;
        if let Some(mut w) = self.stdin.lock().await.take() {
            let _ = w.shutdown().await;
        }
    }
}

/// The Docker (or gVisor) runtime.
pub struct DockerRuntime {
    cfg: DockerConfig,
    docker: OnceCell<Docker>,
    runs: Mutex<HashMap<String, Arc<Run>>>,
    ns: NsWorker,
}

impl DockerRuntime {
    pub fn new(cfg: DockerConfig) -> Self {
        DockerRuntime {
            cfg,
            docker: OnceCell::new(),
            runs: Mutex::new(HashMap::new()),
            ns: NsWorker::default(),
        }
    }

    /// The engine client (connected and version-negotiated on first use).
    pub async fn engine(&self) -> Result<&Docker, SandboxError> {
        self.docker
            .get_or_try_init(|| async {
                let d = Docker::connect_with_defaults()
                    .map_err(|e| engine_err("connect", e))?
                    .with_timeout(self.cfg.timeout);
                d.negotiate_version()
                    .await
                    .map_err(|e| engine_err("connect", e))
            })
            .await
    }

    /// Whether this runtime can run a container now; the error says why not and what to do.
    pub async fn check(&self) -> Result<String, SandboxError> {
        let d = self.engine().await?;
        let v = d.version().await.map_err(|e| engine_err("version", e))?;
        let version = v.version.unwrap_or_default();
        if self.cfg.kind == RuntimeKind::Gvisor {
            let info = d.info().await.map_err(|e| engine_err("info", e))?;
            let known = info
                .runtimes
                .unwrap_or_default()
                .contains_key(&self.cfg.gvisor_runtime);
            if !known {
                return Err(SandboxError::Unsupported {
                    message: format!(
                        "the Docker engine {version} has no `{}` runtime",
                        self.cfg.gvisor_runtime
                    ),
                    hint: gvisor_hint(),
                });
            }
        }
        Ok(version)
    }

    fn get(&self, run_id: &str) -> Option<Arc<Run>> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run_id)
            .cloned()
    }

    fn paddock_home(&self, run_dir: &Path) -> Option<PathBuf> {
        self.cfg.paddock_home.clone().or_else(|| {
            let runs = run_dir.parent()?;
            (runs.file_name()? == "runs").then(|| runs.parent().map(Path::to_path_buf))?
        })
    }

    fn mounts(
        &self,
        spec: &SandboxSpec,
        volume: Option<&str>,
        views: Option<&views::Views>,
    ) -> Result<Vec<Mount>, SandboxError> {
        let layout = RunLayout::new(&spec.run_dir);
        let bind = |src: &Path, dst: &Path, ro: bool| Mount {
            target: Some(dst.display().to_string()),
            source: Some(src.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(ro),
            ..Default::default()
        };
        let mut m = Vec::new();
        match (volume, views) {
            (_, Some(v)) => m.push(bind(&v.workspace, &spec.workspace, false)),
            (Some(v), None) => m.push(Mount {
                target: Some(spec.workspace.display().to_string()),
                source: Some(v.into()),
                typ: Some(MountType::VOLUME),
                volume_options: Some(MountVolumeOptions {
                    no_copy: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            (None, None) => m.push(bind(&spec.workspace, &spec.workspace, false)),
        }
        if let Some(home) = plan::home_target(spec) {
            m.push(bind(&layout.home(), &home, false));
        }
        for (i, f) in spec.files.iter().enumerate() {
            m.push(bind(&layout.files().join(i.to_string()), &f.path, true));
        }
        for (i, x) in spec.mounts.iter().enumerate() {
            let source = views.map_or(&x.source, |v| &v.mounts[i]);
            m.push(bind(source, &x.target, x.read_only));
        }
        Ok(m)
    }

    fn container_body(
        &self,
        spec: &SandboxSpec,
        image: &str,
        mounts: Vec<Mount>,
    ) -> ContainerCreateBody {
        let mut cmd = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            HOLD.into(),
            "paddock".into(),
        ];
        cmd.extend(spec.command.iter().cloned());
        // /tmp and /run only: a tmpfs on /var/tmp would make the mount points Docker creates
        // for a workspace under it writable, next to the workspace.
        let tmpfs: HashMap<String, String> = ["/tmp", "/run"]
            .iter()
            .map(|p| (p.to_string(), "rw,nosuid,nodev,mode=1777".to_string()))
            .collect();
        let host = HostConfig {
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec![
                "no-new-privileges".into(),
                format!(
                    "seccomp={}",
                    seccomp::profile_json(self.cfg.kind == RuntimeKind::Gvisor)
                ),
            ]),
            readonly_rootfs: Some(true),
            tmpfs: Some(tmpfs),
            mounts: Some(mounts),
            init: Some(true),
            memory: spec.limits.memory_bytes.map(|b| b as i64),
            pids_limit: spec.limits.pids.map(|p| p as i64),
            nano_cpus: spec.limits.cpus.map(|c| (c * 1e9) as i64),
            runtime: (self.cfg.kind == RuntimeKind::Gvisor)
                .then(|| self.cfg.gvisor_runtime.clone()),
            ipc_mode: Some("private".into()),
            ..Default::default()
        };
        let mut labels: HashMap<String, String> =
            [(RUN_LABEL.to_string(), spec.run_id.clone())].into();
        if let Some(home) = self.paddock_home(&spec.run_dir) {
            labels.insert(HOME_LABEL.into(), home.display().to_string());
        }
        ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(cmd),
            entrypoint: Some(vec![]),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(spec.cwd.display().to_string()),
            user: Some({
                let (uid, gid) = agent_ids(spec);
                format!("{uid}:{gid}")
            }),
            hostname: Some(spec.name.clone()),
            tty: Some(spec.tty),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            network_disabled: None,
            labels: Some(labels),
            host_config: Some(host),
            ..Default::default()
        }
    }

    fn prepare_dirs(spec: &SandboxSpec) -> Result<(), SandboxError> {
        let layout = RunLayout::new(&spec.run_dir);
        for d in [layout.upper(), layout.work(), layout.home(), layout.files()] {
            std::fs::create_dir_all(&d).map_err(|e| SandboxError::io("create", d.clone(), e))?;
        }
        // The container's user owns its home (and, through the overlay, the files it writes).
        let (uid, gid) = agent_ids(spec);
        let own = |p: &Path| {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))
                .map_err(|e| SandboxError::io("chown", p.to_path_buf(), e))
        };
        own(&layout.home())?;
        for (i, f) in spec.files.iter().enumerate() {
            let p = layout.files().join(i.to_string());
            let tmp = layout.files().join(format!(".{i}.tmp"));
            let mut out =
                File::create(&tmp).map_err(|e| SandboxError::io("write", tmp.clone(), e))?;
            out.write_all(&f.contents)
                .map_err(|e| SandboxError::io("write", tmp.clone(), e))?;
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o444))
                .map_err(|e| SandboxError::io("chmod", tmp.clone(), e))?;
            std::fs::rename(&tmp, &p).map_err(|e| SandboxError::io("rename", p, e))?;
        }
        Ok(())
    }

    /// The image `spec` runs on: built where its dependencies (or paddock's base) need it,
    /// with the build's steps sent to `events` as init steps.
    pub async fn ensure_image(
        &self,
        spec: &SandboxSpec,
        events: &EventSink,
    ) -> Result<String, SandboxError> {
        let d = self.engine().await?;
        let scratch = self.paddock_home(&spec.run_dir).map_or_else(
            || spec.run_dir.join("image-build"),
            |h| h.join("cache").join("image-build"),
        );
        let sink = image::init_steps(events, &spec.run_id, "image: ");
        image::ensure(
            d,
            &scratch,
            spec.image.as_deref(),
            &spec.dependencies,
            &sink,
        )
        .await
    }

    /// Make the run's container on `image` (with a root caller's idmapped views, or the
    /// overlay volume): what `start` does first.
    async fn make_container(
        &self,
        d: &Docker,
        spec: &SandboxSpec,
        image: &str,
    ) -> Result<DockerState, SandboxError> {
        let layout = RunLayout::new(&spec.run_dir);
        let views = if spec.user.uid == 0 {
            let s = spec.clone();
            Some(
                tokio::task::spawn_blocking(move || views::make(&s))
                    .await
                    .map_err(|e| {
                        SandboxError::io(
                            "make the container's views",
                            None,
                            std::io::Error::other(e),
                        )
                    })??,
            )
        } else {
            None
        };
        let host_mounts = views.as_ref().map(|v| v.made.clone()).unwrap_or_default();
        let volume = match (spec.workspace_mode, &views) {
            (_, Some(_)) | (WorkspaceMode::Bind, None) => None,
            (WorkspaceMode::Overlay, None) => {
                let name = format!("paddock-{}", spec.run_id);
                let o = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    check_overlay_path(&spec.workspace)?,
                    check_overlay_path(&layout.upper())?,
                    check_overlay_path(&layout.work())?
                );
                let opts: HashMap<String, String> = [
                    ("type".to_string(), "overlay".to_string()),
                    ("device".into(), "overlay".into()),
                    ("o".into(), o),
                ]
                .into_iter()
                .collect();
                let labels: HashMap<String, String> =
                    [(RUN_LABEL.to_string(), spec.run_id.clone())]
                        .into_iter()
                        .collect();
                d.create_volume(VolumeCreateRequest {
                    name: Some(name.clone()),
                    driver: Some("local".into()),
                    driver_opts: Some(opts),
                    labels: Some(labels),
                    ..Default::default()
                })
                .await
                .map_err(|e| engine_err("create volume", e))?;
                Some(name)
            }
        };
        let mounts = self.mounts(spec, volume.as_deref(), views.as_ref())?;
        let body = self.container_body(spec, image, mounts);
        let opts = CreateContainerOptionsBuilder::default()
            .name(&format!("paddock-{}", spec.run_id))
            .build();
        let created = match d.create_container(Some(opts), body).await {
            Ok(c) => c,
            Err(e) => {
                let st = DockerState {
                    container: format!("paddock-{}", spec.run_id),
                    volume,
                    ..Default::default()
                };
                let _ = self.remove_container(d, &st, &spec.run_id).await;
                let _ = views::remove(&spec.run_dir, &host_mounts);
                return Err(engine_err("create container", e));
            }
        };
        let st = DockerState {
            container: created.id,
            volume,
            tty: spec.tty,
            stdin: spec.stdin,
            host_mounts,
            ..Default::default()
        };
        Ok(st)
    }

    /// Remove the run's container and volume. A handle from before the start (no container
    /// recorded) goes by the names a start gives them, in case one was made and not recorded.
    async fn remove_container(
        &self,
        d: &Docker,
        st: &DockerState,
        run_id: &str,
    ) -> Result<(), SandboxError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let named = format!("paddock-{run_id}");
        let (container, volume) = if st.container.is_empty() {
            (named.clone(), Some(named))
        } else {
            (st.container.clone(), st.volume.clone())
        };
        match d.remove_container(&container, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine_err("remove container", e)),
        }
        if let Some(v) = &volume {
            let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
            match d.remove_volume(v, Some(opts)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine_err("remove volume", e)),
            }
        }
        Ok(())
    }

    /// Attach to the container and start the task that writes its output. `since_ms`:
    /// re-adoption (no stdin; first copy what the engine logged after that time).
    async fn attach_run(
        &self,
        handle: &SandboxHandle,
        st: &DockerState,
        since_ms: Option<i64>,
    ) -> Result<
        (
            Arc<Run>,
            tokio::task::JoinHandle<()>,
            watch::Sender<Option<ExitInfo>>,
        ),
        SandboxError,
    > {
        let d = self.engine().await?.clone();
        let layout = RunLayout::new(&handle.run_dir);
        let fresh = since_ms.is_none();
        let opts = AttachContainerOptionsBuilder::default()
            .stdin(fresh)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        let attached = d
            .attach_container(&st.container, Some(opts))
            .await
            .map_err(|e| engine_err("attach", e))?;
        let (mut log, _) = open_log(&layout, false)?;
        let mut seq = logfmt::last_seq(&layout.log());
        if let Some(since) = since_ms {
            let opts = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .timestamps(true)
                .since((since / 1000) as i32)
                .build();
            let mut s = d.logs(&st.container, Some(opts));
            while let Some(Ok(item)) = s.next().await {
                let (stream, bytes) = split_output(item, st.tty);
                let Some((ts, data)) = strip_timestamp(&bytes) else {
                    continue;
                };
                if ts <= since {
                    continue;
                }
                seq += 1;
                let chunk = OutputChunk {
                    ts_ms: ts,
                    stream,
                    data: data.to_vec(),
                };
                let _ = log.write_all(&logfmt::encode_line(seq, &chunk));
            }
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        let run = Arc::new(Run {
            container: st.container.clone(),
            layout: layout.clone(),
            stdin_open: st.stdin,
            stdin: tokio::sync::Mutex::new(fresh.then_some(attached.input)),
            released: watch::Sender::new(!fresh),
            out: Mutex::new(OutState {
                subs: Vec::new(),
                log_len: log.metadata().map(|m| m.len()).unwrap_or(0),
                finished: false,
            }),
            exit: exit_rx,
            pid: Mutex::new((st.pid, st.pid_start)),
        });
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(handle.run_id.clone(), run.clone());
        let pump_run = run.clone();
        let tty = st.tty;
        let mut output = attached.output;
        let pump = tokio::spawn(async move {
            // A pty echoes the hold's newline: drop that echo.
            let mut echo = tty && fresh;
            while let Some(item) = output.next().await {
                let Ok(item) = item else { break };
                let (stream, data) = split_output(item, tty);
                let data = drop_echo(&mut echo, data);
                if data.is_empty() {
                    continue;
                }
                seq += 1;
                let chunk = OutputChunk {
                    ts_ms: now_ms(),
                    stream,
                    data: data.to_vec(),
                };
                pump_run.record(&mut log, seq, chunk);
            }
        });
        Ok((run, pump, exit_tx))
    }

    /// Watch a started container until it ends: then record and publish its exit.
    async fn spawn_waiter(
        &self,
        run_id: &str,
        run: Arc<Run>,
        pump: tokio::task::JoinHandle<()>,
        exit_tx: watch::Sender<Option<ExitInfo>>,
        events: EventSink,
    ) -> Result<(), SandboxError> {
        let d = self.engine().await?.clone();
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            let mut w = d.wait_container(&run.container, None::<WaitContainerOptions>);
            while let Some(r) = w.next().await {
                if r.is_err() {
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
            let exit = exit_of(&d, &run.container).await;
            let _ = write_exit_json(&run.layout, &exit);
            run.finish();
            let _ = exit_tx.send(Some(exit.clone()));
            events(SandboxEvent::Exited { run_id, exit });
        });
        Ok(())
    }
}

/// How a stopped container ended, from the engine.
async fn exit_of(d: &Docker, container: &str) -> ExitInfo {
    match d.inspect_container(container, None).await {
        Ok(c) => {
            let s = c.state.unwrap_or_default();
            let code = s.exit_code.map(|c| c as i32);
            let oom = s.oom_killed.unwrap_or(false);
            let signal = code.filter(|c| *c > 128 && *c < 128 + 65).map(|c| c - 128);
            let reason = if oom {
                Some("out of memory".into())
            } else if code == Some(125) {
                Some("the container could not run the command".into())
            } else {
                s.error.filter(|e| !e.is_empty())
            };
            ExitInfo {
                exit_code: code,
                signal,
                oom_killed: oom,
                reason,
            }
        }
        Err(e) => ExitInfo {
            exit_code: None,
            signal: None,
            oom_killed: false,
            reason: Some(format!("the container is gone: {e}")),
        },
    }
}

fn split_output(item: bollard::container::LogOutput, tty: bool) -> (OutputStream, bytes::Bytes) {
    use bollard::container::LogOutput as L;
    match item {
        L::StdErr { message } => (OutputStream::Stderr, message),
        L::StdOut { message } | L::Console { message } | L::StdIn { message } => (
            if tty {
                OutputStream::Tty
            } else {
                OutputStream::Stdout
            },
            message,
        ),
    }
}

/// A pty echoes the newline that releases a held command: drop it from the first chunk
/// (`pending` says whether that chunk is still to come).
fn drop_echo(pending: &mut bool, data: bytes::Bytes) -> bytes::Bytes {
    if std::mem::take(pending) && data.starts_with(b"\r\n") {
        data.slice(2..)
    } else {
        data
    }
}

/// `2024-01-01T00:00:00.123456789Z data…` → (ms, data).
fn strip_timestamp(b: &[u8]) -> Option<(i64, &[u8])> {
    let sp = b.iter().position(|c| *c == b' ')?;
    let ts = std::str::from_utf8(&b[..sp]).ok()?;
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some(((t.unix_timestamp_nanos() / 1_000_000) as i64, &b[sp + 1..]))
}

/// What `doctor` prints when the engine has no gVisor runtime.
pub fn gvisor_hint() -> String {
    "install gVisor (Debian: `apt install runsc`) and register it with the engine: add \
     {\"runtimes\":{\"runsc\":{\"path\":\"/usr/bin/runsc\",\"runtimeArgs\":[\"--network=host\",\"--oci-seccomp\"]}}} \
     to /etc/docker/daemon.json and restart dockerd (`--network=host` makes gVisor use the \
     container's own network namespace, where paddock places its egress listeners; \
     `--oci-seccomp` applies paddock's seccomp profile inside gVisor too)"
        .into()
}

fn check_overlay_path(p: &Path) -> Result<String, SandboxError> {
    let s = p.display().to_string();
    if s.contains(',') || s.contains(':') || s.contains('=') {
        return Err(SandboxError::InvalidSpec {
            message: format!(
                "{s}: a path with `,`, `:` or `=` cannot be an overlay layer of a container"
            ),
            hint: "use --bind, or a workspace path without those characters".into(),
        });
    }
    Ok(s)
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        self.cfg.kind
    }

    async fn probe(&self, kind: RuntimeKind) -> Result<String, SandboxError> {
        if kind != self.cfg.kind {
            return Err(SandboxError::Unsupported {
                message: format!(
                    "this backend runs {}, not {}",
                    self.cfg.kind.as_str(),
                    kind.as_str()
                ),
                hint: "`paddock doctor` lists the runtimes".into(),
            });
        }
        let version = self.check().await?;
        if !nix::unistd::geteuid().is_root() {
            return Err(SandboxError::Unsupported {
                message: format!(
                    "the {} runtime needs the paddock daemon to run as root (it enters each container's network namespace to place the egress listeners)",
                    kind.as_str()
                ),
                hint: "run paddock as root for container runtimes, or use the native runtime"
                    .into(),
            });
        }
        Ok(format!("Docker engine {version}"))
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle, SandboxError> {
        let home = self.paddock_home(&spec.run_dir);
        plan::validate(spec, home.as_deref())?;
        // No probe here: the daemon probes before it creates (`RunManager::choose_runtime`).
        // The image is built (or checked) and the container made by the start, so that a
        // build's steps are the run's init steps.
        Self::prepare_dirs(spec)?;
        let st = DockerState {
            tty: spec.tty,
            stdin: spec.stdin,
            ..Default::default()
        };
        Ok(make_handle(self.cfg.kind, &spec.run_id, &spec.run_dir, &st))
    }

    async fn start(
        &self,
        handle: &SandboxHandle,
        spec: &SandboxSpec,
        events: EventSink,
    ) -> Result<SandboxHandle, SandboxError> {
        let mut st = state_of(handle)?;
        let d = self.engine().await?.clone();
        if st.container.is_empty() {
            let image = self.ensure_image(spec, &events).await?;
            st = self.make_container(&d, spec, &image).await?;
        }
        let layout = RunLayout::new(&handle.run_dir);
        let _ = open_log(&layout, true)?;
        let step = |index, description: String| {
            events(SandboxEvent::InitStep {
                run_id: handle.run_id.clone(),
                index,
                total: 2,
                description,
            })
        };
        step(1, format!("start container {}", short(&st.container)));
        // Attached before it starts, so no output is missed.
        let (run, pump, exit_tx) = self.attach_run(handle, &st, None).await?;
        if let Err(e) = d.start_container(&st.container, None).await {
            self.runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&handle.run_id);
            pump.abort();
            return Err(engine_err("start container", e));
        }
        // The terminal's size before the command runs (it is held until released).
        if spec.tty
            && let Some(sz) = spec.tty_size
        {
            let o = ResizeContainerTTYOptionsBuilder::default()
                .h(sz.rows as i32)
                .w(sz.cols as i32)
                .build();
            let _ = d.resize_container_tty(&st.container, o).await;
        }
        let info = d
            .inspect_container(&st.container, None)
            .await
            .map_err(|e| engine_err("inspect container", e))?;
        st.pid = info.state.and_then(|s| s.pid).unwrap_or(0) as i32;
        st.pid_start = proc_start_time(st.pid).unwrap_or(0);
        *run.pid.lock().unwrap_or_else(|e| e.into_inner()) = (st.pid, st.pid_start);
        self.spawn_waiter(&handle.run_id, run.clone(), pump, exit_tx, events.clone())
            .await?;
        step(2, "run the command".into());
        events(SandboxEvent::Started {
            run_id: handle.run_id.clone(),
            pid: st.pid,
        });
        if !spec.hold_until_released {
            run.release().await;
        }
        Ok(make_handle(
            self.cfg.kind,
            &handle.run_id,
            &handle.run_dir,
            &st,
        ))
    }

    async fn attach(&self, handle: &SandboxHandle) -> Result<Attachment, SandboxError> {
        let run = self
            .get(&handle.run_id)
            .ok_or_else(|| SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            })?;
        let output = run.subscribe().0.ok_or_else(|| SandboxError::NotRunning {
            run_id: handle.run_id.clone(),
        })?;
        let (tx, mut rx) = mpsc::channel::<AttachInput>(64);
        let d = self.engine().await?.clone();
        tokio::spawn(async move {
            while let Some(i) = rx.recv().await {
                match i {
                    AttachInput::Stdin(b) => run.write_stdin(&b).await,
                    AttachInput::CloseStdin => run.close_stdin().await,
                    AttachInput::Resize(sz) => {
                        let o = ResizeContainerTTYOptionsBuilder::default()
                            .h(sz.rows as i32)
                            .w(sz.cols as i32)
                            .build();
                        let _ = d.resize_container_tty(&run.container, o).await;
                    }
                    AttachInput::Signal(sig) => {
                        let o = KillContainerOptionsBuilder::default()
                            .signal(&sig.to_string())
                            .build();
                        let _ = d.kill_container(&run.container, Some(o)).await;
                    }
                }
            }
        });
        Ok(Attachment { output, input: tx })
    }

    async fn wait(&self, handle: &SandboxHandle) -> Result<ExitInfo, SandboxError> {
        if let Some(run) = self.get(&handle.run_id) {
            let mut rx = run.exit.clone();
            let got = rx.wait_for(|e| e.is_some()).await.map(|e| e.clone());
            if let Ok(Some(e)) = got {
                return Ok(e);
            }
        }
        if let Some(rec) = read_exit_json(&RunLayout::new(&handle.run_dir)) {
            return Ok(rec.info());
        }
        let st = state_of(handle)?;
        let d = self.engine().await?;
        let mut w = d.wait_container(&st.container, None::<WaitContainerOptions>);
        while w.next().await.is_some() {}
        Ok(exit_of(d, &st.container).await)
    }

    async fn stop(
        &self,
        handle: &SandboxHandle,
        grace: Duration,
    ) -> Result<ExitInfo, SandboxError> {
        let st = state_of(handle)?;
        let d = self.engine().await?;
        let live = self
            .get(&handle.run_id)
            .filter(|r| r.exit.borrow().is_none());
        if let Some(run) = live {
            let _ = self.kill(handle, libc::SIGTERM).await;
            let mut rx = run.exit.clone();
            let ended = tokio::time::timeout(grace, async {
                let _ = rx.wait_for(|e| e.is_some()).await;
            })
            .await
            .is_ok();
            if !ended {
                let _ = self.kill(handle, libc::SIGKILL).await;
            }
            return self.wait(handle).await;
        }
        let running = d
            .inspect_container(&st.container, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false);
        if running {
            let _ = self.kill(handle, libc::SIGKILL).await;
        }
        self.wait(handle).await
    }

    async fn kill(&self, handle: &SandboxHandle, signal: i32) -> Result<(), SandboxError> {
        let st = state_of(handle)?;
        let d = self.engine().await?;
        let o = KillContainerOptionsBuilder::default()
            .signal(&signal.to_string())
            .build();
        match d.kill_container(&st.container, Some(o)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) if is_not_found(&e) => Err(SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            }),
            Err(e) => Err(engine_err("kill", e)),
        }
    }

    async fn logs(
        &self,
        handle: &SandboxHandle,
        query: LogQuery,
    ) -> Result<mpsc::Receiver<OutputChunk>, SandboxError> {
        let layout = RunLayout::new(&handle.run_dir);
        let (live, upto) = match (query.follow, self.get(&handle.run_id)) {
            (true, Some(run)) => run.subscribe(),
            _ => (None, u64::MAX),
        };
        Ok(logfmt::replay(layout.log(), upto, query.tail, live))
    }

    async fn destroy(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let st = state_of(handle)?;
        let d = self.engine().await?;
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&handle.run_id);
        self.remove_container(d, &st, &handle.run_id).await?;
        views::remove(&handle.run_dir, &st.host_mounts)?;
        let layout = RunLayout::new(&handle.run_dir);
        for p in [layout.layer(), layout.files(), layout.home()] {
            match std::fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SandboxError::io("remove run directory", p, e)),
            }
        }
        let _ = std::fs::remove_file(handle.run_dir.join("exit.json.tmp"));
        Ok(())
    }

    async fn adopt(
        &self,
        handle: &SandboxHandle,
        events: EventSink,
    ) -> Result<Adopted, SandboxError> {
        let st = state_of(handle)?;
        if st.container.is_empty() {
            return Ok(Adopted::Exited(ExitInfo {
                exit_code: None,
                signal: None,
                oom_killed: false,
                reason: Some("the run was never started".into()),
            }));
        }
        let d = self.engine().await?;
        let layout = RunLayout::new(&handle.run_dir);
        let info = match d.inspect_container(&st.container, None).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => {
                return Ok(Adopted::Exited(
                    read_exit_json(&layout)
                        .map(|r: ExitRecord| r.info())
                        .unwrap_or(ExitInfo {
                            exit_code: None,
                            signal: None,
                            oom_killed: false,
                            reason: Some(
                                "the container was removed while no daemon watched".into(),
                            ),
                        }),
                ));
            }
            Err(e) => return Err(engine_err("inspect container", e)),
        };
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let since = std::fs::read(layout.log())
            .ok()
            .and_then(|data| {
                data.split(|b| *b == b'\n')
                    .filter_map(logfmt::decode_line)
                    .map(|(_, c)| c.ts_ms)
                    .max()
            })
            .unwrap_or(0);
        // Copy what it printed after the last logged chunk, then watch it (again).
        let (run, pump, exit_tx) = self.attach_run(handle, &st, Some(since)).await?;
        self.spawn_waiter(&handle.run_id, run.clone(), pump, exit_tx, events)
            .await?;
        if running {
            return Ok(Adopted::Running);
        }
        let mut rx = run.exit.clone();
        let e = rx
            .wait_for(|e| e.is_some())
            .await
            .ok()
            .and_then(|e| e.clone());
        Ok(Adopted::Exited(match e {
            Some(e) => e,
            None => exit_of(d, &st.container).await,
        }))
    }

    fn as_exec(&self) -> Option<&dyn ExecCapability> {
        Some(self)
    }

    fn as_stats(&self) -> Option<&dyn StatsCapability> {
        Some(self)
    }

    fn as_netns(&self) -> Option<&dyn NetnsCapability> {
        Some(self)
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

#[async_trait]
impl ExecCapability for DockerRuntime {
    async fn exec(
        &self,
        handle: &SandboxHandle,
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
    ) -> Result<Attachment, SandboxError> {
        Ok(self.exec_with_exit(handle, command, env, tty).await?.0)
    }

    async fn exec_with_exit(
        &self,
        handle: &SandboxHandle,
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
    ) -> Result<(Attachment, tokio::sync::oneshot::Receiver<ExitInfo>), SandboxError> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        let st = state_of(handle)?;
        let d = self.engine().await?.clone();
        let user = d
            .inspect_container(&st.container, None)
            .await
            .ok()
            .and_then(|c| c.config)
            .and_then(|c| c.user);
        let ex = d
            .create_exec(
                &st.container,
                CreateExecOptions {
                    cmd: Some(
                        [
                            "/bin/sh",
                            "-c",
                            if tty { EXEC_TTY } else { EXEC },
                            "paddock",
                        ]
                        .into_iter()
                        .map(String::from)
                        .chain(command)
                        .collect(),
                    ),
                    env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    tty: Some(tty),
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                } => SandboxError::NotRunning {
                    run_id: handle.run_id.clone(),
                },
                e => engine_err("exec", e),
            })?;
        let started = d
            .start_exec(&ex.id, Some(StartExecOptions::default()))
            .await
            .map_err(|e| engine_err("exec", e))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(SandboxError::Setup {
                step: "exec".into(),
                message: "the engine detached the exec".into(),
            });
        };
        let (out_tx, out_rx) = mpsc::channel(SUB_BUFFER);
        let (in_tx, mut in_rx) = mpsc::channel::<AttachInput>(64);
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
        let exec_id = ex.id.clone();
        let d2 = d.clone();
        tokio::spawn(async move {
            // A terminal exec waits for its size (the client sends it first) or 500 ms, then
            // is released with one newline.
            let mut first = None;
            if tty {
                first = tokio::time::timeout(Duration::from_millis(500), in_rx.recv())
                    .await
                    .ok()
                    .flatten();
                if let Some(AttachInput::Resize(sz)) = &first {
                    let _ = d2
                        .resize_exec(
                            &exec_id,
                            bollard::exec::ResizeExecOptions {
                                height: sz.rows,
                                width: sz.cols,
                            },
                        )
                        .await;
                    first = None;
                }
                let _ = input.write_all(b"\n").await;
                let _ = input.flush().await;
            }
            while let Some(i) = match first.take() {
                Some(i) => Some(i),
                None => in_rx.recv().await,
            } {
                match i {
                    AttachInput::Stdin(b) => {
                        if input.write_all(&b).await.is_err() {
                            break;
                        }
                        let _ = input.flush().await;
                    }
                    AttachInput::CloseStdin => {
                        let _ = input.shutdown().await;
                    }
                    AttachInput::Resize(sz) => {
                        let _ = d2
                            .resize_exec(
                                &exec_id,
                                bollard::exec::ResizeExecOptions {
                                    height: sz.rows,
                                    width: sz.cols,
                                },
                            )
                            .await;
                    }
                    AttachInput::Signal(sig) => {
                        // The engine has no signal call for an exec: its process, by host pid.
                        if let Ok(i) = d2.inspect_exec(&exec_id).await
                            && let Some(pid) = i.pid.filter(|p| *p > 0)
                            && i.running == Some(true)
                        {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::try_from(sig).ok(),
                            );
                        }
                    }
                }
            }
        });
        let exec_id = ex.id;
        tokio::spawn(async move {
            // The pty echoes the release's newline: drop that echo.
            let mut echo = tty;
            while let Some(Ok(item)) = output.next().await {
                let (stream, data) = split_output(item, tty);
                let data = drop_echo(&mut echo, data);
                if data.is_empty() {
                    continue;
                }
                let chunk = OutputChunk {
                    ts_ms: now_ms(),
                    stream,
                    data: data.to_vec(),
                };
                if out_tx.send(chunk).await.is_err() {
                    break;
                }
            }
            drop(out_tx);
            let code = d
                .inspect_exec(&exec_id)
                .await
                .ok()
                .and_then(|i| i.exit_code)
                .map(|c| c as i32);
            let _ = exit_tx.send(ExitInfo {
                exit_code: code,
                signal: code.filter(|c| *c > 128).map(|c| c - 128),
                oom_killed: false,
                reason: None,
            });
        });
        Ok((
            Attachment {
                output: out_rx,
                input: in_tx,
            },
            exit_rx,
        ))
    }
}

#[async_trait]
impl StatsCapability for DockerRuntime {
    async fn stats(&self, handle: &SandboxHandle) -> Result<SandboxStats, SandboxError> {
        let st = state_of(handle)?;
        let d = self.engine().await?;
        let o = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let mut s = d.stats(&st.container, Some(o));
        let Some(Ok(x)) = s.next().await else {
            return Err(SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            });
        };
        Ok(SandboxStats {
            memory_bytes: x.memory_stats.and_then(|m| m.usage),
            pids: x.pids_stats.and_then(|p| p.current),
            cpu_usage_ns: x
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage),
        })
    }
}

impl DockerRuntime {
    /// The container's first process, checked against pid reuse.
    fn live_pid(&self, handle: &SandboxHandle) -> Result<i32, SandboxError> {
        let live = self
            .get(&handle.run_id)
            .map(|r| *r.pid.lock().unwrap_or_else(|e| e.into_inner()));
        let (pid, start) = match live {
            Some((pid, start)) if pid > 0 => (pid, start),
            _ => {
                let st = state_of(handle)?;
                (st.pid, st.pid_start)
            }
        };
        if pid <= 0 || (start != 0 && proc_start_time(pid) != Some(start)) {
            return Err(SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            });
        }
        Ok(pid)
    }
}

/// `/proc/<pid>/ns/net` of a container's first process; `live` answers its pid while it
/// runs, and is asked again after the open (the pid could have been reused in between).
pub(crate) fn open_netns(
    live: impl Fn() -> Result<i32, SandboxError>,
) -> Result<OwnedFd, SandboxError> {
    let pid = live()?;
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let f = File::open(&path).map_err(|e| SandboxError::io("open", path, e))?;
    live()?;
    Ok(OwnedFd::from(f))
}

/// Sockets made in a container's network namespace (root only: setns).
pub(crate) fn netns_sockets(
    ns: &NsWorker,
    netns: OwnedFd,
    kinds: &[(i32, i32)],
) -> Result<Vec<OwnedFd>, SandboxError> {
    ns.sockets(netns, kinds).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            SandboxError::Unsupported {
                message: "entering a container's network namespace needs root".into(),
                hint: "run the paddock daemon as root to use the docker and gvisor runtimes and docker:dind, or use the native runtime".into(),
            }
        } else {
            SandboxError::io("make a socket in the container's network namespace", None, e)
        }
    })
}

impl NetnsCapability for DockerRuntime {
    fn netns_fd(&self, handle: &SandboxHandle) -> Result<OwnedFd, SandboxError> {
        open_netns(|| self.live_pid(handle))
    }

    fn socket_in_netns(
        &self,
        handle: &SandboxHandle,
        domain: i32,
        ty: i32,
    ) -> Result<OwnedFd, SandboxError> {
        Ok(self
            .sockets_in_netns(handle, &[(domain, ty)])?
            .pop()
            .expect("one socket asked for"))
    }

    fn sockets_in_netns(
        &self,
        handle: &SandboxHandle,
        kinds: &[(i32, i32)],
    ) -> Result<Vec<OwnedFd>, SandboxError> {
        netns_sockets(&self.ns, self.netns_fd(handle)?, kinds)
    }

    fn release(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let Some(run) = self.get(&handle.run_id) else {
            return Ok(());
        };
        // Called from sync code: the write (one byte on a local socket) runs as a task;
        // client input waits for it (`Run::write_stdin`).
        let rt = tokio::runtime::Handle::try_current().map_err(|_| SandboxError::Setup {
            step: "release".into(),
            message: "no async runtime".into(),
        })?;
        rt.spawn(async move { run.release().await });
        Ok(())
    }
}
