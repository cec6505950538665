//! The native Linux backend: namespaces, overlayfs, cgroups, `paddock init` as PID 1.
//!
//! Process model: the runtime (in the daemon) spawns `init_exe init` with a seqpacket
//! control socket as its stdin and sends it a [`plan::Prelude`], then (possibly much later:
//! the spare of `launch`) an [`plan::InitPlan`]. Stage 1 creates the namespaces and clones
//! PID 1 with `CLONE_PARENT`, so PID 1 is the daemon's own child: the runtime waits for it
//! with a pidfd (tokio `AsyncFd`) and gets its real wait status without the daemon having
//! to be a subreaper. PID 1 builds the generic root, waits for the plan, joins the run's
//! cgroups, adds the run's mounts, `pivot_root`s, and runs the command; see [`init`] for the
//! stages and `init::pid1` for the output protocol. Sockets in a run's network namespace
//! come from one long-lived thread (`nsworker`).
//!
//! Submodules: [`plan`] (validation, run-dir layout, the plan), [`cgroup`], [`etcmask`]
//! (cached `/etc` scan), [`proto`] (wire format), [`logfmt`] (log.jsonl / exit.json),
//! [`run`] (per-run actor in the daemon), `init` (everything inside the sandbox), [`sys`]
//! (syscall wrappers; the `unsafe` lives there).
//!
//! # Use (daemon)
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! // First thing in `main`, before any thread or async runtime exists:
//! if std::env::args().nth(1).as_deref() == Some("init") {
//!     std::process::exit(paddock_sandbox::native::init_main());
//! }
//! use paddock_sandbox::native::{NativeConfig, NativeRuntime};
//! let mut cfg = NativeConfig::new(std::env::current_exe()?);
//! cfg.paddock_home = Some("/home/me/.local/share/paddock".into());
//! let runtime = NativeRuntime::new(cfg); // then use it as `Arc<dyn Runtime>`
//! # let _ = runtime; Ok(()) }
//! ```
//!
//! Identity: the daemon's uid is mapped into the sandbox as itself, or as 1000 when the
//! daemon is root (`spec.user.uid` must be the daemon's uid; the gid inside is
//! `spec.user.gid`, or 1000 for 0). Exec'd commands (`as_exec`) are confined like the
//! first and end with the sandbox; their output is not in `log.jsonl`.
//!
//! Owns: `run_dir/{layer,home,files,rootfs,control.sock,log.jsonl,exit.json}`, the run's
//! cgroups, the shared injected files under `$PADDOCK_HOME/cache/files` ([`filecache`]),
//! the spare sandbox and `$PADDOCK_HOME/cache/root` (its root's mount point, only ever
//! mounted on inside sandboxes). Never: mounts anything in the daemon's mount namespace,
//! or reads anything of the host into a sandbox that the spec did not ask for.

pub mod cgroup;
pub mod etcmask;
mod filecache;
mod init;
mod launch;
pub mod logfmt;
pub(crate) mod nsworker;
pub mod plan;
mod proto;
pub(crate) mod run;
pub(crate) mod sys;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use self::cgroup::{CgroupSystem, RunCgroups};
use self::etcmask::EtcMaskCache;
use self::plan::{Bind, InitPlan, Prelude, RunLayout};
use self::proto::Down;
use self::run::{ActorInit, OutState, Run};
use crate::{
    Adopted, AttachInput, Attachment, EventSink, ExecCapability, ExitInfo, LogQuery,
    NetnsCapability, OutputChunk, Runtime, RuntimeKind, SandboxError, SandboxHandle, SandboxSpec,
    SandboxStats, StatsCapability,
};

/// Entry point of `paddock init` (hidden subcommand of the `paddock` binary): call it when
/// `argv[1] == "init"` and exit with its return value, before starting any thread or async
/// runtime (stage 1 must be single-threaded to create a user namespace).
pub fn init_main() -> i32 {
    init::main()
}

/// Configuration of the native runtime.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    /// Binary whose first argument `init` runs [`init_main`] (the `paddock` binary itself).
    pub init_exe: PathBuf,
    /// Name of the cgroup directory under which each run gets `<run_id>` (default `paddock`).
    pub cgroup_parent: String,
    /// `$PADDOCK_HOME`: never mountable into a sandbox. When `None`, it is taken from a
    /// run directory shaped `<home>/runs/<run_id>`.
    pub paddock_home: Option<PathBuf>,
    /// How long an ended sandbox whose daemon is gone keeps unacknowledged output for a
    /// daemon to come back (default 10 minutes).
    pub linger: Duration,
    /// How long `start` waits for the command to be exec'd (default 60 s).
    pub start_timeout: Duration,
}

impl NativeConfig {
    pub fn new(init_exe: impl Into<PathBuf>) -> Self {
        NativeConfig {
            init_exe: init_exe.into(),
            cgroup_parent: "paddock".into(),
            paddock_home: None,
            linger: Duration::from_secs(600),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// What a native [`SandboxHandle`] stores in `state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NativeState {
    /// Host pid of PID 1 (0 before `start`).
    #[serde(default)]
    pub init_pid: i32,
    /// Its start time (/proc/<pid>/stat field 22), guarding against pid reuse.
    #[serde(default)]
    pub init_start: u64,
    /// Host pid of the command when it was started.
    #[serde(default)]
    pub command_pid: Option<i32>,
    #[serde(default)]
    pub cgroups: RunCgroups,
    #[serde(default)]
    pub rootless: bool,
    /// Where each injected file is bind-mounted from (chosen at create, see
    /// [`filecache`]); empty for runs created before this field existed.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// An image run's system root (its unpacked image, see [`crate::RootfsSource`]);
    /// `None`: the host's system directories.
    #[serde(default)]
    pub system_root: Option<PathBuf>,
}

/// The native Linux sandbox runtime.
pub struct NativeRuntime {
    cfg: NativeConfig,
    euid: u32,
    rootless: bool,
    cgroups: CgroupSystem,
    etc: EtcMaskCache,
    launcher: Arc<launch::Launcher>,
    nsworker: nsworker::NsWorker,
    /// Shared copies of injected files, for the home named first (see [`filecache`]).
    files: std::sync::OnceLock<(PathBuf, filecache::FileCache)>,
    /// `$PADDOCK_HOME/cache/root` (made once), for the home named first: see `prelude`.
    shared_root: std::sync::OnceLock<(PathBuf, Option<PathBuf>)>,
    /// Where image runs get their system root (none: image runs are refused).
    images: Option<Arc<dyn crate::RootfsSource>>,
    runs: Mutex<HashMap<String, Arc<Run>>>,
}

impl Drop for NativeRuntime {
    fn drop(&mut self) {
        // Sandboxes outlive the runtime: only the watching tasks stop (closing the control
        // connections), PID 1 keeps running and a new runtime can `adopt` it.
        let runs = self.runs.get_mut().unwrap_or_else(|e| e.into_inner());
        for r in runs.values() {
            if let Some(t) = r.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                t.abort();
            }
        }
    }
}

fn state_of(handle: &SandboxHandle) -> Result<NativeState, SandboxError> {
    if handle.kind != RuntimeKind::Native {
        return Err(SandboxError::InvalidSpec {
            message: format!(
                "run {} belongs to the {} runtime",
                handle.run_id,
                handle.kind.as_str()
            ),
            hint: "use the runtime that created it".into(),
        });
    }
    if handle.state.is_null() {
        return Ok(NativeState::default());
    }
    serde_json::from_value(handle.state.clone()).map_err(|e| SandboxError::InvalidSpec {
        message: format!("unreadable native sandbox handle: {e}"),
        hint: "the run was created by an incompatible paddock version".into(),
    })
}

fn make_handle(spec_run_id: &str, run_dir: &Path, st: &NativeState) -> SandboxHandle {
    SandboxHandle {
        run_id: spec_run_id.to_string(),
        run_dir: run_dir.to_path_buf(),
        kind: RuntimeKind::Native,
        state: serde_json::to_value(st).unwrap_or(serde_json::Value::Null),
    }
}

/// Make an empty file at each of `paths` (absolute, inside the sandbox) under `root` where
/// there is none, so that init can bind an injected file there on the read-only system
/// directories. Paths through a symlink or a non-directory are left alone (the bind then
/// fails with a clear step error); so are paths outside the system directories.
fn add_mount_points<'a>(root: &Path, paths: impl Iterator<Item = &'a Path>) {
    for p in paths {
        let rel: Vec<_> = p
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some(first) = rel.first() else { continue };
        if !plan::SYSTEM_DIRS
            .iter()
            .any(|d| std::ffi::OsStr::new(d) == *first)
        {
            continue;
        }
        let mut cur = root.to_path_buf();
        for (i, c) in rel.iter().enumerate() {
            cur.push(c);
            let last = i + 1 == rel.len();
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() || (!last && !m.is_dir()) => break,
                Ok(_) => {}
                Err(_) if last => {
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&cur);
                }
                Err(_) => {
                    if std::fs::create_dir(&cur).is_err() && !cur.is_dir() {
                        break;
                    }
                }
            }
        }
    }
}

fn mkdir_all(p: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| SandboxError::io("create directory", p.to_path_buf(), e))
}

/// Remove a tree the sandbox wrote into, fixing permissions that would block removal
/// (overlayfs leaves `work/work` at mode 000; the agent may create read-only directories).
pub(crate) fn remove_tree(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return std::fs::remove_file(p),
        Ok(m) => {
            if m.permissions().mode() & 0o700 != 0o700 {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            }
        }
    }
    for ent in std::fs::read_dir(p)? {
        let ent = ent?;
        remove_tree(&ent.path())?;
    }
    std::fs::remove_dir(p)
}

impl NativeRuntime {
    pub fn new(cfg: NativeConfig) -> Self {
        let euid = nix::unistd::geteuid().as_raw();
        let rootless = euid != 0;
        NativeRuntime {
            launcher: Arc::new(launch::Launcher::new(cfg.init_exe.clone())),
            nsworker: nsworker::NsWorker::default(),
            cfg,
            euid,
            rootless,
            cgroups: CgroupSystem::detect(rootless),
            etc: EtcMaskCache::new("/etc"),
            files: std::sync::OnceLock::new(),
            shared_root: std::sync::OnceLock::new(),
            images: None,
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// Let runs with an image use it as their system root, taken from `source`.
    pub fn with_images(mut self, source: Arc<dyn crate::RootfsSource>) -> Self {
        self.images = Some(source);
        self
    }

    /// The source of an image run's system root (`None` for a run on the host's).
    fn image_source(
        &self,
        spec: &SandboxSpec,
    ) -> Result<Option<&Arc<dyn crate::RootfsSource>>, SandboxError> {
        if !spec.on_image() {
            return Ok(None);
        }
        self.images
            .as_ref()
            .map(Some)
            .ok_or_else(|| SandboxError::Unsupported {
                message: "this native runtime cannot run images".into(),
                hint: "use --runtime docker or --runtime gvisor".into(),
            })
    }

    /// An image run's system root: the image's filesystem (built first when its
    /// dependencies need it, the steps going to `events`), with a mount point for each
    /// injected file that it lacks (see [`add_mount_points`]).
    async fn system_root(
        &self,
        spec: &SandboxSpec,
        events: &EventSink,
    ) -> Result<Option<PathBuf>, SandboxError> {
        let Some(source) = self.image_source(spec)? else {
            return Ok(None);
        };
        let home = self
            .paddock_home(&spec.run_dir)
            .ok_or_else(|| SandboxError::InvalidSpec {
                message: "an image run needs a paddock home for its image cache".into(),
                hint: "run it through the paddock daemon".into(),
            })?;
        let root = source
            .rootfs(spec, &home.join("cache").join("images"), events)
            .await?;
        add_mount_points(&root, spec.files.iter().map(|f| f.path.as_path()));
        Ok(Some(root))
    }

    /// Whether this runtime runs without root (unprivileged user namespaces).
    pub fn is_rootless(&self) -> bool {
        self.rootless
    }

    /// The cgroup setup this machine offers (for `paddock doctor`).
    pub fn cgroup_system(&self) -> &CgroupSystem {
        &self.cgroups
    }

    fn paddock_home(&self, run_dir: &Path) -> Option<PathBuf> {
        self.cfg.paddock_home.clone().or_else(|| {
            let runs = run_dir.parent()?;
            (runs.file_name()? == "runs")
                .then(|| runs.parent().map(Path::to_path_buf))
                .flatten()
        })
    }

    fn get(&self, run_id: &str) -> Option<Arc<Run>> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run_id)
            .cloned()
    }

    /// A stage 1 that has been sent `plan_msg`: the spare when there is a live one (see
    /// [`launch`]), else a fresh one. A spare that died just before the send is replaced.
    fn launch(&self, plan_msg: &[u8], prelude: &Prelude) -> Result<launch::Stage1, SandboxError> {
        let spare = if prelude.system_root.is_none() {
            self.launcher.take(prelude)
        } else {
            // Spares are made on the host's system directories; an image run's would fit
            // no other run.
            None
        };
        let spawn = || {
            self.launcher
                .spawn(prelude)
                .map_err(|e| SandboxError::io("start paddock init", self.cfg.init_exe.clone(), e))
        };
        let send = |s: &launch::Stage1| {
            let _ = nix::sys::socket::setsockopt(
                &s.ctl,
                nix::sys::socket::sockopt::SndBuf,
                &(plan_msg.len() + 65536),
            );
            sys::send_msg(s.ctl.as_fd(), plan_msg, None, false)
        };
        if let Some(spare) = spare {
            if send(&spare).is_ok() {
                return Ok(spare);
            }
            tracing::debug!("the spare paddock init was gone; launching a new one");
        }
        let fresh = spawn()?;
        send(&fresh).map_err(|e| SandboxError::io("send the sandbox plan", None, e))?;
        Ok(fresh)
    }

    /// What stage 1 of a run needs before its plan (see `launch`), and whether a spare
    /// can be made for it. The ids inside are the caller's, or 1000 for root (never uid 0
    /// inside). The root's mount point is `$PADDOCK_HOME/cache/root`, shared by every run
    /// (no mount source can live under it: the paddock home is never mounted), or, outside
    /// a paddock home, the run's own `rootfs` (then no spare: it would fit no other run).
    fn prelude(&self, spec: &SandboxSpec, system_root: Option<&Path>) -> (Prelude, bool) {
        let shared = self.paddock_home(&spec.run_dir).and_then(|h| {
            let (home, root) = self.shared_root.get_or_init(|| {
                let p = h.join("cache").join("root");
                (h.clone(), mkdir_all(&p).ok().map(|()| p))
            });
            (*home == h).then(|| root.clone()).flatten()
        });
        let is_shared = shared.is_some();
        let prelude = Prelude {
            uid_inside: if spec.user.uid == 0 {
                1000
            } else {
                spec.user.uid
            },
            gid_inside: if spec.user.gid == 0 {
                1000
            } else {
                spec.user.gid
            },
            root: shared.unwrap_or_else(|| RunLayout::new(&spec.run_dir).rootfs()),
            system_root: system_root.map(Path::to_path_buf),
        };
        (prelude, is_shared)
    }

    /// The directories a run needs before it starts, parents first (each one mkdir). The
    /// run's own `rootfs` only when its root is not the shared one (see [`Self::prelude`]):
    /// every inode counts, each is a millisecond on a busy disk.
    fn run_dirs(layout: &RunLayout, shared_root: bool) -> Vec<PathBuf> {
        let mut dirs = vec![layout.layer(), layout.upper(), layout.work(), layout.home()];
        if !shared_root {
            dirs.push(layout.rootfs());
        }
        dirs
    }

    /// Makes the run's directories unless they are there already: `lay_out` makes them
    /// parents first, so the last one stands for all (one stat, not a mkdir and a stat for
    /// each).
    fn ensure_run_dirs(layout: &RunLayout, shared_root: bool) -> Result<(), SandboxError> {
        let dirs = Self::run_dirs(layout, shared_root);
        if !dirs[dirs.len() - 1].is_dir() {
            for d in dirs {
                mkdir_all(&d)?;
            }
        }
        Ok(())
    }

    /// Where each of `spec.files` is bind-mounted from: one shared read-only copy per
    /// content under the paddock home, or (a run directory outside any paddock home) a
    /// copy in the run's own `files/`.
    fn injected_sources(&self, spec: &SandboxSpec) -> Result<Vec<PathBuf>, SandboxError> {
        let home = self.paddock_home(&spec.run_dir);
        let shared = home.as_ref().and_then(|h| {
            let (home, cache) = self
                .files
                .get_or_init(|| (h.clone(), filecache::FileCache::new(h)));
            (home == h).then_some(cache)
        });
        let layout = RunLayout::new(&spec.run_dir);
        let mut out = Vec::with_capacity(spec.files.len());
        for (i, f) in spec.files.iter().enumerate() {
            let p = match shared {
                Some(cache) => cache.path_for(&f.contents).map_err(|e| {
                    SandboxError::io("write injected file", Some(f.path.clone()), e)
                })?,
                None => {
                    mkdir_all(&layout.files())?;
                    let p = layout.files().join(i.to_string());
                    std::fs::write(&p, &f.contents)
                        .map_err(|e| SandboxError::io("write injected file", p.clone(), e))?;
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644));
                    p
                }
            };
            out.push(p);
        }
        Ok(out)
    }

    fn plan(
        &self,
        spec: &SandboxSpec,
        cg: &RunCgroups,
        sources: Vec<PathBuf>,
        on_image: bool,
    ) -> InitPlan {
        let layout = RunLayout::new(&spec.run_dir);
        let mut binds = Vec::new();
        let mut writable: Vec<PathBuf> = vec![spec.workspace.clone(), "/tmp".into()];
        if let Some(home) = plan::home_target(spec) {
            binds.push(Bind {
                source: layout.home(),
                target: home.clone(),
                read_only: false,
                is_dir: true,
            });
            writable.push(home);
        }
        for m in &spec.mounts {
            let is_dir = std::fs::metadata(&m.source)
                .map(|m| m.is_dir())
                .unwrap_or(true);
            binds.push(Bind {
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                is_dir,
            });
            if !m.read_only {
                writable.push(m.target.clone());
            }
        }
        for (f, source) in spec.files.iter().zip(sources) {
            binds.push(Bind {
                source,
                target: f.path.clone(),
                read_only: true,
                is_dir: false,
            });
        }
        for d in [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/tty",
            "/dev/pts",
            "/dev/shm",
            "/dev/ptmx",
        ] {
            writable.push(d.into());
        }
        let root_mode = spec.user.uid == 0;
        InitPlan {
            run_id: spec.run_id.clone(),
            hostname: spec.name.clone(),
            run_dir: spec.run_dir.clone(),
            command: spec.command.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            workspace: spec.workspace.clone(),
            workspace_mode: spec.workspace_mode,
            binds,
            // An image's /etc holds none of the host's secrets.
            masks: if on_image {
                Vec::new()
            } else {
                self.etc.masks(root_mode)
            },
            cgroup_procs: cg.procs_files(),
            rootless: self.rootless,
            tty: spec.tty,
            stdin: spec.stdin,
            tty_size: spec.tty_size,
            hold: spec.hold_until_released,
            writable_paths: writable,
            linger_secs: self.cfg.linger.as_secs(),
        }
    }

    fn register(&self, run: Arc<Run>) {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run.run_id.clone(), run);
    }

    fn new_run(
        &self,
        run_id: &str,
        run_dir: &Path,
        cgroups: RunCgroups,
    ) -> (
        Arc<Run>,
        mpsc::UnboundedReceiver<run::DownMsg>,
        watch::Sender<Option<ExitInfo>>,
    ) {
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let run = Arc::new(Run {
            run_id: run_id.to_string(),
            layout: RunLayout::new(run_dir),
            cgroups,
            init_pid: AtomicI32::new(0),
            init_start: Mutex::new(0),
            pidfd: Mutex::new(None),
            netns: Mutex::new(None),
            down: down_tx,
            out: Mutex::new(OutState {
                subs: Vec::new(),
                log_len: 0,
                finished: false,
            }),
            exit: exit_rx,
            task: Mutex::new(None),
        });
        (run, down_rx, exit_tx)
    }

    async fn wait_run(run: &Run) -> ExitInfo {
        let mut rx = run.exit.clone();
        loop {
            if let Some(i) = rx.borrow_and_update().clone() {
                return i;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone().unwrap_or(ExitInfo {
                    exit_code: None,
                    signal: None,
                    oom_killed: false,
                    reason: Some("the runtime stopped watching this sandbox".into()),
                });
            }
        }
    }

    fn finished_exit(&self, handle: &SandboxHandle) -> Result<ExitInfo, SandboxError> {
        run::read_exit_json(&RunLayout::new(&handle.run_dir))
            .map(|r| r.info())
            .ok_or_else(|| SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            })
    }

    /// Connect to a running sandbox's `control.sock` (blocking, non-primary).
    fn connect_control(run_dir: &Path) -> std::io::Result<OwnedFd> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
        let path = RunLayout::new(run_dir).control_sock();
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let dir_guard;
        let addr = if path.as_os_str().len() < 100 {
            UnixAddr::new(&path)?
        } else {
            dir_guard = std::fs::File::open(run_dir)?;
            UnixAddr::new(format!("/proc/self/fd/{}/control.sock", dir_guard.as_raw_fd()).as_str())?
        };
        connect(sock.as_raw_fd(), &addr)?;
        let tv = nix::sys::time::TimeVal::new(5, 0);
        let _ = nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv);
        Ok(sock)
    }

    /// Ask init for an fd over a one-shot connection (rootless netns access).
    fn request_fd(run_dir: &Path, req: &Down) -> Result<OwnedFd, SandboxError> {
        let conn = Self::connect_control(run_dir).map_err(|e| {
            SandboxError::io("connect to sandbox init", run_dir.join("control.sock"), e)
        })?;
        sys::send_msg(conn.as_fd(), &proto::encode_json(req), None, false)
            .map_err(|e| SandboxError::io("send request to sandbox init", None, e))?;
        let mut buf = vec![0u8; 4096];
        let (n, mut fds) = sys::recv_msg(conn.as_fd(), &mut buf, false)
            .map_err(|e| SandboxError::io("receive fd from sandbox init", None, e))?;
        if n == 0 || buf[0] != proto::TAG_JSON {
            return Err(SandboxError::Setup {
                step: "netns".into(),
                message: "sandbox init closed the connection".into(),
            });
        }
        match serde_json::from_slice::<proto::Up>(&buf[1..n]) {
            Ok(proto::Up::Fd { error: None, .. }) if !fds.is_empty() => Ok(fds.remove(0)),
            Ok(proto::Up::Fd { error: Some(e), .. }) => Err(SandboxError::io(
                "create socket in sandbox",
                None,
                std::io::Error::other(e),
            )),
            _ => Err(SandboxError::Setup {
                step: "netns".into(),
                message: "unexpected reply from sandbox init".into(),
            }),
        }
    }

    /// PID 1 of a handle, if it is still the same process.
    fn live_init(st: &NativeState) -> Option<OwnedFd> {
        if st.init_pid <= 0 {
            return None;
        }
        if run::proc_start_time(st.init_pid)? != st.init_start {
            return None;
        }
        let fd = sys::pidfd_open(st.init_pid).ok()?;
        // Re-check after opening: the pidfd now pins this exact process.
        (run::proc_start_time(st.init_pid)? == st.init_start).then_some(fd)
    }
}

#[async_trait]
impl Runtime for NativeRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Native
    }

    fn lay_out(&self, run_dir: &Path) -> Result<(), SandboxError> {
        let layout = RunLayout::new(run_dir);
        // A ready directory is not under `runs/` yet: whether its run will have the shared
        // root is the runtime's configuration, not its path.
        for d in Self::run_dirs(&layout, self.cfg.paddock_home.is_some()) {
            mkdir_all(&d)?;
        }
        // Directories only: files laid out here too (the log, the exit record's temporary)
        // made this one thread fall behind in bursts of creates.
        Ok(())
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle, SandboxError> {
        plan::validate(spec, self.paddock_home(&spec.run_dir).as_deref())?;
        // The daemon's own uid is what gets mapped (a process can map only its own id
        // without privileges in the parent namespace); the gid inside follows the spec.
        if spec.user.uid != self.euid {
            return Err(SandboxError::InvalidSpec {
                message: format!("sandbox user {} is not the daemon's user {}", spec.user.uid, self.euid),
                hint: "the native runtime maps the daemon's own uid into the sandbox; run one daemon per user".into(),
            });
        }
        self.cgroups.check_limits(&spec.limits, self.rootless)?;
        // An image run's root is found (and built) by its start, whose init steps show it.
        let on_image = self.image_source(spec)?.is_some();
        let (prelude, shared_root) = self.prelude(spec, None);
        // The run's directories are made by the start that needs them (`ensure_run_dirs`),
        // if the daemon did not lay them out ahead of time: a run that is only created
        // allocates no inode here (on a busy ext4 each one costs up to a millisecond).
        // The start that follows finds a sandbox already built.
        if shared_root && !on_image {
            self.launcher.expect(prelude);
            self.launcher.refill();
        }
        let st = NativeState {
            rootless: self.rootless,
            files: self.injected_sources(spec)?,
            ..NativeState::default()
        };
        Ok(make_handle(&spec.run_id, &spec.run_dir, &st))
    }

    async fn start(
        &self,
        handle: &SandboxHandle,
        spec: &SandboxSpec,
        events: EventSink,
    ) -> Result<SandboxHandle, SandboxError> {
        let created = state_of(handle)?;
        if let Some(r) = self.get(&spec.run_id)
            && r.exit_info().is_none()
        {
            return Err(SandboxError::InvalidSpec {
                message: format!("run {} is already running", spec.run_id),
                hint: "stop it first".into(),
            });
        }
        let layout = RunLayout::new(&spec.run_dir);
        let system_root = match created.system_root {
            Some(r) => Some(r),
            None => self.system_root(spec, &events).await?,
        };
        let (prelude, shared_root) = self.prelude(spec, system_root.as_deref());
        Self::ensure_run_dirs(&layout, shared_root)?;
        let cg = self.cgroups.create(
            &self.cfg.cgroup_parent,
            &spec.run_id,
            &spec.limits,
            self.rootless,
        )?;
        let cleanup = |cg: &RunCgroups| {
            cg.remove();
        };
        // The daemon keeps specs without the files' contents: their copies were placed at
        // create. Runs created before copies were recorded used `files/<index>`.
        let sources = if created.files.len() == spec.files.len() {
            created.files.clone()
        } else {
            (0..spec.files.len())
                .map(|i| layout.files().join(i.to_string()))
                .collect()
        };
        let plan = self.plan(spec, &cg, sources.clone(), system_root.is_some());
        let _ = std::fs::remove_file(layout.exit_json());
        let (log, _) = match run::open_log(&layout, true) {
            Ok(v) => v,
            Err(e) => {
                cleanup(&cg);
                return Err(e);
            }
        };

        let plan_msg = proto::encode_json(&plan);
        self.launcher.settle(Duration::from_millis(100)).await;
        let stage1 = match self.launch(&plan_msg, &prelude) {
            Ok(s) => s,
            Err(e) => {
                cleanup(&cg);
                return Err(e);
            }
        };
        let ours = stage1.ctl;

        let (run, down_rx, exit_tx) = self.new_run(&spec.run_id, &spec.run_dir, cg.clone());
        let (started_tx, started_rx) = oneshot::channel();
        let task = run::spawn_actor(ActorInit {
            run: run.clone(),
            conn: Some(ours),
            pidfd: None,
            down_rx,
            exit_tx,
            events,
            started: Some(started_tx),
            last_seq: 0,
            log,
        });
        *run.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        self.register(run.clone());

        let res = match tokio::time::timeout(self.cfg.start_timeout, started_rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SandboxError::Setup {
                step: "starting".into(),
                message: "the sandbox watcher stopped".into(),
            }),
            Err(_) => {
                let _ = run.signal_init(libc::SIGKILL);
                Err(SandboxError::Setup {
                    step: "starting".into(),
                    message: "timed out waiting for the command to start".into(),
                })
            }
        };
        let command_pid = match res {
            Ok(p) => p,
            Err(e) => {
                // Let the watcher record the failure, then clean up what start created.
                let _ = tokio::time::timeout(Duration::from_secs(5), Self::wait_run(&run)).await;
                run.cgroups.remove();
                return Err(e);
            }
        };
        // Launch the next start's stage 1 once the command runs, so the launch (an exec of
        // this binary) does not compete with this start: now, or for a held command when it
        // is released.
        if !spec.hold_until_released {
            self.launcher.refill();
        }
        let st = NativeState {
            init_pid: run.init_pid.load(Ordering::SeqCst),
            init_start: *run.init_start.lock().unwrap_or_else(|e| e.into_inner()),
            command_pid,
            cgroups: cg,
            rootless: self.rootless,
            files: sources,
            system_root,
        };
        Ok(make_handle(&spec.run_id, &spec.run_dir, &st))
    }

    async fn attach(&self, handle: &SandboxHandle) -> Result<Attachment, SandboxError> {
        let run = self
            .get(&handle.run_id)
            .ok_or_else(|| SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            })?;
        let (rx, _) = run.subscribe();
        let output = rx.ok_or_else(|| SandboxError::NotRunning {
            run_id: handle.run_id.clone(),
        })?;
        let (in_tx, mut in_rx) = mpsc::channel::<AttachInput>(256);
        let down = run.down.clone();
        tokio::spawn(async move {
            while let Some(i) = in_rx.recv().await {
                let msg = encode_input(i);
                if down.send(msg).is_err() {
                    break;
                }
            }
        });
        Ok(Attachment {
            output,
            input: in_tx,
        })
    }

    async fn wait(&self, handle: &SandboxHandle) -> Result<ExitInfo, SandboxError> {
        match self.get(&handle.run_id) {
            Some(run) => Ok(Self::wait_run(&run).await),
            None => self.finished_exit(handle),
        }
    }

    async fn stop(
        &self,
        handle: &SandboxHandle,
        grace: Duration,
    ) -> Result<ExitInfo, SandboxError> {
        let Some(run) = self.get(&handle.run_id) else {
            return self.finished_exit(handle);
        };
        if let Some(i) = run.exit_info() {
            return Ok(i);
        }
        // PID 1 forwards SIGTERM to the command's process group.
        let _ = run.signal_init(libc::SIGTERM);
        if let Ok(i) = tokio::time::timeout(grace, Self::wait_run(&run)).await {
            return Ok(i);
        }
        // SIGKILL to PID 1 ends the whole pid namespace.
        let _ = run.signal_init(libc::SIGKILL);
        match tokio::time::timeout(Duration::from_secs(10), Self::wait_run(&run)).await {
            Ok(i) => Ok(i),
            Err(_) => Err(SandboxError::Setup {
                step: "stopping".into(),
                message: "the sandbox did not end after SIGKILL".into(),
            }),
        }
    }

    async fn kill(&self, handle: &SandboxHandle, signal: i32) -> Result<(), SandboxError> {
        let run = self
            .get(&handle.run_id)
            .ok_or_else(|| SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            })?;
        if run.exit_info().is_some() {
            return Err(SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            });
        }
        if signal == libc::SIGKILL {
            return run
                .signal_init(libc::SIGKILL)
                .map_err(|e| SandboxError::io("kill sandbox", None, e));
        }
        run.send(&Down::Signal { signal });
        Ok(())
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
        let layout = RunLayout::new(&handle.run_dir);
        let run = self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&handle.run_id);
        let mut cgroups = st.cgroups.clone();
        if let Some(run) = run {
            if run.exit_info().is_none() {
                let _ = run.signal_init(libc::SIGKILL);
            }
            // The watcher ends once PID 1 is reaped; it must not be cut short (a zombie would
            // be left behind).
            let task = run.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut t) = task
                && tokio::time::timeout(Duration::from_secs(10), &mut t)
                    .await
                    .is_err()
            {
                let _ = run.signal_init(libc::SIGKILL);
                if tokio::time::timeout(Duration::from_secs(5), &mut t)
                    .await
                    .is_err()
                {
                    t.abort();
                }
            }
            if cgroups.dirs.is_empty() {
                cgroups = run.cgroups.clone();
            }
        } else if let Some(pidfd) = Self::live_init(&st) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            if let Some(afd) = run::async_fd(pidfd, tokio::io::Interest::READABLE) {
                let _ = tokio::time::timeout(Duration::from_secs(10), afd.readable()).await;
                // Reap it if it is our child (adopted-but-unwatched runs of this process).
                let _ = sys::waitid_pidfd(afd.get_ref().as_fd());
            }
        }
        let failed = tokio::task::spawn_blocking(move || cgroups.remove())
            .await
            .unwrap_or_default();
        for p in [
            layout.layer(),
            layout.rootfs(),
            layout.files(),
            layout.home(),
        ] {
            let p2 = p.clone();
            tokio::task::spawn_blocking(move || remove_tree(&p2))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|e| SandboxError::io("remove run directory", p, e))?;
        }
        for f in [
            layout.control_sock(),
            layout.run_dir.join("exit.json.tmp"),
            layout.run_dir.join("exit.json.init.tmp"),
        ] {
            let _ = std::fs::remove_file(f);
        }
        if let Some((p, e)) = failed.into_iter().next() {
            return Err(SandboxError::io("remove cgroup", p, e));
        }
        Ok(())
    }

    async fn adopt(
        &self,
        handle: &SandboxHandle,
        events: EventSink,
    ) -> Result<Adopted, SandboxError> {
        let st = state_of(handle)?;
        if let Some(run) = self.get(&handle.run_id) {
            return Ok(match run.exit_info() {
                Some(i) => Adopted::Exited(i),
                None => Adopted::Running,
            });
        }
        let layout = RunLayout::new(&handle.run_dir);
        let Some(pidfd) = Self::live_init(&st) else {
            let mut info = match run::read_exit_json(&layout) {
                Some(r) => r.info(),
                None => ExitInfo {
                    exit_code: None,
                    signal: None,
                    oom_killed: false,
                    reason: Some("ended while the daemon was not running".into()),
                },
            };
            if st.cgroups.oom_killed() && !info.oom_killed {
                info.oom_killed = true;
                info.reason = Some("out of memory".into());
            }
            let _ = run::write_exit_json(&layout, &info);
            return Ok(Adopted::Exited(info));
        };
        let conn = Self::connect_control(&handle.run_dir).ok();
        let last_seq = logfmt::last_seq(&layout.log());
        if let Some(c) = &conn {
            let _ = sys::send_msg(c.as_fd(), &proto::encode_json(&Down::Hello), None, false);
            let _ = sys::send_msg(
                c.as_fd(),
                &proto::encode_json(&Down::Ack { seq: last_seq }),
                None,
                false,
            );
        }
        let (log, len) = run::open_log(&layout, false)?;
        let (run, down_rx, exit_tx) =
            self.new_run(&handle.run_id, &handle.run_dir, st.cgroups.clone());
        run.init_pid.store(st.init_pid, Ordering::SeqCst);
        *run.init_start.lock().unwrap_or_else(|e| e.into_inner()) = st.init_start;
        run.out.lock().unwrap_or_else(|e| e.into_inner()).log_len = len;
        if let Ok(dup) = pidfd.try_clone() {
            *run.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(dup));
        }
        let task = run::spawn_actor(ActorInit {
            run: run.clone(),
            conn,
            pidfd: Some(pidfd),
            down_rx,
            exit_tx,
            events,
            started: None,
            last_seq,
            log,
        });
        *run.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        self.register(run);
        Ok(Adopted::Running)
    }

    fn as_stats(&self) -> Option<&dyn StatsCapability> {
        Some(self)
    }

    fn as_exec(&self) -> Option<&dyn ExecCapability> {
        Some(self)
    }

    fn as_netns(&self) -> Option<&dyn NetnsCapability> {
        Some(self)
    }
}

fn encode_input(i: AttachInput) -> Vec<u8> {
    match i {
        AttachInput::Stdin(data) => {
            let mut m = Vec::with_capacity(data.len() + 1);
            m.push(proto::TAG_STDIN);
            m.extend_from_slice(&data);
            m
        }
        AttachInput::CloseStdin => proto::encode_json(&Down::CloseStdin),
        AttachInput::Resize(s) => proto::encode_json(&Down::Resize {
            rows: s.rows,
            cols: s.cols,
        }),
        AttachInput::Signal(signal) => proto::encode_json(&Down::Signal { signal }),
    }
}

/// `exec`: a new connection to init carries the command's output, input and exit. Exec'd
/// commands are not in `log.jsonl`, and end with the sandbox.
#[async_trait]
impl ExecCapability for NativeRuntime {
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
    ) -> Result<(Attachment, oneshot::Receiver<ExitInfo>), SandboxError> {
        if command.is_empty()
            || command
                .iter()
                .chain(env.iter().flat_map(|(k, v)| [k, v]))
                .any(|s| s.contains('\0'))
        {
            return Err(SandboxError::InvalidSpec {
                message: "exec needs a command without NUL bytes".into(),
                hint: "give a command after `--`".into(),
            });
        }
        let st = state_of(handle)?;
        let not_running = || SandboxError::NotRunning {
            run_id: handle.run_id.clone(),
        };
        match self.get(&handle.run_id) {
            Some(r) if r.exit_info().is_some() => return Err(not_running()),
            Some(_) => {}
            None => {
                Self::live_init(&st).ok_or_else(not_running)?;
            }
        }
        let conn = Self::connect_control(&handle.run_dir).map_err(|_| not_running())?;
        let req = Down::Exec {
            command,
            env,
            tty,
            tty_size: None,
        };
        sys::send_msg(conn.as_fd(), &proto::encode_json(&req), None, false)
            .map_err(|e| SandboxError::io("send exec request", None, e))?;
        sys::set_nonblocking(conn.as_fd())
            .map_err(|e| SandboxError::io("exec connection", None, e))?;
        let conn = run::async_fd(
            conn,
            tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
        )
        .ok_or_else(|| {
            SandboxError::io(
                "exec connection",
                None,
                std::io::Error::other("cannot register"),
            )
        })?;
        let (out_tx, out_rx) = mpsc::channel::<OutputChunk>(256);
        let (in_tx, mut in_rx) = mpsc::channel::<AttachInput>(256);
        let (exit_tx, exit_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; proto::MAX_MESSAGE];
            let mut exit: Option<ExitInfo> = None;
            let mut reason: Option<String> = None;
            let mut input_open = true;
            'outer: loop {
                tokio::select! {
                    r = conn.readable() => {
                        let Ok(mut g) = r else { break };
                        g.clear_ready();
                        drop(g);
                        loop {
                            match sys::recv_msg(conn.get_ref().as_fd(), &mut buf, true) {
                                Ok((0, _)) => break 'outer,
                                Ok((n, _)) => match buf[0] {
                                    proto::TAG_OUTPUT => {
                                        if let Some(o) = proto::decode_output(&buf[1..n]) {
                                            let c = OutputChunk { ts_ms: o.ts_ms, stream: o.stream, data: o.data.to_vec() };
                                            // The client is gone: dropping the connection ends the command.
                                            if out_tx.send(c).await.is_err() {
                                                break 'outer;
                                            }
                                        }
                                    }
                                    proto::TAG_JSON => match serde_json::from_slice::<proto::Up>(&buf[1..n]) {
                                        Ok(proto::Up::ExecFailed { reason: r, .. }) => reason = Some(r),
                                        Ok(proto::Up::Exited { code, signal, reason: r }) => {
                                            exit = Some(ExitInfo { exit_code: Some(code), signal, oom_killed: false, reason: r.or(reason.clone()) });
                                        }
                                        Ok(proto::Up::SetupFailed { message, .. }) => {
                                            exit = Some(ExitInfo { exit_code: Some(125), signal: None, oom_killed: false, reason: Some(message) });
                                        }
                                        _ => {}
                                    },
                                    _ => {}
                                },
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                // Init closed with our input unread (stdin's end, a resize):
                                // Linux reports the reset before the messages init sent first
                                // (its `Exited` among them) and clears it, so read on.
                                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                                Err(_) => break 'outer,
                            }
                        }
                    }
                    i = in_rx.recv(), if input_open => match i {
                        None => input_open = false,
                        Some(i) => {
                            let msg = encode_input(i);
                            // Init may have closed already: what it sent before (the
                            // exit) is still to be read, so stop sending, not reading.
                            if conn.async_io(tokio::io::Interest::WRITABLE, |fd| sys::send_msg(fd.as_fd(), &msg, None, true)).await.is_err() {
                                input_open = false;
                            }
                        }
                    },
                }
            }
            let _ = exit_tx.send(exit.unwrap_or(ExitInfo {
                exit_code: None,
                signal: None,
                oom_killed: false,
                reason: Some(reason.unwrap_or_else(|| "the sandbox ended".into())),
            }));
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
impl StatsCapability for NativeRuntime {
    async fn stats(&self, handle: &SandboxHandle) -> Result<SandboxStats, SandboxError> {
        let st = state_of(handle)?;
        let cg = match self.get(&handle.run_id) {
            Some(r) => r.cgroups.clone(),
            None => st.cgroups,
        };
        Ok(cg.stats())
    }
}

impl NetnsCapability for NativeRuntime {
    fn netns_fd(&self, handle: &SandboxHandle) -> Result<OwnedFd, SandboxError> {
        let not_running = || SandboxError::NotRunning {
            run_id: handle.run_id.clone(),
        };
        let st = state_of(handle)?;
        if let Some(run) = self.get(&handle.run_id) {
            if run.exit_info().is_some() {
                return Err(not_running());
            }
            if let Some(fd) = run.netns.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                return fd
                    .try_clone()
                    .map_err(|e| SandboxError::io("dup netns fd", None, e));
            }
        }
        let pidfd = Self::live_init(&st).ok_or_else(not_running)?;
        let fd = if self.rootless {
            Self::request_fd(&handle.run_dir, &Down::NetnsFd { id: 1 })?
        } else {
            let p = format!("/proc/{}/ns/net", st.init_pid);
            std::fs::File::open(&p)
                .map_err(|e| SandboxError::io("open netns", PathBuf::from(p), e))?
                .into()
        };
        drop(pidfd);
        if let Some(run) = self.get(&handle.run_id)
            && let Ok(dup) = fd.try_clone()
        {
            *run.netns.lock().unwrap_or_else(|e| e.into_inner()) = Some(dup);
        }
        Ok(fd)
    }

    fn socket_in_netns(
        &self,
        handle: &SandboxHandle,
        domain: i32,
        ty: i32,
    ) -> Result<OwnedFd, SandboxError> {
        if self.rootless {
            // setns needs CAP_SYS_ADMIN in our own user namespace; init creates it for us.
            let st = state_of(handle)?;
            Self::live_init(&st).ok_or_else(|| SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            })?;
            return Self::request_fd(&handle.run_dir, &Down::Socket { id: 1, domain, ty });
        }
        let mut fds = self.sockets_in_netns(handle, &[(domain, ty)])?;
        fds.pop().ok_or_else(|| {
            SandboxError::io("socket in netns", None, std::io::Error::other("no socket"))
        })
    }

    fn sockets_in_netns(
        &self,
        handle: &SandboxHandle,
        kinds: &[(i32, i32)],
    ) -> Result<Vec<OwnedFd>, SandboxError> {
        if self.rootless {
            return kinds
                .iter()
                .map(|&(domain, ty)| self.socket_in_netns(handle, domain, ty))
                .collect();
        }
        // The runtime's netns thread enters the run's namespace and makes them all.
        let ns = self.netns_fd(handle)?;
        self.nsworker
            .sockets(ns, kinds)
            .map_err(|e| SandboxError::io("socket in netns", None, e))
    }

    fn release(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let run = self
            .get(&handle.run_id)
            .filter(|r| r.exit_info().is_none())
            .ok_or_else(|| SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            })?;
        run.send(&Down::Release);
        self.launcher.refill();
        Ok(())
    }
}
