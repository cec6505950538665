//! The run manager: run records, names, the state machine, and driving the runtime.
//!
//! Every transition is checked against [`RunState::can_become`], persisted to state.db,
//! and only then published on the bus and acknowledged to the caller.
//!
//! Never: talks HTTP (that is `server`), or touches a sandbox other than through the
//! [`Runtime`] trait.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_api::{CreateRun, Run, RunState, RunStateChange, WaitResult, WorkspaceMode};
use paddock_sandbox::{
    EventSink, ExitInfo, MountSpec, Runtime, RuntimeKind, SandboxEvent, SandboxHandle, SandboxSpec,
    SandboxUser, TtySize,
};

use crate::DaemonError;
use crate::audit::LogRef;
use crate::bus::EventBus;
use crate::egress::Egress;
use crate::grants::Grants;
use crate::home::Home;
use crate::names::{check_dns_label, new_run_id, random_name};
use crate::store::{RunRecord, Store, now_ms};

/// `HOME` inside every sandbox (a private directory of the run).
pub const SANDBOX_HOME: &str = "/home/paddock";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Grace between SIGTERM and SIGKILL when the caller names none.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the end of a run waits for its network records to reach the bus and the
/// audit queue (they are normally there within milliseconds).
const NET_RECORD_DRAIN: Duration = Duration::from_secs(5);

/// Who asked (from SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

pub struct RunManager {
    home: Home,
    store: Store,
    bus: EventBus,
    runtime: Arc<dyn Runtime>,
    /// Every run's network: proxy, DNS stub, credential injection.
    egress: Arc<Egress>,
    /// Serialises check-then-write sequences (name uniqueness, transitions).
    transitions: Mutex<()>,
    /// Handles of sandboxes this daemon started or adopted.
    handles: Mutex<HashMap<String, SandboxHandle>>,
    /// The secret store (`$PADDOCK_HOME/secrets`) and the `/v1/grants` operations.
    grants: Arc<Grants>,
    /// Hostname routing (set once at daemon start; see `crate::routing`).
    routing: std::sync::OnceLock<Arc<crate::routing::Routing>>,
    /// Run directories laid out ahead of time (see `crate::rundirs`).
    run_dirs: Arc<crate::rundirs::RunDirs>,
    /// Git worktree runs (`paddock run --wt`; see `crate::worktree`).
    worktrees: Arc<crate::worktree::Worktrees>,
    /// `docker:host` sockets (see `crate::dockerhost`).
    docker_host: crate::dockerhost::DockerHost,
    /// docker:dind's sidecars and docker:host's network holders (see
    /// `crate::dockerhost::dind`).
    sidecars: crate::dockerhost::dind::Sidecars,
}

impl RunManager {
    pub fn new(
        home: Home,
        store: Store,
        bus: EventBus,
        runtime: Arc<dyn Runtime>,
        grants: Arc<Grants>,
        egress: Arc<Egress>,
    ) -> Arc<Self> {
        let rt = runtime.clone();
        let run_dirs = crate::rundirs::RunDirs::new(
            &home.runs_dir(),
            Box::new(move |d: &Path| rt.lay_out(d).map_err(std::io::Error::other)),
        );
        run_dirs.refill();
        Arc::new(RunManager {
            run_dirs,
            worktrees: crate::worktree::Worktrees::new(&home, bus.clone()),
            docker_host: crate::dockerhost::DockerHost::new(bus.clone(), home.root()),
            sidecars: crate::dockerhost::dind::Sidecars::new(home.root()),
            home,
            store,
            bus,
            runtime,
            egress,
            transitions: Mutex::new(()),
            handles: Mutex::new(HashMap::new()),
            grants,
            routing: std::sync::OnceLock::new(),
        })
    }

    pub fn grants(&self) -> &Arc<Grants> {
        &self.grants
    }

    /// Attach hostname routing (once, at daemon start).
    pub fn set_routing(&self, routing: Arc<crate::routing::Routing>) {
        let _ = self.routing.set(routing);
    }

    pub fn routing(&self) -> Option<&Arc<crate::routing::Routing>> {
        self.routing.get()
    }

    /// The sandbox of a run this daemon started or re-adopted (the router dials into it).
    pub fn live_handle(&self, id: &str) -> Option<SandboxHandle> {
        self.handles
            .lock()
            .expect("handles lock poisoned")
            .get(id)
            .cloned()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// (total, active) run counts.
    pub fn counts(&self) -> Result<(u64, u64), DaemonError> {
        self.store.counts()
    }

    pub fn list(&self, all: bool) -> Result<Vec<Run>, DaemonError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|r| r.run)
            .filter(|r| all || !r.state.is_terminal())
            .collect())
    }

    /// Resolve a user's run reference: exact id, then id prefix, then exact name.
    pub fn resolve(&self, reference: &str) -> Result<RunRecord, DaemonError> {
        let not_found = || DaemonError::RunNotFound {
            reference: reference.to_string(),
        };
        if reference.is_empty() || reference.len() > 128 {
            return Err(not_found());
        }
        if let Some(r) = self.store.get(reference)? {
            return Ok(r);
        }
        // Matching happens in SQL: only the matching rows are read, not the run history.
        let prefixed = self.store.with_id_prefix(reference)?;
        let by_prefix: Vec<&RunRecord> = prefixed.iter().collect();
        if by_prefix.len() > 1 {
            return Err(ambiguous(reference, &by_prefix));
        }
        if let Some(r) = by_prefix.first() {
            return Ok((*r).clone());
        }
        // Names are unique among live runs; an ended run may share a live run's name,
        // and then the live one is meant.
        let named = self.store.with_name(reference)?;
        let by_name: Vec<&RunRecord> = named.iter().collect();
        let live: Vec<&RunRecord> = by_name
            .iter()
            .copied()
            .filter(|r| !r.run.state.is_terminal())
            .collect();
        match (live.len(), by_name.len()) {
            (1, _) => Ok(live[0].clone()),
            (0, 1) => Ok(by_name[0].clone()),
            (0, 0) => Err(not_found()),
            _ => Err(ambiguous(
                reference,
                if live.is_empty() { &by_name } else { &live },
            )),
        }
    }

    /// Create a run record and its sandbox (not started): the request is checked, the
    /// network and the worktree prepared, a name chosen, the sandbox made, the record
    /// stored, then announced. A failure at any step leaves nothing behind but a worktree
    /// (which a later `--wt` on the branch resumes).
    pub async fn create(&self, mut req: CreateRun, caller: Caller) -> Result<Run, DaemonError> {
        let mut checked = self.check_request(&req)?;
        let on_image = req.image.is_some() || !checked.dependencies.is_empty();
        checked.runtime = Some(self.choose_runtime(checked.runtime, on_image).await?);
        if let Some(routing) = self.routing() {
            routing.check_create(&req.ports, &checked.network).await?;
        }
        // The network before the sandbox: grants are checked and placeholders drawn here.
        let net = self.prepare_network(checked.network.clone(), &req.grants)?;
        let worktree = self.prepare_worktree(&mut req)?;
        let made = self
            .create_checked(&req, checked, net, worktree.clone(), caller)
            .await;
        if made.is_err()
            && let Some(w) = &worktree
        {
            self.worktrees.release(&w.path);
        }
        made
    }

    async fn create_checked(
        &self,
        req: &CreateRun,
        checked: CheckedRequest,
        mut net: crate::egress::SandboxAdditions,
        worktree: Option<crate::worktree::Worktree>,
        caller: Caller,
    ) -> Result<Run, DaemonError> {
        let id = new_run_id();
        let run_dir = self.home.run_dir(&id);
        let workspace = worktree
            .as_ref()
            .map_or(checked.workspace, |w| w.path.clone());
        let name = self.choose_name(&id, req.name.as_deref())?;
        // A directory laid out ahead of time when there is one; else the run's directories
        // are made as they are needed (its audit log by the writer, the rest by its start):
        // no new inode on this path either way.
        self.run_dirs.claim(&run_dir);
        let agent_state = self.agent_state(
            req,
            &workspace,
            std::mem::take(&mut net.login_files),
            caller,
        )?;
        // (A worktree run's workspace mode is bind: see `prepare_worktree`.)
        let docker_host_mount = match checked.services.first() {
            Some(service) => {
                let private_engine = (*service == paddock_config::Service::DockerDind)
                    .then(|| crate::dockerhost::dind::socket(&run_dir));
                if private_engine.is_some() {
                    crate::dockerhost::dind::check_can_run()?;
                }
                let bind_mode = req.workspace_mode == WorkspaceMode::Bind;
                let (mount, env) = self.open_docker_host(
                    &id,
                    &workspace,
                    bind_mode,
                    &checked.network,
                    private_engine,
                )?;
                net.env.extend(env);
                Some(mount)
            }
            None => None,
        };
        let mut spec = self.sandbox_spec(SpecParts {
            req,
            id: &id,
            name: &name,
            run_dir: &run_dir,
            workspace: &workspace,
            mount_sources: checked.mount_sources,
            net_env: std::mem::take(&mut net.env),
            net_files: std::mem::take(&mut net.files),
            agent_state,
            worktree: worktree.as_ref(),
            caller,
            runtime: checked.runtime.unwrap_or(RuntimeKind::Native),
            dependencies: checked.dependencies,
        });
        spec.mounts.extend(docker_host_mount);
        let handle = match self.create_sandbox(&spec, &id, &run_dir).await {
            Ok(h) => h,
            Err(e) => {
                let _ = self.docker_host.remove_run(&id).await;
                return Err(e);
            }
        };
        let record = RunRecord {
            run: new_run(req, &spec, spec.runtime.as_str().into(), worktree.as_ref()),
            created_ms: now_ms(),
            started_ms: None,
            spec: Some(serde_json::to_string(&stored_spec(&spec)).expect("spec serialises")),
            handle: Some(serde_json::to_string(&handle).expect("handle serialises")),
            worktree,
        };
        self.insert_record(&record, &net.plan, &handle, &run_dir)
            .await?;
        self.handles
            .lock()
            .expect("handles lock poisoned")
            .insert(id.clone(), handle);
        self.bus
            .publish(Some(&id), "run.created", created_event(&record.run, req));
        self.publish_state(&id, None, RunState::Created, None, None);
        // The record as written, not read back: `into_read` derives what a read would.
        Ok(record.into_read())
    }

    /// The run's runtime: the one asked for, if it can run now (native runs an image as its
    /// system root); else gVisor for a run with an image when the engine has it registered,
    /// Docker when not (the notice is in the daemon log), native otherwise.
    async fn choose_runtime(
        &self,
        asked: Option<RuntimeKind>,
        on_image: bool,
    ) -> Result<RuntimeKind, DaemonError> {
        let unsupported = |e: paddock_sandbox::SandboxError| DaemonError::Unsupported {
            message: e.to_string(),
            hint: e.hint().unwrap_or("see `paddock doctor`").into(),
        };
        // Each kind is probed once: the gvisor default's probe is the run's probe.
        let kind = match asked {
            Some(k) => {
                self.runtime.probe(k).await.map_err(unsupported)?;
                k
            }
            None if on_image => match self.runtime.probe(RuntimeKind::Gvisor).await {
                Ok(_) => RuntimeKind::Gvisor,
                Err(e) => {
                    tracing::warn!(
                        "image runs default to gvisor, which is not available ({e}); using docker"
                    );
                    self.runtime
                        .probe(RuntimeKind::Docker)
                        .await
                        .map_err(unsupported)?;
                    RuntimeKind::Docker
                }
            },
            None => RuntimeKind::Native,
        };
        Ok(kind)
    }

    /// Everything about a create request that can be refused before anything is made.
    fn check_request(&self, req: &CreateRun) -> Result<CheckedRequest, DaemonError> {
        let workspace = check_workspace(&req.workspace)?;
        let runtime = match req.runtime.as_deref() {
            None => None,
            // Unknown to this daemon (maybe known to a newer one): unsupported, not malformed.
            Some(name) => Some(RuntimeKind::parse(name).ok_or_else(|| DaemonError::Unsupported {
                message: format!("the `{}` runtime is not available in this daemon", name.escape_default()),
                hint: "use one of: native, docker, gvisor (`paddock doctor` shows which work here)".into(),
            })?),
        };
        if let Some(image) = &req.image
            && (image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(DaemonError::bad_request(
                format!("invalid image name `{}`", image.escape_default()),
                "name an image as docker does, e.g. `debian:bookworm` or `paddock-base:latest`",
            ));
        }
        for k in req.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(DaemonError::bad_request(
                    format!("invalid environment variable name `{}`", k.escape_default()),
                    "names may not be empty or contain `=`",
                ));
            }
        }
        if req.command.iter().any(|a| a.contains('\0')) {
            return Err(DaemonError::bad_request(
                "the command contains a NUL byte",
                "remove it",
            ));
        }
        for m in &req.mounts {
            if !m.target.is_absolute() || !m.source.is_absolute() {
                return Err(DaemonError::bad_request(
                    format!(
                        "mount {} → {} must use absolute paths",
                        m.source.display(),
                        m.target.display()
                    ),
                    "write mounts as -m /host/path:/sandbox/path[:ro]",
                ));
            }
        }
        let (mut dependencies, mut services) = (Vec::new(), Vec::new());
        for d in &req.dependencies {
            match paddock_config::parse_dependency_entry(d).map_err(|e| {
                DaemonError::bad_request(
                    format!(
                        "invalid dependency `{}`: {}",
                        d.escape_default(),
                        e.message()
                    ),
                    e.hint().unwrap_or("see `paddock image deps`").to_string(),
                )
            })? {
                paddock_config::DependencyEntry::Tool(t) => dependencies.push(t),
                paddock_config::DependencyEntry::Service(s) => {
                    if let Some(&o) = services.first()
                        && o != s
                    {
                        let e = paddock_config::services_conflict(o, s);
                        return Err(DaemonError::bad_request(
                            e.message().to_string(),
                            e.hint().unwrap_or_default().to_string(),
                        ));
                    }
                    if !services.contains(&s) {
                        services.push(s);
                    }
                }
            }
        }
        let mount_sources = self.resolve_mount_sources(&req.mounts)?;
        let network: paddock_config::NetworkConfig = if req.network.is_null() {
            Default::default()
        } else {
            serde_json::from_value(req.network.clone()).map_err(|e| {
                DaemonError::bad_request(
                    format!("invalid `network` settings: {e}"),
                    "send the `network:` section as paddock.yaml spells it (policy, rules, passthrough, headers)",
                )
            })?
        };
        if let Some(agent) = &req.agent {
            crate::agentstate::check(agent)?;
        }
        if let Some(name) = &req.name {
            check_dns_label(name).map_err(|why| {
                DaemonError::bad_request(
                    format!("invalid run name `{name}`: {why}"),
                    "run names are DNS labels because URLs use them, e.g. `my-agent-2`",
                )
            })?;
        }
        Ok(CheckedRequest {
            workspace,
            runtime,
            mount_sources,
            network,
            dependencies,
            services,
        })
    }

    /// The run's network additions. Grants are read from the secret store, which may
    /// block: off the async thread (without grants there is nothing to read: no hop).
    fn prepare_network(
        &self,
        network: paddock_config::NetworkConfig,
        grants: &[String],
    ) -> Result<crate::egress::SandboxAdditions, DaemonError> {
        let prepare = || self.egress.prepare(network, grants);
        if grants.is_empty() {
            prepare()
        } else {
            blocking(prepare)
        }
    }

    /// A worktree run's worktree (made or found again, and claimed); the workspace is
    /// then bound read-write.
    fn prepare_worktree(
        &self,
        req: &mut CreateRun,
    ) -> Result<Option<crate::worktree::Worktree>, DaemonError> {
        let Some(w) = &req.worktree else {
            return Ok(None);
        };
        let wt = blocking(|| -> Result<_, DaemonError> {
            Ok(self.worktrees.prepare(w, &self.store.list()?)?)
        })?;
        req.workspace_mode = WorkspaceMode::Bind;
        Ok(Some(wt))
    }

    /// The requested name if no live run has it, else a random free one. Checked again
    /// under the same lock at the insert ([`Self::insert_record`]).
    fn choose_name(&self, id: &str, requested: Option<&str>) -> Result<String, DaemonError> {
        let _g = self.transitions.lock().expect("transition lock poisoned");
        let taken = |n: &str| self.store.live_run_named(n);
        if let Some(n) = requested {
            if let Some(other) = taken(n)? {
                return Err(DaemonError::NameTaken {
                    name: n.to_string(),
                    id: other,
                });
            }
            return Ok(n.to_string());
        }
        let mut n = random_name();
        let mut tries = 0;
        while taken(&n)?.is_some() {
            tries += 1;
            n = if tries < 20 {
                random_name()
            } else {
                format!("{}-{}", random_name(), &id[4..8])
            };
        }
        Ok(n)
    }

    /// Serve a run's docker:host socket, checked against its workspace and egress policy;
    /// what the sandbox needs to reach it.
    fn open_docker_host(
        &self,
        id: &str,
        workspace: &Path,
        bind_mode: bool,
        network: &paddock_config::NetworkConfig,
        private_engine: Option<PathBuf>,
    ) -> Result<crate::dockerhost::SandboxParts, DaemonError> {
        let root = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
        self.docker_host.open(crate::dockerhost::RunScope {
            run_id: id.to_string(),
            workspace: crate::dockerhost::policy::WorkspaceScope { root, bind_mode },
            policy: paddock_egress::Policy::new(network, &[]),
            private_engine,
        })
    }

    /// The agent's state directories and its login's credential file in them; without an
    /// agent, the login files alone.
    fn agent_state(
        &self,
        req: &CreateRun,
        workspace: &Path,
        login_files: Vec<(PathBuf, Vec<u8>)>,
        caller: Caller,
    ) -> Result<crate::agentstate::AgentState, DaemonError> {
        match &req.agent {
            Some(agent) => blocking(|| {
                crate::agentstate::prepare(
                    self.home.root(),
                    agent,
                    workspace,
                    login_files,
                    caller.uid,
                    caller.gid,
                )
            }),
            None => Ok(crate::agentstate::AgentState {
                mounts: Vec::new(),
                files: login_files
                    .into_iter()
                    .map(|(path, contents)| paddock_sandbox::InjectedFile {
                        path,
                        contents: contents.into(),
                    })
                    .collect(),
            }),
        }
    }

    /// What the runtime is asked to make.
    fn sandbox_spec(&self, p: SpecParts<'_>) -> SandboxSpec {
        let req = p.req;
        // Over the user's variables: the proxy and CA settings, grant placeholders and
        // service URLs; the run's identity over everything.
        let mut overrides = p.net_env;
        if let Some(routing) = self.routing() {
            overrides.extend(routing.url_env(p.name, &req.ports));
        }
        let command = if req.command.is_empty() {
            vec!["/bin/sh".to_string()]
        } else {
            req.command.clone()
        };
        let user_mounts = req
            .mounts
            .iter()
            .zip(p.mount_sources)
            .map(|(m, source)| MountSpec {
                source,
                target: m.target.clone(),
                read_only: m.read_only,
            });
        let worktree_mounts = p
            .worktree
            .into_iter()
            .flat_map(crate::worktree::Worktree::mounts);
        SandboxSpec {
            run_id: p.id.to_string(),
            name: p.name.to_string(),
            run_dir: p.run_dir.to_path_buf(),
            command,
            env: sandbox_env(p.id, p.name, &req.env, overrides),
            cwd: p.workspace.to_path_buf(),
            workspace: p.workspace.to_path_buf(),
            workspace_mode: match req.workspace_mode {
                WorkspaceMode::Overlay => paddock_sandbox::WorkspaceMode::Overlay,
                WorkspaceMode::Bind => paddock_sandbox::WorkspaceMode::Bind,
            },
            mounts: user_mounts
                .chain(p.agent_state.mounts)
                .chain(worktree_mounts)
                .collect(),
            files: p.net_files.into_iter().chain(p.agent_state.files).collect(),
            limits: paddock_sandbox::Limits {
                memory_bytes: req.limits.memory_bytes,
                pids: req.limits.pids,
                cpus: req.limits.cpus,
            },
            tty: req.tty,
            stdin: req.stdin,
            user: SandboxUser {
                uid: p.caller.uid,
                gid: p.caller.gid,
            },
            tty_size: req.tty_size.map(|s| TtySize {
                rows: s.rows,
                cols: s.cols,
            }),
            // The command waits until its network is in place (see `start_now`).
            hold_until_released: true,
            runtime: p.runtime,
            image: req.image.clone(),
            dependencies: p.dependencies,
        }
    }

    /// The sandbox, and the run's audit log before its first event; on failure neither
    /// (nor the run directory) is left.
    async fn create_sandbox(
        &self,
        spec: &SandboxSpec,
        id: &str,
        run_dir: &Path,
    ) -> Result<SandboxHandle, DaemonError> {
        let handle = match self.runtime.create(spec).await {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_dir_all(run_dir);
                return Err(e.into());
            }
        };
        if let Some(audit) = self.bus.audit()
            && let Err(e) = audit.open_live(&LogRef::Run(id.to_string()))
        {
            let _ = audit.close_removed_run(id);
            let _ = self.runtime.destroy(&handle).await;
            let _ = std::fs::remove_dir_all(run_dir);
            return Err(e);
        }
        Ok(handle)
    }

    /// Store the record, re-checking its name under the lock (a concurrent create may
    /// have taken it: then the sandbox, audit log and run directory go again).
    async fn insert_record(
        &self,
        record: &RunRecord,
        plan: &str,
        handle: &SandboxHandle,
        run_dir: &Path,
    ) -> Result<(), DaemonError> {
        let taken = {
            let _g = self.transitions.lock().expect("transition lock poisoned");
            match self.store.live_run_named(&record.run.name)? {
                Some(other) => Some(other),
                None => {
                    self.store.insert(record, plan)?;
                    None
                }
            }
        };
        let Some(other_id) = taken else {
            return Ok(());
        };
        let id = &record.run.id;
        if let Some(audit) = self.bus.audit() {
            let _ = audit.close_removed_run(id);
        }
        let _ = self.runtime.destroy(handle).await;
        let _ = std::fs::remove_dir_all(run_dir);
        Err(DaemonError::NameTaken {
            name: record.run.name.clone(),
            id: other_id,
        })
    }

    /// The real paths of the mount sources (symlinks resolved), refusing any that is, or
    /// contains, `$PADDOCK_HOME`: its audit signing key and logs are never mounted into a
    /// sandbox, however the path is spelled. The sandbox mounts the resolved path.
    fn resolve_mount_sources(
        &self,
        mounts: &[paddock_api::Mount],
    ) -> Result<Vec<PathBuf>, DaemonError> {
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        let root = self.home.root();
        let home = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let mut out = Vec::with_capacity(mounts.len());
        for m in mounts {
            let real = std::fs::canonicalize(&m.source).map_err(|e| {
                DaemonError::bad_request(
                    format!("mount source {} is not accessible: {e}", m.source.display()),
                    "check that the path exists",
                )
            })?;
            if real.starts_with(&home) || home.starts_with(&real) {
                return Err(DaemonError::bad_request(
                    format!(
                        "mount source {} (really {}) exposes paddock's state directory",
                        m.source.display(),
                        real.display()
                    ),
                    "paddock's state ($PADDOCK_HOME: the audit signing key and logs, every run's files) can never be mounted into a sandbox",
                ));
            }
            out.push(real);
        }
        Ok(out)
    }

    pub fn get(&self, id: &str) -> Result<Run, DaemonError> {
        self.store
            .get(id)?
            .map(|r| r.run)
            .ok_or_else(|| DaemonError::RunNotFound {
                reference: id.to_string(),
            })
    }

    fn publish_state(
        &self,
        id: &str,
        from: Option<RunState>,
        to: RunState,
        exit_code: Option<i32>,
        reason: Option<&str>,
    ) {
        let change = RunStateChange {
            from,
            to,
            reason: reason.map(str::to_string),
            exit_code,
        };
        self.bus.publish(
            Some(id),
            "run.state",
            serde_json::to_value(change).expect("serialises"),
        );
    }

    /// Check, persist, publish. Returns the previous state.
    pub fn transition(
        &self,
        id: &str,
        to: RunState,
        exit_code: Option<i32>,
        reason: Option<&str>,
    ) -> Result<RunState, DaemonError> {
        let _g = self.transitions.lock().expect("transition lock poisoned");
        let rec = self
            .store
            .get(id)?
            .ok_or_else(|| DaemonError::RunNotFound {
                reference: id.into(),
            })?;
        let from = rec.run.state;
        if !from.can_become(to) {
            return Err(DaemonError::InvalidTransition {
                id: id.into(),
                state: from,
                wanted: to,
            });
        }
        self.store.set_state(id, to, exit_code, reason)?;
        // Routes follow before anyone hears of the change: "running" means reachable.
        if let Some(routing) = self.routing() {
            routing.on_state(&self.store, &rec.run, to);
        }
        self.publish_state(id, Some(from), to, exit_code, reason);
        Ok(from)
    }

    fn handle_of(&self, rec: &RunRecord) -> Result<SandboxHandle, DaemonError> {
        if let Some(h) = self
            .handles
            .lock()
            .expect("handles lock poisoned")
            .get(&rec.run.id)
        {
            return Ok(h.clone());
        }
        rec.handle
            .as_deref()
            .and_then(|h| serde_json::from_str(h).ok())
            .ok_or_else(|| DaemonError::Conflict {
                message: format!("run {} has no sandbox", rec.run.id),
                hint: "remove it with `paddock rm`".into(),
            })
    }

    fn event_sink(self: &Arc<Self>) -> EventSink {
        let bus = self.bus.clone();
        Arc::new(move |ev: SandboxEvent| match ev {
            SandboxEvent::InitStep {
                run_id,
                index,
                total,
                description,
            } => {
                let step = paddock_api::InitStep {
                    index,
                    total,
                    description,
                };
                bus.publish(
                    Some(&run_id),
                    "init.step",
                    serde_json::to_value(step).expect("serialises"),
                );
            }
            SandboxEvent::Started { run_id, pid } => {
                bus.publish(
                    Some(&run_id),
                    "run.started",
                    serde_json::json!({ "pid": pid }),
                );
            }
            SandboxEvent::Exited { run_id, exit } => {
                bus.publish(Some(&run_id), "run.exit", exit_json(&exit));
            }
        })
    }

    /// Start a `created` run. Returns once the command runs (or the start failed).
    ///
    /// Runs to completion on its own task: a client that goes away mid-request must not
    /// leave the run half-started.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<Run, DaemonError> {
        let (me, id) = (self.clone(), id.to_string());
        detached("start", async move { me.start_now(&id).await }).await
    }

    async fn start_now(self: &Arc<Self>, id: &str) -> Result<Run, DaemonError> {
        let rec = self
            .store
            .get(id)?
            .ok_or_else(|| DaemonError::RunNotFound {
                reference: id.into(),
            })?;
        self.transition(id, RunState::Starting, None, None)?;
        let spec: SandboxSpec = match rec.spec.as_deref().map(serde_json::from_str) {
            Some(Ok(s)) => s,
            _ => {
                self.transition(
                    id,
                    RunState::Failed,
                    None,
                    Some("the run's sandbox spec is missing"),
                )?;
                return self.get(id);
            }
        };
        let handle = self.handle_of(&rec)?;
        if let Err(e) = self.start_services(&rec, &spec).await {
            let _ = self.transition(id, RunState::Failed, None, Some(&e.to_string()));
            return Err(e);
        }
        match self.runtime.start(&handle, &spec, self.event_sink()).await {
            Ok(started) => {
                self.store
                    .set_handle(id, &serde_json::to_string(&started).expect("serialises"))?;
                self.handles
                    .lock()
                    .expect("handles lock poisoned")
                    .insert(id.to_string(), started.clone());
                // The command is held before exec: its listeners go in first, so its very
                // first connection or DNS query is already governed.
                if let Err(e) = self.start_network(&started, &spec) {
                    let reason = format!("could not set up the run's network: {e}");
                    let _ = self.runtime.stop(&started, Duration::ZERO).await;
                    let _ = self.transition(id, RunState::Failed, None, Some(&reason));
                    return Err(e);
                }
                // A stop may have raced the start; then the run is already `stopping`.
                match self.transition(id, RunState::Running, None, None) {
                    Ok(_) | Err(DaemonError::InvalidTransition { .. }) => {}
                    Err(e) => return Err(e),
                }
                if let Some(every) = snapshot_interval(&rec.run) {
                    crate::snapshots::schedule(self.clone(), id.to_string(), every);
                }
                self.watch(id.to_string(), started);
            }
            Err(e) => {
                let reason = e.to_string();
                self.egress.stop(id);
                if let Err(e) = self.remove_service_containers(id).await {
                    tracing::warn!(run = %id, error = %e, "could not remove the run's docker service container");
                }
                let _ = self.transition(id, RunState::Failed, None, Some(&reason));
                return Err(e.into());
            }
        }
        self.get(id)
    }

    /// A docker service's container, before the run's sandbox starts (so `docker` works
    /// from its first command): docker:dind's private engine, or docker:host's network
    /// holder. Its network namespace then gets the run's listeners with the run's own
    /// ([`Egress::set_sidecar`]).
    async fn start_services(
        self: &Arc<Self>,
        rec: &RunRecord,
        spec: &SandboxSpec,
    ) -> Result<(), DaemonError> {
        let id = &rec.run.id;
        let sidecar = match self.docker_host.service(id) {
            None => return Ok(()),
            Some(paddock_config::Service::DockerHost) => {
                match self.sidecars.start_holder(id, &self.event_sink()).await? {
                    Some(h) => h,
                    None => return Ok(()),
                }
            }
            Some(paddock_config::Service::DockerDind) => {
                // The engine cannot see a copy-on-write view: only a bind-mode workspace.
                let workspace = (rec.run.workspace_mode == WorkspaceMode::Bind)
                    .then_some(spec.workspace.as_path());
                self.sidecars
                    .start_dind(
                        id,
                        &self.home.run_dir(id),
                        workspace,
                        self.egress.sandbox_net(),
                        &self.event_sink(),
                    )
                    .await?
            }
        };
        self.adopt_sidecar(id, &sidecar);
        Ok(())
    }

    /// Govern a run's sidecar or holder with the run's egress (from its next
    /// `Egress::start`), and let the run's containers join a holder (its socket is served).
    fn adopt_sidecar(&self, id: &str, sidecar: &paddock_sandbox::docker::dind::Sidecar) {
        self.egress.set_sidecar(
            id,
            Arc::new(paddock_sandbox::docker::dind::SidecarNetns::new(sidecar)),
        );
        if !self.docker_host.private_engine(id) {
            self.docker_host.set_holder(id, &sidecar.container);
        }
    }

    /// Remove a run's docker:dind sidecar or docker:host network holder.
    async fn remove_service_containers(&self, id: &str) -> Result<(), DaemonError> {
        match self.docker_host.service(id) {
            Some(service) => self.sidecars.remove(id, service).await,
            None => Ok(()),
        }
    }

    /// Place a started sandbox's network listeners, then let its held command run.
    fn start_network(&self, handle: &SandboxHandle, spec: &SandboxSpec) -> Result<(), DaemonError> {
        let run_dir = self.home.run_dir(&handle.run_id);
        let t0 = std::time::Instant::now();
        let plan = self.store.net_plan(&handle.run_id)?;
        blocking(|| {
            self.egress.start(
                self.runtime.as_ref(),
                handle,
                plan.as_deref(),
                &run_dir,
                &self.bus,
            )
        })?;
        // `create` refused runtimes without the netns capability.
        if spec.hold_until_released
            && let Some(netns) = self.runtime.as_netns()
        {
            match netns.release(handle) {
                // Stopped while held: the watcher records how it ended.
                Ok(()) | Err(paddock_sandbox::SandboxError::NotRunning { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::debug!(run = %handle.run_id, took = ?t0.elapsed(), "network in place; command released");
        Ok(())
    }

    /// Wait for the sandbox to end in the background, then (once its network records are
    /// in) record how it ended.
    fn watch(self: &Arc<Self>, id: String, handle: SandboxHandle) {
        if let Ok(Some(rec)) = self.store.get(&id)
            && let Some(wt) = rec.worktree
        {
            self.worktrees.watch(&id, wt);
        }
        let me = self.clone();
        tokio::spawn(async move {
            let exit = me.runtime.wait(&handle).await;
            me.egress.drain(&id, NET_RECORD_DRAIN).await;
            me.record_exit(&id, exit);
        });
    }

    fn record_exit(
        self: &Arc<Self>,
        id: &str,
        exit: Result<ExitInfo, paddock_sandbox::SandboxError>,
    ) {
        self.egress.stop(id);
        self.docker_host.close(id);
        if self.docker_host.used_by(id) {
            // The private engine or network holder ends with its run (a private engine's
            // storage stays until `paddock rm`).
            let (me, run) = (self.clone(), id.to_string());
            tokio::spawn(async move {
                if let Err(e) = me.remove_service_containers(&run).await {
                    tracing::warn!(run = %run, error = %e, "could not remove the run's docker service container (`paddock rm` tries again)");
                }
            });
        }
        if let Ok(Some(rec)) = self.store.get(id)
            && let Some(wt) = &rec.worktree
        {
            blocking(|| self.worktrees.ended(id, wt));
        }
        let (state, code, reason) = match exit {
            Ok(info) => {
                let failed = info.oom_killed;
                let reason = if info.oom_killed {
                    Some("out of memory".to_string())
                } else {
                    info.reason.clone()
                };
                (
                    if failed {
                        RunState::Failed
                    } else {
                        RunState::Stopped
                    },
                    info.exit_code,
                    reason,
                )
            }
            Err(e) => (
                RunState::Failed,
                None,
                Some(format!("lost track of the sandbox: {e}")),
            ),
        };
        if let Err(e) = self.transition(id, state, code, reason.as_deref()) {
            tracing::warn!(run = id, error = %e, "could not record the end of a run");
        }
    }

    /// Stop a run: SIGTERM, then SIGKILL after `grace`.
    ///
    /// Runs to completion on its own task: a client that goes away mid-request must not
    /// leave the run half-stopped.
    pub async fn stop(self: &Arc<Self>, id: &str, grace: Duration) -> Result<Run, DaemonError> {
        let (me, id) = (self.clone(), id.to_string());
        detached("stop", async move { me.stop_now(&id, grace).await }).await
    }

    async fn stop_now(self: &Arc<Self>, id: &str, grace: Duration) -> Result<Run, DaemonError> {
        let rec = self
            .store
            .get(id)?
            .ok_or_else(|| DaemonError::RunNotFound {
                reference: id.into(),
            })?;
        match rec.run.state {
            RunState::Created => {
                self.transition(
                    id,
                    RunState::Stopped,
                    None,
                    Some("stopped before it started"),
                )?;
                return self.get(id);
            }
            RunState::Starting | RunState::Running => {
                self.transition(id, RunState::Stopping, None, None)?;
            }
            RunState::Stopping => {}
            state => {
                return Err(DaemonError::InvalidTransition {
                    id: id.into(),
                    state,
                    wanted: RunState::Stopping,
                });
            }
        }
        let handle = self.handle_of(&rec)?;
        let exit = self.runtime.stop(&handle, grace).await;
        // The watcher records the end too; whichever comes first wins, the other is a
        // rejected (terminal → terminal) transition.
        self.egress.drain(id, NET_RECORD_DRAIN).await;
        let state = self.get(id)?.state;
        if !state.is_terminal() {
            self.record_exit(id, exit);
        }
        self.get(id)
    }

    /// Wait until the run has ended.
    pub async fn wait(&self, id: &str) -> Result<WaitResult, DaemonError> {
        let mut sub = self.bus.subscribe(Some(id.to_string()));
        loop {
            let run = self.get(id)?;
            if run.state.is_terminal() {
                // A transition is persisted, then published (and recorded in the audit log)
                // under this lock: taking it makes the answer follow the audit record.
                drop(self.transitions.lock().expect("transition lock poisoned"));
                return Ok(WaitResult {
                    id: run.id,
                    state: run.state,
                    exit_code: run.exit_code,
                    reason: run.reason,
                });
            }
            if run.state == RunState::Created {
                return Err(DaemonError::Conflict {
                    message: format!("run {id} has not been started"),
                    hint: "start it (`POST /v1/runs/{id}/start`), or remove it with `paddock rm`"
                        .into(),
                });
            }
            // Wake on this run's next event, or re-check every second regardless.
            let _ = tokio::time::timeout(Duration::from_secs(1), sub.recv()).await;
        }
    }

    /// Remove a run: its sandbox, its directory, its record.
    ///
    /// Runs to completion on its own task: a client that goes away mid-request must not
    /// leave the run half-removed.
    pub async fn remove(self: &Arc<Self>, id: &str, force: bool) -> Result<Run, DaemonError> {
        let (me, id) = (self.clone(), id.to_string());
        detached("remove", async move { me.remove_now(&id, force).await }).await
    }

    async fn remove_now(self: &Arc<Self>, id: &str, force: bool) -> Result<Run, DaemonError> {
        let rec = self
            .store
            .get(id)?
            .ok_or_else(|| DaemonError::RunNotFound {
                reference: id.into(),
            })?;
        let run = rec.run.clone();
        if !run.state.is_terminal() && run.state != RunState::Created {
            if !force {
                return Err(DaemonError::Conflict {
                    message: format!("run {} ({}) is {}", run.id, run.name, run.state),
                    hint: "stop it first with `paddock stop`, or remove it anyway with `paddock rm --force`".into(),
                });
            }
            self.stop(id, Duration::ZERO).await?;
        }
        if run.workspace_mode == WorkspaceMode::Overlay && !run.applied && !force {
            let upper = layer_upper(&self.home.run_dir(&run.id));
            if upper.exists() {
                match paddock_layer::has_changes(&upper, &run.workspace) {
                    Ok(true) => {
                        return Err(DaemonError::Conflict {
                            message: format!(
                                "run {} ({}) has changes that were not applied to {}",
                                run.id,
                                run.name,
                                run.workspace.display()
                            ),
                            hint: format!(
                                "review them with `paddock diff {0}`, apply with `paddock apply {0}`, or discard them with `paddock rm --force {0}`",
                                run.name
                            ),
                        });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(run = id, error = %e, "could not read the run's layer")
                    }
                }
            }
        }
        // A worktree with uncommitted changes stays unless forced; its branch is carried back.
        let worktree = match &rec.worktree {
            Some(wt) => blocking(|| {
                self.worktrees
                    .check_remove(id, wt, force, &self.store.list()?)
                    .map_err(DaemonError::from)
            })?,
            None => None,
        };
        // A run that never started ends here: recorded like every other transition (the
        // terminal state also closes its audit log with the run-end checkpoint).
        if run.state == RunState::Created {
            self.transition(
                id,
                RunState::Stopped,
                None,
                Some("removed before it started"),
            )?;
        }
        self.egress.stop(id);
        if let Ok(handle) = self.handle_of(&rec) {
            self.runtime.destroy(&handle).await?;
        }
        self.remove_service_containers(id).await?;
        let n = self.docker_host.remove_run(id).await?;
        if n > 0 {
            tracing::debug!(run = id, removed = n, "docker:host objects removed");
        }
        // The run's directory holds its audit log: close it (final checkpoint) and record
        // the removal with that checkpoint in the daemon log before anything is deleted.
        let mut removed = serde_json::json!({ "name": run.name });
        if let Some(audit) = self.bus.audit() {
            let cp = audit.close_removed_run(id)?;
            removed["audit_checkpoint"] = serde_json::to_value(cp).unwrap_or_default();
            if !self
                .bus
                .publish_recorded(Some(id), "run.removed", removed.clone())
            {
                return Err(DaemonError::Audit {
                    message: format!("could not record the removal of run {id}"),
                    hint: "see $PADDOCK_HOME/daemon.log; nothing was deleted".into(),
                });
            }
        } else {
            self.bus.publish(Some(id), "run.removed", removed);
        }
        let dir = self.home.run_dir(&run.id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| DaemonError::io("remove", &dir, e))?;
        }
        if let Some(wt) = &worktree {
            blocking(|| self.worktrees.remove(wt))?;
        }
        {
            let _g = self.transitions.lock().expect("transition lock poisoned");
            let state = self.get(id)?.state;
            if !state.is_terminal() {
                self.store
                    .set_state(id, RunState::Stopped, None, Some("removed"))?;
                self.publish_state(id, Some(state), RunState::Stopped, None, Some("removed"));
            }
            self.store.delete(id)?;
            if let Some(routing) = self.routing() {
                routing.on_removed(&self.store, id);
            }
        }
        self.handles
            .lock()
            .expect("handles lock poisoned")
            .remove(id);
        Ok(run)
    }

    pub fn sandbox_handle(&self, id: &str) -> Result<SandboxHandle, DaemonError> {
        let rec = self
            .store
            .get(id)?
            .ok_or_else(|| DaemonError::RunNotFound {
                reference: id.into(),
            })?;
        self.handle_of(&rec)
    }

    pub fn mark_applied(&self, id: &str) -> Result<(), DaemonError> {
        self.store.set_applied(id, true)
    }

    /// After a daemon restart: serve a live docker:host run's socket again, checked
    /// against the network policy of its stored plan.
    fn reopen_docker_host(&self, rec: &RunRecord, plan: Option<&str>) -> Result<(), DaemonError> {
        if !self.docker_host.used_by(&rec.run.id) {
            return Ok(());
        }
        let network = match plan {
            Some(json) => crate::egress::NetPlan::parse(json)?.network,
            None => Default::default(),
        };
        let bind_mode = rec.run.workspace_mode == WorkspaceMode::Bind;
        let private_engine = self
            .docker_host
            .private_engine(&rec.run.id)
            .then(|| crate::dockerhost::dind::socket(&self.home.run_dir(&rec.run.id)));
        self.open_docker_host(
            &rec.run.id,
            &rec.run.workspace,
            bind_mode,
            &network,
            private_engine,
        )
        .map(drop)
    }

    /// After a daemon restart: find every live sandbox again, and record the ones that
    /// ended while no daemon watched.
    pub async fn adopt_all(self: &Arc<Self>) -> Result<(), DaemonError> {
        for rec in self.store.list()? {
            let id = rec.run.id.clone();
            if !rec.run.state.is_terminal()
                && let Some(audit) = self.bus.audit()
                && let Err(e) = audit.open_live(&LogRef::Run(id.clone()))
            {
                tracing::error!(run = %id, error = %e, "could not re-open the run's audit log");
            }
            match rec.run.state {
                RunState::Created | RunState::Stopped | RunState::Failed => continue,
                RunState::Starting => {
                    let _ = self.transition(
                        &id,
                        RunState::Failed,
                        None,
                        Some("the daemon stopped while the run was starting"),
                    );
                    if let Ok(h) = self.handle_of(&rec) {
                        let _ = self.runtime.destroy(&h).await;
                    }
                    continue;
                }
                RunState::Running | RunState::Stopping => {}
            }
            let handle = match self.handle_of(&rec) {
                Ok(h) => h,
                Err(_) => {
                    let _ = self.transition(
                        &id,
                        RunState::Failed,
                        None,
                        Some("its sandbox could not be found"),
                    );
                    continue;
                }
            };
            match self.runtime.adopt(&handle, self.event_sink()).await {
                Ok(paddock_sandbox::Adopted::Running) => {
                    self.handles
                        .lock()
                        .expect("handles lock poisoned")
                        .insert(id.clone(), handle.clone());
                    tracing::info!(run = %id, "re-adopted a running sandbox");
                    let run_dir = self.home.run_dir(&id);
                    // One read of the stored plan serves the listeners and docker:host.
                    let plan = self.store.net_plan(&id);
                    // Its sidecar or holder first: the listeners go into it too.
                    let sidecar = match self.docker_host.service(&id) {
                        Some(service) => self.sidecars.find(&id, service).await.unwrap_or_else(|e| {
                            tracing::error!(run = %id, error = %e, "could not look for the run's docker service container");
                            None
                        }),
                        None => None,
                    };
                    if self.docker_host.used_by(&id) && sidecar.is_none() {
                        tracing::error!(run = %id, "the run's docker service container is gone: its docker containers have no network");
                    }
                    // Its socket first (a holder's id goes to it), then the listeners.
                    if let Ok(plan) = &plan
                        && let Err(e) = self.reopen_docker_host(&rec, plan.as_deref())
                    {
                        tracing::error!(run = %id, error = %e, "could not re-open the run's docker:host socket");
                    }
                    if let Some(s) = &sidecar {
                        self.adopt_sidecar(&id, s);
                    }
                    if let Err(e) = plan.as_ref().map_err(|e| e.to_string()).and_then(|plan| {
                        blocking(|| {
                            self.egress.start(
                                self.runtime.as_ref(),
                                &handle,
                                plan.as_deref(),
                                &run_dir,
                                &self.bus,
                            )
                        })
                        .map_err(|e| e.to_string())
                    }) {
                        // Without its listeners the run has no network at all (fails closed).
                        tracing::error!(run = %id, error = %e, "could not restore the run's network");
                    }
                    self.watch(id, handle);
                }
                Ok(paddock_sandbox::Adopted::Exited(info)) => self.record_exit(&id, Ok(info)),
                Err(e) => {
                    let reason = format!("its sandbox could not be re-adopted: {e}");
                    let _ = self.transition(&id, RunState::Failed, None, Some(&reason));
                }
            }
        }
        Ok(())
    }
}

/// Run a run operation on a task of its own, so that the caller going away (a client
/// hanging up drops the request's future) cannot stop it halfway.
async fn detached<F>(what: &'static str, op: F) -> Result<Run, DaemonError>
where
    F: std::future::Future<Output = Result<Run, DaemonError>> + Send + 'static,
{
    tokio::spawn(op).await.unwrap_or_else(|e| {
        Err(DaemonError::Conflict {
            message: format!("the {what} operation was interrupted: {e}"),
            hint: "check the run with `paddock inspect`; the daemon log has details".into(),
        })
    })
}

/// An agent run's automatic snapshot interval (`review.snapshot_every`, default 10
/// minutes, `0` for none); `None` for other runs and bind-mode runs.
fn snapshot_interval(run: &paddock_api::Run) -> Option<Duration> {
    if run.agent.is_none() || run.workspace_mode != paddock_api::WorkspaceMode::Overlay {
        return None;
    }
    let every = match run.config["review"]["snapshot_every"].as_str() {
        Some(s) => paddock_config::parse_duration(s).ok()?,
        None => Duration::from_secs(600),
    };
    (!every.is_zero()).then_some(every)
}

/// The spec as state.db keeps it: injected files' contents (the CA bundle is hundreds of
/// KiB) were written into the run's directory by `Runtime::create` and are not needed
/// again, so only their paths are kept; the row stays small and every read of it cheap.
fn stored_spec(spec: &SandboxSpec) -> SandboxSpec {
    let mut s = spec.clone();
    for f in &mut s.files {
        f.contents = Arc::from([]);
    }
    s
}

/// Run blocking work (secret store reads, socket setup in a netns) without stalling the
/// other tasks of a multi-threaded runtime's worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Where the overlay upper layer of a run lives (the layout the native runtime uses).
pub fn layer_upper(run_dir: &Path) -> PathBuf {
    run_dir.join("layer").join("upper")
}

/// Data of `run.created`: what the run was asked to do. Environment variable *names*
/// only: their values may be credentials.
fn created_event(run: &Run, req: &CreateRun) -> serde_json::Value {
    serde_json::json!({
        "name": run.name,
        "command": run.command,
        "workspace": run.workspace,
        "workspace_mode": run.workspace_mode,
        "runtime": run.runtime,
        "limits": run.limits,
        "mounts": run.mounts,
        "tty": run.tty,
        "env_names": req.env.keys().collect::<Vec<_>>(),
        "grants": req.grants,
        "config_sources": run.config_sources,
    })
}

pub fn exit_json(exit: &ExitInfo) -> serde_json::Value {
    serde_json::json!({
        "exit_code": exit.exit_code,
        "signal": exit.signal,
        "oom_killed": exit.oom_killed,
        "reason": exit.reason,
    })
}

fn ambiguous(reference: &str, matches: &[&RunRecord]) -> DaemonError {
    DaemonError::Ambiguous {
        reference: reference.to_string(),
        candidates: matches
            .iter()
            .map(|r| format!("{} ({}, {})", r.run.id, r.run.name, r.run.state))
            .collect(),
    }
}

fn check_workspace(p: &Path) -> Result<PathBuf, DaemonError> {
    if !p.is_absolute() {
        return Err(DaemonError::bad_request(
            format!("workspace `{}` is not an absolute path", p.display()),
            "the CLI sends absolute paths; pass -w with a full path",
        ));
    }
    let canonical = std::fs::canonicalize(p).map_err(|e| {
        DaemonError::bad_request(
            format!("workspace {} does not exist: {e}", p.display()),
            "create the directory first, or pass an existing one with -w",
        )
    })?;
    if !canonical.is_dir() {
        return Err(DaemonError::bad_request(
            format!("workspace {} is not a directory", p.display()),
            "pass a directory with -w",
        ));
    }
    if canonical == Path::new("/") {
        return Err(DaemonError::bad_request(
            "the workspace cannot be the root directory",
            "pass your project's directory with -w",
        ));
    }
    Ok(canonical)
}

/// The command's complete environment: a clean base, the user's variables, then
/// `overrides` (paddock's settings for the run), then the run's identity, each replacing
/// what came before under the same name.
pub(crate) fn sandbox_env(
    id: &str,
    name: &str,
    user: &BTreeMap<String, String>,
    overrides: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    env.insert("HOME".into(), SANDBOX_HOME.into());
    env.insert("USER".into(), "paddock".into());
    env.insert("LOGNAME".into(), "paddock".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    env.insert("SHELL".into(), "/bin/sh".into());
    for (k, v) in user {
        env.insert(k.clone(), v.clone());
    }
    env.extend(overrides);
    // Identity last: neither the user nor anything else can spoof it.
    env.insert("PADDOCK".into(), "1".into());
    env.insert("PADDOCK_RUN_ID".into(), id.into());
    env.insert("PADDOCK_RUN_NAME".into(), name.into());
    env.into_iter().collect()
}

/// What [`RunManager::check_request`] found a create request to mean.
struct CheckedRequest {
    workspace: PathBuf,
    /// As asked for; [`RunManager::choose_runtime`] fills in the default.
    runtime: Option<RuntimeKind>,
    mount_sources: Vec<PathBuf>,
    network: paddock_config::NetworkConfig,
    dependencies: Vec<paddock_config::Dependency>,
    /// `docker:host` and the like, from the same list.
    services: Vec<paddock_config::Service>,
}

/// The pieces of a run's [`SandboxSpec`], made by the steps before it.
struct SpecParts<'a> {
    req: &'a CreateRun,
    id: &'a str,
    name: &'a str,
    run_dir: &'a Path,
    workspace: &'a Path,
    mount_sources: Vec<PathBuf>,
    net_env: Vec<(String, String)>,
    net_files: Vec<paddock_sandbox::InjectedFile>,
    agent_state: crate::agentstate::AgentState,
    worktree: Option<&'a crate::worktree::Worktree>,
    caller: Caller,
    runtime: RuntimeKind,
    dependencies: Vec<paddock_config::Dependency>,
}

/// A new run as the API shows it, in state `created`.
fn new_run(
    req: &CreateRun,
    spec: &SandboxSpec,
    runtime: String,
    worktree: Option<&crate::worktree::Worktree>,
) -> Run {
    Run {
        id: spec.run_id.clone(),
        name: spec.name.clone(),
        workspace: spec.workspace.clone(),
        command: spec.command.clone(),
        runtime,
        state: RunState::Created,
        workspace_mode: req.workspace_mode,
        created_at: String::new(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        reason: None,
        tty: req.tty,
        limits: req.limits,
        mounts: req.mounts.clone(),
        config: req.config.clone(),
        config_sources: req.config_sources.clone(),
        applied: false,
        ports: req.ports.clone(),
        urls: Default::default(),
        agent: req.agent.as_ref().map(|a| a.name.clone()),
        branch: worktree.map(|w| w.branch.clone()),
        worktree: worktree.map(|w| w.path.clone()),
    }
}
