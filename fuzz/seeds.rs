//! Writes the audit bundle seeds of `fuzz/corpus/audit_bundle/` with the audit crate's own
//! writer and exporter (the same key as the fuzz target's, so pinning is exercised), and
//! checks that they verify. Run: `cargo +nightly test --manifest-path fuzz/Cargo.toml
//! --test seeds` (the other targets' seeds come from fuzz/make_seeds.py).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paddock_audit::{AuditLog, LogConfig, NewEntry, Signer, VerifyOptions, verify_bundle_json};
use serde_json::json;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("paddock-fuzz-seeds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn entry(ts: u64, kind: &str, data: serde_json::Value) -> NewEntry {
    NewEntry {
        ts,
        kind: kind.into(),
        data,
    }
}

fn write(name: &str, selector: u8, bundle: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/audit_bundle");
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = vec![selector];
    bytes.extend_from_slice(bundle);
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

#[test]
fn audit_bundle_seeds() {
    let signer = Arc::new(Signer::from_seed([7; 32]));
    let config = LogConfig {
        checkpoint_every: 1_000_000,
        checkpoint_interval: Duration::from_secs(3600),
    };
    let t0 = 1_767_225_600_000u64;

    // A run's log: two checkpoints, every entry covered.
    let dir = scratch("run");
    let (mut log, _) = AuditLog::open(&dir, "run_0123456789ab", signer.clone(), config).unwrap();
    log.append_batch(&[
        entry(t0, "run.state", json!({"from": null, "to": "starting"})),
        entry(
            t0 + 1,
            "init.step",
            json!({"index": 1, "total": 3, "description": "mounts"}),
        ),
        entry(
            t0 + 2,
            "net.request",
            json!({"host": "api.github.com", "port": 443,
            "method": "GET", "path": "/repos/a/b?x=ü", "status": 200, "ms": 12.5,
            "allowed": true, "rule": {"kind": "rule", "index": 0}}),
        ),
    ])
    .unwrap();
    log.checkpoint_at(t0 + 10).unwrap();
    log.append_batch(&[
        entry(
            t0 + 20,
            "grant.used",
            json!({"grants": ["github"], "big": 18446744073709551615u64,
            "neg": -9007199254740993i64, "tiny": 5e-324, "s": "\u{0}\u{1f}\"\\"}),
        ),
        entry(
            t0 + 30,
            "run.state",
            json!({"from": "running", "to": "stopped", "exit_code": 0}),
        ),
    ])
    .unwrap();
    log.checkpoint_at(t0 + 40).unwrap();
    let run = log.export_bundle().unwrap().to_json();
    write("run", 0x00, &run);
    write("run-pinned", 0x02, &run);

    // The daemon's log, exported between checkpoints: one entry not covered yet.
    let dir2 = scratch("daemon");
    let (mut log, _) = AuditLog::open(&dir2, "daemon", signer.clone(), config).unwrap();
    log.append(entry(
        t0,
        "daemon.start",
        json!({"pid": 42, "version": "0.1.0"}),
    ))
    .unwrap();
    log.checkpoint_at(t0 + 1).unwrap();
    log.append(entry(
        t0 + 2,
        "run.created",
        json!({"run_id": "run_0123456789ab"}),
    ))
    .unwrap();
    let daemon = log.export_bundle().unwrap().to_json();
    write("daemon-uncovered", 0x01, &daemon);

    // An empty log.
    let dir3 = scratch("empty");
    let (log, _) = AuditLog::open(&dir3, "run_empty", signer, config).unwrap();
    write("empty", 0x00, &log.export_bundle().unwrap().to_json());

    let strict = VerifyOptions::default();
    let lenient = VerifyOptions {
        allow_uncovered: true,
        ..VerifyOptions::default()
    };
    verify_bundle_json(&run, &strict).expect("the run bundle verifies");
    assert!(verify_bundle_json(&daemon, &strict).is_err());
    verify_bundle_json(&daemon, &lenient).expect("the daemon bundle verifies leniently");
    for d in [dir, dir2, dir3] {
        let _ = std::fs::remove_dir_all(d);
    }
}
