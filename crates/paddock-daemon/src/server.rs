//! The HTTP/1.1 + JSON API on the Unix socket: routing, the error envelope, peer checks,
//! streams (SSE events, NDJSON logs) and the attach upgrade.
//!
//! Never: changes run state itself; every action goes through [`RunManager`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, StreamExt};
use paddock_api::attach::{Frame, UPGRADE_PROTOCOL, read_frame, write_frame};
use paddock_api::{
    ApplyRequest, ApplyResponse, CaCertificate, CreateRun, DiffResponse, Health, LogLine,
    MAX_REQUEST_BODY, Run, RunCounts, RunList, RunState, StopRequest,
};
use paddock_sandbox::{AttachInput, LogQuery, OutputChunk, OutputStream};
use serde::Deserialize;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::DaemonError;
use crate::audit::{Audit, LogRef, parse_since};
use crate::runs::{Caller, DEFAULT_STOP_GRACE, RunManager};
use crate::version;

/// Shared state of the server.
pub struct ServerState {
    pub runs: Arc<RunManager>,
    pub pid: u32,
    pub started_at: String,
    pub idle_timeout: Duration,
    /// Fired by `POST /v1/shutdown`.
    pub shutdown: Arc<Notify>,
    /// Long-lived streams (logs -f, events, attach) keep the daemon from idling out.
    pub open_streams: AtomicUsize,
    /// Time of the last request (for idle shutdown).
    pub last_request: std::sync::Mutex<std::time::Instant>,
    /// Live `exec` sessions, ended (and their ends recorded) when the daemon stops.
    pub execs: crate::exec::Sessions,
}

type St = State<Arc<ServerState>>;

/// Peer credentials of a connection (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
}

/// A Unix listener that only hands out connections from the owning uid (or root).
pub struct PeerCheckedListener {
    inner: UnixListener,
    owner: u32,
}

impl PeerCheckedListener {
    pub fn new(inner: UnixListener, owner: u32) -> Self {
        PeerCheckedListener { inner, owner }
    }
}

impl axum::serve::Listener for PeerCheckedListener {
    type Io = UnixStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, _) = match self.inner.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let cred = match stream.peer_cred() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read peer credentials; connection refused");
                    continue;
                }
            };
            if cred.uid() != self.owner && cred.uid() != 0 {
                tracing::warn!(
                    peer_uid = cred.uid(),
                    "refused a connection from another user"
                );
                continue; // dropping the stream closes it
            }
            return (
                stream,
                Peer {
                    uid: cred.uid(),
                    gid: cred.gid(),
                },
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            uid: self.owner,
            gid: 0,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, PeerCheckedListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, PeerCheckedListener>) -> Self {
        *stream.remote_addr()
    }
}

/// The error envelope as a response.
pub struct ApiError(pub DaemonError);

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        json_response(status, &self.0.to_body())
    }
}

pub(crate) fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn ok<T: serde::Serialize>(body: &T) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

/// A JSON body, with the envelope for every way it can be wrong.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rej) => Err(ApiError(json_rejection(rej))),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> DaemonError {
    match rej {
        JsonRejection::MissingJsonContentType(_) => DaemonError::bad_request(
            "the request body must be JSON",
            "send `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => DaemonError::bad_request(
            format!("malformed JSON: {}", e.body_text()),
            "check the request body is valid JSON",
        ),
        JsonRejection::JsonDataError(e) => DaemonError::bad_request(
            format!("the request does not fit the API: {}", e.body_text()),
            "see the paddock-api crate docs for the request shape",
        ),
        JsonRejection::BytesRejection(e) => {
            let text = e.body_text();
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                DaemonError::PayloadTooLarge {
                    limit: MAX_REQUEST_BODY,
                }
            } else {
                DaemonError::bad_request(
                    format!("could not read the request body: {text}"),
                    "retry the request",
                )
            }
        }
        other => DaemonError::bad_request(other.body_text(), "check the request"),
    }
}

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/runs", get(list_runs).post(create_run))
        .route("/v1/runs/{run}", get(get_run).delete(delete_run))
        .route("/v1/runs/{run}/start", post(start_run))
        .route("/v1/runs/{run}/stop", post(stop_run))
        .route("/v1/runs/{run}/wait", get(wait_run))
        .route("/v1/runs/{run}/logs", get(logs))
        .route("/v1/runs/{run}/attach", get(attach))
        .route("/v1/runs/{run}/exec", post(exec))
        .route("/v1/runs/{run}/diff", get(diff))
        .route("/v1/runs/{run}/apply", post(apply))
        .route(
            "/v1/runs/{run}/snapshots",
            get(list_snapshots).post(take_snapshot),
        )
        .route("/v1/runs/{run}/rollback", post(rollback))
        .route("/v1/runs/{run}/discard", post(discard))
        .route("/v1/runs/{run}/stats", get(run_stats))
        .route("/v1/runs/{run}/audit/verify", get(audit_verify))
        .route("/v1/runs/{run}/audit", get(audit_entries))
        .route("/v1/runs/{run}/audit/export", get(audit_export))
        .route("/v1/runs/{run}/audit/prove", get(audit_prove))
        .route("/v1/runs/{run}/audit/consistency", get(audit_consistency))
        .route("/v1/audit/daemon", get(daemon_audit_entries))
        .route("/v1/audit/daemon/export", get(daemon_audit_export))
        .route("/v1/audit/daemon/prove", get(daemon_audit_prove))
        .route(
            "/v1/audit/daemon/consistency",
            get(daemon_audit_consistency),
        )
        .route("/v1/audit/key", get(audit_key))
        .route("/v1/events", get(events))
        .route("/v1/shutdown", post(shutdown))
        .merge(crate::grants_api::routes())
        .route("/v1/router", get(router_status))
        .route("/v1/ca", get(ca_certificate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), touch))
        .with_state(state)
}

/// Records request activity for idle shutdown.
async fn touch(State(st): St, req: Request, next: axum::middleware::Next) -> Response {
    *st.last_request.lock().expect("lock poisoned") = std::time::Instant::now();
    next.run(req).await
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError(DaemonError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    })
}

async fn not_found(req: Request) -> ApiError {
    ApiError(DaemonError::NoEndpoint {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    })
}

pub const CAPABILITIES: &[&str] = &[
    "runs",
    "events",
    "logs",
    "attach",
    "exec",
    "wait",
    "stop",
    "diff",
    "apply",
    "shutdown",
    "runtime.native",
    "audit",
    "grants",
    "router",
    "ca",
    "worktrees",
];

async fn health(State(st): St) -> ApiResult {
    let (total, active) = st.runs.counts()?;
    ok(&Health {
        pid: st.pid,
        version: version::VERSION.into(),
        commit: version::commit(),
        started_at: st.started_at.clone(),
        runs: RunCounts { total, active },
        capabilities: CAPABILITIES.iter().map(|s| s.to_string()).collect(),
        event_bus: st.runs.bus().stats(),
        idle_timeout_secs: st.idle_timeout.as_secs(),
        audit: st.runs.bus().audit().map(|a| a.stats()),
        router_port: st.runs.routing().map(|r| r.port()),
    })
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    all: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "yes" | ""))
}

async fn list_runs(State(st): St, Query(q): Query<ListQuery>) -> ApiResult {
    let mut runs = st.runs.list(truthy(&q.all))?;
    runs.iter_mut().for_each(|r| with_urls(&st, r));
    ok(&RunList { runs })
}

/// Fill a run's `urls` (routing).
fn with_urls(st: &ServerState, run: &mut Run) {
    if let Some(routing) = st.runs.routing() {
        routing.decorate(run);
    }
}

fn answer_run(st: &ServerState, status: StatusCode, mut run: Run) -> ApiResult {
    with_urls(st, &mut run);
    Ok(json_response(status, &run))
}

async fn router_status(State(st): St) -> ApiResult {
    match st.runs.routing() {
        Some(routing) => ok(&routing.status().await),
        None => Err(DaemonError::Unsupported {
            message: "this daemon has no router".into(),
            hint: "restart the daemon with `paddock daemon restart`".into(),
        }
        .into()),
    }
}

async fn ca_certificate(State(st): St) -> ApiResult {
    match st.runs.routing() {
        Some(routing) => ok(&CaCertificate {
            pem: routing.ca_pem().to_string(),
        }),
        None => Err(DaemonError::Unsupported {
            message: "this daemon has no local CA".into(),
            hint: "restart the daemon with `paddock daemon restart`".into(),
        }
        .into()),
    }
}

async fn create_run(
    State(st): St,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut req: Request,
) -> ApiResult {
    let caller = Caller {
        uid: peer.uid,
        gid: peer.gid,
    };
    // With the attach upgrade, the answer is the run's attach session (create-and-attach:
    // one request for `paddock run`), which starts the run once the stream is in place.
    let on_upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let JsonBody(mut create) =
        <JsonBody<CreateRun> as axum::extract::FromRequest<()>>::from_request(req, &()).await?;
    if on_upgrade.is_some() {
        create.start = false;
    }
    // Create (and start) on a task of its own: a client hanging up must not leave a
    // half-created run behind.
    let runs = st.runs.clone();
    let run = detached(
        "creating the run",
        "list runs with `paddock ps -a`; the daemon log has details",
        async move {
            let start = create.start;
            let run = runs.create(create, caller).await?;
            if start {
                return runs.start(&run.id).await;
            }
            Ok(run)
        },
    )
    .await?;
    let Some(on_upgrade) = on_upgrade else {
        return answer_run(&st, StatusCode::CREATED, run);
    };
    let mut run = run;
    with_urls(&st, &mut run);
    let first = Frame::Run(serde_json::to_vec(&run).unwrap_or_default());
    // A client gone between the create and the upgrade leaves the run `created`, as after
    // a plain create.
    Ok(attach_session(&st, on_upgrade, run.id, true, Some(first)))
}

async fn get_run(State(st): St, Path(r): Path<String>) -> ApiResult {
    answer_run(&st, StatusCode::OK, st.runs.resolve(&r)?.run)
}

#[derive(Deserialize, Default)]
struct ForceQuery {
    #[serde(default)]
    force: Option<String>,
}

async fn delete_run(
    State(st): St,
    Path(r): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult {
    let id = st.runs.resolve(&r)?.run.id;
    ok(&st.runs.remove(&id, truthy(&q.force)).await?)
}

async fn start_run(State(st): St, Path(r): Path<String>) -> ApiResult {
    let id = st.runs.resolve(&r)?.run.id;
    answer_run(&st, StatusCode::OK, st.runs.start(&id).await?)
}

async fn stop_run(
    State(st): St,
    Path(r): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
    let req: StopRequest = if body.is_empty() {
        StopRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            DaemonError::bad_request(
                format!("malformed JSON: {e}"),
                "send {\"grace_secs\": 10} or no body",
            )
        })?
    };
    let grace = match req.grace_secs {
        None => DEFAULT_STOP_GRACE,
        Some(g) if g.is_finite() && (0.0..=3600.0).contains(&g) => Duration::from_secs_f64(g),
        Some(g) => {
            return Err(DaemonError::bad_request(
                format!("grace of {g} seconds is out of range"),
                "use a number of seconds from 0 to 3600",
            )
            .into());
        }
    };
    let id = st.runs.resolve(&r)?.run.id;
    answer_run(&st, StatusCode::OK, st.runs.stop(&id, grace).await?)
}

async fn wait_run(State(st): St, Path(r): Path<String>) -> ApiResult {
    let id = st.runs.resolve(&r)?.run.id;
    let _guard = StreamGuard::new(&st);
    ok(&st.runs.wait(&id).await?)
}

/// Counts an open long-lived stream for as long as it lives.
struct StreamGuard(Arc<ServerState>);

impl StreamGuard {
    fn new(st: &Arc<ServerState>) -> Self {
        st.open_streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard(st.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
        *self.0.last_request.lock().expect("lock poisoned") = std::time::Instant::now();
    }
}

#[derive(Deserialize, Default)]
struct LogsQuery {
    #[serde(default)]
    tail: Option<usize>,
    #[serde(default)]
    follow: Option<String>,
}

fn log_line(chunk: &OutputChunk) -> LogLine {
    let stream = match chunk.stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
        OutputStream::Tty => "tty",
    };
    match std::str::from_utf8(&chunk.data) {
        Ok(t) => LogLine {
            ts_ms: chunk.ts_ms,
            stream: stream.into(),
            text: Some(t.to_string()),
            b64: None,
        },
        Err(_) => LogLine {
            ts_ms: chunk.ts_ms,
            stream: stream.into(),
            text: None,
            b64: Some(base64_encode(&chunk.data)),
        },
    }
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

async fn logs(State(st): St, Path(r): Path<String>, Query(q): Query<LogsQuery>) -> ApiResult {
    let id = st.runs.resolve(&r)?.run.id;
    let handle = st.runs.sandbox_handle(&id)?;
    let follow = truthy(&q.follow);
    let rx = st
        .runs
        .runtime()
        .logs(
            &handle,
            LogQuery {
                tail: q.tail,
                follow,
            },
        )
        .await
        .map_err(DaemonError::from)?;
    let guard = StreamGuard::new(&st);
    let body = stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let chunk = rx.recv().await?;
        let mut line = serde_json::to_vec(&log_line(&chunk)).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(line)),
            (rx, guard),
        ))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

#[derive(Deserialize, Default)]
struct EventsQuery {
    #[serde(default)]
    run: Option<String>,
    /// Kind prefixes, comma-separated (`net.,run.state`).
    #[serde(default, rename = "type")]
    kinds: Option<String>,
    /// Resume after this event id (as `Last-Event-ID`, for clients that cannot set it).
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/events`: server-sent events, filtered by run and kind, resumed after
/// `Last-Event-ID` from the bus's history; a loss arrives as a `dropped` notice (an event
/// with seq 0 and no id, its data `{"dropped": N}`).
async fn events(State(st): St, Query(q): Query<EventsQuery>, headers: HeaderMap) -> ApiResult {
    let run = match q.run {
        Some(r) => Some(st.runs.resolve(&r)?.run.id),
        None => None,
    };
    let kinds = q
        .kinds
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            DaemonError::bad_request(
                "the Last-Event-ID header is not plain text",
                "resume with the `id:` of the last event received",
            )
        })?),
        None => None,
    };
    let after = last_event_id
        .or(q.after)
        .map(|id| {
            id.trim().parse::<u64>().map_err(|_| {
                DaemonError::bad_request(
                    format!("event id {id:?} is not a number"),
                    "resume with the `id:` of the last event received",
                )
            })
        })
        .transpose()?;
    let events = st
        .runs
        .bus()
        .stream(crate::bus::Filter { run, kinds }, after);
    let guard = StreamGuard::new(&st);
    let body = stream::once(async {
        Ok::<_, std::convert::Infallible>(Bytes::from_static(b": paddock events\n\n"))
    })
    .chain(stream::unfold(
        (events, guard),
        |(mut events, guard)| async move {
            let text = match events.next().await? {
                crate::bus::Delivery::Event(ev) => paddock_api::sse_frame(&ev),
                crate::bus::Delivery::Dropped(n) => paddock_api::sse_frame(&paddock_api::Event {
                    seq: 0,
                    ts: crate::store::now_rfc3339(),
                    run_id: None,
                    kind: "dropped".into(),
                    data: serde_json::json!({ "dropped": n }),
                }),
            };
            Some((Ok(Bytes::from(text)), (events, guard)))
        },
    ));
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

#[derive(Deserialize, Default)]
struct AttachQuery {
    #[serde(default)]
    start: Option<String>,
}

/// Whether the request asks for paddock's attach upgrade.
fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_PROTOCOL))
}

/// Refuse a streaming request (`attach`, `exec`) that does not ask for paddock's upgrade.
fn require_upgrade(req: &Request, what: &str) -> Result<(), DaemonError> {
    if wants_upgrade(req) {
        return Ok(());
    }
    Err(DaemonError::bad_request(
        format!("{what} needs a connection upgrade"),
        format!("send `Connection: upgrade` and `Upgrade: {UPGRADE_PROTOCOL}`"),
    ))
}

/// The `101 Switching Protocols` answer that hands the connection to a session.
fn switching_protocols() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    resp
}

async fn attach(
    State(st): St,
    Path(r): Path<String>,
    Query(q): Query<AttachQuery>,
    mut req: Request,
) -> ApiResult {
    require_upgrade(&req, "attach")?;
    let rec = st.runs.resolve(&r)?;
    let id = rec.run.id.clone();
    let start = truthy(&q.start);
    if start && rec.run.state != RunState::Created {
        return Err(DaemonError::InvalidTransition {
            id,
            state: rec.run.state,
            wanted: RunState::Starting,
        }
        .into());
    }
    if !start && rec.run.state.is_terminal() {
        return Err(DaemonError::Conflict {
            message: format!("run {} has ended ({})", id, rec.run.state),
            hint: format!("see its output with `paddock logs {}`", rec.run.name),
        }
        .into());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    Ok(attach_session(&st, on_upgrade, id, start, None))
}

/// Answer `101` and, once the connection is upgraded, drive run `id`'s attach session
/// (`first`, when given, is sent before anything else).
fn attach_session(
    st: &Arc<ServerState>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    id: String,
    start: bool,
    first: Option<Frame>,
) -> Response {
    let st = st.clone();
    tokio::spawn(async move {
        let _guard = StreamGuard::new(&st);
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                let served = match &first {
                    Some(f) => write_frame(&mut io, f).await,
                    None => Ok(()),
                };
                let served = match served {
                    Ok(()) => serve_attach(st.runs.clone(), id.clone(), start, io).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    tracing::debug!(run = %id, error = %e, "attach ended");
                }
            }
            Err(e) => tracing::warn!(run = %id, error = %e, "attach upgrade failed"),
        }
    });
    switching_protocols()
}

/// `POST /v1/runs/{ref}/exec`: check, record and start the command (errors answer with
/// the envelope), then upgrade and drive its session (`crate::exec`).
async fn exec(State(st): St, Path(r): Path<String>, mut req: Request) -> ApiResult {
    require_upgrade(&req, "exec")?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BODY)
        .await
        .map_err(|_| DaemonError::PayloadTooLarge {
            limit: MAX_REQUEST_BODY,
        })?;
    let exec_req: paddock_api::ExecRequest = serde_json::from_slice(&body).map_err(|e| {
        DaemonError::bad_request(
            format!("the request does not fit the API: {e}"),
            "send {\"command\": [\"ls\", \"-la\"]} (see ExecRequest in the paddock-api docs)",
        )
    })?;
    let rec = st.runs.resolve(&r)?;
    let id = rec.run.id;
    // Started on a task of its own: a client hanging up mid-request leaves no half-recorded
    // exec (an abandoned session kills its command and records that).
    let runs = st.runs.clone();
    let auto_snapshot = rec.run.workspace_mode == paddock_api::WorkspaceMode::Overlay
        && rec.run.state == paddock_api::RunState::Running;
    let session = detached(
        "starting the exec",
        "the daemon log has details",
        async move {
            // The layer as it was before the exec, to roll back to if it goes wrong.
            if auto_snapshot {
                let what = exec_req.command.join(" ");
                let what: String = what.chars().filter(|c| !c.is_control()).take(200).collect();
                if let Err(e) =
                    crate::snapshots::take(&runs, &id, Some(format!("before exec: {what}")), true)
                        .await
                {
                    tracing::warn!(run = %id, error = %e, "snapshot before exec failed");
                }
            }
            crate::exec::start(&runs, &id, exec_req).await
        },
    )
    .await?;
    let st2 = st.clone();
    tokio::spawn(async move {
        let _guard = StreamGuard::new(&st2);
        let (_live, stop) = st2.execs.enter();
        match on_upgrade.await {
            Ok(upgraded) => {
                crate::exec::serve(session, hyper_util::rt::TokioIo::new(upgraded), stop).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "exec upgrade failed");
                session.kill();
                session.finish().await;
            }
        }
    });
    Ok(switching_protocols())
}

/// Drive one attach session: (start), stream output and init steps out, input in, and end
/// with the exit frame.
async fn serve_attach<IO>(
    runs: Arc<RunManager>,
    id: String,
    start: bool,
    io: IO,
) -> std::io::Result<()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut steps = runs.bus().subscribe(Some(id.clone()));
    if start {
        let starter = runs.clone();
        let sid = id.clone();
        // Progress frames flow while the start is under way.
        let start_fut = starter.start(&sid);
        tokio::pin!(start_fut);
        let started = loop {
            tokio::select! {
                r = &mut start_fut => break r,
                Some(ev) = steps.recv() => {
                    if ev.kind == "init.step" {
                        write_frame(&mut wr, &Frame::InitStep(serde_json::to_vec(&ev.data).unwrap_or_default())).await?;
                    }
                }
            }
        };
        if let Err(e) = started {
            let body = serde_json::json!({ "id": id, "state": "failed", "exit_code": null, "reason": e.to_string() });
            write_frame(
                &mut wr,
                &Frame::Exit(serde_json::to_vec(&body).unwrap_or_default()),
            )
            .await?;
            return Ok(());
        }
    }
    let handle = runs.sandbox_handle(&id).map_err(std::io::Error::other)?;
    // From the beginning when we started it (nothing is missed); otherwise from now.
    let query = LogQuery {
        tail: if start { None } else { Some(0) },
        follow: true,
    };
    let mut output = runs
        .runtime()
        .logs(&handle, query)
        .await
        .map_err(std::io::Error::other)?;
    let input = match runs.runtime().attach(&handle).await {
        Ok(a) => Some(a.input),
        Err(e) => {
            tracing::debug!(error = %e, "no input channel for attach");
            None
        }
    };
    // Client → sandbox.
    let input_task = tokio::spawn(async move {
        while let Ok(Some(frame)) = read_frame(&mut rd).await {
            let Some(tx) = &input else { continue };
            let msg = match frame {
                Frame::Stdin(b) => AttachInput::Stdin(b),
                Frame::CloseStdin => AttachInput::CloseStdin,
                Frame::Resize { rows, cols } => {
                    AttachInput::Resize(paddock_sandbox::TtySize { rows, cols })
                }
                Frame::Signal(s) => AttachInput::Signal(s),
                _ => continue,
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    // Sandbox → client.
    while let Some(chunk) = output.recv().await {
        let frame = match chunk.stream {
            OutputStream::Stderr => Frame::Stderr(chunk.data),
            OutputStream::Stdout | OutputStream::Tty => Frame::Stdout(chunk.data),
        };
        write_frame(&mut wr, &frame).await?;
    }
    let result = runs.wait(&id).await.map_err(std::io::Error::other)?;
    write_frame(
        &mut wr,
        &Frame::Exit(serde_json::to_vec(&result).unwrap_or_default()),
    )
    .await?;
    input_task.abort();
    Ok(())
}

#[derive(Deserialize, Default)]
struct DiffQuery {
    #[serde(default)]
    patch: Option<String>,
    /// A snapshot id: the changes since it, instead of since the workspace.
    #[serde(default)]
    from: Option<String>,
}

fn overlay_only(run: &paddock_api::Run) -> Result<(), DaemonError> {
    if run.workspace_mode != paddock_api::WorkspaceMode::Overlay {
        return Err(DaemonError::Conflict {
            message: format!(
                "run {} used a bind-mounted workspace; its changes are already in place",
                run.name
            ),
            hint: "diff and apply are for overlay runs (the default workspace mode)".into(),
        });
    }
    Ok(())
}

async fn diff(State(st): St, Path(r): Path<String>, Query(q): Query<DiffQuery>) -> ApiResult {
    let run = st.runs.resolve(&r)?.run;
    overlay_only(&run)?;
    let upper = crate::runs::layer_upper(&st.runs.home().run_dir(&run.id));
    let workspace = run.workspace.clone();
    let want_patch = truthy(&q.patch);
    let autorun = crate::review::autorun_of(&run);
    let from = match &q.from {
        Some(id) => Some(crate::snapshots::path_of(
            &st.runs.home().run_dir(&run.id),
            &run.name,
            id,
        )?),
        None => None,
    };
    let out = tokio::task::spawn_blocking(move || {
        crate::review::diff(&upper, &workspace, want_patch, &autorun, from.as_deref())
    })
    .await
    .map_err(|e| DaemonError::bad_request(format!("diff failed: {e}"), "retry"))??;
    st.runs.bus().publish(
        Some(&run.id),
        "layer.diffed",
        serde_json::json!({ "summary": out.summary, "patch": want_patch }),
    );
    ok(&DiffResponse {
        run_id: run.id,
        changes: out.changes,
        summary: out.summary,
        patch: out.patch,
    })
}

async fn apply(
    State(st): St,
    Path(r): Path<String>,
    JsonBody(req): JsonBody<ApplyRequest>,
) -> ApiResult {
    let rec = st.runs.resolve(&r)?;
    let run = rec.run;
    overlay_only(&run)?;
    if !run.state.is_terminal() {
        return Err(DaemonError::Conflict {
            message: format!("run {} is still {}", run.name, run.state),
            hint: format!(
                "wait for it to end (`paddock wait {0}`) or stop it (`paddock stop {0}`)",
                run.name
            ),
        }
        .into());
    }
    let upper = crate::runs::layer_upper(&st.runs.home().run_dir(&run.id));
    let workspace = run.workspace.clone();
    let started_ms = rec.started_ms.unwrap_or(rec.created_ms);
    let autorun = crate::review::autorun_of(&run);
    let flags = crate::review::ApplyFlags {
        force: req.force,
        include_git: req.include_git,
        include_autorun: req.include_autorun,
    };
    let out = tokio::task::spawn_blocking(move || {
        crate::review::apply(&upper, &workspace, started_ms, &flags, &autorun)
    })
    .await
    .map_err(|e| DaemonError::bad_request(format!("apply failed: {e}"), "retry"))??;
    st.runs.mark_applied(&run.id)?;
    st.runs
        .bus()
        .publish(Some(&run.id), "layer.applied", out.report.clone());
    ok(&ApplyResponse {
        run_id: run.id,
        report: out.report,
        summary: out.summary,
    })
}

async fn take_snapshot(
    State(st): St,
    Path(r): Path<String>,
    JsonBody(req): JsonBody<paddock_api::SnapshotRequest>,
) -> ApiResult {
    ok(&crate::snapshots::take(&st.runs, &r, req.message, false).await?)
}

async fn list_snapshots(State(st): St, Path(r): Path<String>) -> ApiResult {
    let run = st.runs.resolve(&r)?.run;
    let run_dir = st.runs.home().run_dir(&run.id);
    ok(&paddock_api::SnapshotList {
        run_id: run.id,
        snapshots: crate::snapshots::list(&run_dir),
    })
}

async fn rollback(
    State(st): St,
    Path(r): Path<String>,
    JsonBody(req): JsonBody<paddock_api::RollbackRequest>,
) -> ApiResult {
    let runs = st.runs.clone();
    let out = detached("the rollback", "the daemon log has details", async move {
        crate::snapshots::rollback(&runs, &r, req).await
    })
    .await?;
    ok(&out)
}

async fn discard(
    State(st): St,
    Path(r): Path<String>,
    JsonBody(req): JsonBody<paddock_api::DiscardRequest>,
) -> ApiResult {
    let runs = st.runs.clone();
    let out = detached("the discard", "the daemon log has details", async move {
        crate::snapshots::discard(&runs, &r, req).await
    })
    .await?;
    ok(&out)
}

/// `GET /v1/runs/{ref}/stats`: a live run's memory, pids and CPU time.
async fn run_stats(State(st): St, Path(r): Path<String>) -> ApiResult {
    let run = st.runs.resolve(&r)?.run;
    if run.state != RunState::Running {
        return Err(DaemonError::Conflict {
            message: format!("run {} is {}: it has no live usage", run.name, run.state),
            hint: "usage is measured while a run is running".into(),
        }
        .into());
    }
    let handle = st.runs.sandbox_handle(&run.id)?;
    let Some(cap) = st.runs.runtime().as_stats() else {
        return Err(DaemonError::Unsupported {
            message: format!("the {} runtime does not measure usage", run.runtime),
            hint: "usage shows for runtimes that report it (native, docker)".into(),
        }
        .into());
    };
    let stats = cap.stats(&handle).await.map_err(DaemonError::from)?;
    ok(&paddock_api::RunStats {
        memory_bytes: stats.memory_bytes,
        pids: stats.pids,
        cpu_usage_ns: stats.cpu_usage_ns,
    })
}

/// `GET /v1/runs/{ref}/audit/verify`: the run's log checked as `paddock audit verify`
/// checks an export (every signed entry, every checkpoint's signature), by the daemon.
async fn audit_verify(State(st): St, Path(r): Path<String>) -> ApiResult {
    let log = run_log(&st, &r)?;
    let audit = audit_of(&st)?;
    let report = tokio::task::spawn_blocking(move || {
        // A log that cannot even be read back (a record whose checksum fails) does not
        // verify: that is the answer, not a server error.
        let bundle = match audit.export(&log) {
            Ok(b) => b,
            Err(DaemonError::Audit { message, .. }) => return Ok(Err(message)),
            Err(e) => return Err(e),
        };
        Ok::<_, DaemonError>(paddock_audit::verify_bundle(&bundle).map_err(|e| e.to_string()))
    })
    .await
    .map_err(|e| DaemonError::Audit {
        message: format!("the audit verification failed: {e}"),
        hint: "see $PADDOCK_HOME/daemon.log".into(),
    })??;
    ok(&match report {
        Ok(r) => paddock_api::AuditVerifyStatus {
            ok: true,
            entries: r.entries,
            checkpoints: r.checkpoints as u64,
            error: None,
        },
        Err(e) => paddock_api::AuditVerifyStatus {
            ok: false,
            entries: 0,
            checkpoints: 0,
            error: Some(e),
        },
    })
}

/// Run `work` on a task of its own, so that a client hanging up cannot cut it in half (a
/// half-created run, a half-restored layer); a task that panicked becomes a conflict
/// saying `what` was interrupted.
async fn detached<T: Send + 'static>(
    what: &str,
    hint: &str,
    work: impl std::future::Future<Output = Result<T, DaemonError>> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::spawn(work)
        .await
        .map_err(|e| DaemonError::Conflict {
            message: format!("{what} was interrupted: {e}"),
            hint: hint.into(),
        })?
}

async fn shutdown(State(st): St) -> ApiResult {
    st.shutdown.notify_one();
    ok(&serde_json::json!({ "shutting_down": true }))
}

fn audit_of(st: &ServerState) -> Result<Arc<Audit>, DaemonError> {
    st.runs
        .bus()
        .audit()
        .cloned()
        .ok_or_else(|| DaemonError::Unsupported {
            message: "this daemon runs without an audit writer".into(),
            hint: "restart the daemon: `paddock daemon restart`".into(),
        })
}

/// Runs a blocking audit read (file I/O, hashing) off the async workers.
async fn audit_blocking<T: serde::Serialize + Send + 'static>(
    st: &ServerState,
    f: impl FnOnce(&Audit) -> Result<T, DaemonError> + Send + 'static,
) -> ApiResult {
    let audit = audit_of(st)?;
    let out = tokio::task::spawn_blocking(move || f(&audit))
        .await
        .map_err(|e| DaemonError::Audit {
            message: format!("the audit reader failed: {e}"),
            hint: "see $PADDOCK_HOME/daemon.log".into(),
        })??;
    ok(&out)
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize, Default)]
struct ProveQuery {
    #[serde(default)]
    entry: Option<u64>,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ConsistencyQuery {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
}

fn run_log(st: &ServerState, r: &str) -> Result<LogRef, DaemonError> {
    Ok(LogRef::Run(st.runs.resolve(r)?.run.id))
}

async fn entries_of(st: &ServerState, log: LogRef, q: AuditQuery) -> ApiResult {
    let since = q.since.as_deref().map(parse_since).transpose()?;
    audit_blocking(st, move |a| {
        a.entries(
            &log,
            q.kind.as_deref().filter(|k| !k.is_empty()),
            since,
            q.limit,
        )
    })
    .await
}

async fn prove_of(st: &ServerState, log: LogRef, q: ProveQuery) -> ApiResult {
    let entry = q.entry.ok_or_else(|| {
        DaemonError::bad_request(
            "`entry` is required",
            "e.g. ?entry=0 (entries count from 0)",
        )
    })?;
    audit_blocking(st, move |a| a.prove(&log, entry, q.size)).await
}

async fn consistency_of(st: &ServerState, log: LogRef, q: ConsistencyQuery) -> ApiResult {
    let from = q.from.ok_or_else(|| {
        DaemonError::bad_request(
            "`from` is required",
            "e.g. ?from=12: the tree size of an older signed checkpoint",
        )
    })?;
    audit_blocking(st, move |a| a.consistency(&log, from, q.to)).await
}

async fn export_of(st: &ServerState, log: LogRef) -> ApiResult {
    let audit = audit_of(st)?;
    let bundle = tokio::task::spawn_blocking(move || audit.export(&log))
        .await
        .map_err(|e| DaemonError::Audit {
            message: format!("the audit export failed: {e}"),
            hint: "see $PADDOCK_HOME/daemon.log".into(),
        })??;
    let mut resp = Response::new(Body::from(bundle.to_json()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

async fn audit_entries(
    State(st): St,
    Path(r): Path<String>,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    let log = run_log(&st, &r)?;
    entries_of(&st, log, q).await
}

async fn audit_export(State(st): St, Path(r): Path<String>) -> ApiResult {
    let log = run_log(&st, &r)?;
    export_of(&st, log).await
}

async fn audit_prove(
    State(st): St,
    Path(r): Path<String>,
    Query(q): Query<ProveQuery>,
) -> ApiResult {
    let log = run_log(&st, &r)?;
    prove_of(&st, log, q).await
}

async fn audit_consistency(
    State(st): St,
    Path(r): Path<String>,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult {
    let log = run_log(&st, &r)?;
    consistency_of(&st, log, q).await
}

async fn daemon_audit_entries(State(st): St, Query(q): Query<AuditQuery>) -> ApiResult {
    entries_of(&st, LogRef::Daemon, q).await
}

async fn daemon_audit_export(State(st): St) -> ApiResult {
    export_of(&st, LogRef::Daemon).await
}

async fn daemon_audit_prove(State(st): St, Query(q): Query<ProveQuery>) -> ApiResult {
    prove_of(&st, LogRef::Daemon, q).await
}

async fn daemon_audit_consistency(State(st): St, Query(q): Query<ConsistencyQuery>) -> ApiResult {
    consistency_of(&st, LogRef::Daemon, q).await
}

async fn audit_key(State(st): St) -> ApiResult {
    ok(&audit_of(&st)?.key())
}
