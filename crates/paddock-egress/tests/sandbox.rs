//! Egress inside real native sandboxes: clients in the sandbox, upstreams on this
//! machine's loopback (reached through `upstream.resolve`), policy, interception,
//! injection, DNS and capture.

mod common;

use common::*;
use paddock_config::{NetworkConfig, NetworkPolicy};

fn permissive() -> NetworkConfig {
    NetworkConfig {
        policy: NetworkPolicy::Permissive,
        rules: vec![],
        passthrough: vec![],
        headers: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_explicit_proxy_is_intercepted_and_injected() {
    let Some(f) = fixture(permissive(), &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let o = f.sh("curl -sS --max-time 10 https://api.test/echo").await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.starts_with("ok GET /echo"), "{o}");
    let seen = f.seen();
    let (_, _, h) = seen
        .iter()
        .find(|(_, p, _)| p == "/echo")
        .expect("upstream saw it");
    assert_eq!(h.get("x-test-token").unwrap(), "real-secret");
    // The sandbox never had the value: not in its environment.
    let o = f.sh("env; cat /proc/self/environ | tr '\\0' '\\n'").await;
    assert!(!o.stdout.contains("real-secret"), "{o}");
    // The use of the credential, on the record before the request left; then the request.
    let used = f
        .record(|r| r.kind == paddock_egress::RecordKind::GrantUse)
        .await;
    assert_eq!(used.grants, vec!["testgrant".to_string()]);
    assert_eq!(
        (used.host.as_str(), used.path.as_deref()),
        ("api.test", Some("/echo"))
    );
    let r = f
        .record(|r| {
            r.kind == paddock_egress::RecordKind::Http
                && r.host == "api.test"
                && r.path.as_deref() == Some("/echo")
        })
        .await;
    assert!(
        f.records().iter().position(|r| *r == used) < f.records().iter().position(|x| *x == r),
        "the grant use is recorded first"
    );
    assert_eq!(r.status, Some(200));
    assert_eq!(r.grants, vec!["testgrant".to_string()]);
    assert!(r.decision.allowed);
    assert!(r.bytes_down > 0);
    f.finish().await;
}

fn rule(host: &str) -> paddock_config::Rule {
    paddock_config::Rule {
        host: host.parse().unwrap(),
        port: None,
        allow_methods: vec![],
        deny_methods: vec![],
        allow_paths: vec![],
        deny_paths: vec![],
        action: paddock_config::RuleAction::Allow,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_work_through_interception() {
    let Some(f) = fixture(permissive(), &[]).await else {
        return;
    };
    if tool("/usr/bin/python3") {
        let o = f
            .sh("/usr/bin/python3 -c \"import urllib.request;print(urllib.request.urlopen('https://api.test/py').read().decode())\"")
            .await;
        assert_eq!(o.code, Some(0), "{o}");
        assert!(o.stdout.starts_with("ok GET /py"), "{o}");
    }
    if tool("/usr/bin/node") {
        // Node's fetch ignores proxy variables: it resolves through the stub and is
        // captured by the transparent :443 listener.
        let o = f
            .sh("/usr/bin/node -e \"fetch('https://api.test/node').then(r=>r.text()).then(t=>console.log(t)).catch(e=>{console.error(e);process.exit(3)})\"")
            .await;
        assert_eq!(o.code, Some(0), "{o}");
        assert!(o.stdout.starts_with("ok GET /node"), "{o}");
    }
    let seen = f.seen();
    for (_, p, h) in &seen {
        assert_eq!(h.get("x-test-token").unwrap(), "real-secret", "{p}");
    }
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_ignoring_proxy_env_are_captured_and_governed() {
    let mut cfg = permissive();
    cfg.policy = NetworkPolicy::Strict;
    cfg.rules = vec![rule("api.test")];
    let Some(f) = fixture(cfg, &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    // Through the DNS stub and the transparent listener.
    let o = f
        .sh("getent hosts api.test; curl -sS --noproxy '*' --max-time 10 https://api.test/direct")
        .await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.contains("198.18."), "{o}");
    assert!(o.stdout.contains("ok GET /direct"), "{o}");
    let seen = f.seen();
    assert!(seen.iter().any(
        |(_, p, h)| p == "/direct" && h.get("x-test-token").is_some_and(|v| v == "real-secret")
    ));
    // A literal IP (no DNS, no SNI over plain HTTP): captured and denied by strict policy.
    let o = f
        .sh("curl -sS --noproxy '*' --max-time 10 -D - http://203.0.113.7/lit")
        .await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.contains("403"), "{o}");
    assert!(o.stdout.contains("x-paddock-blocked"), "{o}");
    assert!(o.stdout.contains("- host: 203.0.113.7"), "{o}");
    // A denied name does not even resolve.
    let o = f
        .sh("curl -sS --noproxy '*' --max-time 10 https://deny.test/x")
        .await;
    assert_eq!(o.code, Some(6), "{o}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_denies_by_host_method_and_path() {
    let mut api = rule("api.test");
    api.allow_methods = vec![paddock_config::HttpMethod::Get];
    api.deny_paths = vec!["/admin/**".into()];
    let cfg = NetworkConfig {
        policy: NetworkPolicy::Strict,
        rules: vec![api],
        passthrough: vec![],
        headers: vec![],
    };
    let Some(f) = fixture(cfg, &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let get = f.sh("curl -sS --max-time 10 https://api.test/ok").await;
    assert!(get.stdout.starts_with("ok GET /ok"), "{get}");
    let post = f
        .sh("curl -sS --max-time 10 -D - -X POST -d x=1 https://api.test/ok")
        .await;
    assert!(
        post.stdout.contains("HTTP/1.1 403") || post.stdout.contains("HTTP/2 403"),
        "{post}"
    );
    assert!(
        post.stdout.contains("x-paddock-blocked: default=strict"),
        "{post}"
    );
    assert!(post.stdout.contains("allow_methods: [POST]"), "{post}");
    let admin = f
        .sh("curl -sS --max-time 10 -o /dev/null -w '%{http_code}' https://api.test/admin/users")
        .await;
    assert_eq!(admin.stdout, "403", "{admin}");
    // Another host: the CONNECT itself is refused with 403.
    let other = f
        .sh("curl -sS --max-time 10 https://other.test/ 2>&1; echo; curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.80:3128 http://other.test/")
        .await;
    assert!(other.stdout.contains("403"), "{other}");
    // The upstream saw only the allowed GET.
    let seen = f.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    f.record(|r| !r.decision.allowed && r.method.as_deref() == Some("POST"))
        .await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_fronting_is_refused() {
    let Some(f) = fixture(permissive(), &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    // Host differs from SNI inside an intercepted connection.
    let o = f
        .sh("curl -sS --max-time 10 -D - -H 'Host: other.test' https://api.test/front")
        .await;
    assert!(o.stdout.contains("403"), "{o}");
    assert!(
        o.stdout
            .contains("x-paddock-blocked: builtin=domain fronting"),
        "{o}"
    );
    // SNI differs from the name the synthetic address stands for.
    let o = f
        .sh("ip=$(getent hosts api.test | cut -d' ' -f1); curl -sS --noproxy '*' --max-time 10 --resolve other.test:443:$ip https://other.test/front2")
        .await;
    assert_ne!(o.code, Some(0), "{o}");
    assert!(!f.seen().iter().any(|(_, p, _)| p.starts_with("/front")));
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_arrives_incrementally() {
    let Some(f) = fixture(permissive(), &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let o = f
        .sh("curl -sSN --max-time 20 https://sse.test/sse | while IFS= read -r line; do [ -n \"$line\" ] && echo \"$(date +%s%3N) $line\"; done")
        .await;
    let stamps: Vec<u64> = o
        .stdout
        .lines()
        .filter(|l| l.contains("data: event"))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(stamps.len(), 4, "{o}");
    // Events 300 ms apart upstream must arrive spread out, not all at the end.
    assert!(stamps[3] - stamps[0] >= 700, "{stamps:?}");
    assert!(stamps[1] - stamps[0] >= 200, "{stamps:?}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_upstreams_are_refused_unless_a_rule_allows_them() {
    let mut cfg = permissive();
    cfg.rules = vec![rule("127.0.0.1")];
    let Some(f) = fixture(cfg, &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let port = f.up.plain_addr.port();
    // `localhost` resolves (by the proxy) to loopback: refused.
    let o = f
        .sh(&format!("curl -sS --max-time 10 -D - -x http://127.0.0.80:3128 --noproxy '' http://localhost:{port}/p"))
        .await;
    assert!(o.stdout.contains("403"), "{o}");
    assert!(
        o.stdout.contains("x-paddock-blocked: private-address"),
        "{o}"
    );
    // 127.0.0.1 is allowed by an explicit rule: reaches this machine's test upstream.
    let o = f
        .sh(&format!("curl -sS --max-time 10 -x http://127.0.0.80:3128 --noproxy '' http://127.0.0.1:{port}/allowed"))
        .await;
    assert!(o.stdout.starts_with("ok GET /allowed"), "{o}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_ports_are_refused_immediately() {
    let Some(f) = fixture(permissive(), &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let o = f
        .sh("s=$(date +%s%3N); curl -sS --noproxy '*' --max-time 10 http://api.test:8081/ ; c=$?; e=$(date +%s%3N); echo \"code=$c ms=$((e-s))\"")
        .await;
    assert!(o.stdout.contains("code=7"), "{o}");
    let ms: u64 = o
        .stdout
        .rsplit("ms=")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ms < 1000, "{o}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_hosts_are_spliced_without_interception() {
    let mut cfg = permissive();
    cfg.passthrough = vec!["pass.test".parse().unwrap()];
    let Some(f) = fixture(cfg, &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let ca = f.workspace.join("upstream-ca.pem");
    // The client sees the upstream's own certificate (its test CA), not paddock's.
    let o = f
        .sh(&format!(
            "curl -sS --max-time 10 --cacert {} https://pass.test/pt",
            ca.display()
        ))
        .await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.starts_with("ok GET /pt"), "{o}");
    let seen = f.seen();
    let (_, _, h) = seen.iter().find(|(_, p, _)| p == "/pt").unwrap();
    assert!(h.get("x-test-token").is_none());
    f.record(|r| r.kind == paddock_egress::RecordKind::Passthrough && r.bytes_down > 0)
        .await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_scrubbed_of_the_real_value() {
    let Some(f) = fixture(permissive(), &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let o = f
        .sh("curl -sS --max-time 10 https://api.test/echo-token")
        .await;
    assert_eq!(o.stdout, "token=PLACEHOLDER\n", "{o}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through() {
    let Some(f) = fixture(permissive(), &["other.test"]).await else {
        return;
    };
    if !tool("/usr/bin/python3") {
        return f.finish().await;
    }
    // A raw client on the transparent :80 listener (name from the DNS stub).
    let script = r#"
import socket
s = socket.create_connection(("other.test", 80), timeout=10)
s.sendall(b"GET /ws HTTP/1.1\r\nHost: other.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, rest = buf.split(b"\r\n\r\n", 1)
print(head.split(b"\r\n")[0].decode())
s.sendall(b"ping")
while len(rest) < 9:
    rest += s.recv(4096)
print(rest.decode())
"#;
    let o = f
        .sh(&format!(
            "/usr/bin/python3 -c '{}'",
            script.replace('\'', "\"")
        ))
        .await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.starts_with("HTTP/1.1 101"), "{o}");
    assert!(o.stdout.contains("pong:ping"), "{o}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_extra_ports_are_captured_too() {
    let Some(f) = fixture_with(permissive(), &["other.test"], vec![8443, 8080]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let o = f
        .sh("curl -sS --noproxy '*' --max-time 10 https://api.test:8443/tls8443; curl -sS --noproxy '*' --max-time 10 http://other.test:8080/plain8080")
        .await;
    assert!(o.stdout.contains("ok GET /tls8443"), "{o}");
    assert!(o.stdout.contains("ok GET /plain8080"), "{o}");
    f.record(|r| r.port == Some(8443) && r.status == Some(200))
        .await;
    f.finish().await;
}

/// Runs `script` with python3 inside the sandbox (the script may use single quotes).
async fn py(f: &Fixture, script: &str) -> Out {
    std::fs::write(f.workspace.join("t.py"), script).unwrap();
    f.sh(&format!(
        "/usr/bin/python3 {}",
        f.workspace.join("t.py").display()
    ))
    .await
}

/// Tries each refusal and prints `label reset` when the connection was reset.
const RESET_PY: &str = r#"
import socket, ssl
def attempt(label, fn):
    try:
        fn()
        print(label, "no-reset")
    except ConnectionResetError:
        print(label, "reset")
    except Exception as e:
        print(label, "other", type(e).__name__, e)

def tls(sock, sni):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(sock, server_hostname=sni)
    t.sendall(b"GET / HTTP/1.1\r\nHost: " + sni.encode() + b"\r\n\r\n")
    t.recv(100)

def garbage_hello(sock):
    sock.sendall(b"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff" + b"x" * 64)
    sock.recv(100)

def tunnel(authority):
    s = socket.create_connection(("127.0.0.80", 3128), timeout=10)
    s.sendall(b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 200"), buf
    return s

api = socket.gethostbyname("api.test")
attempt("fronted-transparent", lambda: tls(socket.create_connection((api, 443), timeout=10), "other.test"))
attempt("fronted-connect", lambda: tls(tunnel(b"api.test:443"), "other.test"))
attempt("passthrough-denied", lambda: tls(socket.create_connection(("203.0.113.7", 443), timeout=10), "pass.test"))
attempt("bad-hello-transparent", lambda: garbage_hello(socket.create_connection((api, 443), timeout=10)))
attempt("bad-hello-connect", lambda: garbage_hello(tunnel(b"api.test:443")))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_cannot_be_answered_are_resets() {
    let mut cfg = permissive();
    cfg.passthrough = vec!["pass.test".parse().unwrap()];
    let mut deny = rule("pass.test");
    deny.action = paddock_config::RuleAction::Deny;
    cfg.rules = vec![deny];
    let Some(f) = fixture(cfg, &[]).await else {
        return;
    };
    if !tool("/usr/bin/python3") {
        return f.finish().await;
    }
    let o = py(&f, RESET_PY).await;
    assert_eq!(o.code, Some(0), "{o}");
    for label in [
        "fronted-transparent",
        "fronted-connect",
        "passthrough-denied",
        "bad-hello-transparent",
        "bad-hello-connect",
    ] {
        assert!(
            o.stdout.contains(&format!("{label} reset\n")),
            "{label}: not a reset\n{o}"
        );
    }
    assert!(!f.seen().iter().any(|(_, p, _)| p == "/"), "{:?}", f.seen());
    // Each on the record, with the rule that refused it.
    for what in [
        "domain fronting: TLS name other.test",
        "unreadable TLS ClientHello",
    ] {
        let r = f
            .record(|r| r.decision.rule.to_string().contains(what))
            .await;
        assert!(!r.decision.allowed, "{r:?}");
    }
    let r = f
        .record(|r| r.kind == paddock_egress::RecordKind::Passthrough)
        .await;
    assert!(!r.decision.allowed && r.host == "pass.test", "{r:?}");
    assert!(
        r.decision.rule.to_string().contains("network.rules[0]"),
        "{r:?}"
    );
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_proxy_refuses_a_host_header_other_than_the_url() {
    let Some(f) = fixture(permissive(), &["other.test", "api.test"]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let o = f
        .sh("curl -sS --max-time 10 -D - -x http://127.0.0.80:3128 -H 'Host: other.test' http://api.test/fronted")
        .await;
    assert!(o.stdout.starts_with("HTTP/1.1 403"), "{o}");
    assert!(
        o.stdout
            .contains("x-paddock-blocked: builtin=domain fronting"),
        "{o}"
    );
    // The same host, with or without its port, goes through.
    let o = f
        .sh("curl -sS --max-time 10 -x http://127.0.0.80:3128 http://other.test/same; curl -sS --max-time 10 -x http://127.0.0.80:3128 -H 'Host: other.test:80' http://other.test/port")
        .await;
    assert!(o.stdout.contains("ok GET /same"), "{o}");
    assert!(o.stdout.contains("ok GET /port"), "{o}");
    assert!(
        !f.seen().iter().any(|(_, p, _)| p == "/fronted"),
        "{:?}",
        f.seen()
    );
    let r = f.record(|r| r.path.as_deref() == Some("/fronted")).await;
    assert!(!r.decision.allowed, "{r:?}");
    assert_eq!(r.host, "api.test");
    assert_eq!(r.status, Some(403));
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_any_request_are_on_the_record() {
    let Some(f) = fixture(permissive(), &["other.test"]).await else {
        return;
    };
    if !tool("/usr/bin/curl") || !tool("/usr/bin/python3") {
        return f.finish().await;
    }
    // A client that does not trust paddock's CA: the handshake fails.
    let ca = f.workspace.join("upstream-ca.pem");
    let o = f
        .sh(&format!(
            "curl -sS --max-time 10 --cacert {} https://api.test/untrusted; echo \"exit=$?\"",
            ca.display()
        ))
        .await;
    assert!(
        o.stdout.contains("exit=60") || o.stdout.contains("exit=35"),
        "{o}"
    );
    // A URL scheme the proxy does not speak.
    let o = f
        .sh("curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -x http://127.0.0.80:3128 ftp://other.test/file")
        .await;
    assert_eq!(o.stdout, "400", "{o}");
    // Bytes that are not HTTP on a captured port.
    let o = py(
        &f,
        r#"
import socket
s = socket.create_connection((socket.gethostbyname("other.test"), 80), timeout=10)
s.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02\r\n\r\n")
try:
    s.recv(100)
except OSError:
    pass
print("done")
"#,
    )
    .await;
    assert!(o.stdout.contains("done"), "{o}");
    let tls = f
        .record(|r| {
            r.decision
                .rule
                .to_string()
                .contains("client TLS handshake failed")
        })
        .await;
    assert_eq!(tls.host, "api.test");
    assert!(!tls.decision.allowed && tls.detail.is_some(), "{tls:?}");
    let ftp = f
        .record(|r| r.decision.rule.to_string().contains("ftp: URL"))
        .await;
    assert_eq!((ftp.status, ftp.host.as_str()), (Some(400), "other.test"));
    let raw = f
        .record(|r| r.decision.rule.to_string().contains("not HTTP"))
        .await;
    assert_eq!((raw.port, raw.host.as_str()), (Some(80), "other.test"));
    f.finish().await;
}
