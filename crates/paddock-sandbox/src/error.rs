//! Typed errors of the sandbox runtimes.

use std::path::PathBuf;

/// What went wrong in a runtime, with enough context for a user-facing message and hint.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec is invalid (bad mount, protected path, missing workspace, …). Nothing was created.
    #[error("{message}")]
    InvalidSpec { message: String, hint: String },

    /// The kernel or the machine lacks something the sandbox needs.
    #[error("{message}")]
    Unsupported { message: String, hint: String },

    /// No sandbox by that handle (already destroyed, or never started).
    #[error("sandbox for run {run_id} is not running")]
    NotRunning { run_id: String },

    /// A system call or file operation failed.
    #[error("{op} failed{}: {source}", path.as_ref().map(|p| format!(" for {}", p.display())).unwrap_or_default())]
    Io {
        op: &'static str,
        path: Option<PathBuf>,
        #[source]
        source: std::io::Error,
    },

    /// An image could not be built (a dependency failed, debootstrap failed, …).
    #[error("{message}")]
    Build { message: String, hint: String },

    /// The sandbox's init reported a failure while setting up.
    #[error("sandbox setup failed at step {step}: {message}")]
    Setup { step: String, message: String },
}

impl SandboxError {
    /// A one-line suggestion of what the user can do.
    pub fn hint(&self) -> Option<&str> {
        match self {
            SandboxError::InvalidSpec { hint, .. }
            | SandboxError::Unsupported { hint, .. }
            | SandboxError::Build { hint, .. } => Some(hint),
            SandboxError::NotRunning { .. } => Some("check the run's state with `paddock ps -a`"),
            SandboxError::Io { .. } | SandboxError::Setup { .. } => {
                Some("run `paddock doctor` to check what the sandbox needs")
            }
        }
    }

    pub fn io(op: &'static str, path: impl Into<Option<PathBuf>>, source: std::io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
