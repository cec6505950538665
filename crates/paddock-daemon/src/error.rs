//! The daemon's typed errors, and how each maps onto the API's error envelope.

use std::path::Path;

use paddock_api::{ErrorBody, ErrorInfo, RunState};

/// Everything that can go wrong in the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{message}")]
    BadRequest { message: String, hint: String },

    /// The dashboard: no session cookie and no bearer token (401).
    #[error("{message}")]
    Unauthorized { message: String, hint: String },

    /// The dashboard: a request it refuses whoever sends it (wrong Host, cross-site, no
    /// CSRF header) (403).
    #[error("{message}")]
    Forbidden { message: String, hint: String },

    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },

    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },

    #[error("no such endpoint: {method} {path}")]
    NoEndpoint { method: String, path: String },

    #[error("no run matches `{reference}`")]
    RunNotFound { reference: String },

    #[error("`{reference}` matches more than one run: {}", candidates.join(", "))]
    Ambiguous {
        reference: String,
        candidates: Vec<String>,
    },

    #[error("a live run is already named `{name}` ({id})")]
    NameTaken { name: String, id: String },

    #[error("run {id} is {state}; it cannot become {wanted}")]
    InvalidTransition {
        id: String,
        state: RunState,
        wanted: RunState,
    },

    #[error("{message}")]
    Conflict { message: String, hint: String },

    /// Something of a run that does not exist (a snapshot, …).
    #[error("{message}")]
    NotFound { message: String, hint: String },

    #[error("{message}")]
    Unsupported { message: String, hint: String },

    #[error("{message}")]
    Config { message: String, hint: String },

    #[error("state database: {0}")]
    Store(#[from] rusqlite::Error),

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Sandbox(#[from] paddock_sandbox::SandboxError),

    #[error("audit log: {message}")]
    Audit { message: String, hint: String },

    /// The run's network (egress proxy, DNS stub, interception CA) could not be set up.
    #[error("network: {message}")]
    Network { message: String, hint: String },

    #[error("another paddock daemon is already running for {home} (pid {pid})")]
    AlreadyRunning { home: String, pid: String },

    /// A grant named by a request (or a run) does not exist; `existing` lists those that do.
    #[error("no grant named `{name}`")]
    GrantNotFound { name: String, existing: Vec<String> },

    /// The secret store refused (never carries a value: see paddock-secrets' errors).
    #[error(transparent)]
    Secrets(paddock_secrets::SecretsError),

    /// A worktree run's git worktree (`paddock run --wt`).
    #[error(transparent)]
    Worktree(#[from] crate::worktree::WorktreeError),
}

impl DaemonError {
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        DaemonError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    pub fn bad_request(message: impl Into<String>, hint: impl Into<String>) -> Self {
        DaemonError::BadRequest {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// HTTP status for the envelope.
    pub fn status(&self) -> u16 {
        use paddock_sandbox::SandboxError as S;
        match self {
            DaemonError::BadRequest { .. } | DaemonError::Config { .. } => 400,
            DaemonError::RunNotFound { .. }
            | DaemonError::NoEndpoint { .. }
            | DaemonError::NotFound { .. } => 404,
            DaemonError::PayloadTooLarge { .. } => 413,
            DaemonError::Unauthorized { .. } => 401,
            DaemonError::Forbidden { .. } => 403,
            DaemonError::MethodNotAllowed { .. } => 405,
            DaemonError::Ambiguous { .. } | DaemonError::NameTaken { .. } => 409,
            DaemonError::InvalidTransition { .. } | DaemonError::Conflict { .. } => 409,
            DaemonError::Unsupported { .. } => 501,
            DaemonError::Sandbox(S::InvalidSpec { .. }) => 400,
            DaemonError::Sandbox(S::Unsupported { .. }) => 501,
            DaemonError::Sandbox(S::NotRunning { .. }) => 409,
            DaemonError::AlreadyRunning { .. } => 409,
            DaemonError::Audit { .. } | DaemonError::Network { .. } => 500,
            DaemonError::Store(_) | DaemonError::Io { .. } | DaemonError::Sandbox(_) => 500,
            DaemonError::GrantNotFound { .. } => 404,
            DaemonError::Secrets(e) => crate::grants::secrets_status(e),
            DaemonError::Worktree(e) => e.status(),
        }
    }

    pub fn code(&self) -> &'static str {
        use paddock_sandbox::SandboxError as S;
        match self {
            DaemonError::BadRequest { .. } => "bad_request",
            DaemonError::Config { .. } => "bad_config",
            DaemonError::RunNotFound { .. } | DaemonError::NotFound { .. } => "not_found",
            DaemonError::NoEndpoint { .. } => "no_endpoint",
            DaemonError::PayloadTooLarge { .. } => "payload_too_large",
            DaemonError::Unauthorized { .. } => "unauthorized",
            DaemonError::Forbidden { .. } => "forbidden",
            DaemonError::MethodNotAllowed { .. } => "method_not_allowed",
            DaemonError::Ambiguous { .. } => "ambiguous",
            DaemonError::NameTaken { .. } => "name_taken",
            DaemonError::InvalidTransition { .. } => "invalid_state",
            DaemonError::Conflict { .. } => "conflict",
            DaemonError::Unsupported { .. } => "unsupported",
            DaemonError::Sandbox(S::InvalidSpec { .. }) => "invalid_spec",
            DaemonError::Sandbox(S::Unsupported { .. }) => "unsupported",
            DaemonError::Sandbox(S::NotRunning { .. }) => "not_running",
            DaemonError::Sandbox(_) => "sandbox",
            DaemonError::AlreadyRunning { .. } => "already_running",
            DaemonError::Audit { .. } => "audit",
            DaemonError::Network { .. } => "network",
            DaemonError::Store(_) | DaemonError::Io { .. } => "internal",
            DaemonError::GrantNotFound { .. } => "grant_not_found",
            DaemonError::Secrets(e) => crate::grants::secrets_code(e),
            DaemonError::Worktree(e) => e.code(),
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            DaemonError::BadRequest { hint, .. }
            | DaemonError::Conflict { hint, .. }
            | DaemonError::NotFound { hint, .. }
            | DaemonError::Unsupported { hint, .. }
            | DaemonError::Config { hint, .. }
            | DaemonError::Unauthorized { hint, .. }
            | DaemonError::Forbidden { hint, .. }
            | DaemonError::Audit { hint, .. }
            | DaemonError::Network { hint, .. } => hint.clone(),
            DaemonError::RunNotFound { .. } => "list runs with `paddock ps -a`".into(),
            DaemonError::PayloadTooLarge { .. } => "send a smaller request".into(),
            DaemonError::MethodNotAllowed { .. } => {
                "see the paddock-api crate docs for the endpoints".into()
            }
            DaemonError::NoEndpoint { .. } => {
                "this daemon may be older than your CLI; /v1/health lists its capabilities".into()
            }
            DaemonError::Ambiguous { .. } => {
                "use more characters of the id, or the full name".into()
            }
            DaemonError::NameTaken { .. } => {
                "pick another --name, or remove the other run with `paddock rm`".into()
            }
            DaemonError::InvalidTransition { state, .. } if state.is_terminal() => {
                "the run has ended; start a new one with `paddock run`".into()
            }
            DaemonError::InvalidTransition { .. } => {
                "check the run's state with `paddock inspect`".into()
            }
            DaemonError::Sandbox(e) => return e.hint().map(str::to_string),
            DaemonError::AlreadyRunning { .. } => "use `paddock daemon stop` first".into(),
            DaemonError::Store(_) | DaemonError::Io { .. } => {
                "see $PADDOCK_HOME/daemon.log; `paddock doctor` checks the machine".into()
            }
            DaemonError::GrantNotFound { name, existing } => {
                crate::grants::not_found_hint(name, existing)
            }
            DaemonError::Secrets(e) => e
                .hint()
                .unwrap_or_else(|| "see $PADDOCK_HOME/daemon.log".into()),
            DaemonError::Worktree(e) => e.hint(),
        })
    }

    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorInfo {
                code: self.code().into(),
                message: self.to_string(),
                hint: self.hint(),
            },
        }
    }
}
