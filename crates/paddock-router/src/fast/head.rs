//! Request and response heads on the fast path: parsed with httparse and rewritten straight
//! into an output buffer, without building a `HeaderMap`.
//!
//! Owns: which headers are hop-by-hop (the same set as `proxy`), the forwarding headers the
//! router adds, the body framing a head declares, and the refusal of the shapes that make
//! two parsers disagree about where a message ends (request smuggling, response splitting).
//! Never does I/O and never routes: it reports the `Host` it saw and the caller decides.
//!
//! Heads are re-serialised from the parsed fields (`name: value` + CRLF), never copied as
//! raw lines, so whatever line endings or spacing a peer used, the other side gets one
//! canonical form.

use std::mem::MaybeUninit;
use std::ops::Range;

use httparse::{Header, ParserConfig, Status};

use super::date;

/// Most header fields accepted in one head (hyper's default too).
pub(crate) const MAX_HEADERS: usize = 100;

/// How a message's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// A request head the fast path can forward.
#[derive(Debug)]
pub(crate) struct Request {
    /// Bytes of the head in the input (the body, if any, follows).
    pub(crate) len: usize,
    /// The `Host` value (a range of the input), `None` without one.
    pub(crate) host: Option<Range<usize>>,
    pub(crate) head_method: bool,
    /// May be sent again if a reused backend connection turns out closed before answering
    /// (nginx's rule: not POST, PATCH or LOCK).
    pub(crate) retryable: bool,
    /// `Accept` asks for JSON (for the router's index pages).
    pub(crate) json: bool,
    /// The client asked to close after this exchange (`Connection: close`).
    pub(crate) close: bool,
    pub(crate) framing: Framing,
}

/// Why a request head is not forwarded by the fast path.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    /// Not a complete head yet.
    #[error("incomplete request head")]
    Partial,
    /// A request the hyper path serves: HTTP/1.0, upgrades, `Expect`, `CONNECT`, or a
    /// request target that is not origin-form.
    #[error("request left to the general path")]
    Fallback,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// Malformed, or framed ambiguously: answered 400 and the connection closed.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// More than one `Host` field: answered with the router's 400 page.
    #[error("more than one Host header")]
    DuplicateHost,
}

/// Why a backend's response head is refused (answered 502).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    #[error("invalid response framing: {0}")]
    Framing(&'static str),
    #[error("unexpected 101 Switching Protocols (no upgrade was asked for)")]
    UnaskedUpgrade,
}

/// What a parsed response head means for the exchange.
#[derive(Debug)]
pub(crate) enum Response {
    /// A 1xx other than 101, `len` bytes: skipped (hyper's client does the same).
    Informational { len: usize },
    /// The final head, rewritten into the output buffer.
    Final {
        len: usize,
        framing: Framing,
        /// The backend keeps the connection open after this response.
        backend_keep_alive: bool,
    },
}

/// Header names the fast path looks at; everything else is `Other`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    Other,
    Host,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    Http2Settings,
    ContentLength,
    Expect,
    Accept,
    Date,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Forwarded,
}

fn classify(n: &[u8]) -> Name {
    let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    // By length first: one comparison for most names.
    match n.len() {
        2 if is("te") => Name::Te,
        4 if is("host") => Name::Host,
        4 if is("date") => Name::Date,
        6 if is("accept") => Name::Accept,
        6 if is("expect") => Name::Expect,
        7 if is("upgrade") => Name::Upgrade,
        7 if is("trailer") => Name::Trailer,
        9 if is("forwarded") => Name::Forwarded,
        10 if is("connection") => Name::Connection,
        10 if is("keep-alive") => Name::KeepAlive,
        14 if is("content-length") => Name::ContentLength,
        14 if is("http2-settings") => Name::Http2Settings,
        15 if is("x-forwarded-for") => Name::XForwardedFor,
        16 if is("proxy-connection") => Name::ProxyConnection,
        16 if is("x-forwarded-host") => Name::XForwardedHost,
        17 if is("transfer-encoding") => Name::TransferEncoding,
        17 if is("x-forwarded-proto") => Name::XForwardedProto,
        _ => Name::Other,
    }
}

/// Comma-separated list elements, trimmed, empty ones skipped (RFC 9110 §5.6.1).
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The field names a `Connection` header lists (besides `close` and `keep-alive`), which are
/// hop-by-hop too. Kept in a fixed array: a message listing more is refused.
#[derive(Default)]
struct Listed<'a> {
    names: [&'a [u8]; 8],
    n: usize,
    close: bool,
}

impl<'a> Listed<'a> {
    fn add(&mut self, value: &'a [u8]) -> bool {
        for t in tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                if self.n == self.names.len() {
                    return false;
                }
                self.names[self.n] = t;
                self.n += 1;
            }
        }
        true
    }

    fn contains(&self, name: &[u8]) -> bool {
        self.names[..self.n]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// A `Content-Length` value: digits only, or a list of identical such values (RFC 9110
/// §8.6). `None` when invalid.
fn content_length(v: &[u8]) -> Option<u64> {
    let mut out = None;
    for t in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = t.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if out.is_some_and(|o| o != n) {
            return None;
        }
        out = Some(n);
    }
    out
}

/// Folds one more `Content-Length` field into `cl`: differing values are an error.
fn merge_length(cl: &mut Option<u64>, v: &[u8]) -> Result<(), &'static str> {
    let n = content_length(v).ok_or("invalid Content-Length")?;
    if cl.is_some_and(|o| o != n) {
        return Err("differing Content-Length values");
    }
    *cl = Some(n);
    Ok(())
}

/// Folds one more `Transfer-Encoding` field into `chunked_seen`: only a single `chunked`
/// coding is accepted (anything else is refused rather than guessed at).
fn merge_te(chunked_seen: &mut bool, v: &[u8]) -> Result<(), &'static str> {
    let mut any = false;
    for t in tokens(v) {
        any = true;
        if !t.eq_ignore_ascii_case(b"chunked") || *chunked_seen {
            return Err("unsupported Transfer-Encoding");
        }
        *chunked_seen = true;
    }
    if any {
        Ok(())
    } else {
        Err("empty Transfer-Encoding")
    }
}

/// True if `head` has a LF not preceded by CR. httparse accepts bare LF as a line end; the
/// router refuses it in requests, so that it never reads a head differently from a server
/// that would not.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

fn offset(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

fn put_header(out: &mut Vec<u8>, h: &Header<'_>) {
    out.extend_from_slice(h.name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(h.value);
    out.extend_from_slice(b"\r\n");
}

fn put_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// What the router adds to every forwarded request, split around the `Host` value:
/// `x-forwarded-for`, `x-forwarded-proto`, `forwarded` and `x-forwarded-host` (client-sent
/// ones are dropped: the router is the edge).
pub(crate) struct Forwarding {
    /// `…forwarded: for=…;host="`
    before_host: Vec<u8>,
    /// `";proto=http\r\nx-forwarded-host: `
    between: &'static [u8],
}

impl Forwarding {
    /// `xff` is the client's address as text, `forwarded_for` the `for=` element.
    pub(crate) fn new(xff: &[u8], forwarded_for: &str, https: bool) -> Forwarding {
        let proto: &[u8] = if https { b"https" } else { b"http" };
        let mut before_host = Vec::with_capacity(96);
        before_host.extend_from_slice(b"x-forwarded-for: ");
        before_host.extend_from_slice(xff);
        before_host.extend_from_slice(b"\r\nx-forwarded-proto: ");
        before_host.extend_from_slice(proto);
        before_host.extend_from_slice(b"\r\nforwarded: ");
        before_host.extend_from_slice(forwarded_for.as_bytes());
        before_host.extend_from_slice(b";host=\"");
        Forwarding {
            before_host,
            between: if https {
                b"\";proto=https\r\nx-forwarded-host: "
            } else {
                b"\";proto=http\r\nx-forwarded-host: "
            },
        }
    }

    fn put(&self, out: &mut Vec<u8>, host: &[u8]) {
        out.extend_from_slice(&self.before_host);
        out.extend_from_slice(host);
        out.extend_from_slice(self.between);
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parse the request head at the start of `buf` and write the head to send to the backend
/// into `out` (cleared first): the request line in HTTP/1.1, the client's fields minus the
/// hop-by-hop and forwarding ones, the body framing, then the router's forwarding fields.
pub(crate) fn request(
    buf: &[u8],
    fwd: &Forwarding,
    out: &mut Vec<u8>,
) -> Result<Request, RequestError> {
    let mut slots = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Err(RequestError::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(_) => return Err(RequestError::Malformed("invalid request head")),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed("invalid request line"));
    };
    if version != 1 || method == "CONNECT" || !path.starts_with('/') {
        return Err(RequestError::Fallback);
    }
    if has_bare_lf(&buf[..len]) {
        return Err(RequestError::Malformed("bare LF in the request head"));
    }

    let mut listed = Listed::default();
    let mut host: Option<&[u8]> = None;
    let mut cl: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut json = false;
    // Classified once, used by both passes.
    let mut names = [Name::Other; MAX_HEADERS];
    for (h, slot) in req.headers.iter().zip(&mut names) {
        *slot = classify(h.name.as_bytes());
        match *slot {
            Name::Upgrade | Name::Expect => return Err(RequestError::Fallback),
            Name::Host if host.is_some() => return Err(RequestError::DuplicateHost),
            Name::Host => host = Some(h.value),
            // `add` records the options; it fails only when there are too many.
            Name::Connection if !listed.add(h.value) => {
                return Err(RequestError::Malformed("too many Connection options"));
            }
            Name::ContentLength => {
                merge_length(&mut cl, h.value).map_err(RequestError::Malformed)?
            }
            Name::TransferEncoding => {
                te = true;
                merge_te(&mut chunked, h.value).map_err(RequestError::Malformed)?;
            }
            Name::Accept => json |= h.value.windows(16).any(|w| w == b"application/json"),
            _ => {}
        }
    }
    let framing = match (te, cl) {
        (true, Some(_)) => {
            return Err(RequestError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        (true, None) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (h, name) in req.headers.iter().zip(names) {
        let keep = match name {
            Name::Other | Name::Accept | Name::Date => {
                listed.n == 0 || !listed.contains(h.name.as_bytes())
            }
            // Written again below from what was parsed.
            Name::ContentLength | Name::TransferEncoding => false,
            Name::Host => true,
            _ => false,
        };
        if keep {
            put_header(out, h);
        }
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Length(n) => put_length(out, n),
        // An explicit zero length is kept (it matters to servers for POST).
        Framing::Empty if cl == Some(0) => put_length(out, 0),
        Framing::Empty | Framing::Close => {}
    }
    if let Some(h) = host {
        fwd.put(out, h);
    }
    out.extend_from_slice(b"\r\n");
    Ok(Request {
        len,
        host: host.map(|h| offset(buf, h)),
        head_method: method == "HEAD",
        retryable: !matches!(method, "POST" | "PATCH" | "LOCK"),
        json,
        close: listed.close,
        framing,
    })
}

/// Parse the backend's response head at the start of `buf`. For a final response, write
/// the head for the client into `out` (cleared first): `HTTP/1.1`, the backend's status and
/// fields minus the hop-by-hop ones, the framing the router will use towards the client,
/// `connection: close` when `close_client` or the body ends with the backend's close, and
/// `date` when the backend sent none. `None`: the head is not complete yet.
pub(crate) fn response(
    buf: &[u8],
    head_request: bool,
    close_client: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Response>, ResponseError> {
    let mut slots = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Parse(e)),
    };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Err(ResponseError::Parse(httparse::Error::Status));
    };
    if code == 101 {
        return Err(ResponseError::UnaskedUpgrade);
    }
    if (100..200).contains(&code) {
        return Ok(Some(Response::Informational { len }));
    }

    let mut listed = Listed::default();
    let mut cl: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut names = [Name::Other; MAX_HEADERS];
    for (h, slot) in resp.headers.iter().zip(&mut names) {
        *slot = classify(h.name.as_bytes());
        match *slot {
            // `add` records the options; it fails only when there are too many.
            Name::Connection if !listed.add(h.value) => {
                return Err(ResponseError::Framing("too many Connection options"));
            }
            Name::ContentLength => {
                merge_length(&mut cl, h.value).map_err(ResponseError::Framing)?
            }
            Name::TransferEncoding => {
                te = true;
                merge_te(&mut chunked, h.value).map_err(ResponseError::Framing)?;
            }
            _ => {}
        }
    }
    let bodiless = head_request || code == 204 || code == 304;
    let framing = if bodiless {
        Framing::Empty
    } else {
        match (te, cl) {
            (true, Some(_)) => {
                return Err(ResponseError::Framing(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            (true, None) => Framing::Chunked,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::Close,
        }
    };
    // HTTP/1.0 backends close unless they say otherwise; the router never asks them to keep
    // a connection (it speaks HTTP/1.1 to them), so only HTTP/1.1 ones are reused.
    let backend_keep_alive = version == 1 && !listed.close && framing != Framing::Close;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    let reason = match resp.reason {
        Some(r) if !r.is_empty() => r,
        _ => http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or(""),
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    // A `Date` the backend listed in `Connection` is dropped like any listed field; the
    // client then gets the router's own.
    let mut date = false;
    for (h, name) in resp.headers.iter().zip(names) {
        let keep = match name {
            Name::Connection
            | Name::KeepAlive
            | Name::ProxyConnection
            | Name::Te
            | Name::Trailer
            | Name::TransferEncoding
            | Name::Upgrade => false,
            // Written again below, except for a HEAD or 304 answer where it describes the
            // representation, not this message (and 204 has none).
            Name::ContentLength => bodiless && code != 204,
            _ => listed.n == 0 || !listed.contains(h.name.as_bytes()),
        };
        if keep {
            date |= name == Name::Date;
            put_header(out, h);
        }
    }
    match framing {
        Framing::Length(n) => put_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    if close_client || framing == Framing::Close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !date {
        date::put(out);
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Response::Final {
        len,
        framing,
        backend_keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd() -> Forwarding {
        Forwarding::new(b"127.0.0.1", "for=127.0.0.1", false)
    }

    fn req(raw: &str) -> (Result<Request, RequestError>, String) {
        let mut out = Vec::new();
        let r = request(raw.as_bytes(), &fwd(), &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn request_is_rewritten() {
        let (r, out) = req(
            "GET /a?b HTTP/1.1\r\nHost: web.app.localhost:8080\r\nX-Forwarded-For: 6.6.6.6\r\n\
             Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
             Proxy-Connection: x\r\nAccept: application/json\r\nForwarded: for=evil\r\n\r\nrest",
        );
        let r = r.unwrap();
        assert_eq!(r.framing, Framing::Empty);
        assert!(r.json && !r.close && !r.head_method);
        assert_eq!(
            out,
            "GET /a?b HTTP/1.1\r\nHost: web.app.localhost:8080\r\nAccept: application/json\r\n\
             x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
             forwarded: for=127.0.0.1;host=\"web.app.localhost:8080\";proto=http\r\n\
             x-forwarded-host: web.app.localhost:8080\r\n\r\n"
        );
    }

    #[test]
    fn request_framing() {
        let (r, out) = req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(r.unwrap().framing, Framing::Length(5));
        assert!(out.contains("content-length: 5\r\n"), "{out}");
        let (r, out) = req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(r.unwrap().framing, Framing::Chunked);
        assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
        let (r, out) = req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.unwrap().framing, Framing::Empty);
        assert!(out.contains("content-length: 0\r\n"), "{out}");
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\nHost: h\n\n",
            "GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let (r, _) = req(raw);
            assert!(
                matches!(r, Err(RequestError::Malformed(_))),
                "{raw:?}: {r:?}"
            );
        }
        let (r, _) = req("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
        assert_eq!(r.unwrap_err(), RequestError::DuplicateHost);
    }

    #[test]
    fn left_to_hyper() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "CONNECT h:80 HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let (r, _) = req(raw);
            assert_eq!(r.unwrap_err(), RequestError::Fallback, "{raw:?}");
        }
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: h\r\n").0.unwrap_err(),
            RequestError::Partial
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            req(&format!("GET / HTTP/1.1\r\n{many}\r\n")).0.unwrap_err(),
            RequestError::TooManyHeaders
        );
    }

    fn resp(
        raw: &str,
        head: bool,
        close: bool,
    ) -> (Result<Option<Response>, ResponseError>, String) {
        let mut out = Vec::new();
        let r = response(raw.as_bytes(), head, close, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_date_listed_in_connection_is_replaced() {
        // Found by fuzz/fuzz_targets/router_head.rs: `Connection: Date` dropped the
        // backend's Date and the router, having seen one, added none.
        let (r, out) = resp(
            "HTTP/1.1 200 OK\r\nDate: x\r\nConnection: Date\r\nContent-Length: 0\r\n\r\n",
            false,
            false,
        );
        assert!(r.unwrap().is_some());
        assert!(!out.contains("Date: x"), "{out}");
        assert_eq!(out.matches("date: ").count(), 1, "{out}");
    }

    #[test]
    fn response_is_rewritten() {
        let (r, out) = resp(
            "HTTP/1.1 200 Fine\r\nDate: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nServer: s\r\n\r\n",
            false,
            false,
        );
        match r.unwrap().unwrap() {
            Response::Final {
                framing,
                backend_keep_alive,
                ..
            } => {
                assert_eq!(framing, Framing::Chunked);
                assert!(backend_keep_alive);
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(
            out,
            "HTTP/1.1 200 Fine\r\nDate: x\r\nServer: s\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        // HTTP/1.0 without a length: until close, and the client is told.
        let (r, out) = resp("HTTP/1.0 200 OK\r\nDate: x\r\n\r\n", false, false);
        assert!(matches!(
            r.unwrap().unwrap(),
            Response::Final {
                framing: Framing::Close,
                backend_keep_alive: false,
                ..
            }
        ));
        assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");
        // HEAD and 304 keep their Content-Length and have no body; 204 loses it.
        for (raw, head, has_cl) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, true),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                false,
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
                false,
                false,
            ),
        ] {
            let (r, out) = resp(raw, head, false);
            assert!(
                matches!(
                    r.unwrap().unwrap(),
                    Response::Final {
                        framing: Framing::Empty,
                        ..
                    }
                ),
                "{raw}"
            );
            assert_eq!(
                out.to_ascii_lowercase().contains("content-length"),
                has_cl,
                "{out}"
            );
            assert!(out.contains("date: "), "{out}");
        }
        let (r, _) = resp("HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false, false);
        assert!(matches!(
            r.unwrap().unwrap(),
            Response::Informational { .. }
        ));
        let (r, _) = resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", false, false);
        assert!(r.unwrap().is_none());
    }

    #[test]
    fn hostile_responses_are_refused() {
        for raw in [
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            let (r, _) = resp(raw, false, false);
            assert!(r.is_err(), "{raw:?}: {r:?}");
        }
    }
}
