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
//! One port serves HTTP/1.1, HTTP/2 with prior knowledge (h2c), and TLS (told apart by the
//! first byte, 0x16; ALPN `h2`/`http/1.1`) with certificates from the resolver the caller
//! passes. Upgrades (WebSocket and others) are spliced byte for byte. Backends are always
//! spoken to over HTTP/1.1 with a small keep-alive pool per (run, port); `Upgrade: h2c` is
//! declined (answered over HTTP/1.1, as RFC 9110 allows).
//!
//! **Invariants.** The router never knows how a run is executed: it reaches services only
//! through the [`Dialer`] it is given. It persists nothing (the daemon keeps routes in
//! state.db and re-registers them). It never falls back to another port than the one it is
//! told to listen on: URLs must stay stable. Hostile input never panics or hangs it: reading
//! the first bytes, the TLS handshake and request heads are all under a timeout, and head
//! sizes and connection counts are limited.

mod body;
mod dial;
mod host;
mod io;
mod pages;
mod proxy;
mod server;
mod table;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use body::RouterBody;
pub use dial::{Dialer, LoopbackDialer, connect_loopback};
pub use host::{HostError, Target, is_dns_label, parse_host};
pub use pages::endpoint_url;
pub use server::{RouterConfig, RouterError, RouterHandle};
pub use table::{RouteError, RouteState, RunRoute};

use dial::PoolConnector;
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
    client: Client<PoolConnector, Incoming>,
}

/// What request handling shares across one listener's connections.
pub(crate) struct Shared {
    pub(crate) router: Router,
    /// The port the router actually listens on (for URLs on its pages).
    pub(crate) port: u16,
}

impl Router {
    /// A router that reaches services through `dialer`.
    pub fn new(dialer: Arc<dyn Dialer>) -> Router {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_BACKEND)
            .set_host(false)
            .build(PoolConnector {
                dialer: dialer.clone(),
            });
        Router {
            inner: Arc::new(Inner {
                routes: Routes::new(),
                dialer,
                client,
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
    pub async fn serve(&self, config: RouterConfig) -> Result<RouterHandle, RouterError> {
        server::serve(self.clone(), config).await
    }
}
