//! `paddock run` and the commands around it, end to end through the real binary, daemon
//! and native sandbox.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{Env, wait_until};

fn workspace(env: &Env) -> std::path::PathBuf {
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

fn run_in(env: &Env, ws: &std::path::Path, args: &[&str]) -> std::process::Output {
    env.cmd().current_dir(ws).args(args).output().unwrap()
}

#[test]
fn exit_codes_and_signals_propagate() {
    let env = Env::new();
    let ws = workspace(&env);
    assert_eq!(
        run_in(&env, &ws, &["run", "-q", "--", "true"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run_in(&env, &ws, &["run", "-q", "--", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    assert_eq!(
        run_in(&env, &ws, &["run", "-q", "--", "sh", "-c", "kill -TERM $$"])
            .status
            .code(),
        Some(143)
    );
    assert_eq!(
        run_in(&env, &ws, &["run", "-q", "--", "sh", "-c", "kill -KILL $$"])
            .status
            .code(),
        Some(137)
    );
    let out = run_in(&env, &ws, &["run", "-q", "--", "no-such-command-xyz"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-command-xyz"),
        "{out:?}"
    );
}

#[test]
fn stdout_and_stderr_stay_separate() {
    let env = Env::new();
    let ws = workspace(&env);
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2",
        ],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
}

#[test]
fn stdin_is_forwarded_with_i() {
    let env = Env::new();
    let ws = workspace(&env);
    let mut child = env
        .cmd()
        .current_dir(&ws)
        .args(["run", "-q", "-i", "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello sandbox\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO SANDBOX\n");
}

#[test]
fn detached_runs_wait_logs_stop_and_inspect() {
    let env = Env::new();
    let ws = workspace(&env);
    let id = String::from_utf8(
        run_in(
            &env,
            &ws,
            &[
                "run",
                "-d",
                "--name",
                "counter",
                "--",
                "sh",
                "-c",
                "for i in 1 2 3; do echo line$i; done; exit 4",
            ],
        )
        .stdout,
    )
    .unwrap();
    assert!(id.trim().starts_with("run_"), "{id}");
    let out = env.run(&["wait", "counter"]);
    assert_eq!(out.status.code(), Some(4));
    let out = env.ok(&["logs", "counter"]);
    assert_eq!(out, "line1\nline2\nline3\n");
    let out = env.ok(&["logs", "-n", "1", "counter"]);
    assert_eq!(out, "line3\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--json", "counter"])).unwrap();
    assert_eq!(inspect["state"], "stopped");
    assert_eq!(inspect["exit_code"], 4);
    assert_eq!(inspect["id"].as_str(), Some(id.trim()));
    assert!(inspect["finished_at"].is_string());

    // A long run: follow its logs, stop it, and see the follower end.
    run_in(
        &env,
        &ws,
        &[
            "run",
            "-d",
            "--name",
            "sleeper",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ],
    );
    let follower = env
        .cmd()
        .args(["logs", "-f", "sleeper"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ps: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "--json"])).unwrap();
    let live: Vec<&str> = ps["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(live, vec!["sleeper"], "ps shows live runs only");
    env.ok(&["stop", "-t", "1", "sleeper"]);
    let out = follower.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("started"));
    let r: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--json", "sleeper"])).unwrap();
    assert_eq!(r["state"], "stopped");
    assert_eq!(r["exit_code"], 143, "sleep dies of SIGTERM: {r}");
    let all: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "-a", "--json"])).unwrap();
    assert_eq!(all["runs"].as_array().unwrap().len(), 2);
}

#[test]
fn config_supplies_name_and_env_and_bad_config_points_at_the_line() {
    let env = Env::new();
    let ws = workspace(&env);
    std::fs::create_dir_all(ws.join(".git")).unwrap();
    std::fs::write(
        ws.join("paddock.yaml"),
        "name: from-config\nenv:\n  GREETING: hi\n",
    )
    .unwrap();
    let sub = ws.join("src");
    std::fs::create_dir_all(&sub).unwrap();
    let out = run_in(
        &env,
        &sub,
        &[
            "run",
            "-q",
            "--",
            "sh",
            "-c",
            "echo $GREETING $PADDOCK_RUN_NAME",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from-config\n");

    std::fs::write(ws.join("paddock.yaml"), "name: ok\nlimitz:\n  memory: 1G\n").unwrap();
    let out = run_in(&env, &ws, &["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paddock.yaml:2:1"), "{err}");
    assert!(err.contains("limits"), "did-you-mean missing: {err}");
}

#[test]
fn bad_flags_fail_before_anything_is_created() {
    let env = Env::new();
    let ws = workspace(&env);
    for (args, needle) in [
        (vec!["run", "--memory", "12XB", "--", "true"], "12XB"),
        (vec!["run", "-m", "nocolon", "--", "true"], "nocolon"),
        (
            vec!["run", "-m", "/does/not/exist:/x", "--", "true"],
            "does not exist",
        ),
        (vec!["run", "--name", "Bad_Name", "--", "true"], "Bad_Name"),
        (vec!["run", "--pids", "zero", "--", "true"], "zero"),
        // (the flag itself is not echoed: it may be a value typed without its name)
        (
            vec!["run", "-e", "NOEQUALS", "--", "true"],
            "invalid -e: expected KEY=VALUE",
        ),
    ] {
        let out = run_in(&env, &ws, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.contains("hint:"),
            "{args:?}: {err}"
        );
    }
    // A mount over a protected path is refused by the sandbox before it exists.
    let out = run_in(
        &env,
        &ws,
        &["run", "-m", &format!("{}:/etc", ws.display()), "--", "true"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let ps: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "-a", "--json"])).unwrap();
    assert_eq!(
        ps["runs"].as_array().unwrap().len(),
        0,
        "nothing may have been created: {ps}"
    );
}

#[test]
fn overlay_review_diff_apply_and_rm_guard() {
    let env = Env::new();
    let ws = workspace(&env);
    std::fs::write(ws.join("keep.txt"), "original\n").unwrap();
    std::fs::write(ws.join("gone.txt"), "bye\n").unwrap();
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "--name",
            "edit",
            "--",
            "sh",
            "-c",
            "echo changed > keep.txt; rm gone.txt; echo fresh > new.txt",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // The host is untouched.
    assert_eq!(
        std::fs::read_to_string(ws.join("keep.txt")).unwrap(),
        "original\n"
    );
    assert!(ws.join("gone.txt").exists() && !ws.join("new.txt").exists());
    let d = env.ok(&["diff", "edit"]);
    assert!(
        d.contains("M  keep.txt") && d.contains("D  gone.txt") && d.contains("A  new.txt"),
        "{d}"
    );
    assert!(d.contains("-original") && d.contains("+changed"), "{d}");
    let out = env.run(&["rm", "edit"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rm must refuse unapplied changes"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    env.ok(&["apply", "edit"]);
    assert_eq!(
        std::fs::read_to_string(ws.join("keep.txt")).unwrap(),
        "changed\n"
    );
    assert!(!ws.join("gone.txt").exists());
    assert_eq!(
        std::fs::read_to_string(ws.join("new.txt")).unwrap(),
        "fresh\n"
    );
    env.ok(&["rm", "edit"]);
}

#[test]
fn apply_refuses_conflicts_unless_forced() {
    let env = Env::new();
    let ws = workspace(&env);
    std::fs::write(ws.join("f.txt"), "base\n").unwrap();
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "--name",
            "racer",
            "--",
            "sh",
            "-c",
            "echo agent > f.txt",
        ],
    );
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(ws.join("f.txt"), "human\n").unwrap();
    let out = env.run(&["apply", "racer"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("f.txt"),
        "conflicting files must be listed: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("f.txt")).unwrap(),
        "human\n"
    );
    env.ok(&["apply", "--force", "racer"]);
    assert_eq!(
        std::fs::read_to_string(ws.join("f.txt")).unwrap(),
        "agent\n"
    );
}

#[test]
fn bind_mode_writes_through() {
    let env = Env::new();
    let ws = workspace(&env);
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "--bind",
            "--",
            "sh",
            "-c",
            "echo direct > bound.txt",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.join("bound.txt")).unwrap(),
        "direct\n"
    );
}

#[test]
fn another_build_with_active_runs_warns_and_carries_on() {
    let mut env = Env::new();
    let ws = workspace(&env);
    env.extra_env
        .push(("PADDOCK_COMMIT_OVERRIDE".into(), "0ld0ld0ld0ld".into()));
    let out = run_in(
        &env,
        &ws,
        &["run", "-d", "--name", "busy", "--", "sleep", "300"],
    );
    assert!(out.status.success(), "{out:?}");
    let old_pid = env.daemon_pid().unwrap();
    env.extra_env.clear();
    let out = env.run(&["ps"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("active run"),
        "{err}"
    );
    assert_eq!(
        env.daemon_pid(),
        Some(old_pid),
        "the daemon with active runs must be kept"
    );
    env.ok(&["stop", "-t", "0", "busy"]);
}

#[test]
fn tty_mode_gives_a_real_terminal() {
    let env = Env::new();
    let ws = workspace(&env);
    // Drive `paddock run -it` under a pseudo-terminal with python's pty module.
    let script = r#"
import os, pty, sys, time, select, struct, fcntl, termios
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "run", "-q", "-it", "--", "sh", "-c", "tty; stty size; sleep 30"])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
out = b""
deadline = time.time() + 20
sent = False
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    if b"33 101" in out and not sent:
        os.write(fd, b"\x03")  # Ctrl-C, delivered inside through the sandbox's pty
        sent = True
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
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "no tty inside: {text}");
    assert!(
        text.contains("33 101"),
        "terminal size not propagated: {text}"
    );
    assert!(
        text.contains("EXIT=130"),
        "Ctrl-C must reach the command and exit 130: {text}"
    );
}

#[test]
fn no_color_is_respected() {
    let env = Env::new();
    let ws = workspace(&env);
    run_in(&env, &ws, &["run", "-q", "--", "true"]);
    let out = env.run(&["ps", "-a"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
    let _ = wait_until(Duration::from_millis(1), || Some(()));
}

#[test]
fn out_of_memory_fails_the_run_and_a_fork_bomb_is_contained() {
    let env = Env::new();
    let ws = workspace(&env);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: cgroup limits on this machine (v1) need root");
        return;
    }
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "--name",
            "hog",
            "--memory",
            "32M",
            "--",
            "/usr/bin/python3",
            "-c",
            "x = bytearray(256 * 1024 * 1024); print(len(x))",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let r: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--json", "hog"])).unwrap();
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["reason"], "out of memory", "{r}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("out of memory"),
        "{out:?}"
    );

    // A fork bomb hits the pids limit and ends; the host is fine.
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "--pids",
            "64",
            "--",
            "sh",
            "-c",
            "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("survived"),
        "the sandbox's own shell should outlive the bomb: {out:?}"
    );
    let live: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "--json"])).unwrap();
    assert_eq!(live["runs"].as_array().unwrap().len(), 0, "{live}");
}

#[test]
fn sandboxes_survive_a_daemon_restart_and_are_readopted() {
    let env = Env::new();
    let ws = workspace(&env);
    run_in(
        &env,
        &ws,
        &[
            "run",
            "-d",
            "--name",
            "survivor",
            "--",
            "sh",
            "-c",
            "echo before; sleep 300",
        ],
    );
    run_in(
        &env,
        &ws,
        &[
            "run",
            "-d",
            "--name",
            "shortlived",
            "--",
            "sh",
            "-c",
            "sleep 1; exit 9",
        ],
    );
    let old = env.daemon_pid().unwrap();
    env.ok(&["daemon", "stop"]);
    // While no daemon runs, one sandbox ends by itself.
    std::thread::sleep(Duration::from_millis(1500));
    env.ok(&["ps"]);
    assert_ne!(env.daemon_pid().unwrap(), old);
    let s: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--json", "survivor"])).unwrap();
    assert_eq!(s["state"], "running", "{s}");
    let ended = wait_until(Duration::from_secs(10), || {
        let v: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", "--json", "shortlived"])).ok()?;
        (v["state"] == "stopped").then_some(v)
    })
    .expect("the sandbox that ended unwatched must be recorded as stopped");
    assert_eq!(ended["exit_code"], 9, "{ended}");
    assert!(env.ok(&["logs", "survivor"]).contains("before"));
    env.ok(&["stop", "-t", "1", "survivor"]);
    let s: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--json", "survivor"])).unwrap();
    assert_eq!(s["state"], "stopped", "{s}");
}

#[test]
fn terminal_resize_reaches_the_command() {
    let env = Env::new();
    let ws = workspace(&env);
    let script = r#"
import os, pty, sys, time, select, struct, fcntl, termios
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "run", "-q", "-it", "--", "sh", "-c", "trap 'stty size' WINCH; stty size; while :; do sleep 0.05; done"])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
out = b""
deadline = time.time() + 20
resized = interrupted = False
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
    if b"33 101" in out and not resized:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        resized = True
    if b"40 120" in out and not interrupted:
        os.write(fd, b"\x03")
        interrupted = True
try:
    os.kill(pid, 9)
except ProcessLookupError:
    pass
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, common::exe().to_str().unwrap()])
        .current_dir(&ws)
        .env("PADDOCK_HOME", &env.home)
        .env("XDG_CONFIG_HOME", &env.config)
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("33 101") && text.contains("40 120"),
        "resize not propagated: {text:?}"
    );
}

#[test]
fn extra_mounts_from_flags_honour_read_only() {
    let env = Env::new();
    let ws = workspace(&env);
    let data = env.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in.txt"), "shared\n").unwrap();
    let cache = env.dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let ro = format!("{}:/data:ro", data.display());
    let rw = format!("{}:/cache", cache.display());
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "-m",
            &ro,
            "-m",
            &rw,
            "--",
            "sh",
            "-c",
            "cat /data/in.txt; echo x > /data/new 2>/dev/null && echo WROTE-RO; echo kept > /cache/out.txt",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("shared") && !text.contains("WROTE-RO"),
        "{text}"
    );
    assert!(!data.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(cache.join("out.txt")).unwrap(),
        "kept\n"
    );
}

/// A sandbox is built ahead of time (the spare), with a copy of the host's mount table:
/// a filesystem mounted on the host after that must still be what a run sees.
#[test]
fn a_filesystem_mounted_after_the_spare_was_built_is_seen_by_the_next_run() {
    let env = Env::new();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: mounting on the host needs root");
        return;
    }
    let ws = workspace(&env);
    // This run's create leaves a spare built behind it.
    let out = run_in(&env, &ws, &["run", "-q", "--", "true"]);
    assert!(out.status.success(), "{out:?}");
    let data = env.dir.path().join("late");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("under.txt"), "the directory under the mount\n").unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &data,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(data.clone());
    std::fs::write(data.join("on.txt"), "the mounted filesystem\n").unwrap();
    let bind = format!("{}:/late:ro", data.display());
    let out = run_in(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "-m",
            &bind,
            "--",
            "sh",
            "-c",
            "cat /late/*.txt",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "the mounted filesystem\n", "{out:?}");
}
