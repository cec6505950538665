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
//! network holder ([`Sidecars::start_holder`]) whose namespace gets the run's listeners, for
//! the run's containers to join.
//!
//! Owns: the sidecar and holder containers (the engine is their record: nothing is kept
//! here) and `<run_dir>/dind` (the engine's storage, its socket, and the network files
//! bound into it). Never: starts one for a run that did not ask, or leaves one running
//! after its run ended.

use std::path::{Path, PathBuf};

use paddock_config::Service;
use paddock_sandbox::docker::dind::{self, Sidecar, SidecarSpec};
use paddock_sandbox::docker::{DockerConfig, DockerRuntime, image};
use paddock_sandbox::{EventSink, RuntimeKind, SandboxEvent};

use crate::error::DaemonError;

/// The docker services' containers on the host's engine.
pub struct Sidecars {
    /// For its engine client (connected on first use).
    docker: DockerRuntime,
    paddock_home: PathBuf,
}

/// The container of a run's `service`: docker:dind's engine, or docker:host's holder.
fn container_name(run_id: &str, service: Service) -> String {
    match service {
        Service::DockerDind => dind::container_name(run_id),
        Service::DockerHost => dind::holder_name(run_id),
    }
}

/// A sidecar's directory in its run's directory.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("dind")
}

/// The socket of a run's private engine.
pub fn socket(run_dir: &Path) -> PathBuf {
    dind::socket(&dir(run_dir))
}

impl Sidecars {
    pub fn new(paddock_home: &Path) -> Self {
        Sidecars {
            docker: DockerRuntime::new(DockerConfig::new(RuntimeKind::Docker)),
            paddock_home: paddock_home.to_path_buf(),
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
    pub async fn start_dind(
        &self,
        run_id: &str,
        run_dir: &Path,
        workspace: Option<&Path>,
        net: &paddock_egress::SandboxNet,
        events: &EventSink,
    ) -> Result<Sidecar, DaemonError> {
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
        Ok(dind::start(d, &image, &spec).await?)
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

    /// A live run's sidecar or holder, after a daemon restart.
    pub async fn find(
        &self,
        run_id: &str,
        service: Service,
    ) -> Result<Option<Sidecar>, DaemonError> {
        let d = self.engine().await?;
        Ok(dind::find_named(d, &container_name(run_id, service)).await?)
    }

    /// Remove a run's sidecar (with every container and image in its engine; its storage
    /// goes with the run's directory) or holder. A no-op when there is none.
    pub async fn remove(&self, run_id: &str, service: Service) -> Result<(), DaemonError> {
        let d = self.engine().await?;
        dind::remove_named(d, &container_name(run_id, service)).await?;
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
