//! paddock-secrets: grants, the encrypted secret store, placeholders, request injection and
//! response scrubbing (promise 1 of DESIGN.md: no real secret ever enters a sandbox).
//!
//! What it owns:
//! - [`SecretStore`] ([`store`]): one AEAD-encrypted file per grant under the directory the
//!   caller names (`$PADDOCK_HOME/secrets`, 0700, files 0600, atomic writes); the data key
//!   in the OS keyring or a 0600 key file ([`key`]).
//! - Grant kinds as data ([`kind::KINDS`]): where each credential goes, in which header and
//!   format, which environment variables get its placeholder.
//! - [`RunSecrets`] ([`inject`]): one run's placeholder registry and the pure, synchronous
//!   functions the egress proxy calls per request (injection, substitution) and per
//!   response ([`Scrubber`], [`ScrubStream`]).
//! - [`source`]: reading a value from an environment variable, stdin or a CLI.
//!
//! Who calls what:
//! - the CLI (`paddock grant …`): reads the value on the user's side with
//!   [`ValueSource::read`] (`Env`, `Stdin`, or `Command`, e.g. [`ValueSource::gh`]; a
//!   kind's default CLI is [`kind::KindRow::cli`]) and sends it to the daemon in a request
//!   body, never in argv or a URL; `grant list|show` print [`GrantInfo`] (masked preview,
//!   [`InjectRule`]s via `Display`);
//! - the daemon: [`SecretStore::open`]`($PADDOCK_HOME/secrets)` once (cheap: the key is
//!   loaded on first use), then [`SecretStore::put`] / [`SecretStore::list`] /
//!   [`SecretStore::info`] / [`SecretStore::revoke`] for the API; per run, [`SecretStore::get`]
//!   for each granted name → [`RunSecrets::new`]`(grants, &mut rand::rng())` →
//!   [`RunSecrets::placeholder_env`] into the sandbox's environment, [`RunSecrets::hosts`]
//!   into the egress policy (grants imply their hosts), and the `RunSecrets` (in an `Arc`)
//!   to the proxy;
//! - the egress proxy, per intercepted request to a verified host: [`RunSecrets::inject_request`]
//!   with [`Target`] (`tls` = the upstream leg is TLS), then [`RunSecrets::request_body`]
//!   (a [`BodyPlan`]: pass through, skipped with a reason, or a streaming [`BodySubstituter`];
//!   drop `Content-Length` when substituting) or, for a buffered body,
//!   [`RunSecrets::inject_body`]; per response, *whatever the host*:
//!   [`RunSecrets::scrub_response_headers`], [`response_is_scrubbable`] (a compressed body
//!   must be decoded first, or refused), and a [`ScrubStream`] from [`Scrubber::stream`] over
//!   the body (drop `Content-Length`). [`Injection`] (names only) goes to the network log:
//!   `grants_used` as `grant.used`, `refused_plain_http` and `foreign_placeholders` as
//!   warnings. Passthrough (non-intercepted) connections get none of this.
//!
//! An adapter for the proxy's `Injector` trait is a few lines in the daemon (both streaming
//! rewriters implement [`StreamRewrite`], so one `BodyRewriter` wrapper serves both):
//!
//! ```ignore
//! impl paddock_egress::Injector for Adapter {   // Adapter(Arc<RunSecrets>)
//!     fn on_request(&self, host: &str, port: u16, parts: &mut Parts) -> Vec<GrantUse> {
//!         let tls = /* the upstream leg is TLS (the proxy knows: ctx.tls_name.is_some()) */;
//!         let inj = self.0.inject_request(Target { host, tls }, parts);
//!         inj.grants_used.into_iter().map(|grant| GrantUse { grant }).collect()
//!     }
//!     fn request_body(&self, host, _) -> Option<Box<dyn BodyRewriter>> {
//!         match self.0.request_body(Target::https(host), &headers) {
//!             BodyPlan::Substitute(s) => Some(Box::new(Wrap(s))),   // Wrap<T: StreamRewrite>
//!             BodyPlan::Skipped(reason) => { /* log */ None }
//!             BodyPlan::PassThrough => None,
//!         }
//!     }
//!     fn on_response(&self, _, _, parts) { self.0.scrub_response_headers(&mut parts.headers); }
//!     fn response_body(&self, _, _) -> Option<Box<dyn BodyRewriter>> {
//!         (!self.0.scrubber().is_empty()).then(|| Box::new(Wrap(self.0.scrubber().stream())) as _)
//!     }
//! }
//! ```
//!
//! Never: writes a secret in clear to disk or to a log; prints one (every type that holds a
//! value implements `Debug` by hand and masks it; values are zeroized on drop); takes a
//! value from argv; sends a value to a host its grant does not name.

pub mod error;
pub mod host;
pub mod inject;
pub mod key;
pub mod kind;
pub mod login;
pub mod placeholder;
pub mod scrub;
pub mod source;
pub mod store;
pub mod value;

pub use error::{Result, SecretsError};
pub use host::HostPattern;
pub use inject::{
    BODY_LIMIT, BodyInjection, BodyPlan, BodySkip, BodySubstituter, HeaderEdit, Injection,
    RunSecrets, Target,
};
pub use key::{KeyBackend, KeyOrigin, KeyVault};
pub use kind::{GrantKind, GrantSpec, HttpSpec, InjectRule, KINDS, Substitution, ValueFormat};
pub use login::{LOGINS, Login, LoginPlaceholders, LoginRow};
pub use scrub::{ScrubStream, Scrubber, StreamRewrite, response_is_scrubbable};
pub use source::ValueSource;
pub use store::{Grant, GrantInfo, MIN_GRANT_VALUE_LEN, SecretStore, validate_name};
pub use value::{SecretValue, mask};
