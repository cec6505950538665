//! cgroups of a run: where they live (v1 per-controller hierarchies or the v2 unified tree),
//! creating them with limits, reading OOM counters and usage, removing them.
//!
//! Cgroups are created only for runs with limits (and on v1 only for the limited
//! controllers): moving a process into a cgroup waits for an RCU grace period in the kernel,
//! which would otherwise dominate the start time. Stats and OOM detection are therefore
//! available for limited runs only.
//!
//! Layout: v1 `<controller mount>/<parent>/<run_id>` for memory, pids, cpu (and cpuacct when
//! it is a separate hierarchy and the CPU is limited, for stats); v2 `<base>/<parent>/<run_id>`, where `<base>` is
//! the unified root as root, or the parent of the daemon's own cgroup when that is delegated
//! to the user (rootless). Stage 1 of `paddock init` joins them by writing "0" to each
//! `cgroup.procs` before it creates the cgroup namespace.
//!
//! Owns: files under the run's cgroup directories. Never: kills processes other than through
//! `cgroup.kill`, or touches cgroups it did not create.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Limits, SandboxError, SandboxStats};

/// What this machine offers.
#[derive(Debug, Clone)]
pub enum CgroupSystem {
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
    },
    V2 {
        /// Directory under which `<parent>/<run_id>` is created, if we may create cgroups.
        base: Option<PathBuf>,
        root: PathBuf,
    },
    None,
}

/// The cgroups of one run (stored in the sandbox handle).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCgroups {
    pub version: u8,
    /// Every directory created for the run (v1: one per controller).
    pub dirs: Vec<PathBuf>,
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
}

impl CgroupSystem {
    /// Detect from /proc/self/mountinfo.
    pub fn detect(rootless: bool) -> CgroupSystem {
        let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") else {
            return CgroupSystem::None;
        };
        let mut v1 = (None, None, None, None);
        let mut v2_root = None;
        for line in mi.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or("");
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let _src = r.next();
            let opts = r.next().unwrap_or("");
            match fstype {
                "cgroup2" if mount_point == "/sys/fs/cgroup" || v2_root.is_none() => {
                    v2_root = Some(PathBuf::from(mount_point));
                }
                "cgroup" => {
                    let opts: Vec<&str> = opts.split(',').collect();
                    let mp = Some(PathBuf::from(mount_point));
                    if opts.contains(&"memory") {
                        v1.0 = mp.clone();
                    }
                    if opts.contains(&"pids") {
                        v1.1 = mp.clone();
                    }
                    if opts.contains(&"cpu") {
                        v1.2 = mp.clone();
                    }
                    if opts.contains(&"cpuacct") {
                        v1.3 = mp;
                    }
                }
                _ => {}
            }
        }
        if v1.0.is_some() || v1.1.is_some() || v1.2.is_some() {
            return CgroupSystem::V1 {
                memory: v1.0,
                pids: v1.1,
                cpu: v1.2,
                cpuacct: v1.3,
            };
        }
        let Some(root) = v2_root else {
            return CgroupSystem::None;
        };
        let base = if !rootless {
            Some(root.clone())
        } else {
            delegated_base(&root)
        };
        CgroupSystem::V2 { base, root }
    }

    /// Whether `limits` can be enforced here; the error says why not.
    pub fn check_limits(&self, limits: &Limits, rootless: bool) -> Result<(), SandboxError> {
        let wants = limits.memory_bytes.is_some() || limits.pids.is_some() || limits.cpus.is_some();
        if !wants {
            return Ok(());
        }
        match self {
            CgroupSystem::V1 { .. } if rootless => Err(SandboxError::Unsupported {
                message: "resource limits need cgroups, and cgroup v1 cannot be delegated to an unprivileged user".into(),
                hint: "run the daemon as root, use a machine with cgroup v2 delegation, or drop the limits".into(),
            }),
            CgroupSystem::V2 { base: None, .. } => Err(SandboxError::Unsupported {
                message: "resource limits need a cgroup v2 subtree this user may write to".into(),
                hint: "run paddock inside a delegated cgroup (e.g. `systemd-run --user -p Delegate=yes`) or as root".into(),
            }),
            CgroupSystem::None => Err(SandboxError::Unsupported {
                message: "no cgroup filesystem is mounted".into(),
                hint: "mount cgroup2 at /sys/fs/cgroup or drop the limits".into(),
            }),
            CgroupSystem::V2 { base: Some(base), .. } => {
                let avail = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
                for (want, ctl) in [
                    (limits.memory_bytes.is_some(), "memory"),
                    (limits.pids.is_some(), "pids"),
                    (limits.cpus.is_some(), "cpu"),
                ] {
                    if want && !avail.split_whitespace().any(|c| c == ctl) {
                        return Err(SandboxError::Unsupported {
                            message: format!("the cgroup v2 controller `{ctl}` is not available in {}", base.display()),
                            hint: "enable it in the parent's cgroup.subtree_control, or drop that limit".into(),
                        });
                    }
                }
                Ok(())
            }
            CgroupSystem::V1 { memory, pids, cpu, .. } => {
                for (want, have, ctl) in [
                    (limits.memory_bytes.is_some(), memory.is_some(), "memory"),
                    (limits.pids.is_some(), pids.is_some(), "pids"),
                    (limits.cpus.is_some(), cpu.is_some(), "cpu"),
                ] {
                    if want && !have {
                        return Err(SandboxError::Unsupported {
                            message: format!("the cgroup v1 controller `{ctl}` is not mounted"),
                            hint: "mount it under /sys/fs/cgroup or drop that limit".into(),
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// Create the run's cgroups and write the limits. Returns what was created (possibly
    /// nothing, rootless on v1).
    pub fn create(
        &self,
        parent: &str,
        run_id: &str,
        limits: &Limits,
        rootless: bool,
    ) -> Result<RunCgroups, SandboxError> {
        let mut rc = RunCgroups::default();
        let res = self.create_inner(parent, run_id, limits, rootless, &mut rc);
        if let Err(e) = res {
            rc.remove();
            return Err(e);
        }
        Ok(rc)
    }

    fn create_inner(
        &self,
        parent: &str,
        run_id: &str,
        limits: &Limits,
        rootless: bool,
        rc: &mut RunCgroups,
    ) -> Result<(), SandboxError> {
        match self {
            CgroupSystem::None => Ok(()),
            CgroupSystem::V1 { .. } if rootless => Ok(()),
            // No limits, no cgroups: joining one costs an RCU grace period on the kernel's
            // cgroup_threadgroup_rwsem (often several ms), the largest part of a start.
            _ if limits.memory_bytes.is_none()
                && limits.pids.is_none()
                && limits.cpus.is_none() =>
            {
                Ok(())
            }
            CgroupSystem::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => {
                rc.version = 1;
                let mk = |mount: &Path, rc: &mut RunCgroups| -> Result<PathBuf, SandboxError> {
                    let dir = mount.join(parent).join(run_id);
                    fs::create_dir_all(&dir)
                        .map_err(|e| SandboxError::io("create cgroup", dir.clone(), e))?;
                    if !rc.dirs.contains(&dir) {
                        rc.dirs.push(dir.clone());
                    }
                    Ok(dir)
                };
                if let (Some(m), true) = (memory, limits.memory_bytes.is_some()) {
                    let d = mk(m, rc)?;
                    if let Some(bytes) = limits.memory_bytes {
                        write(&d.join("memory.limit_in_bytes"), &bytes.to_string())?;
                        let sw = d.join("memory.memsw.limit_in_bytes");
                        if sw.exists() {
                            write(&sw, &bytes.to_string())?;
                        }
                        // Keep the kernel's OOM killer enabled (the default), so a run over
                        // its limit ends instead of hanging.
                        let _ = fs::write(d.join("memory.swappiness"), "0");
                    }
                    rc.memory = Some(d);
                }
                if let (Some(m), true) = (pids, limits.pids.is_some()) {
                    let d = mk(m, rc)?;
                    if let Some(n) = limits.pids {
                        write(&d.join("pids.max"), &n.to_string())?;
                    }
                    rc.pids = Some(d);
                }
                if let (Some(m), true) = (cpu, limits.cpus.is_some()) {
                    let d = mk(m, rc)?;
                    if let Some(cpus) = limits.cpus {
                        let period = 100_000u64;
                        let quota = ((cpus * period as f64) as u64).max(1000);
                        write(&d.join("cpu.cfs_period_us"), &period.to_string())?;
                        write(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    }
                    rc.cpu = Some(d);
                }
                // CPU usage for stats, when the CPU is limited anyway.
                if let (Some(m), true) = (cpuacct, limits.cpus.is_some()) {
                    let d = mk(m, rc)?;
                    rc.cpuacct = Some(d);
                }
                Ok(())
            }
            CgroupSystem::V2 { base: None, .. } => Ok(()),
            CgroupSystem::V2 {
                base: Some(base), ..
            } => {
                rc.version = 2;
                let avail = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
                let ctls: Vec<&str> = avail
                    .split_whitespace()
                    .filter(|c| ["memory", "pids", "cpu"].contains(c))
                    .collect();
                let enable: String = ctls.iter().map(|c| format!("+{c} ")).collect();
                let pdir = base.join(parent);
                fs::create_dir_all(&pdir)
                    .map_err(|e| SandboxError::io("create cgroup", pdir.clone(), e))?;
                if !enable.is_empty() {
                    // Best effort: already enabled, or not permitted (then limits fail below).
                    let _ = fs::write(base.join("cgroup.subtree_control"), enable.trim());
                    let _ = fs::write(pdir.join("cgroup.subtree_control"), enable.trim());
                }
                let dir = pdir.join(run_id);
                fs::create_dir_all(&dir)
                    .map_err(|e| SandboxError::io("create cgroup", dir.clone(), e))?;
                rc.dirs.push(dir.clone());
                if let Some(bytes) = limits.memory_bytes {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    let sw = dir.join("memory.swap.max");
                    if sw.exists() {
                        write(&sw, "0")?;
                    }
                }
                if let Some(n) = limits.pids {
                    write(&dir.join("pids.max"), &n.to_string())?;
                }
                if let Some(cpus) = limits.cpus {
                    let period = 100_000u64;
                    let quota = ((cpus * period as f64) as u64).max(1000);
                    write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                rc.memory = Some(dir.clone());
                rc.pids = Some(dir.clone());
                rc.cpu = Some(dir.clone());
                rc.cpuacct = Some(dir);
                Ok(())
            }
        }
    }
}

/// Rootless v2: the parent of our own cgroup, if it is ours to write (systemd delegation).
fn delegated_base(root: &Path) -> Option<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let own_dir = root.join(rel.trim_start_matches('/'));
    let base = own_dir.parent()?.to_path_buf();
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(&base).ok()?;
    // Only a directory owned by us counts as delegated to us.
    if md.uid() != nix::unistd::geteuid().as_raw() {
        return None;
    }
    nix::unistd::access(&base, nix::unistd::AccessFlags::W_OK).ok()?;
    Some(base)
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value)
        .map_err(|e| SandboxError::io("write cgroup limit", path.to_path_buf(), e))
}

fn read_kv(path: &Path, key: &str) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl RunCgroups {
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Whether the kernel's OOM killer killed something in this run.
    pub fn oom_killed(&self) -> bool {
        let Some(mem) = &self.memory else {
            return false;
        };
        let count = if self.version == 2 {
            read_kv(&mem.join("memory.events"), "oom_kill")
        } else {
            read_kv(&mem.join("memory.oom_control"), "oom_kill")
        };
        count.unwrap_or(0) > 0
    }

    pub fn stats(&self) -> SandboxStats {
        let mut s = SandboxStats::default();
        if self.version == 2 {
            if let Some(d) = &self.memory {
                s.memory_bytes = read_u64(&d.join("memory.current"));
                s.pids = read_u64(&d.join("pids.current"));
                s.cpu_usage_ns = read_kv(&d.join("cpu.stat"), "usage_usec").map(|u| u * 1000);
            }
        } else {
            s.memory_bytes = self
                .memory
                .as_ref()
                .and_then(|d| read_u64(&d.join("memory.usage_in_bytes")));
            s.pids = self
                .pids
                .as_ref()
                .and_then(|d| read_u64(&d.join("pids.current")));
            s.cpu_usage_ns = self
                .cpuacct
                .as_ref()
                .and_then(|d| read_u64(&d.join("cpuacct.usage")));
        }
        s
    }

    /// Kill everything still in the run's cgroups (v2 `cgroup.kill`; v1 SIGKILL each pid).
    pub fn kill_all(&self) {
        for d in &self.dirs {
            if self.version == 2 && fs::write(d.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            if let Ok(p) = fs::read_to_string(d.join("cgroup.procs")) {
                for pid in p.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }

    /// Remove the run's cgroup directories (waiting briefly for dying processes to leave).
    /// Missing directories are fine.
    pub fn remove(&self) -> Vec<(PathBuf, io::Error)> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut failed = Vec::new();
        for d in &self.dirs {
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        self.kill_all();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => {
                        failed.push((d.clone(), e));
                        break;
                    }
                }
            }
        }
        failed
    }
}
