//! paddock-router: `http://web.myapp.localhost:8080` → a service listening on loopback inside
//! run "myapp".
//!
//! The daemon owns one [`Router`]. It registers routes as runs start and stop
//! ([`Router::upsert_run`], [`Router::set_state`], [`Router::remove_run`]) and starts the
//! listener with [`Router::serve`]. Requests are routed by `Host`:
//!
//! | host | answer |
//! |---|---|
//! | `web.myapp.localhost` | forwarded to port of endpoint `web` inside run `myapp` |
//! | `myapp.localhost` | forwarded when the run has one endpoint, else an index of its endpoints |
//! | `localhost` | an index of all runs (HTML, or JSON for `Accept: application/json`) |
//! | unknown run or endpoint | 404 naming the live runs / the run's endpoints |
//! | not under `.localhost` | 400 |
//! | run stopped | 503 |
//! | nothing listening in the sandbox | 502 naming the endpoint and port |
//!
//! One port serves HTTP/1.1, HTTP/2 over cleartext (h2c, with prior knowledge or by
//! `Upgrade: h2c` for requests without a body), and TLS (told apart by the
//! first byte, 0x16; ALPN `h2`/`http/1.1`) with certificates from the resolver the caller
//! passes. Upgrades (WebSocket and others) are spliced byte for byte. Backends are always
//! spoken to over HTTP/1.1 with a small keep-alive pool per (run, port), whatever the client
//! spoke.
//!
//! Cleartext HTTP/1.1 requests take a fast path of the router's own (`fast`: httparse, one
//! task per connection, no hyper); TLS, HTTP/2, and what the fast path leaves to it
//! (HTTP/1.0, upgrades, `Expect`) are served by hyper. Both answer the same way.
//!
//! **Invariants.** The router never knows how a run is executed: it reaches services only
//! through the [`Dialer`] it is given. It persists nothing (the daemon keeps routes in
//! state.db and re-registers them). It never falls back to another port than the one it is
//! told to listen on: URLs must stay stable. Hostile input never panics or hangs it: reading
//! the first bytes, the TLS handshake and request heads are all under a timeout, and head
//! sizes and connection counts are limited.
//!
//! # Wiring (the daemon)
//!
//! `paddock-daemon/src/routing.rs` is the wiring: a [`Dialer`] that opens a socket in the
//! run's netns (`NetnsCapability::socket_in_netns`) and calls [`connect_loopback`]; one
//! [`Router`] whose routes are rebuilt from state.db at daemon start and follow every run
//! transition ([`Router::upsert_run`], [`Router::set_state`], [`Router::remove_run`]); the
//! listener from [`Router::serve`] with TLS leaves from the local CA; [`url_env`] for the
//! sandbox's `PADDOCK_URL_*`.

mod body;
mod dial;
mod fast;
mod h2c;
mod host;
mod io;
mod pages;
mod pool;
mod proxy;
mod server;
mod table;

use std::sync::Arc;
use std::time::Duration;

pub use dial::{Dialer, LoopbackDialer, connect_loopback};
/// Entry points for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub use fast::fuzzing;
pub use host::{HostError, Target, is_dns_label, parse_host};
pub use pages::{endpoint_url, url_env};
pub use server::{RouterConfig, RouterError, RouterHandle};
pub use table::{RouteError, RouteState, RunRoute};

use pool::Pool;
use table::Routes;

/// Idle keep-alive connections kept per (run, port).
const POOL_IDLE_PER_BACKEND: usize = 32;
/// How long an idle backend connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The route table and the backend connection pool. Cheap to clone (one `Arc`); reads of
/// the table by request handling take no lock.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    routes: Routes,
    dialer: Arc<dyn Dialer>,
}

/// What request handling shares across one worker thread's connections.
pub(crate) struct Shared {
    pub(crate) router: Router,
    /// The port the router actually listens on (for URLs on its pages).
    pub(crate) port: u16,
    /// This worker's backend connection pool (a pool per worker keeps a pooled
    /// connection's task on the thread that uses it).
    pub(crate) pool: Arc<Pool>,
    /// This worker's idle backend connections for the HTTP/1.1 fast path (`fast`).
    pub(crate) idle: fast::Idle,
}

impl Router {
    pub(crate) fn new_pool(&self) -> Arc<Pool> {
        Arc::new(Pool::new(
            self.inner.dialer.clone(),
            POOL_IDLE_PER_BACKEND,
            POOL_IDLE_TIMEOUT,
        ))
    }

    pub(crate) fn new_idle(&self) -> fast::Idle {
        fast::Idle::new(POOL_IDLE_PER_BACKEND, POOL_IDLE_TIMEOUT)
    }
}

impl Router {
    /// A router that reaches services through `dialer`.
    pub fn new(dialer: Arc<dyn Dialer>) -> Router {
        Router {
            inner: Arc::new(Inner {
                routes: Routes::new(),
                dialer,
            }),
        }
    }

    /// Register or replace a run's routes. A name routed to another run that is still
    /// running is refused ([`RouteError::NameTaken`]); a stopped one is replaced.
    pub fn upsert_run(&self, route: RunRoute) -> Result<(), RouteError> {
        self.inner.routes.upsert(route)
    }

    /// Remove a run's routes by name (run stopped for good or destroyed). Returns them.
    pub fn remove_run(&self, name: &str) -> Option<RunRoute> {
        self.inner.routes.remove(name)
    }

    /// Remove a run's routes by run id. Returns them.
    pub fn remove_run_id(&self, run_id: &str) -> Option<RunRoute> {
        self.inner.routes.remove_run_id(run_id)
    }

    /// Mark a run running or stopped (stopped runs answer 503). False if unknown.
    pub fn set_state(&self, name: &str, state: RouteState) -> bool {
        self.inner.routes.set_state(name, state)
    }

    /// All routes, sorted by run name (for `paddock router status`).
    pub fn routes(&self) -> Vec<RunRoute> {
        self.inner.routes.snapshot()
    }

    /// Bind `config.listen` and serve until the returned handle is shut down or dropped.
    /// A port already in use is [`RouterError::PortInUse`]; no other port is tried.
    ///
    /// Connections are served on `config.workers` threads of the router's own, each a
    /// single-threaded tokio runtime accepting on the same socket (nginx's worker model:
    /// a request and its backend connection stay on one thread). The [`Dialer`] is called
    /// on those threads, so the stream it returns must be created there (as
    /// [`connect_loopback`] does); `tokio::task::spawn_blocking` is available to it.
    pub async fn serve(&self, config: RouterConfig) -> Result<RouterHandle, RouterError> {
        server::serve(self.clone(), config).await
    }
}
