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
//! `paddock-daemon/src/egress.rs` is the wiring; in short:
//! 1. Once: [`EgressShared::with_ca`] (the daemon's one CA; system roots plus
//!    `upstream.extra_ca`), and [`sandbox_net`] for what every sandbox gets.
//! 2. Per run, before `Runtime::create`: the sandbox's env gets [`SandboxNet::env`] over
//!    the user's variables (proxy variables the user passed are replaced), its files
//!    [`SandboxNet::files`]; the spec asks for `hold_until_released`.
//! 3. After `Runtime::start` returns (the command is held before exec):
//!    `RunEgress::start(runtime.as_netns()?, &handle, &shared, RunPolicy { network,
//!    implied, extra_ports, injector }, sink)` inside the tokio runtime, then
//!    `NetnsCapability::release`. Keep the returned [`RunEgress`] with the run; drop it
//!    when the run ends.
//! 4. `sink` receives every [`NetRecord`], in order, on the run's record thread (so it may
//!    block: the proxy never waits for it, except for a [`RecordKind::GrantUse`], handed
//!    over before the credential leaves): the daemon publishes them as `net.request` /
//!    `net.denied` / `grant.used` events, which the run's audit log records.

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
pub use inject::{BodyRewriter, Dest, GrantUse, Injector, NoInjection};
pub use policy::{Decision, ImpliedHost, Policy, Query, RuleRef};
pub use record::{NetRecord, RecordKind, RecordSink};
pub use run::{
    DNS_ADDR, EgressShared, PROXY_ADDR, RunEgress, RunPolicy, SANDBOX_BUNDLE, SandboxNet,
    apply_env, sandbox_net, sandbox_net_with,
};
