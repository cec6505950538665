//! paddock-bench: side-by-side measurements, printed as figures and ratios against a named
//! peer on the same machine (these machines are shared and noisy: ratios travel, absolute
//! numbers don't).
//!
//! `paddock-bench api PADDOCK`      API round trips (health, create, list) and daemon RSS
//! `paddock-bench sandbox PADDOCK`  `paddock run -- true` end to end vs bwrap (and docker)
//!
//! Run through `bench/run.sh`, which builds release binaries first.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: paddock-bench (api|sandbox) PATH_TO_PADDOCK [ITERATIONS]";
    let (Some(what), Some(exe)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let iterations: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let exe = PathBuf::from(exe);
    let code = match what.as_str() {
        "api" => api(&exe, if iterations == 0 { 2000 } else { iterations }),
        "sandbox" => sandbox(&exe, if iterations == 0 { 100 } else { iterations }),
        _ => {
            eprintln!("{usage}");
            2
        }
    };
    std::process::exit(code);
}

/// A daemon in a private home, stopped on drop.
struct Daemon {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Daemon {
    fn start(exe: &Path) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("paddock-bench-")
            .tempdir()
            .expect("tempdir");
        let child = Command::new(exe)
            .args(["daemon", "--idle-timeout", "0"])
            .env("PADDOCK_HOME", dir.path().join("home"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start paddock daemon");
        let d = Daemon { dir, child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while request(&d.socket(), "GET", "/v1/health", None).is_err() {
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("home/daemon.sock")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok((_, body)) = request(&self.socket(), "GET", "/v1/runs?all=1", None)
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        {
            for r in v["runs"].as_array().cloned().unwrap_or_default() {
                let id = r["id"].as_str().unwrap_or_default().to_string();
                let _ = request(
                    &self.socket(),
                    "DELETE",
                    &format!("/v1/runs/{id}?force=1"),
                    None,
                );
            }
        }
        let _ = request(&self.socket(), "POST", "/v1/shutdown", Some(b"{}"));
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a new connection (what the CLI does).
fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket)?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: paddock\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let status = String::from_utf8_lossy(&resp[..resp.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(resp.len());
    Ok((status, resp[split..].to_vec()))
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats {
        p50: pick(0.50),
        p99: pick(0.99),
        mean,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn time_n(n: usize, mut f: impl FnMut() -> bool) -> Option<Stats> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if !f() {
            return None;
        }
        samples.push(t.elapsed());
    }
    Some(stats(samples))
}

fn api(exe: &Path, n: usize) -> i32 {
    let d = Daemon::start(exe);
    let sock = d.socket();
    let ws = d.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = d.rss_kib();

    let health = time_n(n, || {
        request(&sock, "GET", "/v1/health", None).is_ok_and(|(s, _)| s == 200)
    })
    .unwrap();
    let create_body = format!(
        r#"{{"workspace":"{}","command":["true"],"start":false}}"#,
        ws.display()
    );
    // What one new inode costs where the daemon keeps its runs: a create is a handful of
    // file system operations, and on ext4 without a journal an allocation scans every
    // inode freed there in the last minutes (so a disk that just removed many files, or a
    // /tmp shared with test suites, makes every create slower).
    let mut k = 0;
    let mkdir = time_n(50, || {
        k += 1;
        std::fs::create_dir(d.dir.path().join(format!("home/runs/mkdir-probe-{k}"))).is_ok()
    })
    .expect("mkdir failed");
    // (Left in place: removing them now would slow the creates that follow.)
    // Exactly 100 registered runs: the creates themselves, then list over them.
    let create = time_n(100, || {
        request(&sock, "POST", "/v1/runs", Some(create_body.as_bytes()))
            .is_ok_and(|(s, _)| s == 201)
    })
    .expect("create failed");
    let list = time_n(n.min(500), || {
        request(&sock, "GET", "/v1/runs", None).is_ok_and(|(s, _)| s == 200)
    })
    .unwrap();
    // Baseline: the bare cost of a Unix-socket connect + close against the same daemon,
    // to show what the API itself adds on top of the transport.
    let raw = time_n(n, || {
        UnixStream::connect(&sock)
            .and_then(|mut s| {
                s.shutdown(std::net::Shutdown::Write)?;
                let mut b = Vec::new();
                s.read_to_end(&mut b)
            })
            .is_ok()
    })
    .unwrap();

    // RSS with exactly 100 registered runs (the creates above).
    std::thread::sleep(Duration::from_millis(200));
    let rss_100 = d.rss_kib();

    println!(
        "paddock API over the Unix socket ({n} requests each, new connection per request, release build)"
    );
    println!(
        "{:<26}{:>12}{:>12}{:>12}{:>16}",
        "request", "p50", "p99", "mean", "p50 vs bare"
    );
    let row = |name: &str, s: &Stats| {
        println!(
            "{:<26}{:>12}{:>12}{:>12}{:>15.1}x",
            name,
            ms(s.p50),
            ms(s.p99),
            ms(s.mean),
            s.p50.as_secs_f64() / raw.p50.as_secs_f64()
        )
    };
    row("bare connect + close", &raw);
    row("GET /v1/health", &health);
    row("POST /v1/runs (create)", &create);
    row("GET /v1/runs (list of 100)", &list);
    row("mkdir in runs/ (the disk)", &mkdir);
    println!();
    println!(
        "daemon RSS idle:           {:>8} KiB  (target < 20 MB)",
        idle_rss
    );
    println!("daemon RSS with 100 runs:  {:>8} KiB", rss_100);
    let ms1 = Duration::from_millis(1);
    let pass = health.p50 < ms1 && create.p50 < ms1 && list.p50 < ms1 && idle_rss < 20 * 1024;
    println!(
        "targets: p50 < 1 ms: health {}, create {}, list {}; idle RSS < 20 MB: {}",
        yes(health.p50 < ms1),
        yes(create.p50 < ms1),
        yes(list.p50 < ms1),
        yes(idle_rss < 20 * 1024)
    );
    i32::from(!pass)
}

fn yes(b: bool) -> &'static str {
    if b { "met" } else { "NOT met" }
}

fn sandbox(exe: &Path, n: usize) -> i32 {
    let d = Daemon::start(exe);
    let ws = d.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let paddock_run = |cmd: &str| {
        Command::new(exe)
            .args(["run", "-q", "-w"])
            .arg(&ws)
            .args(["--", cmd])
            .env("PADDOCK_HOME", d.home())
            .env("XDG_CONFIG_HOME", d.dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // Warm up (page cache, first overlay mount, cgroup dirs).
    for _ in 0..3 {
        assert!(
            paddock_run("true"),
            "paddock run -- true failed; try it by hand"
        );
    }
    // paddock and bwrap alternate, run by run, so both see the same load on a shared
    // machine (the ratio is the figure to read).
    let bwrap_run = which("bwrap").map(|b| {
        move || {
            Command::new(&b)
                .args(["--unshare-all", "--ro-bind", "/", "/", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        }
    });
    let bwrap_ok = bwrap_run.as_ref().is_some_and(|r| r());
    let (mut ours_s, mut bwrap_s) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        assert!(paddock_run("true"), "paddock run -- true failed");
        ours_s.push(t.elapsed());
        if let (true, Some(run)) = (bwrap_ok, &bwrap_run) {
            let t = Instant::now();
            if run() {
                bwrap_s.push(t.elapsed());
            }
        }
    }
    let ours = stats(ours_s);
    let bwrap = (!bwrap_s.is_empty()).then(|| stats(bwrap_s));

    // Create-to-exec inside the daemon: POST /v1/runs with start=true answers once the
    // command has been exec'd; a bare health round trip is subtracted.
    let sock = d.socket();
    let body = format!(
        r#"{{"workspace":"{}","command":["true"],"start":true}}"#,
        ws.display()
    );
    let health = time_n(50, || request(&sock, "GET", "/v1/health", None).is_ok()).unwrap();
    let create_exec = time_n(n.min(50), || {
        request(&sock, "POST", "/v1/runs", Some(body.as_bytes())).is_ok_and(|(s, _)| s == 201)
    });

    // Daemon memory per running sandbox.
    let before = d.rss_kib();
    let sleepers = 20;
    let sleep_body = format!(
        r#"{{"workspace":"{}","command":["sleep","60"],"start":true}}"#,
        ws.display()
    );
    let mut started = 0;
    for _ in 0..sleepers {
        if request(&sock, "POST", "/v1/runs", Some(sleep_body.as_bytes()))
            .is_ok_and(|(s, _)| s == 201)
        {
            started += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = d.rss_kib();

    let docker = docker_image().and_then(|img| {
        let run = || {
            Command::new("docker")
                .args(["run", "--rm", "--network", "none", &img, "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        run().then(|| time_n(n.min(20), run)).flatten()
    });

    println!("sandbox start, end to end ({n} runs each; release build)");
    println!("{:<52}{:>12}{:>12}{:>12}", "command", "p50", "p99", "mean");
    let row = |name: &str, s: &Stats| {
        println!(
            "{:<52}{:>12}{:>12}{:>12}",
            name,
            ms(s.p50),
            ms(s.p99),
            ms(s.mean)
        )
    };
    row("paddock run -- true", &ours);
    if let Some(b) = &bwrap {
        row("bwrap --unshare-all --ro-bind / / true", b);
    } else {
        println!("bwrap: not installed (apt-get install bubblewrap)");
    }
    if let Some(dk) = &docker {
        row("docker run --rm --network none IMAGE true", dk);
    } else {
        println!("docker run: no Docker engine here; not measured");
    }
    if let Some(c) = &create_exec {
        let inner = c.p50.saturating_sub(health.p50);
        println!(
            "{:<52}{:>12}",
            "create-to-exec in the daemon (POST /v1/runs)",
            ms(inner)
        );
    }
    let per_sandbox = after.saturating_sub(before) as f64 / f64::from(started.max(1));
    println!();
    println!(
        "daemon memory per running sandbox: {per_sandbox:.0} KiB ({started} sandboxes: {before} → {after} KiB RSS)"
    );
    let mut ok = per_sandbox <= 2048.0;
    if let Some(b) = &bwrap {
        let r = ours.p50.as_secs_f64() / b.p50.as_secs_f64();
        println!(
            "ratio paddock/bwrap p50: {r:.2}x (target ≤ 2.5x): {}",
            yes(r <= 2.5)
        );
        ok &= r <= 2.5;
    }
    if let Some(dk) = &docker {
        let r = dk.p50.as_secs_f64() / ours.p50.as_secs_f64();
        println!(
            "docker/paddock p50: {r:.1}x faster (target ≥ 10x): {}",
            yes(r >= 10.0)
        );
        ok &= r >= 10.0;
    }
    println!("memory per sandbox ≤ 2 MB: {}", yes(per_sandbox <= 2048.0));
    i32::from(!ok)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// A local image for `docker run … true`, when an engine answers (`PADDOCK_BENCH_DOCKER_IMAGE`
/// names one; otherwise none is pulled: no registry is reachable).
fn docker_image() -> Option<String> {
    which("docker")?;
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    std::env::var("PADDOCK_BENCH_DOCKER_IMAGE").ok()
}
