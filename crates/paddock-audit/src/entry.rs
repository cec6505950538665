//! Audit entries and their canonical byte encoding (the bytes that are hashed).
//!
//! Owns: [`Entry`] (what was recorded), [`NewEntry`] (what a caller hands the writer; the
//! writer assigns `seq`), the canonical encoding and its decoder, and canonical JSON.
//! Never: hashes a non-canonical form; two equal entries always encode to the same bytes,
//! whatever key order or whitespace their JSON arrived with.
//!
//! # Canonical encoding, version 1
//!
//! ```text
//! offset  size  field
//! 0       1     version = 0x01
//! 1       8     seq, u64 big-endian (0-based; equals the leaf index in the tree)
//! 9       8     ts, u64 big-endian, milliseconds since the Unix epoch (UTC)
//! 17      2     type length L, u16 big-endian (1..=256)
//! 19      L     type, UTF-8 (no control characters)
//! 19+L    4     data length D, u32 big-endian (<= 16 MiB)
//! 23+L    D     data as canonical JSON
//! ```
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace,
//! strings escaped as serde_json does (`"` `\` and control characters only; non-ASCII is
//! written as UTF-8), integers in decimal, floats in the shortest form that round-trips
//! (ryu). The leaf hash of an entry is `SHA-256(0x00 || encoding)` (RFC 6962).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hash::{Hash, leaf_hash};

/// Version byte of the canonical encoding.
pub const ENCODING_VERSION: u8 = 0x01;
/// Longest `type` accepted, in bytes.
pub const MAX_TYPE_LEN: usize = 256;
/// Largest canonical `data` accepted, in bytes.
pub const MAX_DATA_LEN: usize = 16 * 1024 * 1024;
const HEADER_LEN: usize = 1 + 8 + 8 + 2;

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// When the daemon recorded it: milliseconds since the Unix epoch (UTC).
    pub ts: u64,
    /// Event type, e.g. `run.state`, `net.request`, `grant.used`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event payload (any JSON).
    pub data: Value,
}

/// An entry before the writer numbers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntry {
    /// Milliseconds since the Unix epoch (UTC).
    pub ts: u64,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event payload.
    pub data: Value,
}

impl NewEntry {
    /// An entry stamped with the current wall-clock time.
    pub fn now(kind: impl Into<String>, data: Value) -> Self {
        Self {
            ts: now_ms(),
            kind: kind.into(),
            data,
        }
    }

    /// Numbers the entry.
    pub fn with_seq(self, seq: u64) -> Entry {
        Entry {
            seq,
            ts: self.ts,
            kind: self.kind,
            data: self.data,
        }
    }
}

/// Current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An entry that cannot be encoded, or bytes that are not an encoded entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry type is empty")]
    EmptyType,
    #[error("entry type is {0} bytes long; at most {MAX_TYPE_LEN} are allowed")]
    TypeTooLong(usize),
    #[error("entry type {0:?} contains a control character")]
    TypeControlChar(String),
    #[error("entry data is {0} bytes as canonical JSON; at most {MAX_DATA_LEN} are allowed")]
    DataTooLarge(usize),
    #[error("encoded entry is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("encoded entry has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("unknown entry encoding version {0:#04x} (this build reads {ENCODING_VERSION:#04x})")]
    UnknownVersion(u8),
    #[error("entry type is not UTF-8")]
    TypeNotUtf8,
    #[error("entry data is not valid JSON: {0}")]
    DataNotJson(String),
}

fn check_type(kind: &str) -> Result<(), EntryError> {
    if kind.is_empty() {
        return Err(EntryError::EmptyType);
    }
    if kind.len() > MAX_TYPE_LEN {
        return Err(EntryError::TypeTooLong(kind.len()));
    }
    if kind.chars().any(char::is_control) {
        return Err(EntryError::TypeControlChar(kind.to_owned()));
    }
    Ok(())
}

impl Entry {
    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EntryError> {
        encode_fields(self.seq, self.ts, &self.kind, &self.data, out)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let mut v = Vec::new();
        self.encode_into(&mut v)?;
        Ok(v)
    }

    /// RFC 6962 leaf hash of the canonical encoding.
    pub fn leaf_hash(&self) -> Result<Hash, EntryError> {
        Ok(leaf_hash(&self.encode()?))
    }

    /// Decodes a canonical encoding (parsing `data` as JSON).
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let h = EncodedHeader::parse(bytes)?;
        let kind = std::str::from_utf8(&bytes[HEADER_LEN..HEADER_LEN + h.type_len])
            .map_err(|_| EntryError::TypeNotUtf8)?
            .to_owned();
        let data_start = HEADER_LEN + h.type_len + 4;
        let data = serde_json::from_slice(&bytes[data_start..])
            .map_err(|e| EntryError::DataNotJson(e.to_string()))?;
        Ok(Entry {
            seq: h.seq,
            ts: h.ts,
            kind,
            data,
        })
    }
}

/// Appends the canonical encoding of the given fields to `out`; on error `out` is unchanged.
pub fn encode_fields(
    seq: u64,
    ts: u64,
    kind: &str,
    data: &Value,
    out: &mut Vec<u8>,
) -> Result<(), EntryError> {
    encode_with(seq, ts, kind, out, |out| canonical_json_into(data, out))
}

/// Like [`encode_fields`], with `data` already in canonical JSON.
pub(crate) fn encode_fields_canonical(
    seq: u64,
    ts: u64,
    kind: &str,
    canonical_data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EntryError> {
    encode_with(seq, ts, kind, out, |out| {
        out.extend_from_slice(canonical_data)
    })
}

fn encode_with(
    seq: u64,
    ts: u64,
    kind: &str,
    out: &mut Vec<u8>,
    write_data: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EntryError> {
    check_type(kind)?;
    let start = out.len();
    out.reserve(HEADER_LEN + kind.len() + 4 + 128);
    out.push(ENCODING_VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&(kind.len() as u16).to_be_bytes());
    out.extend_from_slice(kind.as_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    write_data(out);
    let data_len = out.len() - len_at - 4;
    if data_len > MAX_DATA_LEN {
        out.truncate(start);
        return Err(EntryError::DataTooLarge(data_len));
    }
    out[len_at..len_at + 4].copy_from_slice(&(data_len as u32).to_be_bytes());
    Ok(())
}

/// An entry as read from a bundle, with `data` turned into canonical JSON while parsing
/// (no `serde_json::Value` is built: the fast path of bundle verification).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct CanonicalEntry {
    pub(crate) seq: u64,
    pub(crate) ts: u64,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(deserialize_with = "deserialize_canonical")]
    pub(crate) data: Vec<u8>,
}

/// Deserializes any JSON value straight into its canonical JSON bytes. Produces exactly
/// what [`canonical_json`] gives for the `Value` the same input parses to (duplicate keys:
/// the last one wins, as in `Value`).
pub fn deserialize_canonical<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let mut out = Vec::with_capacity(128);
    d.deserialize_any(CanonVisitor(&mut out))?;
    Ok(out)
}

struct CanonSeed<'a>(&'a mut Vec<u8>);

impl<'de> serde::de::DeserializeSeed<'de> for CanonSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(CanonVisitor(self.0))
    }
}

struct CanonVisitor<'a>(&'a mut Vec<u8>);

/// An object key, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> serde::de::Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> serde::de::Visitor<'de> for CanonVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        write_json(&v, self.0);
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        write_json(&v, self.0);
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // As Value does: a finite float is a Number, written by the same serializer.
        match serde_json::Number::from_f64(v) {
            Some(n) => write_json(&n, self.0),
            None => self.0.extend_from_slice(b"null"),
        }
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        write_json(v, self.0);
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            let mark = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if seq.next_element_seed(CanonSeed(self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Fast path: members are written as they come, which is already canonical when the
        // keys arrive sorted and unique (always, for a bundle this crate exported). The
        // first key out of order switches to collecting and sorting.
        let out = self.0;
        let start = out.len();
        out.push(b'{');
        let mut spans: Vec<(Cow<'de, str>, usize, usize)> = Vec::new();
        let mut last: Option<Cow<'de, str>> = None;
        let mut sorted = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if sorted
                && last
                    .as_ref()
                    .is_some_and(|l| l.as_bytes() >= key.as_bytes())
            {
                sorted = false;
            }
            if sorted {
                if last.is_some() {
                    out.push(b',');
                }
                write_json(key.as_ref(), out);
                out.push(b':');
                map.next_value_seed(CanonSeed(out))?;
                last = Some(key);
            } else {
                let from = out.len();
                map.next_value_seed(CanonSeed(out))?;
                spans.push((key, from, out.len()));
            }
        }
        if !sorted {
            // Re-read the members written so far, then sort all of them.
            let head: Vec<u8> = out[start + 1..].to_vec();
            let mut members: Vec<(Cow<'de, str>, Vec<u8>)> = Vec::new();
            let tail_base = start + 1;
            let first_span = spans.first().map_or(out.len(), |s| s.1);
            let written = &head[..first_span - tail_base];
            if !written.is_empty() {
                let v: serde_json::Map<String, Value> =
                    serde_json::from_slice(&[b"{", written, b"}"].concat())
                        .map_err(serde::de::Error::custom)?;
                for (k, val) in v {
                    members.push((Cow::Owned(k), canonical_json(&val)));
                }
            }
            for (k, from, to) in spans {
                members.push((k, head[from - tail_base..to - tail_base].to_vec()));
            }
            // Stable sort keeps duplicates in input order; the last of each key wins.
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.truncate(start + 1);
            let mut first = true;
            for (i, (k, v)) in members.iter().enumerate() {
                if members.get(i + 1).is_some_and(|next| next.0 == *k) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json(k.as_ref(), out);
                out.push(b':');
                out.extend_from_slice(v);
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// The fixed fields of an encoded entry, read without parsing its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    pub seq: u64,
    pub ts: u64,
    type_len: usize,
}

impl EncodedHeader {
    /// Checks the framing of an encoded entry and returns its `seq` and `ts`.
    pub fn parse(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() < HEADER_LEN {
            return Err(EntryError::Truncated(bytes.len()));
        }
        if bytes[0] != ENCODING_VERSION {
            return Err(EntryError::UnknownVersion(bytes[0]));
        }
        let seq = u64::from_be_bytes(bytes[1..9].try_into().unwrap_or_default());
        let ts = u64::from_be_bytes(bytes[9..17].try_into().unwrap_or_default());
        let type_len = u16::from_be_bytes([bytes[17], bytes[18]]) as usize;
        let data_len_at = HEADER_LEN + type_len;
        if bytes.len() < data_len_at + 4 {
            return Err(EntryError::Truncated(bytes.len()));
        }
        let data_len = u32::from_be_bytes(
            bytes[data_len_at..data_len_at + 4]
                .try_into()
                .unwrap_or_default(),
        ) as usize;
        let end = data_len_at + 4 + data_len;
        if bytes.len() < end {
            return Err(EntryError::Truncated(bytes.len()));
        }
        if bytes.len() > end {
            return Err(EntryError::TrailingBytes(bytes.len() - end));
        }
        Ok(Self { seq, ts, type_len })
    }
}

/// Canonical JSON of `v` (see the module docs).
pub fn canonical_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_json_into(v, &mut out);
    out
}

/// Appends the canonical JSON of `v` to `out`.
pub fn canonical_json_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_json(n, out),
        Value::String(s) => write_json(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json_into(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map keeps insertion order when another crate in
            // the build enables `preserve_order`.
            let mut keys: Vec<(&String, &Value)> = map.iter().collect();
            keys.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(k, out);
                out.push(b':');
                canonical_json_into(v, out);
            }
            out.push(b'}');
        }
    }
}

fn write_json<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // Writing a string or number into a Vec cannot fail.
    let _ = serde_json::to_writer(out, v);
}
