//! `dependencies: ["docker:host"]`: the host's Docker engine, through a policy proxy.
//!
//! The run gets `DOCKER_HOST=unix:///run/paddock-docker/docker.sock`, a socket the daemon
//! serves in `$PADDOCK_HOME/docker-host/<run_id>/` (that directory is bind-mounted read-only
//! into the sandbox, so a re-opened socket after a daemon restart is the one the sandbox
//! sees; it is not in the run's directory, which is never a mount source). A
//! connection accepted on run R's socket is run R: no token to steal. The engine's own socket
//! is never mounted anywhere.
//!
//! Owns: the per-run sockets and their tasks, and the engine objects labelled
//! [`policy::RUN_LABEL`] (removed with the run). Never: forwards an unchecked request (see
//! [`policy`]), or gives a container of the host's engine a network but the run's own (the
//! namespace of its holder container, see [`DockerHost::set_holder`]; the engine's bridge
//! would bypass the run's egress policy). For `docker:dind` ([`dind`]) the same socket
//! leads to the run's private engine, whose only network is the run's own too.

pub mod dind;
pub mod policy;
mod proxy;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use paddock_sandbox::MountSpec;

use crate::bus::EventBus;
use crate::error::DaemonError;

/// Where the socket's directory is inside a sandbox.
pub const SANDBOX_DIR: &str = "/run/paddock-docker";
/// The socket's name in it.
const SOCKET: &str = "docker.sock";
/// The directory of `$PADDOCK_HOME` that holds one directory per docker:host run (its
/// presence marks the run as one).
pub const HOME_SUBDIR: &str = "docker-host";
/// In a run's directory there: present when the upstream is the run's docker:dind engine.
const DIND_MARK: &str = "dind";

/// What a run's requests are checked against.
pub struct RunScope {
    pub run_id: String,
    pub workspace: policy::WorkspaceScope,
    /// The run's egress policy (registries of pulls and pushes must pass it).
    pub policy: paddock_egress::Policy,
    /// docker:dind: the socket of the run's own engine (its sidecar), instead of the
    /// host's. Its images are all the run's; every other rule holds.
    pub private_engine: Option<PathBuf>,
}

/// What a sandbox needs to reach its socket: the mount of the socket's directory, and the
/// environment (`DOCKER_HOST`, …).
pub type SandboxParts = (MountSpec, Vec<(String, String)>);

/// The docker:host sockets of live runs.
pub struct DockerHost {
    bus: EventBus,
    /// `$PADDOCK_HOME/docker-host`.
    dir: PathBuf,
    live: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Each served run's network holder id (shared with its socket's task).
    holders: Mutex<HashMap<String, Arc<std::sync::RwLock<Option<String>>>>>,
}

/// The engine's socket: `DOCKER_HOST` (unix:// only) or the default.
fn engine_socket() -> Result<PathBuf, DaemonError> {
    let hint = "start the Docker engine (Debian: `apt install docker.io`), or point the daemon's DOCKER_HOST at its Unix socket";
    let path = match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => match h.strip_prefix("unix://") {
            Some(p) => PathBuf::from(p),
            None => {
                return Err(DaemonError::Unsupported {
                    message: format!(
                        "docker:host needs the engine on a Unix socket; DOCKER_HOST is {h}"
                    ),
                    hint: hint.into(),
                });
            }
        },
        _ => PathBuf::from("/var/run/docker.sock"),
    };
    if std::os::unix::net::UnixStream::connect(&path).is_err() {
        return Err(DaemonError::Unsupported {
            message: format!(
                "docker:host needs a Docker engine, and none answers at {}",
                path.display()
            ),
            hint: hint.into(),
        });
    }
    Ok(path)
}

impl DockerHost {
    pub fn new(bus: EventBus, paddock_home: &Path) -> Self {
        DockerHost {
            bus,
            dir: paddock_home.join(HOME_SUBDIR),
            live: Mutex::new(HashMap::new()),
            holders: Mutex::new(HashMap::new()),
        }
    }

    /// The containers of a run on the host's engine join `container` (its network holder,
    /// whose namespace has the run's egress listeners) instead of getting no network.
    pub fn set_holder(&self, run_id: &str, container: &str) {
        if let Some(h) = self
            .holders
            .lock()
            .expect("docker-host lock poisoned")
            .get(run_id)
        {
            *h.write().unwrap_or_else(|e| e.into_inner()) = Some(container.to_string());
        }
    }

    fn run_dir(&self, run_id: &str) -> PathBuf {
        self.dir.join(run_id)
    }

    /// Whether a run uses docker:host (its socket's directory is there).
    pub fn used_by(&self, run_id: &str) -> bool {
        self.run_dir(run_id).is_dir()
    }

    /// Whether a run's socket leads to its own docker:dind engine.
    pub fn private_engine(&self, run_id: &str) -> bool {
        self.run_dir(run_id).join(DIND_MARK).exists()
    }

    /// The docker service a run has, if any (from its socket's directory).
    pub fn service(&self, run_id: &str) -> Option<paddock_config::Service> {
        use paddock_config::Service;
        self.used_by(run_id).then(|| {
            if self.private_engine(run_id) {
                Service::DockerDind
            } else {
                Service::DockerHost
            }
        })
    }

    fn sandbox_parts(&self, run_id: &str) -> SandboxParts {
        let mount = MountSpec {
            source: self.run_dir(run_id),
            target: PathBuf::from(SANDBOX_DIR),
            read_only: true,
        };
        let env = vec![
            (
                "DOCKER_HOST".into(),
                format!("unix://{SANDBOX_DIR}/{SOCKET}"),
            ),
            // Builds go through the classic builder: BuildKit sessions are not proxied.
            ("DOCKER_BUILDKIT".into(), "0".into()),
        ];
        (mount, env)
    }

    /// Serve a run's socket (made, or made again after a daemon restart); what the sandbox
    /// needs to reach it.
    pub fn open(&self, scope: RunScope) -> Result<SandboxParts, DaemonError> {
        // The host's engine serves docker:dind's sidecar too.
        let host_engine = engine_socket()?;
        let engine = scope.private_engine.clone().unwrap_or(host_engine);
        let dir = self.run_dir(&scope.run_id);
        std::fs::create_dir_all(&dir).map_err(|e| DaemonError::io("create", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| DaemonError::io("chmod", &dir, e))?;
        if scope.private_engine.is_some() {
            let mark = dir.join(DIND_MARK);
            std::fs::write(&mark, b"").map_err(|e| DaemonError::io("write", &mark, e))?;
        }
        let sock = dir.join(SOCKET);
        match std::fs::remove_file(&sock) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DaemonError::io("remove", &sock, e)),
        }
        let listener =
            tokio::net::UnixListener::bind(&sock).map_err(|e| DaemonError::io("bind", &sock, e))?;
        // The sandbox's user may be any uid; $PADDOCK_HOME (0700) keeps everyone else on the
        // host away from it.
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| DaemonError::io("chmod", &sock, e))?;
        let run_id = scope.run_id.clone();
        let parts = self.sandbox_parts(&run_id);
        let holder = Arc::new(std::sync::RwLock::new(None));
        self.holders
            .lock()
            .expect("docker-host lock poisoned")
            .insert(run_id.clone(), holder.clone());
        let ctx = Arc::new(proxy::Ctx {
            engine,
            scope,
            bus: self.bus.clone(),
            holder,
        });
        let task = tokio::spawn(proxy::serve(listener, ctx));
        if let Some(old) = self
            .live
            .lock()
            .expect("docker-host lock poisoned")
            .insert(run_id, task.abort_handle())
        {
            old.abort();
        }
        Ok(parts)
    }

    /// Stop serving a run's socket (its containers stay until the run is removed).
    pub fn close(&self, run_id: &str) {
        self.holders
            .lock()
            .expect("docker-host lock poisoned")
            .remove(run_id);
        if let Some(t) = self
            .live
            .lock()
            .expect("docker-host lock poisoned")
            .remove(run_id)
        {
            t.abort();
        }
    }

    /// Remove what the run made in the engine (with the run): its containers and volumes,
    /// then the socket's directory. A no-op for a run without docker:host.
    pub async fn remove_run(&self, run_id: &str) -> Result<usize, DaemonError> {
        self.close(run_id);
        let dir = self.run_dir(run_id);
        if !dir.is_dir() {
            return Ok(0);
        }
        // A private engine goes with its sidecar, and everything in it.
        if self.private_engine(run_id) {
            std::fs::remove_dir_all(&dir).map_err(|e| DaemonError::io("remove", &dir, e))?;
            return Ok(0);
        }
        let engine = engine_socket()?;
        let n = proxy::remove_run(&engine, run_id)
            .await
            .map_err(|e| DaemonError::Unsupported {
                message: format!("removing the run's docker:host containers failed: {e}"),
                hint: format!(
                    "remove them by hand: docker rm -f $(docker ps -aq --filter label={}={run_id})",
                    policy::RUN_LABEL
                ),
            })?;
        std::fs::remove_dir_all(&dir).map_err(|e| DaemonError::io("remove", &dir, e))?;
        Ok(n)
    }
}
