//! Rootless mode: the runtime running as an unprivileged user (uid 65534) with
//! unprivileged user namespaces. As root, the test re-executes this test binary under
//! `setpriv --reuid=65534 --regid=65534 --clear-groups` with a scratch directory owned by
//! that user; as a normal user it runs the checks directly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use paddock_sandbox::*;

const INNER_ENV: &str = "PADDOCK_ROOTLESS_INNER";

async fn rootless_checks() {
    let uid = nix::unistd::geteuid().as_raw();
    assert_ne!(uid, 0);
    let rt = runtime();
    assert!(rt.is_rootless());

    // Exit code, identity 1:1, output, overlay layer.
    let env = Env::new();
    let o = run_spec(
        &rt,
        &sh(
            &env,
            "id -u; echo data > new.txt; cat /etc/shadow | wc -c; hostname; exit 3",
        ),
        true,
    )
    .await;
    assert_eq!(o.exit.exit_code, Some(3), "{:?} {}", o.exit, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], uid.to_string(), "{}", o.stdout);
    assert_eq!(lines[1].trim(), "0", "shadow must be masked: {}", o.stdout);
    assert_eq!(lines[2], "test-run");
    assert_eq!(read(&env.run_dir.join("layer/upper/new.txt")), "data\n");
    assert!(!env.workspace.join("new.txt").exists());
    rt.destroy(&o.handle).await.unwrap();
    assert!(!env.run_dir.join("layer").exists());

    // Command not found.
    let env = Env::new();
    let o = run_spec(&rt, &env.spec(&["nope-not-here"]), false).await;
    assert_eq!(o.exit.exit_code, Some(127));
    assert!(
        o.stderr
            .contains("paddock: command not found: nope-not-here")
    );

    // Limits on cgroup v1 cannot be delegated: a clear Unsupported in create.
    let env = Env::new();
    let mut spec = sh(&env, "true");
    spec.limits.memory_bytes = Some(64 << 20);
    match rt.create(&spec).await {
        Err(e @ SandboxError::Unsupported { .. }) => assert!(e.hint().unwrap().contains("root")),
        Ok(_) => eprintln!("note: limits accepted rootless (cgroup v2 delegation available)"),
        Err(e) => panic!("unexpected error: {e}"),
    }

    // Sockets in the netns come from init over SCM_RIGHTS; stop works; adopt works.
    let env = Env::new();
    let spec = env.spec(&[
        "/bin/bash",
        "-c",
        "for i in $(seq 1 100); do (echo rootless-hi > /dev/tcp/127.0.0.1/8080) 2>/dev/null && break; sleep 0.05; done; sleep 100",
    ]);
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let net = rt.as_netns().unwrap();
    let sock = net
        .socket_in_netns(&h, libc::AF_INET, libc::SOCK_STREAM)
        .unwrap();
    let _nsfd = net.netns_fd(&h).unwrap();
    let listener = std::net::TcpListener::from(sock);
    let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, 8080);
    use std::os::fd::AsRawFd;
    nix::sys::socket::bind(listener.as_raw_fd(), &addr).unwrap();
    nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(8).unwrap()).unwrap();
    let (mut c, _) = tokio::task::spawn_blocking(move || listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut s = String::new();
    use std::io::Read;
    c.read_to_string(&mut s).unwrap();
    assert_eq!(s, "rootless-hi\n");
    drop(rt);
    let rt = runtime();
    assert_eq!(
        rt.adopt(&h, Events::default().sink()).await.unwrap(),
        Adopted::Running
    );
    let exit = rt.stop(&h, Duration::from_secs(2)).await.unwrap();
    assert_eq!(exit.exit_code, Some(143), "{exit:?}");
    rt.destroy(&h).await.unwrap();
    eprintln!("rootless: all checks passed as uid {uid}");
}

#[tokio::test]
async fn rootless() {
    if !is_root() {
        return rootless_checks().await;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return skip("setpriv is not installed; cannot drop to uid 65534");
    }
    let probe = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "unshare",
            "-Urnm",
            "true",
        ])
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        return skip("unprivileged user namespaces are not available to uid 65534 here");
    }
    let scratch = tempfile::Builder::new()
        .prefix("pdk-rootless")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(scratch.path(), Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args([
            "rootless_inner",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_ENV, "1")
        .env("TMPDIR", scratch.path())
        .env("HOME", scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- inner (uid 65534) ---\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "rootless run failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") && stderr.contains("rootless: all checks passed as uid 65534"),
        "inner test did not run:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
#[ignore = "helper: run by `rootless` as uid 65534"]
async fn rootless_inner() {
    if std::env::var_os(INNER_ENV).is_none() || is_root() {
        return skip("rootless_inner only runs when re-executed by the `rootless` test");
    }
    rootless_checks().await;
}
