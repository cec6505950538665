//! The egress proxy's side of a sandbox connection (`paddock_egress::proxy` and
//! `paddock_egress::hello`): what a sandbox process may send first.
//!
//! Input: a selector byte, then the bytes the sandbox sends on one connection.
//! - transparent: `Proxy::handle_stream` on an in-memory stream, for a connection captured
//!   on port 80/443/8080 of a named, synthetic or literal address: the TLS-or-HTTP sniff,
//!   the ClientHello read, hyper's HTTP/1.1 and HTTP/2 parsing, the proxy's Host/authority
//!   handling (domain fronting checks) and the policy;
//! - explicit: the same bytes to the explicit proxy (`Proxy::serve_explicit` on a loopback
//!   listener, as `HTTP_PROXY` clients reach it): absolute-form requests and CONNECT;
//! - hello: `hello::parse_client_hello`, and `hello::read_client_hello` over the bytes
//!   arriving in different pieces.
//!
//! The policy is strict: `allowed.test` (and `GET` on `*.allowed.test`) is allowed and
//! resolved to 127.0.0.1:1, where nothing listens, so nothing ever leaves the machine.
//!
//! Properties: nothing panics (libFuzzer's panic hook aborts on a panic in any task or
//! thread, so the proxy's spawned tasks are covered); every connection ends (no hang) once
//! the client has sent everything; the ClientHello reader gives the same answer whatever
//! pieces the bytes arrive in; an SNI is lower case without a trailing dot.
#![no_main]

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use paddock_config::{HttpMethod, NetworkConfig, NetworkPolicy, Rule, RuleAction};
use paddock_egress::dns::SyntheticMap;
use paddock_egress::hello::{Hello, parse_client_hello, read_client_hello};
use paddock_egress::proxy::{Proxy, Reset, Target};
use paddock_egress::record::Recorder;
use paddock_egress::upstream::Upstream;
use paddock_egress::{NoInjection, Policy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

struct World {
    rt: tokio::runtime::Runtime,
    proxy: Arc<Proxy>,
    explicit: SocketAddr,
}

fn rule(host: &str, methods: Vec<HttpMethod>, action: RuleAction) -> Rule {
    Rule {
        host: host.parse().expect("a valid pattern"),
        port: None,
        allow_methods: methods,
        deny_methods: vec![],
        allow_paths: vec![],
        deny_paths: vec!["/admin/**".into()],
        action,
    }
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let cfg = NetworkConfig {
            policy: NetworkPolicy::Strict,
            rules: vec![
                rule("allowed.test", vec![], RuleAction::Allow),
                rule("*.allowed.test", vec![HttpMethod::Get], RuleAction::Allow),
                rule("deny.allowed.test", vec![], RuleAction::Deny),
            ],
            passthrough: vec!["pass.allowed.test".parse().expect("a valid pattern")],
            ..NetworkConfig::default()
        };
        let policy = Arc::new(Policy::new(&cfg, &[]));
        let map = Arc::new(SyntheticMap::new(16));
        let dir = std::env::temp_dir().join(format!("paddock-fuzz-ca-{}", std::process::id()));
        let ca = Arc::new(
            paddock_ca::CertAuthority::open_with_cache(&dir, 32).expect("a CA in a temp dir"),
        );
        let _ = std::fs::remove_dir_all(&dir);
        let nowhere: SocketAddr = "127.0.0.1:1".parse().expect("an address");
        let resolve: BTreeMap<String, SocketAddr> = [
            ("allowed.test".to_string(), nowhere),
            ("www.allowed.test".to_string(), nowhere),
            ("pass.allowed.test".to_string(), nowhere),
        ]
        .into_iter()
        .collect();
        let upstream = Arc::new(Upstream::new(None, resolve).expect("upstream settings"));
        let recorder = Recorder::new("run_fuzz", Arc::new(|_| {})).expect("a recorder");
        let proxy = Proxy::new(policy, map, ca, upstream, Arc::new(NoInjection), recorder);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback listener");
        let explicit = listener.local_addr().expect("its address");
        rt.spawn(proxy.clone().serve_explicit(listener));
        World {
            rt,
            proxy,
            explicit,
        }
    })
}

/// A sandbox connection: the input, then end of file; what the proxy writes is dropped.
struct Conn {
    input: Vec<u8>,
    at: usize,
    piece: usize,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.input.len() - self.at)
            .min(buf.remaining())
            .min(self.piece);
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Reset for Conn {
    fn reset(self) {}
}

fn transparent(sel: u8, data: &[u8]) {
    let w = world();
    let name = match sel % 5 {
        0 => None,
        1 => Some("allowed.test"),
        2 => Some("www.allowed.test"),
        3 => Some("pass.allowed.test"),
        _ => Some("other.test"),
    };
    let addr = match sel / 5 % 3 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
        _ => Some(IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))),
    };
    let port = [80, 443, 8080][(sel / 15 % 3) as usize];
    let conn = Conn {
        input: data.to_vec(),
        at: 0,
        piece: if sel & 0x80 != 0 { 7 } else { usize::MAX },
    };
    let target = Target {
        name: name.map(str::to_string),
        addr,
        port,
    };
    let done = w.rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            w.proxy.clone().handle_stream(conn, target),
        )
        .await
    });
    assert!(
        done.is_ok(),
        "a connection did not end after the client's EOF"
    );
}

fn explicit(data: &[u8]) {
    let w = world();
    let done = w.rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut c = tokio::net::TcpStream::connect(w.explicit)
                .await
                .expect("connect to the explicit proxy");
            // The proxy may answer and close before reading everything; that is fine.
            let _ = c.write_all(data).await;
            let _ = c.shutdown().await;
            let mut answer = Vec::new();
            let _ = c.read_to_end(&mut answer).await;
        })
        .await
    });
    assert!(done.is_ok(), "the explicit proxy did not end a connection");
}

/// A reader that hands out at most `piece` bytes per read.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(buf.remaining()).min(self.piece);
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fn read_hello(data: &[u8], piece: usize) -> Option<Hello> {
    let (&first, rest) = data.split_first()?;
    let mut buf = vec![first];
    let mut r = Pieces { data: rest, piece };
    let mut fut = std::pin::pin!(read_client_hello(&mut r, &mut buf));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(h)) => h,
        Poll::Ready(Err(_)) => None,
        Poll::Pending => panic!("reading from memory waited"),
    }
}

fn hello(data: &[u8]) {
    if let Some(h) = parse_client_hello(data)
        && let Some(sni) = &h.sni
    {
        assert!(!sni.ends_with('.'), "SNI {sni:?} keeps its trailing dot");
        assert_eq!(sni, &sni.to_ascii_lowercase(), "SNI not lower case");
    }
    let whole = read_hello(data, usize::MAX);
    for piece in [1, 5, 4096] {
        let h = read_hello(data, piece);
        assert_eq!(
            h, whole,
            "ClientHello differs when read in pieces of {piece}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > 64 * 1024 {
        return;
    }
    match which % 4 {
        0 | 1 => {
            let sel = data.get(1).copied().unwrap_or(0);
            transparent(sel, rest.get(1..).unwrap_or(&[]));
        }
        2 => explicit(rest),
        _ => hello(rest),
    }
});
