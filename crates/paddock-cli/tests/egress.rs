//! Egress through the real binary: runs reach local HTTPS upstreams (a test CA, reached via
//! `upstream:` in the user config) through paddock's proxy, with credentials injected from
//! grants that never enter the sandbox, policy enforced, and every request in the trace.
//!
//! The upstream is a small Python HTTPS server on the host; the clients inside the
//! sandboxes are the real curl, git, python and node. It logs each request as JSON, with
//! the headers the tests look at.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, wait_until};

/// The credential the upstream expects. It must never appear inside a sandbox.
const REAL: &str = "ghp_Re4lT0kenRe4lT0kenRe4lT0kenRe4lT0k9";

const UPSTREAM_PY: &str = r#"
import base64, json, os, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
cert, key, root, log_path, port_file, real = sys.argv[1:7]
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def record(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        entry = {"method": self.command, "host": self.headers.get("host"), "path": self.path,
                 "authorization": self.headers.get("authorization"), "body": body.decode("latin-1"),
                 "x-team": self.headers.get_all("x-team"), "x-token": self.headers.get("x-token"),
                 "user-agent": self.headers.get("user-agent")}
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        return entry
    def send(self, code, body, ctype="text/plain", extra=()):
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        e = self.record()
        self.send(200, ("posted " + e["body"]).encode())
    def do_GET(self):
        e = self.record()
        host = (e["host"] or "").split(":")[0]
        if self.path.startswith("/echo"):
            return self.send(200, json.dumps({"auth": e["authorization"]}).encode(), "application/json")
        if host == "github.com":
            want = "Basic " + base64.b64encode(("x-access-token:" + real).encode()).decode()
            if e["authorization"] != want:
                return self.send(401, b"auth required\n", extra=[("www-authenticate", 'Basic realm="git"')])
            p = os.path.normpath(os.path.join(root, self.path.lstrip("/").split("?")[0]))
            if not p.startswith(root) or not os.path.isfile(p):
                return self.send(404, b"not found\n")
            with open(p, "rb") as f:
                return self.send(200, f.read(), "application/octet-stream")
        self.send(200, ("hello from " + host + self.path + "\n").encode())
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
"#;

const NAMES: &[&str] = &[
    "github.com",
    "api.github.com",
    "api.anthropic.com",
    "denied.example",
];

struct Upstream {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, a certificate for [`NAMES`], a bare git repository served over dumb HTTP,
/// and the Python HTTPS server.
fn upstream(dir: &Path) -> Upstream {
    std::fs::create_dir_all(dir).unwrap();
    let ssl = |args: &[&str]| sh(Command::new("openssl").current_dir(dir).args(args));
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=paddock test upstream CA",
    ]);
    let san: Vec<String> = NAMES.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={}\n", san.join(",")),
    )
    .unwrap();
    ssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=upstream",
    ]);
    ssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    // A repository at github.com/org/repo.git (dumb HTTP: static files).
    let root = dir.join("www");
    let bare = root.join("org/repo.git");
    std::fs::create_dir_all(&bare).unwrap();
    let git = |cwd: &Path, args: &[&str]| {
        sh(Command::new("git")
            .current_dir(cwd)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com"))
    };
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README"), "cloned through paddock\n").unwrap();
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(&bare, &["update-server-info"]);

    std::fs::write(dir.join("upstream.py"), UPSTREAM_PY).unwrap();
    let port_file = dir.join("port");
    let child = Command::new("/usr/bin/python3")
        .arg(dir.join("upstream.py"))
        .args([
            dir.join("leaf.pem"),
            dir.join("leaf.key"),
            root.clone(),
            dir.join("requests.jsonl"),
            port_file.clone(),
        ])
        .arg(REAL)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 upstream");
    let port = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
    })
    .expect("the upstream did not start");
    Upstream {
        child,
        dir: dir.to_path_buf(),
        port,
    }
}

/// An Env whose daemon sends [`NAMES`] to the upstream and trusts its CA.
fn env_with_upstream() -> (Env, Upstream) {
    let env = Env::new();
    let up = upstream(&env.dir.path().join("upstream"));
    let resolve: Vec<String> = NAMES
        .iter()
        .map(|n| format!("    {n}: \"127.0.0.1:{}\"", up.port))
        .collect();
    let cfg = format!(
        "upstream:\n  extra_ca: {}\n  resolve:\n{}\n",
        up.dir.join("ca.pem").display(),
        resolve.join("\n")
    );
    std::fs::create_dir_all(env.config.join("paddock")).unwrap();
    std::fs::write(env.config.join("paddock/config.yaml"), cfg).unwrap();
    (env, up)
}

fn workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

fn run_in(env: &Env, ws: &Path, args: &[&str], script: &str) -> (bool, String, String) {
    let out = env
        .cmd()
        .current_dir(ws)
        .args(["run", "-q"])
        .args(args)
        .args(["--", "/bin/bash", "-c", script])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(b) = std::fs::read(&p)
                && b.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn grants_reach_upstreams_but_never_the_sandbox() {
    let (env, up) = env_with_upstream();
    let ws = workspace(&env);
    let out = env
        .cmd()
        .args(["grant", "github", "--from-env", "TEST_GH_TOKEN", "--json"])
        .env("TEST_GH_TOKEN", REAL)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let script = r#"
set -u
echo "GH_TOKEN=$GH_TOKEN"
echo "--- environment and /proc"
env
for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; tr '\0' '\n' < $p/environ 2>/dev/null; done
echo "--- curl, the client's placeholder replaced"
curl -sS https://api.github.com/echo -H "Authorization: Bearer $GH_TOKEN"; echo
echo "--- curl, no header at all"
curl -sS https://api.github.com/echo; echo
echo "--- git"
git clone -q https://github.com/org/repo.git /tmp/repo && cat /tmp/repo/README
echo "--- python"
/usr/bin/python3 -c "import urllib.request; print(urllib.request.urlopen('https://api.github.com/py').read().decode())"
echo "--- node (ignores the proxy variables: captured transparently)"
/usr/bin/node -e "fetch('https://api.github.com/node').then(r => r.text()).then(t => console.log('node: ' + t.trim()))"
"#;
    let (ok, stdout, stderr) = run_in(&env, &ws, &["--name", "gh", "-g", "github"], script);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(REAL),
        "the real token reached the sandbox:\n{stdout}"
    );
    assert!(!stderr.contains(REAL), "{stderr}");
    let placeholder = stdout
        .lines()
        .find_map(|l| l.strip_prefix("GH_TOKEN="))
        .expect("GH_TOKEN is set")
        .to_string();
    assert!(
        placeholder.starts_with("ghp_") && placeholder != REAL,
        "{placeholder}"
    );
    // The echoed Authorization came back scrubbed to the placeholder.
    assert!(
        stdout.contains(&format!("Bearer {placeholder}")),
        "echo not scrubbed to the placeholder:\n{stdout}"
    );
    assert!(
        stdout.contains("cloned through paddock"),
        "git clone failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("hello from api.github.com/py"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("node: hello from api.github.com/node"),
        "{stdout}\n{stderr}"
    );

    // Upstream: every request carried the real credential.
    let reqs = up.requests();
    let bearer = format!("Bearer {REAL}");
    for path in ["/echo", "/py", "/node"] {
        let r = reqs
            .iter()
            .find(|r| r["path"] == path && r["host"] == "api.github.com")
            .unwrap_or_else(|| panic!("no request for {path}: {reqs:#?}"));
        assert_eq!(r["authorization"], bearer.as_str(), "{r}");
    }
    assert!(
        reqs.iter().any(|r| r["host"] == "github.com"
            && r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/org/repo.git/info/refs"))),
        "{reqs:#?}"
    );
    assert!(
        reqs.iter()
            .filter(|r| r["host"] == "github.com")
            .all(|r| r["authorization"]
                .as_str()
                .is_some_and(|a| a.starts_with("Basic "))),
        "{reqs:#?}"
    );

    // The trace names the grant, never its value.
    let trace = env.ok(&["trace", "gh", "--json"]);
    assert!(!trace.contains(REAL));
    let records: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let echo = records
        .iter()
        .find(|r| r["path"] == "/echo")
        .expect("echo request traced");
    assert_eq!(echo["grants"], serde_json::json!(["github"]));
    assert_eq!(echo["status"], 200);
    assert_eq!(echo["type"], "net.request");
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "dns" && r["host"] == "api.github.com"),
        "node's DNS query is traced: {trace}"
    );
    let human = env.ok(&["trace", "gh"]);
    assert!(
        human.contains("GET https://api.github.com/echo  200"),
        "{human}"
    );
    assert!(human.contains("grants: github"), "{human}");

    // Nothing paddock wrote holds the value in clear (the secret store is encrypted).
    env.stop_daemon();
    let hits = files_containing(&env.home, REAL.as_bytes());
    assert!(
        hits.is_empty(),
        "the real token is stored in clear in {hits:?}"
    );
}

#[test]
fn strict_policy_denies_by_host_method_and_path_and_dns() {
    let (env, up) = env_with_upstream();
    let ws = workspace(&env);
    std::fs::write(
        ws.join("paddock.yaml"),
        "network:\n  policy: strict\n  rules:\n    - {host: api.github.com, allow_methods: [GET], deny_paths: [\"/admin/*\"]}\n",
    )
    .unwrap();
    let script = r#"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
echo "get=$(code https://api.github.com/ok)"
echo "post=$(code -X POST -d x https://api.github.com/ok)"
echo "admin=$(code https://api.github.com/admin/users)"
curl -s -D - -o /tmp/body -X DELETE https://api.github.com/ok | tr -d '\r' | grep -i '^x-paddock-blocked' | sed 's/^/header: /'
sed 's/^/body: /' /tmp/body
curl -s -m 10 -o /dev/null https://denied.example/; echo "denied_host_exit=$?"
curl -s -m 10 -o /dev/null --noproxy '*' https://denied.example/; echo "denied_direct_exit=$?"
/usr/bin/python3 - <<'PY'
import socket
for name in ["denied.example", "c2VjcmV0LWRhdGEtZXhmaWx0cmF0aW9uLWF0dGVtcHQ.denied.example"]:
    try:
        print("resolved", name, socket.gethostbyname(name))
    except socket.gaierror as e:
        print("nxdomain", name, e.errno)
print("allowed", socket.gethostbyname("api.github.com"))
PY
"#;
    let (ok, stdout, stderr) = run_in(&env, &ws, &["--name", "strict"], script);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("get=200"), "{stdout}");
    assert!(stdout.contains("post=403"), "{stdout}");
    assert!(stdout.contains("admin=403"), "{stdout}");
    assert!(stdout.contains("header: x-paddock-blocked"), "{stdout}");
    assert!(
        stdout.contains("body: ") && stdout.contains("network"),
        "{stdout}"
    );
    assert!(!stdout.contains("denied_host_exit=0"), "{stdout}");
    assert!(!stdout.contains("denied_direct_exit=0"), "{stdout}");
    assert!(
        !stdout.contains("resolved "),
        "a denied name resolved:\n{stdout}"
    );
    assert_eq!(stdout.matches("nxdomain ").count(), 2, "{stdout}");
    assert!(stdout.contains("allowed 198.1"), "{stdout}");

    // Only the allowed request reached the upstream.
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0]["method"], "GET");
    assert_eq!(reqs[0]["path"], "/ok");

    let trace = env.ok(&["trace", "strict", "--json"]);
    let denied: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "net.denied")
        .collect();
    assert!(
        denied
            .iter()
            .any(|r| r["method"] == "POST" && r["status"] == 403),
        "{trace}"
    );
    assert!(
        denied
            .iter()
            .any(|r| r["kind"] == "dns" && r["host"] == "denied.example"),
        "{trace}"
    );
    assert!(
        denied
            .iter()
            .all(|r| r["rule"].as_str().is_some_and(|s| !s.is_empty())),
        "every decision names its rule: {trace}"
    );
}

/// A header value from `network.headers` that must reach the upstream but no log.
const HEADER_TOKEN: &str = "hdr-tok-7Qm2Xw9Lp4Rt8Vz1";

#[test]
fn network_headers_are_set_and_removed_per_host() {
    let (env, up) = env_with_upstream();
    let ws = workspace(&env);
    std::fs::write(
        ws.join("paddock.yaml"),
        format!(
            "network:\n  headers:\n    - {{host: api.github.com, set: {{X-Team: blue, X-Token: {HEADER_TOKEN}}}, remove: [User-Agent]}}\n"
        ),
    )
    .unwrap();
    // No grants: the edits apply all the same. The client's own X-Team is replaced.
    let script = r#"
curl -sS -H 'X-Team: red' https://api.github.com/h
curl -sS -H 'X-Team: red' https://api.anthropic.com/h
"#;
    let (ok, stdout, stderr) = run_in(&env, &ws, &["--name", "hdr"], script);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("hello from api.github.com/h"), "{stdout}");
    assert!(
        stdout.contains("hello from api.anthropic.com/h"),
        "{stdout}"
    );

    let reqs = up.requests();
    let of = |host: &str| {
        reqs.iter()
            .find(|r| r["host"] == host && r["path"] == "/h")
            .unwrap_or_else(|| panic!("no request to {host}: {reqs:#?}"))
    };
    let gh = of("api.github.com");
    assert_eq!(gh["x-team"], serde_json::json!(["blue"]), "{gh}");
    assert_eq!(gh["x-token"], HEADER_TOKEN, "{gh}");
    assert!(gh["user-agent"].is_null(), "User-Agent not removed: {gh}");
    let other = of("api.anthropic.com");
    assert_eq!(other["x-team"], serde_json::json!(["red"]), "{other}");
    assert!(other["x-token"].is_null(), "{other}");
    assert!(
        other["user-agent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("curl/")),
        "another host's User-Agent was touched: {other}"
    );

    // The value is in no trace and no audit log.
    let trace = env.ok(&["trace", "hdr", "--json"]);
    assert!(trace.contains("/h"), "{trace}");
    assert!(!trace.contains(HEADER_TOKEN), "{trace}");
    let audit = env.ok(&["audit", "hdr", "--json"]);
    assert!(!audit.contains(HEADER_TOKEN), "{audit}");
    env.stop_daemon();
    let hits = files_containing(&env.home.join("audit"), HEADER_TOKEN.as_bytes());
    assert!(hits.is_empty(), "a header value is logged in {hits:?}");
}

#[test]
fn network_headers_refuse_managed_headers_with_the_position() {
    let env = Env::new();
    let ws = workspace(&env);
    std::fs::write(
        ws.join("paddock.yaml"),
        "network:\n  headers:\n    - host: api.github.com\n      set: {Host: x}\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .current_dir(&ws)
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a config error is a usage error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paddock.yaml:4:13"), "{err}");
    assert!(err.contains("Host"), "{err}");
    assert!(err.contains("hint"), "{err}");
    let runs = env.ok(&["ps", "-a", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(v.as_array().map(|a| a.len()).unwrap_or(0), 0, "{runs}");
}

#[test]
fn a_project_file_cannot_redirect_upstreams() {
    let env = Env::new();
    let ws = workspace(&env);
    std::fs::write(
        ws.join("paddock.yaml"),
        "upstream:\n  resolve: {api.github.com: \"127.0.0.1:9\"}\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .current_dir(&ws)
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a config error is a usage error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paddock.yaml:2:"), "{err}");
    assert!(err.contains("user config"), "{err}");
}

#[test]
fn an_unknown_grant_fails_before_anything_is_created() {
    let env = Env::new();
    let ws = workspace(&env);
    let out = env
        .cmd()
        .current_dir(&ws)
        .args(["run", "-g", "nosuch", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch"), "{err}");
    assert!(err.contains("paddock grant"), "{err}");
    let runs = env.ok(&["ps", "-a", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(v.as_array().map(|a| a.len()).unwrap_or(0), 0, "{runs}");
}
