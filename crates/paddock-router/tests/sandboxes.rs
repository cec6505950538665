//! The router in front of real sandboxes (native runtime, each with its own network
//! namespace), each serving HTTP with `python3 -m http.server` on its own loopback.

mod common;

use std::time::Duration;

use common::*;
use paddock_router::{RouteState, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

macro_rules! require_sandbox {
    () => {
        if let Some(why) = sandbox_missing() {
            skip(&why);
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_same_endpoint_names_pages_and_errors() {
    require_sandbox!();
    let w = World::new();
    let a = w
        .start(
            "alpha",
            &http_server(3000),
            &[("who.txt", "alpha\n")],
            &[("web", 3000)],
        )
        .await;
    // Same endpoint name and port in another run; "api" has nothing listening.
    let b = w
        .start(
            "beta",
            &http_server(3000),
            &[("who.txt", "beta\n")],
            &[("web", 3000), ("api", 3001)],
        )
        .await;
    let h = w.router.serve(RouterConfig::new(0)).await.unwrap();
    let p = h.port();

    let r = wait_for(&format!("http://web.alpha.localhost:{p}/who.txt"), 200).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alpha\n"));
    let r = wait_for(&format!("http://web.beta.localhost:{p}/who.txt"), 200).await;
    assert_eq!((r.status, r.body.as_str()), (200, "beta\n"));
    // Case and trailing dot do not matter.
    let r = curl(&format!("http://WEB.Alpha.localhost.:{p}/who.txt"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alpha\n"));

    // A bare run name with one endpoint goes straight through; with several, an index.
    let r = curl(&format!("http://alpha.localhost:{p}/who.txt"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alpha\n"));
    let r = curl(&format!("http://beta.localhost:{p}/who.txt"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!("http://web.beta.localhost:{p}"))
            && r.body.contains(&format!("http://api.beta.localhost:{p}")),
        "{}",
        r.body
    );
    let r = curl(
        &format!("http://beta.localhost:{p}/"),
        &["-H", "Accept: application/json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["name"], "beta");
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 2);

    // The index of everything, HTML and JSON.
    let r = curl(&format!("http://localhost:{p}/"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("alpha") && r.body.contains("beta"),
        "{}",
        r.body
    );
    let r = curl(
        &format!("http://localhost:{p}/"),
        &["-H", "Accept: application/json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["name"], "alpha");
    assert_eq!(runs[0]["run_id"], a.run_id.as_str());
    assert_eq!(
        runs[1]["endpoints"][1]["url"],
        format!("http://web.beta.localhost:{p}")
    );

    // Nothing listens on api's port inside beta: 502 naming the endpoint and the port.
    let r = curl(&format!("http://api.beta.localhost:{p}/"), &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body.contains("3001") && r.body.contains("api"),
        "{}",
        r.body
    );

    // Unknown names: 404 naming the live runs; unknown endpoint: 404 naming the run's.
    let r = curl(&format!("http://nope.localhost:{p}/"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("alpha") && r.body.contains("beta"),
        "{}",
        r.body
    );
    let r = curl(&format!("http://web.nope.localhost:{p}/"), &[]).await;
    assert_eq!(r.status, 404);
    let r = curl(&format!("http://db.alpha.localhost:{p}/"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("web.alpha"), "{}", r.body);
    // Outside .localhost: 400.
    let r = curl(
        &format!("http://127.0.0.1:{p}/"),
        &["-H", "Host: example.com"],
    )
    .await;
    assert_eq!(r.status, 400);

    // h2c with prior knowledge, forwarded to the HTTP/1 backend.
    let r = curl(
        &format!("http://web.beta.localhost:{p}/who.txt"),
        &["--http2-prior-knowledge"],
    )
    .await;
    assert_eq!(
        (r.status, r.version.as_str(), r.body.as_str()),
        (200, "2", "beta\n")
    );
    // h2c by Upgrade: 101, then the answer on stream 1 over HTTP/2.
    let r = curl(
        &format!("http://web.beta.localhost:{p}/who.txt"),
        &["--http2"],
    )
    .await;
    assert_eq!(
        (r.status, r.version.as_str(), r.body.as_str()),
        (200, "2", "beta\n")
    );

    // Stop alpha: its route turns 503 while registered as stopped, 404 once removed; beta
    // is unaffected.
    w.stop(&a).await;
    assert!(w.router.set_state("alpha", RouteState::Stopped));
    let r = curl(&format!("http://web.alpha.localhost:{p}/who.txt"), &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("stopped"), "{}", r.body);
    assert!(w.router.remove_run("alpha").is_some());
    let r = curl(&format!("http://web.alpha.localhost:{p}/who.txt"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("alpha\""), "{}", r.body);
    let r = curl(&format!("http://web.beta.localhost:{p}/who.txt"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "beta\n"));

    // A name is reusable once its run is gone.
    let a2 = w
        .start(
            "alpha",
            &http_server(3000),
            &[("who.txt", "alpha2\n")],
            &[("web", 3000)],
        )
        .await;
    let r = wait_for(&format!("http://web.alpha.localhost:{p}/who.txt"), 200).await;
    assert_eq!((r.status, r.body.as_str()), (200, "alpha2\n"));

    // Stopped under the router's feet (route still "running"): the dial fails, 502/503.
    w.stop(&b).await;
    let r = curl(&format!("http://web.beta.localhost:{p}/who.txt"), &[]).await;
    assert!(
        r.status == 502 || r.status == 503,
        "{} {}",
        r.status,
        r.body
    );

    w.stop(&a2).await;
    h.shutdown().await;
}

const WS_ECHO: &str = r#"
import base64, hashlib, socket, struct, sys, threading
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def recvn(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
def serve(c):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key:")][0]
        acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        while True:
            h = recvn(c, 2)
            op, ln, masked = h[0] & 15, h[1] & 127, h[1] & 128
            if ln == 126:
                ln = struct.unpack(">H", recvn(c, 2))[0]
            elif ln == 127:
                ln = struct.unpack(">Q", recvn(c, 8))[0]
            mask = recvn(c, 4) if masked else b"\0\0\0\0"
            p = bytes(x ^ mask[i % 4] for i, x in enumerate(recvn(c, ln)))
            if op == 8:
                c.sendall(b"\x88\x00")
                return
            out = b"echo:" + p
            hdr = bytes([0x80 | op]) + (bytes([len(out)]) if len(out) < 126 else b"\x7e" + struct.pack(">H", len(out)))
            c.sendall(hdr + out)
    except Exception:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

async fn ws_frame(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.unwrap();
    let mut len = (h[1] & 127) as usize;
    if len == 126 {
        let mut l = [0u8; 2];
        s.read_exact(&mut l).await.unwrap();
        len = u16::from_be_bytes(l) as usize;
    }
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.unwrap();
    (h[0] & 15, p)
}

fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_router() {
    require_sandbox!();
    let w = World::new();
    let sb = w
        .start(
            "wsapp",
            &format!("exec {PYTHON} ws.py 4000"),
            &[("ws.py", WS_ECHO)],
            &[("ws", 4000), ("web", 3000)],
        )
        .await;
    let h = w.router.serve(RouterConfig::new(0)).await.unwrap();
    let addr = h.local_addr();

    // Wait until the server inside is up (a plain GET gets a 101 or a close, not a 502).
    let t = std::time::Instant::now();
    let mut s = loop {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.wsapp.localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if head.starts_with("HTTP/1.1 101") {
            assert!(
                head.to_ascii_lowercase()
                    .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
                "{head}"
            );
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no websocket upgrade: {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for msg in ["hello paddock", "second message"] {
        s.write_all(&masked_text(msg.as_bytes())).await.unwrap();
        let (op, p) = tokio::time::timeout(Duration::from_secs(10), ws_frame(&mut s))
            .await
            .expect("echo timed out");
        assert_eq!(op, 1);
        assert_eq!(String::from_utf8(p).unwrap(), format!("echo:{msg}"));
    }
    // Close handshake passes through too.
    s.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await.unwrap();
    let (op, _) = ws_frame(&mut s).await;
    assert_eq!(op, 8);
    w.stop(&sb).await;
    h.shutdown().await;
}

/// Test-only certificates: a CA and a `*.tlsapp.localhost` leaf minted with rcgen.
mod paddock_router_tls {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;

    #[derive(Debug)]
    pub struct Resolver(pub Arc<CertifiedKey>);

    impl ResolvesServerCert for Resolver {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// (CA certificate PEM, a resolver serving `*.run.localhost` and `run.localhost`).
    pub fn mint(run: &str) -> (String, Resolver) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "paddock test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![
            format!("*.{run}.localhost"),
            format!("{run}.localhost"),
        ])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        let chain = vec![
            CertificateDer::from(leaf.der().to_vec()),
            CertificateDer::from(ca_cert.der().to_vec()),
        ];
        (
            ca_cert.pem(),
            Resolver(Arc::new(CertifiedKey::new(chain, signer))),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_on_the_same_port() {
    require_sandbox!();
    let w = World::new();
    let sb = w
        .start(
            "tlsapp",
            &http_server(3000),
            &[("who.txt", "secure\n")],
            &[("web", 3000)],
        )
        .await;
    let (ca_pem, resolver) = paddock_router_tls::mint("tlsapp");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let ca = ca.to_str().unwrap();
    let h = w
        .router
        .serve(RouterConfig::new(0).with_tls(std::sync::Arc::new(resolver)))
        .await
        .unwrap();
    let p = h.port();
    // Plain HTTP still works on the same port.
    let r = wait_for(&format!("http://web.tlsapp.localhost:{p}/who.txt"), 200).await;
    assert_eq!((r.status, r.body.as_str()), (200, "secure\n"));
    // HTTPS, HTTP/1.1 and HTTP/2 (ALPN), verified against the test CA.
    let url = format!("https://web.tlsapp.localhost:{p}/who.txt");
    let r = curl(&url, &["--cacert", ca, "--http1.1"]).await;
    assert_eq!(
        (r.status, r.version.as_str(), r.body.as_str()),
        (200, "1.1", "secure\n")
    );
    let r = curl(&url, &["--cacert", ca, "--http2"]).await;
    assert_eq!(
        (r.status, r.version.as_str(), r.body.as_str()),
        (200, "2", "secure\n")
    );
    // A bare run name (one endpoint) goes through over HTTPS too.
    let r = curl(
        &format!("https://tlsapp.localhost:{p}/who.txt"),
        &["--cacert", ca],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "secure\n"));
    // The index served over HTTPS links https URLs (the test leaf does not cover bare
    // localhost, hence -k).
    let r = curl(
        &format!("https://localhost:{p}/"),
        &["-k", "-H", "Accept: application/json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["runs"][0]["endpoints"][0]["url"],
        format!("https://web.tlsapp.localhost:{p}")
    );
    w.stop(&sb).await;
    h.shutdown().await;
}
