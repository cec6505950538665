//! The container runtimes (docker, gvisor) through the real CLI and a real Docker engine
//! (scripts/test.sh starts one; see scripts/dockerd.sh). The shared egress, grant, routing,
//! review and escape suites run on these runtimes too (test.sh runs them again with
//! PADDOCK_RUNTIME); this file holds what is specific to containers: hardening as seen from
//! inside, the leak test, re-adoption, images and dependencies, and bad input.
//!
//! Without an engine these tests say so and pass, unless PADDOCK_REQUIRE_DOCKER=1 (set by
//! test.sh), where a missing engine is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use common::{Env, docker, docker_available as available, wait_until};

static BASE: Once = Once::new();

/// paddock's base image, built once per test binary (a no-op when the engine has it).
fn base_image(env: &Env) {
    BASE.call_once(|| {
        env.ok(&["image", "build", "-q"]);
    });
}

fn workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("readme.txt"), "original\n").unwrap();
    ws
}

fn run(env: &Env, ws: &Path, args: &[&str]) -> (i32, String, String) {
    let out = env
        .cmd()
        .current_dir(ws)
        .env_remove("PADDOCK_RUNTIME")
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn labelled(home: &Path) -> Vec<String> {
    let out = docker()
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=paddock.home={}", home.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

const PROBE: &str = r#"
echo "uid=$(id -u) gid=$(id -g)"
grep -E '^(CapEff|CapPrm|CapBnd|Seccomp):' /proc/self/status
python3 -c 'import ctypes; print("nnp=%d" % ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))'
python3 -c 'import socket; print("ifaces=" + " ".join(n for _, n in socket.if_nameindex()) + " ")'
touch /usr/probe 2>/dev/null && echo "rootfs=writable" || echo "rootfs=readonly"
[ -e /var/run/docker.sock ] || [ -e /run/docker.sock ] && echo "socket=present" || echo "socket=absent"
echo "home=$HOME hostname=$(hostname)"
cat readme.txt
echo changed > readme.txt
echo new > added.txt
exit 3
"#;

fn hardened_box_on(runtime: &str) {
    if !available(runtime) {
        return;
    }
    let env = Env::new();
    base_image(&env);
    let ws = workspace(&env);
    let (code, out, err) = run(
        &env,
        &ws,
        &[
            "-q",
            "--name",
            "probe",
            "--runtime",
            runtime,
            "--",
            "sh",
            "-c",
            PROBE,
        ],
    );
    assert_eq!(code, 3, "the command's status comes back: {out}\n{err}");
    assert!(
        out.contains("uid=1000 gid=1000"),
        "never root inside: {out}"
    );
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        let line = out.lines().find(|l| l.starts_with(cap)).unwrap_or_default();
        assert!(
            line.ends_with("0000000000000000"),
            "{cap} must be empty: {line}"
        );
    }
    assert!(
        out.contains("Seccomp:\t2"),
        "seccomp filter installed: {out}"
    );
    assert!(out.contains("nnp=1"), "no_new_privs: {out}");
    assert!(out.contains("ifaces=lo "), "only loopback: {out}");
    assert!(out.contains("rootfs=readonly"), "{out}");
    assert!(out.contains("socket=absent"), "{out}");
    assert!(out.contains("home=/home/paddock hostname=probe"), "{out}");
    assert!(out.contains("original"), "the workspace is there: {out}");
    // Copy-on-write: the host is untouched, the run's layer has the change.
    assert_eq!(
        std::fs::read_to_string(ws.join("readme.txt")).unwrap(),
        "original\n"
    );
    assert!(!ws.join("added.txt").exists());
    let diff = env.ok(&["diff", "probe"]);
    assert!(
        diff.contains("readme.txt") && diff.contains("added.txt"),
        "{diff}"
    );
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("RUNTIME") && ps.contains(runtime), "{ps}");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "probe", "--json"])).unwrap();
    assert_eq!(inspect["runtime"], runtime, "{inspect}");
    env.ok(&["apply", "probe"]);
    assert_eq!(
        std::fs::read_to_string(ws.join("readme.txt")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("added.txt")).unwrap(),
        "new\n"
    );
    env.ok(&["rm", "probe"]);
    assert!(labelled(&env.home).is_empty(), "rm removes the container");
    assert!(
        mounts_under(&env.home).is_empty(),
        "{:?}",
        mounts_under(&env.home)
    );
}

#[test]
fn docker_runs_are_confined_copy_on_write_and_unprivileged() {
    hardened_box_on("docker");
}

#[test]
fn gvisor_runs_are_confined_copy_on_write_and_unprivileged() {
    hardened_box_on("gvisor");
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fifty_create_run_remove_cycles_leave_nothing_behind() {
    if !available("docker") {
        return;
    }
    let env = Env::new();
    base_image(&env);
    let ws = workspace(&env);
    // Warm up (the daemon, its pools and caches), then measure.
    let (code, _, err) = run(&env, &ws, &["-q", "--runtime", "docker", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let first = env.ok(&["ps", "-a", "-q"]);
    env.ok(&["rm", "-f", first.trim()]);
    let pid = env.daemon_pid().unwrap();
    let mut fds_before = fd_count(pid);
    for i in 0..50 {
        // Measured from cycle 10 on: pools and workers the daemon starts on first use are
        // up by then; from there the count must not grow with the number of runs.
        if i == 10 {
            fds_before = fd_count(pid);
        }
        let name = format!("cycle-{i}");
        let (code, _, err) = run(
            &env,
            &ws,
            &[
                "-q",
                "--name",
                &name,
                "--runtime",
                "docker",
                "--",
                "sh",
                "-c",
                "echo x > f",
            ],
        );
        assert_eq!(code, 0, "cycle {i}: {err}");
        env.ok(&["rm", "-f", &name]);
    }
    assert!(
        labelled(&env.home).is_empty(),
        "containers left: {:?}",
        labelled(&env.home)
    );
    let vols = docker()
        .args(["volume", "ls", "-q", "--filter", "name=paddock-run_"])
        .output()
        .unwrap();
    let runs_dir = env.home.join("runs");
    let ours: Vec<String> = String::from_utf8_lossy(&vols.stdout)
        .split_whitespace()
        .filter(|v| {
            v.strip_prefix("paddock-")
                .is_some_and(|id| runs_dir.join(id).exists())
        })
        .map(str::to_string)
        .collect();
    assert!(ours.is_empty(), "volumes left: {ours:?}");
    assert!(
        mounts_under(&env.home).is_empty(),
        "{:?}",
        mounts_under(&env.home)
    );
    let left: Vec<_> = std::fs::read_dir(&runs_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().starts_with("run_")
            || !runs_dir.join(n).join("layer").exists()),
        "run layers left: {left:?}"
    );
    // Nothing per run stays open in the daemon: no handle on a container's network
    // namespace (only its own, which the netns thread keeps), no file of a run, and no
    // growth with the number of runs (one-time pools and workers may start meanwhile: a
    // leak of one descriptor per run would be 40 here).
    let own_ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let targets = fd_targets(pid);
    let foreign_ns: Vec<&String> = targets
        .iter()
        .filter(|t| t.starts_with("net:") && Path::new(t.as_str()) != own_ns)
        .collect();
    assert!(
        foreign_ns.is_empty(),
        "netns handles left open: {foreign_ns:?}"
    );
    let run_files: Vec<&String> = targets.iter().filter(|t| t.contains("/runs/")).collect();
    assert!(run_files.is_empty(), "run files left open: {run_files:?}");
    assert!(
        fd_count(pid) <= fds_before + 20,
        "the daemon's open files grew from {fds_before} to {} over 40 runs: {targets:?}",
        fd_count(pid)
    );
}

#[test]
fn a_container_run_outlives_a_daemon_restart_and_is_readopted() {
    if !available("docker") {
        return;
    }
    let env = Env::new();
    base_image(&env);
    let ws = workspace(&env);
    let (code, id, err) = run(
        &env,
        &ws,
        &[
            "-d",
            "-q",
            "--name",
            "long",
            "--runtime",
            "docker",
            "--",
            "sh",
            "-c",
            "echo before; sleep 3; echo after; exit 5",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    wait_until(Duration::from_secs(20), || {
        env.ok(&["logs", "long"]).contains("before").then_some(())
    })
    .expect("output before the restart");
    env.stop_daemon();
    assert_eq!(labelled(&env.home).len(), 1, "the container keeps running");
    // A new daemon (started by the next command) adopts it and sees its end.
    let state = wait_until(Duration::from_secs(30), || {
        let v: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", &id, "--json"])).ok()?;
        (v["state"] == "stopped").then_some(v)
    })
    .expect("the adopted run ends");
    assert_eq!(state["exit_code"], 5, "{state}");
    let logs = env.ok(&["logs", "long"]);
    assert!(
        logs.contains("before") && logs.contains("after"),
        "output while no daemon watched is kept: {logs}"
    );
}

#[test]
fn dependencies_become_an_image_built_once() {
    if !available("docker") {
        return;
    }
    let env = Env::new();
    base_image(&env);
    let ws = workspace(&env);
    std::fs::write(ws.join("paddock.yaml"), "dependencies: [\"apt:jq\"]\n").unwrap();
    let (code, out, err) = run(
        &env,
        &ws,
        &["-q", "--", "sh", "-c", "echo '{\"a\": 41}' | jq '.a + 1'"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), "42");
    // gVisor when the engine has it, docker otherwise: never native.
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("gvisor") || ps.contains("docker"), "{ps}");
    let images = env.ok(&["image", "ls", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&images).unwrap();
    let deps: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dependencies"] == "apt:jq")
        .collect();
    assert!(!deps.is_empty(), "{images}");
    // The same list reuses the image: no build line the second time.
    let (code, _, err) = run(&env, &ws, &["--", "jq", "--version"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("building"), "{err}");
    // A failing dependency names itself and shows its log.
    std::fs::write(
        ws.join("paddock.yaml"),
        "dependencies: [\"apt:paddock-no-such-package\"]\n",
    )
    .unwrap();
    let (code, _, err) = run(&env, &ws, &["-q", "--", "true"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("apt:paddock-no-such-package") && err.contains("Unable to locate package"),
        "{err}"
    );
    // The build is the run's start: the run failed, and says why.
    let ps: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "-a", "--json"])).unwrap();
    let failed: Vec<&serde_json::Value> = ps["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{ps}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("apt:paddock-no-such-package")),
        "{ps}"
    );
}

#[test]
fn native_runs_on_an_image_with_its_tools_under_the_same_rules() {
    if !available("docker") {
        return;
    }
    let env = Env::new();
    base_image(&env);
    let ws = workspace(&env);
    std::fs::write(
        ws.join("paddock.yaml"),
        "dependencies: [\"apt:jq\", uv]\nnetwork:\n  policy: strict\n",
    )
    .unwrap();
    let script = r#"
echo '{"a": 41}' | jq '.a + 1'
uv --version
command -v docker >/dev/null && echo "host-usr=visible" || echo "host-usr=hidden"
[ -e /var/lib/paddock-test-docker ] && echo "host-var=visible" || echo "host-var=hidden"
echo "uid=$(id -u)"
curl -s -o /dev/null -m 10 https://denied.example/ && echo "egress=open" || echo "egress=closed"
curl -s -o /dev/null -m 10 --noproxy '*' https://denied.example/ && echo "direct=open" || echo "direct=closed"
echo changed > readme.txt
exit 3
"#;
    let (code, out, err) = run(
        &env,
        &ws,
        &["-q", "--runtime", "native", "--", "sh", "-c", script],
    );
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.starts_with("42\n"), "the image's jq: {out}");
    // A catalog recipe: PyPI's uv at its pinned version, hash-checked.
    assert!(out.contains("uv 0.13.9"), "the image's uv: {out}");
    // The host has the docker CLI (these tests drive it): the image does not.
    assert!(out.contains("host-usr=hidden"), "{out}");
    assert!(out.contains("host-var=hidden"), "{out}");
    assert!(!out.contains("uid=0"), "{out}");
    assert!(
        out.contains("egress=closed"),
        "strict: no rule, no egress: {out}"
    );
    assert!(out.contains("direct=closed"), "{out}");
    let ps: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "-a", "--json"])).unwrap();
    assert_eq!(ps["runs"][0]["runtime"], "native", "{ps}");
    // Copy-on-write as on any native run.
    assert_eq!(
        std::fs::read_to_string(ws.join("readme.txt")).unwrap(),
        "original\n"
    );
    let id = env
        .ok(&["ps", "-a", "-q"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let diff = env.ok(&["diff", &id]);
    assert!(
        diff.contains("readme.txt") && diff.contains("+changed"),
        "{diff}"
    );
    // The image is unpacked once: a second run finds it.
    let (code, _, err) = run(
        &env,
        &ws,
        &["-q", "--runtime", "native", "--", "jq", "-n", "1"],
    );
    assert_eq!(code, 0, "{err}");
    let unpacked: Vec<_> = std::fs::read_dir(env.home.join("cache/images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(unpacked.len(), 1, "one image, one tree: {unpacked:?}");
}

#[test]
fn bad_runtime_image_and_dependency_input_is_refused_clearly() {
    let env = Env::new();
    let ws = workspace(&env);
    let (code, _, err) = run(&env, &ws, &["--runtime", "podman", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("podman") && err.contains("docker"), "{err}");
    let (code, _, err) = run(&env, &ws, &["--image", "bad image", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an image name"), "{err}");
    std::fs::write(
        ws.join("paddock.yaml"),
        "dependencies:\n  - node\n  - \"apt:jq; rm -rf /\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&env, &ws, &["--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("paddock.yaml:3:5"), "line and column: {err}");
    std::fs::remove_file(ws.join("paddock.yaml")).unwrap();
    if available("docker") {
        let (code, _, err) = run(
            &env,
            &ws,
            &[
                "--runtime",
                "native",
                "--image",
                "paddock-test-no-such:image",
                "--",
                "true",
            ],
        );
        assert_ne!(code, 0);
        assert!(
            err.contains("no image paddock-test-no-such:image"),
            "native on a missing image: {err}"
        );
        let (code, _, err) = run(
            &env,
            &ws,
            &[
                "--runtime",
                "docker",
                "--image",
                "paddock-test-no-such:image",
                "--",
                "true",
            ],
        );
        assert_ne!(code, 0);
        assert!(err.contains("no image paddock-test-no-such:image"), "{err}");
        assert!(labelled(&env.home).is_empty());
    }
}

#[test]
fn doctor_lists_every_runtime() {
    let env = Env::new();
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["doctor", "--json"])).unwrap_or_else(|_| {
            // doctor exits non-zero when a native check fails; its JSON is still on stdout.
            serde_json::from_slice(&env.run(&["doctor", "--json"]).stdout).unwrap()
        });
    let names: Vec<&str> = v["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["native", "docker", "gvisor"]);
    for r in v["runtimes"].as_array().unwrap() {
        if r["usable"] == false {
            assert!(
                r["fix"].is_string(),
                "an unusable runtime says how to enable it: {r}"
            );
        }
    }
    let usable = |n: &str| {
        v["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == n && r["usable"] == true)
    };
    assert_eq!(usable("docker"), available("docker"));
}
