//! Egress for a rootless daemon: the run's sockets come from its init over SCM_RIGHTS, and
//! the daemon (owner of the run's user namespace) binds ports 53/80/443/3128 and adds the
//! AnyIP routes itself. As root, the test re-executes this binary as uid 65534 under
//! `setpriv`; anything missing on the machine makes it skip loudly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use paddock_config::{NetworkConfig, NetworkPolicy};

async fn rootless_checks() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_ne!(uid, 0);
    let cfg = NetworkConfig {
        policy: NetworkPolicy::Permissive,
        rules: vec![],
        passthrough: vec![],
        headers: vec![],
    };
    let f = fixture(cfg, &[]).await.expect("fixture");
    // Explicit proxy (CONNECT + interception) and transparent capture through the stub.
    let o = f
        .sh("curl -sS --max-time 10 https://api.test/rl1; curl -sS --noproxy '*' --max-time 10 https://api.test/rl2")
        .await;
    assert!(o.stdout.contains("ok GET /rl1"), "{o}");
    assert!(o.stdout.contains("ok GET /rl2"), "{o}");
    let seen = f.seen();
    assert!(
        seen.iter()
            .all(|(_, _, h)| h.get("x-test-token").is_some_and(|v| v == "real-secret"))
    );
    f.finish().await;
    eprintln!("egress rootless: all checks passed as uid {uid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootless() {
    if !is_root() {
        return skip(
            "the rootless egress test re-executes itself from root; run the suite as root",
        );
    }
    if !tool("/usr/bin/curl") {
        return;
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
        .prefix("pdke-rootless")
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
        .env(ROOTLESS_INNER, "1")
        .env("TMPDIR", scratch.path())
        .env("HOME", scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- inner (uid 65534) ---\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "rootless egress failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") && stderr.contains("egress rootless: all checks passed"),
        "inner test did not run:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: run by `rootless` as uid 65534"]
async fn rootless_inner() {
    if std::env::var_os(ROOTLESS_INNER).is_none() || is_root() {
        return skip("rootless_inner only runs when re-executed by the `rootless` test");
    }
    rootless_checks().await;
}
