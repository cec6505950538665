//! Entry points for the fuzz targets in `fuzz/` (not a stable API): the fast path's
//! request and response head parsers, its chunked decoder and its blank-line search, with
//! their results as plain public data.

use std::ops::Range;

use super::chunked::Decoder;
use super::head::{self, Forwarding, RequestError};

/// How a head frames its body (`head::Framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Close,
}

impl From<head::Framing> for Framing {
    fn from(f: head::Framing) -> Framing {
        match f {
            head::Framing::Empty => Framing::Empty,
            head::Framing::Length(n) => Framing::Length(n),
            head::Framing::Chunked => Framing::Chunked,
            head::Framing::Close => Framing::Close,
        }
    }
}

/// A request head the fast path forwards (`head::Request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub len: usize,
    pub host: Option<Range<usize>>,
    pub head_method: bool,
    pub retryable: bool,
    pub json: bool,
    pub close: bool,
    pub framing: Framing,
}

/// Why the fast path does not forward a request head (`head::RequestError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestRefusal {
    Partial,
    Fallback,
    TooManyHeaders,
    Malformed(&'static str),
    DuplicateHost,
}

/// `head::request` with the router's forwarding fields for a client at `xff`.
pub fn request_head(
    buf: &[u8],
    xff: &[u8],
    forwarded_for: &str,
    https: bool,
    out: &mut Vec<u8>,
) -> Result<RequestHead, RequestRefusal> {
    let fwd = Forwarding::new(xff, forwarded_for, https);
    match head::request(buf, &fwd, out) {
        Ok(r) => Ok(RequestHead {
            len: r.len,
            host: r.host,
            head_method: r.head_method,
            retryable: r.retryable,
            json: r.json,
            close: r.close,
            framing: r.framing.into(),
        }),
        Err(RequestError::Partial) => Err(RequestRefusal::Partial),
        Err(RequestError::Fallback) => Err(RequestRefusal::Fallback),
        Err(RequestError::TooManyHeaders) => Err(RequestRefusal::TooManyHeaders),
        Err(RequestError::Malformed(why)) => Err(RequestRefusal::Malformed(why)),
        Err(RequestError::DuplicateHost) => Err(RequestRefusal::DuplicateHost),
    }
}

/// A backend's response head (`head::Response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseHead {
    Informational {
        len: usize,
    },
    Final {
        len: usize,
        framing: Framing,
        backend_keep_alive: bool,
    },
}

/// `head::response`; the error is its message.
pub fn response_head(
    buf: &[u8],
    head_request: bool,
    close_client: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, String> {
    match head::response(buf, head_request, close_client, out) {
        Ok(None) => Ok(None),
        Ok(Some(head::Response::Informational { len })) => {
            Ok(Some(ResponseHead::Informational { len }))
        }
        Ok(Some(head::Response::Final {
            len,
            framing,
            backend_keep_alive,
        })) => Ok(Some(ResponseHead::Final {
            len,
            framing: framing.into(),
            backend_keep_alive,
        })),
        Err(e) => Err(e.to_string()),
    }
}

/// The fast path's chunked decoder and re-encoder.
#[derive(Debug)]
pub struct ChunkedDecoder(Decoder);

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder(Decoder::new())
    }
}

impl ChunkedDecoder {
    /// The terminating chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }

    /// `Decoder::feed`; the error is its message.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        self.0.feed(input, out).map_err(|e| e.to_string())
    }
}

/// The fast path's check for a possibly complete head before it parses again.
pub fn has_blank_line(buf: &[u8], from: usize) -> bool {
    super::has_blank_line(buf, from)
}
