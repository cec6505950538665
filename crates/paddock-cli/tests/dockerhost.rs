//! `dependencies: ["docker:host"]` (`paddock run --dep docker:host`): the host's Docker
//! engine through paddock's policy proxy, from native and docker runs, with the real docker
//! CLI (and curl on the socket from inside a container) against a real engine.
//!
//! Without an engine these tests say so and pass, unless PADDOCK_REQUIRE_DOCKER=1 (set by
//! scripts/test.sh), where a missing engine is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{Env, docker, docker_available};
use serde_json::Value;

static IMAGE: OnceLock<String> = OnceLock::new();

/// paddock's base image (built once; its tag), the image the inner containers run.
fn image(env: &Env) -> String {
    IMAGE
        .get_or_init(|| env.ok(&["image", "build", "-q"]).trim().to_string())
        .clone()
}

/// A home, the inner image and a workspace, or `None` (skipped) without an engine.
fn setup() -> Option<(Env, String, PathBuf)> {
    if !docker_available("docker") {
        return None;
    }
    let env = Env::new();
    let img = image(&env);
    let ws = workspace(&env);
    Some((env, img, ws))
}

fn workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("project");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/hello.txt"), "hello from the workspace\n").unwrap();
    ws
}

/// `paddock run --dep docker:host ARGS`: (status, stdout, stderr).
fn run(env: &Env, ws: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--dep", "docker:host"];
    all.extend_from_slice(args);
    paddock_run(env, ws, &all)
}

/// `paddock run ARGS` in `ws` on the default runtime: (status, stdout, stderr).
fn paddock_run(env: &Env, ws: &Path, args: &[&str]) -> (i32, String, String) {
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

fn json(env: &Env, args: &[&str]) -> Value {
    let out = env.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Containers on the host engine labelled as one run's.
fn containers_of(run_id: &str) -> Vec<String> {
    let out = docker()
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=paddock.dockerhost.run={run_id}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn run_id(env: &Env, name: &str) -> String {
    json(env, &["inspect", name, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_native_run_runs_containers_on_the_host_engine_and_they_go_with_it() {
    let Some((env, img, ws)) = setup() else {
        return;
    };
    let script = format!(
        r#"
echo "DOCKER_HOST=$DOCKER_HOST"
test -e /var/run/docker.sock && echo "engine socket visible" || true
docker run --rm {img} sh -c 'echo inner says hi; ip -o link 2>/dev/null | wc -l; cat /proc/net/dev | tail -n +3 | cut -d: -f1'
echo "run=$?"
docker run -d --name keeper {img} sleep 300 >/dev/null && echo "detached ok"
docker ps --format '{{{{.Names}}}}'
docker exec keeper sh -c 'echo exec says hi'
docker volume create scratch >/dev/null && docker volume ls --format '{{{{.Name}}}}'
"#
    );
    let (code, out, err) = run(&env, &ws, &["--name", "dh", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("DOCKER_HOST=unix:///run/paddock-docker/docker.sock"),
        "{out}"
    );
    assert!(!out.contains("engine socket visible"), "{out}");
    assert!(out.contains("inner says hi"), "{out}\n{err}");
    assert!(out.contains("run=0"), "{out}\n{err}");
    // The inner container has no network: only loopback.
    let ifaces: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("inner says hi"))
        .skip(2)
        .take_while(|l| !l.starts_with("run="))
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{out}");
    assert!(out.contains("detached ok"), "{out}\n{err}");
    assert!(out.contains("keeper"), "{out}");
    assert!(out.contains("exec says hi"), "{out}\n{err}");
    assert!(out.contains("scratch"), "{out}\n{err}");

    let id = run_id(&env, "dh");
    assert_eq!(containers_of(&id), vec!["keeper".to_string()]);
    // Every call is on the run's record.
    let log = json(&env, &["audit", "dh", "--type", "docker.call", "--json"]);
    let calls = log["entries"].as_array().unwrap();
    assert!(
        calls.iter().any(|e| e["data"]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/containers/create"))
            && e["data"]["decision"] == "allowed"),
        "{log}"
    );
    // `paddock rm` takes the run's containers and volumes with it.
    env.ok(&["rm", "dh"]);
    assert!(containers_of(&id).is_empty());
    let vols = docker()
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("label=paddock.dockerhost.run={id}"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&vols.stdout).trim().is_empty());
    assert!(!env.home.join("docker-host").join(&id).exists());
}

#[test]
fn every_refused_request_names_its_rule() {
    let Some((env, img, ws)) = setup() else {
        return;
    };
    std::os::unix::fs::symlink("/etc", ws.join("etc-link")).unwrap();
    let engine = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let ws_s = ws.display().to_string();
    // (what, command, the rule named)
    let cases: Vec<(&str, String, &str)> = vec![
        ("privileged", format!("docker run --rm --privileged {img} true"), "privileged"),
        ("cap-add", format!("docker run --rm --cap-add SYS_ADMIN {img} true"), "capabilities"),
        ("host network", format!("docker run --rm --network host {img} true"), "host network"),
        ("host pid", format!("docker run --rm --pid host {img} true"), "host pid namespace"),
        ("host ipc", format!("docker run --rm --ipc host {img} true"), "host ipc namespace"),
        ("host uts", format!("docker run --rm --uts host {img} true"), "host uts namespace"),
        ("host userns", format!("docker run --rm --userns host {img} true"), "host user namespace"),
        ("device", format!("docker run --rm --device /dev/null {img} true"), "devices"),
        ("bind /etc", format!("docker run --rm -v /etc:/x {img} true"), "bind mounts"),
        ("engine socket", format!("docker run --rm -v {engine}:/var/run/docker.sock {img} true"), "bind mounts"),
        ("mount /", format!("docker run --rm --mount type=bind,src=/,dst=/h {img} true"), "bind mounts"),
        ("seccomp", format!("docker run --rm --security-opt seccomp=unconfined {img} true"), "security-opt"),
        ("apparmor", format!("docker run --rm --security-opt apparmor=unconfined {img} true"), "security-opt"),
        ("ports", format!("docker run --rm -p 8080:80 {img} true"), "published ports"),
        ("labels", format!("docker run --rm --label paddock.run=x {img} true"), "labels"),
        ("cow bind", format!("docker run --rm --user 1000 -v {ws_s}/src:/src {img} true"), "workspace bind in a copy-on-write run"),
        ("volume driver", "docker volume create -o type=none -o o=bind -o device=/ evil".into(), "volume driver"),
        ("plugins", "docker plugin ls".into(), "plugins"),
        ("swarm", "docker swarm init".into(), "swarm"),
        ("network create", "docker network create n1".into(), "networks"),
        ("load", "echo x | docker load".into(), "image import"),
        ("own tags", format!("docker tag {img} paddock-base:planted"), "image tags"),
        ("retag another image", format!("docker tag {img} {img}"), "image tags"),
        ("remove an image", format!("docker rmi {img}"), "image removal"),
        ("buildkit", "curl -s --unix-socket /run/paddock-docker/docker.sock -X POST http://d/v1.41/session; false".into(), "BuildKit"),
    ];
    let mut script = String::new();
    for (what, cmd, _) in &cases {
        script.push_str(&format!(
            "echo '=== {what}'; ( {cmd} ) 2>&1; echo \"status=$?\"\n"
        ));
    }
    let (code, out, err) = run(&env, &ws, &["--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}\n{err}");
    for (what, _, rule) in &cases {
        let section = out
            .split(&format!("=== {what}\n"))
            .nth(1)
            .and_then(|s| s.split("\n=== ").next())
            .unwrap_or_else(|| panic!("no output for {what}: {out}"));
        assert!(
            section.contains(&format!("(rule: {rule})")),
            "{what}: expected rule `{rule}`:\n{section}"
        );
        assert!(
            !section.contains("status=0"),
            "{what} succeeded:\n{section}"
        );
    }
    // Nothing was made on the host's side.
    assert!(!Path::new("/etc/planted").exists());
    let tagged = docker()
        .args(["image", "inspect", "paddock-base:planted"])
        .output()
        .unwrap();
    assert!(!tagged.status.success());
}

#[test]
fn a_bind_run_may_bind_its_workspace_as_its_user_and_nothing_else() {
    let Some((env, img, ws)) = setup() else {
        return;
    };
    std::os::unix::fs::symlink("/etc", ws.join("etc-link")).unwrap();
    let ws_s = ws.display().to_string();
    let script = format!(
        r#"
docker run --rm --user 1000:1000 -v {ws_s}/src:/src {img} cat /src/hello.txt; echo "as-user=$?"
docker run --rm -v {ws_s}/src:/src {img} true 2>&1; echo "as-root=$?"
docker run --rm --user 1000 -v {ws_s}/etc-link:/x {img} true 2>&1; echo "link=$?"
docker run --rm --user 1000 -v {ws_s}/../:/x {img} true 2>&1; echo "parent=$?"
"#
    );
    let (code, out, err) = run(&env, &ws, &["--bind", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("hello from the workspace"), "{out}\n{err}");
    assert!(out.contains("as-user=0"), "{out}");
    assert!(out.contains("(rule: root with a workspace bind)"), "{out}");
    assert!(!out.contains("as-root=0"), "{out}");
    assert!(
        out.contains("really /etc") && out.contains("(rule: bind mounts)"),
        "{out}"
    );
    assert!(!out.contains("link=0"), "{out}");
    assert!(!out.contains("parent=0"), "{out}");
}

#[test]
fn a_run_sees_and_touches_only_its_own_containers() {
    let Some((env, img, ws)) = setup() else {
        return;
    };
    // The host's own container, and another run's.
    let outsider = format!("outsider-{}", std::process::id());
    let made = docker()
        .args([
            "create",
            "--network",
            "none",
            "--name",
            &outsider,
            &img,
            "sleep",
            "300",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let (code, out, err) = run(
        &env,
        &ws,
        &[
            "--name",
            "first",
            "--",
            "sh",
            "-c",
            &format!("docker run -d --name first-box {img} sleep 300"),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let script = format!(
        r#"
docker ps -a --format '{{{{.Names}}}}'; echo "---"
for c in {outsider} first-box; do
  docker inspect "$c" >/dev/null 2>&1; echo "inspect $c=$?"
  docker stop -t 0 "$c" 2>&1; echo "stop $c=$?"
  docker rm -f "$c" 2>&1; echo "rm $c=$?"
  docker logs "$c" 2>&1; echo "logs $c=$?"
  docker exec "$c" true 2>&1; echo "exec $c=$?"
  docker run --rm --network container:"$c" {img} true 2>&1; echo "join $c=$?"
  docker run --rm --volumes-from "$c" {img} true 2>&1; echo "volumes-from $c=$?"
done
docker container prune -f >/dev/null 2>&1; echo pruned
"#
    );
    let (code, out, err) = run(&env, &ws, &["--name", "second", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}\n{err}");
    let listed = out.split("---").next().unwrap();
    assert!(!listed.contains(&outsider), "{out}");
    assert!(!listed.contains("first-box"), "{out}");
    for c in [outsider.as_str(), "first-box"] {
        // (`docker rm -f` exits 0 on "No such container"; the container stays, see below.)
        for op in ["inspect", "stop", "logs", "exec", "join", "volumes-from"] {
            assert!(
                out.contains(&format!("{op} {c}=1")) || out.contains(&format!("{op} {c}=125")),
                "{op} {c} must fail:\n{out}\n{err}"
            );
        }
        assert!(out.contains(&format!("No such container: {c}")), "{out}");
        assert!(
            out.contains(&format!(
                "`{c}`, which is not one of this run's containers (rule: other containers)"
            )),
            "{out}"
        );
    }
    // Both are still there, untouched.
    let alive = docker()
        .args(["inspect", "--format", "{{.Name}}", &outsider, "first-box"])
        .output()
        .unwrap();
    assert!(alive.status.success(), "{alive:?}");
    let first = run_id(&env, "first");
    env.ok(&["rm", "first"]);
    assert!(containers_of(&first).is_empty());
    let _ = docker().args(["rm", "-f", &outsider]).output();
}

#[test]
fn a_docker_run_reaches_the_host_engine_too() {
    let Some((env, img, ws)) = setup() else {
        return;
    };
    // No docker CLI in the base image: the Engine API with curl on the socket.
    let script = format!(
        r#"
S=/run/paddock-docker/docker.sock
api() {{ curl -s --unix-socket $S -H 'Content-Type: application/json' "$@"; }}
id=$(api -X POST -d '{{"Image":"{img}","Cmd":["sh","-c","exit 7"]}}' http://d/v1.41/containers/create | sed -n 's/.*"Id":"\([0-9a-f]*\)".*/\1/p')
echo "created=${{#id}}"
api -X POST http://d/v1.41/containers/$id/start -o /dev/null -w 'start=%{{http_code}}\n'
api -X POST http://d/v1.41/containers/$id/wait; echo
api -X DELETE http://d/v1.41/containers/$id -o /dev/null -w 'rm=%{{http_code}}\n'
api -X POST -d '{{"Image":"{img}","HostConfig":{{"Privileged":true}}}}' http://d/v1.41/containers/create -w '\npriv=%{{http_code}}\n'
api -X POST -d 'not json' http://d/v1.41/containers/create -w '\nbad=%{{http_code}}\n'
api -X POST -d '{{"Image":"{img}","hostconfig":{{"privileged":true}}}}' http://d/v1.41/containers/create -w '\ncase=%{{http_code}}\n'
api http://d/v1.41/containers/..%2f..%2finfo -w '\nodd=%{{http_code}}\n'
"#
    );
    let (code, out, err) = run(
        &env,
        &ws,
        &["--runtime", "docker", "--", "sh", "-c", &script],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("created=64"), "{out}\n{err}");
    assert!(out.contains("start=204"), "{out}");
    assert!(out.contains("\"StatusCode\":7"), "{out}");
    assert!(out.contains("rm=204"), "{out}");
    assert!(
        out.contains("(rule: privileged)") && out.contains("priv=403"),
        "{out}"
    );
    assert!(out.contains("bad=400"), "{out}");
    // The engine reads field names without regard to case: so does the policy.
    assert!(out.contains("case=403"), "{out}");
    assert!(out.contains("odd=403"), "{out}");
}

#[test]
fn the_socket_comes_back_after_a_daemon_restart() {
    let Some((env, img, ws)) = setup() else {
        return;
    };
    let (code, out, err) = run(
        &env,
        &ws,
        &["-d", "-q", "--name", "kept", "--", "sleep", "300"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let before = env.daemon_pid().expect("a daemon runs");
    env.stop_daemon();
    // The next command starts a new daemon, which re-adopts the run and serves its socket
    // again at the same path inside it.
    let out = env.ok(&[
        "exec",
        "kept",
        "--",
        "docker",
        "run",
        "--rm",
        &img,
        "echo",
        "after the restart",
    ]);
    assert!(out.contains("after the restart"), "{out}");
    assert_ne!(env.daemon_pid(), Some(before), "a new daemon served it");
    env.ok(&["rm", "-f", "kept"]);
}

// ---- docker:dind: the run's own engine, in a sidecar, behind the same policy ----

/// A home, the workspace with a small image rootfs in it (`mini.tar`: host binaries and
/// their libraries, for `docker import`, since no registry is reachable), or `None`
/// (skipped) without an engine or as non-root (docker:dind needs a root daemon).
fn dind_setup() -> Option<(Env, PathBuf)> {
    if !docker_available("docker") {
        return None;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        eprintln!("SKIPPED: docker:dind needs a root daemon");
        return None;
    }
    let env = Env::new();
    let ws = workspace(&env);
    mini_rootfs(&ws.join("mini.tar"));
    std::fs::create_dir_all(ws.join("ctx")).unwrap();
    std::fs::write(
        ws.join("ctx/Dockerfile"),
        "FROM mini:1\nRUN echo built inside > /built\nCMD [\"/bin/cat\", \"/built\"]\n",
    )
    .unwrap();
    Some((env, ws))
}

/// A tar of sh, cat, sleep and curl from the host with every library `ldd` names.
fn mini_rootfs(tar: &Path) {
    let root = tar.with_extension("d");
    let mut files: Vec<PathBuf> = Vec::new();
    for bin in ["/bin/sh", "/bin/cat", "/bin/sleep", "/usr/bin/curl"] {
        let real = std::fs::canonicalize(bin).unwrap();
        files.push(PathBuf::from(bin));
        let ldd = std::process::Command::new("ldd")
            .arg(&real)
            .output()
            .unwrap();
        for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if word.starts_with('/') {
                files.push(PathBuf::from(word));
            }
        }
    }
    for f in files {
        let dst = root.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
    }
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&root).unwrap();
}

/// Containers on the host engine with `label`, by name.
fn host_containers(label: &str) -> Vec<String> {
    let out = docker()
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label={label}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn all_host_containers() -> String {
    let out = docker()
        .args([
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.Names}} {{.Image}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_private_engine_builds_and_runs_images_the_host_engine_never_sees() {
    let Some((env, ws)) = dind_setup() else {
        return;
    };
    let (code, out, err) = paddock_run(
        &env,
        &ws,
        &[
            "-d",
            "-q",
            "--bind",
            "--dep",
            "docker:dind",
            "--name",
            "priv",
            "--",
            "sleep",
            "600",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let id = run_id(&env, "priv");
    let script = r#"
echo "DOCKER_HOST=$DOCKER_HOST"
docker import - mini:1 < mini.tar >/dev/null && echo imported
docker build -q -t inner:1 ctx >/dev/null && echo built
docker run --rm inner:1
docker run -d --name stay mini:1 sleep 600 >/dev/null && echo detached
docker run --rm --user 1000:1000 -v "$PWD/src:/w" mini:1 cat /w/hello.txt
docker run --rm --privileged mini:1 true; echo "privileged=$?"
docker run --rm --cap-add SYS_ADMIN mini:1 true; echo "cap=$?"
docker run --rm -v /etc:/x mini:1 true; echo "outside=$?"
docker run --rm --pid host mini:1 true; echo "pid=$?"
docker ps --format '{{.Names}}'
"#;
    let out = env.ok(&["exec", "priv", "--", "sh", "-c", script]);
    assert!(
        out.contains("DOCKER_HOST=unix:///run/paddock-docker/docker.sock"),
        "{out}"
    );
    for want in [
        "imported",
        "built",
        "built inside",
        "detached",
        "hello from the workspace",
        "privileged=125",
        "cap=125",
        "outside=125",
        "pid=125",
        "stay",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    // The host engine has the sidecar, and none of what ran inside it.
    let sidecars = host_containers(&format!("paddock.dind.run={id}"));
    assert_eq!(sidecars, vec![format!("paddock-dind-{id}")]);
    let host = all_host_containers();
    assert!(
        !host.contains("stay") && !host.contains("inner:1"),
        "{host}"
    );
    let images = docker().args(["images", "-q", "inner:1"]).output().unwrap();
    assert!(images.stdout.trim_ascii().is_empty(), "{images:?}");
    let storage = env.home.join("runs").join(&id).join("dind");
    assert!(storage.join("data").is_dir());

    // The sidecar ends with its run; its storage goes with `paddock rm`.
    env.ok(&["stop", "priv"]);
    let gone = common::wait_until(std::time::Duration::from_secs(30), || {
        host_containers(&format!("paddock.dind.run={id}"))
            .is_empty()
            .then_some(())
    });
    assert!(gone.is_some(), "the sidecar outlived its run");
    env.ok(&["rm", "priv"]);
    assert!(!storage.exists(), "{} is still there", storage.display());
}

/// A plain HTTP upstream on the host as `allowed.test` (the daemon's `upstream.resolve`),
/// and a strict paddock.yaml in `ws` that allows it alone, with `service`.
fn allowed_upstream(env: &Env, ws: &Path, service: &str) -> std::process::Child {
    let www = env.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello through the policy\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("the upstream did not start");
    std::fs::create_dir_all(env.config.join("paddock")).unwrap();
    std::fs::write(
        env.config.join("paddock/config.yaml"),
        format!("upstream:\n  resolve:\n    allowed.test: \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    std::fs::write(
        ws.join("paddock.yaml"),
        format!("dependencies: [\"{service}\"]\nnetwork:\n  policy: strict\n  rules:\n    - {{host: allowed.test}}\n"),
    )
    .unwrap();
    server
}

#[test]
fn host_engine_containers_and_builds_have_the_runs_network_and_policy() {
    let Some((env, img, ws)) = setup() else {
        return;
    };
    let mut server = allowed_upstream(&env, &ws, "docker:host");
    // (Images stay on the engine after the run: a tag of its own per test process.)
    let tag = format!("fetched-{}:1", std::process::id());
    let script = format!(
        r#"
docker run --rm {img} curl -sS -m 10 http://allowed.test/hello.txt; echo "allowed=$?"
docker run --rm {img} curl -sS -m 10 http://denied.test/; echo "denied=$?"
docker run --rm {img} curl -sS -m 10 -o /dev/null -w '%{{http_code}}\n' http://192.0.2.1/; echo "ip=$?"
docker run --rm --network none {img} curl -sS -m 5 http://allowed.test/; echo "none=$?"
docker run --rm --network host {img} true 2>&1; echo "host=$?"
printf 'FROM {img}\nRUN curl -sS -m 10 -o /fetched http://allowed.test/hello.txt\nCMD ["cat", "/fetched"]\n' > Dockerfile.net
docker build -q -t {tag} -f Dockerfile.net . >/dev/null; echo "build=$?"
docker run --rm {tag}
docker rmi {tag} >/dev/null
"#
    );
    let (code, stdout, stderr) =
        paddock_run(&env, &ws, &["--name", "hostnet", "--", "sh", "-c", &script]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("allowed=0"), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches("hello through the policy").count(),
        2,
        "a container and a build fetch it:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("denied=6"), "{stdout}");
    assert!(stdout.contains("403"), "{stdout}");
    assert!(stdout.contains("none=6"), "{stdout}");
    assert!(stdout.contains("(rule: host network)"), "{stdout}");
    assert!(stdout.contains("build=0"), "{stdout}");
    let trace = env.ok(&["trace", "hostnet"]);
    assert!(trace.contains("http://allowed.test/hello.txt"), "{trace}");
    assert!(trace.contains("192.0.2.1"), "{trace}");
    // The holder of that network is not the run's to see, and goes with the run.
    let id = run_id(&env, "hostnet");
    env.ok(&["rm", "-f", "hostnet"]);
    assert!(host_containers(&format!("paddock.dockerhost.netns={id}")).is_empty());
}

#[test]
fn a_private_engine_pulls_and_connects_only_as_the_runs_policy_allows() {
    let Some((env, ws)) = dind_setup() else {
        return;
    };
    let mut server = allowed_upstream(&env, &ws, "docker:dind");
    let script = r#"
docker import - mini:1 < mini.tar >/dev/null
docker run --rm mini:1 curl -sS -m 10 http://allowed.test/hello.txt; echo "allowed=$?"
docker run --rm mini:1 curl -sS -m 10 http://denied.test/; echo "denied=$?"
docker run --rm mini:1 curl -sS -m 10 -o /dev/null -w '%{http_code}\n' http://192.0.2.1/; echo "ip=$?"
docker run --rm --network none mini:1 curl -sS -m 5 http://allowed.test/; echo "none=$?"
docker pull denied.test/app:1; echo "pull-denied=$?"
docker pull allowed.test/app:1; echo "pull-allowed=$?"
"#;
    let (code, stdout, stderr) =
        paddock_run(&env, &ws, &["--name", "netd", "--", "sh", "-c", script]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // Inner containers have the run's network, and its policy.
    assert!(
        stdout.contains("hello through the policy"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("allowed=0"), "{stdout}");
    assert!(stdout.contains("denied=6"), "{stdout}");
    assert!(stdout.contains("403"), "{stdout}");
    assert!(stdout.contains("none=6"), "{stdout}");
    // A pull from a registry the policy denies is refused before the engine sees it; one
    // it allows goes out through the run's proxy (here to a server that is no registry).
    assert!(stderr.contains("(rule: registry)"), "{stderr}");
    assert!(stdout.contains("pull-denied=1"), "{stdout}");
    assert!(stdout.contains("pull-allowed=1"), "{stdout}");
    // All of it is the run's traffic, in its record.
    let trace = env.ok(&["trace", "netd", "--json"]);
    let lines: Vec<Value> = trace
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let seen = |pred: &dyn Fn(&Value) -> bool| lines.iter().any(pred);
    assert!(
        seen(&|v| v.to_string().contains("/hello.txt") && v.to_string().contains("allowed.test")),
        "{trace}"
    );
    assert!(
        seen(&|v| v.to_string().contains("/v2/")),
        "the pull is not in the trace:\n{trace}"
    );
    assert!(seen(&|v| v.to_string().contains("192.0.2.1")), "{trace}");
}

#[test]
fn a_private_engine_comes_back_after_a_daemon_restart() {
    let Some((env, ws)) = dind_setup() else {
        return;
    };
    let (code, out, err) = paddock_run(
        &env,
        &ws,
        &[
            "-d",
            "-q",
            "--dep",
            "docker:dind",
            "--name",
            "kept",
            "--",
            "sleep",
            "600",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let out = env.ok(&[
        "exec",
        "kept",
        "--",
        "sh",
        "-c",
        "docker import - mini:1 < mini.tar >/dev/null && echo imported",
    ]);
    assert!(out.contains("imported"), "{out}");
    env.stop_daemon();
    // The new daemon finds the sidecar (and its images) again.
    let out = env.ok(&[
        "exec",
        "kept",
        "--",
        "docker",
        "run",
        "--rm",
        "mini:1",
        "sh",
        "-c",
        "echo after the restart",
    ]);
    assert!(out.contains("after the restart"), "{out}");
    let id = run_id(&env, "kept");
    env.ok(&["rm", "-f", "kept"]);
    assert!(host_containers(&format!("paddock.dind.run={id}")).is_empty());
}

#[test]
fn a_docker_run_reaches_its_private_engine_too() {
    let Some((env, ws)) = dind_setup() else {
        return;
    };
    // No docker CLI in the base image: the Engine API with curl on the socket.
    let script = r#"
S=/run/paddock-docker/docker.sock
api() { curl -s --unix-socket $S -H 'Content-Type: application/json' "$@"; }
api http://d/v1.41/info | grep -o '"Name":"[a-z]*"' | head -1
api -X POST --data-binary @mini.tar -H 'Content-Type: application/x-tar' 'http://d/v1.41/images/create?fromSrc=-&repo=mini&tag=1' -o /dev/null -w 'import=%{http_code}\n'
api -X POST -d '{"Image":"mini:1","Cmd":["sh","-c","exit 7"]}' http://d/v1.41/containers/create -o /dev/null -w 'create=%{http_code}\n'
api -X POST -d '{"Image":"mini:1","HostConfig":{"Privileged":true}}' http://d/v1.41/containers/create -w '\npriv=%{http_code}\n'
"#;
    let (code, stdout, err) = paddock_run(
        &env,
        &ws,
        &[
            "--runtime",
            "docker",
            "--dep",
            "docker:dind",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{err}");
    // The engine that answers is the sidecar's (its hostname), not the host's.
    assert!(stdout.contains("\"Name\":\"dind\""), "{stdout}");
    assert!(stdout.contains("import=200"), "{stdout}");
    assert!(stdout.contains("create=201"), "{stdout}");
    assert!(
        stdout.contains("(rule: privileged)") && stdout.contains("priv=403"),
        "{stdout}"
    );
}
