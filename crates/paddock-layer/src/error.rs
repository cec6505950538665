//! Typed errors of the layer crate, each with a user-facing hint.

use std::io;
use std::path::{Path, PathBuf};

use crate::scan::FileKind;

/// Everything that can go wrong while scanning, diffing or applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", crate::diff::escape_path(path))]
    Io {
        /// What was being done ("read", "rename", ...).
        op: &'static str,
        /// The path involved (absolute, or relative to the workspace).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The upper dir or the workspace is missing or not a directory.
    #[error("{what} {} is not a directory", crate::diff::escape_path(path))]
    NotADirectory {
        /// "workspace" or "layer".
        what: &'static str,
        /// The offending path.
        path: PathBuf,
    },

    /// The workspace changed since the run started, at the listed paths.
    #[error("the workspace changed since the run started; {} conflicting path(s):\n{}", paths.len(), list(paths))]
    Conflicts {
        /// Workspace-relative paths that were changed both by the run and on the host.
        paths: Vec<PathBuf>,
    },

    /// Applying a path would write through a symlink or outside the workspace.
    #[error("refusing to write {}: {reason}", crate::diff::escape_path(path))]
    UnsafePath {
        /// Workspace-relative path of the change.
        path: PathBuf,
        /// Why it is unsafe.
        reason: String,
    },

    /// The layer contains file types that are never applied.
    #[error("the layer contains {} entry(ies) that cannot be applied (device nodes, fifos, sockets):\n{}", paths.len(), list_kinds(paths))]
    UnsupportedFileType {
        /// The offending paths and their kinds.
        paths: Vec<(PathBuf, FileKind)>,
    },

    /// The layer uses an overlayfs feature this crate does not understand.
    #[error(
        "unsupported overlay layer at {}: {reason}",
        crate::diff::escape_path(path)
    )]
    UnsupportedLayer {
        /// Path inside the upper dir.
        path: PathBuf,
        /// What was found.
        reason: String,
    },

    /// The layer contains a path reserved for paddock's own bookkeeping.
    #[error(
        "the layer contains {}, a name reserved for paddock's apply staging",
        crate::diff::escape_path(path)
    )]
    ReservedName {
        /// Workspace-relative path.
        path: PathBuf,
    },

    /// The layer changed between the scan that was reviewed and the apply.
    #[error(
        "the layer changed since it was reviewed: {}",
        crate::diff::escape_path(path)
    )]
    LayerChanged {
        /// Workspace-relative path.
        path: PathBuf,
    },

    /// A leftover apply journal is unreadable or inconsistent.
    #[error("apply journal {}: {reason}", crate::diff::escape_path(path))]
    Journal {
        /// Path of the journal or staging dir.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Applying failed and was rolled back: the workspace is as it was before.
    #[error("apply failed and was rolled back, the workspace is unchanged: {source}")]
    RolledBack {
        /// What made the apply fail.
        #[source]
        source: Box<LayerError>,
    },

    /// Applying failed and rolling back failed too; the staging dir keeps the journal.
    #[error(
        "apply failed ({source}) and rolling back failed too ({rollback}); the journal is kept in {}",
        crate::diff::escape_path(staging)
    )]
    RollbackFailed {
        /// The staging directory that still holds the journal and backups.
        staging: PathBuf,
        /// What made the apply fail.
        source: Box<LayerError>,
        /// What made the rollback fail.
        rollback: Box<LayerError>,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("  {}", crate::diff::escape_path(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn list_kinds(paths: &[(PathBuf, FileKind)]) -> String {
    paths
        .iter()
        .map(|(p, k)| format!("  {} ({})", crate::diff::escape_path(p), k.describe()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl LayerError {
    /// A short suggestion for the user about what to do next.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            LayerError::Io { .. } => return None,
            LayerError::NotADirectory { .. } => {
                "check that the run used a copy-on-write workspace and that its layer still exists"
            }
            LayerError::Conflicts { .. } => {
                "review the run's changes with `paddock diff`, re-run on the current workspace, or apply anyway with `--force` (the run's version wins)"
            }
            LayerError::UnsafePath { .. } => {
                "a directory on the host was replaced by a symlink since the changes were reviewed; inspect the workspace and re-run `paddock diff`"
            }
            LayerError::UnsupportedFileType { .. } => {
                "device nodes, fifos and sockets are never applied; remove them in a new run or copy the other files by hand"
            }
            LayerError::UnsupportedLayer { .. } => {
                "the layer was not created by paddock's overlay mount (redirect_dir/metacopy must be off)"
            }
            LayerError::ReservedName { .. } => {
                "names starting with .paddock-apply- at the workspace root are reserved; rename that entry in the run"
            }
            LayerError::LayerChanged { .. } => {
                "the run may still be writing; stop it, then review again with `paddock diff`"
            }
            LayerError::Journal { .. } => {
                "inspect the .paddock-apply-* directory at the workspace root; remove it once the workspace is as you expect"
            }
            LayerError::RolledBack { source } => return source.hint(),
            LayerError::RollbackFailed { .. } => {
                "fix the cause (permissions, disk space), then run `paddock apply` again: it finishes the rollback first"
            }
        })
    }

    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        LayerError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn nix(op: &'static str, path: impl AsRef<Path>, errno: nix::errno::Errno) -> Self {
        LayerError::io(op, path, io::Error::from(errno))
    }
}
