//! Typed errors. No variant ever carries a secret value: at most a grant name, a path, a
//! key id (a hash prefix of the key, not the key) or a masked preview.

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("invalid login: {reason}")]
    InvalidLogin { reason: String },

    #[error("invalid grant name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("invalid host pattern {pattern:?}: {reason}")]
    InvalidHost {
        pattern: String,
        reason: &'static str,
    },

    #[error("invalid header name {header:?}")]
    InvalidHeader { header: String },

    #[error("invalid value format {format:?}: {reason}")]
    InvalidFormat {
        format: String,
        reason: &'static str,
    },

    #[error("invalid environment variable name {name:?}")]
    InvalidEnvName { name: String },

    #[error("unusable secret value: {reason}")]
    InvalidValue { reason: &'static str },

    #[error("no grant named {name:?}")]
    NotFound { name: String },

    #[error(
        "grant {name:?} was encrypted with data key {stored_key_id}, but the current key is {current_key_id}"
    )]
    KeyMismatch {
        name: String,
        stored_key_id: String,
        current_key_id: String,
    },

    #[error(
        "grant {name:?} failed authentication: its file was modified, or swapped with another grant's"
    )]
    Tampered { name: String },

    #[error(
        "grant file {path} holds grant {found:?}, not {expected:?}: files were renamed or swapped"
    )]
    Swapped {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("corrupt secret store file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("{path} has mode {mode:o}; it must not be readable or writable by group or others")]
    InsecurePermissions { path: PathBuf, mode: u32 },

    #[error(
        "the data key is kept in the OS keyring ({entry}) but the keyring is unavailable: {reason}"
    )]
    KeyringUnavailable { entry: String, reason: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("environment variable {var} is not set or empty")]
    EnvMissing { var: String },

    #[error("`{program}` was not found")]
    CliMissing { program: String },

    #[error("`{command}` failed ({status}): {stderr}")]
    CliFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("`{command}` did not finish within {seconds}s")]
    CliTimeout { command: String, seconds: u64 },

    #[error("could not read the secret value: {source}")]
    Read {
        #[source]
        source: std::io::Error,
    },
}

impl SecretsError {
    /// One line telling the user what to do next, when there is something to do.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::InvalidName { .. } => {
                "grant names are 1-64 characters: lower-case letters, digits, '-' and '_', starting with a letter or digit".into()
            }
            Self::InvalidHost { .. } => {
                "use an exact host (api.example.com) or a wildcard over a registrable domain (*.example.com)".into()
            }
            Self::InvalidHeader { .. } => "use an HTTP header name such as Authorization or X-Api-Key".into(),
            Self::InvalidFormat { .. } => "the format must contain `{}` exactly once, e.g. 'Bearer {}'".into(),
            Self::InvalidEnvName { .. } => "use letters, digits and '_', not starting with a digit".into(),
            Self::InvalidValue { .. } => {
                "pass the value through an environment variable, stdin, or a CLI such as `gh auth token`".into()
            }
            Self::InvalidLogin { .. } => {
                "log in with the CLI on the host first (e.g. `claude`, `codex login`, `gemini`), then import again".into()
            }
            Self::NotFound { .. } => "`paddock grant list` shows the grants that exist".into(),
            Self::KeyMismatch { name, .. } => format!(
                "the data key was replaced (key file or keyring entry); re-create the grant: `paddock grant revoke {name}` then `paddock grant …`"
            ),
            Self::Tampered { name } | Self::Swapped { expected: name, .. } => format!(
                "do not edit files under secrets/; revoke and re-create the grant: `paddock grant revoke {name}`"
            ),
            Self::Corrupt { .. } => "remove the file (or revoke the grant) and create the grant again".into(),
            Self::InsecurePermissions { path, .. } => format!(
                "the key may have been exposed; if you trust it, `chmod 600 {}`, else delete it and re-create every grant",
                path.display()
            ),
            Self::KeyringUnavailable { .. } => {
                "unlock or start the OS keyring (Secret Service) and retry; to give up on that key instead, delete secrets/key.keyring and re-create every grant".into()
            }
            Self::Io { .. } | Self::Read { .. } => return None,
            Self::EnvMissing { var } => format!("export {var}=… in the shell that runs the command"),
            Self::CliMissing { program } if program == "gh" => {
                "install the GitHub CLI and run `gh auth login`, or pass the token through an environment variable or stdin".into()
            }
            Self::CliMissing { program } => format!("install `{program}` or pass the value through an environment variable or stdin"),
            Self::CliFailed { .. } => "run the command yourself to see what it needs (e.g. `gh auth login`)".into(),
            Self::CliTimeout { .. } => "the command may be waiting for input; run it yourself first".into(),
        })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`SecretsError`].
pub type Result<T, E = SecretsError> = std::result::Result<T, E>;
