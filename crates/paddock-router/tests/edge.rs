//! The router against a backend on the host's loopback (through a counting loopback
//! dialer): forwarding headers, streaming, connection reuse, hostile clients, port
//! conflicts. No sandbox needed.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Counting, serve_app};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use paddock_router::{LoopbackDialer, RouteState, Router, RouterConfig, RouterError, RouterHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend: `/headers` echoes the request headers, anything else echoes the body.
async fn backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path() == "/headers" {
                        let mut out = String::new();
                        for (k, v) in req.headers() {
                            out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                        }
                        return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))));
                    }
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    Ok(Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

async fn setup(
    cfg: impl FnOnce(RouterConfig) -> RouterConfig,
) -> (Arc<Counting>, Router, RouterHandle) {
    serve_app(backend().await, cfg(RouterConfig::new(0))).await
}

/// Send raw bytes, read until the router closes or `limit` passes.
async fn raw(port: u16, bytes: &[u8], limit: Duration) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

fn get(host: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn forwarding_headers_replace_client_ones_and_hop_by_hop_go() {
    let (_, _, h) = setup(|c| c).await;
    let p = h.port();
    let host = format!("web.app.localhost:{p}");
    let (r, _) = raw(
        p,
        &get(
            &host,
            "/headers",
            "X-Forwarded-For: 6.6.6.6\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nConnection: X-Secret\r\n",
        ),
        Duration::from_secs(10),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("x-forwarded-for: 127.0.0.1\n"), "{r}");
    assert!(!r.contains("6.6.6.6"), "{r}");
    assert!(r.contains("x-forwarded-proto: http\n"), "{r}");
    assert!(r.contains(&format!("x-forwarded-host: {host}\n")), "{r}");
    assert!(
        r.contains(&format!(
            "forwarded: for=127.0.0.1;host=\"{host}\";proto=http\n"
        )),
        "{r}"
    );
    assert!(r.contains(&format!("host: {host}\n")), "{r}");
    assert!(
        !r.contains("x-secret") && !r.contains("keep-alive: timeout"),
        "{r}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn backend_connections_are_reused() {
    let (dialer, _, h) = setup(|c| c).await;
    let p = h.port();
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    for i in 0..50 {
        let body = format!("ping {i}");
        let req = format!(
            "POST /echo HTTP/1.1\r\nHost: web.app.localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).ends_with(&body) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(
        dialer.dials.load(Ordering::SeqCst),
        1,
        "one pooled backend connection"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways_h1_and_h2() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: curl is missing");
        return;
    }
    let (_, _, h) = setup(|c| c).await;
    let p = h.port();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big");
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&f, &data).unwrap();
    for proto in ["--http1.1", "--http2-prior-knowledge"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "30", proto, "--data-binary"])
            .arg(format!("@{}", f.display()))
            .args(["--resolve", &format!("web.app.localhost:{p}:127.0.0.1")])
            .arg(format!("http://web.app.localhost:{p}/echo"))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == data,
            "{proto}: body differs ({} bytes)",
            out.stdout.len()
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn hostile_clients_are_cut_off_and_never_stall_others() {
    let (_, _, h) = setup(|mut c| {
        c.header_read_timeout = Duration::from_millis(500);
        c.max_header_bytes = 16 * 1024;
        c
    })
    .await;
    let p = h.port();
    let limit = Duration::from_secs(10);

    // Slowloris: silent, a partial head, a partial HTTP/2 preface: all closed on time.
    for bytes in [
        &b""[..],
        b"GET / HTTP/1.1\r\nHost: web.app.loc",
        b"PRI * HTT",
    ] {
        let (_, took) = raw(p, bytes, limit).await;
        assert!(
            took < Duration::from_secs(5),
            "{:?} held the connection for {took:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Huge headers: 431.
    let big = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    let (r, _) = raw(p, &get("web.app.localhost", "/", &big), limit).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    // Garbage: 400 or a plain close, never a hang.
    for junk in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"\xff\xfe\r\n\r\n",
    ] {
        let (r, took) = raw(p, junk, limit).await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        assert!(took < Duration::from_secs(5));
    }
    // A TLS ClientHello while the router has no certificates: closed.
    let (r, took) = raw(p, b"\x16\x03\x01\x00\x05hello", limit).await;
    assert!(r.is_empty() && took < Duration::from_secs(5));
    // No Host (HTTP/1.0), a foreign host, an IPv6 literal, a bad label: 400.
    let (r, _) = raw(p, b"GET / HTTP/1.0\r\n\r\n", limit).await;
    assert!(
        r.starts_with("HTTP/1.0 400") || r.starts_with("HTTP/1.1 400"),
        "{r}"
    );
    for host in [
        "example.com",
        "[::1]:8080",
        "we_b.app.localhost",
        "a.b.c.localhost",
    ] {
        let (r, _) = raw(p, &get(host, "/", ""), limit).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{host}: {r}");
    }
    // Escaped, not echoed raw.
    let (r, _) = raw(p, &get("<script>.localhost", "/", ""), limit).await;
    assert!(
        r.starts_with("HTTP/1.1 400") && !r.contains("<script>"),
        "{r}"
    );
    // And the router still serves.
    let (r, _) = raw(p, &get("web.app.localhost", "/headers", ""), limit).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    h.shutdown().await;
}

#[tokio::test]
async fn port_taken_is_a_clear_error_and_never_another_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let router = Router::new(Arc::new(LoopbackDialer));
    let e = router
        .serve(RouterConfig::new(port))
        .await
        .err()
        .expect("must fail");
    assert!(
        matches!(e, RouterError::PortInUse { port: p, .. } if p == port),
        "{e:?}"
    );
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    let hint = e.hint().unwrap();
    assert!(
        hint.contains("PADDOCK_ROUTER_PORT") && hint.contains("router.port"),
        "{hint}"
    );
    assert!(hint.contains(&port.to_string()), "{hint}");
    assert!(hint.contains("paddock daemon restart"), "{hint}");
}

#[tokio::test]
async fn stopped_and_removed_routes() {
    let (_, router, h) = setup(|c| c).await;
    let p = h.port();
    let limit = Duration::from_secs(10);
    assert!(router.set_state("app", RouteState::Stopped));
    let (r, _) = raw(p, &get("web.app.localhost", "/", ""), limit).await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("stopped"),
        "{r}"
    );
    router.remove_run("app").unwrap();
    let (r, _) = raw(p, &get("web.app.localhost", "/", ""), limit).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(router.routes().is_empty());
    h.shutdown().await;
    // The port is free again once shut down.
    std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
}

#[tokio::test]
async fn empty_bodies_return_their_connection_to_the_pool() {
    let (dialer, _, h) = setup(|c| c).await;
    let p = h.port();
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    for _ in 0..5 {
        // HEAD: the response has a length but no body; hyper never polls it.
        s.write_all(b"HEAD /headers HTTP/1.1\r\nHost: web.app.localhost\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn h2c_by_upgrade_serves_stream_1_then_more_streams() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: curl is missing");
        return;
    }
    let (dialer, _, h) = setup(|c| c).await;
    let p = h.port();
    let url = format!("http://web.app.localhost:{p}/headers");
    let resolve = format!("web.app.localhost:{p}:127.0.0.1");
    // Two URLs on one curl command: the first upgrades, the second reuses the h2 connection.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2", "--resolve", &resolve])
        .args(["-w", "##%{http_version} %{num_connects}\n"])
        .arg(&url)
        .arg(&url)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("##2 ").count(), 2, "{text}");
    assert!(
        text.contains("##2 0"),
        "the second request reuses the connection: {text}"
    );
    // The upgraded request reached the backend as a normal HTTP/1.1 request.
    assert!(
        text.contains(&format!("host: web.app.localhost:{p}\n")),
        "{text}"
    );
    assert!(
        !text.contains("http2-settings") && !text.contains("upgrade"),
        "{text}"
    );
    // With a body, the upgrade is declined and the request answered over HTTP/1.1.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2", "--resolve", &resolve])
        .args(["-w", "##%{http_version}", "--data-binary", "posted"])
        .arg(format!("http://web.app.localhost:{p}/echo"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "posted##1.1");
    assert!(dialer.dials.load(Ordering::SeqCst) >= 1);
    h.shutdown().await;
}

#[tokio::test]
async fn https_with_paddock_ca_leaves() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: curl is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(paddock_ca::CertAuthority::open_or_create(&dir.path().join("ca")).unwrap());
    let resolver = Arc::new(paddock_ca::LeafResolver::with_fallback(
        ca.clone(),
        "localhost",
    ));
    let (_, _, h) = setup(|c| c.with_tls(resolver)).await;
    let p = h.port();
    let cacert = ca.cert_path();
    for proto in ["--http1.1", "--http2"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", proto, "--cacert"])
            .arg(&cacert)
            .args(["--resolve", &format!("web.app.localhost:{p}:127.0.0.1")])
            .args(["-w", "##%{http_version}"])
            .arg(format!("https://web.app.localhost:{p}/headers"))
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("x-forwarded-proto: https\n"), "{text}");
        let want = if proto == "--http2" { "##2" } else { "##1.1" };
        assert!(text.ends_with(want), "{proto}: {text}");
    }
    h.shutdown().await;
}
