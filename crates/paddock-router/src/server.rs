//! The listener: bind, accept, tell TLS / HTTP/2 / HTTP/1.1 apart, serve connections.
//!
//! Owns: the port (never another one than asked), connection limits and timeouts, TLS
//! termination with the caller's certificate resolver. Never decides routes (see `proxy`).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

use std::future::Future;
use std::pin::Pin;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::RouterBody;
use crate::fast;
use crate::h2c;
use crate::io::Prefixed;
use crate::proxy::{ConnInfo, handle};
use crate::{Router, Shared};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where and how the router listens. `PADDOCK_ROUTER_PORT` and `router.port` are resolved
/// by the caller into `listen`.
#[derive(Clone)]
pub struct RouterConfig {
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Certificates for HTTPS on the same port (`*.name.localhost`); `None` refuses TLS.
    pub tls: Option<Arc<dyn rustls::server::ResolvesServerCert>>,
    /// Time allowed for a connection's first bytes, its TLS handshake, and each request
    /// head. Default 10 s.
    pub header_read_timeout: Duration,
    /// Largest request head (request line + headers), bytes. Default 64 KiB; larger gets
    /// 431.
    pub max_header_bytes: usize,
    /// Connections served at once; further ones wait in the kernel's backlog. Default 4096.
    pub max_connections: usize,
    /// Threads serving connections. Default: the number of CPUs, at most 4.
    pub workers: usize,
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_connections", &self.max_connections)
            .field("workers", &self.workers)
            .finish()
    }
}

impl RouterConfig {
    /// The router's default port.
    pub const DEFAULT_PORT: u16 = 8080;

    /// Listen on `127.0.0.1:port` (0 picks a free port: tests only; URLs must be stable).
    pub fn new(port: u16) -> RouterConfig {
        RouterConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 4096,
            workers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
        }
    }

    /// Serve HTTPS too, with certificates from `resolver`.
    pub fn with_tls(mut self, resolver: Arc<dyn rustls::server::ResolvesServerCert>) -> Self {
        self.tls = Some(resolver);
        self
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig::new(RouterConfig::DEFAULT_PORT)
    }
}

/// The router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("the router's port {port} on {addr} is already in use by another program")]
    PortInUse { addr: SocketAddr, port: u16 },
    #[error("the router cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the router's TLS configuration is invalid")]
    Tls(#[from] rustls::Error),
}

impl RouterError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            RouterError::PortInUse { port, .. } => Some(format!(
                "stop the program using port {port} (e.g. find it with `ss -ltnp 'sport = :{port}'`), \
                 or choose another port with `router.port` in ~/.config/paddock/config.yaml or \
                 PADDOCK_ROUTER_PORT; a changed port takes effect after `paddock daemon restart`. \
                 URLs include the port, so paddock never picks another one by itself"
            )),
            RouterError::Bind { addr, .. } => Some(format!(
                "choose another port than {} with `router.port` in \
                 ~/.config/paddock/config.yaml or PADDOCK_ROUTER_PORT; a changed port takes \
                 effect after `paddock daemon restart`",
                addr.port()
            )),
            RouterError::Tls(_) => None,
        }
    }
}

/// A running listener. Dropping it (or [`shutdown`](RouterHandle::shutdown)) stops
/// accepting and closes the connections it serves.
pub struct RouterHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl RouterHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Stop accepting and close every connection; returns once the port is free again.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        // The worker threads notice, drop their runtimes (and so every connection) and end.
        let _ = self.stop.send(true);
    }
}

struct Server {
    shared: Shared,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    first_bytes_timeout: Duration,
    fast: fast::Limits,
}

fn tls_acceptor(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<tokio_rustls::TlsAcceptor, RouterError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, RouterError> {
    let err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            RouterError::PortInUse {
                addr,
                port: addr.port(),
            }
        } else {
            RouterError::Bind { addr, source: e }
        }
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(err)?;
    // SO_REUSEADDR only lets a restarted daemon rebind past TIME_WAIT; a live listener
    // still makes bind fail (no SO_REUSEPORT: the port is never shared).
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(1024).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    Ok(sock.into())
}

pub(crate) async fn serve(
    router: Router,
    config: RouterConfig,
) -> Result<RouterHandle, RouterError> {
    let tls = config.tls.clone().map(tls_acceptor).transpose()?;
    let listener = bind(config.listen)?;
    let local_addr = listener.local_addr().map_err(|e| RouterError::Bind {
        addr: config.listen,
        source: e,
    })?;

    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192) + 8192)
        .max_header_size(config.max_header_bytes)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(config.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let (stop, stopped) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let balance = Arc::new(Balance::new(config.workers.max(1)));
    let mut workers = Vec::new();
    for i in 0..config.workers.max(1) {
        let listener = listener.try_clone().map_err(|e| RouterError::Bind {
            addr: config.listen,
            source: e,
        })?;
        let server = Server {
            shared: Shared {
                router: router.clone(),
                port: local_addr.port(),
                pool: router.new_pool(),
                idle: router.new_idle(),
            },
            h1: h1.clone(),
            h2: h2.clone(),
            tls: tls.clone(),
            first_bytes_timeout: config.header_read_timeout,
            fast: fast::Limits {
                head_timeout: config.header_read_timeout,
                max_head: config.max_header_bytes,
            },
        };
        let (limit, stopped, balance) = (limit.clone(), stopped.clone(), balance.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RouterError::Bind {
                addr: config.listen,
                source: e,
            })?;
        let thread = std::thread::Builder::new()
            .name(format!("paddock-router-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => {
                            let turn = Turn { balance, me: i };
                            accept_loop(l, Arc::new(server), limit, turn, stopped).await
                        }
                        Err(e) => tracing::error!(error = %e, "router worker cannot listen"),
                    }
                });
                // Dropping the runtime here cancels every connection this worker served.
            })
            .map_err(|e| RouterError::Bind {
                addr: config.listen,
                source: e,
            })?;
        workers.push(thread);
    }
    tracing::info!(addr = %local_addr, workers = workers.len(), "router listening");
    Ok(RouterHandle {
        local_addr,
        stop,
        workers,
    })
}

/// How long a worker that holds more connections than another lets it accept first.
const BALANCE_WAIT: Duration = Duration::from_millis(2);

/// The live connections of each worker. Every worker waits on the one listening socket,
/// and without turns whichever wakes first takes a whole burst of connections (wrk's 32
/// went 27 to 5): one worker then saturates its core while the other idles, for as long
/// as the connections live. A worker holding more than the least loaded one lets it
/// accept first (for at most [`BALANCE_WAIT`], so a busy or stuck worker never holds
/// connections back).
struct Balance {
    live: Vec<AtomicUsize>,
    changed: Notify,
}

impl Balance {
    fn new(workers: usize) -> Balance {
        Balance {
            live: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            changed: Notify::new(),
        }
    }
}

/// One worker's place in the [`Balance`].
struct Turn {
    balance: Arc<Balance>,
    me: usize,
}

impl Turn {
    fn ahead(&self) -> bool {
        let live = |i: usize| self.balance.live[i].load(Ordering::Relaxed);
        let least = (0..self.balance.live.len())
            .filter(|&i| i != self.me)
            .map(live)
            .min();
        least.is_some_and(|least| live(self.me) > least)
    }

    /// Waits (briefly) while this worker holds more connections than another.
    async fn wait(&self) {
        let changed = self.balance.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if self.ahead() {
            let _ = tokio::time::timeout(BALANCE_WAIT, changed).await;
        }
    }

    fn opened(&self) -> Live {
        self.balance.live[self.me].fetch_add(1, Ordering::Relaxed);
        self.balance.changed.notify_waiters();
        Live {
            balance: self.balance.clone(),
            me: self.me,
        }
    }
}

/// A connection counted in the [`Balance`] until dropped.
struct Live {
    balance: Arc<Balance>,
    me: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.balance.live[self.me].fetch_sub(1, Ordering::Relaxed);
        self.balance.changed.notify_waiters();
    }
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<Server>,
    limit: Arc<Semaphore>,
    turn: Turn,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => return,
            _ = turn.wait() => {}
        }
        let accepted = tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => return,
            a = listener.accept() => a.map(|a| (a, permit)),
        };
        let ((tcp, peer), permit) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "router accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = server.clone();
        let live = turn.opened();
        tokio::spawn(async move {
            connection(&server, tcp, peer).await;
            drop((permit, live));
        });
    }
}

enum Proto {
    Tls,
    H2,
    H1,
}

/// Read until the first bytes say which protocol this is. `None`: closed or too slow.
async fn sniff<R: AsyncRead + Unpin>(io: &mut R, timeout: Duration) -> Option<(Vec<u8>, Proto)> {
    let mut buf = Vec::with_capacity(2048);
    let work = async {
        loop {
            if let Some(&first) = buf.first() {
                if first == 0x16 {
                    return Some(Proto::Tls);
                }
                let n = buf.len().min(H2_PREFACE.len());
                if buf[..n] != H2_PREFACE[..n] {
                    return Some(Proto::H1);
                }
                if n == H2_PREFACE.len() {
                    return Some(Proto::H2);
                }
            }
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    let proto = tokio::time::timeout(timeout, work).await.ok()??;
    Some((buf, proto))
}

async fn connection(server: &Arc<Server>, mut tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let Some((pre, proto)) = sniff(&mut tcp, server.first_bytes_timeout).await else {
        return;
    };
    if let Proto::H1 = proto {
        // Cleartext HTTP/1.1: the fast path, which hands over to hyper at a request
        // boundary for what it leaves to it.
        let info = ConnInfo::new(peer.ip(), false);
        if let fast::Outcome::Fallback(tcp, rest) =
            fast::serve(&server.shared, server.fast, tcp, pre, &info).await
        {
            let io = TokioIo::new(Prefixed::new(rest, tcp));
            serve_http(server, io, Arc::new(info), false).await;
        }
        return;
    }
    let io = Prefixed::new(pre, tcp);
    match proto {
        Proto::Tls => {
            let Some(acceptor) = &server.tls else {
                tracing::debug!(%peer, "TLS connection but the router has no certificates");
                return;
            };
            let tls =
                match tokio::time::timeout(server.first_bytes_timeout, acceptor.accept(io)).await {
                    Ok(Ok(s)) => s,
                    _ => return,
                };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let info = Arc::new(ConnInfo::new(peer.ip(), true));
            serve_http(server, TokioIo::new(tls), info, h2).await;
        }
        Proto::H2 => {
            let info = Arc::new(ConnInfo::new(peer.ip(), false));
            serve_http(server, TokioIo::new(io), info, true).await;
        }
        Proto::H1 => {}
    }
}

/// The 101 answer to an h2c upgrade and the stream-1 frame to replay, if the request fits.
fn h2c_upgrade(req: &Request<Incoming>) -> Option<(Response<RouterBody>, Vec<u8>)> {
    let frame = h2c::headers_frame(req)?;
    let mut r = Response::new(RouterBody::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    r.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    Some((r, frame))
}

async fn serve_h2<I>(server: Arc<Server>, io: I, info: Arc<ConnInfo>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let s = server.clone();
    let svc = service_fn(move |req| {
        let s = s.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(handle(&s.shared, &info, req).await) }
    });
    if let Err(e) = server.h2.serve_connection(io, svc).await {
        tracing::trace!(error = %e, "router h2c connection ended with an error");
    }
}

async fn serve_http<I>(server: &Arc<Server>, io: I, info: Arc<ConnInfo>, h2: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let s = server.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let s = s.clone();
        let info = info.clone();
        async move {
            if !h2
                && h2c::wants(&req)
                && let Some(r) = h2c_upgrade(&req)
            {
                let mut req = req;
                let on = hyper::upgrade::on(&mut req);
                let (s, info) = (s.clone(), info.clone());
                tokio::spawn(async move {
                    let Ok(up) = on.await else { return };
                    let mut io = TokioIo::new(up);
                    let Ok(Some(pre)) =
                        tokio::time::timeout(s.first_bytes_timeout, h2c::replay(&mut io, r.1))
                            .await
                    else {
                        return;
                    };
                    let io = TokioIo::new(Prefixed::new(pre, io));
                    let fut: Pin<Box<dyn Future<Output = ()> + Send>> =
                        Box::pin(serve_h2(s, io, info));
                    fut.await;
                });
                return Ok::<_, Infallible>(r.0);
            }
            Ok::<_, Infallible>(handle(&s.shared, &info, req).await)
        }
    });
    let r = if h2 {
        server.h2.serve_connection(io, svc).await
    } else {
        server.h1.serve_connection(io, svc).with_upgrades().await
    };
    if let Err(e) = r {
        tracing::trace!(error = %e, "router connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_ahead_of_another_waits_its_turn_but_not_for_ever() {
        let balance = Arc::new(Balance::new(2));
        let a = Turn {
            balance: balance.clone(),
            me: 0,
        };
        let b = Turn { balance, me: 1 };
        assert!(!a.ahead() && !b.ahead());
        let first = a.opened();
        assert!(a.ahead() && !b.ahead());
        // B accepting lets A go on at once.
        let waiting = tokio::spawn(async move {
            a.wait().await;
            a
        });
        tokio::task::yield_now().await;
        let second = b.opened();
        let a = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken by the other worker's accept")
            .unwrap();
        assert!(!a.ahead() && !b.ahead());
        // Ahead with nobody accepting: waits BALANCE_WAIT at most.
        let _third = a.opened();
        let t = std::time::Instant::now();
        a.wait().await;
        assert!(t.elapsed() < Duration::from_secs(1));
        // Closed connections count down.
        drop((first, second));
        assert!(a.ahead());
        assert!(!b.ahead());
    }
}
