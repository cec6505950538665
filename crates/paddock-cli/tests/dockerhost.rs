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
    let out = env
        .cmd()
        .current_dir(ws)
        .env_remove("PADDOCK_RUNTIME")
        .args(["run", "--dep", "docker:host"])
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
