//! `paddock exec` end to end: a command in a running run's sandbox, through the real CLI and
//! daemon. It must be exactly as confined as the run's own command (compared probe by
//! probe), get the run's environment, behave like `run` for I/O and exit codes, and be on
//! the run's audit record (names of variables only, never values).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Env, request_raw, wait_until};
use serde_json::Value;

/// What a process can see and do, one fact per line. Run both as the run's command and
/// as an exec: the two outputs must be identical.
const PROBE: &str = r#"
import os, socket, sys
port = int(sys.argv[1])
out = []
def status(k):
    for l in open('/proc/self/status'):
        if l.startswith(k + ':'):
            return l.split(':', 1)[1].strip()
out.append('uid=%d gid=%d groups=%s' % (os.getuid(), os.getgid(), os.getgroups()))
for k in ['NoNewPrivs', 'Seccomp', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']:
    out.append('%s=%s' % (k, status(k)))
for ns in ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'user', 'uts']:
    out.append('ns %s=%s' % (ns, os.readlink('/proc/self/ns/' + ns)))
out.append('cgroup=' + open('/proc/self/cgroup').read().strip().replace('\n', ';'))
def attempt(name, fn):
    try:
        fn()
        out.append(name + ': ok')
    except Exception as e:
        out.append('%s: %s errno=%s' % (name, type(e).__name__, getattr(e, 'errno', None)))
attempt('read /etc/shadow', lambda: open('/etc/shadow', 'rb').read(1))
def write(d):
    p = os.path.join(d, '.probe-%d' % os.getpid())
    with open(p, 'w') as f:
        f.write('x')
    os.unlink(p)
for d in ['/', '/var', '/usr', '/dev/shm', os.getcwd(), '/tmp', os.environ['HOME']]:
    attempt('write ' + d, lambda d=d: write(d))
def connect(host):
    s = socket.socket()
    s.settimeout(3)
    s.connect((host, port))
attempt('connect to the host 127.0.0.1 server', lambda: connect('127.0.0.1'))
attempt('raw socket', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
def unshare_user():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
attempt('unshare a user namespace', unshare_user)
print('\n'.join(out))
"#;

fn workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("host.txt"), "from-the-host\n").unwrap();
    std::fs::write(ws.join("probe.py"), PROBE).unwrap();
    ws
}

fn run_in(env: &Env, ws: &Path, args: &[&str]) {
    let out = env.cmd().current_dir(ws).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

fn exec(env: &Env, args: &[&str]) -> Output {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    env.cmd().args(&all).stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(env: &Env, args: &[&str]) -> Value {
    let out = env.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// `env | sort` output as a map, without what the shell itself sets.
fn env_map(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !["PWD", "OLDPWD", "SHLVL", "_"].contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn entries(env: &Env, run: &str, kind: &str) -> Vec<Value> {
    json(env, &["audit", run, "--type", kind, "--json"])["entries"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn exec_runs_in_the_runs_sandbox_confined_like_its_command_and_is_on_the_record() {
    let env = Env::new();
    let ws = workspace(&env);
    let host_server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_server.local_addr().unwrap().port().to_string();
    let script = format!(
        "env | sort > /tmp/run-env.txt; python3 probe.py {port} > /tmp/run-probe.txt 2>&1; \
         echo made-by-run > created.txt; sleep 120"
    );
    run_in(
        &env,
        &ws,
        &["run", "-d", "--name", "box", "--", "sh", "-c", &script],
    );
    let h = env.wait_health();
    assert!(
        h["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "exec"),
        "{h}"
    );

    // It sees the run's overlay: the host's files and what the run created (which the
    // host does not see), and the run's private /tmp.
    let out = exec(
        &env,
        &[
            "box",
            "--",
            "sh",
            "-c",
            "while [ ! -f created.txt ]; do sleep 0.05; done; cat host.txt created.txt; echo /tmp/*",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let o = text(&out.stdout);
    assert!(
        o.starts_with("from-the-host\nmade-by-run\n") && o.contains("run-probe.txt"),
        "{o}"
    );
    assert!(!ws.join("created.txt").exists(), "the overlay leaked");

    // Exactly as confined as the run's command: the same probe gives the same answers.
    let run_probe = text(&exec(&env, &["box", "--", "cat", "/tmp/run-probe.txt"]).stdout);
    let out = exec(&env, &["box", "--", "python3", "probe.py", &port]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let exec_probe = text(&out.stdout);
    assert_eq!(
        exec_probe, run_probe,
        "exec is confined differently from the run's command"
    );
    for fact in [
        "NoNewPrivs=1",
        "Seccomp=2",
        "CapEff=0000000000000000",
        "CapPrm=0000000000000000",
        "CapBnd=0000000000000000",
        "write /tmp: ok",
        "write /home/paddock: ok",
    ] {
        assert!(
            exec_probe.contains(fact),
            "missing {fact:?} in:\n{exec_probe}"
        );
    }
    for attempt in [
        "read /etc/shadow",
        "write /",
        "write /usr",
        "write /var",
        "connect to the host 127.0.0.1 server",
        "raw socket",
        "unshare a user namespace",
    ] {
        assert!(
            exec_probe.contains(&format!("\n{attempt}: ")),
            "{attempt} not probed:\n{exec_probe}"
        );
        assert!(
            !exec_probe.contains(&format!("\n{attempt}: ok")),
            "an exec'd command could {attempt}:\n{exec_probe}"
        );
    }
    // Not in the host's namespaces.
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(
        !exec_probe.contains(&format!("ns net={}", host_net.display())),
        "{exec_probe}"
    );
    drop(host_server);
    // Its network is the run's: a DNS lookup goes to the run's stub and is on the run's
    // record.
    let out = exec(
        &env,
        &["box", "--", "getent", "hosts", "exec-probe.example.invalid"],
    );
    // (the run's policy decides: a synthetic 198.18.0.0/15 address, or NXDOMAIN)
    let answer = text(&out.stdout);
    assert!(
        answer.is_empty() || answer.starts_with("198.1"),
        "answered by the run's stub: {out:?}"
    );
    let addr = answer.split_whitespace().next().map(str::to_string);
    let dns = wait_until(Duration::from_secs(5), || {
        let all = json(&env, &["audit", "box", "--type", "net.", "--json"]);
        all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["data"]["kind"] == "dns"
                    && e["data"]["host"]
                        .as_str()
                        .is_some_and(|h| h.contains("exec-probe.example.invalid"))
                    && addr
                        .as_deref()
                        .is_none_or(|a| e["data"]["detail"].as_str() == Some(a))
            })
            .cloned()
    })
    .expect("the exec's DNS query is in the run's log");
    let expected = if addr.is_some() {
        "net.request"
    } else {
        "net.denied"
    };
    assert_eq!(dns["type"], expected, "{dns}");

    // The run's environment (proxy, CA, identity), with -e over it.
    let out = exec(
        &env,
        &[
            "-e",
            "MY_TOKEN=s3cret-exec-value",
            "-e",
            "HOME=/tmp",
            "box",
            "--",
            "sh",
            "-c",
            "env | sort",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut exec_env = env_map(&text(&out.stdout));
    let run_env = env_map(&text(
        &exec(&env, &["box", "--", "cat", "/tmp/run-env.txt"]).stdout,
    ));
    assert!(run_env.contains_key("HTTPS_PROXY") && run_env.contains_key("SSL_CERT_FILE"));
    assert_eq!(
        exec_env.remove("MY_TOKEN").as_deref(),
        Some("s3cret-exec-value")
    );
    assert_eq!(
        exec_env
            .insert("HOME".into(), run_env["HOME"].clone())
            .as_deref(),
        Some("/tmp")
    );
    assert_eq!(exec_env, run_env, "exec must get the run's environment");
    // The run's identity is not for an exec to change.
    let out = exec(
        &env,
        &["-e", "PADDOCK_RUN_ID=run_forged", "box", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("identity"), "{out:?}");

    // I/O and exit codes like `paddock run`.
    let out = exec(
        &env,
        &["box", "--", "sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let out = exec(&env, &["box", "--", "no-such-command-xyz"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        text(&out.stderr).contains("command not found: no-such-command-xyz"),
        "{out:?}"
    );
    let out = exec(&env, &["box", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    let mut child = env
        .cmd()
        .args(["exec", "-i", "box", "--", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "piped\ndone\n");
    // Without -i, stdin is at end of file (nothing is forwarded).
    let mut child = env
        .cmd()
        .args(["exec", "box", "--", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"not forwarded\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(text(&out.stdout), "done\n");

    // Ctrl-C (SIGINT to the CLI) is delivered to the command.
    let child = env
        .cmd()
        .args(["exec", "box", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || {
        let out = exec(
            &env,
            &[
                "box",
                "--",
                "sh",
                "-c",
                "cat /proc/[0-9]*/comm | grep -c '^sleep$'",
            ],
        );
        text(&out.stdout).trim().parse::<u32>().ok()
    };
    wait_until(Duration::from_secs(10), || sleeping().filter(|n| *n >= 2))
        .expect("the exec'd sleep runs (next to the run's own)");
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");

    // A client that goes away takes its command with it.
    let mut child = env
        .cmd()
        .args(["exec", "box", "--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), || sleeping().filter(|n| *n >= 2))
        .expect("the exec'd sleep runs");
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(Duration::from_secs(10), || sleeping().filter(|n| *n == 1))
        .expect("the abandoned command was killed");

    // On the record: the command and variable names before it ran, then how it ended.
    let (execs, exits) = wait_until(Duration::from_secs(10), || {
        let execs = entries(&env, "box", "run.exec");
        let exits = entries(&env, "box", "run.exec.exit");
        (execs.len() == exits.len()).then_some((execs, exits))
    })
    .expect("every run.exec has its run.exec.exit");
    let by_id = |id: &Value| {
        exits
            .iter()
            .find(|e| e["data"]["exec_id"] == *id)
            .unwrap_or_else(|| panic!("no run.exec.exit for {id}"))
            .clone()
    };
    let with_env = execs
        .iter()
        .find(|e| e["data"]["env_names"] == serde_json::json!(["HOME", "MY_TOKEN"]))
        .expect("the exec with -e is recorded");
    assert_eq!(
        with_env["data"]["command"],
        serde_json::json!(["sh", "-c", "env | sort"])
    );
    assert_eq!(with_env["data"]["tty"], false);
    let exit = by_id(&with_env["data"]["exec_id"]);
    assert!(exit["seq"].as_u64() > with_env["seq"].as_u64());
    assert_eq!(exit["data"]["exit_code"], 0);
    let seven = execs
        .iter()
        .find(|e| e["data"]["command"][2] == "echo out; echo err >&2; exit 7")
        .unwrap();
    assert_eq!(by_id(&seven["data"]["exec_id"])["data"]["exit_code"], 7);
    let missing = execs
        .iter()
        .find(|e| e["data"]["command"][0] == "no-such-command-xyz")
        .unwrap();
    assert_eq!(by_id(&missing["data"]["exec_id"])["data"]["exit_code"], 127);
    let abandoned = execs
        .iter()
        .rfind(|e| e["data"]["command"] == serde_json::json!(["sleep", "300"]))
        .unwrap();
    let killed = by_id(&abandoned["data"]["exec_id"]);
    assert_eq!(killed["data"]["signal"], 9, "{killed}");
    assert_eq!(
        killed["data"]["reason"], "killed: the client went away",
        "{killed}"
    );
    let view = env.ok(&["audit", "show", "box", "--type", "run.exec"]);
    assert!(
        view.contains("`sh -c env | sort` with HOME, MY_TOKEN"),
        "{view}"
    );
    let view = env.ok(&["audit", "show", "box", "--type", "run.exec.exit"]);
    assert!(view.contains(": exit code 7"), "{view}");
    // The refused exec (identity) never started, so it is not recorded.
    assert!(
        !execs
            .iter()
            .any(|e| e.to_string().contains("PADDOCK_RUN_ID")),
        "{execs:?}"
    );

    // Exec needs a running run: an error envelope with a hint, and a non-zero exit.
    env.ok(&["stop", "-t", "0", "box"]);
    let out = exec(&env, &["box", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("has ended") && err.contains("hint:"), "{err}");
    let (status, body) = request_raw(
        &env.socket(),
        "POST",
        "/v1/runs/box/exec",
        &[
            ("content-type", "application/json"),
            ("connection", "upgrade"),
            ("upgrade", "paddock-attach"),
        ],
        Some(br#"{"command":["true"]}"#),
    )
    .unwrap();
    assert_eq!(status, 409);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("paddock"));

    // No environment value in the exported log, and it verifies.
    let bundle = env.dir.path().join("bundle.json");
    env.ok(&["audit", "export", "box", "-o", bundle.to_str().unwrap()]);
    let raw = std::fs::read_to_string(&bundle).unwrap();
    assert!(raw.contains("MY_TOKEN"), "the name is recorded");
    assert!(
        !raw.contains("s3cret-exec-value"),
        "an environment value reached the audit log"
    );
    env.ok(&["audit", "verify", bundle.to_str().unwrap()]);
}

#[test]
fn exec_with_a_tty_gets_a_terminal_of_the_clients_size() {
    let env = Env::new();
    let ws = workspace(&env);
    run_in(
        &env,
        &ws,
        &["run", "-d", "--name", "term", "--", "sleep", "120"],
    );
    let script = r#"
import os, pty, sys, time, select, struct, fcntl, termios
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "exec", "-it", "term", "--", "sh", "-c", "tty; stty size; echo $TERM; read line; echo got:$line; sleep 30"])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
out = b""
deadline = time.time() + 20
typed = interrupted = False
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    if b"xterm" in out and not typed:
        os.write(fd, b"hello\r")
        typed = True
    if b"got:hello" in out and not interrupted:
        os.write(fd, b"\x03")
        interrupted = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\nEXIT=%d\n" % os.waitstatus_to_exitcode(status))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, common::exe().to_str().unwrap()])
        .current_dir(&ws)
        .env("PADDOCK_HOME", &env.home)
        .env("XDG_CONFIG_HOME", &env.config)
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let t = text(&out.stdout);
    assert!(t.contains("/dev/pts/"), "no tty inside: {t}");
    assert!(t.contains("33 101"), "terminal size not propagated: {t}");
    assert!(t.contains("got:hello"), "input not forwarded: {t}");
    assert!(t.contains("EXIT=130"), "Ctrl-C must end it with 130: {t}");
    let execs = entries(&env, "term", "run.exec");
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0]["data"]["tty"], true);
    assert_eq!(execs[0]["data"]["env_names"], serde_json::json!(["TERM"]));

    // A daemon restart re-adopts the run; an exec in flight ends with the old daemon (its
    // end on the record), and exec reaches the run through the new daemon.
    let sleeping = || {
        let out = exec(
            &env,
            &[
                "term",
                "--",
                "sh",
                "-c",
                "cat /proc/[0-9]*/comm | grep -c '^sleep$'",
            ],
        );
        text(&out.stdout).trim().parse::<u32>().ok()
    };
    let in_flight = env
        .cmd()
        .args(["exec", "term", "--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), || sleeping().filter(|n| *n == 2))
        .expect("the exec'd sleep runs next to the run's");
    let before = env.daemon_pid().unwrap();
    env.ok(&["daemon", "restart"]);
    assert_ne!(env.wait_health()["pid"], before);
    let out = in_flight.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert!(
        text(&out.stderr).contains("killed: the daemon stopped"),
        "{out:?}"
    );
    assert_eq!(sleeping(), Some(1), "the in-flight exec was killed");
    let ended = entries(&env, "term", "run.exec.exit");
    let killed = ended
        .iter()
        .find(|e| {
            e["data"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("the daemon stopped"))
        })
        .unwrap_or_else(|| panic!("no recorded end for the in-flight exec: {ended:?}"));
    assert_eq!(killed["data"]["signal"], 9, "{killed}");
    let out = exec(&env, &["term", "--", "sh", "-c", "echo again; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(text(&out.stdout), "again\n");
    let execs = entries(&env, "term", "run.exec");
    let exits = entries(&env, "term", "run.exec.exit");
    assert_eq!(execs.len(), exits.len(), "{execs:?}\n{exits:?}");
}

#[test]
fn exec_refuses_runs_that_are_not_running_and_bad_input() {
    let env = Env::new();
    let ws = workspace(&env);
    let out = env
        .cmd()
        .current_dir(&ws)
        .args(["run", "-q", "--name", "done", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = exec(&env, &["done", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("has ended (stopped)") && err.contains("paddock logs done"),
        "{err}"
    );
    let out = exec(&env, &["nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no run matches"), "{out:?}");
    // Usage errors: no command, a malformed -e (never echoed), -t without a terminal.
    assert_eq!(exec(&env, &["done"]).status.code(), Some(2));
    let out = exec(&env, &["-e", "justavalue", "done", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stderr).contains("justavalue"), "{out:?}");
    assert_eq!(
        exec(&env, &["-t", "done", "--", "true"]).status.code(),
        Some(2)
    );
    // Nothing was recorded for any of these.
    assert!(entries(&env, "done", "run.exec").is_empty());
}
