//! One request: pick the route from the host, answer it or forward it.
//!
//! Owns: host → route resolution, header rewriting (hop-by-hop removal, `x-forwarded-*`,
//! `forwarded`), forwarding over the pooled HTTP/1.1 connections (see `pool`), and upgrades (WebSocket
//! and any other protocol) as a byte splice on a dedicated backend connection. Never
//! changes a body, and never answers for a backend with anything but the router's own
//! error pages.

use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::Shared;
use crate::body::RouterBody;
use crate::host::{Target, parse_host};
use crate::pages::{self, UrlBase};
use crate::pool::SendError;
use crate::table::{Endpoint, Entry, RouteState};

/// What the router knows about the client's connection.
pub(crate) struct ConnInfo {
    pub(crate) https: bool,
    /// `x-forwarded-for` value: the client's address.
    pub(crate) xff: HeaderValue,
    /// The `for=` part of `forwarded` (quoted for IPv6).
    pub(crate) forwarded_for: String,
}

impl ConnInfo {
    pub(crate) fn new(peer: IpAddr, https: bool) -> ConnInfo {
        let ip = peer.to_canonical().to_string();
        let forwarded_for = match peer.to_canonical() {
            IpAddr::V4(_) => format!("for={ip}"),
            IpAddr::V6(_) => format!("for=\"[{ip}]\""),
        };
        ConnInfo {
            https,
            xff: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_for,
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// Where a request goes, from its host alone.
pub(crate) enum Route {
    /// The router answers itself: an index, or a 400/404/503 page.
    Answer(Response<RouterBody>),
    /// Forward to endpoint `.1` of the run.
    Forward(Arc<Entry>, usize),
}

/// True for the bytes `HeaderValue::to_str` accepts: visible ASCII and tab.
fn is_text(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Route by `host` (the `Host` header, or the URI's authority). `json`: the client asked
/// for JSON (index pages only; called only for them). Shared by both paths.
pub(crate) fn route(
    sh: &Shared,
    https: bool,
    host: Option<&[u8]>,
    json: impl Fn() -> bool,
) -> Route {
    let Some(host) = host else {
        return Route::Answer(pages::bad_host("The request has no Host header."));
    };
    let host_str = match std::str::from_utf8(host) {
        Ok(s) if is_text(host) => s,
        _ => return Route::Answer(pages::bad_host("The Host header is not valid text.")),
    };
    let target = match parse_host(host_str) {
        Ok(t) => t,
        Err(e) => {
            return Route::Answer(pages::bad_host(&format!("Cannot route this request: {e}.")));
        }
    };
    let base = UrlBase {
        https,
        port: sh.port,
    };
    let table = sh.router.inner.routes.load();
    let (entry, idx) = match target {
        Target::Index => return Route::Answer(pages::index(&table, base, json())),
        Target::Run(name) => {
            let Some(e) = table.runs.get(&*name) else {
                return Route::Answer(pages::unknown_run(&table, base, &name));
            };
            if e.endpoints.len() != 1 {
                return Route::Answer(pages::run_index(e, base, json()));
            }
            (e.clone(), 0)
        }
        Target::Endpoint { run, endpoint } => {
            let Some(e) = table.runs.get(&*run) else {
                return Route::Answer(pages::unknown_run(&table, base, &run));
            };
            let Some(i) = e.endpoints.iter().position(|ep| *ep.name == *endpoint) else {
                return Route::Answer(pages::unknown_endpoint(e, base, &endpoint));
            };
            (e.clone(), i)
        }
    };
    if entry.route.state != RouteState::Running {
        return Route::Answer(pages::stopped(
            &entry.route.name,
            &entry.endpoints[idx].name,
        ));
    }
    Route::Forward(entry, idx)
}

pub(crate) async fn handle(
    sh: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RouterBody> {
    // HTTP/2 carries the host in :authority; an HTTP/1.1 request in absolute form too.
    let host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let json = || {
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"))
    };
    match route(
        sh,
        conn.https,
        host.as_ref().map(HeaderValue::as_bytes),
        json,
    ) {
        Route::Answer(r) => r,
        Route::Forward(entry, idx) => {
            let ep = &entry.endpoints[idx];
            // `route` accepted it, so there is a host.
            let host = host.unwrap_or(HeaderValue::from_static("localhost"));
            forward(sh, conn, req, &entry, ep, host).await
        }
    }
}

// The headers removed by name from every forwarded message (RFC 9110 §7.6.1), as bits of
// the mask `hop_by_hop` returns. `connection` and `upgrade` stay on upgrade requests;
// `http2-settings` is removed from requests only (see `forward`).
const H_CONNECTION: u8 = 1;
const H_UPGRADE: u8 = 1 << 1;
const H_TE: u8 = 1 << 2;
const H_TRAILER: u8 = 1 << 3;
const H_TRANSFER_ENCODING: u8 = 1 << 4;
const H_KEEP_ALIVE: u8 = 1 << 5;
const H_PROXY_CONNECTION: u8 = 1 << 6;
const H_HTTP2_SETTINGS: u8 = 1 << 7;

fn hop_by_hop_bit(n: &HeaderName) -> u8 {
    if n == header::CONNECTION {
        H_CONNECTION
    } else if n == header::UPGRADE {
        H_UPGRADE
    } else if n == header::TE {
        H_TE
    } else if n == header::TRAILER {
        H_TRAILER
    } else if n == header::TRANSFER_ENCODING {
        H_TRANSFER_ENCODING
    } else if n == KEEP_ALIVE {
        H_KEEP_ALIVE
    } else if n == PROXY_CONNECTION {
        H_PROXY_CONNECTION
    } else if n == HTTP2_SETTINGS {
        H_HTTP2_SETTINGS
    } else {
        0
    }
}

/// Which of those headers `h` has: one pass over the names, without hashing, so that
/// only the present ones cost a removal (most messages have none, or only `connection`).
fn hop_by_hop(h: &HeaderMap) -> u8 {
    h.keys().fold(0, |m, n| m | hop_by_hop_bit(n))
}

/// Remove hop-by-hop headers (RFC 9110 §7.6.1): those named in `connection` and the fixed
/// ones; keep `connection`/`upgrade` for upgrades. `found` is `hop_by_hop(h)`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool, found: u8) {
    if found & H_CONNECTION != 0 {
        // `keep-alive`, the usual token, is removed below anyway: no name to parse for it.
        let mut named: Vec<HeaderName> = Vec::new();
        for v in h.get_all(header::CONNECTION) {
            for t in v.to_str().unwrap_or("").split(',') {
                let t = t.trim();
                if t.eq_ignore_ascii_case("keep-alive") {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t.as_bytes())
                    && !(keep_upgrade && n == header::UPGRADE)
                {
                    named.push(n);
                }
            }
        }
        for n in named {
            h.remove(n);
        }
        if !keep_upgrade {
            h.remove(header::CONNECTION);
        }
    }
    let fixed = [
        (H_UPGRADE, &header::UPGRADE),
        (H_KEEP_ALIVE, &KEEP_ALIVE),
        (H_PROXY_CONNECTION, &PROXY_CONNECTION),
        (H_TE, &header::TE),
        (H_TRAILER, &header::TRAILER),
        (H_TRANSFER_ENCODING, &header::TRANSFER_ENCODING),
    ];
    for (bit, name) in fixed {
        if found & bit != 0 && !(keep_upgrade && bit == H_UPGRADE) {
            h.remove(name);
        }
    }
}

fn strip_response(h: &mut HeaderMap) {
    let found = hop_by_hop(h);
    strip_hop_by_hop(h, false, found);
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|u| !u.as_bytes().eq_ignore_ascii_case(b"h2c"))
}

async fn forward(
    sh: &Shared,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    entry: &Arc<Entry>,
    ep: &Endpoint,
    host: HeaderValue,
) -> Response<RouterBody> {
    let upgrade = is_upgrade(&req);
    // Answer in the client's HTTP version, whatever the backend spoke (python's
    // http.server answers HTTP/1.0).
    let client_version = req.version();
    {
        let h = req.headers_mut();
        let found = hop_by_hop(h);
        strip_hop_by_hop(h, upgrade, found);
        if found & H_HTTP2_SETTINGS != 0 {
            // An `Upgrade: h2c` that reaches here (a request with a body) is declined: RFC
            // 9110 lets a server ignore Upgrade, so the request is answered over HTTP/1.1.
            h.remove(&HTTP2_SETTINGS);
        }
        let proto = if conn.https { &HTTPS } else { &HTTP };
        // The router is the edge: client-sent forwarding headers are replaced, not extended.
        h.insert(X_FORWARDED_FOR.clone(), conn.xff.clone());
        h.insert(X_FORWARDED_PROTO.clone(), proto.clone());
        // `for=…;host="…";proto=…`, written straight into the value's buffer.
        let proto_name = proto.as_bytes();
        let mut fwd =
            Vec::with_capacity(conn.forwarded_for.len() + host.len() + proto_name.len() + 15);
        fwd.extend_from_slice(conn.forwarded_for.as_bytes());
        fwd.extend_from_slice(b";host=\"");
        fwd.extend_from_slice(host.as_bytes());
        fwd.extend_from_slice(b"\";proto=");
        fwd.extend_from_slice(proto_name);
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(fwd)) {
            h.insert(FORWARDED.clone(), v);
        }
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
        h.insert(header::HOST, host);
    }
    *req.version_mut() = Version::HTTP_11;
    // Origin form (`/path?query`) to the backend; most requests already are.
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
    if upgrade {
        return forward_upgrade(sh, req, entry, ep).await;
    }
    match sh
        .pool
        .send(&ep.authority, &entry.route.run_id, ep.port, req)
        .await
    {
        Ok((resp, checkin)) => {
            let mut resp = resp.map(|b| RouterBody::Stream(b, checkin));
            strip_response(resp.headers_mut());
            *resp.version_mut() = client_version;
            resp
        }
        Err(SendError::Dial(e)) => upstream_error(entry, ep, &e),
        Err(SendError::Http(e)) => upstream_error(entry, ep, &e),
    }
}

fn io_kind(e: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = x.source();
    }
    None
}

pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(x) = cur {
        s.push_str(": ");
        s.push_str(&x.to_string());
        cur = x.source();
    }
    s
}

pub(crate) fn upstream_error(
    entry: &Entry,
    ep: &Endpoint,
    e: &(dyn StdError + 'static),
) -> Response<RouterBody> {
    let run = &entry.route.name;
    match io_kind(e) {
        Some(io::ErrorKind::ConnectionRefused) => pages::not_listening(run, &ep.name, ep.port),
        Some(io::ErrorKind::NotFound) => pages::stopped(run, &ep.name),
        _ => {
            tracing::debug!(run = %run, endpoint = %ep.name, error = %chain(e), "upstream failed");
            pages::upstream_failed(run, &ep.name, ep.port, &chain(e))
        }
    }
}

/// A new connection to endpoint `ep` inside `entry`'s run, through the router's dialer.
pub(crate) async fn dial(
    sh: &Shared,
    entry: &Entry,
    ep: &Endpoint,
) -> io::Result<tokio::net::TcpStream> {
    sh.router
        .inner
        .dialer
        .dial(&entry.route.run_id, ep.port)
        .await
}

async fn forward_upgrade(
    sh: &Shared,
    mut req: Request<Incoming>,
    entry: &Entry,
    ep: &Endpoint,
) -> Response<RouterBody> {
    let from_client = hyper::upgrade::on(&mut req);
    let stream = match dial(sh, entry, ep).await {
        Ok(s) => s,
        Err(e) => return upstream_error(entry, ep, &e),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(x) => x,
            Err(e) => return upstream_error(entry, ep, &e),
        };
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return upstream_error(entry, ep, &e),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let mut resp = resp.map(|b| RouterBody::Stream(b, None));
        strip_response(resp.headers_mut());
        return resp;
    }
    let from_backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (Ok(c), Ok(b)) = tokio::join!(from_client, from_backend) else {
            return;
        };
        let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
    });
    resp.map(|_| RouterBody::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut v: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn hop_by_hop_headers_go_and_others_stay() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        let found = hop_by_hop(&h);
        strip_hop_by_hop(&mut h, false, found);
        assert_eq!(names(&h), ["accept"]);
    }

    #[test]
    fn upgrades_keep_connection_and_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade, x-secret"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("sec-websocket-key", "k"),
        ]);
        let found = hop_by_hop(&h);
        strip_hop_by_hop(&mut h, true, found);
        assert_eq!(names(&h), ["connection", "sec-websocket-key", "upgrade"]);
    }

    #[test]
    fn nothing_to_strip() {
        let mut h = map(&[("host", "web.app.localhost"), ("accept", "*/*")]);
        assert_eq!(hop_by_hop(&h), 0);
        strip_hop_by_hop(&mut h, false, 0);
        assert_eq!(names(&h), ["accept", "host"]);
        assert_eq!(
            hop_by_hop(&map(&[("http2-settings", "AAA")])),
            H_HTTP2_SETTINGS
        );
    }
}
