//! Hostname routing end to end (issue 6): real runs serving HTTP on their sandbox's loopback,
//! reached through the daemon's router with curl (and a raw WebSocket client) from the host.
//!
//! Each test has its own `$PADDOCK_HOME`, daemon and router port (`PADDOCK_ROUTER_PORT`),
//! so the tests run in parallel. Readiness is always polled, never slept for.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Env, wait_until};

const PYTHON: &str = "/usr/bin/python3";
const READY: Duration = Duration::from_secs(30);

/// A port nobody uses right now (the daemon binds it a moment later). Chosen below the
/// kernel's ephemeral range, so that no client connection (curl's, the daemon's) can be
/// holding it as its local port by then; spread by pid and a counter across parallel tests.
/// A listener on a free loopback port (outside the ephemeral range, spread by pid so
/// concurrent test binaries rarely meet). Kept bound, so nobody can take it in between.
fn free_listener() -> std::net::TcpListener {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = 20000 + ((std::process::id().wrapping_mul(7919) + n * 131) % 12000) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l;
        }
    }
}

fn free_port() -> u16 {
    free_listener().local_addr().unwrap().port()
}

/// Another program listening on a port (python), until [`release`](Self::release)d.
struct PortHolder(std::process::Child);

impl PortHolder {
    /// `None` when python could not take the port.
    fn new(port: u16) -> Option<PortHolder> {
        use std::io::BufRead;
        let script = format!(
            "import socket, sys, time\ns = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {port}))\ns.listen(8)\nprint('held', flush=True)\ntime.sleep(600)\n"
        );
        let mut child = Command::new(PYTHON)
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let holder = PortHolder(child);
        (line.trim() == "held").then_some(holder)
    }

    /// Kill the holder and reap it: the port is free when this returns.
    fn release(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for PortHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    env: Env,
    ws: PathBuf,
    port: u16,
}

fn setup() -> Setup {
    setup_on(free_port())
}

fn setup_on(port: u16) -> Setup {
    let mut env = Env::new();
    env.extra_env
        .push(("PADDOCK_ROUTER_PORT".into(), port.to_string()));
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    Setup { env, ws, port }
}

impl Setup {
    fn paddock(&self, args: &[&str]) -> Output {
        self.env
            .cmd()
            .current_dir(&self.ws)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.paddock(args);
        assert!(out.status.success(), "paddock {args:?}: {out:?}");
        out
    }

    /// `paddock run -d --name NAME -p … -- sh -c SCRIPT`; returns the `run` output.
    fn start(&self, name: &str, ports: &[&str], script: &str) -> Output {
        let mut args = vec!["run", "-d", "--name", name];
        for p in ports {
            args.extend(["-p", p]);
        }
        args.extend(["--", "sh", "-c", script]);
        self.ok(&args)
    }

    /// curl `http(s)://HOST:port/PATH` with HOST resolved to 127.0.0.1: (status, body).
    fn curl(&self, scheme: &str, host: &str, path: &str, extra: &[&str]) -> (u16, String) {
        let (code, _, body) = self.curl_v(scheme, host, path, extra);
        (code, body)
    }

    /// Like `curl`, with the HTTP version curl spoke: (status, version, body).
    fn curl_v(
        &self,
        scheme: &str,
        host: &str,
        path: &str,
        extra: &[&str],
    ) -> (u16, String, String) {
        let url = format!("{scheme}://{host}:{}{path}", self.port);
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(["--resolve", &format!("{host}:{}:127.0.0.1", self.port)])
            .args(extra)
            .args(["-w", "\n%{http_code} %{http_version}", &url])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
        let (code, version) = last.split_once(' ').unwrap_or((last, ""));
        (
            code.trim().parse().unwrap_or(0),
            version.trim().to_string(),
            body.to_string(),
        )
    }

    fn get(&self, host: &str, path: &str) -> (u16, String) {
        self.curl("http", host, path, &[])
    }

    /// Poll until `host/path` answers `want`; returns the body.
    fn wait_status(&self, host: &str, path: &str, want: u16) -> String {
        let mut last = (0, String::new());
        wait_until(READY, || {
            last = self.get(host, path);
            (last.0 == want).then(|| last.1.clone())
        })
        .unwrap_or_else(|| panic!("{host}{path} never answered {want}; last: {last:?}"))
    }

    fn router_status(&self) -> serde_json::Value {
        let out = self.ok(&["router", "status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A shell script that writes `who.txt` (and the URL the sandbox was given) into a private
/// directory and serves it with python's http.server on 127.0.0.1:PORT.
fn http_server(who: &str, port: u16) -> String {
    format!(
        "mkdir -p /tmp/site && cd /tmp/site && echo {who} > who.txt && \
         echo \"$PADDOCK_URL_WEB $PADDOCK_RUN_NAME $PADDOCK_RUN_ID\" > env.txt && \
         exec {PYTHON} -m http.server --bind 127.0.0.1 {port}"
    )
}

fn sandbox_tests_possible() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Path::new(PYTHON).exists()
        && Command::new("curl").arg("--version").output().is_ok();
    if !ok {
        eprintln!("SKIPPED: needs root, {PYTHON} and curl");
    }
    ok
}

#[test]
fn two_runs_with_the_same_endpoint_names_are_routed_independently() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    let a = s.start("alpha", &["web=8000"], &http_server("alpha", 8000));
    let b = s.start("beta", &["web=8000"], &http_server("beta", 8000));
    // `paddock run` names the URL on stderr; stdout stays the run id.
    let url_a = format!("http://web.alpha.localhost:{}", s.port);
    assert!(String::from_utf8_lossy(&a.stderr).contains(&url_a), "{a:?}");
    assert!(
        String::from_utf8_lossy(&a.stdout)
            .trim()
            .starts_with("run_")
    );
    assert!(String::from_utf8_lossy(&b.stderr).contains("web.beta.localhost"));

    assert_eq!(
        s.wait_status("web.alpha.localhost", "/who.txt", 200),
        "alpha\n"
    );
    assert_eq!(
        s.wait_status("web.beta.localhost", "/who.txt", 200),
        "beta\n"
    );
    // The sandbox was told its URL, name and id.
    let id_a = String::from_utf8_lossy(&a.stdout).trim().to_string();
    assert_eq!(
        s.get("web.alpha.localhost", "/env.txt"),
        (200, format!("{url_a} alpha {id_a}\n"))
    );
    // A bare run name with a single endpoint goes straight through.
    assert_eq!(s.get("beta.localhost", "/who.txt"), (200, "beta\n".into()));
    // Unknown names: 404 naming the live runs; outside .localhost: 400.
    let (code, body) = s.get("gamma.localhost", "/");
    assert_eq!(code, 404);
    assert!(body.contains("alpha") && body.contains("beta"), "{body}");
    assert_eq!(s.get("example.com", "/").0, 400);
    // The index of everything, as JSON.
    let (code, body) = s.curl(
        "http",
        "localhost",
        "/",
        &["-H", "Accept: application/json"],
    );
    assert_eq!(code, 200);
    let index: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(index["runs"].as_array().unwrap().len(), 2, "{index}");

    // ps shows the URLs (and --json carries them); router status lists both routes.
    let ps = String::from_utf8_lossy(&s.ok(&["ps"]).stdout).into_owned();
    assert!(ps.contains("URLS") && ps.contains(&url_a), "{ps}");
    let ps: serde_json::Value = serde_json::from_slice(&s.ok(&["ps", "--json"]).stdout).unwrap();
    let alpha = ps["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "alpha")
        .unwrap()
        .clone();
    assert_eq!(alpha["ports"]["web"], 8000);
    assert_eq!(alpha["urls"]["web"], url_a.as_str());
    let st = s.router_status();
    assert_eq!(st["listening"], true, "{st}");
    assert_eq!(st["port"], s.port);
    let names: Vec<&str> = st["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
}

#[test]
fn h2c_and_https_through_the_exported_ca() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    s.start("secure", &["web=8000"], &http_server("secure", 8000));
    s.wait_status("web.secure.localhost", "/who.txt", 200);

    // HTTP/2 over cleartext with prior knowledge.
    let (code, version, body) = s.curl_v(
        "http",
        "web.secure.localhost",
        "/who.txt",
        &["--http2-prior-knowledge"],
    );
    assert_eq!(
        (code, version.as_str(), body.as_str()),
        (200, "2", "secure\n")
    );

    // The CA certificate (never the key), on stdout and into a file.
    let pem = String::from_utf8(s.ok(&["ca", "export"]).stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(!pem.contains("PRIVATE"));
    let ca = s.env.dir.path().join("paddock-ca.pem");
    s.ok(&["ca", "export", "-o", ca.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&ca).unwrap(), pem);

    // HTTPS on the same port, verified against that CA.
    let cacert = ["--cacert", ca.to_str().unwrap()];
    assert_eq!(
        s.curl("https", "web.secure.localhost", "/who.txt", &cacert),
        (200, "secure\n".into())
    );
    assert_eq!(
        s.curl("https", "secure.localhost", "/who.txt", &cacert),
        (200, "secure\n".into())
    );
    // Over HTTP/2 (ALPN) as well.
    let mut h2 = cacert.to_vec();
    h2.push("--http2");
    let (code, version, body) = s.curl_v("https", "web.secure.localhost", "/who.txt", &h2);
    assert_eq!(
        (code, version.as_str(), body.as_str()),
        (200, "2", "secure\n")
    );
    // Without the CA, curl refuses the certificate.
    assert_eq!(s.curl("https", "web.secure.localhost", "/", &[]).0, 0);
}

/// A WebSocket echo server (stdlib only): answers plain GETs with 200, upgrades the rest and
/// echoes each text frame back prefixed with `echo:`.
const WS_SERVER: &str = r#"
import base64, hashlib, socket, sys, threading
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
def handle(c):
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                return
            data += d
        key = None
        for line in data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "sec-websocket-key":
                key = v.strip()
        if key is None:
            body = b"ws server ready\n"
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            return
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        while True:
            b1, b2 = exact(c, 2)
            op, n = b1 & 0x0F, b2 & 0x7F
            if n == 126:
                n = int.from_bytes(exact(c, 2), "big")
            elif n == 127:
                n = int.from_bytes(exact(c, 8), "big")
            mask = exact(c, 4) if b2 & 0x80 else b"\0\0\0\0"
            payload = bytes(x ^ mask[i % 4] for i, x in enumerate(exact(c, n)))
            if op == 8:
                c.sendall(b"\x88\x00")
                return
            out = b"echo:" + payload
            c.sendall(bytes([0x80 | op, len(out)]) + out)
    except EOFError:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

/// One masked client text frame.
fn ws_frame(text: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn read_exact_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).unwrap();
    b
}

#[test]
fn websocket_echo_is_spliced_through() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    std::fs::write(s.ws.join("ws_echo.py"), WS_SERVER).unwrap();
    let script = format!("exec {PYTHON} {}/ws_echo.py 9000", s.ws.display());
    s.start("chat", &["ws=9000"], &script);
    assert_eq!(
        s.wait_status("ws.chat.localhost", "/", 200),
        "ws server ready\n"
    );

    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "GET /socket HTTP/1.1\r\nHost: ws.chat.localhost:{}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        s.port
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_exact_n(&mut c, 1));
        assert!(head.len() < 16 * 1024, "no end of the answer's head");
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455's example key and its accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for msg in ["hello", "second message"] {
        c.write_all(&ws_frame(msg.as_bytes())).unwrap();
        let h = read_exact_n(&mut c, 2);
        assert_eq!(h[0], 0x81);
        let body = read_exact_n(&mut c, usize::from(h[1] & 0x7f));
        assert_eq!(String::from_utf8_lossy(&body), format!("echo:{msg}"));
    }
}

#[test]
fn routes_follow_stop_and_rm_and_names_are_reused() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    s.start("app", &["web=8000"], &http_server("first", 8000));
    assert_eq!(
        s.wait_status("web.app.localhost", "/who.txt", 200),
        "first\n"
    );
    s.ok(&["stop", "-t", "1", "app"]);
    // Stopped: 503 saying so, and the route is kept as stopped.
    let (code, body) = s.get("web.app.localhost", "/who.txt");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("stopped"), "{body}");
    let st = s.router_status();
    assert_eq!(st["routes"][0]["state"], "stopped", "{st}");
    // Removed: the route is gone (404), and so is its row.
    s.ok(&["rm", "app"]);
    assert_eq!(s.get("web.app.localhost", "/who.txt").0, 404);
    assert!(s.router_status()["routes"].as_array().unwrap().is_empty());
    // The name is free for a new run, which gets its own routes.
    s.start("app", &["web=8001"], &http_server("second", 8001));
    assert_eq!(
        s.wait_status("web.app.localhost", "/who.txt", 200),
        "second\n"
    );
}

#[test]
fn a_service_that_is_not_listening_gets_502() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    s.start(
        "idle",
        &["web=8000", "api=8001"],
        &http_server("idle", 8000),
    );
    s.wait_status("web.idle.localhost", "/who.txt", 200);
    let (code, body) = s.get("api.idle.localhost", "/");
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("8001"), "{body}");
    // Two endpoints: the bare name is an index of them.
    let (code, body) = s.get("idle.localhost", "/");
    assert_eq!(code, 200);
    assert!(body.contains("api") && body.contains("web"), "{body}");
}

#[test]
fn routes_are_rebuilt_after_a_daemon_restart() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    s.start("keep", &["web=8000"], &http_server("kept", 8000));
    s.start("gone", &["web=8001"], &http_server("gone", 8001));
    assert_eq!(
        s.wait_status("web.keep.localhost", "/who.txt", 200),
        "kept\n"
    );
    s.wait_status("web.gone.localhost", "/who.txt", 200);
    s.ok(&["stop", "-t", "1", "gone"]);
    let pid = s.env.daemon_pid().unwrap();

    // Stop the daemon: the sandboxes keep running, the router goes with the daemon.
    s.ok(&["daemon", "stop"]);
    assert!(wait_until(READY, || (!common::pid_alive(pid)).then_some(())).is_some());
    assert_eq!(
        s.get("web.keep.localhost", "/who.txt").0,
        0,
        "router still up"
    );

    // The next daemon re-adopts the run and rebuilds its route from state.db.
    let st = s.router_status();
    assert_ne!(s.env.daemon_pid(), Some(pid));
    assert_eq!(st["listening"], true, "{st}");
    let routes = st["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2, "{st}");
    assert_eq!(routes[0]["name"], "gone");
    assert_eq!(routes[0]["state"], "stopped");
    assert_eq!(routes[1]["name"], "keep");
    assert_eq!(routes[1]["state"], "running");
    assert_eq!(
        s.wait_status("web.keep.localhost", "/who.txt", 200),
        "kept\n"
    );
    assert_eq!(s.get("web.gone.localhost", "/who.txt").0, 503);
}

#[test]
fn a_taken_router_port_is_reported_and_never_replaced() {
    if !Path::new(PYTHON).exists() {
        eprintln!("SKIPPED: needs {PYTHON} to hold a port");
        return;
    }
    // Another program holds the router's port: a child process, so that once it is
    // killed no fork of this test process (another test spawning paddock) can still hold
    // a copy of the socket between its fork and exec.
    let (holder, port) = (0..5)
        .find_map(|_| {
            let port = free_port();
            PortHolder::new(port).map(|h| (h, port))
        })
        .expect("python holds a free port");
    let s = setup_on(port);

    // Runs without endpoints are unaffected.
    let out = s.paddock(&["run", "-q", "--", "true"]);
    assert!(out.status.success(), "{out:?}");
    let st = s.router_status();
    assert_eq!(st["listening"], false, "{st}");
    assert_eq!(st["port"], s.port);
    assert!(
        st["error"].as_str().unwrap().contains(&s.port.to_string()),
        "{st}"
    );

    // A run with endpoints is refused, naming the port and how to change it.
    let out = s.paddock(&["run", "-q", "-p", "web=3000", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{}", s.port)), "{err}");
    assert!(
        err.contains("PADDOCK_ROUTER_PORT") && err.contains("router.port"),
        "{err}"
    );
    assert!(err.contains("paddock daemon restart"), "{err}");
    let list: serde_json::Value =
        serde_json::from_slice(&s.ok(&["ps", "-a", "--json"]).stdout).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "{list}");
    // `router status` names the port and how to change it.
    let out = s.ok(&["router", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT listening"), "{text}");
    assert!(
        text.contains(&format!("ss -ltnp 'sport = :{}'", s.port))
            && text.contains("paddock daemon restart"),
        "{text}"
    );

    // Once the port is free, the daemon takes it (the same one): `router status` tries
    // again before answering.
    holder.release();
    let st = s.router_status();
    assert_eq!(st["listening"], true, "{st}");
    assert_eq!(st["port"], s.port);
    assert!(st["error"].is_null(), "{st}");
    if sandbox_tests_possible() {
        s.start("late", &["web=8000"], &http_server("late", 8000));
        assert_eq!(
            s.wait_status("web.late.localhost", "/who.txt", 200),
            "late\n"
        );
        assert_eq!(s.router_status()["listening"], true);
    }
}

#[test]
fn bad_port_mappings_are_usage_errors() {
    let s = setup();
    for (args, want) in [
        (&["-p", "web=0"][..], "out of range"),
        (&["-p", "web=70000"][..], "out of range"),
        (&["-p", "web=http"][..], "not a port number"),
        (&["-p", "web"][..], "not a port mapping"),
        (&["-p", "Web=3000"][..], "endpoint"),
        (&["-p", "my_app=3000"][..], "endpoint"),
        (&["-p", "web=3000", "-p", "web=3001"][..], "given twice"),
    ] {
        let mut full = vec!["run", "-q"];
        full.extend_from_slice(args);
        full.extend(["--", "true"]);
        let out = s.paddock(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("hint:"), "{args:?}: {err}");
    }
    // A bad `ports:` in paddock.yaml is a config error naming the key.
    std::fs::write(s.ws.join("paddock.yaml"), "ports:\n  web: 70000\n").unwrap();
    let out = s.paddock(&["run", "-q", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ports.web") || err.contains("70000"), "{err}");
    // A bad PADDOCK_ROUTER_PORT never starts a daemon on some other port.
    let out = s
        .env
        .cmd()
        .current_dir(&s.ws)
        .env("PADDOCK_ROUTER_PORT", "99999")
        .args(["router", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("PADDOCK_ROUTER_PORT"));
}

#[test]
fn flags_override_config_ports() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    std::fs::write(
        s.ws.join("paddock.yaml"),
        "ports:\n  web: 1111\n  api: 2222\n",
    )
    .unwrap();
    let out = s.ok(&[
        "run", "-d", "--json", "--name", "cfg", "-p", "web=3000", "--", "sleep", "30",
    ]);
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["ports"]["web"], 3000, "{run}");
    assert_eq!(run["ports"]["api"], 2222, "{run}");
    assert_eq!(
        run["urls"]["api"],
        format!("http://api.cfg.localhost:{}", s.port)
    );
    // --json keeps stderr free of the URL lines too.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("localhost"),
        "{out:?}"
    );
}

/// The user config of `s`'s environment (`$XDG_CONFIG_HOME/paddock/config.yaml`).
fn write_user_config(s: &Setup, yaml: &str) -> PathBuf {
    let dir = s.env.config.join("paddock");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn a_broken_user_config_is_an_error_and_never_a_daemon_on_defaults() {
    let s = setup();
    let path = write_user_config(&s, "# mine\nrouter:\n  port: 70000\n");
    // Commands that may start the daemon refuse, naming the file, line and key.
    for args in [&["router", "status"][..], &["ps"][..]] {
        let out = s.paddock(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{}:3:9", path.display())) && err.contains("70000"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("does not start on defaults"),
            "{args:?}: {err}"
        );
    }
    assert!(s.env.health().is_none(), "a daemon started on defaults");
    assert!(common::daemon_processes(&s.env.home).is_empty());
    // A misspelt key: did you mean.
    write_user_config(&s, "routr:\n  port: 9000\n");
    let out = s.paddock(&["router", "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:1:", path.display())) && err.contains("did you mean `router`"),
        "{err}"
    );
    // `paddock daemon` in the foreground refuses too, right away.
    let mut child = s
        .env
        .cmd()
        .args(["daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_until(Duration::from_secs(15), || child.try_wait().unwrap());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("`paddock daemon` served despite a broken user config");
    }
    assert_eq!(status.unwrap().code(), Some(2));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("did you mean `router`"), "{err}");
    assert!(s.env.health().is_none());

    // Fixed: the daemon starts, on the configured port.
    write_user_config(&s, "router:\n  port: 9000\n");
    assert_eq!(s.router_status()["port"], s.port, "the variable wins");
    // Broken again: `daemon restart` refuses before stopping the running daemon.
    let pid = s.env.daemon_pid().unwrap();
    write_user_config(&s, "router:\n  prot: 9000\n");
    let out = s.paddock(&["daemon", "restart"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("did you mean `port`"), "{err}");
    assert_eq!(
        s.env.daemon_pid(),
        Some(pid),
        "the running daemon was stopped"
    );
    // Commands served by the running daemon still work, warning about the file.
    let out = s.paddock(&["ps"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning:") && err.contains(&format!("{}:2:", path.display())),
        "{err}"
    );
    assert_eq!(s.env.daemon_pid(), Some(pid));
}

/// `paddock ARGS` in `s`'s environment with `PADDOCK_ROUTER_PORT=port` (`None`: unset, so
/// `router.port` of the user config or 8080 applies).
fn paddock_on(s: &Setup, port: Option<u16>, args: &[&str]) -> Output {
    let mut c = s.env.cmd();
    c.current_dir(&s.ws);
    match port {
        Some(p) => c.env("PADDOCK_ROUTER_PORT", p.to_string()),
        None => c.env_remove("PADDOCK_ROUTER_PORT"),
    };
    c.args(args).output().unwrap()
}

fn status_on(s: &Setup, port: Option<u16>) -> (serde_json::Value, String) {
    let out = paddock_on(s, port, &["router", "status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_changed_router_port_restarts_an_idle_daemon_and_warns_a_busy_one() {
    let s = setup();
    let (st, _) = status_on(&s, Some(s.port));
    assert_eq!(st["port"], s.port);
    let first = s.env.daemon_pid().unwrap();
    assert_eq!(s.env.health().unwrap()["router_port"], s.port);

    // Another PADDOCK_ROUTER_PORT and no active run: a new daemon on the new port.
    let second_port = free_port();
    let (st, err) = status_on(&s, Some(second_port));
    assert_eq!(st["port"], second_port, "{st}");
    assert_eq!(st["listening"], true, "{st}");
    assert!(err.is_empty(), "{err}");
    let second = s.env.daemon_pid().unwrap();
    assert_ne!(second, first);
    assert!(!common::pid_alive(first));

    // `router.port` of the user config counts the same way (no variable set).
    let config_port = free_port();
    write_user_config(&s, &format!("router:\n  port: {config_port}\n"));
    let (st, _) = status_on(&s, None);
    assert_eq!(st["port"], config_port, "{st}");
    assert_ne!(s.env.daemon_pid().unwrap(), second);

    if !sandbox_tests_possible() {
        return;
    }
    // With an active run, the daemon keeps its port (and its runs' URLs), and says so.
    let out = paddock_on(
        &s,
        None,
        &[
            "run", "-d", "--name", "busy", "-p", "web=8000", "--", "sleep", "300",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let busy = s.env.daemon_pid().unwrap();
    let (st, err) = status_on(&s, Some(s.port));
    assert_eq!(st["port"], config_port, "{st}");
    assert_eq!(s.env.daemon_pid(), Some(busy));
    assert!(
        err.contains(&format!("routes on port {config_port}"))
            && err.contains(&format!("configured for port {}", s.port))
            && err.contains("1 active run")
            && err.contains("paddock daemon restart"),
        "{err}"
    );
    // The run's URL is still the daemon's port.
    let ps = paddock_on(&s, Some(s.port), &["ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(
        ps["runs"][0]["urls"]["web"],
        format!("http://web.busy.localhost:{config_port}")
    );
    // `paddock daemon restart` applies the new port (the run is re-adopted on it).
    let out = paddock_on(&s, Some(s.port), &["daemon", "restart"]);
    assert!(out.status.success(), "{out:?}");
    let (st, err) = status_on(&s, Some(s.port));
    assert_eq!(st["port"], s.port, "{st}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(
        st["routes"][0]["urls"]["web"],
        format!("http://web.busy.localhost:{}", s.port)
    );
}

#[test]
fn routes_of_re_adopted_runs_come_back_once_a_taken_port_is_free() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    s.start("keep", &["web=8000"], &http_server("kept", 8000));
    assert_eq!(
        s.wait_status("web.keep.localhost", "/who.txt", 200),
        "kept\n"
    );
    let pid = s.env.daemon_pid().unwrap();
    s.ok(&["daemon", "stop"]);
    assert!(wait_until(READY, || (!common::pid_alive(pid)).then_some(())).is_some());

    // Another program takes the port; the next daemon re-adopts the run but cannot route.
    let holder = wait_until(READY, || {
        std::net::TcpListener::bind(("127.0.0.1", s.port)).ok()
    })
    .expect("the router's port frees up");
    let st = s.router_status();
    assert_eq!(st["listening"], false, "{st}");
    assert_eq!(st["routes"][0]["state"], "running", "{st}");
    assert!(
        st["hint"]
            .as_str()
            .unwrap()
            .contains("paddock daemon restart"),
        "{st}"
    );

    // Freed: the daemon takes the port by itself (no new run, no status call) and the
    // re-adopted run answers again.
    drop(holder);
    let mut last = (0, String::new());
    let back = wait_until(Duration::from_secs(20), || {
        last = s.get("web.keep.localhost", "/who.txt");
        (last.0 == 200).then(|| last.1.clone())
    });
    assert_eq!(back.as_deref(), Some("kept\n"), "last: {last:?}");
    assert_eq!(s.router_status()["listening"], true);
}

#[test]
fn endpoint_ports_paddock_listens_on_are_refused_before_anything_is_created() {
    let s = setup();
    // The CLI: a usage error naming the port, why, and what to do.
    for (args, want) in [
        (&["-p", "web=80"][..], "port 80"),
        (&["-p", "web=443"][..], "port 443"),
        (&["-p", "dns=53"][..], "127.0.0.1:53"),
        (&["-p", "proxy=3128"][..], "127.0.0.80:3128"),
    ] {
        let mut full = vec!["run", "-q"];
        full.extend_from_slice(args);
        full.extend(["--", "true"]);
        let out = s.paddock(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.contains("cannot use port"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("hint: run the service on another port"),
            "{args:?}: {err}"
        );
    }
    // A port of `network.rules` (from paddock.yaml), and `ports:` in paddock.yaml too.
    std::fs::write(
        s.ws.join("paddock.yaml"),
        "network:\n  rules:\n    - {host: example.com, port: 8443}\nports:\n  api: 8443\n",
    )
    .unwrap();
    let out = s.paddock(&["run", "-q", "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("endpoint `api`") && err.contains("network.rules"),
        "{err}"
    );
    std::fs::remove_file(s.ws.join("paddock.yaml")).unwrap();

    // The API refuses the same, and duplicate endpoint names in the JSON object.
    s.ok(&["router", "status"]);
    let ws = s.ws.display().to_string();
    let create = |ports: &str, network: &str| {
        let body = format!(
            r#"{{"workspace":{ws:?},"command":["true"],"start":false,"network":{network},"ports":{ports}}}"#
        );
        common::request(&s.env.socket(), "POST", "/v1/runs", Some(&body)).unwrap()
    };
    for (ports, network, want) in [
        (r#"{"web":443}"#, "null", "port 443"),
        (r#"{"web":53}"#, "null", "127.0.0.1:53"),
        (
            r#"{"web":9443}"#,
            r#"{"rules":[{"host":"example.com","port":9443}]}"#,
            "network.rules",
        ),
        (r#"{"web":3000,"web":3001}"#, "null", "`web` is given twice"),
    ] {
        let (code, body) = create(ports, network);
        assert_eq!(code, 400, "{ports}: {body}");
        assert!(body.to_string().contains(want), "{ports}: {body}");
    }
    // Nothing was created.
    let list: serde_json::Value =
        serde_json::from_slice(&s.ok(&["ps", "-a", "--json"]).stdout).unwrap();
    assert!(list["runs"].as_array().unwrap().is_empty(), "{list}");
    // A free port is fine (created, not started).
    let (code, body) = create(r#"{"web":3000}"#, "null");
    assert_eq!(code, 201, "{body}");
}

/// Threads of process `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn dials_into_a_run_share_one_parked_thread_that_ends_with_the_run() {
    if !sandbox_tests_possible() {
        return;
    }
    let s = setup();
    // python's http.server speaks HTTP/1.0 and closes after each answer: every request
    // through the router is a new connection dialled into the run's namespace.
    s.start("dial", &["web=8000"], &http_server("dial", 8000));
    s.start("other", &["web=8000"], &http_server("other", 8000));
    s.wait_status("web.dial.localhost", "/who.txt", 200);
    s.wait_status("web.other.localhost", "/who.txt", 200);
    for _ in 0..20 {
        assert_eq!(
            s.get("web.dial.localhost", "/who.txt"),
            (200, "dial\n".into())
        );
    }
    let pid = s.env.daemon_pid().unwrap();
    // One thread per run dialled into, not one per connection (names are cut at 15 bytes).
    assert_eq!(threads_named(pid, "paddock-netns-d"), 2);
    // A stopped run's thread ends (it would keep the namespace alive).
    s.ok(&["stop", "-t", "1", "dial"]);
    assert!(
        wait_until(READY, || (threads_named(pid, "paddock-netns-d") == 1)
            .then_some(()))
        .is_some(),
        "the stopped run's dial thread is still there"
    );
    assert_eq!(
        s.get("web.other.localhost", "/who.txt"),
        (200, "other\n".into())
    );
    assert_eq!(s.get("web.dial.localhost", "/who.txt").0, 503);
}
