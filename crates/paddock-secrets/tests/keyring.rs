//! The real OS-keyring path (feature `os-keyring`) must never hang the store: a session bus
//! that is absent, refuses, or accepts and never answers makes it fall back to the key file,
//! within the keyring timeout. Each case runs in a child process (this test binary again),
//! because the bus address comes from the environment.

#![cfg(feature = "os-keyring")]

use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

use paddock_secrets::{GrantSpec, KeyOrigin, SecretStore, SecretValue};

const CHILD_ENV: &str = "PADDOCK_SECRETS_KEYRING_CHILD";

/// Runs in the child: opens a store with the automatic backend and checks where the key went.
#[test]
fn keyring_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let limit: u64 = std::env::var("PADDOCK_SECRETS_LIMIT_MS")
        .unwrap()
        .parse()
        .unwrap();
    let start = Instant::now();
    let store = SecretStore::open(&dir).unwrap();
    let value = SecretValue::new("ghp_R3alT0kenR3alT0kenR3alT0kenR3alT0k1").unwrap();
    store.put("github", GrantSpec::Github, &value).unwrap();
    let elapsed = start.elapsed();
    assert!(
        matches!(store.key_origin().unwrap(), KeyOrigin::File(_)),
        "{:?}",
        store.key_origin()
    );
    assert!(elapsed < Duration::from_millis(limit), "took {elapsed:?}");
    assert_eq!(store.get("github").unwrap().value.expose(), value.expose());
}

fn run_child(bus_address: &str, limit_ms: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "keyring_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, tmp.path().join("secrets"))
        .env("PADDOCK_SECRETS_LIMIT_MS", limit_ms.to_string())
        .env("DBUS_SESSION_BUS_ADDRESS", bus_address)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    assert!(start.elapsed() < Duration::from_millis(limit_ms + 5000));
    let key = tmp.path().join("secrets/key");
    assert!(key.exists(), "the fallback key file was not created");
}

#[test]
fn refused_bus_falls_back_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-bus-here");
    run_child(&format!("unix:path={}", missing.display()), 2000);
}

#[test]
fn silent_bus_falls_back_after_the_timeout() {
    // A socket that accepts connections (backlog) and never says a word.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bus");
    let _listener = UnixListener::bind(&path).unwrap();
    run_child(&format!("unix:path={}", path.display()), 8000);
}
