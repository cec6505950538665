//! The proxy of one run, as layers: accept → detect TLS/HTTP → name the destination →
//! policy → inject → forward → log.
//!
//! - [`Proxy::serve_explicit`]: the HTTP/1.1 proxy (absolute-form requests and CONNECT).
//! - [`Proxy::serve_transparent`]: connections captured by the AnyIP route; the original
//!   destination comes from `getsockname`, the name from SNI, Host, or the DNS stub's map.
//! - [`Proxy::handle_stream`]: what both end in: a TLS ClientHello is intercepted (or passed
//!   through by SNI for passthrough hosts), anything else is served as plain HTTP.
//!
//! The run is whoever's listener accepted: there is no token. Never: dials an address the
//! sandbox chose for a named host, forwards a request whose Host differs from the TLS name
//! or the proxy request's URL (domain fronting), lets a request through without a policy
//! decision, or refuses anything without a record of it. A refusal that cannot be answered
//! with a 403 (the TLS name is wrong, a passthrough host is denied, the ClientHello is
//! unreadable) is a TCP reset ([`Reset`]), never a silent close.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use paddock_ca::{CertAuthority, LeafResolver};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::dns::SyntheticMap;
use crate::error::UpstreamError;
use crate::hello;
use crate::inject::{BodyRewriter, Dest, Injector};
use crate::policy::{Decision, Policy, Query, RuleRef, denial_hint};
use crate::record::{NetRecord, RecordKind, Recorder};
use crate::upstream::Upstream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type the proxy moves around.
pub type Body = BoxBody<Bytes, BoxError>;

/// Largest request body with placeholders to replace that is rewritten whole (and sent
/// with its new Content-Length); larger or unannounced ones stream, chunked.
const SUBSTITUTED_BODY_BUFFER: u64 = 1 << 20;

/// Header on every response paddock itself makes to refuse a request.
pub const BLOCKED_HEADER: &str = "x-paddock-blocked";

/// Everything one run's proxy needs.
pub struct Proxy {
    pub policy: Arc<Policy>,
    pub map: Arc<SyntheticMap>,
    pub ca: Arc<CertAuthority>,
    pub upstream: Arc<Upstream>,
    pub injector: Arc<dyn Injector>,
    pub recorder: Recorder,
    server_tls: Arc<ServerConfig>,
}

fn server_config(resolver: LeafResolver) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            // The ring provider supports the default versions; this cannot fail.
            unreachable_versions()
        })
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(c)
}

fn unreachable_versions() -> rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier> {
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
}

/// Where a stream is headed, as far as the listener knows.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name the client asked for before any bytes: the CONNECT authority or the DNS
    /// stub's name for a synthetic address. `None` for a literal IP.
    pub name: Option<String>,
    /// The original destination address (transparent) if any.
    pub addr: Option<IpAddr>,
    pub port: u16,
}

impl Proxy {
    pub fn new(
        policy: Arc<Policy>,
        map: Arc<SyntheticMap>,
        ca: Arc<CertAuthority>,
        upstream: Arc<Upstream>,
        injector: Arc<dyn Injector>,
        recorder: Recorder,
    ) -> Arc<Self> {
        let server_tls = server_config(LeafResolver::new(ca.clone()));
        Arc::new(Proxy {
            policy,
            map,
            ca,
            upstream,
            injector,
            recorder,
            server_tls,
        })
    }

    /// Accept loop of the explicit proxy.
    pub async fn serve_explicit(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let pool = Pool::default();
                let svc = service_fn(move |req| {
                    let me = me.clone();
                    let pool = pool.clone();
                    async move { Ok::<_, Infallible>(me.explicit_request(req, pool).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }

    async fn explicit_request(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        pool: Pool,
    ) -> Response<Body> {
        if req.method() == Method::CONNECT {
            let Some(auth) = req.uri().authority().cloned() else {
                let what = req.uri().to_string();
                self.refuse_request(
                    &what,
                    None,
                    "CONNECT",
                    None,
                    "CONNECT without host:port",
                    StatusCode::BAD_REQUEST,
                );
                return plain(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
            };
            let host = auth.host().trim_matches(['[', ']']).to_ascii_lowercase();
            let port = auth.port_u16().unwrap_or(443);
            // A synthetic address the client got from the stub stands for its name.
            let host = match host.parse::<std::net::Ipv4Addr>() {
                Ok(v4) if crate::dns::is_synthetic(v4) => self.map.name_of(v4).unwrap_or(host),
                _ => host,
            };
            let q = Query::conn(&host, port);
            let d = self.policy.decide(&q);
            if !d.allowed {
                self.record_refusal(&host, Some(port), Some("CONNECT"), d.clone(), None);
                return blocked(&q, &d);
            }
            let me = self.clone();
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let target = Target {
                        addr: host.parse().ok(),
                        name: (host.parse::<IpAddr>().is_err()).then_some(host),
                        port,
                    };
                    me.handle_stream(TokioIo::new(up), target).await;
                }
            });
            return Response::new(empty());
        }
        // Absolute-form: `GET http://host[:port]/path`.
        let uri = req.uri().clone();
        let method = req.method().as_str().to_string();
        let path = uri.path_and_query().map(|p| p.as_str().to_string());
        let uri_host = uri
            .authority()
            .map(|a| a.host().trim_matches(['[', ']']).to_ascii_lowercase());
        if uri.scheme_str() != Some("http") {
            let why = match uri.scheme_str() {
                Some(s) => format!("a proxy request for a {s}: URL (only http:// and CONNECT)"),
                None => "a proxy request without an absolute http:// URL".into(),
            };
            let host = uri_host.clone().unwrap_or_default();
            self.refuse_request(
                &host,
                uri.port_u16(),
                &method,
                path.as_deref(),
                &why,
                StatusCode::BAD_REQUEST,
            );
            drain(req.into_body()).await;
            return plain(
                StatusCode::BAD_REQUEST,
                "paddock's proxy takes absolute http:// URLs and CONNECT\n",
            );
        }
        let (Some(auth), Some(host)) = (uri.authority(), uri_host) else {
            self.refuse_request(
                "",
                None,
                &method,
                path.as_deref(),
                "a proxy request URL without a host",
                StatusCode::BAD_REQUEST,
            );
            drain(req.into_body()).await;
            return plain(StatusCode::BAD_REQUEST, "no host in the request URL\n");
        };
        let port = auth.port_u16().unwrap_or(80);
        // The URL names the host the policy decides on; a Host header naming another one
        // would be forwarded (and obeyed by a virtual-hosting upstream): domain fronting.
        if let Some(h) = req.headers().get(header::HOST) {
            let named = h
                .to_str()
                .ok()
                .and_then(|v| v.parse::<http::uri::Authority>().ok())
                .map(|a| {
                    (
                        a.host()
                            .trim_matches(['[', ']'])
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                        a.port_u16(),
                    )
                });
            let same = named.as_ref().is_some_and(|(n, p)| {
                *n == host.trim_end_matches('.') && p.is_none_or(|p| p == port)
            });
            if !same {
                let shown = named
                    .map(|(n, p)| p.map_or(n.clone(), |p| format!("{n}:{p}")))
                    .unwrap_or_else(|| "(unreadable)".into());
                let d = Decision::builtin_deny(format!(
                    "domain fronting: Host {shown} on a proxy request for {host}"
                ));
                let p = path.clone().unwrap_or_else(|| "/".into());
                self.record_refusal(&host, Some(port), Some(&method), d.clone(), Some(&p));
                drain(req.into_body()).await;
                return blocked(&Query::request(&host, port, &method, &p), &d);
            }
        }
        let ctx = Arc::new(ConnCtx {
            tls_name: None,
            hint: Some(host),
            port,
            pool,
            requests: AtomicU64::new(0),
        });
        self.forward(&ctx, req).await
    }

    /// Accept loop of a transparent listener.
    pub async fn serve_transparent(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let Ok(local) = tcp.local_addr() else { return };
                let ip = match local.ip() {
                    IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .map(IpAddr::V4)
                        .unwrap_or(IpAddr::V6(v6)),
                    v4 => v4,
                };
                let name = match ip {
                    IpAddr::V4(v4) if crate::dns::is_synthetic(v4) => me.map.name_of(v4),
                    _ => None,
                };
                let target = Target {
                    name,
                    addr: Some(ip),
                    port: local.port(),
                };
                me.handle_stream(tcp, target).await;
            });
        }
    }

    /// Detect TLS or HTTP on `io` and serve it.
    pub async fn handle_stream<S>(self: Arc<Self>, mut io: S, target: Target)
    where
        S: AsyncRead + AsyncWrite + Reset + Unpin + Send + 'static,
    {
        let mut first = [0u8; 1];
        let n = match tokio::time::timeout(std::time::Duration::from_secs(30), io.read(&mut first))
            .await
        {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if n == 0 {
            return;
        }
        let mut buf = vec![first[0]];
        if first[0] == 0x16 {
            let hello = match hello::read_client_hello(&mut io, &mut buf).await {
                Ok(Some(h)) => h,
                _ => {
                    self.refuse_conn(&target, "unreadable TLS ClientHello");
                    io.reset();
                    return;
                }
            };
            let io = Rewind::new(buf, io);
            self.tls(io, target, hello).await;
        } else {
            let io = Rewind::new(buf, io);
            let ctx = Arc::new(ConnCtx {
                tls_name: None,
                hint: target.name.clone().or(target.addr.map(|a| a.to_string())),
                port: target.port,
                pool: Pool::default(),
                requests: AtomicU64::new(0),
            });
            self.serve_http(io, ctx).await;
        }
    }

    fn refuse_conn(&self, target: &Target, why: &str) {
        let host = target
            .name
            .clone()
            .or(target.addr.map(|a| a.to_string()))
            .unwrap_or_default();
        self.record_refusal(
            &host,
            Some(target.port),
            None,
            Decision::builtin_deny(why),
            None,
        );
    }

    async fn tls<S>(self: Arc<Self>, io: Rewind<S>, target: Target, hello: hello::Hello)
    where
        S: AsyncRead + AsyncWrite + Reset + Unpin + Send + 'static,
    {
        // An IP literal in SNI is not allowed by RFC 6066 (and rustls ignores it): treat it
        // as no SNI.
        let mut hello = hello;
        hello.sni = hello.sni.filter(|s| s.parse::<IpAddr>().is_err());
        // The name the connection is for: SNI, and it must agree with what the client
        // asked for before (CONNECT authority / DNS name of the synthetic address).
        let name = match (&hello.sni, &target.name) {
            (Some(sni), Some(n)) if !sni.eq_ignore_ascii_case(n) => {
                self.refuse_conn(
                    &target,
                    &format!("domain fronting: TLS name {sni} on a connection for {n}"),
                );
                io.reset();
                return;
            }
            (Some(sni), _) => sni.clone(),
            (None, Some(n)) => n.clone(),
            (None, None) => match target.addr {
                Some(a) => a.to_string(),
                None => {
                    self.refuse_conn(&target, "a TLS connection without any name or address");
                    io.reset();
                    return;
                }
            },
        };
        if self.policy.is_passthrough(&name) {
            self.passthrough(io, name, target.port).await;
            return;
        }
        let cfg = if hello.sni.is_some() {
            self.server_tls.clone()
        } else {
            server_config(LeafResolver::with_fallback(self.ca.clone(), name.clone()))
        };
        let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(io);
        let tls = match tokio::time::timeout(std::time::Duration::from_secs(30), accept)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("handshake timed out")))
        {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(host = %name, error = %e, "client TLS handshake failed");
                let mut r = NetRecord::new(
                    RecordKind::Connection,
                    name.clone(),
                    Decision::builtin_deny(
                        "client TLS handshake failed (does the client trust paddock's CA?)",
                    ),
                );
                r.port = Some(target.port);
                r.detail = Some(e.to_string());
                r.finish_now();
                self.recorder.emit(r);
                return;
            }
        };
        let ctx = Arc::new(ConnCtx {
            tls_name: Some(name),
            hint: None,
            port: target.port,
            pool: Pool::default(),
            requests: AtomicU64::new(0),
        });
        self.serve_http(tls, ctx).await;
    }

    async fn passthrough<S>(self: Arc<Self>, io: Rewind<S>, name: String, port: u16)
    where
        S: AsyncRead + AsyncWrite + Reset + Unpin + Send + 'static,
    {
        let q = Query::conn(&name, port);
        let d = self.policy.decide(&q);
        let mut rec = NetRecord::new(RecordKind::Passthrough, name.clone(), d.clone());
        rec.port = Some(port);
        if !d.allowed {
            self.recorder.emit(rec);
            io.reset();
            return;
        }
        match self.upstream.connect_tcp(&name, port, &self.policy).await {
            Ok(up) => {
                // Counted on both sides: a client that resets the connection after reading
                // its answer (common) ends the splice in an error, yet the bytes moved.
                let (mut client, mut up) = (Counted::new(io), Counted::new(up));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut up).await {
                    tracing::debug!(host = %name, error = %e, "passthrough splice ended");
                }
                rec.bytes_up = client.read;
                rec.bytes_down = up.read;
            }
            Err(e) => {
                if matches!(e, UpstreamError::Private { .. }) {
                    rec.decision = Decision::builtin_deny("private upstream address");
                }
                rec.detail = Some(e.to_string());
            }
        }
        rec.finish_now();
        self.recorder.emit(rec);
    }

    async fn serve_http<S>(self: Arc<Self>, io: S, ctx: Arc<ConnCtx>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let me = self.clone();
        let conn = ctx.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let me = me.clone();
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(me.forward(&ctx, req).await) }
        });
        let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .await;
        // Bytes that are not HTTP (nor TLS) on a captured port or a tunnel: refused (the
        // connection is closed), and on the record.
        if let Err(e) = served
            && conn.requests.load(Ordering::Relaxed) == 0
            && e.downcast_ref::<hyper::Error>()
                .is_some_and(|e| e.is_parse())
        {
            let host = conn
                .tls_name
                .clone()
                .or(conn.hint.clone())
                .unwrap_or_default();
            let mut r = NetRecord::new(
                RecordKind::Connection,
                host,
                Decision::builtin_deny("not HTTP: the proxy forwards only HTTP and TLS"),
            );
            r.port = Some(conn.port);
            r.detail = Some(e.to_string());
            r.finish_now();
            self.recorder.emit(r);
        }
    }

    fn record_refusal(
        &self,
        host: &str,
        port: Option<u16>,
        method: Option<&str>,
        d: Decision,
        path: Option<&str>,
    ) {
        let mut r = NetRecord::new(
            if method.is_some() {
                RecordKind::Http
            } else {
                RecordKind::Connection
            },
            host,
            d,
        );
        r.port = port;
        r.method = method.map(str::to_string);
        r.path = path.map(str::to_string);
        r.status = method.map(|_| 403);
        self.recorder.emit(r);
    }

    /// Records a request refused before any policy question could be asked (malformed
    /// for a proxy), answered with `status`.
    fn refuse_request(
        &self,
        host: &str,
        port: Option<u16>,
        method: &str,
        path: Option<&str>,
        why: &str,
        status: StatusCode,
    ) {
        let mut r = NetRecord::new(RecordKind::Http, host, Decision::builtin_deny(why));
        r.port = port;
        r.method = Some(method.to_string());
        r.path = path.map(str::to_string);
        r.status = Some(status.as_u16());
        self.recorder.emit(r);
    }

    /// One request: name check, policy, injection, forward, record.
    async fn forward(&self, ctx: &Arc<ConnCtx>, mut req: Request<Incoming>) -> Response<Body> {
        let t0 = Instant::now();
        ctx.requests.fetch_add(1, Ordering::Relaxed);
        // The host the request names.
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
        let req_host = authority.as_deref().map(|a| {
            let h = match a.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
                _ => a,
            };
            h.trim_matches(['[', ']'])
                .trim_end_matches('.')
                .to_ascii_lowercase()
        });
        let method = req.method().as_str().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let host = match (&ctx.tls_name, req_host, &ctx.hint) {
            (Some(tls), Some(h), _) if *tls != h => {
                let d = Decision::builtin_deny(format!(
                    "domain fronting: Host {h} on a TLS connection for {tls}"
                ));
                self.record_refusal(&h, Some(ctx.port), Some(&method), d.clone(), Some(&path));
                drain(req.into_body()).await;
                return blocked(&Query::request(&h, ctx.port, &method, &path), &d);
            }
            (Some(tls), _, _) => tls.clone(),
            (None, Some(h), Some(hint)) if hint.parse::<IpAddr>().is_err() && *hint != h => {
                let d = Decision::builtin_deny(format!(
                    "domain fronting: Host {h} on a connection for {hint}"
                ));
                self.record_refusal(&h, Some(ctx.port), Some(&method), d.clone(), Some(&path));
                drain(req.into_body()).await;
                return blocked(&Query::request(&h, ctx.port, &method, &path), &d);
            }
            (None, Some(h), _) => h,
            (None, None, Some(hint)) => hint.clone(),
            (None, None, None) => {
                self.refuse_request(
                    "",
                    Some(ctx.port),
                    &method,
                    Some(&path),
                    "a request without a Host header on a connection to no known name",
                    StatusCode::BAD_REQUEST,
                );
                drain(req.into_body()).await;
                return plain(StatusCode::BAD_REQUEST, "no Host header\n");
            }
        };
        let port = ctx.port;
        let q = Query::request(&host, port, &method, &path);
        let d = self.policy.decide(&q);
        if !d.allowed {
            self.record_refusal(&host, Some(port), Some(&method), d.clone(), Some(&path));
            drain(req.into_body()).await;
            return blocked(&q, &d);
        }
        let https = ctx.tls_name.is_some();
        let upgrade =
            req.headers().contains_key(header::UPGRADE) && req.version() == http::Version::HTTP_11;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        let dest = Dest {
            host: &host,
            port,
            tls: https,
        };
        let mut body: Body = body.map_err(box_hyper_error).boxed();
        if https && client_upgrade.is_none() && self.injector.answers(dest, &parts) {
            let collected = read_bounded(body, crate::inject::ANSWER_BODY_LIMIT).await;
            let bytes = match collected {
                Ok(b) => b,
                Err(e) => {
                    let mut rec = NetRecord::new(RecordKind::Http, host.clone(), d);
                    rec.method = Some(method.clone());
                    rec.port = Some(port);
                    rec.path = Some(path.clone());
                    rec.status = Some(413);
                    rec.detail = Some(format!("reading the request body: {e}"));
                    rec.finish(t0);
                    self.recorder.emit(rec);
                    return plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "paddock: the request body is too large\n",
                    );
                }
            };
            if let Some((status, content_type, answer)) = self.injector.answer(dest, &parts, &bytes)
            {
                let mut rec = NetRecord::new(RecordKind::Http, host.clone(), d);
                rec.method = Some(method.clone());
                rec.port = Some(port);
                rec.path = Some(path.clone());
                rec.status = Some(status);
                rec.bytes_up = bytes.len() as u64;
                rec.bytes_down = answer.len() as u64;
                rec.detail = Some("answered by paddock (login refresh: placeholders)".into());
                rec.finish(t0);
                self.recorder.emit(rec);
                let mut r = Response::new(
                    Full::new(Bytes::from(answer))
                        .map_err(|e: Infallible| match e {})
                        .boxed(),
                );
                *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                return r;
            }
            body = Full::new(bytes).map_err(|e: Infallible| match e {}).boxed();
        }
        let uses = self.injector.on_request(dest, &mut parts);
        let grants: Vec<String> = uses.iter().map(|u| u.grant.clone()).collect();
        if !grants.is_empty() {
            // On the record (for the daemon: on the bus, its audit entry queued) before
            // the credential leaves.
            let mut used = NetRecord::new(RecordKind::GrantUse, host.clone(), d.clone());
            used.method = Some(method.clone());
            used.port = Some(port);
            used.path = Some(path.clone());
            used.grants = grants.clone();
            self.recorder.emit_published(used).await;
        }
        strip_hop_by_hop(&mut parts.headers, upgrade);
        let mut rec = NetRecord::new(RecordKind::Http, host.clone(), d);
        rec.method = Some(method.clone());
        rec.port = Some(port);
        rec.path = Some(path.clone());
        rec.grants = grants;
        let up_count = Arc::new(AtomicU64::new(0));
        let req_body = Tracked::new(
            body,
            self.injector.request_body(dest, &parts.headers, &uses),
            up_count.clone(),
            None,
        );
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let req_body = if !req_body.rewrites {
            req_body.boxed()
        } else if let Some(n) = declared.filter(|n| *n <= SUBSTITUTED_BODY_BUFFER)
            && n > 0
        {
            // A body of announced length whose placeholders are replaced: its length
            // changes. Rewritten whole (bounded), so that it goes up with its new
            // Content-Length: not every upstream takes a chunked request.
            match req_body.collect().await {
                Ok(c) => {
                    let b = c.to_bytes();
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                    Full::new(b).map_err(|e: Infallible| match e {}).boxed()
                }
                Err(e) => {
                    rec.status = Some(400);
                    rec.detail = Some(format!("reading the request body: {e}"));
                    rec.bytes_up = up_count.load(Ordering::Relaxed);
                    rec.finish(t0);
                    self.recorder.emit(rec);
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "paddock: the request body could not be read\n",
                    );
                }
            }
        } else {
            parts.headers.remove(header::CONTENT_LENGTH);
            req_body.boxed()
        };
        let authority = if (https && port == 443) || (!https && port == 80) {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        if (!parts.headers.contains_key(header::HOST) || ctx.tls_name.is_some())
            && let Ok(v) = HeaderValue::from_str(&authority)
        {
            parts.headers.insert(header::HOST, v);
        }
        let upstream_req_parts = (parts, req_body);

        let result = if let Some(client_up) = client_upgrade {
            self.forward_upgrade(&host, port, https, upstream_req_parts, client_up)
                .await
        } else {
            self.send(ctx, &host, port, https, &authority, upstream_req_parts)
                .await
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let (status, blocked_private) = match &e {
                    UpstreamError::Private { .. } => (StatusCode::FORBIDDEN, true),
                    _ => (StatusCode::BAD_GATEWAY, false),
                };
                rec.status = Some(status.as_u16());
                rec.detail = Some(e.to_string());
                if blocked_private {
                    rec.decision = Decision::builtin_deny("private upstream address");
                }
                rec.bytes_up = up_count.load(Ordering::Relaxed);
                rec.finish(t0);
                self.recorder.emit(rec);
                let mut r = plain(status, &format!("paddock: {e}\n"));
                if blocked_private {
                    r.headers_mut().insert(
                        HeaderName::from_static(BLOCKED_HEADER),
                        HeaderValue::from_static("private-address"),
                    );
                }
                return r;
            }
        };
        let (mut rparts, rbody) = resp.into_parts();
        strip_hop_by_hop(
            &mut rparts.headers,
            rparts.status == StatusCode::SWITCHING_PROTOCOLS,
        );
        self.injector.on_response(dest, &uses, &mut rparts);
        let scrub = self.injector.response_body(dest, &uses);
        if scrub.is_some() {
            rparts.headers.remove(header::CONTENT_LENGTH);
        }
        rec.status = Some(rparts.status.as_u16());
        let recorder = self.recorder.clone();
        let down = Arc::new(AtomicU64::new(0));
        let down2 = down.clone();
        let done: Box<dyn FnOnce() + Send> = Box::new(move || {
            rec.bytes_up = up_count.load(Ordering::Relaxed);
            rec.bytes_down = down2.load(Ordering::Relaxed);
            rec.finish(t0);
            recorder.emit(rec);
        });
        let body = Tracked::new(rbody, scrub, down, Some(done));
        Response::from_parts(rparts, body.boxed())
    }

    /// Send over a pooled upstream connection (h2 when negotiated, else HTTP/1.1).
    async fn send(
        &self,
        ctx: &ConnCtx,
        host: &str,
        port: u16,
        https: bool,
        authority: &str,
        (mut parts, body): (http::request::Parts, Body),
    ) -> Result<Response<Body>, UpstreamError> {
        let key = (host.to_string(), port);
        let sender = {
            let mut pool = ctx.pool.lock().unwrap_or_else(|e| e.into_inner());
            let list = pool.entry(key.clone()).or_default();
            list.retain(|s| !s.is_closed());
            match list.iter().position(|s| s.is_ready()) {
                Some(i) => match &list[i] {
                    Sender::H2(s) => Some(Sender::H2(s.clone())),
                    Sender::H1(_) => Some(list.swap_remove(i)),
                },
                None => None,
            }
        };
        let mut sender = match sender {
            Some(s) => s,
            None => self.connect(host, port, https).await?,
        };
        let scheme = if https { "https" } else { "http" };
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        parts.uri = match &sender {
            Sender::H2(_) => Uri::try_from(format!("{scheme}://{authority}{pq}")),
            Sender::H1(_) => Uri::try_from(pq),
        }
        .unwrap_or_default();
        if matches!(sender, Sender::H2(_)) {
            parts.version = http::Version::HTTP_2;
            parts.headers.remove(header::HOST);
        } else {
            parts.version = http::Version::HTTP_11;
        }
        let req = Request::from_parts(parts, body);
        let fut = match &mut sender {
            Sender::H1(s) => boxed(s.send_request(req)),
            Sender::H2(s) => boxed(s.send_request(req)),
        };
        // Back into the pool (an h1 sender becomes ready again once its response ends).
        {
            let mut pool = ctx.pool.lock().unwrap_or_else(|e| e.into_inner());
            let list = pool.entry(key).or_default();
            if list.len() < 8 {
                list.push(sender);
            }
        }
        let resp = fut.await.map_err(|source| UpstreamError::Http {
            host: host.into(),
            source,
        })?;
        Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
    }

    async fn connect(&self, host: &str, port: u16, https: bool) -> Result<Sender, UpstreamError> {
        let herr = |source| UpstreamError::Http {
            host: host.into(),
            source,
        };
        if https {
            let tls = self
                .upstream
                .connect_tls(host, port, &self.policy, false)
                .await?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            if h2 {
                let (s, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake(TokioIo::new(tls))
                    .await
                    .map_err(herr)?;
                tokio::spawn(conn);
                Ok(Sender::H2(s))
            } else {
                let (s, conn) = hyper::client::conn::http1::Builder::new()
                    .handshake(TokioIo::new(tls))
                    .await
                    .map_err(herr)?;
                tokio::spawn(conn);
                Ok(Sender::H1(s))
            }
        } else {
            let tcp = self.upstream.connect_tcp(host, port, &self.policy).await?;
            let (s, conn) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(tcp))
                .await
                .map_err(herr)?;
            tokio::spawn(conn);
            Ok(Sender::H1(s))
        }
    }

    /// An HTTP/1.1 upgrade (WebSocket): its own upstream connection; on 101 the two
    /// upgraded streams are spliced.
    async fn forward_upgrade(
        &self,
        host: &str,
        port: u16,
        https: bool,
        (mut parts, body): (http::request::Parts, Body),
        client_up: hyper::upgrade::OnUpgrade,
    ) -> Result<Response<Body>, UpstreamError> {
        let herr = |source| UpstreamError::Http {
            host: host.into(),
            source,
        };
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        parts.uri = Uri::try_from(pq).unwrap_or_default();
        parts.version = http::Version::HTTP_11;
        let req = Request::from_parts(parts, body);
        let mut resp = if https {
            let tls = self
                .upstream
                .connect_tls(host, port, &self.policy, true)
                .await?;
            let (mut s, conn) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(tls))
                .await
                .map_err(herr)?;
            tokio::spawn(conn.with_upgrades());
            s.send_request(req).await.map_err(herr)?
        } else {
            let tcp = self.upstream.connect_tcp(host, port, &self.policy).await?;
            let (mut s, conn) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(tcp))
                .await
                .map_err(herr)?;
            tokio::spawn(conn.with_upgrades());
            s.send_request(req).await.map_err(herr)?
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = (client_up.await, up.await) {
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b))
                            .await;
                }
            });
        }
        Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
    }
}

type RespFuture =
    Pin<Box<dyn std::future::Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

fn boxed(
    f: impl std::future::Future<Output = Result<Response<Incoming>, hyper::Error>> + Send + 'static,
) -> RespFuture {
    Box::pin(f)
}

/// An upstream connection.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Sender {
    fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(s) => s.is_ready(),
        }
    }
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// Upstream connections of one client connection, by (host, port).
type Pool = Arc<Mutex<HashMap<(String, u16), Vec<Sender>>>>;

/// Per client connection: the name it is bound to and its upstream connections.
struct ConnCtx {
    /// The verified TLS name (intercepted connections).
    tls_name: Option<String>,
    /// For plain connections: the name or address the client asked for beforehand.
    hint: Option<String>,
    port: u16,
    pool: Pool,
    /// Requests seen on the connection.
    requests: AtomicU64,
}

/// Read (and discard) a refused request's body, bounded in size and time, so the client
/// gets the 403 instead of a reset stream or connection.
async fn drain(mut body: Incoming) {
    let read = async {
        let mut n = 0usize;
        while let Some(Ok(f)) = body.frame().await {
            n += f.data_ref().map_or(0, |d| d.len());
            if n > 1 << 20 {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), read).await;
}

fn empty() -> Body {
    Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

/// A whole body, refused (with why) past `limit` bytes.
async fn read_bounded(mut body: Body, limit: usize) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(format!("more than {limit} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

fn box_hyper_error(e: hyper::Error) -> BoxError {
    Box::new(e)
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The 403 of a policy denial: the body says which rule to add.
fn blocked(q: &Query<'_>, d: &Decision) -> Response<Body> {
    let mut r = plain(StatusCode::FORBIDDEN, &denial_hint(q, d));
    let tag = match &d.rule {
        RuleRef::Rule { index, .. } => format!("rule={index}"),
        RuleRef::Grant { name, .. } => format!("grant={name}"),
        RuleRef::Default { policy } => format!("default={policy}"),
        RuleRef::Builtin { what } => {
            format!("builtin={}", what.split(':').next().unwrap_or("check"))
        }
    };
    if let Ok(v) =
        HeaderValue::from_str(&tag.replace(|c: char| !c.is_ascii_graphic() && c != ' ', ""))
    {
        r.headers_mut()
            .insert(HeaderName::from_static(BLOCKED_HEADER), v);
    }
    r
}

fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in [
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        h.remove(n);
    }
    if !keep_upgrade {
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
}

/// A body that counts bytes, optionally rewrites them, and runs `done` once at its end
/// (or when dropped early).
struct Tracked {
    inner: Body,
    /// Behind a mutex only to make the body `Sync` (reached through `get_mut`, never
    /// locked).
    rewriter: Mutex<Option<Box<dyn BodyRewriter>>>,
    rewrites: bool,
    count: Arc<AtomicU64>,
    done: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    flushed: bool,
}

impl Tracked {
    fn new(
        inner: Body,
        rewriter: Option<Box<dyn BodyRewriter>>,
        count: Arc<AtomicU64>,
        done: Option<Box<dyn FnOnce() + Send>>,
    ) -> Self {
        Tracked {
            inner,
            rewrites: rewriter.is_some(),
            rewriter: Mutex::new(rewriter),
            count,
            done: Mutex::new(done),
            flushed: false,
        }
    }

    fn finish(&mut self) {
        let d = self
            .done
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(d) = d {
            d();
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                    let data = match this.rewriter.get_mut().unwrap_or_else(|e| e.into_inner()) {
                        Some(r) => r.chunk(data),
                        None => data,
                    };
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => {
                if !this.flushed {
                    this.flushed = true;
                    if let Some(r) = this.rewriter.get_mut().unwrap_or_else(|e| e.into_inner()) {
                        let tail = r.finish();
                        if !tail.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(tail))));
                        }
                    }
                }
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.rewrites && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.rewrites {
            hyper::body::SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

/// A client stream paddock can refuse with a TCP reset (RST), for refusals it cannot answer
/// with a 403. `SO_LINGER` 0, then close: the kernel sends a RST instead of a FIN.
pub trait Reset {
    fn reset(self);
}

impl Reset for TcpStream {
    fn reset(self) {
        if let Err(e) = self.set_zero_linger() {
            tracing::debug!(error = %e, "cannot set SO_LINGER 0; the connection is only closed");
        }
    }
}

/// A CONNECT tunnel: the client's TCP connection under the upgraded HTTP/1.1 stream.
impl Reset for TokioIo<hyper::upgrade::Upgraded> {
    fn reset(self) {
        match self.into_inner().downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => parts.io.into_inner().reset(),
            Err(_) => tracing::debug!("a tunnel over an unknown stream is only closed"),
        }
    }
}

impl<S: Reset> Reset for Rewind<S> {
    fn reset(self) {
        self.inner.reset();
    }
}

/// A stream with some bytes already read from it, replayed first.
pub struct Rewind<S> {
    pre: Option<Bytes>,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(pre: Vec<u8>, inner: S) -> Self {
        Rewind {
            pre: (!pre.is_empty()).then(|| Bytes::from(pre)),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut pre) = self.pre.take() {
            let n = pre.len().min(buf.remaining());
            buf.put_slice(&pre.split_to(n));
            if !pre.is_empty() {
                self.pre = Some(pre);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A stream that counts the bytes read from it, so a splice that ends in an error (a reset,
/// a timeout) still reports how much it moved.
struct Counted<S> {
    inner: S,
    read: u64,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Counted { inner, read: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
