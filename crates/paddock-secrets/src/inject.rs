//! One run's credentials ([`RunSecrets`]): the placeholder registry, and the pure, synchronous
//! functions the egress proxy calls per request and response.
//!
//! Per request, given the upstream host the proxy verified (after its SNI/Host check):
//! 1. header edits configured for that host (removals, then extra headers);
//! 2. for every grant with a rule for that host: its header is set to the formatted real
//!    value, or, where the client already sent a placeholder in it (`Bearer <ph>`,
//!    `Basic base64(user:<ph>)`), the placeholder is replaced in place;
//! 3. opt-in per grant ([`Substitution`]): placeholders are replaced in other header
//!    values, in the URL path and query, and in bodies up to [`BODY_LIMIT`]. Built-in kinds
//!    use only their own header.
//!
//! Never: injects or substitutes for a host the grant does not belong to (a placeholder
//! sent elsewhere stays a placeholder, and is reported as `foreign_placeholders`); injects
//! over plain HTTP unless the grant allows it; reports anything but grant *names*.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::CryptoRng;

use crate::error::Result;
use crate::host::{HostPattern, normalize_host};
use crate::kind::{InjectRule, Substitution, ValueFormat};
use crate::placeholder;
use crate::scrub::{ScrubEntry, Scrubber};
use crate::store::Grant;
use crate::value::SecretValue;

/// Largest request body searched for placeholders; larger ones pass through untouched
/// (and [`BodySkip::TooLarge`] says so).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The upstream a request goes to.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The host the proxy dials (verified against SNI/Host); `:port` is ignored.
    pub host: &'a str,
    /// Whether the upstream connection is TLS.
    pub tls: bool,
}

impl<'a> Target<'a> {
    pub fn https(host: &'a str) -> Self {
        Self { host, tls: true }
    }
    pub fn http(host: &'a str) -> Self {
        Self { host, tls: false }
    }
}

/// Extra and removed request headers for the hosts matching `host` (from configuration).
#[derive(Clone, Debug)]
pub struct HeaderEdit {
    pub host: HostPattern,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// What an injection did, for the network log. Names only, sorted, no duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injection {
    /// Grants whose real value went into this request.
    pub grants_used: Vec<String>,
    /// Grants that belong to this host but were not injected because the upstream is
    /// plain HTTP.
    pub refused_plain_http: Vec<String>,
    /// Grants whose placeholder was seen in a request to a host they do not belong to (left
    /// as is; worth a look in the log).
    pub foreign_placeholders: Vec<String>,
}

impl Injection {
    fn merge(&mut self, other: Injection) {
        self.grants_used.extend(other.grants_used);
        self.refused_plain_http.extend(other.refused_plain_http);
        self.foreign_placeholders.extend(other.foreign_placeholders);
        self.normalize();
    }
    fn normalize(&mut self) {
        for v in [
            &mut self.grants_used,
            &mut self.refused_plain_http,
            &mut self.foreign_placeholders,
        ] {
            v.sort();
            v.dedup();
        }
    }
}

/// Why a body was passed through without substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodySkip {
    /// Larger than [`BODY_LIMIT`].
    TooLarge { len: usize },
    /// Compressed (`Content-Encoding` other than identity): placeholders cannot be seen.
    Encoded { encoding: String },
}

/// The outcome of [`RunSecrets::inject_body`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyInjection {
    /// The new body when something was replaced (`Content-Length` was updated).
    pub body: Option<Vec<u8>>,
    pub injection: Injection,
    pub skipped: Option<BodySkip>,
}

/// What to do with a streaming request body: [`RunSecrets::request_body`].
#[derive(Debug)]
pub enum BodyPlan {
    /// No grant of this host substitutes in bodies: send the body as it is.
    PassThrough,
    /// Substitution applies but cannot be done (compressed, or `Content-Length` over
    /// [`BODY_LIMIT`]): the body is sent untouched; log the reason.
    Skipped(BodySkip),
    /// Stream the body through this (and drop `Content-Length`: the length changes).
    Substitute(BodySubstituter),
}

/// Streaming placeholder → real substitution for one request body. Bounded memory (a tail
/// shorter than the longest placeholder); only the first [`BODY_LIMIT`] bytes are searched,
/// the rest passes through (reported by [`skipped`](Self::skipped)).
pub struct BodySubstituter {
    stream: crate::scrub::ScrubStream,
    /// Grant name of each pattern.
    pattern_grant: Vec<String>,
    seen: usize,
    exceeded: bool,
}

impl std::fmt::Debug for BodySubstituter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySubstituter")
            .field("grants", &self.pattern_grant)
            .field("seen", &self.seen)
            .field("exceeded", &self.exceeded)
            .finish_non_exhaustive()
    }
}

impl BodySubstituter {
    /// Substitutes in `chunk`; returns the bytes to send upstream now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        if self.exceeded {
            out.extend_from_slice(chunk);
        } else {
            let room = BODY_LIMIT - self.seen;
            if chunk.len() <= room {
                self.stream.push_into(chunk, &mut out);
            } else {
                self.stream.push_into(&chunk[..room], &mut out);
                out.extend(self.stream.finish());
                out.extend_from_slice(&chunk[room..]);
                self.exceeded = true;
            }
        }
        self.seen = self.seen.saturating_add(chunk.len());
        out
    }

    /// Ends the body: the held tail.
    pub fn finish(&mut self) -> Vec<u8> {
        self.stream.finish()
    }

    /// Grants whose real value went into the body so far (names, sorted).
    pub fn grants_used(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .stream
            .hits()
            .iter()
            .zip(&self.pattern_grant)
            .filter(|(hit, _)| **hit)
            .map(|(_, g)| g.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Set once the body grew past [`BODY_LIMIT`]: the rest went through untouched.
    pub fn skipped(&self) -> Option<BodySkip> {
        self.exceeded
            .then_some(BodySkip::TooLarge { len: self.seen })
    }
}

impl crate::scrub::StreamRewrite for BodySubstituter {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        BodySubstituter::push(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        BodySubstituter::finish(self)
    }
}

struct Active {
    name: String,
    rules: Vec<InjectRule>,
    value: SecretValue,
    placeholder: String,
    env: Vec<String>,
    substitute: Substitution,
    allow_plain_http: bool,
}

/// One run's grants with their placeholders: the registry placeholder → (grant, real
/// value), and the injection and scrubbing logic. Build one per run, share it (`Arc`)
/// between the proxy's connections; dropping it zeroizes every value it holds.
pub struct RunSecrets {
    grants: Vec<Active>,
    edits: Vec<HeaderEdit>,
    finder: Option<AhoCorasick>,
    scrubber: Scrubber,
    force_identity: bool,
}

impl std::fmt::Debug for RunSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.grants.iter().map(|g| g.name.as_str()).collect();
        f.debug_struct("RunSecrets")
            .field("grants", &names)
            .field("edits", &self.edits.len())
            .finish_non_exhaustive()
    }
}

const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded for a URL path segment or query value.
pub(crate) fn percent(s: &str) -> String {
    utf8_percent_encode(s, URL_VALUE).to_string()
}

/// `s` escaped for the inside of a JSON string.
pub(crate) fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len().saturating_sub(1).max(1)].to_string()
}

#[derive(Clone, Copy)]
enum Encoding {
    Raw,
    Percent,
    Json,
}

impl RunSecrets {
    /// Registers `grants` for one run, drawing a fresh placeholder for each from `rng`
    /// (use a cryptographic RNG seeded from the OS, e.g. `rand::rng()`).
    pub fn new<R: CryptoRng + ?Sized>(grants: Vec<Grant>, rng: &mut R) -> Result<Self> {
        Self::with_placeholders(grants, &[], rng)
    }

    /// Like [`new`](RunSecrets::new), but a grant named in `known` (grant, placeholder)
    /// keeps that placeholder when it is still usable (it does not clash with a value or
    /// another placeholder). A restarted daemon uses this so that the placeholders a
    /// running sandbox already holds keep working.
    pub fn with_placeholders<R: CryptoRng + ?Sized>(
        grants: Vec<Grant>,
        known: &[(String, String)],
        rng: &mut R,
    ) -> Result<Self> {
        let mut active: Vec<Active> = Vec::new();
        for g in grants {
            if active.iter().any(|a| a.name == g.info.name) {
                continue;
            }
            g.info.spec.validate()?;
            let style = g.info.spec.placeholder_style();
            let mut ph = known
                .iter()
                .find(|(name, p)| *name == g.info.name && !p.is_empty())
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| placeholder::generate(style, g.value.expose(), rng));
            // Astronomically unlikely, but a placeholder must never be (part of) a real
            // value or collide with another placeholder.
            for _ in 0..16 {
                let clash = |p: &str| {
                    p.contains(g.value.expose())
                        || g.value.expose().contains(p)
                        || active.iter().any(|a| {
                            a.placeholder.contains(p)
                                || p.contains(&a.placeholder)
                                || p.contains(a.value.expose())
                                || a.value.expose().contains(p)
                        })
                };
                if !clash(&ph) {
                    break;
                }
                ph = placeholder::generate(style, g.value.expose(), rng);
            }
            active.push(Active {
                rules: g.info.spec.rules(),
                env: g.info.spec.env(),
                substitute: g.info.spec.substitution(),
                allow_plain_http: g.info.spec.allow_plain_http(),
                name: g.info.name,
                value: g.value,
                placeholder: ph,
            });
        }
        let mut s = Self {
            grants: active,
            edits: Vec::new(),
            finder: None,
            scrubber: Scrubber::empty(),
            force_identity: true,
        };
        s.rebuild();
        Ok(s)
    }

    fn rebuild(&mut self) {
        self.finder = if self.grants.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(self.grants.iter().map(|g| g.placeholder.as_bytes()))
                .ok()
        };
        let entries: Vec<ScrubEntry> = self
            .grants
            .iter()
            .map(|g| ScrubEntry {
                real: &g.value,
                placeholder: &g.placeholder,
                basic_usernames: g
                    .rules
                    .iter()
                    .filter_map(|r| match &r.format {
                        ValueFormat::Basic { username } => Some(username.clone()),
                        ValueFormat::Template { .. } => None,
                    })
                    .collect(),
            })
            .collect();
        self.scrubber = Scrubber::new(&entries);
    }

    /// Adds header edits (extra and removed headers per host).
    pub fn with_header_edits(mut self, edits: Vec<HeaderEdit>) -> Self {
        self.edits.extend(edits);
        self
    }

    /// Whether requests that receive a grant get `Accept-Encoding: identity` so that their
    /// responses can be scrubbed (default true; turn off only if the proxy decompresses
    /// responses before scrubbing).
    pub fn with_identity_encoding(mut self, on: bool) -> Self {
        self.force_identity = on;
        self
    }

    /// The environment for the sandbox: each grant's variables set to its placeholder
    /// (the first grant wins when two name the same variable).
    pub fn placeholder_env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for g in &self.grants {
            for var in &g.env {
                if !out.iter().any(|(v, _)| v == var) {
                    out.push((var.clone(), g.placeholder.clone()));
                }
            }
        }
        out
    }

    /// Every (grant, placeholder) pair (not secret: what the sandbox holds), for
    /// [`with_placeholders`](RunSecrets::with_placeholders).
    pub fn placeholders(&self) -> Vec<(String, String)> {
        self.grants
            .iter()
            .map(|g| (g.name.clone(), g.placeholder.clone()))
            .collect()
    }

    /// The grant names, in the order given.
    pub fn grant_names(&self) -> Vec<&str> {
        self.grants.iter().map(|g| g.name.as_str()).collect()
    }

    /// A grant's placeholder.
    pub fn placeholder(&self, grant: &str) -> Option<&str> {
        self.grants
            .iter()
            .find(|g| g.name == grant)
            .map(|g| g.placeholder.as_str())
    }

    /// The registry: which grant a placeholder stands for, and its real value.
    pub fn lookup(&self, placeholder: &str) -> Option<(&str, &SecretValue)> {
        self.grants
            .iter()
            .find(|g| g.placeholder == placeholder)
            .map(|g| (g.name.as_str(), &g.value))
    }

    /// Every (grant, host pattern) pair: the hosts the egress policy must allow.
    pub fn hosts(&self) -> Vec<(&str, &HostPattern)> {
        self.grants
            .iter()
            .flat_map(|g| g.rules.iter().map(move |r| (g.name.as_str(), &r.host)))
            .collect()
    }

    /// Stops using a grant for the rest of the run and zeroizes its value.
    pub fn revoke(&mut self, grant: &str) -> bool {
        let before = self.grants.len();
        self.grants.retain(|g| g.name != grant);
        let removed = self.grants.len() != before;
        if removed {
            self.rebuild();
        }
        removed
    }

    /// The response scrubber for this run (scrubs every grant's values, whatever the host).
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    /// Scrubs response headers in place; returns whether anything changed.
    pub fn scrub_response_headers(&self, headers: &mut HeaderMap) -> bool {
        self.scrubber.scrub_headers(headers)
    }

    /// The grant's most specific rule for `host`.
    fn rule_for<'g>(g: &'g Active, host: &str) -> Option<&'g InjectRule> {
        g.rules
            .iter()
            .filter(|r| r.host.matches(host))
            .max_by_key(|r| r.host.specificity())
    }

    /// For each grant: its rule if it may be injected into this target.
    fn applicable<'g>(
        &'g self,
        target: Target<'_>,
        inj: &mut Injection,
    ) -> Vec<Option<&'g InjectRule>> {
        let host = normalize_host(target.host);
        self.grants
            .iter()
            .map(|g| {
                let rule = Self::rule_for(g, &host)?;
                if !target.tls && !g.allow_plain_http {
                    inj.refused_plain_http.push(g.name.clone());
                    return None;
                }
                Some(rule)
            })
            .collect()
    }

    /// Whether the proxy should buffer this request's body for [`inject_body`](Self::inject_body)
    /// (some grant for this host substitutes in bodies).
    pub fn wants_body(&self, target: Target<'_>) -> bool {
        let mut scratch = Injection::default();
        self.applicable(target, &mut scratch)
            .iter()
            .zip(&self.grants)
            .any(|(r, g)| r.is_some() && g.substitute.body)
    }

    /// Replaces placeholders in `text`: those of grants with `allowed[i]` become the real
    /// value (encoded as `enc` says), the others stay and are reported as foreign.
    fn substitute<'t>(
        &self,
        text: &'t [u8],
        allowed: &[bool],
        enc: Encoding,
        used: &mut [bool],
        foreign: &mut [bool],
    ) -> Cow<'t, [u8]> {
        let Some(finder) = &self.finder else {
            return Cow::Borrowed(text);
        };
        let mut out: Option<Vec<u8>> = None;
        let mut pos = 0;
        for m in finder.find_iter(text) {
            let i = m.pattern().as_usize();
            if !allowed[i] {
                foreign[i] = true;
                continue;
            }
            used[i] = true;
            let o = out.get_or_insert_with(|| Vec::with_capacity(text.len() + 64));
            o.extend_from_slice(&text[pos..m.start()]);
            let real = self.grants[i].value.expose();
            match enc {
                Encoding::Raw => o.extend_from_slice(real.as_bytes()),
                Encoding::Percent => {
                    o.extend_from_slice(zeroize::Zeroizing::new(percent(real)).as_bytes())
                }
                Encoding::Json => {
                    o.extend_from_slice(zeroize::Zeroizing::new(json_escape(real)).as_bytes())
                }
            }
            pos = m.end();
        }
        match out {
            Some(mut o) => {
                o.extend_from_slice(&text[pos..]);
                Cow::Owned(o)
            }
            None => Cow::Borrowed(text),
        }
    }

    /// Substitutes in one header value, including inside `Basic` credentials.
    fn substitute_header_value(
        &self,
        v: &HeaderValue,
        allowed: &[bool],
        used: &mut [bool],
        foreign: &mut [bool],
    ) -> Option<HeaderValue> {
        let bytes = v.as_bytes();
        let mut result: Option<Vec<u8>> = None;
        if bytes.len() > 6 && bytes[..6].eq_ignore_ascii_case(b"basic ") {
            let encoded = std::str::from_utf8(&bytes[6..]).unwrap_or("").trim();
            if let Ok(decoded) = B64.decode(encoded) {
                let decoded = zeroize::Zeroizing::new(decoded);
                if let Cow::Owned(new) =
                    self.substitute(&decoded, allowed, Encoding::Raw, used, foreign)
                {
                    let new = zeroize::Zeroizing::new(new);
                    let mut v = bytes[..6].to_vec();
                    v.extend_from_slice(B64.encode(&new[..]).as_bytes());
                    result = Some(v);
                }
            }
        }
        if result.is_none()
            && let Cow::Owned(new) = self.substitute(bytes, allowed, Encoding::Raw, used, foreign)
        {
            result = Some(new);
        }
        let new = zeroize::Zeroizing::new(result?);
        let mut hv = HeaderValue::from_bytes(&new).ok()?;
        hv.set_sensitive(true);
        Some(hv)
    }

    /// Injects into a request's head: header edits, grant headers, and placeholder
    /// substitution in headers and (for grants that allow it) the URL.
    pub fn inject_request(
        &self,
        target: Target<'_>,
        parts: &mut http::request::Parts,
    ) -> Injection {
        let mut inj = self.inject_headers(target, &mut parts.headers);
        let (uri, url_inj) = self.substitute_uri(target, &parts.uri);
        if let Some(uri) = uri {
            parts.uri = uri;
        }
        inj.merge(url_inj);
        inj
    }

    /// Header part of [`inject_request`](Self::inject_request).
    pub fn inject_headers(&self, target: Target<'_>, headers: &mut HeaderMap) -> Injection {
        let mut inj = Injection::default();
        let host = normalize_host(target.host);
        for edit in self.edits.iter().filter(|e| e.host.matches(&host)) {
            for name in &edit.remove {
                headers.remove(name);
            }
            for (name, value) in &edit.set {
                headers.insert(name.clone(), value.clone());
            }
        }
        let rules = self.applicable(target, &mut inj);
        let n = self.grants.len();
        let mut used = vec![false; n];
        let mut foreign = vec![false; n];

        // The grants' own headers.
        let mut handled: Vec<HeaderName> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let Some(rule) = rule else { continue };
            let name = rule.header_name();
            if handled.contains(&name) {
                continue;
            }
            handled.push(name.clone());
            // Grants that may fill this header: those whose rule here uses it.
            let allowed: Vec<bool> = rules
                .iter()
                .map(|r| r.is_some_and(|r| r.header_name() == name))
                .collect();
            let existing: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            let mut any = false;
            let mut replaced = Vec::with_capacity(existing.len());
            for v in &existing {
                match self.substitute_header_value(v, &allowed, &mut used, &mut foreign) {
                    Some(nv) => {
                        any = true;
                        replaced.push(nv);
                    }
                    None => replaced.push(v.clone()),
                }
            }
            headers.remove(&name);
            if any {
                for v in replaced {
                    headers.append(name.clone(), v);
                }
            } else {
                let rendered =
                    zeroize::Zeroizing::new(rule.format.render(self.grants[i].value.expose()));
                if let Ok(mut hv) = HeaderValue::from_str(&rendered) {
                    hv.set_sensitive(true);
                    headers.insert(name.clone(), hv);
                    used[i] = true;
                }
            }
        }

        // Placeholders in every other header.
        let allowed: Vec<bool> = rules
            .iter()
            .zip(&self.grants)
            .map(|(r, g)| r.is_some() && g.substitute.headers)
            .collect();
        let names: Vec<HeaderName> = headers.keys().cloned().collect();
        for name in names {
            if handled.contains(&name) {
                continue;
            }
            let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            let mut changed = false;
            let new: Vec<HeaderValue> = values
                .iter()
                .map(
                    |v| match self.substitute_header_value(v, &allowed, &mut used, &mut foreign) {
                        Some(nv) => {
                            changed = true;
                            nv
                        }
                        None => v.clone(),
                    },
                )
                .collect();
            if changed {
                headers.remove(&name);
                for v in new {
                    headers.append(name.clone(), v);
                }
            }
        }

        if self.force_identity && used.iter().any(|u| *u) {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        self.finish(&mut inj, target.host, &used, &foreign);
        inj
    }

    /// Records names; a placeholder is foreign only when its grant has no rule for the host.
    fn finish(&self, inj: &mut Injection, host: &str, used: &[bool], foreign: &[bool]) {
        let host = normalize_host(host);
        for (i, g) in self.grants.iter().enumerate() {
            if used[i] {
                inj.grants_used.push(g.name.clone());
            }
            let belongs = Self::rule_for(g, &host).is_some();
            if foreign[i] && !belongs {
                inj.foreign_placeholders.push(g.name.clone());
            }
        }
        inj.normalize();
    }

    /// Placeholder substitution in the URL path and query, for grants of this host that
    /// allow it (the real value percent-encoded). `None` when nothing changed.
    pub fn substitute_uri(&self, target: Target<'_>, uri: &Uri) -> (Option<Uri>, Injection) {
        let mut inj = Injection::default();
        // Plain-HTTP refusals are reported by the header pass.
        let rules = self.applicable(target, &mut Injection::default());
        let allowed: Vec<bool> = rules
            .iter()
            .zip(&self.grants)
            .map(|(r, g)| r.is_some() && g.substitute.url)
            .collect();
        let n = self.grants.len();
        let (mut used, mut foreign) = (vec![false; n], vec![false; n]);
        let Some(pq) = uri.path_and_query() else {
            return (None, inj);
        };
        let new = self.substitute(
            pq.as_str().as_bytes(),
            &allowed,
            Encoding::Percent,
            &mut used,
            &mut foreign,
        );
        let mut result = None;
        if let Cow::Owned(new) = new {
            let mut parts = uri.clone().into_parts();
            if let Ok(pq) = http::uri::PathAndQuery::try_from(new)
                && let Ok(u) = {
                    parts.path_and_query = Some(pq);
                    Uri::from_parts(parts)
                }
            {
                result = Some(u);
            } else {
                used.iter_mut().for_each(|u| *u = false);
            }
        }
        self.finish(&mut inj, target.host, &used, &foreign);
        (result, inj)
    }

    /// How to treat a streaming request body to `target` with these request headers (call
    /// after [`inject_request`](Self::inject_request)).
    pub fn request_body(&self, target: Target<'_>, headers: &HeaderMap) -> BodyPlan {
        let rules = self.applicable(target, &mut Injection::default());
        let allowed: Vec<usize> = (0..self.grants.len())
            .filter(|&i| rules[i].is_some() && self.grants[i].substitute.body)
            .collect();
        if allowed.is_empty() {
            return BodyPlan::PassThrough;
        }
        if let Some(skip) = body_skip(headers, None) {
            return BodyPlan::Skipped(skip);
        }
        let enc = body_encoding(headers);
        let mut pairs = Vec::new();
        let mut pattern_grant = Vec::new();
        for i in allowed {
            let g = &self.grants[i];
            let real = match enc {
                Encoding::Raw => g.value.expose().to_string(),
                Encoding::Percent => percent(g.value.expose()),
                Encoding::Json => json_escape(g.value.expose()),
            };
            pairs.push((
                zeroize::Zeroizing::new(g.placeholder.as_bytes().to_vec()),
                zeroize::Zeroizing::new(real.into_bytes()),
            ));
            pattern_grant.push(g.name.clone());
        }
        BodyPlan::Substitute(BodySubstituter {
            stream: Scrubber::from_pairs(pairs).stream(),
            pattern_grant,
            seen: 0,
            exceeded: false,
        })
    }

    /// Placeholder substitution in a buffered request body, for grants of this host that
    /// allow it. The real value is JSON-escaped for JSON bodies and percent-encoded for
    /// form bodies. Bodies over [`BODY_LIMIT`] or compressed are left untouched (and
    /// reported); when the body changes, `Content-Length` is updated.
    pub fn inject_body(
        &self,
        target: Target<'_>,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> BodyInjection {
        let mut out = BodyInjection::default();
        let rules = self.applicable(target, &mut Injection::default());
        let allowed: Vec<bool> = rules
            .iter()
            .zip(&self.grants)
            .map(|(r, g)| r.is_some() && g.substitute.body)
            .collect();
        if !allowed.iter().any(|a| *a) {
            return out;
        }
        if let Some(skip) = body_skip(headers, Some(body.len())) {
            out.skipped = Some(skip);
            return out;
        }
        let enc = body_encoding(headers);
        let n = self.grants.len();
        let (mut used, mut foreign) = (vec![false; n], vec![false; n]);
        if let Cow::Owned(new) = self.substitute(body, &allowed, enc, &mut used, &mut foreign) {
            if headers.contains_key(CONTENT_LENGTH) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(new.len()));
            }
            out.body = Some(new);
        }
        self.finish(&mut out.injection, target.host, &used, &foreign);
        out
    }
}

/// Why a body to be substituted must pass untouched, if it must.
fn body_skip(headers: &HeaderMap, len: Option<usize>) -> Option<BodySkip> {
    if let Some(enc) = headers.get(CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?").trim().to_ascii_lowercase();
        if !enc.is_empty() && enc != "identity" {
            return Some(BodySkip::Encoded { encoding: enc });
        }
    }
    let len = len.or_else(|| {
        headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    });
    match len {
        Some(len) if len > BODY_LIMIT => Some(BodySkip::TooLarge { len }),
        _ => None,
    }
}

/// How a real value is written into a body of this content type.
fn body_encoding(headers: &HeaderMap) -> Encoding {
    let ctype = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.contains("json") {
        Encoding::Json
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        Encoding::Percent
    } else {
        Encoding::Raw
    }
}
