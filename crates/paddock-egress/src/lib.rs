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
//! # Wiring (daemon)
//!
//! 1. Once: `EgressShared::new(&home.join("ca"), &config.upstream)` (creates the CA on first
//!    use; loads system roots plus `upstream.extra_ca`).
//! 2. Per run, before `Runtime::create`: `let net = sandbox_net(shared.ca.cert_pem());`
//!    then `apply_env(&mut spec.env, &net)` (replaces any proxy variables the user passed)
//!    and `spec.files.extend(net.files)`.
//! 3. After `Runtime::start` returns the running handle:
//!    `RunEgress::start(runtime.as_netns()?, &handle, &shared, RunPolicy { network,
//!    implied, extra_ports, injector }, sink)` inside the tokio runtime. Keep the
//!    returned [`RunEgress`] with the run; drop it when the run ends.
//! 4. `sink` receives every [`NetRecord`] (never blocks): publish it as `net.request` /
//!    `policy.denied` / `grant.used` events and append it to the run's log.
//!
//! Known gap: `start` returns once the command was exec'd, so the few milliseconds
//! between exec and `RunEgress::start` are not covered (a connection in that window is
//! refused, a DNS query unanswered). The fix belongs in paddock-sandbox: a spec flag that
//! makes init wait, before exec, until the daemon says the network is ready, while init
//! keeps answering socket requests (rootless) on its control connection.

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
