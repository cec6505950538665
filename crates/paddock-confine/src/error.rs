//! Typed errors of paddock-confine, each with a hint a user can act on.
//!
//! Owns: the error type only. Never: logs or prints anything itself.

use std::path::PathBuf;

/// What went wrong while preparing or applying a confinement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfineError {
    /// The seccomp filter could not be compiled (a table entry is invalid for this arch).
    #[error("compiling the seccomp filter failed: {0}")]
    SeccompCompile(String),
    /// The kernel refused to install the seccomp filter.
    #[error("installing the seccomp filter failed: {0}")]
    SeccompInstall(#[source] std::io::Error),
    /// Building the Landlock ruleset failed.
    #[error("building the Landlock ruleset failed: {0}")]
    Landlock(String),
    /// A writable path could not be opened for a Landlock rule (other than "does not exist").
    #[error("opening {path} for a Landlock rule failed: {source}")]
    LandlockPath {
        /// The path that could not be opened.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// landlock_restrict_self failed.
    #[error("enforcing the Landlock ruleset failed: {0}")]
    LandlockRestrict(#[source] std::io::Error),
    /// Dropping capabilities failed.
    #[error("dropping capabilities failed at {step}: {source}")]
    Capabilities {
        /// Which step (bounding set, capset, ambient, securebits).
        step: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// prctl(PR_SET_NO_NEW_PRIVS) failed.
    #[error("setting no_new_privs failed: {0}")]
    NoNewPrivs(#[source] std::io::Error),
    /// The confinement asks for something this build cannot do on this architecture.
    #[error("unsupported on this architecture: {0}")]
    Unsupported(&'static str),
}

impl ConfineError {
    /// A short, concrete suggestion for the user or operator.
    pub fn hint(&self) -> &'static str {
        match self {
            ConfineError::SeccompCompile(_) => {
                "this is a bug in paddock's seccomp table; please report it with `paddock doctor` output"
            }
            ConfineError::SeccompInstall(_) => {
                "the kernel must have CONFIG_SECCOMP_FILTER; run `paddock doctor` to check, or disable seccomp for this run"
            }
            ConfineError::Landlock(_) | ConfineError::LandlockRestrict(_) => {
                "Landlock needs Linux >= 5.13 with `landlock` in the lsm= boot parameter; run `paddock doctor`, or disable landlock for this run"
            }
            ConfineError::LandlockPath { .. } => {
                "check that the writable path is readable by the sandbox user and not on a special filesystem"
            }
            ConfineError::Capabilities { .. } => {
                "call apply() in the forked, single-threaded child right before execve; a caller without CAP_SETPCAP keeps its bounding set (reported, not an error), so this points at an unusual kernel or LSM policy: run `paddock doctor`"
            }
            ConfineError::NoNewPrivs(_) => {
                "the kernel must support PR_SET_NO_NEW_PRIVS (Linux >= 3.5)"
            }
            ConfineError::Unsupported(_) => "paddock's native sandbox supports x86_64 and aarch64",
        }
    }
}
