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
//! - the CLI (`paddock grant …`): reads the value with [`ValueSource::read`] on the user's
//!   side and sends it to the daemon; never takes it from argv;
//! - the daemon: [`SecretStore::open`] once, then [`SecretStore::put`] / [`SecretStore::list`]
//!   / [`SecretStore::info`] / [`SecretStore::revoke`] for the API, and per run
//!   [`SecretStore::get`] for each granted name → [`RunSecrets::new`] →
//!   [`RunSecrets::placeholder_env`] into the sandbox's environment;
//! - the egress proxy, per intercepted request to a verified host:
//!   [`RunSecrets::inject_request`], [`RunSecrets::wants_body`] / [`RunSecrets::inject_body`];
//!   per response: [`RunSecrets::scrub_response_headers`] and a [`ScrubStream`] from
//!   [`Scrubber::stream`] over the body; grant names from [`Injection`] go to the network log.
//!
//! Never: writes a secret in clear to disk or to a log; prints one (every type that holds a
//! value implements `Debug` by hand and masks it; values are zeroized on drop); takes a
//! value from argv; sends a value to a host its grant does not name.

pub mod error;
pub mod host;
pub mod inject;
pub mod key;
pub mod kind;
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
pub use scrub::{ScrubStream, Scrubber, response_is_scrubbable};
pub use source::ValueSource;
pub use store::{Grant, GrantInfo, MIN_GRANT_VALUE_LEN, SecretStore, validate_name};
pub use value::{SecretValue, mask};
