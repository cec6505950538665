//! The web dashboard: a second listener, on 127.0.0.1 only, that serves the embedded
//! pages (`assets/`), `/metrics`, and the same API as the daemon socket, all behind a
//! session ([`auth`]).
//!
//! It starts on the first `POST /v1/ui/login` on the daemon socket (the one way to get a
//! login code), so a daemon nobody looks at opens no TCP port. The port is the user's
//! (`ui.port`, `PADDOCK_UI_PORT`); a taken one is an error, never another port.
//!
//! Every request passes [`guard`]: the Host must be this listener's own name (a page on
//! another name that resolves to 127.0.0.1 is DNS rebinding), then a session cookie or the
//! bearer token, then, for a session, the same-origin and CSRF checks. Sandboxes cannot
//! reach it: they have their own network namespace (native) or a bridge with no route to
//! the host's loopback (containers), and the egress proxy refuses loopback upstreams.
//!
//! Never: answers anything but `/login` without a session or the token; serves the
//! `/v1/ui/*` routes (codes and the token come from the socket only); loads anything from
//! elsewhere (the CSP says `'self'` only).

pub mod auth;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::DaemonError;
use crate::metrics::{Metrics, Snapshot};
use crate::server::{ApiError, ApiResult, Peer, ServerState, ok};
use auth::{Auth, Authn};

/// The dashboard's default port on 127.0.0.1.
pub const DEFAULT_UI_PORT: u16 = 7780;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard: its settings, sessions and (once started) listener.
pub struct Ui {
    shared: Arc<Shared>,
    listening: tokio::sync::Mutex<Option<Listening>>,
}

struct Shared {
    state: Arc<ServerState>,
    metrics: Arc<Metrics>,
    /// Configured port; 0 takes a free one (tests).
    port: u16,
    /// Made when the listener starts, for the port it bound (in the cookie's name).
    auth: std::sync::OnceLock<Auth>,
    token_file: std::path::PathBuf,
}

struct Listening {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Ui {
    pub fn new(state: Arc<ServerState>, metrics: Arc<Metrics>, port: u16) -> Arc<Ui> {
        let token_file = state.runs.home().root().join("ui-token");
        Arc::new(Ui {
            shared: Arc::new(Shared {
                state,
                metrics,
                port,
                auth: std::sync::OnceLock::new(),
                token_file,
            }),
            listening: tokio::sync::Mutex::new(None),
        })
    }

    /// Start listening if not yet; the address.
    async fn ensure_listening(&self) -> Result<(SocketAddr, &Auth), DaemonError> {
        let mut slot = self.listening.lock().await;
        if let Some(l) = slot.as_ref() {
            return Ok((l.addr, self.shared.auth.get().expect("auth made at start")));
        }
        let want = SocketAddr::from((Ipv4Addr::LOCALHOST, self.shared.port));
        let listener = TcpListener::bind(want).await.map_err(|e| DaemonError::Network {
            message: format!("the dashboard could not listen on {want}: {e}"),
            hint: if e.kind() == std::io::ErrorKind::AddrInUse {
                "another program has that port; set `ui: {port: N}` in ~/.config/paddock/config.yaml (or PADDOCK_UI_PORT) and restart the daemon (`paddock daemon stop`)".into()
            } else {
                "see $PADDOCK_HOME/daemon.log".into()
            },
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| DaemonError::io("bind", std::path::Path::new("127.0.0.1"), e))?;
        let auth = Auth::open(&self.shared.token_file, addr.port())?;
        let _ = self.shared.auth.set(auth);
        let (stop, mut stopped) = watch::channel(false);
        let app = app(self.shared.clone()).into_make_service_with_connect_info::<Peer>();
        let owner = Peer {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        let serve = axum::serve(
            UiListener {
                inner: listener,
                owner,
            },
            app,
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .into_future();
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the dashboard stopped serving");
            }
        });
        tracing::info!(%addr, "dashboard listening");
        *slot = Some(Listening { addr, stop, task });
        Ok((addr, self.shared.auth.get().expect("auth just made")))
    }

    /// Stop the listener (daemon shutdown). Open event streams get a moment to end.
    pub async fn shutdown(&self) {
        if let Some(l) = self.listening.lock().await.take() {
            let _ = l.stop.send(true);
            let mut task = l.task;
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

/// The routes on the daemon socket that hand out dashboard access.
pub fn socket_routes(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/v1/ui/login", post(login_code))
        .route("/v1/ui/token", get(ui_token))
        .with_state(ui)
}

async fn login_code(State(ui): State<Arc<Ui>>) -> ApiResult {
    let (addr, auth) = ui.ensure_listening().await?;
    let base_url = format!("http://{addr}");
    ok(&paddock_api::UiLogin {
        url: format!("{base_url}/login?code={}", auth.mint_code()),
        base_url,
        expires_in_s: auth::CODE_TTL.as_secs(),
    })
}

async fn ui_token(State(ui): State<Arc<Ui>>) -> ApiResult {
    let (addr, auth) = ui.ensure_listening().await?;
    ok(&paddock_api::UiToken {
        token: auth.token().to_string(),
        base_url: format!("http://{addr}"),
    })
}

/// Everything the listener serves.
fn app(shared: Arc<Shared>) -> Router {
    let pages = Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/login", get(login))
        .route("/ui/session", get(session))
        .route("/metrics", get(metrics))
        .with_state(shared.clone());
    pages
        .merge(crate::server::router(shared.state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            (shared.metrics.clone(), "ui"),
            observe,
        ))
        .layer(axum::middleware::from_fn_with_state(shared, guard))
}

/// Count one request and its latency under its route template, for the listener named in
/// the state (`socket`, `ui`).
pub async fn observe(
    State((m, listener)): State<(Arc<Metrics>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let resp = next.run(req).await;
    m.observe_api(
        listener,
        method.as_str(),
        route.as_deref().unwrap_or("unmatched"),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// Host, then who, then (for a session) same-origin and CSRF; and the security headers
/// on every answer.
async fn guard(State(ui): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let port = ui.auth.get().map_or(ui.port, Auth::port);
    let mut resp = match check(&ui, port, &req) {
        Ok(authn) => {
            req.extensions_mut().insert(authn);
            next.run(req).await
        }
        Err(e) => refusal(req.uri().path(), e),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Why a request may not go on, if it may not.
fn check(ui: &Shared, port: u16, req: &Request) -> Result<Option<Authn>, DaemonError> {
    let host = auth::request_host(req.headers(), req.uri()).unwrap_or_default();
    if !auth::host_allowed(&host, port) {
        return Err(auth::forbidden(
            format!("the dashboard does not answer to host {host:?}"),
            format!(
                "open http://127.0.0.1:{port}/ (a page on another name could be DNS rebinding)"
            ),
        ));
    }
    if req.uri().path() == "/login" {
        return Ok(None);
    }
    let Some(auth) = ui.auth.get() else {
        return Err(unauthorized());
    };
    match auth.authenticate(req.headers()) {
        None => Err(unauthorized()),
        Some(Authn::Bearer) => Ok(Some(Authn::Bearer)),
        Some(Authn::Session { csrf }) => {
            auth::check_session_request(req.method(), req.headers(), &host, &csrf)?;
            Ok(Some(Authn::Session { csrf }))
        }
    }
}

fn unauthorized() -> DaemonError {
    DaemonError::Unauthorized {
        message: "not logged in to the paddock dashboard".into(),
        hint: "run `paddock ui` (or `paddock ui --url`) for a login link; scripts send `Authorization: Bearer $(paddock ui --token)`".into(),
    }
}

/// A refusal: the JSON envelope for the API, a short page for a browser's navigation.
fn refusal(path: &str, e: DaemonError) -> Response {
    let api = path.starts_with("/v1/") || path == "/metrics" || path == "/ui/session";
    if api {
        return ApiError(e).into_response();
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    let body = format!("{}\n\n{}\n", e, e.hint().unwrap_or_default());
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    code: String,
}

/// `GET /login?code=…`: a one-time code becomes a session cookie, then the dashboard.
async fn login(
    State(ui): State<Arc<Shared>>,
    method: Method,
    Query(q): Query<LoginQuery>,
) -> Response {
    // Only a real GET spends the code (axum answers HEAD with the GET handler).
    let cookie = if method == Method::GET {
        ui.auth.get().and_then(|a| a.redeem(&q.code))
    } else {
        None
    };
    let Some(cookie) = cookie else {
        return refusal(
            "/login",
            DaemonError::Unauthorized {
                message: "this login link is not valid: it was used already, it expired, or it is mistyped".into(),
                hint: "run `paddock ui` again for a new one (a link works once, for 5 minutes)".into(),
            },
        );
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /ui/session`: what the pages need: the CSRF token and the daemon's version.
async fn session(authn: Option<axum::Extension<Option<Authn>>>) -> ApiResult {
    let csrf = match authn.and_then(|axum::Extension(a)| a) {
        Some(Authn::Session { csrf }) => csrf,
        _ => String::new(),
    };
    ok(&serde_json::json!({ "csrf": csrf, "version": crate::VERSION }))
}

/// `GET /metrics`: Prometheus text.
async fn metrics(State(ui): State<Arc<Shared>>) -> ApiResult {
    let st = &ui.state;
    let runs = st
        .runs
        .list(true)?
        .into_iter()
        .map(|r| (r.state.as_str().to_string(), r.runtime))
        .collect();
    let audit = st.runs.bus().audit();
    let snap = Snapshot {
        runs,
        audit: audit.map(|a| a.stats()).unwrap_or_default(),
        audit_checkpoints: audit.map_or(0, |a| a.checkpoints()),
        bus: st.runs.bus().stats(),
        open_streams: st.open_streams.load(std::sync::atomic::Ordering::Relaxed) as u64,
        ui_sessions: ui.auth.get().map_or(0, |a| a.sessions() as u64),
    };
    let mut resp = Response::new(Body::from(ui.metrics.render(&snap)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

/// A loopback TCP listener whose connections count as the daemon owner's (the session or
/// token is the proof; handlers that need a [`Peer`] get the owner).
struct UiListener {
    inner: TcpListener,
    owner: Peer,
}

impl axum::serve::Listener for UiListener {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    return (s, self.owner);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.owner)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, UiListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, UiListener>) -> Self {
        *stream.remote_addr()
    }
}
