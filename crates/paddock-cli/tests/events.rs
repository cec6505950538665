//! Discard, live usage, the daemon's own audit verification and the event stream, through
//! the real CLI, daemon and sandboxes: `paddock discard` (ended and live runs, bad paths),
//! `GET /v1/runs/{ref}/stats`, `GET /v1/runs/{ref}/audit/verify` against a log tampered
//! with on disk, and `paddock events` / `GET /v1/events` (live order, resuming from the
//! history, the loss notice past it, `Last-Event-ID`).
//!
//! Every child process and socket read has a deadline: a hang fails the test.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Env;
use serde_json::Value;

/// The longest any one CLI call may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);
/// The bus's history (`paddock_daemon::bus::HISTORY`).
const HISTORY: u64 = 4096;

// ---------------------------------------------------------------------------------------
// Harness: the CLI with deadlines, raw API calls, a streaming SSE reader.

fn drain(r: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Run `cmd` to its end; kill it and fail after `timeout`.
fn output_within(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning paddock");
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for paddock") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{:?} {:?} still running after {timeout:?}",
                cmd.get_program(),
                cmd.get_args().collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The CLI of one test's home, run in its workspace.
struct Cli<'a> {
    env: &'a Env,
    ws: PathBuf,
}

impl Cli<'_> {
    fn new(env: &Env) -> Cli<'_> {
        let ws = env.dir.path().join("ws");
        std::fs::create_dir_all(ws.join("dir")).unwrap();
        std::fs::write(ws.join("a.txt"), "orig\n").unwrap();
        std::fs::write(ws.join("dir/low.txt"), "low\n").unwrap();
        Cli { env, ws }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd();
        c.current_dir(&self.ws).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output_within(self.command(args), CHILD_TIMEOUT)
    }

    /// Require success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "paddock {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Require a paddock error (exit 1) whose message contains `want`; stderr.
    fn fails(&self, args: &[&str], want: &str) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "paddock {args:?}: {out:?}");
        assert!(err.contains(want), "paddock {args:?}: {err}");
        assert!(!err.contains("panicked"), "paddock {args:?}: {err}");
        err
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// `paddock events … --json`: one event per line.
    fn events(&self, args: &[&str]) -> Vec<Value> {
        let mut a = vec!["events", "--json"];
        a.extend_from_slice(args);
        self.ok(&a)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn run_id(&self, name: &str) -> String {
        self.json(&["inspect", name, "--json"])["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn state(&self, name: &str) -> String {
        self.json(&["inspect", name, "--json"])["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Start `script` as the detached run `name`; wait until its layer shows `file`.
    fn start_live(&self, name: &str, script: &str, file: &str) {
        self.ok(&["run", "-d", "-q", "--name", name, "--", "sh", "-c", script]);
        common::wait_until(Duration::from_secs(10), || {
            self.ok(&["diff", "--stat", name])
                .contains(file)
                .then_some(())
        })
        .unwrap_or_else(|| panic!("run {name} did not write {file}"));
    }

    /// Whether `test -e file` succeeds inside the running sandbox.
    fn exists_inside(&self, run: &str, file: &str) -> bool {
        let out = self.run(&["exec", run, "--", "test", "-e", file]);
        match out.status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!("exec {run} test -e {file}: {out:?}"),
        }
    }
}

fn api(env: &Env, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    common::request(&env.socket(), method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Assert the one error envelope: `{"error": {"code", "message", "hint"}}`.
fn envelope<'v>(status: u16, body: &'v Value, want_status: u16, want_code: &str) -> &'v str {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(body["error"]["hint"].is_string(), "{body}");
    body["error"]["message"].as_str().expect("an error message")
}

fn published(env: &Env) -> u64 {
    env.health().expect("the daemon answers")["event_bus"]["published"]
        .as_u64()
        .unwrap()
}

/// Wait until the bus has published at least `at_least` events and then nothing for a
/// while (the network records of an ended run arrive after it ended); the newest seq.
fn settled(env: &Env, at_least: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    let mut last = (published(env), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = published(env);
        if now != last.0 {
            last = (now, Instant::now());
        } else if now >= at_least && last.1.elapsed() > Duration::from_millis(500) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the bus published {now} events, wanted at least {at_least}"
        );
    }
}

/// A `paddock` child that prints lines as it goes; killed when dropped.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn spawn(mut cmd: Command) -> Streaming {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning paddock");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines }
    }

    fn next_json(&self, timeout: Duration) -> Value {
        let l = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no line within {timeout:?}: {e}"));
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"))
    }

    /// The exit status, waiting at most `timeout`.
    fn exit_within(&mut self, timeout: Duration) -> std::process::ExitStatus {
        common::wait_until(timeout, || self.child.try_wait().unwrap())
            .unwrap_or_else(|| panic!("the child did not exit within {timeout:?}"))
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn subscribers(env: &Env) -> u64 {
    env.health().expect("the daemon answers")["event_bus"]["subscribers"]
        .as_u64()
        .unwrap()
}

/// One server-sent event.
#[derive(Debug)]
struct Frame {
    id: Option<String>,
    event: String,
    data: Value,
}

/// The answer to a `GET /v1/events…`: the status, and the first `want` events of a stream
/// (or the error body).
struct Sse {
    status: u16,
    headers: String,
    body: Value,
    frames: Vec<Frame>,
}

/// Only whole chunks of a chunked body.
fn dechunk_complete(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16) else {
            break;
        };
        let start = pos + 2;
        if size == 0 || b.len() < start + size + 2 {
            break;
        }
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
    out
}

fn frames_of(text: &str) -> Vec<Frame> {
    let Some(end) = text.rfind("\n\n") else {
        return Vec::new();
    };
    text[..end]
        .split("\n\n")
        .filter_map(|f| {
            let (mut id, mut event, mut data) = (None, String::new(), None);
            for l in f.lines() {
                if let Some(v) = l.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = l.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = l.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).expect("SSE data is JSON"));
                }
            }
            Some(Frame {
                id,
                event,
                data: data?,
            })
        })
        .collect()
}

/// `GET path` on the socket, reading the event stream until `want` events arrived (at most
/// 10 s), then hanging up.
fn sse(env: &Env, path: &str, headers: &[(&str, &str)], want: usize) -> Sse {
    let mut s = UnixStream::connect(env.socket()).expect("connecting to the daemon");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: paddock\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resp = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("reading {path}: {e}"),
        }
        if let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..split]).to_lowercase();
            if head.starts_with("http/1.1 200") && head.contains("transfer-encoding: chunked") {
                let body = dechunk_complete(&resp[split + 4..]);
                if frames_of(&String::from_utf8_lossy(&body)).len() >= want {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path}: no {want} events within 10 s: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{path}: no HTTP answer: {resp:?}"));
    let headers = String::from_utf8_lossy(&resp[..split]).to_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut raw = resp[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        raw = dechunk_complete(&raw);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (body, frames) = if status == 200 {
        (Value::Null, frames_of(&text))
    } else {
        (
            serde_json::from_str(&text).unwrap_or(Value::Null),
            Vec::new(),
        )
    };
    Sse {
        status,
        headers,
        body,
        frames,
    }
}

/// Every file and directory under `root` with the files' content.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// A Python loop resolving `n` distinct names: two DNS records (A, AAAA) each, cheaply.
fn lookups(n: usize) -> String {
    format!(
        "import socket\nfor i in range({n}):\n  try: socket.getaddrinfo(f'x{{i}}.denied.example', 80)\n  except OSError: pass\n"
    )
}

/// Start the detached run `name` making `n` lookups and then sleeping (so that its log stays
/// open); wait until the bus carried at least `events` more events and went quiet. Returns
/// (the newest seq before the run, the newest after).
fn lookups_live(env: &Env, cli: &Cli, name: &str, n: usize, events: u64) -> (u64, u64) {
    cli.ok(&["ps"]);
    let seq0 = published(env);
    let script = format!("{}import time\ntime.sleep(120)\n", lookups(n));
    cli.ok(&[
        "run", "-d", "-q", "--name", name, "--", "python3", "-c", &script,
    ]);
    (seq0, settled(env, seq0 + events, Duration::from_secs(30)))
}

// ---------------------------------------------------------------------------------------
// paddock discard

#[test]
fn discard_throws_away_an_ended_runs_changes_per_path_then_all_and_apply_brings_nothing() {
    let env = Env::new();
    let cli = Cli::new(&env);
    cli.ok(&[
        "run",
        "-q",
        "--name",
        "two",
        "--",
        "sh",
        "-c",
        "echo new > a.txt; echo b > b.txt; echo c > dir/c.txt",
    ]);
    let id = cli.run_id("two");
    let before = tree(&cli.ws);
    let d = cli.ok(&["diff", "--stat", "two"]);
    for l in ["M  a.txt", "A  b.txt", "A  dir/c.txt"] {
        assert!(d.contains(l), "{l}: {d}");
    }

    // One path, relative to the workspace.
    let r = cli.json(&["discard", "two", "a.txt", "--json"]);
    assert_eq!(r["run_id"], id.as_str(), "{r}");
    assert_eq!(r["live"], false, "{r}");
    assert_eq!(r["discarded"], 1, "{r}");
    let d = cli.ok(&["diff", "two"]);
    assert!(!d.contains("a.txt") && !d.contains("+new"), "{d}");
    assert!(d.contains("A  b.txt") && d.contains("+b"), "{d}");
    assert!(d.contains("A  dir/c.txt"), "{d}");

    // Bad input: refused with a message, nothing lost.
    cli.fails(&["discard", "two", "../escape"], "not a plain path");
    cli.fails(&["discard", "two", "dir/../b.txt"], "not a plain path");
    cli.fails(
        &["discard", "two", "/etc/passwd"],
        "outside the run's workspace",
    );
    cli.fails(&["discard", "nosuch", "b.txt"], "no run matches");
    let (status, body) = api(
        &env,
        "POST",
        "/v1/runs/two/discard",
        Some(r#"{"paths": ["../../etc"]}"#),
    );
    assert!(envelope(status, &body, 400, "bad_request").contains("not a plain path"));
    let (status, body) = api(
        &env,
        "POST",
        "/v1/runs/two/discard",
        Some(r#"{"paths": "b.txt"}"#),
    );
    envelope(status, &body, 400, "bad_request");
    // A path the run did not change: nothing to do, and said so.
    let out = cli.ok(&["discard", "two", "nope.txt"]);
    assert!(out.contains("nothing to discard"), "{out}");
    let d = cli.ok(&["diff", "--stat", "two"]);
    assert!(
        d.contains("A  b.txt") && d.contains("A  dir/c.txt") && !d.contains("a.txt"),
        "bad input lost nothing: {d}"
    );

    // An absolute path inside the workspace.
    let abs = cli.ws.join("b.txt");
    let out = cli.ok(&["discard", "two", abs.to_str().unwrap()]);
    assert!(out.contains("discarded 1 change"), "{out}");
    assert!(!out.contains("running sandbox"), "{out}");
    let d = cli.ok(&["diff", "--stat", "two"]);
    assert!(!d.contains("b.txt") && d.contains("A  dir/c.txt"), "{d}");

    // The rest, over the API: `{"run_id","live","discarded"}`.
    let (status, r) = api(
        &env,
        "POST",
        "/v1/runs/two/discard",
        Some(r#"{"paths": []}"#),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["run_id"], id.as_str(), "{r}");
    assert_eq!(r["live"], false, "{r}");
    assert!(r["discarded"].as_u64().unwrap() >= 1, "{r}");
    assert!(cli.ok(&["diff", "two"]).contains("no changes"));
    assert!(cli.ok(&["discard", "two"]).contains("nothing to discard"));

    // Apply brings nothing; the workspace is as it was, byte for byte.
    cli.ok(&["apply", "two"]);
    assert_eq!(tree(&cli.ws), before);
    assert_eq!(
        std::fs::read_to_string(cli.ws.join("a.txt")).unwrap(),
        "orig\n"
    );

    // Each discard is on the record, as asked; refused ones are not.
    let log = cli.json(&["audit", "two", "--type", "layer.discarded", "--json"]);
    let got: Vec<(Value, Value)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["data"]["paths"].clone(), e["data"]["discarded"].clone()))
        .collect();
    let all = r["discarded"].clone();
    assert_eq!(
        got,
        vec![
            (serde_json::json!(["a.txt"]), serde_json::json!(1)),
            (serde_json::json!(["nope.txt"]), serde_json::json!(0)),
            (serde_json::json!([abs]), serde_json::json!(1)),
            (serde_json::json!([]), all),
            (serde_json::json!([]), serde_json::json!(0)),
        ],
        "{log}"
    );
    let ev = cli.events(&[
        "--after",
        "0",
        "--run",
        "two",
        "-t",
        "layer.discarded",
        "-n",
        "1",
    ]);
    assert_eq!(ev[0]["kind"], "layer.discarded", "{ev:?}");
    assert_eq!(ev[0]["run_id"], id.as_str(), "{ev:?}");
    assert_eq!(ev[0]["data"]["paths"], serde_json::json!(["a.txt"]));
    assert_eq!(ev[0]["data"]["live"], false);

    // A bind-mode run has no layer to discard.
    cli.ok(&["run", "-q", "--bind", "--name", "bound", "--", "true"]);
    cli.fails(&["discard", "bound"], "bind mode");
}

#[test]
fn discard_on_a_live_run_takes_the_files_away_inside_the_running_sandbox() {
    let env = Env::new();
    let cli = Cli::new(&env);
    cli.start_live(
        "live",
        "echo x > f.txt; echo keep > k.txt; echo v2 > a.txt; sleep 120",
        "k.txt",
    );
    assert!(cli.exists_inside("live", "f.txt"));

    let r = cli.json(&["discard", "live", "f.txt", "--json"]);
    assert_eq!(r["live"], true, "{r}");
    assert_eq!(r["discarded"], 1, "{r}");
    assert!(
        !cli.exists_inside("live", "f.txt"),
        "the sandbox still sees f.txt"
    );
    assert_eq!(
        cli.ok(&["exec", "live", "--", "cat", "k.txt", "a.txt"]),
        "keep\nv2\n"
    );
    let d = cli.ok(&["diff", "--stat", "live"]);
    assert!(!d.contains("f.txt") && d.contains("A  k.txt"), "{d}");

    // Refused paths change nothing inside.
    cli.fails(&["discard", "live", "../k.txt"], "not a plain path");
    cli.fails(
        &["discard", "live", "/tmp/k.txt"],
        "outside the run's workspace",
    );
    assert!(cli.exists_inside("live", "k.txt"));

    // The rest: the sandbox sees the workspace as it was, and its command goes on.
    let out = cli.ok(&["discard", "live"]);
    assert!(
        out.contains("the running sandbox sees the workspace as it was"),
        "{out}"
    );
    assert!(!cli.exists_inside("live", "k.txt"));
    assert_eq!(cli.ok(&["exec", "live", "--", "cat", "a.txt"]), "orig\n");
    assert!(cli.ok(&["diff", "live"]).contains("no changes"));
    assert_eq!(cli.state("live"), "running");
    assert_eq!(
        std::fs::read_to_string(cli.ws.join("a.txt")).unwrap(),
        "orig\n"
    );
    assert!(!cli.ws.join("k.txt").exists() && !cli.ws.join("f.txt").exists());

    let log = cli.json(&["audit", "live", "--type", "layer.discarded", "--json"]);
    let e = log["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2, "{log}");
    assert_eq!(e[0]["data"]["paths"], serde_json::json!(["f.txt"]), "{log}");
    assert_eq!(e[0]["data"]["live"], true, "{log}");
    assert_eq!(e[1]["data"]["paths"], serde_json::json!([]), "{log}");
    cli.ok(&["stop", "live"]);
}

// ---------------------------------------------------------------------------------------
// GET /v1/runs/{ref}/stats

#[test]
fn stats_report_a_live_runs_memory_pids_and_cpu_and_refuse_an_ended_one() {
    let env = Env::new();
    let cli = Cli::new(&env);
    // Usage is measured through the run's cgroups, which limited runs get.
    let hog = "import time\nx = bytearray(50 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ns = 0\nfor i in range(3000000): s += i\nprint('ready', flush=True)\ntime.sleep(120)\n";
    let out = cli.run(&[
        "run", "-d", "-q", "--name", "hog", "--memory", "512M", "--pids", "64", "--cpus", "1",
        "--", "python3", "-c", hog,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("resource limits need") {
        eprintln!("SKIP: this machine cannot give a run cgroups: {err}");
        return;
    }
    assert!(out.status.success(), "{out:?}");
    common::wait_until(Duration::from_secs(15), || {
        cli.ok(&["logs", "hog"]).contains("ready").then_some(())
    })
    .expect("the run allocated its memory");
    let (status, s) = api(&env, "GET", "/v1/runs/hog/stats", None);
    assert_eq!(status, 200, "{s}");
    let field = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is not measured: {s}"))
    };
    let mem = field("memory_bytes");
    assert!(
        (40 << 20..512 << 20).contains(&mem),
        "50 MB held, 512 MB limit: {s}"
    );
    assert!((1..=64).contains(&field("pids")), "{s}");
    assert!(field("cpu_usage_ns") > 10_000_000, "a CPU loop ran: {s}");
    // The id works as the name does.
    let id = cli.run_id("hog");
    let (status, by_id) = api(&env, "GET", &format!("/v1/runs/{id}/stats"), None);
    assert_eq!(status, 200, "{by_id}");
    assert!(
        by_id["memory_bytes"].as_u64().unwrap() >= 40 << 20,
        "{by_id}"
    );

    cli.ok(&["stop", "hog"]);
    let (status, body) = api(&env, "GET", "/v1/runs/hog/stats", None);
    assert!(envelope(status, &body, 409, "conflict").contains("no live usage"));
    let (status, body) = api(&env, "GET", "/v1/runs/nosuch/stats", None);
    envelope(status, &body, 404, "not_found");
    assert!(env.health().is_some(), "the daemon is still up");
}

// ---------------------------------------------------------------------------------------
// GET /v1/runs/{ref}/audit/verify

/// CRC-32 (IEEE), as the audit log's records carry.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Replace `from` by `to` (same length) in `entries.log`; with `fix_crc`, as a forger
/// would, also recompute the record's CRC so that only the signatures can tell.
fn tamper_entries(log: &[u8], from: &[u8], to: &[u8], fix_crc: bool) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut b = log.to_vec();
    let at = b
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{} not in the log", String::from_utf8_lossy(from)));
    b[at..at + to.len()].copy_from_slice(to);
    if fix_crc {
        // Records after the 16-byte file header: "PA", flags, 0, len u32 LE, crc u32 LE.
        let mut o = 16;
        loop {
            assert_eq!(&b[o..o + 2], b"PA", "a record at {o}");
            let len = u32::from_le_bytes(b[o + 4..o + 8].try_into().unwrap()) as usize;
            if (o..o + 12 + len).contains(&at) {
                let mut covered = b[o + 2..o + 8].to_vec();
                covered.extend_from_slice(&b[o + 12..o + 12 + len]);
                let crc = crc32(&covered);
                b[o + 8..o + 12].copy_from_slice(&crc.to_le_bytes());
                break;
            }
            o += 12 + len;
        }
    }
    b
}

#[test]
fn the_daemon_verifies_a_runs_audit_log_and_tells_when_it_was_tampered_with() {
    let env = Env::new();
    let cli = Cli::new(&env);
    cli.ok(&["run", "-q", "--name", "rec", "--", "sh", "-c", "echo hi"]);
    let id = cli.run_id("rec");
    let verify = || api(&env, "GET", "/v1/runs/rec/audit/verify", None);
    let (status, v) = verify();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["error"].is_null(), "{v}");
    let size = cli.json(&["audit", "rec", "--json"])["size"]
        .as_u64()
        .unwrap();
    assert_eq!(
        v["entries"].as_u64(),
        Some(size),
        "every entry checked: {v}"
    );
    assert!(v["checkpoints"].as_u64().unwrap() >= 1, "{v}");

    let dir = env.home.join("runs").join(&id).join("audit");
    let entries = dir.join("entries.log");
    let leaves = dir.join("leaves.hash");
    let (orig_entries, orig_leaves) = (
        std::fs::read(&entries).unwrap(),
        std::fs::read(&leaves).unwrap(),
    );
    let restore = || {
        std::fs::write(&entries, &orig_entries).unwrap();
        std::fs::write(&leaves, &orig_leaves).unwrap();
    };

    // A forged entry (its CRC fixed): the signed roots no longer match.
    std::fs::write(
        &entries,
        tamper_entries(
            &orig_entries,
            br#""to":"created""#,
            br#""to":"breated""#,
            true,
        ),
    )
    .unwrap();
    let (status, v) = verify();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], false, "a forged entry verifies: {v}");
    let err = v["error"].as_str().expect("an error string");
    assert!(err.contains("checkpoint"), "{v}");
    restore();
    assert_eq!(verify().1["ok"], true, "the restored log verifies");

    // The derived leaf hashes damaged: the entries and signatures still decide.
    let mut l = orig_leaves.clone();
    l[40] ^= 0xff;
    std::fs::write(&leaves, &l).unwrap();
    let (status, v) = verify();
    assert_eq!((status, &v["ok"]), (200, &Value::Bool(true)), "{v}");
    restore();

    // A flipped bit (CRC broken): never `ok`, never a hang or a panic.
    std::fs::write(
        &entries,
        tamper_entries(
            &orig_entries,
            br#""to":"created""#,
            br#""to":"createe""#,
            false,
        ),
    )
    .unwrap();
    // A log that cannot be read back does not verify: that is the answer, not a 500.
    let (status, v) = verify();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("corrupt")),
        "{v}"
    );
    assert!(env.health().is_some(), "the daemon is still up");
    restore();
    assert_eq!(verify().1["ok"], true);

    // A live run's log verifies too (the daemon signs what is pending).
    cli.ok(&["run", "-d", "-q", "--name", "up", "--", "sleep", "120"]);
    let (status, v) = api(&env, "GET", "/v1/runs/up/audit/verify", None);
    assert_eq!((status, &v["ok"]), (200, &Value::Bool(true)), "{v}");
    assert!(v["entries"].as_u64().unwrap() >= 3, "{v}");
    let (status, body) = api(&env, "GET", "/v1/runs/nosuch/audit/verify", None);
    envelope(status, &body, 404, "not_found");
    cli.ok(&["stop", "up"]);
}

// ---------------------------------------------------------------------------------------
// paddock events, GET /v1/events

#[test]
fn events_follow_a_run_starting_in_order_and_an_id_from_the_future_resumes_from_now() {
    let env = Env::new();
    let cli = Cli::new(&env);
    cli.ok(&["ps"]);
    let base = subscribers(&env);
    let mut states =
        Streaming::spawn(cli.command(&["events", "-t", "run.state", "--json", "-n", "4"]));
    let mut future = Streaming::spawn(cli.command(&[
        "events",
        "--after",
        "1000000000000",
        "-t",
        "run.state",
        "--json",
        "-n",
        "1",
    ]));
    common::wait_until(Duration::from_secs(10), || {
        (subscribers(&env) >= base + 2).then_some(())
    })
    .expect("both streams subscribed");

    cli.ok(&["run", "-q", "--name", "st", "--", "true"]);
    let id = cli.run_id("st");
    let got: Vec<Value> = (0..4)
        .map(|_| states.next_json(Duration::from_secs(10)))
        .collect();
    assert!(
        states.exit_within(Duration::from_secs(5)).success(),
        "-n 4 ends it"
    );
    let to: Vec<&str> = got
        .iter()
        .map(|e| e["data"]["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["created", "starting", "running", "stopped"], "{got:?}");
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e["kind"], "run.state", "{e}");
        assert_eq!(e["run_id"], id.as_str(), "{e}");
        if i > 0 {
            assert_eq!(e["data"]["from"], got[i - 1]["data"]["to"], "{got:?}");
            assert!(e["seq"].as_u64() > got[i - 1]["seq"].as_u64(), "{got:?}");
        } else {
            assert!(e["data"]["from"].is_null(), "{e}");
        }
    }
    // The unknown id from the future: no replay, no loss notice, the next live event.
    let first = future.next_json(Duration::from_secs(10));
    assert_eq!(first["kind"], "run.state", "{first}");
    assert_eq!(first["seq"], got[0]["seq"], "{first}");
    assert!(future.exit_within(Duration::from_secs(5)).success());
}

#[test]
fn events_resume_after_an_id_from_the_history() {
    let env = Env::new();
    let cli = Cli::new(&env);
    cli.ok(&["run", "-q", "--name", "hist", "--", "true"]);
    let mine = cli.events(&["--after", "0", "--run", "hist", "-t", "run.", "-n", "6"]);
    let created = mine
        .iter()
        .find(|e| e["kind"] == "run.created")
        .expect("run.created");
    let seq = created["seq"].as_u64().unwrap();

    let next = cli.events(&["--after", &seq.to_string(), "-n", "1"]);
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0]["seq"].as_u64(), Some(seq + 1), "{next:?}");
    let two = cli.events(&["--after", &(seq - 1).to_string(), "-n", "2"]);
    assert_eq!(two[0], *created, "{two:?}");
    assert_eq!(two[1], next[0], "{two:?}");

    // Filtered: the first later event of that kind.
    let st = cli.events(&["--after", &seq.to_string(), "-t", "run.state", "-n", "2"]);
    let want: Vec<&Value> = mine
        .iter()
        .filter(|e| e["kind"] == "run.state" && e["seq"].as_u64().unwrap() > seq)
        .take(2)
        .collect();
    assert_eq!(st.iter().collect::<Vec<_>>(), want, "{mine:?}");
    assert_eq!(st[0]["data"]["to"], "created", "{st:?}");
}

#[test]
fn events_resumed_from_before_the_history_start_with_the_loss_notice() {
    let env = Env::new();
    let cli = Cli::new(&env);
    // About 2 × 2300 network records, more than the history holds.
    let (seq0, _) = lookups_live(&env, &cli, "dns", 2300, HISTORY + 200);

    let p1 = published(&env);
    let got = cli.events(&["--after", &seq0.to_string(), "-n", "2"]);
    let p2 = published(&env);
    assert_eq!(got[0]["kind"], "dropped", "{got:?}");
    assert_eq!(got[0]["seq"], 0, "{got:?}");
    let lost = got[0]["data"]["dropped"].as_u64().expect("data.dropped");
    assert!(
        (p1 - HISTORY - seq0..=p2 - HISTORY - seq0).contains(&lost),
        "lost {lost}, published {p1}..{p2} after {seq0}"
    );
    // Then the oldest event the history still holds.
    assert_eq!(got[1]["seq"].as_u64(), Some(seq0 + lost + 1), "{got:?}");

    // The same, in words, and from the start.
    let out = cli.ok(&["events", "--after", &seq0.to_string(), "-n", "1"]);
    assert!(out.contains(&format!("{lost} events lost")), "{out}");
    let from0 = cli.events(&["--after", "0", "-n", "1"]);
    assert_eq!(from0[0]["kind"], "dropped", "{from0:?}");
    assert!(from0[0]["data"]["dropped"].as_u64().unwrap() >= lost);

    // Over SSE: a frame without an id.
    let s = sse(&env, &format!("/v1/events?after={seq0}"), &[], 2);
    assert_eq!(s.status, 200);
    assert_eq!(s.frames[0].event, "dropped", "{:?}", s.frames);
    assert!(s.frames[0].id.is_none(), "{:?}", s.frames);
    assert!(s.frames[0].data["data"]["dropped"].as_u64().unwrap() >= lost);
    assert!(s.frames[1].id.is_some(), "{:?}", s.frames);
    let counters = env.health().unwrap()["event_bus"].clone();
    assert!(counters["dropped"].as_u64().unwrap() >= lost, "{counters}");
}

#[test]
fn event_lines_show_the_time_of_day_to_the_millisecond() {
    let env = Env::new();
    let cli = Cli::new(&env);
    let (seq0, newest) = lookups_live(&env, &cli, "dns", 300, 600);
    let n = (newest - seq0).to_string();
    let out = cli.ok(&["events", "--after", &seq0.to_string(), "-n", &n]);
    let mut bad = Vec::new();
    for l in out.lines() {
        // `SEQ  HH:MM:SS.mmm  RUN  KIND  summary`
        let time = l.split_whitespace().nth(1).unwrap_or_default();
        let b = time.as_bytes();
        let shaped = b.len() == 12
            && b.iter().enumerate().all(|(i, c)| match i {
                2 | 5 => *c == b':',
                8 => *c == b'.',
                _ => c.is_ascii_digit(),
            });
        if !shaped {
            bad.push(l.to_string());
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} lines have no HH:MM:SS.mmm time, e.g. {:?}",
        bad.len(),
        out.lines().count(),
        &bad[..bad.len().min(3)]
    );
}

/// A run's end closes its audit log with the run-end checkpoint: its network records must
/// be on the record by then, not trickle in afterwards (each reopening the closed log).
#[test]
fn a_runs_network_records_are_on_its_record_before_it_ends() {
    let env = Env::new();
    let cli = Cli::new(&env);
    cli.ok(&["ps"]);
    // A few busy runs at once: the records queue up behind one another.
    let n = 1500;
    let script = lookups(n);
    let runs: Vec<_> = (0..3)
        .map(|i| {
            let name = format!("burst{i}");
            let cmd = cli.command(&["run", "-q", "--name", &name, "--", "python3", "-c", &script]);
            (
                name,
                std::thread::spawn(move || output_within(cmd, CHILD_TIMEOUT)),
            )
        })
        .collect();
    for (name, t) in runs {
        let out = t.join().unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let ended = |e: &Value| e["type"] == "run.state" && e["data"]["to"] == "stopped";
        let log = common::wait_until(Duration::from_secs(10), || {
            let log = cli.json(&["audit", &name, "--json"]);
            log["entries"].as_array()?.iter().any(ended).then_some(log)
        })
        .unwrap_or_else(|| panic!("{name}'s end is not on its record"));
        let e = log["entries"].as_array().unwrap();
        let end = e.iter().position(ended).unwrap();
        let net_before = e[..end]
            .iter()
            .filter(|e| e["type"] == "net.request")
            .count();
        let net_after = e[end..]
            .iter()
            .filter(|e| e["type"] == "net.request")
            .count();
        assert_eq!(
            (net_before, net_after),
            (2 * n, 0),
            "{name}: DNS records before and after the run's end ({} checkpoints)",
            log["checkpoints"]
        );
    }
}

#[test]
fn the_sse_endpoint_resumes_from_last_event_id_before_after_and_refuses_a_bad_id() {
    let env = Env::new();
    let cli = Cli::new(&env);
    cli.ok(&["run", "-q", "--name", "sse", "--", "true"]);
    let mine = cli.events(&["--after", "0", "--run", "sse", "-t", "run.", "-n", "6"]);
    let seqs: Vec<u64> = mine.iter().map(|e| e["seq"].as_u64().unwrap()).collect();

    // `after=` alone: the run.* events after it.
    let s = sse(&env, "/v1/events?type=run.&after=0", &[], 3);
    assert_eq!(s.status, 200);
    assert!(
        s.headers.contains("content-type: text/event-stream"),
        "{}",
        s.headers
    );
    assert_eq!(s.frames[0].data, mine[0], "{:?}", s.frames);
    for f in &s.frames {
        assert_eq!(f.id.as_deref(), Some(f.data["seq"].to_string().as_str()));
        assert_eq!(f.event, f.data["kind"].as_str().unwrap());
        assert!(f.event.starts_with("run."), "{f:?}");
    }

    // `Last-Event-ID` wins over `after=`.
    let last = seqs[2].to_string();
    let s = sse(
        &env,
        "/v1/events?type=run.&after=0",
        &[("Last-Event-ID", &last)],
        2,
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.frames[0].data, mine[3], "{:?}", s.frames);
    assert_eq!(s.frames[1].data, mine[4], "{:?}", s.frames);

    // A bad id: 400 with the error envelope, from the header even when `after=` is fine.
    for (path, headers) in [
        (
            "/v1/events?type=run.&after=0",
            vec![("Last-Event-ID", "abc")],
        ),
        ("/v1/events", vec![("Last-Event-ID", "12x")]),
        ("/v1/events?after=-1", vec![]),
    ] {
        let s = sse(&env, path, &headers, 0);
        let msg = envelope(s.status, &s.body, 400, "bad_request");
        assert!(msg.contains("not a number"), "{path}: {msg}");
    }
    // A header that is not even text is refused too, not skipped for `after=`.
    let s = sse(
        &env,
        "/v1/events?after=0",
        &[("Last-Event-ID", "12\u{e9}")],
        0,
    );
    let msg = envelope(s.status, &s.body, 400, "bad_request");
    assert!(msg.contains("not plain text"), "{msg}");
    let s = sse(&env, "/v1/events?run=nosuch", &[], 0);
    envelope(s.status, &s.body, 404, "not_found");
    assert!(env.health().is_some(), "the daemon is still up");
}
