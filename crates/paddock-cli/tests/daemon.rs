//! The daemon and how it is found: on-demand start, one daemon for many CLIs, restart on
//! a new build, idle shutdown, peer checks, the API's error envelope, state across
//! restarts.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{Env, daemon_processes, pid_alive, request, request_raw, wait_until};

#[test]
fn cli_starts_the_daemon_on_demand_with_private_files() {
    let env = Env::new();
    assert!(env.health().is_none());
    env.ok(&["ps"]);
    let h = env.wait_health();
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        h["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "runs")
    );
    assert!(h["event_bus"]["dropped"].is_u64());
    let home_mode = std::fs::metadata(&env.home).unwrap().mode() & 0o777;
    let sock_mode = std::fs::metadata(env.socket()).unwrap().mode() & 0o777;
    assert_eq!(home_mode, 0o700, "home directory must be 0700");
    assert_eq!(sock_mode, 0o600, "socket must be 0600");
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.home.join("daemon.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["pid"], h["pid"]);
    assert!(lock["commit"].is_string() && lock["started_at"].is_string());
    assert!(env.home.join("daemon.log").exists());
}

#[test]
fn twenty_concurrent_clis_leave_exactly_one_daemon() {
    let env = Env::new();
    let children: Vec<_> = (0..20)
        .map(|_| env.cmd().args(["ps", "-q"]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let h = env.wait_health();
    let procs = daemon_processes(&env.home);
    assert_eq!(procs.len(), 1, "daemon processes: {procs:?}");
    assert_eq!(u64::from(procs[0]), h["pid"].as_u64().unwrap());
}

#[test]
fn daemon_from_another_build_is_replaced_when_idle() {
    let mut env = Env::new();
    env.extra_env
        .push(("PADDOCK_COMMIT_OVERRIDE".into(), "0ld0ld0ld0ld".into()));
    env.ok(&["ps"]);
    let old = env.wait_health();
    assert_eq!(old["commit"], "0ld0ld0ld0ld");
    env.extra_env.clear();
    env.ok(&["ps"]);
    let new = env.wait_health();
    assert_ne!(new["commit"], "0ld0ld0ld0ld");
    assert_ne!(new["pid"], old["pid"]);
    assert!(!pid_alive(old["pid"].as_u64().unwrap() as u32));
    assert_eq!(daemon_processes(&env.home).len(), 1);
}

#[test]
fn daemon_exits_when_idle() {
    let mut env = Env::new();
    env.extra_env
        .push(("PADDOCK_IDLE_TIMEOUT".into(), "1s".into()));
    env.ok(&["ps"]);
    let pid = env.daemon_pid().expect("daemon runs");
    let gone = wait_until(Duration::from_secs(20), || (!pid_alive(pid)).then_some(()));
    assert!(gone.is_some(), "daemon still alive after its idle timeout");
    assert!(!env.socket().exists(), "socket must be removed on shutdown");
}

#[test]
fn sigterm_shuts_down_gracefully_and_removes_the_socket() {
    let env = Env::new();
    env.ok(&["ps"]);
    let pid = env.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(15), || (!pid_alive(pid)).then_some(())).is_some());
    assert!(!env.socket().exists());
    // The next CLI starts a fresh one, replacing the stale lock.
    env.ok(&["ps"]);
    assert_ne!(env.daemon_pid().unwrap(), pid);
}

#[test]
fn daemon_status_stop_restart_and_version() {
    let env = Env::new();
    let out = env.run(&["daemon", "status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "status of a stopped daemon exits 3"
    );
    env.ok(&["ps"]);
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["daemon", "status", "--json"])).unwrap();
    assert_eq!(status["running"], true);
    let first = env.daemon_pid().unwrap();
    env.ok(&["daemon", "restart"]);
    let second = env.daemon_pid().unwrap();
    assert_ne!(first, second);
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["version", "--json"])).unwrap();
    assert_eq!(v["daemon"]["pid"].as_u64(), Some(u64::from(second)));
    assert_eq!(v["cli"]["commit"], v["daemon"]["commit"]);
    env.ok(&["daemon", "stop"]);
    assert!(!pid_alive(second));
    assert!(env.health().is_none());
}

#[test]
fn a_second_daemon_for_the_same_home_is_refused() {
    let env = Env::new();
    env.ok(&["ps"]);
    let out = env.run(&["daemon"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn peers_of_another_uid_are_refused() {
    let env = Env::new();
    env.ok(&["ps"]);
    // Even if the files were opened up by mistake, SO_PEERCRED keeps others out.
    env.open_to_all();
    std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new(common::exe())
        .args(["daemon", "status", "--json"])
        .env("PADDOCK_HOME", &env.home)
        .env("XDG_CONFIG_HOME", &env.config)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"running\": false"),
        "uid 65534 must not be served: {text}\nstatus: {:?} stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The owner still is.
    assert!(env.health().is_some());
}

#[test]
fn a_daemon_closing_the_socket_is_an_error_and_a_closed_stdout_ends_quietly() {
    let env = Env::new();
    env.ok(&["ps"]);
    // The daemon drops a foreign peer right after accept; the client must report that (or
    // see no daemon), never die of SIGPIPE on the socket.
    env.open_to_all();
    std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    for _ in 0..20 {
        let out = std::process::Command::new(common::exe())
            .args(["grant", "list"])
            .env("PADDOCK_HOME", &env.home)
            .env("XDG_CONFIG_HOME", &env.config)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(out.status.code().is_some(), "killed: {:?}", out.status);
        assert_ne!(out.status.code(), Some(0));
    }
    // Output into a pipe nobody reads: exit 141 without a panic message.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(common::exe())
        .args(["daemon", "status", "--json"])
        .env("PADDOCK_HOME", &env.home)
        .env("XDG_CONFIG_HOME", &env.config)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no envelope>")
}

#[test]
fn bad_requests_get_the_error_envelope_with_a_hint() {
    let env = Env::new();
    env.ok(&["ps"]);
    let sock = env.socket();
    let cases: Vec<(&str, &str, Option<&str>, u16, &str)> = vec![
        ("POST", "/v1/runs", Some("{not json"), 400, "bad_request"),
        ("POST", "/v1/runs", Some("[1,2]"), 400, "bad_request"),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workspace": 5}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workspace": "/nonexistent/x"}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workspace": "relative/dir"}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workspace": "/tmp", "name": "Not_A_Label"}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workspace": "/tmp", "runtime": "kvm"}"#),
            501,
            "unsupported",
        ),
        ("GET", "/v1/runs/run_ffffffffffff", None, 404, "not_found"),
        ("GET", "/v1/runs/nope-nope", None, 404, "not_found"),
        ("DELETE", "/v1/runs/nope-nope", None, 404, "not_found"),
        (
            "POST",
            "/v1/runs/nope/stop",
            Some("{\"grace_secs\": -1}"),
            400,
            "bad_request",
        ),
        ("GET", "/v1/no/such/endpoint", None, 404, "no_endpoint"),
        ("PUT", "/v1/health", None, 405, "method_not_allowed"),
        ("POST", "/v1/runs/x/wait", None, 405, "method_not_allowed"),
    ];
    for (method, path, body, status, want) in cases {
        let (got, resp) = request(&sock, method, path, body).unwrap();
        assert_eq!(got, status, "{method} {path} {body:?} → {resp}");
        assert_eq!(code(&resp), want, "{method} {path} {body:?} → {resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{resp}"
        );
        assert!(
            resp["error"]["hint"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no hint: {resp}"
        );
    }
    // A body over the limit.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, raw) = request_raw(
        &sock,
        "POST",
        "/v1/runs",
        &[("content-type", "application/json")],
        Some(&big),
    )
    .unwrap();
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&raw));
    // The daemon is still fine after all of it.
    assert!(env.health().is_some());
}

#[test]
fn resolving_runs_by_id_prefix_and_name_and_state_rules() {
    let env = Env::new();
    env.ok(&["ps"]);
    let sock = env.socket();
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mk = |name: &str| {
        let body = format!(
            r#"{{"workspace": "{}", "name": "{name}", "command": ["true"], "start": false}}"#,
            ws.display()
        );
        let (status, run) = request(&sock, "POST", "/v1/runs", Some(&body)).unwrap();
        assert_eq!(status, 201, "{run}");
        run
    };
    let a = mk("alpha");
    let b = mk("beta");
    let id_a = a["id"].as_str().unwrap();
    assert!(id_a.starts_with("run_") && id_a.len() == 16);
    assert_eq!(a["state"], "created");
    // exact id, prefix, name
    assert_eq!(
        request(&sock, "GET", &format!("/v1/runs/{id_a}"), None)
            .unwrap()
            .1["name"],
        "alpha"
    );
    assert_eq!(
        request(&sock, "GET", &format!("/v1/runs/{}", &id_a[..10]), None)
            .unwrap()
            .1["name"],
        "alpha"
    );
    assert_eq!(
        request(&sock, "GET", "/v1/runs/beta", None).unwrap().1["id"],
        b["id"]
    );
    // "run_" is a prefix of both: ambiguous, and the candidates are listed.
    let (status, resp) = request(&sock, "GET", "/v1/runs/run_", None).unwrap();
    assert_eq!(status, 409);
    assert_eq!(code(&resp), "ambiguous");
    let msg = resp["error"]["message"].as_str().unwrap();
    assert!(msg.contains("alpha") && msg.contains("beta"), "{msg}");
    // Names are unique among live runs.
    let body = format!(
        r#"{{"workspace": "{}", "name": "alpha", "start": false}}"#,
        ws.display()
    );
    let (status, resp) = request(&sock, "POST", "/v1/runs", Some(&body)).unwrap();
    assert_eq!((status, code(&resp)), (409, "name_taken"), "{resp}");
    // Stopping a created run ends it; ending it twice is an illegal transition.
    let (status, resp) = request(&sock, "POST", "/v1/runs/alpha/stop", Some("{}")).unwrap();
    assert_eq!(
        (status, resp["state"].as_str()),
        (200, Some("stopped")),
        "{resp}"
    );
    let (status, resp) =
        request(&sock, "POST", &format!("/v1/runs/{id_a}/stop"), Some("{}")).unwrap();
    assert_eq!((status, code(&resp)), (409, "invalid_state"), "{resp}");
    let (status, resp) =
        request(&sock, "POST", &format!("/v1/runs/{id_a}/start"), Some("{}")).unwrap();
    assert_eq!((status, code(&resp)), (409, "invalid_state"), "{resp}");
    // The name is free again once its run has ended.
    mk("alpha");
    // Random names are DNS labels.
    let body = format!(r#"{{"workspace": "{}", "start": false}}"#, ws.display());
    let (_, run) = request(&sock, "POST", "/v1/runs", Some(&body)).unwrap();
    let name = run["name"].as_str().unwrap();
    assert!(
        name.contains('-') && name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
        "{name}"
    );
}

#[test]
fn state_survives_a_daemon_restart() {
    let env = Env::new();
    env.ok(&["ps"]);
    let sock = env.socket();
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let body = format!(
        r#"{{"workspace": "{}", "name": "keeper", "command": ["echo","hi"], "start": false}}"#,
        ws.display()
    );
    let (status, created) = request(&sock, "POST", "/v1/runs", Some(&body)).unwrap();
    assert_eq!(status, 201, "{created}");
    env.ok(&["daemon", "restart"]);
    let (status, run) = request(&sock, "GET", "/v1/runs/keeper", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(run["id"], created["id"]);
    assert_eq!(run["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(run["state"], "created");
    let listed: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "--json"])).unwrap();
    assert_eq!(listed["runs"][0]["name"], "keeper");
}

#[test]
fn events_stream_is_sse_and_filterable_by_run() {
    let env = Env::new();
    env.ok(&["ps"]);
    let sock = env.socket();
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let body = format!(
        r#"{{"workspace": "{}", "name": "evt", "start": false}}"#,
        ws.display()
    );
    request(&sock, "POST", "/v1/runs", Some(&body)).unwrap();
    // Subscribe, then cause a transition.
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /v1/events?run=evt HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("text/event-stream"));
    request(&sock, "POST", "/v1/runs/evt/stop", Some("{}")).unwrap();
    let mut seen = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        if let Ok(n) = s.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.contains("event: run.state").then_some(())
    });
    assert!(ok.is_some(), "no run.state event: {seen}");
    assert!(seen.contains("\"to\":\"stopped\""), "{seen}");
}

#[test]
fn usage_errors_exit_2_and_paddock_errors_exit_1() {
    let env = Env::new();
    let out = env.run(&["ps", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["run", "--memory", "12XB", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("12XB") && err.contains("hint:"), "{err}");
    let out = env.run(&["run", "-w", "/definitely/not/here", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = env.run(&["inspect", "no-such-run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no run matches") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn help_teaches() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    for word in ["run", "ps", "logs", "diff", "apply", "doctor", "Examples:"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    assert!(
        !help.contains("init"),
        "the internal init subcommand must stay hidden"
    );
    let run_help = env.ok(&["run", "--help"]);
    assert!(run_help.contains("--memory") && run_help.contains("Examples:"));
}

#[test]
fn doctor_reports_every_check() {
    let env = Env::new();
    let out = env.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for want in ["userns", "overlayfs", "seccomp", "landlock"] {
        assert!(
            ids.iter().any(|i| i.contains(want)),
            "doctor lacks {want}: {ids:?}"
        );
    }
    assert_eq!(out.status.code(), Some(if v["ok"] == true { 0 } else { 1 }));
}

#[test]
fn a_client_hanging_up_mid_start_does_not_strand_the_run() {
    use std::io::Write;
    let env = Env::new();
    env.ok(&["ps"]);
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let body = format!(
        r#"{{"workspace": "{}", "name": "hangup", "command": ["true"]}}"#,
        ws.display()
    );
    let mut s = std::os::unix::net::UnixStream::connect(env.socket()).unwrap();
    let req = format!(
        "POST /v1/runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    // Hang up as soon as the run exists, i.e. while it is being started.
    let seen = wait_until(Duration::from_secs(10), || {
        let (status, _) = request(&env.socket(), "GET", "/v1/runs/hangup", None).ok()?;
        (status == 200).then_some(())
    });
    assert!(seen.is_some(), "the run was never created");
    drop(s);
    let state = wait_until(Duration::from_secs(20), || {
        let (status, run) = request(&env.socket(), "GET", "/v1/runs/hangup", None).ok()?;
        let st = run["state"].as_str()?.to_string();
        (status == 200 && st == "stopped").then_some(st)
    });
    assert_eq!(
        state.as_deref(),
        Some("stopped"),
        "the run must finish its start and end normally"
    );
}

#[test]
fn the_daemon_raises_its_open_files_limit() {
    let env = Env::new();
    // Started by a CLI whose soft limit is low: the daemon inherits it, then raises it.
    let c = env.cmd();
    let prog = c.get_program().to_owned();
    let out = std::process::Command::new("prlimit")
        .arg("--nofile=256:")
        .arg("--")
        .arg(prog)
        .arg("ps")
        .envs(
            c.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid = env.daemon_pid().expect("a daemon");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (soft, hard) = (nums[0], nums[1]);
    assert!(soft >= hard.min(65536), "soft {soft}, hard {hard}: {line}");
}
