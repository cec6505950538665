//! Host-side views of what a container mounts, for runs of the root user.
//!
//! A container has no user namespace of its own (Docker's is engine-wide), so when the
//! caller is root the agent would be root. Instead it runs as uid:gid 1000:1000, and every
//! directory it is given is an *idmapped* mount whose files owned by 0 appear as owned by
//! 1000 (and files it writes land on disk owned by 0, as the caller's own would): the
//! workspace (through the run's overlay, so the copy-on-write layer is the native one) and
//! each `-m` mount. The views live under `run_dir/mnt/` in the daemon's mount namespace,
//! where the engine can bind them; [`unmount_all`] removes them at destroy.
//!
//! Owns: `run_dir/mnt/` and the mounts on it. Never: mounts outside `run_dir/mnt/`.

use std::path::{Path, PathBuf};

use crate::native::plan::RunLayout;
use crate::native::sys;
use crate::{SandboxError, SandboxSpec, WorkspaceMode};

/// uid and gid of the agent inside a container when the caller is root.
pub const AGENT_ID: u32 = 1000;

/// What the container binds instead of the host paths.
pub struct Views {
    /// The workspace view (bind source for the workspace path).
    pub workspace: PathBuf,
    /// Per `spec.mounts` entry, its view.
    pub mounts: Vec<PathBuf>,
    /// Every mount made, in the order to unmount them.
    pub made: Vec<PathBuf>,
}

fn mnt(run_dir: &Path) -> PathBuf {
    run_dir.join("mnt")
}

fn io(op: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let p = p.to_path_buf();
    move |e| SandboxError::io(op, p, e)
}

/// Make an empty mount point like `source` (a directory, or a file for a file mount).
fn mount_point(source: &Path, at: &Path) -> Result<(), SandboxError> {
    if source.is_dir() {
        std::fs::create_dir_all(at).map_err(io("create", at))
    } else {
        std::fs::File::create(at)
            .map(drop)
            .map_err(io("create", at))
    }
}

/// Build the views for `spec` (caller root). On failure nothing is left mounted.
pub fn make(spec: &SandboxSpec) -> Result<Views, SandboxError> {
    let layout = RunLayout::new(&spec.run_dir);
    let base = mnt(&spec.run_dir);
    std::fs::create_dir_all(&base).map_err(io("create", &base))?;
    let userns = sys::userns_mapping_root_to(AGENT_ID).map_err(|e| SandboxError::Unsupported {
        message: format!("a user namespace for the container's idmapped mounts: {e}"),
        hint: "container runs of root need unprivileged user namespaces and idmapped mounts (Linux 5.19+)".into(),
    })?;
    let made = std::cell::RefCell::new(Vec::<PathBuf>::new());
    let result = (|| {
        let idmap = |src: &Path, name: &str| -> Result<PathBuf, SandboxError> {
            let at = base.join(name);
            mount_point(src, &at)?;
            sys::idmapped_bind(src, &at, &userns).map_err(|e| SandboxError::Unsupported {
                message: format!("an idmapped mount of {}: {e}", src.display()),
                hint: "container runs of root need idmapped mounts (Linux 5.19+, a filesystem that supports them)".into(),
            })?;
            made.borrow_mut().insert(0, at.clone());
            Ok(at)
        };
        let workspace = match spec.workspace_mode {
            WorkspaceMode::Bind => idmap(&spec.workspace, "ws")?,
            WorkspaceMode::Overlay => {
                // The run's overlay (the native layout: upper = run_dir/layer/upper) over an
                // idmapped view of the workspace: lower files look like the agent's, and
                // what it writes (copy-ups keep that look) lands in the upper layer owned by
                // the agent's uid. Overlayfs itself cannot be idmapped, its lower layers can.
                let lower = idmap(&spec.workspace, "lower")?;
                // The overlay's root takes the upper directory's owner and mode.
                let upper = layout.upper();
                let mode = std::fs::metadata(&spec.workspace)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                    .unwrap_or(0o755);
                std::os::unix::fs::chown(&upper, Some(AGENT_ID), Some(AGENT_ID))
                    .map_err(io("chown", &upper))?;
                std::fs::set_permissions(
                    &upper,
                    std::os::unix::fs::PermissionsExt::from_mode(mode),
                )
                .map_err(io("chmod", &upper))?;
                let ws = base.join("ws");
                std::fs::create_dir_all(&ws).map_err(io("create", &ws))?;
                let data = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    layout.upper().display(),
                    layout.work().display()
                );
                nix::mount::mount(
                    Some("overlay"),
                    &ws,
                    Some("overlay"),
                    nix::mount::MsFlags::empty(),
                    Some(data.as_str()),
                )
                .map_err(|e| SandboxError::Unsupported {
                    message: format!("the workspace overlay for the container: {e}"),
                    hint: "the kernel must support overlayfs over idmapped layers (Linux 5.19+)"
                        .into(),
                })?;
                made.borrow_mut().insert(0, ws.clone());
                ws
            }
        };
        let mut mounts = Vec::new();
        for (i, m) in spec.mounts.iter().enumerate() {
            mounts.push(idmap(&m.source, &format!("m{i}"))?);
        }
        Ok((workspace, mounts))
    })();
    let made = made.into_inner();
    match result {
        Ok((workspace, mounts)) => Ok(Views {
            workspace,
            mounts,
            made,
        }),
        Err(e) => {
            unmount_all(&made);
            let _ = std::fs::remove_dir_all(&base);
            Err(e)
        }
    }
}

/// Unmount the views (lazily: a container that still holds one keeps it until it ends).
pub fn unmount_all(made: &[PathBuf]) {
    for p in made {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Unmount everything under `run_dir/mnt` (also views a crashed daemon did not record) and
/// remove it.
pub fn remove(run_dir: &Path, made: &[PathBuf]) -> Result<(), SandboxError> {
    unmount_all(made);
    let base = mnt(run_dir);
    if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut stale: Vec<PathBuf> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&base))
            .collect();
        stale.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        unmount_all(&stale);
    }
    match std::fs::remove_dir_all(&base) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SandboxError::io("remove", base, e)),
    }
}
