//! Faults the daemon must survive without panics, hangs or corrupt state: `$PADDOCK_HOME` on
//! a full filesystem (a small tmpfs; root only, as mounting needs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Env;

/// A tmpfs of `size` at `dir`, lazily unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem holding `dir` (a file of zeros until ENOSPC); returns the file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    // The last partial block, byte by byte up to a page.
    for _ in 0..4096 {
        if f.write_all(&[0]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    p
}

fn integrity(db: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])")
        .arg(db)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[test]
fn a_full_paddock_home_gives_clear_errors_and_keeps_its_state() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let mut env = Env::new();
    let small = env.dir.path().join("small");
    let Some(_mount) = Tmpfs::mount(&small, "8m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    env.home = small.join("home");
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let run = |args: &[&str]| env.cmd().current_dir(&ws).args(args).output().unwrap();

    // A run before the disk fills.
    let out = run(&["run", "-q", "--name", "before", "--", "echo", "hi"]);
    assert!(out.status.success(), "{out:?}");
    let filler = fill(&small);

    // Full: runs are refused with the reason, nothing panics, the daemon stays up.
    for _ in 0..3 {
        let out = run(&["run", "-q", "--", "echo", "hi"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a run on a full disk: {out:?}");
        assert!(
            err.contains("No space left on device")
                || err.contains("disk")
                || err.contains("space"),
            "the error says why: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Output that cannot be logged does not wedge a run that is already going.
    assert!(env.health().is_some(), "the daemon is still up");
    let out = run(&["ps", "-a", "--json"]);
    assert!(out.status.success(), "{out:?}");

    // Space again: everything works, and the state is whole.
    std::fs::remove_file(&filler).unwrap();
    let out = run(&["run", "-q", "--name", "after", "--", "echo", "back"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "back\n");
    let ps: serde_json::Value =
        serde_json::from_slice(&run(&["ps", "-a", "--json"]).stdout).unwrap();
    let names: Vec<&str> = ps["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"before") && names.contains(&"after"),
        "{ps}"
    );
    let bundle = env.dir.path().join("before.json");
    let bundle = bundle.to_str().unwrap();
    let out = run(&["audit", "export", "before", "-o", bundle]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&["audit", "verify", bundle]);
    assert!(
        out.status.success(),
        "the audit log of a run from before verifies: {out:?}"
    );
    // The daemon holds state.db exclusively: checked once it is gone.
    env.stop_daemon();
    assert_eq!(integrity(&env.home.join("state.db")), "ok");
}

fn audit_entries(env: &Env, run: &str) -> Vec<serde_json::Value> {
    let out = env.run(&["audit", "show", run, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn kill_9_of_the_daemon_during_twenty_live_runs_loses_nothing() {
    let env = Env::new();
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // Strict: each request is refused at once by the proxy (no DNS, no upstream), and is
    // on the record.
    std::fs::write(ws.join("paddock.yaml"), "network:\n  policy: strict\n").unwrap();
    // Each run makes a request every 100 ms (each one an audit entry) for a minute.
    let traffic = "i=0; while [ $i -lt 600 ]; do curl -s -o /dev/null http://denied-$i.example/; i=$((i+1)); sleep 0.1; done";
    let names: Vec<String> = (0..20).map(|i| format!("live-{i}")).collect();
    for n in &names {
        let out = env
            .cmd()
            .current_dir(&ws)
            .args(["run", "-d", "-q", "--name", n, "--", "sh", "-c", traffic])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let is_net = |x: &serde_json::Value| x["type"].as_str().is_some_and(|t| t.starts_with("net."));
    // Every run's traffic is on the record (however busy the machine)…
    common::wait_until(std::time::Duration::from_secs(30), || {
        names
            .iter()
            .all(|n| audit_entries(&env, n).iter().any(is_net))
            .then_some(())
    });
    // … and what the daemon has acknowledged (shown) before it dies.
    let before: Vec<Vec<serde_json::Value>> =
        names.iter().map(|n| audit_entries(&env, n)).collect();
    for (n, e) in names.iter().zip(&before) {
        let types: Vec<&str> = e.iter().filter_map(|x| x["type"].as_str()).collect();
        assert!(
            e.iter().any(is_net),
            "{n}: traffic is on the record before the kill: {types:?}"
        );
    }
    let pid = env.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::wait_until(std::time::Duration::from_secs(10), || {
        (!common::pid_alive(pid)).then_some(())
    })
    .expect("the daemon died");

    // The next daemon re-adopts every run: still running, the record intact and growing.
    let ps: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "--json"])).unwrap();
    let running = ps["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "running")
        .count();
    assert_eq!(running, 20, "{ps}");
    for (n, was) in names.iter().zip(&before) {
        let grown = common::wait_until(std::time::Duration::from_secs(30), || {
            let now = audit_entries(&env, n);
            now[was.len().min(now.len())..]
                .iter()
                .any(is_net)
                .then_some(now)
        });
        let now = grown.unwrap_or_else(|| audit_entries(&env, n));
        assert!(
            now.len() > was.len(),
            "{n}: the record goes on after the restart"
        );
        assert_eq!(
            &now[..was.len()],
            &was[..],
            "{n}: no acknowledged entry changed or lost"
        );
        assert!(
            now[was.len()..].iter().any(is_net),
            "{n}: the re-adopted run's traffic is recorded again"
        );
    }
    for n in &names {
        env.ok(&["stop", n]);
    }
    for n in names.iter().step_by(5) {
        let bundle = env.dir.path().join(format!("{n}.json"));
        let bundle = bundle.to_str().unwrap();
        env.ok(&["audit", "export", n, "-o", bundle]);
        env.ok(&["audit", "verify", bundle]);
    }
}
