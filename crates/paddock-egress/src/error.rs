//! Errors of paddock-egress, each with a hint.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("cannot {action} inside the run's network namespace: {source}")]
    Netns {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the runtime could not give a socket in the run's network namespace: {0}")]
    Sandbox(#[from] paddock_sandbox::SandboxError),
    #[error("the interception CA: {0}")]
    Ca(#[from] paddock_ca::CaError),
    #[error("cannot read the extra CA bundle {path}: {message}")]
    ExtraCa { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot start the run's network log thread: {0}")]
    RecordThread(#[from] std::io::Error),
}

impl EgressError {
    pub fn hint(&self) -> String {
        match self {
            EgressError::Netns { .. } | EgressError::Sandbox(_) => {
                "the sandbox may have ended; egress needs a running sandbox whose runtime offers a network namespace".into()
            }
            EgressError::Ca(e) => e.hint().into(),
            EgressError::ExtraCa { .. } => {
                "upstream.extra_ca must name a readable PEM file of CA certificates".into()
            }
            EgressError::Tls(_) => "this is a bug in paddock; please report it".into(),
            EgressError::RecordThread(_) => {
                "the system is out of threads or memory; end some runs (`paddock ps`) and retry".into()
            }
        }
    }
}

/// Why an upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error(
        "{host} resolves to {addr}, a private, loopback or link-local address; add a rule that allows {host} explicitly to reach it"
    )]
    Private {
        host: String,
        addr: std::net::IpAddr,
    },
    #[error("cannot connect to {host} ({addr}): {source}")]
    Connect {
        host: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("HTTP with {host} failed: {source}")]
    Http { host: String, source: hyper::Error },
}
