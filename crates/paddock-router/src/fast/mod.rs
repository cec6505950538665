//! The HTTP/1.1 fast path for cleartext client connections: one task per client connection
//! reads a request head, routes it, and proxies the exchange over a pooled backend
//! connection itself, with httparse for both heads and no `HeaderMap`, no `Request`/
//! `Response` values and no hand-over to a connection task (see ARCHITECTURE.md, router).
//!
//! Owns: the client connection's request loop (pipelined requests are served one after the
//! other), the head-read timeout and size limit, the exchange with the backend (head, body
//! in its framing, response head, response body), backend connection reuse, and the choice
//! of what it leaves to the general (hyper) path: HTTP/1.0, upgrades (WebSocket, h2c),
//! `Expect`, `CONNECT` and non-origin-form targets. It hands a connection over only at a
//! request boundary, with the bytes it has read replayed.
//!
//! Never: panics or waits without bound on a client head; lets a body be taken as complete
//! when the backend stopped early (the client's connection is closed instead); puts a
//! backend connection back unless its exchange finished cleanly; answers for a backend
//! with anything but the router's own pages (the same ones as the general path).

mod chunked;
mod date;
pub mod fuzzing;
mod head;
mod pool;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Shared;
use crate::body::RouterBody;
use crate::pages;
use crate::proxy::{ConnInfo, Route, chain, dial, route, upstream_error};
use crate::table::{Endpoint, Entry};

use chunked::Decoder;
use head::{Forwarding, Framing, RequestError, ResponseError};

pub(crate) use pool::Idle;

/// Largest read from either side while a body streams.
const READ_CHUNK: usize = 32 * 1024;
/// Largest response head a backend may send.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Informational (1xx) responses skipped before the final one, at most.
const MAX_INFORMATIONAL: usize = 8;

/// The client-side limits (from `RouterConfig`).
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// Time allowed for each request head, counted from when the router starts waiting
    /// for it.
    pub(crate) head_timeout: Duration,
    /// Largest request head; larger gets 431.
    pub(crate) max_head: usize,
}

/// How a connection leaves the fast path.
pub(crate) enum Outcome {
    /// Served to the end (or cut off).
    Done,
    /// For the general path, at a request boundary: the bytes read and not yet served.
    Fallback(TcpStream, Vec<u8>),
}

/// Why an exchange with the backend failed.
#[derive(Debug, thiserror::Error)]
enum BackendError {
    #[error("connection closed before message completed")]
    Closed,
    #[error("connection error")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Head(#[from] ResponseError),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("more than {MAX_INFORMATIONAL} informational responses")]
    TooManyInformational,
}

/// Why an exchange could not complete.
#[derive(Debug)]
enum Failure {
    /// The backend failed; `received` says whether it sent any byte of a response.
    Backend { e: BackendError, received: bool },
    /// The client went away, or could not be written to.
    Client,
    /// The client's chunked body is malformed (answered 400).
    ClientChunk,
}

/// Which side a pump error came from.
enum PumpError {
    Read,
    Write,
    Chunk,
}

/// The connection's own buffers, reused from request to request.
struct Client {
    tcp: TcpStream,
    /// Bytes read from the client and not consumed yet (the next head, or body).
    input: Vec<u8>,
    /// The request head for the backend.
    head: Vec<u8>,
    /// What goes to the client next (a response head, a page), or to the backend (the head
    /// with the first body bytes).
    out: Vec<u8>,
}

/// A parsed response head and what it means for the rest of the exchange.
struct Final {
    framing: Framing,
    backend_keep_alive: bool,
    /// The request body was sent in full (a backend may answer before it is).
    request_done: bool,
}

/// Serve `tcp` (whose first bytes, `pre`, are already read) until it closes, or until a
/// request the general path must serve.
pub(crate) async fn serve(
    sh: &Shared,
    limits: Limits,
    tcp: TcpStream,
    pre: Vec<u8>,
    info: &ConnInfo,
) -> Outcome {
    let fwd = Forwarding::new(info.xff.as_bytes(), &info.forwarded_for, false);
    let mut c = Client {
        tcp,
        input: pre,
        head: Vec::with_capacity(1024),
        out: Vec::with_capacity(1024),
    };
    let mut backend_buf = Vec::new();
    loop {
        let req = match read_request(&mut c, &fwd, limits).await {
            Ok(r) => r,
            Err(Some(RequestError::Fallback)) => return Outcome::Fallback(c.tcp, c.input),
            Err(Some(RequestError::TooManyHeaders)) => {
                c.status(431, "Request Header Fields Too Large").await;
                return Outcome::Done;
            }
            Err(Some(RequestError::Malformed(why))) => {
                tracing::debug!(why, "router refused a request");
                c.status(400, "Bad Request").await;
                return Outcome::Done;
            }
            Err(Some(RequestError::DuplicateHost)) => {
                let page = pages::bad_host("The request has more than one Host header.");
                c.page(page, false, true).await;
                return Outcome::Done;
            }
            // The head grew past the limit (a 431 was sent), or the client closed or was
            // too slow.
            Err(Some(RequestError::Partial)) | Err(None) => return Outcome::Done,
        };
        let host = req.host.clone().map(|r| &c.input[r]);
        let keep = match route(sh, false, host, || req.json) {
            Route::Answer(page) => {
                c.input.drain(..req.len);
                c.answer(page, &req).await
            }
            Route::Forward(entry, idx) => {
                c.input.drain(..req.len);
                let ep = &entry.endpoints[idx];
                forward(sh, &mut c, &mut backend_buf, &req, &entry, ep).await
            }
        };
        if !keep {
            return Outcome::Done;
        }
        // Buffers that grew for a big head or body are not kept for the connection's life.
        if backend_buf.capacity() > 2 * READ_CHUNK {
            backend_buf = Vec::new();
        }
        if c.input.is_empty() && c.input.capacity() > 2 * READ_CHUNK {
            c.input = Vec::new();
        }
    }
}

/// True when `buf` may hold a complete head: it has an empty line after `from` (where
/// the previous look stopped). Spares re-parsing a growing head on every read.
fn has_blank_line(buf: &[u8], from: usize) -> bool {
    let mut at = from.saturating_sub(2);
    while let Some(i) = buf[at..].iter().position(|&b| b == b'\n') {
        let rest = &buf[at + i + 1..];
        if rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
            return true;
        }
        at += i + 1;
    }
    false
}

/// Read and parse the next request head into `c.head` (the head for the backend). `None`:
/// the client closed, was too slow, or sent a head past the limit (answered 431).
async fn read_request(
    c: &mut Client,
    fwd: &Forwarding,
    limits: Limits,
) -> Result<head::Request, Option<RequestError>> {
    let mut deadline = None;
    let mut looked = None;
    loop {
        // The first bytes are always parsed (garbage is refused at once, and a whole head
        // is the common case); after that, only once an empty line has come.
        let ready = match looked {
            None => !c.input.is_empty(),
            Some(from) => has_blank_line(&c.input, from),
        };
        if ready {
            match head::request(&c.input, fwd, &mut c.head) {
                Err(RequestError::Partial) => {}
                // One read can bring more than the limit: the head is measured, not the read.
                Ok(r) if r.len > limits.max_head => break,
                r => return r.map_err(Some),
            }
        }
        looked = (!c.input.is_empty()).then_some(c.input.len());
        if c.input.len() >= limits.max_head {
            break;
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + limits.head_timeout);
        c.input.reserve(4096);
        match tokio::time::timeout_at(deadline, c.tcp.read_buf(&mut c.input)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(None),
        }
    }
    c.status(431, "Request Header Fields Too Large").await;
    Err(None)
}

impl Client {
    /// Write `self.out`; false if the client cannot be written to.
    async fn flush(&mut self) -> bool {
        self.tcp.write_all(&self.out).await.is_ok()
    }

    /// A bodiless error status, then the connection is closed (as hyper does).
    async fn status(&mut self, code: u16, reason: &str) {
        self.out.clear();
        self.out
            .extend_from_slice(format!("HTTP/1.1 {code} {reason}\r\n").as_bytes());
        self.out
            .extend_from_slice(b"content-length: 0\r\nconnection: close\r\n");
        date::put(&mut self.out);
        self.out.extend_from_slice(b"\r\n");
        if self.flush().await {
            self.linger().await;
        }
    }

    /// Close after an error answer without losing it: closing a socket with unread input
    /// makes the kernel send a reset, which can discard the answer before the client reads
    /// it. So the write side is shut and what the client still sends is read and dropped,
    /// for a bounded time and amount (nginx's lingering close).
    async fn linger(&mut self) {
        const MAX: usize = 1 << 20;
        let _ = self.tcp.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 8192];
            let mut total = 0;
            while total < MAX {
                match self.tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }

    /// One of the router's own pages. True if written.
    async fn page(&mut self, resp: Response<RouterBody>, head_only: bool, close: bool) -> bool {
        encode_page(resp, head_only, close, &mut self.out);
        self.flush().await
    }

    /// One of the router's own pages in answer to `req`, whose body (if any) is not read:
    /// as it cannot be skipped safely, the connection is then closed, lingering so that
    /// the page is not lost to a reset. True if the connection stays open.
    async fn answer(&mut self, resp: Response<RouterBody>, req: &head::Request) -> bool {
        let unread = req.framing != Framing::Empty;
        let close = req.close || unread;
        if !self.page(resp, req.head_method, close).await {
            return false;
        }
        if unread {
            self.linger().await;
        }
        !close
    }
}

fn encode_page(resp: Response<RouterBody>, head_only: bool, close: bool, out: &mut Vec<u8>) {
    let (parts, mut body) = resp.into_parts();
    let body = match &mut body {
        RouterBody::Full(b) => b.take().unwrap_or_default(),
        RouterBody::Stream(..) => Bytes::new(),
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    date::put(out);
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
}

/// Forward one request whose head (for the backend) is in `c.out` and whose body, if any,
/// starts at `c.input`. True if the client connection stays open for the next request.
async fn forward(
    sh: &Shared,
    c: &mut Client,
    backend_buf: &mut Vec<u8>,
    req: &head::Request,
    entry: &Entry,
    ep: &Endpoint,
) -> bool {
    let key = &ep.authority;
    let mut fresh_only = false;
    let (mut backend, fin) = loop {
        let pooled = if fresh_only { None } else { sh.idle.take(key) };
        let reused = pooled.is_some();
        let mut backend = match pooled {
            Some(s) => s,
            None => match dial(sh, entry, ep).await {
                Ok(s) => s,
                Err(e) => return c.answer(upstream_error(entry, ep, &e), req).await,
            },
        };
        backend_buf.clear();
        match exchange(c, &mut backend, backend_buf, req).await {
            Ok(fin) => break (backend, fin),
            // A pooled connection the backend had closed under us: nothing was sent back,
            // and a request without a body whose method allows it is sent again, once, on
            // a new connection.
            Err(Failure::Backend {
                e: BackendError::Closed | BackendError::Io(_),
                received: false,
            }) if reused && req.retryable && req.framing == Framing::Empty => {
                fresh_only = true;
            }
            Err(Failure::Backend { e, .. }) => {
                tracing::debug!(run = %entry.route.name, endpoint = %ep.name, error = %chain(&e), "upstream failed");
                let page = pages::upstream_failed(&entry.route.name, &ep.name, ep.port, &chain(&e));
                return c.answer(page, req).await;
            }
            Err(Failure::ClientChunk) => {
                c.status(400, "Bad Request").await;
                return false;
            }
            Err(Failure::Client) => {
                return false;
            }
        }
    };
    let Ok(backend_clean) = respond(c, &mut backend, backend_buf, &fin).await else {
        return false;
    };
    if fin.backend_keep_alive && backend_clean && fin.request_done {
        sh.idle.put(key, backend);
    }
    fin.request_done && !req.close && fin.framing != Framing::Close
}

fn backend_io(e: io::Error, received: bool) -> Failure {
    Failure::Backend {
        e: BackendError::Io(e),
        received,
    }
}

/// Send the request (head, then body) and read the response head, which is rewritten into
/// `c.out` with the body bytes that came with it left at the start of `backend_buf`.
async fn exchange(
    c: &mut Client,
    backend: &mut TcpStream,
    backend_buf: &mut Vec<u8>,
    req: &head::Request,
) -> Result<Final, Failure> {
    let Client {
        tcp,
        input,
        head,
        out,
    } = c;
    let (mut cr, _) = tcp.split();
    let (mut br, mut bw) = backend.split();
    // The head, with as much of a sized body as is already here, in one write.
    let mut left = match req.framing {
        Framing::Length(n) => {
            let now = usize::try_from(n).map_or(input.len(), |n| n.min(input.len()));
            if now == 0 {
                bw.write_all(head).await.map_err(|e| backend_io(e, false))?;
            } else {
                out.clear();
                out.extend_from_slice(head);
                out.extend_from_slice(&input[..now]);
                input.drain(..now);
                bw.write_all(out).await.map_err(|e| backend_io(e, false))?;
            }
            n - now as u64
        }
        _ => {
            bw.write_all(head).await.map_err(|e| backend_io(e, false))?;
            0
        }
    };
    let has_body = left > 0 || req.framing == Framing::Chunked;
    if has_body {
        // The backend may answer before it has read the whole body (413, or a redirect):
        // the body is sent while its answer is awaited.
        let body = async {
            match req.framing {
                Framing::Chunked => pump_chunked(&mut cr, input, &mut bw, &mut Vec::new()).await,
                _ => pump_sized(&mut cr, input, &mut bw, &mut left).await,
            }
        };
        let no_watch = None::<(&mut tokio::net::tcp::ReadHalf<'_>, &mut Vec<u8>)>;
        let early = response_head(&mut br, backend_buf, no_watch, req.head_method, true, out);
        tokio::pin!(body, early);
        // An answer before the body is all sent ends the exchange: neither connection can
        // carry another request after it.
        let unfinished = |framing| Final {
            framing,
            backend_keep_alive: false,
            request_done: false,
        };
        tokio::select! {
            r = &mut body => match r {
                Ok(()) => {}
                Err(PumpError::Chunk) => return Err(Failure::ClientChunk),
                Err(PumpError::Read) => return Err(Failure::Client),
                // Perhaps the backend answered and closed: read what it said.
                Err(PumpError::Write) => return Ok(unfinished(early.await?.0)),
            },
            r = &mut early => return Ok(unfinished(r?.0)),
        }
    }
    let (framing, backend_keep_alive) = response_head(
        &mut br,
        backend_buf,
        Some((&mut cr, input)),
        req.head_method,
        req.close,
        out,
    )
    .await?;
    Ok(Final {
        framing,
        backend_keep_alive,
        request_done: true,
    })
}

/// Read the backend's final response head into `buf` and rewrite it into `out`; the
/// consumed head is removed from `buf`. With `client`, a client that closes meanwhile ends
/// the wait (bytes it pipelines are kept in its buffer).
async fn response_head<B, C>(
    backend: &mut B,
    buf: &mut Vec<u8>,
    mut client: Option<(&mut C, &mut Vec<u8>)>,
    head_request: bool,
    close_client: bool,
    out: &mut Vec<u8>,
) -> Result<(Framing, bool), Failure>
where
    B: AsyncRead + Unpin,
    C: AsyncRead + Unpin,
{
    let mut informational = 0;
    let mut looked = None;
    let mut received = false;
    let fail = |e: BackendError, received| Failure::Backend { e, received };
    loop {
        let ready = match looked {
            None => !buf.is_empty(),
            Some(from) => has_blank_line(buf, from),
        };
        if ready {
            match head::response(buf, head_request, close_client, out) {
                Ok(Some(head::Response::Final {
                    len,
                    framing,
                    backend_keep_alive,
                })) => {
                    buf.drain(..len);
                    return Ok((framing, backend_keep_alive));
                }
                Ok(Some(head::Response::Informational { len })) => {
                    buf.drain(..len);
                    informational += 1;
                    if informational > MAX_INFORMATIONAL {
                        return Err(fail(BackendError::TooManyInformational, true));
                    }
                    looked = None;
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(fail(e.into(), true)),
            }
        }
        looked = (!buf.is_empty()).then_some(buf.len());
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(fail(BackendError::HeadTooLarge, true));
        }
        buf.reserve(8192);
        let read = match &mut client {
            Some((cr, input)) if input.len() < READ_CHUNK => {
                input.reserve(4096);
                tokio::select! {
                    biased;
                    r = backend.read_buf(buf) => r,
                    r = cr.read_buf(&mut **input) => match r {
                        Ok(n) if n > 0 => continue,
                        _ => return Err(Failure::Client),
                    },
                }
            }
            _ => backend.read_buf(buf).await,
        };
        match read {
            Ok(0) => return Err(fail(BackendError::Closed, received)),
            Ok(_) => received = true,
            Err(e) => return Err(fail(BackendError::Io(e), received)),
        }
    }
}

/// Send the response (head in `c.out`, body per `fin.framing`, its first bytes in
/// `buf`) to the client. `Ok(clean)`: the body went out whole, and `clean` says the backend
/// sent nothing after it. `Err`: the client's connection must be closed.
async fn respond(
    c: &mut Client,
    backend: &mut TcpStream,
    buf: &mut Vec<u8>,
    fin: &Final,
) -> Result<bool, ()> {
    // The request head is sent: its buffer is free for re-encoded chunks.
    let Client {
        tcp,
        out,
        head: spare,
        ..
    } = c;
    match fin.framing {
        Framing::Empty => {
            tcp.write_all(out).await.map_err(drop)?;
            Ok(buf.is_empty())
        }
        Framing::Length(n) => {
            // Head and the body bytes already here in one write.
            let now = usize::try_from(n).map_or(buf.len(), |n| n.min(buf.len()));
            out.extend_from_slice(&buf[..now]);
            buf.drain(..now);
            tcp.write_all(out).await.map_err(drop)?;
            let mut left = n - now as u64;
            let clean = buf.is_empty();
            pump_sized(backend, buf, tcp, &mut left)
                .await
                .map_err(drop)?;
            Ok(clean && buf.is_empty())
        }
        Framing::Chunked => {
            tcp.write_all(out).await.map_err(drop)?;
            pump_chunked(backend, buf, tcp, spare).await.map_err(drop)?;
            Ok(buf.is_empty())
        }
        Framing::Close => {
            out.extend_from_slice(buf);
            buf.clear();
            tcp.write_all(out).await.map_err(drop)?;
            loop {
                buf.clear();
                buf.reserve(READ_CHUNK);
                match backend.read_buf(buf).await {
                    Ok(0) => break,
                    Ok(_) => tcp.write_all(buf).await.map_err(drop)?,
                    Err(_) => return Err(()),
                }
            }
            let _ = tcp.shutdown().await;
            Ok(false)
        }
    }
}

/// Copy `left` bytes from `r` (after those already in `buf`) to `w`. What `r` sends after
/// them stays in `buf`.
async fn pump_sized<R, W>(
    r: &mut R,
    buf: &mut Vec<u8>,
    w: &mut W,
    left: &mut u64,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while *left > 0 {
        if buf.is_empty() {
            buf.reserve(READ_CHUNK);
            match r.read_buf(buf).await {
                Ok(0) => return Err(PumpError::Read),
                Ok(_) => {}
                Err(_) => return Err(PumpError::Read),
            }
        }
        let n = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
        w.write_all(&buf[..n]).await.map_err(|_| PumpError::Write)?;
        buf.drain(..n);
        *left -= n as u64;
    }
    Ok(())
}

/// Decode a chunked body from `r` (after the bytes already in `buf`) and send it,
/// re-encoded, to `w`. What `r` sends after it stays in `buf`.
async fn pump_chunked<R, W>(
    r: &mut R,
    buf: &mut Vec<u8>,
    w: &mut W,
    out: &mut Vec<u8>,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut dec = Decoder::new();
    loop {
        out.clear();
        let used = dec.feed(buf, out).map_err(|_| PumpError::Chunk)?;
        buf.drain(..used);
        if !out.is_empty() {
            w.write_all(out).await.map_err(|_| PumpError::Write)?;
        }
        if dec.is_done() {
            return Ok(());
        }
        buf.reserve(READ_CHUNK);
        match r.read_buf(buf).await {
            Ok(0) => return Err(PumpError::Read),
            Ok(_) => {}
            Err(_) => return Err(PumpError::Read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_line_search_resumes() {
        assert!(!has_blank_line(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
        assert!(has_blank_line(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0));
        assert!(has_blank_line(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 25));
        assert!(has_blank_line(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 26));
        assert!(has_blank_line(b"GET / HTTP/1.1\nHost: a\n\n", 23));
        assert!(!has_blank_line(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 29));
    }
}
