//! Response scrubbing: every real value, and its common encodings, replaced by its
//! placeholder in response headers and bodies, before a byte reaches the sandbox.
//!
//! Patterns per grant: the value as-is; URL-encoded and JSON-escaped (when those differ);
//! base64 (standard and URL-safe) of the value at each of the three alignments it can have
//! inside a longer base64 text (so `Basic base64(anyuser:value)` is caught), and of
//! `username:value` for every `Basic` username of its rules (`x-access-token` for GitHub);
//! each cut to whole 3-byte groups so the pattern does not depend on what surrounds it (at
//! most two bytes' worth of characters at either end of an encoded value stay). Matching is
//! Aho-Corasick, leftmost-longest.
//!
//! [`ScrubStream`] is the streaming form: safe across chunk boundaries, it holds back only
//! the shortest tail that could still be the start of a match (at most `max_len - 1`
//! bytes), so server-sent events pass through as they come; its output always equals the
//! one-shot [`Scrubber::scrub`] of the whole body.
//!
//! Never: lets a complete real value through, whatever the chunking; grows beyond one
//! chunk plus `max_len - 1` bytes.

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use http::{HeaderMap, HeaderValue};
use zeroize::Zeroizing;

use crate::value::SecretValue;

/// Whether a response body can be scrubbed as bytes: no `Content-Encoding`, or `identity`.
/// A compressed body must be decoded before scrubbing (or refused): the scrubber cannot see
/// a value inside gzip. Requests that received a grant ask for `identity` (see
/// [`crate::RunSecrets::with_identity_encoding`]), but a server may ignore that.
pub fn response_is_scrubbable(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .all(|v| {
            v.to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity") || v.trim().is_empty())
        })
}

/// A pattern and its replacement, both zeroized on drop.
pub(crate) type Pair = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);

/// What to scrub for one grant.
pub struct ScrubEntry<'a> {
    pub real: &'a SecretValue,
    pub placeholder: &'a str,
    /// `Basic` usernames under which the value is sent (`x-access-token`).
    pub basic_usernames: Vec<String>,
}

struct Inner {
    ac: Option<AhoCorasick>,
    patterns: Vec<Zeroizing<Vec<u8>>>,
    /// Zeroized too: when substituting into requests, replacements are real values.
    replacements: Vec<Zeroizing<Vec<u8>>>,
    /// For each byte, the patterns that start with it.
    by_first: Vec<Vec<usize>>,
    max_len: usize,
}

/// The set of values to scrub for a run. Cheap to clone (shared).
#[derive(Clone)]
pub struct Scrubber(Arc<Inner>);

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Scrubber(<{} patterns redacted>, max_len={})",
            self.0.patterns.len(),
            self.0.max_len
        )
    }
}

/// Standard base64 of `raw`, cut to whole 3-byte groups.
fn b64_groups(raw: &[u8]) -> Zeroizing<String> {
    b64_groups_with(&B64, raw)
}

fn b64_groups_with(engine: &impl Engine, raw: &[u8]) -> Zeroizing<String> {
    let whole = raw.len() / 3 * 3;
    Zeroizing::new(engine.encode(&raw[..whole]))
}

impl Scrubber {
    /// A scrubber for `entries`.
    pub fn new(entries: &[ScrubEntry<'_>]) -> Self {
        let mut pairs: Vec<Pair> = Vec::new();
        let mut add = |real: &[u8], ph: &[u8]| {
            if real.len() >= 4 && real != ph && !pairs.iter().any(|(r, _)| r.as_slice() == real) {
                pairs.push((Zeroizing::new(real.to_vec()), Zeroizing::new(ph.to_vec())));
            }
        };
        for e in entries {
            let real = e.real.expose();
            let ph = e.placeholder;
            add(real.as_bytes(), ph.as_bytes());
            let pct = Zeroizing::new(crate::inject::percent(real));
            add(pct.as_bytes(), crate::inject::percent(ph).as_bytes());
            let json = Zeroizing::new(crate::inject::json_escape(real));
            add(json.as_bytes(), crate::inject::json_escape(ph).as_bytes());
            // Inside any base64 text (standard or URL-safe) the value starts at one of three
            // alignments; encoding it from offsets 0, 1 and 2 gives a pattern for each.
            for skip in 0..3 {
                for engine in [&B64, &B64URL] {
                    add(
                        b64_groups_with(engine, &real.as_bytes()[skip.min(real.len())..])
                            .as_bytes(),
                        b64_groups_with(engine, &ph.as_bytes()[skip.min(ph.len())..]).as_bytes(),
                    );
                }
            }
            for user in &e.basic_usernames {
                let r = Zeroizing::new(format!("{user}:{real}"));
                let p = format!("{user}:{ph}");
                add(
                    b64_groups(r.as_bytes()).as_bytes(),
                    b64_groups(p.as_bytes()).as_bytes(),
                );
            }
        }
        Self::from_pairs(pairs)
    }

    /// A replacer for arbitrary (pattern, replacement) pairs (empty patterns are ignored).
    pub(crate) fn from_pairs(pairs: Vec<Pair>) -> Self {
        let pairs: Vec<_> = pairs.into_iter().filter(|(p, _)| !p.is_empty()).collect();
        let mut by_first = vec![Vec::new(); 256];
        for (i, (p, _)) in pairs.iter().enumerate() {
            by_first[p[0] as usize].push(i);
        }
        let max_len = pairs.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        let ac = if pairs.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(pairs.iter().map(|(p, _)| p.as_slice()))
                .ok()
        };
        let (patterns, replacements) = pairs.into_iter().unzip();
        Self(Arc::new(Inner {
            ac,
            patterns,
            replacements,
            by_first,
            max_len,
        }))
    }

    /// A scrubber that scrubs nothing.
    pub fn empty() -> Self {
        Self::new(&[])
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.0.ac.is_none()
    }

    /// Length of the longest pattern; a stream holds back at most this minus one byte.
    pub fn max_len(&self) -> usize {
        self.0.max_len
    }

    /// One-shot scrub of a whole buffer.
    pub fn scrub<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(ac) = &self.0.ac else {
            return Cow::Borrowed(data);
        };
        let mut out = Vec::new();
        let mut pos = 0;
        let mut matched = false;
        for m in ac.find_iter(data) {
            matched = true;
            out.extend_from_slice(&data[pos..m.start()]);
            out.extend_from_slice(&self.0.replacements[m.pattern().as_usize()]);
            pos = m.end();
        }
        if !matched {
            return Cow::Borrowed(data);
        }
        out.extend_from_slice(&data[pos..]);
        Cow::Owned(out)
    }

    /// Scrubs every header value in place; returns whether anything changed.
    pub fn scrub_headers(&self, headers: &mut HeaderMap) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut changed = false;
        let names: Vec<_> = headers.keys().cloned().collect();
        for name in names {
            let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            let mut new_values = Vec::with_capacity(values.len());
            let mut touched = false;
            for v in values {
                match self.scrub(v.as_bytes()) {
                    Cow::Borrowed(_) => new_values.push(v),
                    Cow::Owned(bytes) => {
                        touched = true;
                        new_values.push(
                            HeaderValue::from_bytes(&bytes)
                                .unwrap_or_else(|_| HeaderValue::from_static("[scrubbed]")),
                        );
                    }
                }
            }
            if touched {
                changed = true;
                headers.remove(&name);
                for v in new_values {
                    headers.append(name.clone(), v);
                }
            }
        }
        changed
    }

    /// A streaming scrubber for one body.
    pub fn stream(&self) -> ScrubStream {
        ScrubStream {
            scrubber: self.clone(),
            buf: Zeroizing::new(Vec::new()),
            hits: vec![false; self.0.patterns.len()],
        }
    }

    /// The earliest `i` such that `buf[i..]` is a proper prefix of some pattern (so a match
    /// may start there once more bytes arrive), or `buf.len()`.
    fn hold_point(&self, buf: &[u8]) -> usize {
        let inner = &self.0;
        let start = buf.len().saturating_sub(inner.max_len.saturating_sub(1));
        for i in start..buf.len() {
            let rest = &buf[i..];
            if inner.by_first[buf[i] as usize].iter().any(|&k| {
                let p = &inner.patterns[k];
                p.len() > rest.len() && p.starts_with(rest)
            }) {
                return i;
            }
        }
        buf.len()
    }
}

/// A streaming rewriter: [`ScrubStream`] (responses) and
/// [`BodySubstituter`](crate::BodySubstituter) (request bodies), so one adapter serves both.
pub trait StreamRewrite: Send {
    /// Rewrites `chunk`; returns the bytes to send now (a bounded tail may be held back).
    fn push(&mut self, chunk: &[u8]) -> Vec<u8>;
    /// Ends the stream: returns the held tail, rewritten.
    fn finish(&mut self) -> Vec<u8>;
}

impl StreamRewrite for ScrubStream {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        ScrubStream::push(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        ScrubStream::finish(self)
    }
}

/// Scrubs one body as it streams. Feed chunks with [`ScrubStream::push`], send what it
/// returns at once, and call [`ScrubStream::finish`] at the end of the body.
pub struct ScrubStream {
    scrubber: Scrubber,
    buf: Zeroizing<Vec<u8>>,
    /// Which patterns were replaced so far.
    hits: Vec<bool>,
}

impl std::fmt::Debug for ScrubStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScrubStream(<{} bytes held>)", self.buf.len())
    }
}

impl ScrubStream {
    /// Scrubs `chunk` and returns every byte that can be sent now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + self.buf.len());
        self.push_into(chunk, &mut out);
        out
    }

    /// Like [`push`](Self::push), appending to `out`.
    pub fn push_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(ac) = &self.scrubber.0.ac else {
            out.extend_from_slice(chunk);
            return;
        };
        if self.buf.is_empty() && !chunk.is_empty() {
            // Fast path: scan the chunk in place, copy only the held tail.
            let hold = self.scrubber.hold_point(chunk);
            let pos = emit(
                ac,
                &self.scrubber.0.replacements,
                chunk,
                hold,
                out,
                &mut self.hits,
            );
            let keep = pos.max(hold);
            out.extend_from_slice(&chunk[pos.min(keep)..keep]);
            self.buf.extend_from_slice(&chunk[keep..]);
            return;
        }
        self.buf.extend_from_slice(chunk);
        let hold = self.scrubber.hold_point(&self.buf);
        let pos = emit(
            ac,
            &self.scrubber.0.replacements,
            &self.buf,
            hold,
            out,
            &mut self.hits,
        );
        let keep = pos.max(hold);
        out.extend_from_slice(&self.buf[pos.min(keep)..keep]);
        self.buf.drain(..keep);
    }

    /// Ends the body: returns the scrubbed held bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len());
        if let Some(ac) = &self.scrubber.0.ac {
            let len = self.buf.len();
            let pos = emit(
                ac,
                &self.scrubber.0.replacements,
                &self.buf,
                len,
                &mut out,
                &mut self.hits,
            );
            out.extend_from_slice(&self.buf[pos..]);
        } else {
            out.extend_from_slice(&self.buf);
        }
        self.buf.clear();
        out
    }

    /// Indices of the patterns replaced so far.
    pub(crate) fn hits(&self) -> &[bool] {
        &self.hits
    }

    /// Bytes held back, waiting for the next chunk.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Emits `buf` up to the matches that start before `hold` (those are final), with
/// replacements; returns the position after the last emitted byte.
fn emit(
    ac: &AhoCorasick,
    repl: &[Zeroizing<Vec<u8>>],
    buf: &[u8],
    hold: usize,
    out: &mut Vec<u8>,
    hits: &mut [bool],
) -> usize {
    let mut pos = 0;
    for m in ac.find_iter(buf) {
        if m.start() >= hold {
            break;
        }
        hits[m.pattern().as_usize()] = true;
        out.extend_from_slice(&buf[pos..m.start()]);
        out.extend_from_slice(&repl[m.pattern().as_usize()]);
        pos = m.end();
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber(pairs: &[(&str, &str)]) -> (Scrubber, Vec<SecretValue>) {
        let values: Vec<SecretValue> = pairs
            .iter()
            .map(|(r, _)| SecretValue::new(*r).unwrap())
            .collect();
        let entries: Vec<ScrubEntry> = values
            .iter()
            .zip(pairs)
            .map(|(v, (_, p))| ScrubEntry {
                real: v,
                placeholder: p,
                basic_usernames: vec!["x-access-token".into()],
            })
            .collect();
        (Scrubber::new(&entries), values)
    }

    #[test]
    fn one_shot_and_encodings() {
        let (s, _) = scrubber(&[("ghp_REALREALREALREAL1234", "ghp_FAKEFAKEFAKEFAKE9999")]);
        let out = s.scrub(b"token=ghp_REALREALREALREAL1234;");
        assert_eq!(&out[..], b"token=ghp_FAKEFAKEFAKEFAKE9999;");
        let basic = B64.encode("x-access-token:ghp_REALREALREALREAL1234");
        let out = s.scrub(format!("Basic {basic}").as_bytes()).into_owned();
        assert!(!String::from_utf8_lossy(&out).contains(&basic[..basic.len() - 4]));
        let plain = B64.encode("ghp_REALREALREALREAL1234");
        let out = s.scrub(plain.as_bytes()).into_owned();
        assert_ne!(out, plain.as_bytes());
    }

    #[test]
    fn stream_holds_only_possible_prefixes() {
        let (s, _) = scrubber(&[("secretsecret", "XXXXXXXXXXXX")]);
        let mut st = s.stream();
        assert_eq!(st.push(b"data: hello\n\n"), b"data: hello\n\n");
        assert_eq!(st.pending(), 0);
        assert_eq!(st.push(b"data: sec"), b"data: ");
        assert_eq!(st.pending(), 3);
        assert_eq!(st.push(b"retsecret!"), b"XXXXXXXXXXXX!");
        assert_eq!(st.push(b"se"), b"");
        assert_eq!(st.finish(), b"se");
    }

    #[test]
    fn scrubbable_encodings() {
        let mut h = HeaderMap::new();
        assert!(response_is_scrubbable(&h));
        h.insert("content-encoding", HeaderValue::from_static("identity"));
        assert!(response_is_scrubbable(&h));
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
        assert!(!response_is_scrubbable(&h));
    }

    #[test]
    fn empty_scrubber_passes_through() {
        let s = Scrubber::empty();
        let mut st = s.stream();
        assert_eq!(st.push(b"abc"), b"abc");
        assert_eq!(st.finish(), b"");
        assert!(matches!(s.scrub(b"x"), Cow::Borrowed(_)));
    }
}
