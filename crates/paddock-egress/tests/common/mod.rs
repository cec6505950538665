//! Test harness: real native sandboxes (root only), local upstream servers with a test CA
//! reached through `upstream.resolve`, and a run's egress in between.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use paddock_config::{NetworkConfig, UpstreamConfig};
use paddock_egress::*;
use paddock_sandbox::native::{NativeConfig, NativeRuntime};
use paddock_sandbox::*;

/// Set when the rootless test re-executes a test binary as uid 65534.
pub const ROOTLESS_INNER: &str = "PADDOCK_EGRESS_ROOTLESS_INNER";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Print why a test does nothing (never a silent pass).
pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

/// What the upstream saw: (method, path, headers).
pub type Seen = Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>;

type TBody = BoxBody<Bytes, Infallible>;

/// A body fed by a channel (SSE).
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

async fn handle(seen: Seen, mut req: Request<Incoming>) -> Result<Response<TBody>, Infallible> {
    if req.uri().path() == "/ws" {
        // An upgrade: after the 101, echo "pong:" + whatever arrives.
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4];
                if io.read_exact(&mut buf).await.is_ok() {
                    let mut out = b"pong:".to_vec();
                    out.extend_from_slice(&buf);
                    let _ = io.write_all(&out).await;
                    let _ = io.flush().await;
                }
            }
        });
        let mut r = Response::new(http_body_util::Empty::new().boxed());
        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        return Ok(r);
    }
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/echo-token" {
        let v = parts
            .headers
            .get("x-test-token")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        return Ok(Response::new(
            http_body_util::Full::new(Bytes::from(format!("token={v}\n"))).boxed(),
        ));
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().push((
        parts.method.to_string(),
        parts.uri.path().to_string(),
        parts.headers.clone(),
    ));
    if parts.uri.path() == "/sse" {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for i in 0..4 {
                if tx
                    .send(Bytes::from(format!("data: event {i}\n\n")))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let mut r = Response::new(ChanBody(rx).boxed());
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(r);
    }
    let text = format!(
        "ok {} {} {:?} body={}\n",
        parts.method,
        parts.uri.path(),
        parts.version,
        body.len()
    );
    Ok(Response::new(
        http_body_util::Full::new(Bytes::from(text)).boxed(),
    ))
}

/// A TLS (h2 + http/1.1) and a plain HTTP upstream on 127.0.0.1, with their own test CA.
pub struct Upstreams {
    pub tls_addr: SocketAddr,
    pub plain_addr: SocketAddr,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub seen: Seen,
    _dir: tempfile::TempDir,
}

pub const NAMES: [&str; 5] = [
    "api.test",
    "sse.test",
    "other.test",
    "pass.test",
    "deny.test",
];

pub async fn upstreams() -> Upstreams {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "egress test upstream CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
    let seen: Seen = Arc::default();

    let tls_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = tls_l.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = tls_l.accept().await {
            let acceptor = acceptor.clone();
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |r| handle(s.clone(), r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let plain_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain_l.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = plain_l.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |r| handle(s.clone(), r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Upstreams {
        tls_addr,
        plain_addr,
        ca_pem: ca_cert.pem(),
        ca_path,
        seen,
        _dir: dir,
    }
}

/// A test injector: `x-test-token: real-secret` on api.test, grant "testgrant".
pub struct TestInjector;

impl Injector for TestInjector {
    fn on_request(
        &self,
        dest: paddock_egress::Dest<'_>,
        parts: &mut http::request::Parts,
    ) -> Vec<GrantUse> {
        if dest.host == "api.test" {
            parts
                .headers
                .insert("x-test-token", "real-secret".parse().unwrap());
            vec![GrantUse {
                grant: "testgrant".into(),
            }]
        } else {
            vec![]
        }
    }

    fn response_body(
        &self,
        _: paddock_egress::Dest<'_>,
        uses: &[GrantUse],
    ) -> Option<Box<dyn BodyRewriter>> {
        (!uses.is_empty()).then(|| Box::new(Scrub) as Box<dyn BodyRewriter>)
    }
}

/// Real value → placeholder (whole-chunk replacement; enough for the test's short bodies).
struct Scrub;

impl BodyRewriter for Scrub {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        let s = String::from_utf8_lossy(&data).replace("real-secret", "PLACEHOLDER");
        Bytes::from(s)
    }
    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }
}

pub struct Fixture {
    pub rt: Arc<NativeRuntime>,
    pub handle: SandboxHandle,
    pub egress: Option<RunEgress>,
    pub records: Arc<Mutex<Vec<NetRecord>>>,
    pub up: Upstreams,
    pub env: Vec<(String, String)>,
    pub workspace: PathBuf,
    _tmp: tempfile::TempDir,
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A running sandbox (`sleep`) with egress set up; `None` (after saying why) when this
/// machine cannot run one.
pub async fn fixture(network: NetworkConfig, plain_names: &[&str]) -> Option<Fixture> {
    fixture_with(network, plain_names, vec![]).await
}

/// [`fixture`] with transparent listeners on `extra_ports` too.
pub async fn fixture_with(
    network: NetworkConfig,
    plain_names: &[&str],
    extra_ports: Vec<u16>,
) -> Option<Fixture> {
    if !is_root() && std::env::var_os(ROOTLESS_INNER).is_none() {
        skip("egress integration tests need root (real network namespaces and ports < 1024)");
        return None;
    }
    let up = upstreams().await;
    let tmp = tempfile::Builder::new().prefix("pdke").tempdir().unwrap();
    let home = tmp.path().join("ph");
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let run_id = format!("run_e{:05x}{:06x}", std::process::id() & 0xfffff, n);
    let run_dir = home.join("runs").join(&run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let workspace = tmp.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();

    let mut resolve = BTreeMap::new();
    for name in NAMES {
        let addr = if plain_names.contains(&name) {
            up.plain_addr
        } else {
            up.tls_addr
        };
        resolve.insert(name.to_string(), addr);
    }
    // Literal IPs used by tests never leave the machine either.
    resolve.insert("203.0.113.7".into(), up.plain_addr);
    let shared = EgressShared::new(
        &home.join("ca"),
        &UpstreamConfig {
            extra_ca: Some(up.ca_path.clone()),
            resolve,
        },
    )
    .unwrap();
    let net = sandbox_net(shared.ca.cert_pem());
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_string(),
        ),
        ("HOME".into(), "/home/agent".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    apply_env(&mut env, &net);
    let files = net.files.clone();
    // The upstream's test CA, for clients of passthrough hosts (the workspace is visible
    // in the sandbox at the same path).
    std::fs::write(workspace.join("upstream-ca.pem"), &up.ca_pem).unwrap();
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let spec = SandboxSpec {
        run_id: run_id.clone(),
        name: "egress-test".into(),
        run_dir: run_dir.clone(),
        command: vec!["sleep".into(), "300".into()],
        env: env.clone(),
        cwd: workspace.clone(),
        workspace: workspace.clone(),
        workspace_mode: WorkspaceMode::Bind,
        mounts: vec![],
        files,
        limits: Limits::default(),
        tty: false,
        stdin: false,
        user: SandboxUser { uid, gid },
        tty_size: None,
        hold_until_released: false,
        runtime: paddock_sandbox::RuntimeKind::Native,
        image: None,
        dependencies: Vec::new(),
    };
    let rt = Arc::new(NativeRuntime::new(NativeConfig::new(env!(
        "CARGO_BIN_EXE_paddock-egress-test-init"
    ))));
    let h = rt.create(&spec).await.expect("create");
    let handle = rt
        .start(&h, &spec, Arc::new(|_| {}))
        .await
        .expect("start sandbox");
    let records: Arc<Mutex<Vec<NetRecord>>> = Arc::default();
    let r2 = records.clone();
    let egress = RunEgress::start(
        rt.as_netns().unwrap(),
        &handle,
        &shared,
        RunPolicy {
            network,
            implied: vec![],
            extra_ports,
            injector: Arc::new(TestInjector),
        },
        Arc::new(move |r| r2.lock().unwrap().push(r)),
    )
    .expect("egress start");
    Some(Fixture {
        rt,
        handle,
        egress: Some(egress),
        records,
        up,
        env,
        workspace,
        _tmp: tmp,
    })
}

pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Fixture {
    /// Run a shell script inside the sandbox.
    pub async fn sh(&self, script: &str) -> Out {
        let ex = self.rt.as_exec().unwrap();
        let (mut a, exit) = ex
            .exec_with_exit(
                &self.handle,
                vec!["/bin/sh".into(), "-c".into(), script.into()],
                self.env.clone(),
                false,
            )
            .await
            .expect("exec");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let collect = async {
            while let Some(c) = a.output.recv().await {
                match c.stream {
                    OutputStream::Stderr => err.extend_from_slice(&c.data),
                    _ => out.extend_from_slice(&c.data),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), collect)
            .await
            .expect("command timed out");
        let exit = exit.await.ok();
        Out {
            code: exit.and_then(|e| e.exit_code),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        }
    }

    pub fn records(&self) -> Vec<NetRecord> {
        self.records.lock().unwrap().clone()
    }

    /// The first record matching `pred`, waiting for it: a record is emitted when its
    /// connection or body ends, which can be just after the client in the sandbox exits.
    pub async fn record(&self, pred: impl Fn(&NetRecord) -> bool) -> NetRecord {
        self.records_matching(pred, 1).await.remove(0)
    }

    /// The records matching `pred`, once there are at least `n` of them (records reach
    /// the sink through the run's record thread, in no promised order).
    pub async fn records_matching(
        &self,
        pred: impl Fn(&NetRecord) -> bool,
        n: usize,
    ) -> Vec<NetRecord> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<NetRecord> = self.records().into_iter().filter(|r| pred(r)).collect();
            if found.len() >= n {
                return found;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "fewer than {n} matching records within 10 s: {:?}",
                    self.records()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn seen(&self) -> Vec<(String, String, http::HeaderMap)> {
        self.up.seen.lock().unwrap().clone()
    }

    pub async fn finish(mut self) {
        drop(self.egress.take());
        let _ = self.rt.kill(&self.handle, libc::SIGKILL).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.rt.wait(&self.handle)).await;
        let _ = self.rt.destroy(&self.handle).await;
    }
}

pub fn tool(path: &str) -> bool {
    if std::path::Path::new(path).exists() {
        true
    } else {
        skip(&format!("{path} is not installed on this machine"));
        false
    }
}
