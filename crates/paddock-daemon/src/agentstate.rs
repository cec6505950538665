//! Agent state kept per workspace between runs (an agent preset's `state:` directories:
//! history, settings, answered trust prompts), and the login grants' credential files.
//!
//! Layout: `$PADDOCK_HOME/agents/<agent>/<workspace key>/<i>-<dir name>/`, one directory
//! per sandbox path of the preset, where the workspace key is the workspace's directory
//! name and a hash of its path. Each is mounted read-write at its sandbox path; a second
//! run of the same agent in the same workspace finds what the first left.
//!
//! A login's credential file (placeholders only) is written into the state directory that
//! holds its sandbox path, fresh at every create (so the agent may rewrite it, as its CLI
//! does on a refresh); a file outside every state directory is injected read-only.
//!
//! Never: writes anything but placeholders into these directories; mounts anything of
//! `$PADDOCK_HOME` but these directories.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use paddock_api::AgentSetup;
use paddock_sandbox::{InjectedFile, MountSpec};
use sha2::Digest;

use crate::DaemonError;

/// What an agent's state adds to a sandbox.
#[derive(Default)]
pub struct AgentState {
    pub mounts: Vec<MountSpec>,
    pub files: Vec<InjectedFile>,
}

/// The directory of `agent`'s state for `workspace`.
pub fn workspace_dir(home_root: &Path, agent: &str, workspace: &Path) -> PathBuf {
    let digest = sha2::Sha256::digest(workspace.as_os_str().as_encoded_bytes());
    let base: String = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    home_root
        .join("agents")
        .join(agent)
        .join(format!("{base}-{}", &hex::encode(digest)[..16]))
}

/// Check an agent setup that came over the API.
pub fn check(agent: &AgentSetup) -> Result<(), DaemonError> {
    crate::names::check_dns_label(&agent.name).map_err(|why| {
        DaemonError::bad_request(
            format!(
                "invalid agent name `{}`: {why}",
                agent.name.escape_default()
            ),
            "agent names are DNS labels, e.g. `claude`",
        )
    })?;
    for p in &agent.state {
        let normal = p.is_absolute()
            && p.components()
                .skip(1)
                .all(|c| matches!(c, Component::Normal(_)))
            && p.components().count() > 2;
        if !normal || p.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(DaemonError::bad_request(
                format!(
                    "agent state path {} is not a plain absolute path",
                    p.display()
                ),
                "write state directories as absolute sandbox paths such as /home/paddock/.claude",
            ));
        }
    }
    Ok(())
}

/// Make (or find) the state directories of `agent` for `workspace`, owned by `uid:gid`
/// (the sandbox's user), and place the credential files. Blocking.
pub fn prepare(
    home_root: &Path,
    agent: &AgentSetup,
    workspace: &Path,
    login_files: Vec<(PathBuf, Vec<u8>)>,
    uid: u32,
    gid: u32,
) -> Result<AgentState, DaemonError> {
    let base = workspace_dir(home_root, &agent.name, workspace);
    let mut out = AgentState::default();
    let mut dirs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (i, target) in agent.state.iter().enumerate() {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = base.join(format!("{i}-{}", name.trim_start_matches('.')));
        make_dir(&dir, uid, gid)?;
        out.mounts.push(MountSpec {
            source: dir.clone(),
            target: target.clone(),
            read_only: false,
        });
        dirs.push((target.clone(), dir));
    }
    for (path, contents) in &agent.seed {
        let Some((target, dir)) = dirs.iter().find(|(t, _)| path.starts_with(t) && path != t)
        else {
            return Err(DaemonError::bad_request(
                format!(
                    "agent seed file {} is not in a state directory",
                    path.display()
                ),
                "seed files go under one of the agent's `state:` directories",
            ));
        };
        let rel = path.strip_prefix(target).unwrap_or(path);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(DaemonError::bad_request(
                format!("agent seed file {} is not a plain path", path.display()),
                "write seed paths without `..`",
            ));
        }
        let host = dir.join(rel);
        if std::fs::symlink_metadata(&host).is_err() {
            if let Some(parent) = host.parent() {
                make_dir(parent, uid, gid)?;
            }
            write_private(&host, contents.as_bytes(), uid, gid)?;
        }
    }
    for (path, contents) in login_files {
        match dirs.iter().find(|(t, _)| path.starts_with(t)) {
            Some((target, dir)) => {
                let rel = path.strip_prefix(target).unwrap_or(&path);
                let host = dir.join(rel);
                if let Some(parent) = host.parent() {
                    make_dir(parent, uid, gid)?;
                }
                write_private(&host, &contents, uid, gid)?;
            }
            None => out.files.push(InjectedFile {
                path,
                contents: Arc::from(contents),
            }),
        }
    }
    Ok(out)
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), DaemonError> {
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| DaemonError::io("chown", path, std::io::Error::from(e)))?;
    }
    Ok(())
}

fn make_dir(dir: &Path, uid: u32, gid: u32) -> Result<(), DaemonError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| DaemonError::io("create", dir, e))?;
    chown(dir, uid, gid)
}

/// Write `contents` to `path` (0600) by a rename, never through a symlink the agent left.
fn write_private(path: &Path, contents: &[u8], uid: u32, gid: u32) -> Result<(), DaemonError> {
    let tmp = path.with_extension("paddock-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| DaemonError::io("create", &tmp, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| DaemonError::io("write", &tmp, e))?;
    chown(&tmp, uid, gid)?;
    std::fs::rename(&tmp, path).map_err(|e| DaemonError::io("rename", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_persists_and_login_files_land_inside() {
        let home = tempfile::tempdir().unwrap();
        let agent = AgentSetup {
            name: "claude".into(),
            state: vec!["/home/paddock/.claude".into()],
            seed: [("/home/paddock/.claude/.claude.json".into(), "{}".into())].into(),
        };
        check(&agent).unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let files = vec![
            (
                "/home/paddock/.claude/.credentials.json".into(),
                b"{}".to_vec(),
            ),
            ("/home/paddock/.other".into(), b"x".to_vec()),
        ];
        let s = prepare(home.path(), &agent, Path::new("/w/app"), files, uid, gid).unwrap();
        assert_eq!(s.mounts.len(), 1);
        assert!(s.mounts[0].source.join(".credentials.json").is_file());
        assert_eq!(s.files.len(), 1);
        let again = prepare(home.path(), &agent, Path::new("/w/app"), vec![], uid, gid).unwrap();
        assert_eq!(again.mounts[0].source, s.mounts[0].source);
        let other = prepare(home.path(), &agent, Path::new("/w/other"), vec![], uid, gid).unwrap();
        assert_ne!(other.mounts[0].source, s.mounts[0].source);
    }

    #[test]
    fn bad_setups_are_refused() {
        for state in ["relative", "/", "/home/../etc", "/home"] {
            let a = AgentSetup {
                name: "x".into(),
                state: vec![state.into()],
                seed: Default::default(),
            };
            assert!(check(&a).is_err(), "{state}");
        }
        let a = AgentSetup {
            name: "Bad Name".into(),
            state: vec![],
            seed: Default::default(),
        };
        assert!(check(&a).is_err());
    }
}
