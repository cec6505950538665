//! paddock-egress: everything between a run's sandbox and the network.
//!
//! Owns, per run: the AnyIP routes and the listeners inside the run's network namespace
//! (explicit HTTP proxy, DNS stub, transparent :80/:443/extra ports), TLS interception with
//! leaves from paddock-ca, the policy decision for every name, connection and request,
//! the credential-injection seam ([`inject::Injector`], implemented by paddock-secrets),
//! and one [`record::NetRecord`] per request, connection or DNS query.
//!
//! Never: sees a run's filesystem; forwards a DNS query to a real resolver; dials an
//! address the sandbox chose for a named host; skips upstream certificate verification;
//! sends a credential anywhere but upstream.
//!
//! Entry points for the daemon: [`EgressShared::new`] once, [`sandbox_net`] before a run is
//! created, [`RunEgress::start`] once its sandbox runs.

pub mod dns;
pub mod error;
pub mod hello;
pub mod inject;
pub mod netns;
pub mod policy;
pub mod proxy;
pub mod record;
pub mod run;
pub mod upstream;

pub use error::{EgressError, UpstreamError};
pub use inject::{BodyRewriter, GrantUse, Injector, NoInjection};
pub use policy::{Decision, ImpliedHost, Policy, Query, RuleRef};
pub use record::{NetRecord, RecordKind, RecordSink};
pub use run::{
    DNS_ADDR, EgressShared, PROXY_ADDR, RunEgress, RunPolicy, SANDBOX_BUNDLE, SandboxNet,
    apply_env, sandbox_net,
};
