//! paddock-api: the `/v1` wire types and the Unix-socket client.
//!
//! This crate is an **API boundary**: everything here is seen by a CLI and a daemon that
//! may have been built from different commits. The compatibility rules are:
//!
//! - **Additive only.** New fields and new endpoints may be added; nothing is renamed or
//!   removed, and no field changes meaning. New fields are `Option` or `#[serde(default)]`.
//! - **Unknown fields are ignored** on both sides (no `deny_unknown_fields` on wire types).
//! - **404 on an endpoint a client knows but the daemon doesn't** means "older daemon":
//!   the client degrades or says so ([`ClientError::OlderDaemon`]).
//! - **Capabilities**: `GET /v1/health` lists what the daemon supports
//!   ([`Health::capabilities`]); a client checks a capability before relying on a feature.
//! - **One error envelope** for every non-2xx answer: [`ErrorBody`]
//!   (`{"error":{"code","message","hint"}}`), with a fitting HTTP status.
//!
//! Streams: `GET /v1/events` is server-sent events; `GET /v1/runs/{ref}/logs?follow=1` is
//! newline-delimited JSON ([`LogLine`]); `GET /v1/runs/{ref}/attach` upgrades the
//! connection to the framed protocol in [`attach`]. `POST /v1/runs/{ref}/exec` (capability
//! `exec`) takes an [`ExecRequest`] body and upgrades the same way; its `Exit` frame
//! carries an [`ExecResult`]. Exec on a run that is not running is a `409`.
//!
//! Audit (capability `audit`): `GET /v1/runs/{ref}/audit?type=T&since=RFC3339|10m&limit=N`
//! ([`AuditEntries`]), `…/audit/export` (the bundle JSON of paddock-audit),
//! `…/audit/prove?entry=N[&size=M]` (entry, inclusion proof, signed checkpoint, public key),
//! `…/audit/consistency?from=SIZE[&to=SIZE]` (proof between two signed checkpoints); the
//! same under `/v1/audit/daemon` for the daemon's own log; `GET /v1/audit/key`
//! ([`AuditKey`]). Proofs and bundles are passed through as JSON: their shape is
//! paddock-audit's, which a client uses to verify them offline.
//!
//! Grants (capability `grants`): `PUT|GET|DELETE /v1/grants/{name}` and `GET /v1/grants`,
//! see [`grants`]. A credential travels only in the body of a `PUT`.
//! Routing (capability `router`): `GET /v1/router` ([`RouterStatus`]: port, whether it
//! listens or why not, the route table); runs carry `ports` (endpoint → port inside the
//! sandbox) and `urls`. `GET /v1/ca` (capability `ca`) is the local CA's certificate
//! ([`CaCertificate`]), never its key.
//!
//! Never: holds state, reads config files, or knows how runs are executed.

pub mod attach;
mod client;
pub mod grants;
mod types;

pub use client::{AuditLog, Client, ClientError, EventStream, LogStream, sse_frame};
pub use grants::{GrantInfo, GrantList, GrantRule, PutGrant, PutGrantResponse, RevokedGrant};
pub use types::*;

/// Entry points for the fuzz targets in `fuzz/`: the stream framing the client parses
/// (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::client::{take_event, take_log_line};
}

/// Path prefix of every endpoint.
pub const API_PREFIX: &str = "/v1";

/// Largest request body the daemon accepts.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
