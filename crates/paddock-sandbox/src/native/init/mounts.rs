//! The sandbox's filesystem, built by `paddock init` (PID 1) inside its private mount
//! namespace, then entered with `pivot_root`.
//!
//! Layout: a tmpfs root (the prelude's `root` is only its mount point) holding read-only,
//! nosuid, nodev binds of the host's system directories (symlinked `/bin → usr/bin`
//! layouts are recreated as symlinks), a fresh `/proc` with runc's masked and read-only
//! paths, a minimal `/dev` (host null/zero/full/random/urandom/tty nodes, a private devpts,
//! `/dev/shm`), a private `/tmp`, the workspace (overlay or bind), home, extra mounts and
//! injected files, and masks over `/etc` secrets. The root tmpfs and `/dev` are read-only
//! once built.
//!
//! Owns: every mount of a sandbox. Never: mounts anything in the host's mount namespace
//! (the first thing it does is make `/` recursively private in the new namespace), or
//! follows a symlink while creating a mount point.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::SetupError;
use crate::WorkspaceMode;
use crate::native::plan::{Bind, InitPlan, SYSTEM_DIRS, depth};
use crate::native::sys::{
    self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};

/// /proc entries hidden like runc does (files get /dev/null, directories an empty tmpfs).
const PROC_MASKED: &[&str] = &[
    "acpi",
    "asound",
    "interrupts",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
/// /proc entries made read-only.
const PROC_READONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

type R<T> = Result<T, SetupError>;

fn err(step: &str, what: impl std::fmt::Display, e: impl std::fmt::Display) -> SetupError {
    SetupError {
        step: step.to_string(),
        message: format!("{what}: {e}"),
    }
}

fn do_mount(
    step: &str,
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> R<()> {
    mount(src, target, fstype, flags, data).map_err(|e| {
        err(
            step,
            format!(
                "mounting {} on {}",
                src.map(|s| s.display().to_string())
                    .or(fstype.map(str::to_string))
                    .unwrap_or_default(),
                target.display()
            ),
            e,
        )
    })
}

fn setattr(step: &str, target: &Path, recursive: bool, set: u64) -> R<()> {
    sys::mount_setattr(target, recursive, set).map_err(|e| {
        err(
            step,
            format!("setting mount flags on {}", target.display()),
            e,
        )
    })
}

fn bind(step: &str, src: &Path, target: &Path, recursive: bool, set: u64) -> R<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    do_mount(step, Some(src), target, None::<&str>, flags, None)?;
    if set != 0 {
        setattr(step, target, recursive, set)?;
    }
    Ok(())
}

fn tmpfs(step: &str, target: &Path, flags: MsFlags, opts: &str) -> R<()> {
    do_mount(
        step,
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags,
        Some(opts),
    )
}

fn mkdir(step: &str, p: &Path) -> R<()> {
    match fs::DirBuilder::new().mode(0o755).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(step, format!("creating {}", p.display()), e)),
    }
}

fn touch(step: &str, p: &Path) -> R<()> {
    match fs::OpenOptions::new().write(true).create_new(true).open(p) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(step, format!("creating {}", p.display()), e)),
    }
}

/// `root` + absolute `path`.
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in path.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// Create `path` (absolute, inside the sandbox) and its parents below `root`, refusing to
/// traverse symlinks. The last component is a directory, or an empty file when `!dir`.
fn make_mount_point(step: &str, root: &Path, path: &Path, dir: bool) -> R<PathBuf> {
    let comps: Vec<_> = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let mut cur = root.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == comps.len();
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(SetupError {
                    step: step.into(),
                    message: format!(
                        "{} has a symlink in its path inside the sandbox",
                        path.display()
                    ),
                });
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(SetupError {
                    step: step.into(),
                    message: format!(
                        "{} has a non-directory in its path inside the sandbox",
                        path.display()
                    ),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if last && !dir {
                    touch(step, &cur)?;
                } else {
                    mkdir(step, &cur)?;
                }
            }
            Err(e) => return Err(err(step, format!("inspecting {}", cur.display()), e)),
        }
    }
    Ok(cur)
}

/// Step 1, before the run is known: the root tmpfs on `root` (the
/// [`super::super::plan::Prelude`]'s mount point), system directories (from `system_root`,
/// an image's filesystem, or the host's `/`), /proc, /dev, /tmp.
pub fn prepare_root(root: &Path, system_root: Option<&Path>) -> R<PathBuf> {
    let step = "preparing the sandbox root";
    do_mount(
        step,
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let root = root.to_path_buf();
    tmpfs(
        step,
        &root,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755",
    )?;

    let system_root = system_root.unwrap_or(Path::new("/"));
    for name in SYSTEM_DIRS {
        let host = system_root.join(name);
        let Ok(md) = fs::symlink_metadata(&host) else {
            continue;
        };
        let inside = root.join(name);
        if md.file_type().is_symlink() {
            let target = fs::read_link(&host)
                .map_err(|e| err(step, format!("reading {}", host.display()), e))?;
            std::os::unix::fs::symlink(&target, &inside)
                .map_err(|e| err(step, format!("creating {}", inside.display()), e))?;
        } else if md.is_dir() {
            mkdir(step, &inside)?;
            bind(
                step,
                &host,
                &inside,
                true,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            )?;
        }
    }

    // /proc: fresh, for our pid namespace.
    let proc_ = root.join("proc");
    mkdir(step, &proc_)?;
    do_mount(
        step,
        Some(Path::new("proc")),
        &proc_,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    for name in PROC_MASKED {
        mask(step, &proc_.join(name))?;
    }
    for name in PROC_READONLY {
        let p = proc_.join(name);
        if p.exists() {
            bind(
                step,
                &p,
                &p,
                true,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            )?;
        }
    }

    // /dev: a small tmpfs with host device nodes bound in and a private devpts.
    let dev = root.join("dev");
    mkdir(step, &dev)?;
    tmpfs(
        step,
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "mode=0755,size=64k",
    )?;
    for node in DEV_NODES {
        let inside = dev.join(node);
        touch(step, &inside)?;
        bind(
            step,
            &Path::new("/dev").join(node),
            &inside,
            false,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        )?;
    }
    let pts = dev.join("pts");
    mkdir(step, &pts)?;
    do_mount(
        step,
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    symlink(step, "pts/ptmx", &dev.join("ptmx"))?;
    let shm = dev.join("shm");
    mkdir(step, &shm)?;
    tmpfs(
        step,
        &shm,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    )?;
    symlink(step, "/proc/self/fd", &dev.join("fd"))?;
    symlink(step, "/proc/self/fd/0", &dev.join("stdin"))?;
    symlink(step, "/proc/self/fd/1", &dev.join("stdout"))?;
    symlink(step, "/proc/self/fd/2", &dev.join("stderr"))?;
    setattr(
        step,
        &dev,
        false,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    )?;

    let tmp = root.join("tmp");
    mkdir(step, &tmp)?;
    tmpfs(
        step,
        &tmp,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    )?;
    Ok(root)
}

fn symlink(step: &str, target: &str, link: &Path) -> R<()> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| err(step, format!("creating {}", link.display()), e))
}

/// Hide `p` (if it exists): a file under /dev/null, a directory under an empty read-only tmpfs.
fn mask(step: &str, p: &Path) -> R<()> {
    mask_with(step, p, Path::new("/dev/null"))
}

/// Hide `p` (if it exists): a file under `file_mask`, a directory under an empty read-only
/// tmpfs.
fn mask_with(step: &str, p: &Path, file_mask: &Path) -> R<()> {
    let Ok(md) = fs::symlink_metadata(p) else {
        return Ok(());
    };
    if md.is_dir() {
        tmpfs(
            step,
            p,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            "mode=0755,size=4k",
        )
    } else if md.file_type().is_symlink() {
        Ok(())
    } else {
        bind(
            step,
            file_mask,
            p,
            false,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        )
    }
}

/// Overlay option values escape `\`, `,` and `:`.
fn esc(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn mount_workspace(step: &str, plan: &InitPlan, root: &Path) -> R<()> {
    let target = make_mount_point(step, root, &plan.workspace, true)?;
    match plan.workspace_mode {
        WorkspaceMode::Bind => bind(
            step,
            &plan.workspace,
            &target,
            true,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        ),
        WorkspaceMode::Overlay => {
            let base = format!(
                "lowerdir={},upperdir={},workdir={}",
                esc(&plan.workspace),
                esc(&plan.run_dir.join("layer/upper")),
                esc(&plan.run_dir.join("layer/work")),
            );
            // A mount in a user namespace needs `userxattr` (user.overlay.* xattrs; the
            // kernel then also forces redirect_dir=nofollow and metacopy=off). These keep the
            // upper dir a plain tree paddock-layer can read: whiteouts are 0/0 character
            // devices, opaque directories carry `user.overlay.opaque`, and a directory
            // rename is EXDEV (copied by tools) instead of a redirect. Older kernels reject
            // some options, so fall back step by step.
            let attempts = [
                format!("{base},userxattr,redirect_dir=nofollow,metacopy=off,index=off"),
                format!("{base},userxattr"),
                format!("{base},redirect_dir=off,metacopy=off,index=off"),
                base.clone(),
            ];
            let mut last = None;
            for opts in &attempts {
                match mount(
                    Some("overlay"),
                    &target,
                    Some("overlay"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(opts.as_str()),
                ) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
            Err(SetupError {
                step: step.into(),
                message: format!(
                    "mounting the copy-on-write workspace (overlayfs) failed: {}; use workspace mode `bind`, or a kernel >= 5.11",
                    last.map(|e| e.to_string()).unwrap_or_default()
                ),
            })
        }
    }
}

fn mount_bind(step: &str, b: &Bind, root: &Path) -> R<()> {
    let target = make_mount_point(step, root, &b.target, b.is_dir)?;
    let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if b.read_only {
        set |= MOUNT_ATTR_RDONLY;
    }
    bind(step, &b.source, &target, b.is_dir, set)
}

/// Step 2: workspace, home, extra mounts and injected files, parents before children.
pub fn mount_workspace_and_binds(plan: &InitPlan, root: &Path) -> R<()> {
    let step = "mounting the workspace";
    enum Op<'a> {
        Workspace,
        Bind(&'a Bind),
    }
    let mut ops: Vec<(usize, Op<'_>)> = vec![(depth(&plan.workspace), Op::Workspace)];
    ops.extend(plan.binds.iter().map(|b| (depth(&b.target), Op::Bind(b))));
    ops.sort_by_key(|(d, _)| *d);
    for (_, op) in ops {
        match op {
            Op::Workspace => mount_workspace(step, plan, root)?,
            Op::Bind(b) => mount_bind(step, b, root)?,
        }
    }
    Ok(())
}

/// Step 3: hide secrets under /etc.
///
/// Secret files are covered with an empty, mode-000 file on a read-only bind: opening one
/// fails with EACCES (even for its owner, as the agent holds no capabilities) instead of
/// reading as empty, and it cannot be chmod'ed back. The placeholder is unlinked once bound.
pub fn apply_masks(plan: &InitPlan, root: &Path) -> R<()> {
    let step = "hiding host secrets";
    if plan.masks.is_empty() {
        return Ok(());
    }
    let placeholder = root.join(".paddock-masked");
    {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&placeholder)
            .map_err(|e| err(step, format!("creating {}", placeholder.display()), e))?;
    }
    let result = plan
        .masks
        .iter()
        .try_for_each(|m| mask_with(step, &under_root(root, &m.path), &placeholder));
    let _ = fs::remove_file(&placeholder);
    result
}

/// Step 4 (after the control socket is bound): enter the new root and drop the old one.
pub fn enter_root(root: &Path) -> R<()> {
    let step = "switching to the new root";
    nix::unistd::chdir(root).map_err(|e| err(step, "entering the new root", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| err(step, "pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err(step, "detaching the host root", e))?;
    nix::unistd::chdir("/").map_err(|e| err(step, "chdir /", e))?;
    setattr(
        step,
        Path::new("/"),
        false,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )?;
    Ok(())
}
