//! `$PADDOCK_HOME` and the files in it: where they are, and creating them with the right
//! permissions (directory 0700).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::DaemonError;

/// The layout of `$PADDOCK_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$PADDOCK_HOME`, else `$XDG_DATA_HOME/paddock`, else `~/.local/share/paddock`.
    pub fn from_env() -> Result<Home, DaemonError> {
        if let Some(p) = std::env::var_os("PADDOCK_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home::at(absolute(PathBuf::from(p))));
        }
        if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home::at(absolute(PathBuf::from(p)).join("paddock")));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => Ok(Home::at(PathBuf::from(h).join(".local/share/paddock"))),
            None => Err(DaemonError::Config {
                message: "cannot find paddock's home: neither PADDOCK_HOME, XDG_DATA_HOME nor HOME is set".into(),
                hint: "set PADDOCK_HOME to a directory paddock may own".into(),
            }),
        }
    }

    pub fn at(root: PathBuf) -> Home {
        Home { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("daemon.sock")
    }
    pub fn daemon_lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    pub fn spawn_lock(&self) -> PathBuf {
        self.root.join("spawn.lock")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }
    /// The secret store (grants, encrypted; see paddock-secrets).
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs_dir().join(run_id)
    }

    /// Create the home (0700) if needed, and refuse one that another user owns or that
    /// others can enter.
    pub fn ensure(&self) -> Result<(), DaemonError> {
        fs::create_dir_all(&self.root).map_err(|e| DaemonError::io("create", &self.root, e))?;
        let meta = fs::metadata(&self.root).map_err(|e| DaemonError::io("stat", &self.root, e))?;
        let uid = nix::unistd::geteuid().as_raw();
        if meta.uid() != uid {
            return Err(DaemonError::Config {
                message: format!(
                    "{} belongs to uid {}, not to you (uid {uid})",
                    self.root.display(),
                    meta.uid()
                ),
                hint: "set PADDOCK_HOME to a directory of your own".into(),
            });
        }
        if meta.mode() & 0o777 != 0o700 {
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .map_err(|e| DaemonError::io("chmod", &self.root, e))?;
        }
        let runs = self.runs_dir();
        fs::create_dir_all(&runs).map_err(|e| DaemonError::io("create", &runs, e))?;
        fs::set_permissions(&runs, fs::Permissions::from_mode(0o700))
            .map_err(|e| DaemonError::io("chmod", &runs, e))?;
        Ok(())
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}
