//! The Unix-socket client: one HTTP/1.1 connection per request (connecting to a Unix
//! socket costs microseconds, and it keeps the client free of pooling state).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::types::*;

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (daemon not running).
    #[error("cannot connect to the paddock daemon at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with the error envelope.
    #[error("{}", .body.error.message)]
    Api { status: u16, body: ErrorBody },
    /// The daemon does not know this endpoint: it is older than this client.
    #[error("the running paddock daemon does not support {what}")]
    OlderDaemon { what: String },
    /// Transport or protocol failure.
    #[error("talking to the paddock daemon failed: {0}")]
    Transport(String),
}

impl ClientError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Connect { .. } => {
                Some("start it with `paddock daemon`, or check `paddock daemon status`".into())
            }
            ClientError::Api { body, .. } => body.error.hint.clone(),
            ClientError::OlderDaemon { .. } => Some(
                "restart the daemon to pick up the new version: `paddock daemon restart`".into(),
            ),
            ClientError::Transport(_) => {
                Some("see the daemon's log: $PADDOCK_HOME/daemon.log".into())
            }
        }
    }

    /// The envelope's code, if the daemon answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.error.code),
            _ => None,
        }
    }
}

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

/// Which audit log a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditLog<'a> {
    /// A run's log (id, id prefix or name).
    Run(&'a str),
    /// The daemon's own log.
    Daemon,
}

impl AuditLog<'_> {
    fn path(&self) -> String {
        match self {
            AuditLog::Run(r) => format!("/v1/runs/{}/audit", enc(r)),
            AuditLog::Daemon => "/v1/audit/daemon".to_string(),
        }
    }
}

/// A client of one daemon socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// Newline-delimited JSON log stream.
pub struct LogStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl LogStream {
    /// The next line, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<LogLine>, ClientError> {
        loop {
            if let Some(line) = take_log_line(&mut self.buf) {
                return line.map(Some).map_err(transport);
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(transport(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Server-sent event stream of [`Event`]s.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(event) = take_event(&mut self.buf) {
                return event.map(Some).map_err(transport);
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(transport(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Takes the next newline-delimited JSON record off the front of `buf`; `None` until a
/// whole line has arrived (empty lines are skipped).
pub fn take_log_line(buf: &mut Vec<u8>) -> Option<Result<LogLine, serde_json::Error>> {
    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=pos).collect();
        if line.len() <= 1 {
            continue;
        }
        return Some(serde_json::from_slice(&line));
    }
    None
}

/// Takes the next server-sent event off the front of `buf` (its `data:` lines joined);
/// `None` until a whole event has arrived (comments and keep-alives are skipped).
pub fn take_event(buf: &mut Vec<u8>) -> Option<Result<Event, serde_json::Error>> {
    while let Some(pos) = find_double_newline(buf) {
        let block: Vec<u8> = buf.drain(..pos + 2).collect();
        let text = String::from_utf8_lossy(&block);
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|l| l.trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        if data.is_empty() {
            continue; // comment / keep-alive
        }
        return Some(serde_json::from_str(&data));
    }
    None
}

/// One event as a server-sent event, the frame [`take_event`] reads: `event:` is its kind,
/// `data:` the whole event, `id:` its seq. A notice (seq 0, such as `dropped`) has no id,
/// so a client's `Last-Event-ID` stays on the last real event.
pub fn sse_frame(ev: &Event) -> String {
    let data = serde_json::to_string(ev).unwrap_or_default();
    if ev.seq == 0 {
        format!("event: {}\ndata: {data}\n\n", ev.kind)
    } else {
        format!("id: {}\nevent: {}\ndata: {data}\n\n", ev.seq, ev.kind)
    }
}

fn find_double_newline(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\n\n")
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut sender = self.connect().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "paddock");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(transport)?;
        sender.send_request(req).await.map_err(transport)
    }

    async fn check(
        resp: Response<Incoming>,
        what: &str,
    ) -> Result<Response<Incoming>, ClientError> {
        let status = resp.status();
        if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                body,
            }),
            Err(_) if status == StatusCode::NOT_FOUND => Err(ClientError::OlderDaemon {
                what: what.to_string(),
            }),
            Err(_) => Err(ClientError::Transport(format!(
                "unexpected answer {status}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(|b| serde_json::to_vec(b))
            .transpose()
            .map_err(transport)?;
        let resp = self.send(method, path, body).await?;
        let resp = Self::check(resp, path).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Transport(format!("bad answer from daemon for {path}: {e}")))
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    pub async fn create_run(&self, req: &CreateRun) -> Result<Run, ClientError> {
        self.call(Method::POST, "/v1/runs", Some(req)).await
    }

    /// All runs, or only live ones.
    pub async fn list_runs(&self, all: bool) -> Result<RunList, ClientError> {
        let path = if all { "/v1/runs?all=1" } else { "/v1/runs" };
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn get_run(&self, run: &str) -> Result<Run, ClientError> {
        self.call(Method::GET, &format!("/v1/runs/{}", enc(run)), None::<&()>)
            .await
    }

    pub async fn start_run(&self, run: &str) -> Result<Run, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/runs/{}/start", enc(run)),
            Some(&serde_json::json!({})),
        )
        .await
    }

    pub async fn stop_run(&self, run: &str, req: &StopRequest) -> Result<Run, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/runs/{}/stop", enc(run)),
            Some(req),
        )
        .await
    }

    pub async fn wait_run(&self, run: &str) -> Result<WaitResult, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/runs/{}/wait", enc(run)),
            None::<&()>,
        )
        .await
    }

    pub async fn delete_run(&self, run: &str, force: bool) -> Result<Run, ClientError> {
        let path = format!(
            "/v1/runs/{}{}",
            enc(run),
            if force { "?force=1" } else { "" }
        );
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    pub async fn diff(&self, run: &str, patch: bool) -> Result<DiffResponse, ClientError> {
        self.diff_from(run, patch, None).await
    }

    /// [`Client::diff`], since snapshot `from` when given.
    pub async fn diff_from(
        &self,
        run: &str,
        patch: bool,
        from: Option<&str>,
    ) -> Result<DiffResponse, ClientError> {
        let mut q = Vec::new();
        if patch {
            q.push("patch=1".to_string());
        }
        if let Some(f) = from {
            q.push(format!("from={}", enc(f)));
        }
        let path = with_query(format!("/v1/runs/{}/diff", enc(run)), &q);
        self.call(Method::GET, &path, None::<&()>).await
    }

    pub async fn snapshot(
        &self,
        run: &str,
        req: &crate::SnapshotRequest,
    ) -> Result<crate::Snapshot, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/runs/{}/snapshots", enc(run)),
            Some(req),
        )
        .await
    }

    pub async fn snapshots(&self, run: &str) -> Result<crate::SnapshotList, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/runs/{}/snapshots", enc(run)),
            None::<&()>,
        )
        .await
    }

    pub async fn discard(
        &self,
        run: &str,
        req: &crate::DiscardRequest,
    ) -> Result<crate::DiscardResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/runs/{}/discard", enc(run)),
            Some(req),
        )
        .await
    }

    pub async fn rollback(
        &self,
        run: &str,
        req: &crate::RollbackRequest,
    ) -> Result<crate::RollbackResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/runs/{}/rollback", enc(run)),
            Some(req),
        )
        .await
    }

    pub async fn apply(&self, run: &str, req: &ApplyRequest) -> Result<ApplyResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/runs/{}/apply", enc(run)),
            Some(req),
        )
        .await
    }

    /// Entries of an audit log: of one `kind` (exact, or a prefix ending in `.`), `since`
    /// (RFC 3339 or a duration back from now), the newest `limit`.
    pub async fn audit_entries(
        &self,
        log: AuditLog<'_>,
        kind: Option<&str>,
        since: Option<&str>,
        limit: Option<usize>,
    ) -> Result<AuditEntries, ClientError> {
        let mut q = Vec::new();
        if let Some(k) = kind {
            q.push(format!("type={}", enc(k)));
        }
        if let Some(s) = since {
            q.push(format!("since={}", enc(s)));
        }
        if let Some(n) = limit {
            q.push(format!("limit={n}"));
        }
        let path = with_query(log.path(), &q);
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// The export bundle (paddock-audit's bundle format), as the daemon sent it.
    pub async fn audit_export(&self, log: AuditLog<'_>) -> Result<Vec<u8>, ClientError> {
        let path = format!("{}/export", log.path());
        let resp = self.send(Method::GET, &path, None).await?;
        let resp = Self::check(resp, "audit export").await?;
        Ok(resp
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes()
            .to_vec())
    }

    /// Inclusion proof of entry `entry` against the signed checkpoint of tree size `size`
    /// (default: the latest): `{log_id, entry, proof, checkpoint, public_key}`.
    pub async fn audit_prove(
        &self,
        log: AuditLog<'_>,
        entry: u64,
        size: Option<u64>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut q = vec![format!("entry={entry}")];
        if let Some(s) = size {
            q.push(format!("size={s}"));
        }
        let path = with_query(format!("{}/prove", log.path()), &q);
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// Consistency proof between the signed checkpoints of sizes `from` and `to` (default:
    /// the latest): `{log_id, proof, old, new, public_key}`.
    pub async fn audit_consistency(
        &self,
        log: AuditLog<'_>,
        from: u64,
        to: Option<u64>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut q = vec![format!("from={from}")];
        if let Some(t) = to {
            q.push(format!("to={t}"));
        }
        let path = with_query(format!("{}/consistency", log.path()), &q);
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// The public key that signs audit checkpoints.
    pub async fn audit_key(&self) -> Result<AuditKey, ClientError> {
        self.call(Method::GET, "/v1/audit/key", None::<&()>).await
    }

    /// The hostname router's port, state and route table (capability `router`).
    pub async fn router_status(&self) -> Result<RouterStatus, ClientError> {
        self.call(Method::GET, "/v1/router", None::<&()>).await
    }

    /// The local CA's certificate (capability `ca`).
    pub async fn ca_certificate(&self) -> Result<CaCertificate, ClientError> {
        self.call(Method::GET, "/v1/ca", None::<&()>).await
    }

    /// Start the web dashboard (if need be) and mint a one-time login URL.
    pub async fn ui_login(&self) -> Result<crate::UiLogin, ClientError> {
        self.call(Method::POST, "/v1/ui/login", Some(&serde_json::json!({})))
            .await
    }

    /// The dashboard's bearer token (starts the dashboard if need be).
    pub async fn ui_token(&self) -> Result<crate::UiToken, ClientError> {
        self.call(Method::GET, "/v1/ui/token", None::<&()>).await
    }

    pub async fn shutdown(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::POST, "/v1/shutdown", Some(&serde_json::json!({})))
            .await
    }

    pub async fn logs(
        &self,
        run: &str,
        tail: Option<usize>,
        follow: bool,
    ) -> Result<LogStream, ClientError> {
        let mut path = format!("/v1/runs/{}/logs?follow={}", enc(run), u8::from(follow));
        if let Some(n) = tail {
            path.push_str(&format!("&tail={n}"));
        }
        let resp = self.send(Method::GET, &path, None).await?;
        let resp = Self::check(resp, "logs").await?;
        Ok(LogStream {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }

    pub async fn events(&self, run: Option<&str>) -> Result<EventStream, ClientError> {
        self.events_filtered(run, &[], None).await
    }

    /// The event stream of one run or all, of kinds starting with one of `kinds` (all when
    /// empty), resumed after event `after` from the daemon's history.
    pub async fn events_filtered(
        &self,
        run: Option<&str>,
        kinds: &[String],
        after: Option<u64>,
    ) -> Result<EventStream, ClientError> {
        let mut query = Vec::new();
        if let Some(r) = run {
            query.push(format!("run={}", enc(r)));
        }
        if !kinds.is_empty() {
            query.push(format!("type={}", enc(&kinds.join(","))));
        }
        if let Some(a) = after {
            query.push(format!("after={a}"));
        }
        let path = with_query("/v1/events".to_string(), &query);
        let resp = self.send(Method::GET, &path, None).await?;
        let resp = Self::check(resp, "events").await?;
        Ok(EventStream {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }

    /// Upgrade to the attach protocol ([`crate::attach`]). With `start`, a `created` run is
    /// started once the stream is in place, so no output is missed.
    pub async fn attach(
        &self,
        run: &str,
        start: bool,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        let path = format!("/v1/runs/{}/attach?start={}", enc(run), u8::from(start));
        self.upgrade(Method::GET, &path, None, "attach")
            .await?
            .map_err(|s| ClientError::Transport(format!("attach was not upgraded: {s}")))
    }

    /// Send a request asking for the attach upgrade; the upgraded connection, or the
    /// daemon's error; `Ok(Err(status))` when the answer was not an upgrade.
    async fn upgrade(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<Result<TokioIo<hyper::upgrade::Upgraded>, StatusCode>, ClientError> {
        let mut sender = self.connect().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "paddock")
            .header("connection", "upgrade")
            .header("upgrade", crate::attach::UPGRADE_PROTOCOL);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(transport)?;
        let resp = sender.send_request(req).await.map_err(transport)?;
        let resp = Self::check(resp, what).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Err(resp.status()));
        }
        let upgraded = hyper::upgrade::on(resp).await.map_err(transport)?;
        Ok(Ok(TokioIo::new(upgraded)))
    }

    /// Create a run and attach to it in one request: `POST /v1/runs` with the attach
    /// upgrade. The daemon creates the run (`req.start` is ignored), answers `101`, sends the
    /// run as the first frame ([`crate::attach::Frame::Run`]) and then starts it, so no
    /// output is missed. A refused create answers with the usual error envelope.
    pub async fn create_and_attach(
        &self,
        req: &CreateRun,
    ) -> Result<(Run, TokioIo<hyper::upgrade::Upgraded>), ClientError> {
        let body = serde_json::to_vec(req).map_err(transport)?;
        let mut io = self
            .upgrade(Method::POST, "/v1/runs", Some(body), "/v1/runs")
            .await?
            // A daemon without create-and-attach answers a plain create.
            .map_err(|_| ClientError::OlderDaemon {
                what: "create-and-attach (POST /v1/runs with an upgrade)".into(),
            })?;
        match crate::attach::read_frame(&mut io)
            .await
            .map_err(transport)?
        {
            Some(crate::attach::Frame::Run(json)) => {
                let run = serde_json::from_slice(&json).map_err(|e| {
                    ClientError::Transport(format!("bad run frame from the daemon: {e}"))
                })?;
                Ok((run, io))
            }
            Some(_) => Err(ClientError::Transport(
                "the daemon's first frame was not the run".into(),
            )),
            None => Err(ClientError::Transport(
                "the daemon closed the session before sending the run".into(),
            )),
        }
    }

    /// Run a command in a running run's sandbox (capability `exec`) and upgrade to the
    /// attach protocol for its I/O; the last frame is `Exit` with an [`ExecResult`].
    pub async fn exec(
        &self,
        run: &str,
        req: &ExecRequest,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        let path = format!("/v1/runs/{}/exec", enc(run));
        let body = serde_json::to_vec(req).map_err(transport)?;
        self.upgrade(Method::POST, &path, Some(body), "exec")
            .await?
            .map_err(|s| ClientError::Transport(format!("exec was not upgraded: {s}")))
    }
}

fn with_query(path: String, q: &[String]) -> String {
    if q.is_empty() {
        return path;
    }
    format!("{path}?{}", q.join("&"))
}

/// Percent-encode a path segment (run refs are `[a-z0-9_-]`, but input is the user's).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
