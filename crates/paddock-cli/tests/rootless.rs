//! Rootless: the CLI and the daemon it starts run as an unprivileged uid (65534), and the
//! sandbox comes from unprivileged user namespaces. Needs root to switch uid; skips loudly
//! otherwise.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

struct Rootless {
    _dir: tempfile::TempDir,
    home: PathBuf,
    user_home: PathBuf,
    ws: PathBuf,
    /// The daemon's router port (`PADDOCK_ROUTER_PORT`), free when the test began.
    router_port: u16,
}

/// A free loopback port below the ephemeral range (spread by pid and a counter).
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = 33000 + ((std::process::id().wrapping_mul(7919) + n * 131) % 9000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Rootless {
    fn new() -> Option<Rootless> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: rootless tests switch to uid {NOBODY} and need to start as root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("paddock-rootless-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = Rootless {
            home: dir.path().join("user/.local/share/paddock"),
            user_home: dir.path().join("user"),
            ws: dir.path().join("user/project"),
            router_port: free_port(),
            _dir: dir,
        };
        std::fs::create_dir_all(&r.ws).unwrap();
        std::fs::write(r.ws.join("README"), "original\n").unwrap();
        chown_tree(r.user_home.as_path());
        Some(r)
    }

    fn paddock(&self, args: &[&str]) -> Output {
        Command::new(common::exe())
            .args(args)
            .current_dir(&self.ws)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.user_home)
            .env("PADDOCK_HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.user_home.join(".config"))
            .env("NO_COLOR", "1")
            .env("PADDOCK_ROUTER_PORT", self.router_port.to_string())
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap()
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        let _ = self.paddock(&["rm", "--force", "rootless-edit", "rootless-web"]);
        let _ = self.paddock(&["daemon", "stop"]);
    }
}

fn chown_tree(p: &Path) {
    let _ = nix::unistd::chown(p, Some(NOBODY.into()), Some(NOBODY.into()));
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path());
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn rootless_daemon_runs_sandboxes_and_keeps_the_promises() {
    let Some(r) = Rootless::new() else { return };
    // Exit codes, identity (the invoking user, mapped), private home.
    let out = r.paddock(&["run", "-q", "--", "sh", "-c", "id -u; echo $HOME; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("{NOBODY}\n")), "{stdout}");
    // The daemon is ours and unprivileged.
    let status: serde_json::Value =
        serde_json::from_slice(&r.paddock(&["daemon", "status", "--json"]).stdout).unwrap();
    let pid = status["health"]["pid"].as_u64().expect("daemon runs") as u32;
    let uid_line = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = uid_line
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        uid_line.contains(&NOBODY.to_string()) && !uid_line.contains("\t0\t"),
        "{uid_line}"
    );

    // Overlay: the host workspace is untouched until apply.
    let out = r.paddock(&[
        "run",
        "-q",
        "--name",
        "rootless-edit",
        "--",
        "sh",
        "-c",
        "echo changed > README; echo new > added",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(r.ws.join("README")).unwrap(),
        "original\n"
    );
    let diff = r.paddock(&["diff", "rootless-edit"]);
    let d = String::from_utf8_lossy(&diff.stdout);
    assert!(
        d.contains("M  README") && d.contains("A  added"),
        "{}",
        text(&diff)
    );
    let out = r.paddock(&["apply", "rootless-edit"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(r.ws.join("README")).unwrap(),
        "changed\n"
    );

    // Escapes: other users' files, host processes, the network, privileges.
    let out = r.paddock(&[
        "run",
        "-q",
        "--",
        "sh",
        "-c",
        "cat /etc/shadow && echo ESCAPED-shadow; \
         ls /root 2>/dev/null && echo ESCAPED-root; \
         test -e /proc/1/cmdline && grep -q init /proc/1/cmdline || echo ESCAPED-pid1; \
         unshare -U true 2>/dev/null && echo ESCAPED-userns; \
         grep -q 'CapEff:\t0000000000000000' /proc/self/status || echo ESCAPED-caps; \
         (echo > /dev/tcp/127.0.0.1/22) 2>/dev/null && echo ESCAPED-net; \
         echo done",
    ]);
    let t = text(&out);
    assert!(t.contains("done"), "{t}");
    assert!(!t.contains("ESCAPED"), "{t}");

    // exec into a rootless run: the run's namespaces, confined exactly like its command.
    let probe = "grep -E '^(NoNewPrivs|Seccomp|Cap(Prm|Eff|Bnd)):' /proc/self/status; \
                 id -u; readlink /proc/self/ns/mnt /proc/self/ns/net /proc/self/ns/pid /proc/self/ns/user";
    let script = format!("({probe}) > /tmp/s.tmp; mv /tmp/s.tmp /tmp/run-status; sleep 60");
    let out = r.paddock(&["run", "-d", "--name", "rl-exec", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", text(&out));
    let out = r.paddock(&[
        "exec",
        "rl-exec",
        "--",
        "sh",
        "-c",
        &format!(
            "while [ ! -f /tmp/run-status ]; do sleep 0.05; done; cat /tmp/run-status; echo ---; {probe}; exit 5"
        ),
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let o = String::from_utf8_lossy(&out.stdout).into_owned();
    let (run_view, exec_view) = o.split_once("---\n").expect("both views");
    assert_eq!(run_view, exec_view, "exec is confined differently: {o}");
    assert!(
        exec_view.contains("NoNewPrivs:\t1")
            && exec_view.contains("CapEff:\t0000000000000000")
            && exec_view.contains(&format!("\n{NOBODY}\n")),
        "{exec_view}"
    );
    let out = r.paddock(&["stop", "-t", "0", "rl-exec"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Hostname routing with an unprivileged daemon: it cannot setns into the run's network
/// namespace, so the run's init makes the socket there and hands it over (SCM_RIGHTS).
#[test]
fn rootless_router_reaches_a_service_on_the_sandbox_loopback() {
    let Some(r) = Rootless::new() else { return };
    let python = "/usr/bin/python3";
    if !Path::new(python).exists() || Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: needs {python} and curl");
        return;
    }
    let script = format!(
        "mkdir -p /tmp/site && cd /tmp/site && echo \"rootless $(id -u) $PADDOCK_RUN_NAME\" > who.txt && \
         exec {python} -m http.server --bind 127.0.0.1 8000"
    );
    let out = r.paddock(&[
        "run",
        "-d",
        "--name",
        "rootless-web",
        "-p",
        "web=8000",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let url = format!("http://web.rootless-web.localhost:{}", r.router_port);
    assert!(text(&out).contains(&url), "{}", text(&out));

    let curl = |host: &str| {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(["--resolve", &format!("{host}:{}:127.0.0.1", r.router_port)])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://{host}:{}/who.txt", r.router_port))
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = t.rsplit_once('\n').unwrap_or(("", &t));
        (code.trim().parse::<u16>().unwrap_or(0), body.to_string())
    };
    let mut last = (0, String::new());
    let got = common::wait_until(std::time::Duration::from_secs(30), || {
        last = curl("web.rootless-web.localhost");
        (last.0 == 200).then(|| last.1.clone())
    });
    assert_eq!(
        got.as_deref(),
        Some(format!("rootless {NOBODY} rootless-web\n").as_str()),
        "last: {last:?}"
    );
    // Many connections in a row: each is dialled into the namespace anew.
    for _ in 0..20 {
        assert_eq!(curl("rootless-web.localhost").0, 200);
    }
    // The daemon is unprivileged (the dial path is the hand-over, not setns).
    let status: serde_json::Value =
        serde_json::from_slice(&r.paddock(&["daemon", "status", "--json"]).stdout).unwrap();
    let pid = status["health"]["pid"].as_u64().unwrap();
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = st.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(!uids.contains("\t0\t"), "{uids}");
    // Stopped: 503 saying so.
    let out = r.paddock(&["stop", "-t", "1", "rootless-web"]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, body) = curl("web.rootless-web.localhost");
    assert_eq!(code, 503, "{body}");
}
