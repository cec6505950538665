//! `dependencies: ["docker:dind"]`: a private Docker engine per run, in a sidecar container
//! (see [`paddock_sandbox::docker::dind`] for how it is confined).
//!
//! The run reaches it the way it reaches docker:host: through the policy proxy on the
//! run's socket ([`super::DockerHost::open`] with [`super::RunScope::private_engine`]), so
//! privileged containers, added capabilities, devices and host namespaces stay refused
//! inside the private engine too (the sidecar holds CAP_SYS_ADMIN; an inner container that
//! got it would hold it over the host). The sidecar's network namespace gets the run's egress
//! listeners ([`crate::egress::Egress::set_sidecar`]), so its pulls obey the run's policy
//! and are audited as the run's traffic.
//!
//! A docker:host run gets a lighter container of the same kind on the host's engine: a
//! network holder ([`Dind::start_holder`]) whose namespace gets the run's listeners, for the
//! run's containers to join.
//!
//! Owns: the live sidecars and holders and `<run_dir>/dind` (the engine's storage, its socket, and the
//! network files bound into it). Never: starts a sidecar for a run that did not ask, or
//! leaves one running after its run ended.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use paddock_sandbox::docker::dind::{self, Sidecar, SidecarSpec};
use paddock_sandbox::docker::{DockerConfig, DockerRuntime, image};
use paddock_sandbox::{EventSink, RuntimeKind, SandboxEvent};

use crate::error::DaemonError;

/// The live sidecars, by run.
pub struct Dind {
    /// For its engine client (connected on first use).
    docker: DockerRuntime,
    paddock_home: PathBuf,
    live: Mutex<HashMap<String, Sidecar>>,
}

/// A sidecar's directory in its run's directory.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("dind")
}

/// The socket of a run's private engine.
pub fn socket(run_dir: &Path) -> PathBuf {
    dind::socket(&dir(run_dir))
}

impl Dind {
    pub fn new(paddock_home: &Path) -> Self {
        Dind {
            docker: DockerRuntime::new(DockerConfig::new(RuntimeKind::Docker)),
            paddock_home: paddock_home.to_path_buf(),
            live: Mutex::new(HashMap::new()),
        }
    }

    async fn engine(&self) -> Result<&bollard::Docker, DaemonError> {
        self.docker.engine().await.map_err(|e| DaemonError::Unsupported {
            message: format!("docker:dind runs its engine on the host's Docker engine: {e}"),
            hint: "start the Docker engine (Debian: `apt install docker.io`), or point the daemon's DOCKER_HOST at it".into(),
        })
    }

    /// Start a run's private engine (its image built first where missing), with the init
    /// steps of both on `events`; returns once the engine answers.
    pub async fn start(
        &self,
        run_id: &str,
        run_dir: &Path,
        workspace: Option<&Path>,
        net: &paddock_egress::SandboxNet,
        events: &EventSink,
    ) -> Result<Sidecar, DaemonError> {
        check_can_run()?;
        let d = self.engine().await?;
        let step = |index: u32, description: &str| {
            events(SandboxEvent::InitStep {
                run_id: run_id.to_string(),
                index,
                total: 2,
                description: description.to_string(),
            })
        };
        step(1, "docker:dind: the private engine's image");
        let scratch = self.paddock_home.join("cache").join("image-build");
        let progress = image::init_steps(events, run_id, "docker:dind image: ");
        let image = dind::ensure_image(d, &scratch, &progress).await?;
        step(2, "docker:dind: starting the private engine");
        let dir = dir(run_dir);
        let files = write_net_files(&dir, net)?;
        let spec = SidecarSpec {
            run_id,
            dir: &dir,
            env: net.env.clone(),
            files,
            workspace,
            home: Some(self.paddock_home.display().to_string()),
        };
        let sidecar = dind::start(d, &image, &spec).await?;
        self.live
            .lock()
            .expect("dind lock poisoned")
            .insert(run_id.to_string(), sidecar.clone());
        Ok(sidecar)
    }

    /// A docker:host run's network holder (paddock's base image, built where missing), for
    /// its containers to join; `None` when the daemon is not root (then they get no
    /// network, as before).
    pub async fn start_holder(
        &self,
        run_id: &str,
        events: &EventSink,
    ) -> Result<Option<Sidecar>, DaemonError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let d = self.engine().await?;
        events(SandboxEvent::InitStep {
            run_id: run_id.to_string(),
            index: 1,
            total: 1,
            description: "docker:host: the network of the run's containers".into(),
        });
        let scratch = self.paddock_home.join("cache").join("image-build");
        let progress = image::init_steps(events, run_id, "paddock base image: ");
        let image = image::ensure(d, &scratch, None, &[], &progress).await?;
        let holder = dind::start_holder(
            d,
            &image,
            run_id,
            Some(self.paddock_home.display().to_string()),
        )
        .await?;
        Ok(Some(holder))
    }

    /// A live docker:host run's network holder after a daemon restart.
    pub async fn find_holder(&self, run_id: &str) -> Result<Option<Sidecar>, DaemonError> {
        Ok(dind::find_holder(self.engine().await?, run_id).await?)
    }

    /// Remove a docker:host run's network holder (a no-op when there is none).
    pub async fn remove_holder(&self, run_id: &str) -> Result<(), DaemonError> {
        dind::remove_holder(self.engine().await?, run_id).await?;
        Ok(())
    }

    /// A live run's sidecar after a daemon restart.
    pub async fn find(&self, run_id: &str) -> Result<Option<Sidecar>, DaemonError> {
        let found = dind::find(self.engine().await?, run_id).await?;
        if let Some(s) = &found {
            self.live
                .lock()
                .expect("dind lock poisoned")
                .insert(run_id.to_string(), s.clone());
        }
        Ok(found)
    }

    /// Remove a run's sidecar, with every container and image in its engine (its storage
    /// goes with the run's directory). A no-op when there is none.
    pub async fn remove(&self, run_id: &str) -> Result<(), DaemonError> {
        self.live.lock().expect("dind lock poisoned").remove(run_id);
        let d = self.engine().await?;
        dind::remove(d, run_id).await?;
        Ok(())
    }
}

/// Whether this daemon can give a run a private engine (checked at create, so the run is
/// refused before anything is made).
pub fn check_can_run() -> Result<(), DaemonError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(DaemonError::Unsupported {
        message: "docker:dind needs a root daemon (it places the run's egress listeners in the sidecar's network namespace)".into(),
        hint: "run the paddock daemon as root, or use `docker:host`".into(),
    })
}

/// The network files every sandbox gets (resolv.conf pointing at the run's DNS stub, the
/// CA bundle with paddock's CA), written into the sidecar's directory to be bound in.
fn write_net_files(
    dir: &Path,
    net: &paddock_egress::SandboxNet,
) -> Result<Vec<(PathBuf, PathBuf)>, DaemonError> {
    let files = dir.join("net");
    std::fs::create_dir_all(&files).map_err(|e| DaemonError::io("create", &files, e))?;
    let mut out = Vec::new();
    for (i, f) in net.files.iter().enumerate() {
        let p = files.join(i.to_string());
        std::fs::write(&p, &f.contents).map_err(|e| DaemonError::io("write", &p, e))?;
        out.push((p, f.path.clone()));
    }
    Ok(out)
}
