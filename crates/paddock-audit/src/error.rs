//! Errors of the writer and reader ([`AuditError`]); verification has its own
//! ([`crate::verify::VerifyError`]).
//!
//! Owns: one typed error per failure a caller may need to tell apart, each with a hint a
//! person can act on ([`AuditError::hint`]).
//! Never: hides an I/O error's path or operation.

use std::path::{Path, PathBuf};

use crate::entry::EntryError;
use crate::hash::Hash;
use crate::merkle::ProofError;

/// An operation on an audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An entry could not be encoded or decoded.
    #[error("entry {index}: {source}")]
    Entry { index: u64, source: EntryError },
    /// The signing key file is unusable.
    #[error("signing key {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    /// The signing key file can be read by group or others.
    #[error("signing key {} has mode {mode:03o}; it must be readable by its owner only", path.display())]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// The OS random number generator failed.
    #[error("cannot get random bytes for a new signing key: {0}")]
    Random(String),
    /// Another process holds the log open for writing.
    #[error("audit log {} is locked by another writer", dir.display())]
    Locked { dir: PathBuf },
    /// A log file is damaged in a way that truncating a torn tail cannot explain.
    #[error("audit log file {} is corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The directory holds a different log.
    #[error("audit log {} belongs to log id {found:?}, not {expected:?}", dir.display())]
    LogIdMismatch {
        dir: PathBuf,
        expected: String,
        found: String,
    },
    /// The log was started with another signing key.
    #[error("audit log {} is signed by key {log_key}, but the writer was given key {signer_key}", dir.display())]
    KeyChanged {
        dir: PathBuf,
        log_key: Hash,
        signer_key: Hash,
    },
    /// The directory is not an audit log.
    #[error("{} is not an audit log: {reason}", dir.display())]
    NotALog { dir: PathBuf, reason: String },
    /// A previous write or fsync failed; the writer refuses further writes.
    #[error("audit log {} refused the write: an earlier write or fsync failed ({reason})", dir.display())]
    Poisoned { dir: PathBuf, reason: String },
    /// A proof was asked for sizes or indices the log does not have.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

impl AuditError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        AuditError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// What a person can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            AuditError::Io { .. } => {
                "check that the path exists, its permissions, and free disk space"
            }
            AuditError::Entry { .. } => {
                "entry types are 1-256 bytes without control characters; data is at most 16 MiB of JSON"
            }
            AuditError::KeyFile { .. } => {
                "the key file holds 64 hex characters; restore it from backup, or move it away to start a new key (old logs then no longer extend)"
            }
            AuditError::KeyPermissions { .. } => {
                "run: chmod 600 on the key file (and check who else could have read it)"
            }
            AuditError::Random(_) => "the kernel's random source is unavailable; retry",
            AuditError::Locked { .. } => {
                "the daemon is the only writer of an audit log; is another paddock daemon running?"
            }
            AuditError::Corrupt { .. } => {
                "the damage is not a torn tail, so recovery will not truncate acknowledged entries; export the log and run `paddock audit verify` to locate it, restore from backup"
            }
            AuditError::LogIdMismatch { .. } => {
                "each run has its own audit directory; check the path"
            }
            AuditError::KeyChanged { .. } => {
                "a log is signed by one key for its whole life; restore the original key file or start a new log"
            }
            AuditError::NotALog { .. } => {
                "point at a directory created by the audit writer (it holds meta.json and entries.log)"
            }
            AuditError::Poisoned { .. } => {
                "reopen the log: recovery drops the unacknowledged batch and the writer continues"
            }
            AuditError::Proof(_) => {
                "indices are 0-based and must be below the tree size; sizes must not exceed the log"
            }
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;
