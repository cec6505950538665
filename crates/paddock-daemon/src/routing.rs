//! Hostname routing in the daemon (issue 6): `http://web.myapp.localhost:8080` reaches
//! `127.0.0.1:3000` inside run "myapp".
//!
//! Owns: the daemon's one [`paddock_router::Router`], its listener on `127.0.0.1:<port>`
//! (HTTP, h2c and HTTPS with leaves from the local CA for `*.<name>.localhost`), the
//! `routes` table of state.db, and the [`Dialer`] that opens a connection inside a run's
//! network namespace through the runtime's [`NetnsCapability`](paddock_sandbox::NetnsCapability).
//!
//! How it is driven: the run manager calls [`Routing::check_create`] before creating a run
//! with endpoints, [`Routing::on_state`] after every persisted transition, and
//! [`Routing::on_removed`] once a run is deleted; `serve()` calls [`Routing::rebuild`] after
//! re-adopting sandboxes, then [`Routing::listen`].
//!
//! Invariants: routes live here and in state.db, never in a CLI process; a route is
//! `running` only while its run is; the router never listens on another port than the
//! configured one (a taken port is remembered and reported, runs with endpoints are
//! refused until it is free, and the daemon keeps trying it: every few seconds and on
//! `GET /v1/router`); the CA key never leaves `$PADDOCK_HOME/ca/`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use paddock_api::{RouteInfo, RouterStatus, Run, RunState};
use paddock_ca::CertAuthority;
use paddock_config::NetworkConfig;
use paddock_router::{
    Dialer, RouteState, Router, RouterConfig, RouterHandle, RunRoute, is_dns_label,
};
use paddock_sandbox::{NetnsCapability, SandboxHandle};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;

use crate::DaemonError;
use crate::runs::RunManager;
use crate::store::{RouteRow, Store, now_ms};

/// The router's default port.
pub const DEFAULT_ROUTER_PORT: u16 = RouterConfig::DEFAULT_PORT;

/// Why the router is not listening: the error and what to do about it.
#[derive(Debug, Clone)]
struct ListenError {
    message: String,
    hint: Option<String>,
}

/// The daemon's side of routing. One per daemon, shared by the run manager and the API.
pub struct Routing {
    router: Router,
    /// The router's way into runs (also told when a run stops, to end its parked thread).
    dialer: Arc<NetnsDialer>,
    port: u16,
    ca: Arc<CertAuthority>,
    /// The listener while it runs. An async lock: binding happens under it, so two runs
    /// created at once after a failure retry the port once, not twice.
    handle: tokio::sync::Mutex<Option<RouterHandle>>,
    /// The last bind failure, for `GET /v1/router` and create errors.
    error: Mutex<Option<ListenError>>,
    /// Serialises table changes: a transition hook and the rebuild at start (a watcher of a
    /// re-adopted run may record its exit meanwhile) never interleave.
    changes: Mutex<()>,
    /// Set by [`shutdown`](Self::shutdown): no more listening, retries included.
    closed: AtomicBool,
}

/// How often a router that could not take its port tries again.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Routing {
    /// Routing for the runs of `runs`, on `127.0.0.1:port`, with HTTPS leaves from `ca`.
    /// Nothing listens until [`listen`](Self::listen).
    pub fn new(runs: Weak<RunManager>, port: u16, ca: Arc<CertAuthority>) -> Arc<Routing> {
        let dialer = Arc::new(NetnsDialer::new(runs));
        Arc::new(Routing {
            router: Router::new(Arc::new(SharedDialer(dialer.clone()))),
            dialer,
            port,
            ca,
            handle: tokio::sync::Mutex::new(None),
            error: Mutex::new(None),
            changes: Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    /// The configured port (listening or not).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `PADDOCK_URL_<ENDPOINT>` for each of a run's endpoints (none without endpoints).
    pub fn url_env(&self, name: &str, ports: &BTreeMap<String, u16>) -> Vec<(String, String)> {
        paddock_router::url_env(name, ports.keys().map(String::as_str), self.port)
    }

    /// The local CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Take the port, unless already listening. A failure is remembered (see
    /// [`status`](Self::status)) and returned; no other port is ever tried.
    pub async fn listen(&self) -> Result<(), DaemonError> {
        let mut handle = self.handle.lock().await;
        if handle.is_some() {
            return Ok(());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(DaemonError::Conflict {
                message: "the daemon is shutting down".into(),
                hint: "start the run again once the daemon is back".into(),
            });
        }
        let config = RouterConfig::new(self.port).with_tls(Arc::new(RouterCerts {
            ca: self.ca.clone(),
        }));
        let served = self.router.serve(config).await;
        let mut last = self.error.lock().expect("router error lock poisoned");
        match served {
            Ok(h) => {
                if last.is_some() {
                    tracing::info!(addr = %h.local_addr(), "the router's port is free again: listening");
                }
                *handle = Some(h);
                *last = None;
                Ok(())
            }
            Err(e) => {
                let err = ListenError {
                    message: error_chain(&e),
                    hint: e.hint(),
                };
                // Retries repeat the same failure: logged when it changes, not every time.
                if last.as_ref().map(|l| &l.message) != Some(&err.message) {
                    tracing::warn!(
                        error = %err.message,
                        retry_secs = LISTEN_RETRY.as_secs(),
                        "the router is not listening; trying again until the port is free"
                    );
                }
                *last = Some(err.clone());
                Err(self.unavailable(&err))
            }
        }
    }

    /// Keep trying to take the port while the router does not listen (another program
    /// held it at daemon start): re-adopted runs with endpoints become reachable once it
    /// is free, without waiting for a new run or a restart. Ends at
    /// [`shutdown`](Self::shutdown).
    pub fn keep_listening(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LISTEN_RETRY).await;
                let Some(routing) = me.upgrade() else { return };
                if routing.closed.load(Ordering::SeqCst) {
                    return;
                }
                if routing.handle.lock().await.is_none() {
                    let _ = routing.listen().await;
                }
            }
        });
    }

    fn unavailable(&self, err: &ListenError) -> DaemonError {
        DaemonError::Conflict {
            message: format!(
                "this run has endpoints, but the router cannot serve them on 127.0.0.1:{}: {}",
                self.port, err.message
            ),
            hint: err.hint.clone().unwrap_or_else(|| {
                format!(
                    "free port {} or choose another with `router.port` in \
                     ~/.config/paddock/config.yaml or PADDOCK_ROUTER_PORT, then restart the \
                     daemon (`paddock daemon restart`)",
                    self.port
                )
            }),
        }
    }

    /// Stop listening (daemon shutdown); returns once the port is free.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.lock().await.take() {
            h.shutdown().await;
        }
    }

    /// Before a run is created: its endpoints are valid, none is a port paddock itself
    /// listens on inside the sandbox (see [`endpoint_port_conflict`]), and the router
    /// listens (trying the port again if it was taken before). Runs without endpoints
    /// always pass.
    pub async fn check_create(
        &self,
        ports: &BTreeMap<String, u16>,
        network: &NetworkConfig,
    ) -> Result<(), DaemonError> {
        if ports.is_empty() {
            return Ok(());
        }
        for (endpoint, port) in ports {
            if let Some((message, hint)) = endpoint_port_conflict(endpoint, *port, network) {
                return Err(DaemonError::bad_request(message, hint));
            }
            if !is_dns_label(endpoint) {
                return Err(DaemonError::bad_request(
                    format!(
                        "invalid endpoint name `{}`: not a DNS label",
                        endpoint.escape_default()
                    ),
                    "endpoint names appear in URLs (http://web.myapp.localhost:8080): use \
                     a-z, 0-9 and '-', e.g. `-p web=3000`",
                ));
            }
            if *port == 0 {
                return Err(DaemonError::bad_request(
                    format!("endpoint `{endpoint}` has port 0"),
                    "ports are 1-65535, e.g. `-p web=3000`",
                ));
            }
        }
        self.listen().await
    }

    /// Endpoint → URL for a run.
    pub fn urls(&self, name: &str, ports: &BTreeMap<String, u16>) -> BTreeMap<String, String> {
        ports
            .keys()
            .map(|e| (e.clone(), paddock_router::endpoint_url(e, name, self.port)))
            .collect()
    }

    /// Fill `run.urls` from its ports.
    pub fn decorate(&self, run: &mut Run) {
        run.urls = self.urls(&run.name, &run.ports);
    }

    /// After a persisted transition of `run` (its record before the change) to `to`.
    /// Never fails the transition: problems are logged.
    pub fn on_state(&self, store: &Store, run: &Run, to: RunState) {
        if run.ports.is_empty() {
            return;
        }
        let _g = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let r = match to {
            RunState::Running => self.register(store, run),
            RunState::Stopping | RunState::Stopped | RunState::Failed => {
                self.dialer.forget(&run.id);
                self.mark_stopped(store, run)
            }
            RunState::Created | RunState::Starting => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(run = %run.id, error = %e, "could not update the run's routes");
        }
    }

    fn register(&self, store: &Store, run: &Run) -> Result<(), DaemonError> {
        store.put_route(&RouteRow {
            run_id: run.id.clone(),
            name: run.name.clone(),
            endpoints: run.ports.clone(),
            state: RouteState::Running.as_str().into(),
            updated_ms: now_ms(),
        })?;
        self.router
            .upsert_run(RunRoute {
                name: run.name.clone(),
                run_id: run.id.clone(),
                endpoints: run.ports.clone(),
                state: RouteState::Running,
            })
            .map_err(|e| DaemonError::Conflict {
                message: e.to_string(),
                hint: e.hint().unwrap_or_default().into(),
            })
    }

    fn mark_stopped(&self, store: &Store, run: &Run) -> Result<(), DaemonError> {
        store.set_route_state(&run.id, RouteState::Stopped.as_str())?;
        // Only when the name is still this run's (a newer run may have taken it).
        let ours = self
            .router
            .routes()
            .iter()
            .any(|r| r.name == run.name && r.run_id == run.id);
        if ours {
            self.router.set_state(&run.name, RouteState::Stopped);
        }
        Ok(())
    }

    /// After a run was deleted: its routes go (its row went with it; this is belt and
    /// braces). Its name is free again.
    pub fn on_removed(&self, store: &Store, run_id: &str) {
        let _g = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        self.dialer.forget(run_id);
        self.router.remove_run_id(run_id);
        if let Err(e) = store.delete_route(run_id) {
            tracing::warn!(run = %run_id, error = %e, "could not delete the run's route");
        }
    }

    /// At daemon start, after live sandboxes were re-adopted: the table again from
    /// state.db. A route is `running` exactly when its run is; rows of vanished runs go;
    /// running runs with endpoints but no row (a crash between the two writes) get one.
    pub fn rebuild(&self, store: &Store) -> Result<(), DaemonError> {
        let _g = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = store.routes()?;
        let mut seen = std::collections::HashSet::new();
        for row in &mut rows {
            seen.insert(row.run_id.clone());
            let Some(rec) = store.get(&row.run_id)? else {
                store.delete_route(&row.run_id)?;
                row.state.clear();
                continue;
            };
            let state = if rec.run.state == RunState::Running {
                RouteState::Running
            } else {
                RouteState::Stopped
            };
            if row.state != state.as_str() {
                store.set_route_state(&row.run_id, state.as_str())?;
                row.state = state.as_str().into();
            }
        }
        for rec in store.live()? {
            if rec.run.state == RunState::Running
                && !rec.run.ports.is_empty()
                && !seen.contains(&rec.run.id)
            {
                self.register(store, &rec.run)?;
            }
        }
        // Stopped routes first, then running ones: a running run wins its name; among
        // stopped ones the latest change wins (rows come oldest first).
        rows.retain(|r| !r.state.is_empty());
        rows.sort_by_key(|r| r.state == RouteState::Running.as_str());
        for row in rows {
            let state = if row.state == RouteState::Running.as_str() {
                RouteState::Running
            } else {
                RouteState::Stopped
            };
            let route = RunRoute {
                name: row.name,
                run_id: row.run_id,
                endpoints: row.endpoints,
                state,
            };
            if let Err(e) = self.router.upsert_run(route) {
                tracing::warn!(error = %e, "could not restore a route");
            }
        }
        tracing::info!(routes = self.router.routes().len(), "routes rebuilt");
        Ok(())
    }

    /// For `GET /v1/router`. A router that could not take its port tries again first, so
    /// the answer is about now, not about the last attempt.
    pub async fn status(&self) -> RouterStatus {
        let _ = self.listen().await;
        let listening = self.handle.lock().await.is_some();
        let err = self
            .error
            .lock()
            .expect("router error lock poisoned")
            .clone();
        RouterStatus {
            port: self.port,
            listen: format!("127.0.0.1:{}", self.port),
            listening,
            error: err.as_ref().map(|e| e.message.clone()),
            hint: err.and_then(|e| e.hint),
            tls: true,
            routes: self
                .router
                .routes()
                .into_iter()
                .map(|r| RouteInfo {
                    urls: self.urls(&r.name, &r.endpoints),
                    name: r.name,
                    run_id: r.run_id,
                    state: r.state.as_str().into(),
                    endpoints: r.endpoints,
                })
                .collect(),
        }
    }
}

/// Why endpoint `endpoint` cannot be port `port` in a run with `network`, as an error
/// message and a hint; `None` when it can. Every sandbox has paddock's own listeners on
/// its loopback: the transparent HTTP/HTTPS capture on port 80 and 443 of every address,
/// the DNS stub on 127.0.0.1:53, the explicit proxy on 127.0.0.80:3128 (which a service
/// binding 0.0.0.0:3128 collides with), and a transparent listener on each
/// `network.rules[].port`. A service cannot bind those ports, and the router's connection
/// to 127.0.0.1:port would reach paddock's listener instead of it.
pub fn endpoint_port_conflict(
    endpoint: &str,
    port: u16,
    network: &NetworkConfig,
) -> Option<(String, String)> {
    use paddock_egress::{DNS_ADDR, PROXY_ADDR, run::DEFAULT_PORTS};
    let why = if DEFAULT_PORTS.contains(&port) {
        format!(
            "paddock's egress captures port {port} of every address inside the sandbox \
             (transparent HTTP/HTTPS)"
        )
    } else if port == DNS_ADDR.port() {
        format!("paddock's DNS stub listens on {DNS_ADDR} inside the sandbox")
    } else if port == PROXY_ADDR.port() {
        format!(
            "paddock's HTTP proxy listens on {PROXY_ADDR} inside the sandbox (a service on \
             0.0.0.0:{port} cannot bind next to it)"
        )
    } else if network.rules.iter().any(|r| r.port == Some(port)) {
        format!(
            "a `network.rules` entry names port {port}, so paddock's egress captures that \
             port of every address inside the sandbox"
        )
    } else {
        return None;
    };
    Some((
        format!("endpoint `{endpoint}` cannot use port {port}: {why}"),
        format!(
            "run the service on another port and name that one, e.g. `-p {endpoint}=3000` \
             (ports {}, {}, {} and those of `network.rules` are paddock's own in every sandbox)",
            DEFAULT_PORTS
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            DNS_ADDR.port(),
            PROXY_ADDR.port(),
        ),
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Opens connections inside a run's network namespace: run id → its live sandbox (one this
/// daemon started or re-adopted) → a socket made in its netns → connect to 127.0.0.1:port.
///
/// As root, the first dial of a run parks a thread in its namespace (one setns) that then
/// makes sockets, so a connection costs no thread spawned, moved and joined
/// (`socket_in_netns`). The thread keeps a small stock of sockets made ahead of time
/// ([`STOCK`]): a dial takes one under a mutex and wakes the thread only when the stock runs
/// low ([`STOCK_LOW`]) or is empty, instead of a channel round trip (two thread wake-ups) on
/// every connection. The thread ends (and closes its stock) when its run stops
/// ([`forget`](Self::forget)) or after [`PARKED_IDLE`] without a dial, so it never keeps a
/// finished run's namespace alive for long. Rootless (setns is not allowed), every socket
/// comes from the runtime's `socket_in_netns`: the run's init makes it and hands it over.
struct NetnsDialer {
    runs: Weak<RunManager>,
    parked: Arc<Mutex<HashMap<String, Parked>>>,
    /// Parking is impossible here (not root, or setns was refused once).
    no_setns: AtomicBool,
    next_id: AtomicU64,
}

/// A thread parked in one run's network namespace.
#[derive(Clone)]
struct Parked {
    id: u64,
    tx: std::sync::mpsc::Sender<Ask>,
    /// Sockets the thread made ahead of time in the run's namespace.
    stock: Arc<Mutex<Vec<OwnedFd>>>,
}

/// What a dial asks of a parked thread.
enum Ask {
    /// A socket now (the stock was empty); the thread fills the stock up after answering.
    Socket(tokio::sync::oneshot::Sender<io::Result<OwnedFd>>),
    /// The stock ran low: fill it up.
    Refill,
}

/// How long a parked thread waits for the next request before it ends.
const PARKED_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// Sockets a parked thread keeps ready.
const STOCK: usize = 16;
/// A dial that leaves this many in the stock asks for a refill.
const STOCK_LOW: usize = 8;

/// A new AF_INET stream socket in the calling thread's network namespace.
fn inet_socket() -> io::Result<OwnedFd> {
    nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

/// Fill `stock` up to [`STOCK`] with sockets made on this (parked) thread.
fn fill(stock: &Mutex<Vec<OwnedFd>>) {
    let lock = || stock.lock().unwrap_or_else(|e| e.into_inner());
    let need = STOCK.saturating_sub(lock().len());
    let made: Vec<OwnedFd> = (0..need).map_while(|_| inet_socket().ok()).collect();
    let mut s = lock();
    let room = STOCK.saturating_sub(s.len());
    s.extend(made.into_iter().take(room));
}

impl NetnsDialer {
    fn new(runs: Weak<RunManager>) -> Self {
        NetnsDialer {
            runs,
            parked: Arc::new(Mutex::new(HashMap::new())),
            no_setns: AtomicBool::new(!nix::unistd::geteuid().is_root()),
            next_id: AtomicU64::new(0),
        }
    }

    /// The run stopped or went away: its parked thread (if any) ends.
    fn forget(&self, run_id: &str) {
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(run_id);
    }

    /// A new AF_INET stream socket in the run's namespace.
    async fn socket(
        &self,
        run_id: &str,
        handle: SandboxHandle,
        runtime: Arc<dyn paddock_sandbox::Runtime>,
    ) -> io::Result<OwnedFd> {
        if !self.no_setns.load(Ordering::Relaxed) {
            let known = self
                .parked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(run_id)
                .cloned();
            let parked = match known {
                Some(p) => Some(p),
                None => self.park(run_id, &handle, &runtime).await,
            };
            if let Some(p) = parked {
                let (taken, low) = {
                    let mut s = p.stock.lock().unwrap_or_else(|e| e.into_inner());
                    let fd = s.pop();
                    (fd, s.len() == STOCK_LOW)
                };
                if let Some(fd) = taken {
                    if low {
                        // A thread that has ended is noticed by the next dial that finds
                        // the stock empty.
                        let _ = p.tx.send(Ask::Refill);
                    }
                    return Ok(fd);
                }
                let (reply, answer) = tokio::sync::oneshot::channel();
                if p.tx.send(Ask::Socket(reply)).is_ok()
                    && let Ok(r) = answer.await
                {
                    return r;
                }
                // The thread ended (idle, or its run stopped): next time, a new one.
                let mut map = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                if map.get(run_id).is_some_and(|q| q.id == p.id) {
                    map.remove(run_id);
                }
            }
        }
        tokio::task::spawn_blocking(move || {
            netns_of(&runtime)?
                .socket_in_netns(
                    &handle,
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                )
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Park a thread in the run's namespace; `None` when that is not possible (then the
    /// caller asks the runtime).
    async fn park(
        &self,
        run_id: &str,
        handle: &SandboxHandle,
        runtime: &Arc<dyn paddock_sandbox::Runtime>,
    ) -> Option<Parked> {
        let (rt, h) = (runtime.clone(), handle.clone());
        let ns = tokio::task::spawn_blocking(move || {
            netns_of(&rt)?
                .netns_fd(&h)
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))
        })
        .await
        .ok()?
        .ok()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel::<Ask>();
        let stock = Arc::new(Mutex::new(Vec::with_capacity(STOCK)));
        let thread_stock = stock.clone();
        let (ready, entered) = tokio::sync::oneshot::channel::<nix::Result<()>>();
        let parked = Arc::downgrade(&self.parked);
        let run = run_id.to_string();
        let spawned = std::thread::Builder::new()
            .name("paddock-netns-dial".into())
            .spawn(move || {
                let r = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
                drop(ns);
                let ok = r.is_ok();
                let _ = ready.send(r);
                if !ok {
                    return;
                }
                let stock = thread_stock;
                fill(&stock);
                // Ending, whichever way: the stock's sockets (which keep the run's namespace
                // alive) are closed with the thread.
                let close_stock = || stock.lock().unwrap_or_else(|e| e.into_inner()).clear();
                loop {
                    match rx.recv_timeout(PARKED_IDLE) {
                        Ok(Ask::Socket(reply)) => {
                            let _ = reply.send(inet_socket());
                            fill(&stock);
                        }
                        Ok(Ask::Refill) => fill(&stock),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            // Idle: leave the map (if still ours) and end. A dial racing
                            // with this finds its request unanswered and falls back.
                            if let Some(map) = parked.upgrade() {
                                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                                if map.get(&run).is_some_and(|p| p.id == id) {
                                    map.remove(&run);
                                }
                            }
                            close_stock();
                            return;
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            close_stock();
                            return;
                        }
                    }
                }
            });
        if spawned.is_err() {
            return None;
        }
        match entered.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if e == nix::errno::Errno::EPERM {
                    self.no_setns.store(true, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "cannot park a thread in the run's netns");
                return None;
            }
            Err(_) => return None,
        }
        let mine = Parked { id, tx, stock };
        let mut map = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        // Two first dials at once: the first parked thread wins, the other one ends.
        Some(map.entry(run_id.to_string()).or_insert(mine).clone())
    }
}

fn netns_of(runtime: &Arc<dyn paddock_sandbox::Runtime>) -> io::Result<&dyn NetnsCapability> {
    runtime.as_netns().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime cannot reach a sandbox's network",
        )
    })
}

/// The router's handle on the shared dialer.
struct SharedDialer(Arc<NetnsDialer>);

#[async_trait]
impl Dialer for SharedDialer {
    async fn dial(&self, run_id: &str, port: u16) -> io::Result<TcpStream> {
        let not_running = || io::Error::new(io::ErrorKind::NotFound, "the run is not running");
        let runs = self.0.runs.upgrade().ok_or_else(not_running)?;
        let handle = runs.live_handle(run_id).ok_or_else(not_running)?;
        let runtime = runs.runtime().clone();
        drop(runs);
        let fd = self.0.socket(run_id, handle, runtime).await?;
        paddock_router::connect_loopback(fd, port).await
    }
}

/// HTTPS leaves for the router: `*.<name>.localhost` for `<endpoint>.<name>.localhost`,
/// the exact name otherwise (`<name>.localhost`, `localhost`), `localhost` without SNI.
#[derive(Debug)]
struct RouterCerts {
    ca: Arc<CertAuthority>,
}

/// The certificate name that covers `sni`.
fn leaf_name(sni: &str) -> String {
    let n = sni.strip_suffix('.').unwrap_or(sni).to_ascii_lowercase();
    if let Some(sub) = n.strip_suffix(".localhost")
        && let Some((_endpoint, run)) = sub.split_once('.')
        && !run.contains('.')
    {
        return format!("*.{run}.localhost");
    }
    n
}

impl ResolvesServerCert for RouterCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = leaf_name(hello.server_name().unwrap_or("localhost"));
        match self.ca.leaf(&name) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::debug!(name = %name, error = %e, "no router certificate");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_names_cover_endpoint_hosts_with_one_wildcard_per_run() {
        assert_eq!(leaf_name("web.myapp.localhost"), "*.myapp.localhost");
        assert_eq!(leaf_name("API.MyApp.localhost."), "*.myapp.localhost");
        assert_eq!(leaf_name("myapp.localhost"), "myapp.localhost");
        assert_eq!(leaf_name("localhost"), "localhost");
        assert_eq!(leaf_name("a.b.c.localhost"), "a.b.c.localhost");
        assert_eq!(leaf_name("example.com"), "example.com");
    }

    #[test]
    fn url_env_is_added_and_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(CertAuthority::open_or_create(&dir.path().join("ca")).unwrap());
        let routing = Routing::new(Weak::new(), 18080, ca);
        let ports: BTreeMap<String, u16> = [("web".into(), 3000), ("api-v2".into(), 8000)].into();
        let user: BTreeMap<String, String> = [
            ("PADDOCK_URL_WEB".to_string(), "spoofed".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ]
        .into();
        let env: BTreeMap<_, _> = crate::runs::sandbox_env(
            "run_000000000000",
            "app",
            &user,
            routing.url_env("app", &ports),
        )
        .into_iter()
        .collect();
        assert_eq!(env["PADDOCK_URL_WEB"], "http://web.app.localhost:18080");
        assert_eq!(
            env["PADDOCK_URL_API_V2"],
            "http://api-v2.app.localhost:18080"
        );
        assert_eq!(env["PATH"], "/bin");
    }
}
