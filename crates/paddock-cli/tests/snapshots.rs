//! Snapshots and rollback through the real CLI, daemon and sandbox: on a live run (the
//! running command sees the restored files), on an ended run, per path, the automatic
//! snapshot before an exec, `diff --from`, and what a hostile layer cannot do to them.

mod common;

use std::path::{Path, PathBuf};

use common::Env;

fn workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(ws.join("dir")).unwrap();
    std::fs::write(ws.join("a.txt"), "orig\n").unwrap();
    std::fs::write(ws.join("dir/low.txt"), "low\n").unwrap();
    ws
}

fn paddock(env: &Env, ws: &Path, args: &[&str]) -> String {
    let out = env.cmd().current_dir(ws).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "paddock {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(env: &Env, ws: &Path, run: &str, script: &str) -> String {
    paddock(env, ws, &["exec", run, "--", "sh", "-c", script])
}

/// Start `script` as the detached run `name` and wait until its layer shows `file`.
fn start_live(env: &Env, ws: &Path, name: &str, script: &str, file: &str) {
    paddock(
        env,
        ws,
        &["run", "-d", "-q", "--name", name, "--", "sh", "-c", script],
    );
    common::wait_until(std::time::Duration::from_secs(10), || {
        paddock(env, ws, &["diff", "--stat", name])
            .contains(file)
            .then_some(())
    })
    .expect("the run wrote its files");
}

/// The id of a run's newest snapshot.
fn last_snapshot(env: &Env, ws: &Path, run: &str) -> String {
    let list = paddock(env, ws, &["snapshots", run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    v["snapshots"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_live_run_rolls_back_and_its_command_sees_the_files_at_once() {
    let env = Env::new();
    let ws = workspace(&env);
    start_live(
        &env,
        &ws,
        "live",
        "echo v1 > a.txt; echo one > b.txt; sleep 120",
        "b.txt",
    );
    let s1 = paddock(&env, &ws, &["snapshot", "live", "-m", "first"])
        .trim()
        .to_string();
    assert_eq!(s1, "s1");
    // The agent goes on: changes a file, deletes one of its own and one of the workspace's,
    // replaces a directory with a file, adds a symlink.
    sh(
        &env,
        &ws,
        "live",
        "echo v2 > a.txt; rm b.txt; rm dir/low.txt; echo c > c.txt; ln -s /etc/passwd link",
    );
    let list = paddock(&env, &ws, &["snapshots", "live"]);
    assert!(list.contains("s1") && list.contains("first"), "{list}");
    assert!(
        list.contains("s2") && list.contains("before exec") && list.contains("(auto)"),
        "an exec is preceded by an automatic snapshot: {list}"
    );
    let since = paddock(&env, &ws, &["diff", "--stat", "live", "--from", "s1"]);
    for l in [
        "M  a.txt",
        "D  b.txt",
        "D  dir/low.txt",
        "A  c.txt",
        "A  link",
    ] {
        assert!(since.contains(l), "{l}: {since}");
    }

    let out = paddock(&env, &ws, &["rollback", "live", "s1"]);
    assert!(out.contains("running sandbox"), "{out}");
    // Inside, at once: what s1 had.
    let inside = sh(
        &env,
        &ws,
        "live",
        "cat a.txt b.txt dir/low.txt; [ -e c.txt ] && echo c-present; [ -L link ] && echo link-present; true",
    );
    assert_eq!(inside, "v1\none\nlow\n");
    assert!(paddock(&env, &ws, &["diff", "--stat", "live", "--from", "s1"]).contains("no changes"));
    // The host's workspace was never touched.
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "orig\n");

    // Per path: only b.txt goes back to the state before the last exec.
    sh(&env, &ws, "live", "echo v3 > a.txt; echo three > b.txt");
    let last = last_snapshot(&env, &ws, "live");
    paddock(&env, &ws, &["rollback", "live", &last, "b.txt"]);
    assert_eq!(sh(&env, &ws, "live", "cat a.txt b.txt"), "v3\none\n");
    paddock(&env, &ws, &["stop", "live"]);
}

#[test]
fn an_ended_run_rolls_back_in_its_layer_whole_or_per_path() {
    let env = Env::new();
    let ws = workspace(&env);
    start_live(
        &env,
        &ws,
        "one",
        "echo v1 > a.txt; echo b > b.txt; sleep 120",
        "b.txt",
    );
    assert_eq!(paddock(&env, &ws, &["snapshot", "one"]).trim(), "s1");
    sh(
        &env,
        &ws,
        "one",
        "echo v2 > a.txt; rm b.txt; echo c > c.txt",
    );
    paddock(&env, &ws, &["stop", "one"]);
    // Per path: a.txt is v1 again, the rest as the run left it.
    let out = paddock(&env, &ws, &["rollback", "one", "s1", "a.txt"]);
    assert!(!out.contains("running sandbox"), "{out}");
    let d = paddock(&env, &ws, &["diff", "one"]);
    assert!(d.contains("+v1") && !d.contains("+v2"), "{d}");
    assert!(d.contains("A  c.txt") && !d.contains("b.txt"), "{d}");
    // Whole: exactly s1; apply brings exactly that.
    paddock(&env, &ws, &["rollback", "one", "s1"]);
    let d = paddock(&env, &ws, &["diff", "--stat", "one"]);
    assert!(
        d.contains("M  a.txt") && d.contains("A  b.txt") && !d.contains("c.txt"),
        "{d}"
    );
    paddock(&env, &ws, &["apply", "one"]);
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "v1\n");
    assert_eq!(std::fs::read_to_string(ws.join("b.txt")).unwrap(), "b\n");
    assert!(!ws.join("c.txt").exists());
}

#[test]
fn a_deletion_rolls_back_on_an_ended_run() {
    let env = Env::new();
    let ws = workspace(&env);
    // The snapshot is taken live, before the deletion; the run then deletes and ends.
    paddock(
        &env,
        &ws,
        &[
            "run",
            "-d",
            "-q",
            "--name",
            "del",
            "--",
            "sh",
            "-c",
            "sleep 120",
        ],
    );
    sh(&env, &ws, "del", "echo mine > mine.txt");
    paddock(&env, &ws, &["snapshot", "del", "-m", "before rm"]);
    let id = last_snapshot(&env, &ws, "del");
    sh(&env, &ws, "del", "rm a.txt mine.txt; rm -r dir");
    paddock(&env, &ws, &["stop", "del"]);
    let d = paddock(&env, &ws, &["diff", "--stat", "del"]);
    assert!(d.contains("D  a.txt") && d.contains("D  dir"), "{d}");
    paddock(&env, &ws, &["rollback", "del", &id, "a.txt"]);
    let d = paddock(&env, &ws, &["diff", "--stat", "del"]);
    assert!(
        !d.contains("a.txt"),
        "a.txt is back as in the workspace: {d}"
    );
    assert!(d.contains("D  dir"), "the rest stays: {d}");
    paddock(&env, &ws, &["rollback", "del", &id]);
    let d = paddock(&env, &ws, &["diff", "--stat", "del"]);
    assert!(d.contains("A  mine.txt") && !d.contains("D  "), "{d}");
}

#[test]
fn snapshots_refuse_bad_input_and_never_read_through_a_link() {
    let env = Env::new();
    let ws = workspace(&env);
    let secret = env.dir.path().join("host-secret.txt");
    std::fs::write(&secret, "TOPSECRET-HOST-FILE\n").unwrap();
    paddock(
        &env,
        &ws,
        &[
            "run",
            "-q",
            "--name",
            "links",
            "--",
            "sh",
            "-c",
            &format!("ln -s {} leak; ln -s /etc/shadow shadow", secret.display()),
        ],
    );
    paddock(&env, &ws, &["snapshot", "links"]);
    // The snapshot holds the links, never what they point at.
    let snaps = env.home.join("runs");
    let mut found = Vec::new();
    let mut stack = vec![snaps];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file()
                && std::fs::read(e.path())
                    .unwrap_or_default()
                    .windows(9)
                    .any(|w| w == b"TOPSECRET")
            {
                found.push(e.path());
            }
        }
    }
    assert!(found.is_empty(), "host file content copied: {found:?}");

    let bad = |args: &[&str], want: &str| {
        let out = env.cmd().current_dir(&ws).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    bad(&["rollback", "links", "s9"], "no snapshot s9");
    bad(&["rollback", "links", "../../x"], "no snapshot");
    bad(
        &["rollback", "links", "s1", "../outside"],
        "not a plain path",
    );
    bad(
        &["rollback", "links", "s1", "/etc/passwd"],
        "outside the run's workspace",
    );
    bad(&["diff", "links", "--from", "s7"], "no snapshot s7");
    bad(&["snapshot", "links", "-m", "two\nlines"], "one line");
    paddock(
        &env,
        &ws,
        &["run", "-q", "--bind", "--name", "bound", "--", "true"],
    );
    bad(&["snapshot", "bound"], "bind mode");
}
