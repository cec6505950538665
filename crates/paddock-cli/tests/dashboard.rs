//! The web dashboard (`paddock ui`) through the real binary: a real browser (Debian's
//! chromium, driven by playwright-core from `tests/ui`) uses it end to end, and raw HTTP
//! requests check who may use it: a one-time login code, the session cookie with its
//! CSRF token, the bearer token, the Host check, cross-site requests; and that a sandbox
//! can neither reach the listener nor see its secrets.
//!
//! Each test has its own `$PADDOCK_HOME` and daemon; the dashboard takes a free port
//! (`PADDOCK_UI_PORT=0`), learnt from `paddock ui --json`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, dechunk, request, wait_until};

/// An answer of the dashboard listener.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The error envelope's code.
    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, a new connection each. `Host` is
/// `127.0.0.1:port` unless `headers` has one.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to the dashboard on 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        req.push_str("content-type: application/json\r\n");
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A SIGCHLD of another test's child interrupts a read with a timeout.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading the answer to {method} {path}: {e}"),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}: {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A home whose daemon serves the dashboard on a free port.
struct Dash {
    env: Env,
    ws: PathBuf,
    port: u16,
}

impl Dash {
    fn new() -> Dash {
        let mut env = Env::new();
        env.extra_env.push(("PADDOCK_UI_PORT".into(), "0".into()));
        let ws = env.dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let login = Self::login_json(&env);
        let base = login["base_url"].as_str().expect("base_url").to_string();
        let port = base
            .strip_prefix("http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the dashboard is not on 127.0.0.1: {base}"));
        Dash { env, ws, port }
    }

    fn login_json(env: &Env) -> serde_json::Value {
        let out = env.ok(&["ui", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("paddock ui --json: {e}: {out}"))
    }

    /// A fresh one-time login URL (`paddock ui --url`).
    fn login_url(&self) -> String {
        let url = self.env.ok(&["ui", "--url"]).trim().to_string();
        let prefix = format!("http://127.0.0.1:{}/login?code=", self.port);
        let code = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("not a login URL of this dashboard: {url}"));
        assert!(
            code.len() >= 32 && code.bytes().all(|b| b.is_ascii_hexdigit()),
            "{url}"
        );
        url
    }

    /// The path and query of a fresh login URL.
    fn login_path(&self) -> String {
        let url = self.login_url();
        let at = url.find("/login").unwrap();
        url[at..].to_string()
    }

    /// Log in with a fresh code: the `Cookie` header value (`name=value`).
    fn session(&self) -> String {
        let r = http(self.port, "GET", &self.login_path(), &[], None);
        assert_eq!(r.status, 303, "login: {r:?}");
        assert_eq!(r.header("location"), Some("/"), "{r:?}");
        let set = r
            .header("set-cookie")
            .expect("a session cookie")
            .to_string();
        let name = format!("paddock_session_{}=", self.port);
        assert!(set.starts_with(&name), "{set}");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.split("; ").any(|a| a == attr), "{attr} missing: {set}");
        }
        let pair = set.split(';').next().unwrap().to_string();
        assert!(pair.len() > name.len() + 32, "{pair}");
        pair
    }

    /// The session's CSRF token (`GET /ui/session`).
    fn csrf(&self, cookie: &str) -> String {
        let r = http(self.port, "GET", "/ui/session", &[("cookie", cookie)], None);
        assert_eq!(r.status, 200, "{r:?}");
        let csrf = r.json()["csrf"].as_str().unwrap_or_default().to_string();
        assert!(csrf.len() >= 32, "{r:?}");
        csrf
    }

    fn token(&self) -> String {
        let t = self.env.ok(&["ui", "--token"]).trim().to_string();
        assert!(t.len() >= 32, "{t}");
        t
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `paddock run -q ARGS -- sh -c SCRIPT [ARGV…]` in the workspace; (success, stdout, stderr).
    fn sh(&self, script: &str, argv: &[&str]) -> (bool, String, String) {
        let out = self
            .env
            .cmd()
            .current_dir(&self.ws)
            .args(["run", "-q", "--", "sh", "-c", script, "sh"])
            .args(argv)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A detached run of `sleep 600`: its id.
    fn sleeper(&self, name: &str) -> String {
        let out = self.env.ok(&[
            "run",
            "-d",
            "--json",
            "--name",
            name,
            "-w",
            self.ws.to_str().unwrap(),
            "--",
            "sleep",
            "600",
        ]);
        let run: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(run["state"], "running", "{out}");
        run["id"].as_str().unwrap().to_string()
    }

    /// A run's state, over the daemon socket.
    fn state(&self, id: &str) -> String {
        let (status, body) = request(&self.env.socket(), "GET", &format!("/v1/runs/{id}"), None)
            .expect("daemon socket");
        assert_eq!(status, 200, "{body}");
        body["state"].as_str().unwrap_or_default().to_string()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn a_real_browser_drives_the_dashboard() {
    let root = repo_root();
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let playwright = root.join("tests/ui/node_modules/playwright-core");
    let missing: Vec<String> = [
        (!chromium.is_file()).then(|| format!("{} (apt-get install chromium)", chromium.display())),
        (!playwright.is_dir())
            .then(|| format!("{} (npm ci --prefix tests/ui)", playwright.display())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("PADDOCK_REQUIRE_BROWSER").is_none(),
            "PADDOCK_REQUIRE_BROWSER is set but the browser test cannot run: missing {}",
            missing.join(", ")
        );
        eprintln!(
            "skipping the browser test: missing {} (set PADDOCK_REQUIRE_BROWSER=1 to fail instead)",
            missing.join(", ")
        );
        return;
    }

    let d = Dash::new();
    let shots = root.join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    const PNGS: &[&str] = &[
        "runs.png",
        "runs-live.png",
        "logs.png",
        "traffic.png",
        "init.png",
        "audit.png",
        "changes.png",
        "stopped.png",
        "applied.png",
    ];
    // Screenshots of an earlier run must not pass for this one's.
    for entry in std::fs::read_dir(&shots).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }

    let stdout_path = d.env.dir.path().join("browser.out");
    let stderr_path = d.env.dir.path().join("browser.err");
    let mut node = Command::new("node");
    node.current_dir(&root)
        .arg(root.join("tests/ui/dashboard.mjs"))
        .env("PADDOCK", common::exe())
        .env("PADDOCK_HOME", &d.env.home)
        .env("XDG_CONFIG_HOME", &d.env.config)
        .env("NO_COLOR", "1")
        .env("WORKSPACE", &d.ws)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("LOGIN_URL", d.login_url())
        .env_remove("PADDOCK_COMMIT_OVERRIDE")
        .env_remove("PADDOCK_IDLE_TIMEOUT")
        .env_remove("PADDOCK_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (k, v) in &d.env.extra_env {
        node.env(k, v);
    }
    let mut child = node.spawn().expect("starting node");
    // The script ends itself after 120 s; this is the backstop.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{out}\n{err}"
    );
    assert!(out.contains("ok: all steps"), "{out}\n{err}");
    for png in PNGS {
        let p = shots.join(png);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a screenshot",
            p.display()
        );
    }

    // What the page did, seen from the daemon: the run stopped, its change applied.
    let (_, body) = request(&d.env.socket(), "GET", "/v1/runs?all=1", None).unwrap();
    let runs = body["runs"].as_array().cloned().unwrap_or_default();
    let run = runs
        .iter()
        .find(|r| r["name"] == "web-demo")
        .unwrap_or_else(|| panic!("no run web-demo: {body}"));
    assert_eq!(run["state"], "stopped", "{run}");
    assert_eq!(run["applied"], true, "{run}");
    assert_eq!(
        std::fs::read_to_string(d.ws.join("made-by-web-demo.txt")).unwrap(),
        "written inside the sandbox by web-demo\n"
    );
}

#[test]
fn nothing_is_served_without_a_session_or_the_token() {
    let d = Dash::new();
    let guessed = format!("paddock_session_{}={}", d.port, "ab".repeat(32));
    for path in ["/", "/v1/runs", "/metrics", "/ui/session", "/assets/app.js"] {
        for headers in [
            &[][..],
            &[("cookie", guessed.as_str())][..],
            &[("authorization", "Bearer ")][..],
        ] {
            let r = http(d.port, "GET", path, headers, None);
            assert_eq!(r.status, 401, "GET {path} with {headers:?}: {r:?}");
            assert!(
                !r.body.contains("paddock dashboard</title>")
                    && !r.body.contains("'use strict'")
                    && !r.body.contains("\"runs\""),
                "GET {path} leaked content: {r:?}"
            );
            if path.starts_with("/v1/") || path == "/metrics" || path == "/ui/session" {
                assert_eq!(r.error_code(), "unauthorized", "GET {path}: {r:?}");
            }
        }
    }
    // The same requests with a session succeed: the refusals above were for want of one.
    let cookie = d.session();
    for path in ["/", "/v1/runs", "/metrics", "/ui/session", "/assets/app.js"] {
        let r = http(d.port, "GET", path, &[("cookie", cookie.as_str())], None);
        assert_eq!(r.status, 200, "GET {path} with a session: {r:?}");
    }
    let page = http(d.port, "GET", "/", &[("cookie", cookie.as_str())], None);
    assert!(page.body.contains("/assets/app.js"), "{page:?}");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "{page:?}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
}

#[test]
fn a_login_code_works_once() {
    let d = Dash::new();
    let path = d.login_path();
    let first = http(d.port, "GET", &path, &[], None);
    assert_eq!(first.status, 303, "{first:?}");
    assert!(first.header("set-cookie").is_some(), "{first:?}");
    let again = http(d.port, "GET", &path, &[], None);
    assert_eq!(again.status, 401, "a used code logged in again: {again:?}");
    assert!(again.header("set-cookie").is_none(), "{again:?}");
    // A code that was never handed out, and none at all.
    let wrong = format!("/login?code={}", "0".repeat(64));
    for p in [wrong.as_str(), "/login", "/login?code="] {
        let r = http(d.port, "GET", p, &[], None);
        assert_eq!(r.status, 401, "{p}: {r:?}");
        assert!(r.header("set-cookie").is_none(), "{p}: {r:?}");
    }
    // The session from the first use works.
    let cookie = first
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let r = http(d.port, "GET", "/v1/runs", &[("cookie", cookie)], None);
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn other_host_names_are_refused_even_with_a_session() {
    let d = Dash::new();
    let cookie = d.session();
    let token = d.token();
    let bearer = format!("Bearer {token}");
    let other_port = format!("127.0.0.1:{}", if d.port == 1 { 2 } else { d.port - 1 });
    let evil = format!("evil.example:{}", d.port);
    let rebinding = format!("attacker.localhost:{}", d.port);
    let run_host = format!("web.myapp.localhost:{}", d.port);
    for host in [
        evil.as_str(),
        rebinding.as_str(),
        run_host.as_str(),
        other_port.as_str(),
        "127.0.0.1",
    ] {
        for path in ["/", "/v1/runs", "/metrics"] {
            for auth in [
                ("cookie", cookie.as_str()),
                ("authorization", bearer.as_str()),
            ] {
                let r = http(d.port, "GET", path, &[("host", host), auth], None);
                assert_eq!(
                    r.status, 403,
                    "GET {path} Host: {host} with {}: {r:?}",
                    auth.0
                );
                assert!(!r.body.contains("\"runs\""), "{r:?}");
                if path != "/" {
                    assert_eq!(r.error_code(), "forbidden", "{r:?}");
                }
            }
        }
        // A login link opened under another name does not log in (and is not used up).
        let login = d.login_path();
        let r = http(d.port, "GET", &login, &[("host", host)], None);
        assert_eq!(r.status, 403, "login with Host: {host}: {r:?}");
        assert!(r.header("set-cookie").is_none(), "{r:?}");
        let ok = http(d.port, "GET", &login, &[], None);
        assert_eq!(ok.status, 303, "{ok:?}");
    }
    // The names the dashboard is: the same requests pass.
    for host in [
        format!("127.0.0.1:{}", d.port),
        format!("localhost:{}", d.port),
    ] {
        let r = http(
            d.port,
            "GET",
            "/v1/runs",
            &[("host", host.as_str()), ("cookie", cookie.as_str())],
            None,
        );
        assert_eq!(r.status, 200, "Host: {host}: {r:?}");
    }
}

#[test]
fn cross_site_requests_cannot_stop_a_run() {
    let d = Dash::new();
    let id = d.sleeper("victim");
    let cookie = d.session();
    let csrf = d.csrf(&cookie);
    let origin = d.origin();
    let stop = format!("/v1/runs/{id}/stop");
    let c = ("cookie", cookie.as_str());
    let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // What a form or fetch on another site sends: the cookie rides along (were it not
        // SameSite=Strict), Origin is theirs, no CSRF token.
        (
            "cross-site, no CSRF",
            vec![c, ("origin", "http://evil.example")],
        ),
        (
            "same origin but no CSRF",
            vec![c, ("origin", origin.as_str())],
        ),
        ("no Origin, no CSRF", vec![c]),
        (
            "wrong CSRF",
            vec![c, ("origin", origin.as_str()), ("x-paddock-csrf", "0000")],
        ),
        (
            "the right CSRF from another origin",
            vec![
                c,
                ("origin", "http://evil.example"),
                ("x-paddock-csrf", csrf.as_str()),
            ],
        ),
        (
            "a run's own service (same site)",
            vec![
                c,
                ("origin", "http://web.myapp.localhost:8080"),
                ("x-paddock-csrf", csrf.as_str()),
            ],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![
                c,
                ("origin", origin.as_str()),
                ("x-paddock-csrf", csrf.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ];
    for (what, headers) in &refused {
        let r = http(d.port, "POST", &stop, headers, Some("{}"));
        assert_eq!(r.status, 403, "{what}: {r:?}");
        assert_eq!(r.error_code(), "forbidden", "{what}: {r:?}");
        assert_eq!(d.state(&id), "running", "{what} stopped the run");
    }
    // A page on another site cannot even read.
    let r = http(
        d.port,
        "GET",
        "/v1/runs",
        &[c, ("sec-fetch-site", "same-site")],
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Not logged in at all, with the CSRF token (it is no credential by itself).
    let r = http(
        d.port,
        "POST",
        &stop,
        &[
            ("origin", origin.as_str()),
            ("x-paddock-csrf", csrf.as_str()),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(d.state(&id), "running");

    // The dashboard's own page: Origin and CSRF token.
    let r = http(
        d.port,
        "POST",
        &stop,
        &[
            c,
            ("origin", origin.as_str()),
            ("x-paddock-csrf", csrf.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let stopped = wait_until(Duration::from_secs(20), || {
        (d.state(&id) == "stopped").then_some(())
    });
    assert!(stopped.is_some(), "state {}", d.state(&id));

    // The bearer token needs no CSRF token (it is not sent by browsers on their own).
    let bearer = format!("Bearer {}", d.token());
    let r = http(
        d.port,
        "DELETE",
        &format!("/v1/runs/{id}"),
        &[("authorization", bearer.as_str())],
        None,
    );
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    let (status, _) = request(&d.env.socket(), "GET", &format!("/v1/runs/{id}"), None).unwrap();
    assert_eq!(status, 404, "the run is still there after DELETE");
}

#[test]
fn metrics_need_the_bearer_token_and_count_runs_and_egress() {
    let d = Dash::new();
    std::fs::write(d.ws.join("paddock.yaml"), "network:\n  policy: strict\n").unwrap();
    let (ok, stdout, stderr) = d.sh(
        "curl -s -m 10 -o /dev/null -w 'code=%{http_code}\\n' http://denied.example/metrics-test",
        &[],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("code=403"),
        "the request was not denied: {stdout}"
    );
    let _live = d.sleeper("counted");

    let token = d.token();
    let r = http(
        d.port,
        "GET",
        "/metrics",
        &[("authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{r:?}"
    );
    // The sum of a metric's samples whose labels include all of `labels`.
    let sum = |name: &str, labels: &[&str]| -> f64 {
        r.body
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // One run live (the sleeper), one ended (the curl).
    assert_eq!(
        sum("paddock_runs", &["state=\"running\""]),
        1.0,
        "{}",
        r.body
    );
    assert_eq!(
        sum("paddock_runs", &["state=\"stopped\""]),
        1.0,
        "{}",
        r.body
    );
    let denied = sum("paddock_egress_requests_total", &["decision=\"denied\""]);
    assert!(
        denied >= 1.0,
        "the denied request is not counted:\n{}",
        r.body
    );
    assert!(!r.body.contains(&token), "the token is in the metrics");
    assert!(
        r.body.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );

    // A wrong token is refused, and does not fall back to a cookie sent along.
    let cookie = d.session();
    let wrong = format!("Bearer {}", "f".repeat(token.len()));
    for headers in [
        vec![("authorization", wrong.as_str())],
        vec![
            ("authorization", wrong.as_str()),
            ("cookie", cookie.as_str()),
        ],
        vec![("authorization", "Basic Zm9vOmJhcg==")],
    ] {
        let r = http(d.port, "GET", "/metrics", &headers, None);
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        assert_eq!(r.error_code(), "unauthorized", "{r:?}");
        assert!(!r.body.contains("paddock_runs"), "{r:?}");
    }
}

#[test]
fn a_sandbox_cannot_reach_the_dashboard() {
    let d = Dash::new();
    // The listener is up (and answers 401 to a stranger on the host).
    assert_eq!(http(d.port, "GET", "/", &[], None).status, 401);
    let port = d.port.to_string();
    // Direct (the run's own loopback), then through the egress proxy explicitly.
    let script = r#"
echo "--- direct"
curl -sS -m 5 -i --noproxy '*' "http://127.0.0.1:$1/"; echo "direct_exit=$?"
for url in "http://127.0.0.1:$1/" "http://localhost:$1/" "http://[::1]:$1/"; do
  echo "--- proxy $url"
  curl -sS -m 5 -i --noproxy '' -x "$http_proxy" "$url"; echo "proxy_exit=$?"
done
"#;
    let (ok, stdout, stderr) = d.sh(script, &[&port]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("direct_exit=7"), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("proxy_exit=").count(), 3, "{stdout}");
    // Every dashboard answer carries its CSP and names itself in a refusal.
    for needle in ["content-security-policy", "paddock dashboard", "paddock ui"] {
        assert!(
            !stdout.to_ascii_lowercase().contains(needle),
            "the sandbox reached the dashboard ({needle}):\n{stdout}"
        );
    }
    assert!(
        stdout.matches("x-paddock-blocked: private-address").count() >= 2,
        "the proxy did not refuse loopback:\n{stdout}"
    );
}

#[test]
fn the_ui_secrets_never_enter_a_sandbox() {
    let d = Dash::new();
    let token = d.token();
    let cookie = d.session();
    let session = cookie.split_once('=').unwrap().1.to_string();
    let csrf = d.csrf(&cookie);
    // The sandbox searches its files for a prefix of each secret (enough to find a copy;
    // never enough to use): the secrets themselves are not handed in. A canary with a prefix
    // shows the search finds what is there.
    let (tp, sp, cp) = (&token[..16], &session[..16], &csrf[..16]);
    let home = d.env.home.to_str().unwrap();
    // Where to search: everything the sandbox sees but /proc, /sys and /dev (kernel views;
    // the processes' environments and arguments are read separately below; /dev/shm is
    // searched) and /usr (with /bin, /lib…, symlinks into it): the host's own /usr, one
    // read-only mount (checked below), gigabytes of packaged files that paddock never writes
    // to; any mount paddock placed under /usr would be searched too. The rest (/etc, /opt,
    // /home, the private /tmp with the workspace in it, ...) is a few hundred MB: seconds.
    let script = r#"
printf 'canary %s\n' "$1" > /tmp/paddock-canary
echo "=== env"
env
echo "=== procs"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
  { tr '\0' '\n' < "$f"; echo; } 2>/dev/null
done
echo "=== mounts"
awk '{print $4, $5, $6}' /proc/self/mountinfo
echo "=== home"
[ -e "$4" ] && echo "PADDOCK_HOME visible" || echo "PADDOCK_HOME absent"
roots=""
for d in /* /dev/shm; do
  [ -L "$d" ] && continue
  case "$d" in /proc|/sys|/dev|/usr) continue;; esac
  roots="$roots $d"
done
for m in $(awk '{print $5}' /proc/self/mountinfo); do
  case "$m" in /usr/*) roots="$roots $m";; esac
done
echo "=== roots $roots"
echo "=== hits"
timeout 120 grep -rlF -e "$1" -e "$2" -e "$3" $roots 2>/dev/null
echo "=== end $?"
"#;
    let started = Instant::now();
    let (ok, stdout, stderr) = d.sh(script, &[tp, sp, cp, home]);
    assert!(ok, "{stdout}\n{stderr}");
    eprintln!("the sandbox's search took {:?}", started.elapsed());

    // Full values: nowhere in what the sandbox printed (its environment, every process's
    // environment and arguments it can read).
    for (what, secret) in [("token", &token), ("session", &session), ("csrf", &csrf)] {
        assert!(
            !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
            "the {what} is visible in the sandbox:\n{stdout}"
        );
    }
    // The lines after the marker line `=== NAME`, up to the next marker. (The script's own
    // text is in the process dump too, but there a marker is inside `echo "…"`.)
    let section = |name: &str| -> Vec<&str> {
        let marker = format!("=== {name}");
        stdout
            .lines()
            .skip_while(|l| *l != marker)
            .skip(1)
            .take_while(|l| !l.starts_with("=== "))
            .collect()
    };
    assert!(
        section("env")
            .iter()
            .any(|l| l.starts_with("PADDOCK_RUN_ID=")),
        "no environment printed:\n{stdout}"
    );
    assert!(
        section("procs")
            .iter()
            .any(|l| l.starts_with("PADDOCK_RUN_ID=")),
        "no process environment read:\n{stdout}"
    );
    assert_eq!(section("home"), ["PADDOCK_HOME absent"], "{stdout}");
    let usr: Vec<&str> = section("mounts")
        .into_iter()
        .filter(|l| l.split(' ').nth(1) == Some("/usr"))
        .collect();
    assert!(
        usr.len() == 1
            && usr[0]
                .split(' ')
                .nth(2)
                .is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "the search skips /usr because it is one read-only mount of the host's: {usr:?}\n{stdout}"
    );
    let roots: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("=== roots "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for want in ["/etc", "/tmp", "/home", "/dev/shm"] {
        assert!(roots.contains(&want), "{want} not searched: {roots:?}");
    }
    let rc = stdout
        .lines()
        .find_map(|l| l.strip_prefix("=== end "))
        .unwrap_or_else(|| panic!("the search did not finish: {stdout}"));
    assert_ne!(rc.trim(), "124", "the search timed out:\n{stdout}");
    let hits = section("hits");
    assert_eq!(
        hits,
        ["/tmp/paddock-canary"],
        "files the sandbox can read hold a UI secret (or the canary was not found):\n{stdout}"
    );
}
