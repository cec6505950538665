//! paddock-sandbox: the `Runtime` trait and its backends (native; docker and gvisor through
//! the user's Docker engine), and [`Runtimes`], which puts them behind one `Runtime`.
//!
//! Owns: sandbox processes (`paddock init` as PID 1), namespaces, mounts, cgroups, the
//! run's output log (`runs/<id>/log.jsonl`) and the per-run control channel to init.
//!
//! Never: knows about run names, the state machine, HTTP, or the daemon's database; never
//! decides policy (it is handed a complete [`SandboxSpec`]).

pub mod docker;
mod error;
mod multi;
pub mod native;
pub mod runtime;

pub use error::SandboxError;
pub use multi::Runtimes;
pub use runtime::*;
