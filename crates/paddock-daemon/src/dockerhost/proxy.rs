//! The docker:host socket's HTTP side: each request is classified ([`policy::classify`]),
//! checked (with engine lookups for what it names), rewritten, forwarded to the engine on a
//! connection of its own, and recorded on the bus (`docker.call`, so in the run's audit
//! log). Upgraded connections (attach, exec start) are spliced once both sides switch.
//!
//! Never: forwards a request that was not classified, names a container or exec by what
//! the client wrote after checking it (the checked full id is forwarded), or answers about
//! another run's or the host's own containers other than "no such container".

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};

use super::RunScope;
use super::policy::{self, RUN_LABEL, Refusal, Route};
use crate::bus::EventBus;

type Body = BoxBody<Bytes, hyper::Error>;

/// The largest JSON body the proxy reads to check (container configs are a few KiB).
const MAX_JSON_BODY: usize = 4 << 20;

/// What one run's socket serves with.
pub(super) struct Ctx {
    pub engine: std::path::PathBuf,
    pub scope: RunScope,
    pub bus: EventBus,
    /// The id of the run's network holder, once it runs (see [`super::DockerHost::set_holder`]).
    pub holder: Arc<std::sync::RwLock<Option<String>>>,
}

/// Why a request is not forwarded.
enum Stop {
    Refused(Refusal),
    /// Not the run's (or not there): the engine's own wording.
    NotFound(String),
    BadRequest(String),
    Engine(String),
}

impl Stop {
    /// The answer to the client: status, the Docker API error message, the rule refused.
    fn answer(self) -> (StatusCode, String, Option<&'static str>) {
        match self {
            Stop::Refused(r) => (StatusCode::FORBIDDEN, r.text(), Some(r.rule)),
            Stop::NotFound(m) => (StatusCode::NOT_FOUND, m, None),
            Stop::BadRequest(m) => (StatusCode::BAD_REQUEST, m, None),
            Stop::Engine(m) => (
                StatusCode::BAD_GATEWAY,
                format!("paddock could not ask the Docker engine: {m}"),
                None,
            ),
        }
    }
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Self {
        Stop::Refused(r)
    }
}

/// What is forwarded: the rewritten path and query, and the body.
struct Outgoing {
    uri: String,
    body: Body,
}

fn empty() -> Body {
    Empty::new().map_err(|n: Infallible| match n {}).boxed()
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|n: Infallible| match n {})
        .boxed()
}

fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(full(json!({ "message": message }).to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Serve one run's socket until the task is aborted.
pub(super) async fn serve(listener: UnixListener, ctx: Arc<Ctx>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(run = %ctx.scope.run_id, error = %e, "docker:host accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(ctx: &Ctx, mut req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = policy::classify(method.as_str(), &path);
    let down_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let planned = plan(ctx, route, &parts, &mut body).await;
    // Whatever is refused before its body was read: read it first (bounded), so that the
    // client gets the answer instead of a broken pipe.
    if planned.is_err()
        && let Some(b) = body.take()
    {
        drain(b).await;
    }
    let forwarded = match planned {
        Ok(out) => forward(&ctx.engine, &parts, out, down_upgrade)
            .await
            .map_err(|e| {
                (
                    StatusCode::BAD_GATEWAY,
                    format!("paddock could not reach the Docker engine: {e}"),
                    None,
                )
            }),
        Err(stop) => Err(stop.answer()),
    };
    let (status, response, rule) = match forwarded {
        Ok(r) => (r.status(), r, None),
        Err((status, message, rule)) => (status, error_response(status, &message), rule),
    };
    let decision = if rule.is_some() { "refused" } else { "allowed" };
    ctx.bus.publish(
        Some(&ctx.scope.run_id),
        "docker.call",
        json!({
            "method": method.as_str(),
            "path": path,
            "decision": decision,
            "rule": rule,
            "status": status.as_u16(),
        }),
    );
    response
}

/// The forwarded URI: the client's version prefix, a path, and a query.
fn uri(prefix: &str, path: &str, pairs: Option<&[(String, String)]>, raw: Option<&str>) -> String {
    let q = match pairs {
        Some(p) => policy::query_string(p),
        None => raw.unwrap_or("").to_string(),
    };
    if q.is_empty() {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}{path}?{q}")
    }
}

/// The rest of the request body, for forwarding.
fn take(body: &mut Option<Incoming>) -> Body {
    body.take().map_or_else(empty, BodyExt::boxed)
}

async fn read_json(body: &mut Option<Incoming>) -> Result<Value, Stop> {
    let Some(body) = body.take() else {
        return Ok(Value::Object(Default::default()));
    };
    let bytes = Limited::new(body, MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| Stop::BadRequest(format!("the request body could not be read: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Stop::BadRequest(format!("the request body is not JSON: {e}")))
}

fn json_body(v: &Value) -> Body {
    full(v.to_string())
}

fn labels_of(v: &Value) -> Option<&str> {
    v.get("Config")
        .and_then(|c| c.get("Labels"))
        .or_else(|| v.get("Labels"))
        .and_then(|l| l.get(RUN_LABEL))
        .and_then(Value::as_str)
}

/// A name or id as the engine writes them (no path tricks inside a path segment).
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Ctx {
    fn run(&self) -> &str {
        &self.scope.run_id
    }

    /// Whether an engine object (its inspect answer) carries this run's label.
    fn ours(&self, inspected: &Value) -> bool {
        labels_of(inspected) == Some(self.run())
    }

    /// Whether the engine is the run's own (docker:dind): every image in it is the run's.
    fn private(&self) -> bool {
        self.scope.private_engine.is_some()
    }

    /// The run's network holder on the host's engine, if it has one.
    fn holder(&self) -> Option<String> {
        self.holder
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What network its containers get: a private engine's is the run's own; on the host's
    /// engine, the run's holder's (governed by the run's egress), or none without one.
    fn net<'a>(&self, holder: Option<&'a str>) -> policy::EngineNet<'a> {
        match holder {
            _ if self.private() => policy::EngineNet::Governed,
            Some(id) => policy::EngineNet::Joined(id),
            None => policy::EngineNet::Cut,
        }
    }

    /// `GET path` on the engine: its status and answer.
    async fn inspect(&self, path: &str) -> Result<(StatusCode, Value), Stop> {
        engine_json(&self.engine, Method::GET, path, None).await
    }

    /// The full id of one of the run's containers; anything else is "no such container".
    async fn own_container(&self, reference: &str) -> Result<(String, Value), Stop> {
        let missing = || Stop::NotFound(format!("No such container: {reference}"));
        if !plain_name(reference) {
            return Err(missing());
        }
        let (status, v) = self
            .inspect(&format!("/containers/{reference}/json"))
            .await?;
        if status != StatusCode::OK || !self.ours(&v) {
            return Err(missing());
        }
        let id = v["Id"].as_str().unwrap_or_default().to_string();
        if !plain_name(&id) {
            return Err(missing());
        }
        Ok((id, v))
    }

    /// An image the run may overwrite with a tag: absent, or built by the run.
    async fn may_tag(&self, reference: &str) -> Result<(), Stop> {
        policy::check_tag_name(reference)?;
        if self.private() {
            return Ok(());
        }
        let (status, v) = self
            .inspect(&format!("/images/{}/json", image_path(reference)?))
            .await?;
        if status == StatusCode::OK && !self.ours(&v) {
            return Err(Refusal::new(
                "image tags",
                format!(
                    "the tag `{}` names an image this run did not build",
                    reference.escape_default()
                ),
            )
            .into());
        }
        Ok(())
    }

    /// A registry the engine may reach for this run: one its egress policy allows.
    fn check_registry(&self, reference: &str, what: &str) -> Result<(), Stop> {
        let (registry, _) = policy::split_registry(reference);
        let (hosts, port) = policy::registry_hosts(registry);
        let allowed = hosts.iter().any(|h| {
            self.scope
                .policy
                .decide(&paddock_egress::Query::conn(h, port))
                .allowed
        });
        if !allowed {
            return Err(Refusal::new(
                "registry",
                format!(
                    "{what} `{}`: the registry {registry} is not allowed by the run's egress policy",
                    reference.escape_default()
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Named volumes of a container create: the run's, or made now (labelled).
    async fn own_volumes(&self, names: &[String]) -> Result<(), Stop> {
        for name in names {
            if !plain_name(name) {
                return Err(Refusal::new(
                    "volumes",
                    format!("the volume name `{}`", name.escape_default()),
                )
                .into());
            }
            let (status, v) = self.inspect(&format!("/volumes/{name}")).await?;
            if status == StatusCode::OK {
                if !self.ours(&v) {
                    return Err(Refusal::new(
                        "volumes",
                        format!("the volume `{name}` belongs to something other than this run"),
                    )
                    .into());
                }
            } else if status == StatusCode::NOT_FOUND {
                let body = json!({ "Name": name, "Labels": { RUN_LABEL: self.run() } });
                let (status, v) =
                    engine_json(&self.engine, Method::POST, "/volumes/create", Some(body)).await?;
                if !status.is_success() {
                    return Err(Stop::Engine(format!("creating the volume {name}: {v}")));
                }
            } else {
                return Err(Stop::Engine(format!("inspecting the volume {name}: {v}")));
            }
        }
        Ok(())
    }
}

/// An image reference as a path segment: refs may hold `/` and `:` but nothing odd.
fn image_path(reference: &str) -> Result<&str, Stop> {
    let ok = !reference.is_empty()
        && reference.len() <= 512
        && !reference.contains("..")
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/:@".contains(c));
    if ok {
        Ok(reference)
    } else {
        Err(Stop::BadRequest(format!(
            "invalid reference format: {}",
            reference.escape_default()
        )))
    }
}

/// Re-check a container's bind sources before it starts: each still its own real path
/// (no symlink put in since the create) beneath the workspace.
fn recheck_binds(inspect: &Value, scope: &RunScope) -> Result<(), Stop> {
    let Some(mounts) = inspect.get("Mounts").and_then(Value::as_array) else {
        return Ok(());
    };
    for m in mounts {
        if m.get("Type").and_then(Value::as_str) != Some("bind") {
            continue;
        }
        let src = Path::new(m.get("Source").and_then(Value::as_str).unwrap_or(""));
        let real = policy::check_bind(src, &scope.workspace)?;
        if real != src {
            return Err(Refusal::new(
                "bind mounts",
                format!(
                    "the bind source {} changed into a link since the container was made",
                    src.display()
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// Check and rewrite one request (or refuse it).
async fn plan(
    ctx: &Ctx,
    route: Route,
    parts: &http::request::Parts,
    body: &mut Option<Incoming>,
) -> Result<Outgoing, Stop> {
    let (prefix, bare) = policy::split_version(parts.uri.path());
    let raw_query = parts.uri.query();
    let passthrough = |path: &str, body: &mut Option<Incoming>| Outgoing {
        uri: uri(prefix, path, None, raw_query),
        body: take(body),
    };
    match route {
        // A private engine's images are all the run's: loading one replaces nothing else.
        Route::Refused(r) if ctx.private() && r.rule == "image import" => {
            Ok(passthrough(bare, body))
        }
        Route::Refused(r) => Err(r.into()),
        Route::Pass => Ok(passthrough(bare, body)),
        Route::Filtered => {
            let mut pairs = policy::query_pairs(raw_query);
            let f = policy::add_label_filter(policy::param(&pairs, "filters"), ctx.run())?;
            pairs.retain(|(k, _)| k != "filters");
            pairs.push(("filters".into(), f));
            Ok(Outgoing {
                uri: uri(prefix, bare, Some(&pairs), None),
                body: take(body),
            })
        }
        Route::CreateContainer => {
            let mut v = read_json(body).await?;
            let holder = ctx.holder();
            let net = ctx.net(holder.as_deref());
            let needs = policy::check_container(&mut v, ctx.run(), &ctx.scope.workspace, net)?;
            for c in &needs.containers {
                // A 404 on create reads to the CLI as a missing image: refuse instead.
                if ctx.own_container(c).await.is_err() {
                    return Err(Refusal::new(
                        "other containers",
                        format!(
                            "joining or sharing `{}`, which is not one of this run's containers",
                            c.escape_default()
                        ),
                    )
                    .into());
                }
            }
            ctx.own_volumes(&needs.volumes).await?;
            Ok(Outgoing {
                uri: uri(prefix, bare, None, raw_query),
                body: json_body(&v),
            })
        }
        Route::Container { id, op } => {
            let (full_id, inspect) = ctx.own_container(&id).await?;
            if matches!(op.as_str(), "start" | "restart") {
                recheck_binds(&inspect, &ctx.scope)?;
            }
            let path = if op.is_empty() {
                format!("/containers/{full_id}")
            } else {
                format!("/containers/{full_id}/{op}")
            };
            if op == "update" {
                // Resources only; a restart policy is fine. Nothing that widens the box.
                let v = read_json(body).await?;
                if v.get("Privileged").is_some() || v.get("CapAdd").is_some() {
                    return Err(
                        Refusal::new("privileged", "widening a container with update").into(),
                    );
                }
                return Ok(Outgoing {
                    uri: uri(prefix, &path, None, raw_query),
                    body: json_body(&v),
                });
            }
            Ok(passthrough(&path, body))
        }
        Route::CreateExec { id } => {
            let (full_id, _) = ctx.own_container(&id).await?;
            let v = read_json(body).await?;
            policy::check_exec(&v)?;
            Ok(Outgoing {
                uri: uri(
                    prefix,
                    &format!("/containers/{full_id}/exec"),
                    None,
                    raw_query,
                ),
                body: json_body(&v),
            })
        }
        Route::Exec { id, op } => {
            let missing = || Stop::NotFound(format!("No such exec instance: {id}"));
            if !plain_name(&id) {
                return Err(missing());
            }
            let (status, v) = ctx.inspect(&format!("/exec/{id}/json")).await?;
            let container = v.get("ContainerID").and_then(Value::as_str).unwrap_or("");
            if status != StatusCode::OK || ctx.own_container(container).await.is_err() {
                return Err(missing());
            }
            let full_id = v
                .get("ID")
                .and_then(Value::as_str)
                .unwrap_or(&id)
                .to_string();
            if !plain_name(&full_id) {
                return Err(missing());
            }
            Ok(passthrough(&format!("/exec/{full_id}/{op}"), body))
        }
        Route::Pull => {
            let pairs = policy::query_pairs(raw_query);
            // An import from the request's own body (`docker import -`), into a private
            // engine; one from a URL would be a download the registry check does not see.
            if ctx.private() && policy::param(&pairs, "fromSrc") == Some("-") {
                return Ok(passthrough(bare, body));
            }
            let reference = policy::pull_reference(&pairs)?;
            policy::check_tag_name(&reference)?;
            ctx.check_registry(&reference, "pulling")?;
            Ok(passthrough(bare, body))
        }
        Route::Push { name } => {
            ctx.check_registry(&name, "pushing")?;
            Ok(passthrough(bare, body))
        }
        Route::Tag { name } => {
            let pairs = policy::query_pairs(raw_query);
            image_path(&name)?;
            ctx.may_tag(&policy::repo_tag(&pairs).unwrap_or_default())
                .await?;
            Ok(passthrough(bare, body))
        }
        Route::RemoveImage { name } => {
            let (status, v) = ctx
                .inspect(&format!("/images/{}/json", image_path(&name)?))
                .await?;
            if status != StatusCode::OK {
                return Err(Stop::NotFound(format!("No such image: {name}")));
            }
            if !ctx.private() && !ctx.ours(&v) {
                return Err(Refusal::new(
                    "image removal",
                    format!(
                        "removing `{}`, an image this run did not build",
                        name.escape_default()
                    ),
                )
                .into());
            }
            Ok(passthrough(bare, body))
        }
        Route::Build => {
            let mut pairs = policy::query_pairs(raw_query);
            let holder = ctx.holder();
            for t in &policy::check_build(&mut pairs, ctx.run(), ctx.net(holder.as_deref()))? {
                ctx.may_tag(t).await?;
            }
            Ok(Outgoing {
                uri: uri(prefix, bare, Some(&pairs), None),
                body: take(body),
            })
        }
        Route::Commit => {
            let mut pairs = policy::query_pairs(raw_query);
            let container = policy::param(&pairs, "container").unwrap_or_default();
            let (full_id, _) = ctx.own_container(container).await?;
            if let Some(target) = policy::repo_tag(&pairs) {
                ctx.may_tag(&target).await?;
            }
            for (k, v) in pairs.iter_mut() {
                if k == "container" {
                    *v = full_id.clone();
                }
            }
            Ok(Outgoing {
                uri: uri(prefix, bare, Some(&pairs), None),
                body: take(body),
            })
        }
        Route::CreateVolume => {
            let mut v = read_json(body).await?;
            policy::check_volume(&mut v, ctx.run())?;
            if let Some(name) = v.get("Name").and_then(Value::as_str)
                && !name.is_empty()
                && !plain_name(name)
            {
                return Err(Refusal::new(
                    "volumes",
                    format!("the volume name `{}`", name.escape_default()),
                )
                .into());
            }
            Ok(Outgoing {
                uri: uri(prefix, bare, None, raw_query),
                body: json_body(&v),
            })
        }
        Route::Volume { name } => {
            let missing = || Stop::NotFound(format!("get {name}: no such volume"));
            if !plain_name(&name) {
                return Err(missing());
            }
            let (status, v) = ctx.inspect(&format!("/volumes/{name}")).await?;
            if status != StatusCode::OK || !ctx.ours(&v) {
                return Err(missing());
            }
            Ok(passthrough(&format!("/volumes/{name}"), body))
        }
    }
}

/// Read and drop what the client is still sending (a build context, an image tarball).
/// Bounded in size and time: a client that keeps sending gets the connection closed.
async fn drain(mut body: Incoming) {
    const LIMIT: usize = 256 << 20;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

/// Send one request to the engine on a connection of its own (kept for an upgrade).
async fn engine_request(engine: &Path, req: Request<Body>) -> Result<Response<Incoming>, String> {
    let stream = UnixStream::connect(engine)
        .await
        .map_err(|e| format!("{}: {e}", engine.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// A JSON call of paddock's own to the engine: status and body (`null` when not JSON).
async fn engine_json(
    engine: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), Stop> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "docker");
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            full(v.to_string())
        }
        None => empty(),
    };
    let req = req
        .body(body)
        .map_err(|e| Stop::Engine(format!("{path}: {e}")))?;
    let resp = engine_request(engine, req).await.map_err(Stop::Engine)?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), 64 << 20)
        .collect()
        .await
        .map_err(|e| Stop::Engine(format!("{path}: {e}")))?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Forward a checked request; splice the two connections when the engine upgrades.
async fn forward(
    engine: &Path,
    parts: &http::request::Parts,
    out: Outgoing,
    down_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, String> {
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(&out.uri);
    for (k, v) in &parts.headers {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            builder = builder.header(k, v);
        }
    }
    if !parts.headers.contains_key(header::HOST) {
        builder = builder.header(header::HOST, "docker");
    }
    let req = builder.body(out.body).map_err(|e| e.to_string())?;
    let mut resp = engine_request(engine, req).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(down), Ok(up)) = tokio::join!(down_upgrade, up) else {
                return;
            };
            let mut down = TokioIo::new(down);
            let mut up = TokioIo::new(up);
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
        let (p, _) = resp.into_parts();
        return Ok(Response::from_parts(p, empty()));
    }
    let (mut p, body) = resp.into_parts();
    p.headers.remove(header::TRANSFER_ENCODING);
    Ok(Response::from_parts(p, body.boxed()))
}

/// Remove everything a run made through its socket: containers (forced, with their
/// anonymous volumes), then its volumes. Returns how many objects went.
pub(super) async fn remove_run(engine: &Path, run_id: &str) -> Result<usize, String> {
    let filters = policy::add_label_filter(None, run_id).map_err(|r| r.text())?;
    let q = policy::query_string(&[
        ("all".into(), "1".into()),
        ("filters".into(), filters.clone()),
    ]);
    let containers = engine_json(engine, Method::GET, &format!("/containers/json?{q}"), None)
        .await
        .map_err(stop_text)?
        .1;
    let mut n = remove_each(engine, containers.as_array(), "Id", |id| {
        format!("/containers/{id}?force=1&v=1")
    })
    .await?;
    let q = policy::query_string(&[("filters".into(), filters)]);
    let volumes = engine_json(engine, Method::GET, &format!("/volumes?{q}"), None)
        .await
        .map_err(stop_text)?
        .1;
    n += remove_each(
        engine,
        volumes.get("Volumes").and_then(Value::as_array),
        "Name",
        |name| format!("/volumes/{name}?force=1"),
    )
    .await?;
    Ok(n)
}

fn stop_text(s: Stop) -> String {
    match s {
        Stop::Engine(m) | Stop::NotFound(m) | Stop::BadRequest(m) => m,
        Stop::Refused(r) => r.text(),
    }
}

/// DELETE each listed object by its `key` (already gone is fine); how many went.
async fn remove_each(
    engine: &Path,
    items: Option<&Vec<Value>>,
    key: &str,
    path: impl Fn(&str) -> String,
) -> Result<usize, String> {
    let mut n = 0;
    for item in items.into_iter().flatten() {
        let Some(name) = item
            .get(key)
            .and_then(Value::as_str)
            .filter(|i| plain_name(i))
        else {
            continue;
        };
        let (status, body) = engine_json(engine, Method::DELETE, &path(name), None)
            .await
            .map_err(stop_text)?;
        if status.is_success() {
            n += 1;
        } else if status != StatusCode::NOT_FOUND {
            return Err(format!("removing {name}: {body}"));
        }
    }
    Ok(n)
}
