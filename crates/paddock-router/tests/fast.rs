//! The HTTP/1.1 fast path against a scripted raw backend on the host's loopback: body
//! framings both ways, bodiless answers, pipelining, connection reuse, smuggling shapes,
//! hostile backends, and the hand-over to the general path. Raw sockets on both sides, so
//! every byte on the wire is the test's.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Counting, serve_app};
use paddock_router::{RouterConfig, RouterHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(10);

/// Set when the backend sees the router close a connection on which it never answered.
static HANG_RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A request as the backend read it.
struct Seen {
    head: String,
    path: String,
    method: String,
    body: Vec<u8>,
}

/// Read one request (head, then a Content-Length or chunked body) from `s`, with `buf`
/// holding bytes read earlier. `None` when the router closed the connection.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let (len, method, path, cl, chunked) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let cl = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                });
            let chunked = r
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
            break (
                n,
                r.method.unwrap().to_string(),
                r.path.unwrap().to_string(),
                cl,
                chunked,
            );
        }
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..len]).into_owned();
    buf.drain(..len);
    let mut body = Vec::new();
    let fill = async |buf: &mut Vec<u8>, s: &mut TcpStream| -> Option<()> {
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp).await.ok()?;
        (n > 0).then(|| buf.extend_from_slice(&tmp[..n]))
    };
    if chunked {
        loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((n, size))) => {
                    let size = size as usize;
                    while buf.len() < n + size + 2 {
                        fill(buf, s).await?;
                    }
                    body.extend_from_slice(&buf[n..n + size]);
                    assert_eq!(&buf[n + size..n + size + 2], b"\r\n");
                    buf.drain(..n + size + 2);
                    if size == 0 {
                        break;
                    }
                }
                Ok(httparse::Status::Partial) => fill(buf, s).await?,
                Err(_) => panic!("the router sent a bad chunk size"),
            }
        }
    } else if let Some(cl) = cl {
        while buf.len() < cl {
            fill(buf, s).await?;
        }
        body = buf.drain(..cl).collect();
    }
    Some(Seen {
        head,
        path,
        method,
        body,
    })
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Answer one request the way its path asks. False: close the connection.
async fn answer(s: &mut TcpStream, req: &Seen) -> bool {
    let w = |b: &[u8]| b.to_vec();
    let head_only = req.method == "HEAD";
    let path = req.path.split('?').next().unwrap_or_default();
    let out: Vec<u8> = match path {
        "/echo" => {
            let mut o = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", req.body.len())
                .into_bytes();
            o.extend_from_slice(&req.body);
            o
        }
        "/head" => {
            if head_only {
                w(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            } else {
                w(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
            }
        }
        "/reqhead" => {
            let mut o = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", req.head.len())
                .into_bytes();
            o.extend_from_slice(req.head.as_bytes());
            o
        }
        "/204" => w(b"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"),
        "/304" => w(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nDate: x\r\n\r\n"),
        "/103" => w(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        "/chunked-big" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            for piece in big(3 * 1024 * 1024).chunks(65_000) {
                s.write_all(format!("{:X};x=y\r\n", piece.len()).as_bytes())
                    .await
                    .unwrap();
                s.write_all(piece).await.unwrap();
                s.write_all(b"\r\n").await.unwrap();
            }
            w(b"0\r\nX-Trailer: t\r\n\r\n")
        }
        "/close" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nDate: x\r\n\r\nuntil ")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.write_all(b"close").await.unwrap();
            return false;
        }
        "/garbage" => w(b"HTTP/1.1 2x0 what\r\n\r\n"),
        "/huge-head" => {
            let mut o = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                o.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(60)).as_bytes());
            }
            o.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            o
        }
        "/smuggle" => w(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        "/early-close" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b")
                .await
                .unwrap();
            return false;
        }
        "/early-close-chunked" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .await
                .unwrap();
            return false;
        }
        "/bad-chunk" => w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"),
        "/silent-close" => return false,
        "/hang" => {
            // Never answer; report when the router gives the connection up.
            let mut tmp = [0u8; 64];
            while matches!(s.read(&mut tmp).await, Ok(n) if n > 0) {}
            HANG_RELEASED.store(true, Ordering::SeqCst);
            return false;
        }
        "/then-close" => {
            // Keep-alive by the head, but the backend closes anyway: the next request on
            // the router's pooled connection must not fail.
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            return false;
        }
        _ => w(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    };
    s.write_all(&out).await.is_ok()
}

/// The scripted backend. `/early-413` answers before reading the body (handled here, as
/// the body is never read).
async fn backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Peek at the head first for the path that must not read the body.
                    let mut tmp = [0u8; 65536];
                    if buf.is_empty() {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    if buf.starts_with(b"POST /early-413 ") {
                        let _ = s
                            .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
                            .await;
                        let _ = s.shutdown().await;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return;
                    }
                    let Some(req) = read_request(&mut s, &mut buf).await else {
                        return;
                    };
                    if !answer(&mut s, &req).await {
                        return;
                    }
                }
            });
        }
    });
    port
}

async fn setup() -> (Arc<Counting>, RouterHandle) {
    let mut cfg = RouterConfig::new(0);
    cfg.header_read_timeout = Duration::from_secs(2);
    let (dialer, _, h) = serve_app(backend().await, cfg).await;
    (dialer, h)
}

/// A response as the client read it.
#[derive(Debug)]
struct Got {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Read one response from `s` (bytes read earlier in `buf`), decoding its body by its
/// framing. `None`: the connection ended before the response did.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_req: bool) -> Option<Got> {
    let mut tmp = vec![0u8; 65536];
    let mut fill = async |buf: &mut Vec<u8>| -> Option<()> {
        let n = tokio::time::timeout(LIMIT, s.read(&mut tmp))
            .await
            .ok()?
            .ok()?;
        (n > 0).then(|| buf.extend_from_slice(&tmp[..n]))
    };
    let (len, status) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            break (n, r.code.unwrap());
        }
        fill(buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..len]).into_owned();
    buf.drain(..len);
    let mut got = Got {
        status,
        head,
        body: Vec::new(),
    };
    if head_req || status == 204 || status == 304 {
        return Some(got);
    }
    if let Some(cl) = got.header("content-length") {
        let cl: usize = cl.parse().unwrap();
        while buf.len() < cl {
            fill(buf).await?;
        }
        got.body = buf.drain(..cl).collect();
    } else if got.header("transfer-encoding").is_some() {
        loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((n, size))) => {
                    let size = size as usize;
                    while buf.len() < n + size + 2 {
                        fill(buf).await?;
                    }
                    got.body.extend_from_slice(&buf[n..n + size]);
                    buf.drain(..n + size + 2);
                    if size == 0 {
                        break;
                    }
                }
                Ok(httparse::Status::Partial) => fill(buf).await?,
                Err(_) => panic!("bad chunk size from the router"),
            }
        }
    } else {
        while fill(buf).await.is_some() {}
        got.body = std::mem::take(buf);
    }
    Some(got)
}

/// Sends `request_line` (method and target) with the test's Host and reads the answer.
async fn ask(s: &mut TcpStream, buf: &mut Vec<u8>, request_line: &str, head_req: bool) -> Got {
    s.write_all(format!("{request_line} HTTP/1.1\r\n{HOST}\r\n").as_bytes())
        .await
        .unwrap();
    read_response(s, buf, head_req).await.unwrap()
}

async fn connect(h: &RouterHandle) -> TcpStream {
    TcpStream::connect(("127.0.0.1", h.port())).await.unwrap()
}

/// True when the router closes `s` within the limit (reads anything still in flight).
async fn closed(s: &mut TcpStream) -> bool {
    let mut tmp = [0u8; 4096];
    let t = Instant::now();
    while t.elapsed() < LIMIT {
        match tokio::time::timeout(LIMIT, s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
    false
}

const HOST: &str = "Host: web.app.localhost\r\n";

#[tokio::test]
async fn request_head_is_rewritten_and_the_rest_kept() {
    let (_, h) = setup().await;
    let mut s = connect(&h).await;
    s.write_all(
        format!(
            "GET /reqhead?q=1 HTTP/1.1\r\n{HOST}X-Custom:  Mixed Case \r\nConnection: x-hop\r\n\
             X-Hop: 1\r\nForwarded: for=6.6.6.6\r\nTE: trailers\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    let seen = String::from_utf8(got.body.clone()).unwrap();
    assert_eq!(
        seen,
        "GET /reqhead?q=1 HTTP/1.1\r\nHost: web.app.localhost\r\nX-Custom: Mixed Case\r\n\
         x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
         forwarded: for=127.0.0.1;host=\"web.app.localhost\";proto=http\r\n\
         x-forwarded-host: web.app.localhost\r\n\r\n"
    );
    assert!(got.header("date").is_some(), "{}", got.head);
    h.shutdown().await;
}

#[tokio::test]
async fn chunked_and_large_bodies_both_ways_on_one_backend_connection() {
    let (dialer, h) = setup().await;
    let mut s = connect(&h).await;
    let mut buf = Vec::new();
    // A chunked request body, in odd pieces and with an extension.
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n\
             3;ext=1\r\nabc\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.write_all(b"4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n")
        .await
        .unwrap();
    let got = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!((got.status, &got.body[..]), (200, &b"abcdefg"[..]));
    // 5 MB with Content-Length, streamed (written while the router forwards).
    let data = big(5 * 1024 * 1024);
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\n{HOST}Content-Length: {}\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = {
        let data = data.clone();
        tokio::spawn(async move {
            w.write_all(&data).await.unwrap();
            w
        })
    };
    let mut raw = Vec::new();
    let mut tmp = vec![0u8; 65536];
    let got = loop {
        let n = tokio::time::timeout(LIMIT, r.read(&mut tmp))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        raw.extend_from_slice(&tmp[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n")
            && raw.len() >= end + 4 + data.len()
        {
            break raw.split_off(end + 4);
        }
    };
    assert!(got == data, "5 MB echo differs ({} bytes)", got.len());
    let w = writer.await.unwrap();
    let mut s = r.reunite(w).unwrap();
    // A 3 MB chunked response (re-encoded, trailers dropped).
    let got = ask(&mut s, &mut buf, "GET /chunked-big", false).await;
    assert_eq!(got.header("transfer-encoding").as_deref(), Some("chunked"));
    assert!(got.body == big(3 * 1024 * 1024), "chunked body differs");
    assert_eq!(
        dialer.dials.load(Ordering::SeqCst),
        1,
        "one backend connection"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn bodiless_answers_and_informational_ones_keep_the_connections() {
    let (dialer, h) = setup().await;
    let mut s = connect(&h).await;
    let mut buf = Vec::new();
    for _ in 0..3 {
        let got = ask(&mut s, &mut buf, "HEAD /head", true).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-length").as_deref(), Some("10"));
        for (path, status) in [("/204", 204), ("/304", 304)] {
            let got = ask(&mut s, &mut buf, &format!("GET {path}"), false).await;
            assert_eq!(got.status, status, "{}", got.head);
        }
        let got = ask(&mut s, &mut buf, "GET /103", false).await;
        assert_eq!((got.status, &got.body[..]), (200, &b"ok"[..]));
    }
    // Nothing was left over between the answers: the next one is intact.
    let got = ask(&mut s, &mut buf, "GET /head", false).await;
    assert_eq!(got.body, b"0123456789");
    assert!(buf.is_empty());
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn close_delimited_response_then_close() {
    let (_, h) = setup().await;
    let mut s = connect(&h).await;
    s.write_all(format!("GET /close HTTP/1.1\r\n{HOST}\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(got.body, b"until close");
    assert_eq!(got.header("connection").as_deref(), Some("close"));
    h.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (dialer, h) = setup().await;
    let mut s = connect(&h).await;
    let mut all = Vec::new();
    for i in 0..10 {
        let body = format!("request {i}");
        all.extend_from_slice(
            format!(
                "POST /echo HTTP/1.1\r\n{HOST}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        all.extend_from_slice(format!("HEAD /head HTTP/1.1\r\n{HOST}\r\n").as_bytes());
    }
    s.write_all(&all).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..10 {
        let got = read_response(&mut s, &mut buf, false).await.unwrap();
        assert_eq!(got.body, format!("request {i}").as_bytes());
        let got = read_response(&mut s, &mut buf, true).await.unwrap();
        assert_eq!(got.status, 200);
    }
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn smuggling_shapes_get_400_and_never_reach_the_backend() {
    let (dialer, h) = setup().await;
    for shape in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: gzip\r\n",
        "X-Folded: a\r\n b\r\n",
        "X-Bare: lf\n",
    ] {
        let mut s = connect(&h).await;
        s.write_all(format!("POST /echo HTTP/1.1\r\n{HOST}{shape}\r\nhello").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 400 "), "{shape:?}: {out}");
    }
    // An invalid chunk size once the head went through: 400 as well, and closed.
    let mut s = connect(&h).await;
    s.write_all(
        format!("POST /echo HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\nzz\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400 "));
    assert!(dialer.dials.load(Ordering::SeqCst) <= 1);
    // Two Host headers: the router's 400 page.
    let mut s = connect(&h).await;
    s.write_all(format!("GET / HTTP/1.1\r\n{HOST}Host: other.app.localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(got.status, 400);
    assert!(String::from_utf8_lossy(&got.body).contains("more than one Host"));
    h.shutdown().await;
}

#[tokio::test]
async fn hostile_backends_get_502_or_a_closed_connection() {
    let (_, h) = setup().await;
    for path in ["/garbage", "/huge-head", "/smuggle", "/silent-close"] {
        let mut s = connect(&h).await;
        s.write_all(format!("GET {path} HTTP/1.1\r\n{HOST}\r\n").as_bytes())
            .await
            .unwrap();
        let got = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
        assert_eq!(got.status, 502, "{path}: {}", got.head);
        let page = String::from_utf8_lossy(&got.body);
        assert!(
            page.contains("502: bad gateway") && page.contains("failed"),
            "{path}: {page}"
        );
    }
    // The head went out, then the backend stopped: the client sees a connection closed
    // before the body's declared end, never a complete-looking body.
    for path in ["/early-close", "/early-close-chunked", "/bad-chunk"] {
        let mut s = connect(&h).await;
        s.write_all(format!("GET {path} HTTP/1.1\r\n{HOST}\r\n").as_bytes())
            .await
            .unwrap();
        assert!(
            read_response(&mut s, &mut Vec::new(), false)
                .await
                .is_none(),
            "{path}: looked complete"
        );
    }
    // The router is still fine.
    let mut s = connect(&h).await;
    s.write_all(format!("GET /head HTTP/1.1\r\n{HOST}\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut s, &mut Vec::new(), false)
            .await
            .unwrap()
            .status,
        200
    );
    h.shutdown().await;
}

#[tokio::test]
async fn backend_answering_before_the_body_is_sent() {
    let (_, h) = setup().await;
    let mut s = connect(&h).await;
    let body = big(8 * 1024 * 1024);
    s.write_all(
        format!(
            "POST /early-413 HTTP/1.1\r\n{HOST}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (mut r, mut w) = s.into_split();
    tokio::spawn(async move {
        let _ = w.write_all(&body).await;
    });
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(LIMIT, r.read_to_end(&mut raw))
        .await
        .expect("no hang");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_replaced() {
    let (dialer, h) = setup().await;
    let mut s = connect(&h).await;
    let mut buf = Vec::new();
    for _ in 0..5 {
        let got = ask(&mut s, &mut buf, "GET /then-close", false).await;
        assert_eq!((got.status, &got.body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 5);
    h.shutdown().await;
}

#[tokio::test]
async fn slow_or_oversized_heads_are_cut_off() {
    let (_, h) = setup().await;
    // Idle, then a partial head: closed after the head timeout (2 s here).
    let mut s = connect(&h).await;
    s.write_all(format!("GET / HTTP/1.1\r\n{HOST}").as_bytes())
        .await
        .unwrap();
    let t = Instant::now();
    assert!(closed(&mut s).await);
    assert!(t.elapsed() < Duration::from_secs(5));
    // Too many fields, or too many bytes: 431.
    let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    for extra in [many, big] {
        let mut s = connect(&h).await;
        let _ = s
            .write_all(format!("GET / HTTP/1.1\r\n{HOST}{extra}\r\n").as_bytes())
            .await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("HTTP/1.1 431 "),
            "{} bytes: {out:?}",
            extra.len()
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn upgrades_after_fast_requests_go_to_the_general_path() {
    let (_, h) = setup().await;
    let mut s = connect(&h).await;
    let mut buf = Vec::new();
    s.write_all(format!("GET /head HTTP/1.1\r\n{HOST}\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.unwrap().status,
        200
    );
    // An Upgrade on the same connection: hyper answers it (the backend refuses the upgrade
    // with a 404, which is forwarded), then serves what follows.
    s.write_all(
        format!("GET /nothing HTTP/1.1\r\n{HOST}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(got.status, 404, "{}", got.head);
    // HTTP/1.0 is left to hyper too, which answers in HTTP/1.0.
    let mut s = connect(&h).await;
    s.write_all(format!("GET /head HTTP/1.0\r\n{HOST}\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert!(got.head.starts_with("HTTP/1.0 200"), "{}", got.head);
    assert_eq!(got.body, b"0123456789");
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_leaving_ends_the_wait_for_a_silent_backend() {
    let (_, h) = setup().await;
    let mut s = connect(&h).await;
    s.write_all(format!("GET /hang HTTP/1.1\r\n{HOST}\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!HANG_RELEASED.load(Ordering::SeqCst));
    drop(s);
    let t = Instant::now();
    while !HANG_RELEASED.load(Ordering::SeqCst) {
        assert!(
            t.elapsed() < LIMIT,
            "the router still holds the backend connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown().await;
}
