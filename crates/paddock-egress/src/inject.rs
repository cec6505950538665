//! The credential-injection seam. paddock-secrets implements [`Injector`]; the proxy calls
//! it for every intercepted request and response of a run (never for passthrough hosts,
//! never for plain tunnels it cannot see into).
//!
//! The contract an implementation must keep: real credential values appear only in what
//! goes *upstream* (request parts, request bodies); everything going back to the sandbox
//! (response headers and bodies) passes through [`Injector::on_response`] and the body
//! scrubber so that an echoed value is replaced by its placeholder.

use bytes::Bytes;

/// One credential use, for the record (the name only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantUse {
    pub grant: String,
}

/// Rewrites a streaming body chunk by chunk (placeholder ⇄ real value). It may hold back
/// a bounded tail of a chunk (a value split across chunks) and release it later or in
/// [`finish`](BodyRewriter::finish).
pub trait BodyRewriter: Send {
    fn chunk(&mut self, data: Bytes) -> Bytes;
    fn finish(&mut self) -> Bytes;
}

/// Where an intercepted request goes: the verified upstream name, port, and whether the
/// upstream leg is TLS (credentials that need TLS are never put on a plain-HTTP leg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: bool,
}

/// Credential injection and response scrubbing for one run.
pub trait Injector: Send + Sync {
    /// Called before an intercepted request goes upstream: set or replace headers,
    /// substitute placeholders in the path.
    fn on_request(&self, dest: Dest<'_>, parts: &mut http::request::Parts) -> Vec<GrantUse>;

    /// A rewriter for the request body (placeholder → real value), if this request needs
    /// one. `headers` are the request's headers after [`on_request`](Injector::on_request).
    fn request_body(
        &self,
        _dest: Dest<'_>,
        _headers: &http::HeaderMap,
        _uses: &[GrantUse],
    ) -> Option<Box<dyn BodyRewriter>> {
        None
    }

    /// Called on the response before it goes to the sandbox: scrub headers.
    fn on_response(&self, _dest: Dest<'_>, _uses: &[GrantUse], _parts: &mut http::response::Parts) {
    }

    /// A scrubber for the response body (real value → placeholder), if needed.
    fn response_body(&self, _dest: Dest<'_>, _uses: &[GrantUse]) -> Option<Box<dyn BodyRewriter>> {
        None
    }

    /// Whether the proxy may answer this request itself, from its body, instead of sending
    /// it upstream (an OAuth refresh made inside the sandbox with a placeholder token).
    /// Asked only for intercepted TLS requests the policy allowed.
    fn answers(&self, _dest: Dest<'_>, _parts: &http::request::Parts) -> bool {
        false
    }

    /// The answer to a request [`answers`](Injector::answers) claimed, given its whole
    /// body (at most [`ANSWER_BODY_LIMIT`]): `(status, content type, body)`. `None`: not
    /// the injector's to answer after all; the request goes upstream as it was.
    fn answer(
        &self,
        _dest: Dest<'_>,
        _parts: &http::request::Parts,
        _body: &[u8],
    ) -> Option<(u16, &'static str, Vec<u8>)> {
        None
    }
}

/// The largest request body the proxy reads to let the injector answer it.
pub const ANSWER_BODY_LIMIT: usize = 64 * 1024;

/// The injector of a run without grants.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInjection;

impl Injector for NoInjection {
    fn on_request(&self, _: Dest<'_>, _: &mut http::request::Parts) -> Vec<GrantUse> {
        Vec::new()
    }
}
