//! `docker:dind`: a private Docker engine for one run, as a sidecar container on the host's
//! engine.
//!
//! The sidecar runs Debian's `dockerd` (an image built locally: paddock's base plus
//! `docker.io`, [`DEPENDENCIES`]) without `--privileged`: it gets the default capabilities
//! plus CAP_SYS_ADMIN and CAP_NET_ADMIN (what runc needs to make namespaces and mounts), a
//! private cgroup namespace whose hierarchies its entry script mounts writable (so inner
//! containers' cgroups nest under the sidecar's own, and its limits bound them), no network
//! (`none`: the daemon puts the run's egress listeners in its namespace, so what it pulls
//! obeys the run's policy), and paddock's seccomp rows minus those runc needs
//! ([`super::seccomp::engine_profile_json`]). Its storage is a directory the caller gives
//! (under the run's directory); its API socket is in that directory, and only the daemon
//! connects to it (the run reaches it through the daemon's policy proxy).
//!
//! Owns: containers labelled [`LABEL`] and the layout of a sidecar's directory. Never:
//! starts a privileged container, gives the sidecar a network, or mounts the host
//! engine's socket into it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::image::{self, ProgressSink};
use super::seccomp;
use crate::native::nsworker::NsWorker;
use crate::native::run::proc_start_time;
use crate::{NetnsCapability, SandboxError, SandboxHandle};

/// The label of a sidecar: the run it serves.
pub const LABEL: &str = "paddock.dind.run";

/// What the sidecar's image adds to paddock's base (Debian's signed archive).
pub const DEPENDENCIES: &[&str] = &["docker.io"];

/// Where the engine's socket directory is inside the sidecar.
const SOCKET_DIR: &str = "/run/paddock-dind";

/// How long a new engine may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The entry script: the cgroup hierarchies of the sidecar's own cgroup namespace mounted
/// writable (Docker mounts them read-only), then dockerd with no bridge and no iptables
/// (the sidecar has no network to route).
const ENTRY: &str = r#"set -e
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  umount /sys/fs/cgroup
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
else
  mounts=$(grep ' - cgroup ' /proc/self/mountinfo | while read -r l; do o=${l##* }; o=${o#ro,}; o=${o#rw,}; echo "$(echo "$l" | cut -d' ' -f5)|$o"; done)
  umount -R /sys/fs/cgroup 2>/dev/null || true
  mount -t tmpfs -o nosuid,nodev,noexec,mode=755 cgroup /sys/fs/cgroup
  for m in $mounts; do
    mkdir -p "${m%%|*}"
    mount -t cgroup -o "nosuid,nodev,noexec,${m#*|}" cgroup "${m%%|*}"
  done
fi
exec dockerd --host "unix://$0/docker.sock" --data-root /var/lib/docker --bridge none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false"#;

/// What a sidecar is made from.
pub struct SidecarSpec<'a> {
    pub run_id: &'a str,
    /// The sidecar's directory (made here): `data/` is the engine's storage, `sock/` its
    /// socket.
    pub dir: &'a Path,
    /// Environment of dockerd (proxy variables, CA bundle path).
    pub env: Vec<(String, String)>,
    /// Files bound read-only into the sidecar: (host path, path inside).
    pub files: Vec<(PathBuf, PathBuf)>,
    /// Bound at the same path, writable, so `-v $PWD:/src` in the private engine sees the
    /// run's workspace (bind-mode runs only: the engine cannot see a copy-on-write view).
    pub workspace: Option<&'a Path>,
    /// `paddock.home` label value.
    pub home: Option<String>,
}

/// A running sidecar.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub container: String,
    /// Host pid of its first process, and that process's start time (for pid reuse).
    pub pid: i32,
    pub pid_start: u64,
}

/// The container name of a run's sidecar.
pub fn container_name(run_id: &str) -> String {
    format!("paddock-dind-{run_id}")
}

/// The engine's socket in a sidecar's directory.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("sock").join("docker.sock")
}

fn engine(what: &str, e: bollard::errors::Error) -> SandboxError {
    SandboxError::Unsupported {
        message: format!("docker:dind: {what}: {e}"),
        hint: "check `docker info` and the daemon's DOCKER_HOST; `paddock doctor` shows what docker:dind needs".into(),
    }
}

/// The sidecar's image (paddock's base plus [`DEPENDENCIES`]), built where missing.
pub async fn ensure_image(
    d: &Docker,
    scratch: &Path,
    progress: ProgressSink<'_>,
) -> Result<String, SandboxError> {
    let deps: Vec<image::Dependency> = DEPENDENCIES
        .iter()
        .map(|p| image::Dependency::Apt((*p).to_string()))
        .collect();
    image::ensure(d, scratch, None, &deps, progress).await
}

/// Start a run's sidecar on `image` (a stale one of the same run is replaced) and wait
/// until its engine answers.
pub async fn start(
    d: &Docker,
    image: &str,
    spec: &SidecarSpec<'_>,
) -> Result<Sidecar, SandboxError> {
    let name = container_name(spec.run_id);
    remove_named(d, &name).await?;
    for sub in ["data", "sock"] {
        let p = spec.dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| SandboxError::io("create", p, e))?;
    }
    let bind = |src: &Path, dst: &Path, ro: bool| Mount {
        target: Some(dst.display().to_string()),
        source: Some(src.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(ro),
        ..Default::default()
    };
    let mut mounts = vec![
        bind(&spec.dir.join("data"), Path::new("/var/lib/docker"), false),
        bind(&spec.dir.join("sock"), Path::new(SOCKET_DIR), false),
    ];
    for (src, dst) in &spec.files {
        mounts.push(bind(src, dst, true));
    }
    if let Some(ws) = spec.workspace {
        mounts.push(bind(ws, ws, false));
    }
    let host = HostConfig {
        network_mode: Some("none".into()),
        cgroupns_mode: Some(bollard::models::HostConfigCgroupnsModeEnum::PRIVATE),
        cap_add: Some(vec!["SYS_ADMIN".into(), "NET_ADMIN".into()]),
        security_opt: Some(vec![format!(
            "seccomp={}",
            seccomp::engine_profile_json(cgroup_v2())
        )]),
        mounts: Some(mounts),
        init: Some(true),
        ipc_mode: Some("private".into()),
        ..Default::default()
    };
    let mut labels: HashMap<String, String> = [(LABEL.to_string(), spec.run_id.to_string())].into();
    if let Some(h) = &spec.home {
        labels.insert(super::HOME_LABEL.into(), h.clone());
    }
    let body = ContainerCreateBody {
        image: Some(image.into()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), ENTRY.into()]),
        cmd: Some(vec![SOCKET_DIR.into()]),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        hostname: Some("dind".into()),
        labels: Some(labels),
        host_config: Some(host),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    d.create_container(Some(opts), body)
        .await
        .map_err(|e| engine("create the sidecar", e))?;
    d.start_container(&name, None)
        .await
        .map_err(|e| engine("start the sidecar", e))?;
    let started = wait_ready(d, &name, &socket(spec.dir)).await;
    match started {
        Ok(s) => Ok(s),
        Err(e) => {
            let _ = remove_named(d, &name).await;
            Err(e)
        }
    }
}

/// Whether the host's cgroups are the unified (v2) hierarchy.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The sidecar once its engine answers `/_ping` (or why it never did, with its log).
async fn wait_ready(d: &Docker, name: &str, sock: &Path) -> Result<Sidecar, SandboxError> {
    let t0 = Instant::now();
    loop {
        let Some(s) = find_named(d, name).await? else {
            return Err(SandboxError::Setup {
                step: "docker:dind".into(),
                message: format!(
                    "the private engine exited at once:\n{}",
                    log_tail(d, name).await
                ),
            });
        };
        let path = sock.to_path_buf();
        let ok = tokio::task::spawn_blocking(move || ping(&path))
            .await
            .unwrap_or(false);
        if ok {
            return Ok(s);
        }
        if t0.elapsed() > READY_WITHIN {
            return Err(SandboxError::Setup {
                step: "docker:dind".into(),
                message: format!(
                    "the private engine did not answer within {} s:\n{}",
                    READY_WITHIN.as_secs(),
                    log_tail(d, name).await
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /_ping` over the socket answers 200.
fn ping(sock: &Path) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: dind\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// The last lines of the sidecar's log, for an error.
async fn log_tail(d: &Docker, name: &str) -> String {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail("15")
        .build();
    let mut out = String::new();
    let mut s = d.logs(name, Some(opts));
    while let Some(Ok(item)) = s.next().await {
        out.push_str(&String::from_utf8_lossy(&item.into_bytes()));
    }
    out
}

/// The running container `name` (a sidecar or holder), if there is one.
pub async fn find_named(d: &Docker, name: &str) -> Result<Option<Sidecar>, SandboxError> {
    match d.inspect_container(name, None).await {
        Ok(c) => {
            let st = c.state.unwrap_or_default();
            let pid = st.pid.unwrap_or(0) as i32;
            if st.running != Some(true) || pid <= 0 {
                return Ok(None);
            }
            Ok(Some(Sidecar {
                container: c.id.unwrap_or_else(|| name.to_string()),
                pid,
                pid_start: proc_start_time(pid).unwrap_or(0),
            }))
        }
        Err(e) if super::is_not_found(&e) => Ok(None),
        Err(e) => Err(engine("inspect the sidecar", e)),
    }
}

/// Remove the container `name` (a sidecar, whose inner containers die with it, or a
/// holder); `true` if there was one. A sidecar's directory stays for the caller to remove.
pub async fn remove_named(d: &Docker, name: &str) -> Result<bool, SandboxError> {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match d.remove_container(name, Some(opts)).await {
        Ok(()) => Ok(true),
        Err(e) if super::is_not_found(&e) => Ok(false),
        // Another removal (the run's end, say) is under way: done once it is.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => {
            let t0 = Instant::now();
            while d.inspect_container(name, None).await.is_ok() {
                if t0.elapsed() > READY_WITHIN {
                    return Err(SandboxError::Setup {
                        step: "docker:dind".into(),
                        message: format!("the sidecar {name} is still being removed"),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(true)
        }
        Err(e) => Err(engine("remove the sidecar", e)),
    }
}

/// The label of a docker:host run's network holder: the run it serves.
pub const HOLDER_LABEL: &str = "paddock.dockerhost.netns";

/// The container name of a docker:host run's network holder.
pub fn holder_name(run_id: &str) -> String {
    format!("paddock-dhnet-{run_id}")
}

/// Start a docker:host run's network holder on `image`: a container that only holds a
/// network namespace (no network of its own, no capabilities, a read-only root, `sleep`),
/// which the daemon gives the run's egress listeners and the run's containers then join
/// (`container:<holder>`). Not labelled as the run's: the run cannot see, stop or enter it.
pub async fn start_holder(
    d: &Docker,
    image: &str,
    run_id: &str,
    home: Option<String>,
) -> Result<Sidecar, SandboxError> {
    let name = holder_name(run_id);
    remove_named(d, &name).await?;
    let mut labels: HashMap<String, String> =
        [(HOLDER_LABEL.to_string(), run_id.to_string())].into();
    if let Some(h) = home {
        labels.insert(super::HOME_LABEL.into(), h);
    }
    let body = ContainerCreateBody {
        image: Some(image.into()),
        entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
        cmd: Some(vec![]),
        user: Some("65534:65534".into()),
        hostname: Some("paddock".into()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            // The resolv.conf that joining containers share: the run's DNS stub.
            dns: Some(vec!["127.0.0.1".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            init: Some(true),
            pids_limit: Some(8),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    d.create_container(Some(opts), body)
        .await
        .map_err(|e| engine("create the network holder", e))?;
    d.start_container(&name, None)
        .await
        .map_err(|e| engine("start the network holder", e))?;
    match find_named(d, &name).await? {
        Some(s) => Ok(s),
        None => {
            let log = log_tail(d, &name).await;
            let _ = remove_named(d, &name).await;
            Err(SandboxError::Setup {
                step: "docker:host".into(),
                message: format!("the network holder exited at once:\n{log}"),
            })
        }
    }
}

/// The network namespace of a sidecar, for the run's egress listeners (root daemon).
pub struct SidecarNetns {
    pid: i32,
    pid_start: u64,
    ns: NsWorker,
}

impl SidecarNetns {
    pub fn new(s: &Sidecar) -> Self {
        SidecarNetns {
            pid: s.pid,
            pid_start: s.pid_start,
            ns: NsWorker::default(),
        }
    }

    /// The sidecar's pid while that process runs.
    fn live(&self, handle: &SandboxHandle) -> Result<i32, SandboxError> {
        if self.pid <= 0
            || (self.pid_start != 0 && proc_start_time(self.pid) != Some(self.pid_start))
        {
            return Err(SandboxError::NotRunning {
                run_id: handle.run_id.clone(),
            });
        }
        Ok(self.pid)
    }
}

impl NetnsCapability for SidecarNetns {
    fn netns_fd(&self, handle: &SandboxHandle) -> Result<OwnedFd, SandboxError> {
        super::open_netns(|| self.live(handle))
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
        super::netns_sockets(&self.ns, self.netns_fd(handle)?, kinds)
    }

    /// Nothing is held: the sidecar's engine needs no network until it pulls.
    fn release(&self, _handle: &SandboxHandle) -> Result<(), SandboxError> {
        Ok(())
    }
}
