//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use paddock_audit::{AuditLog, LogConfig, NewEntry, Signer};
use serde_json::json;

pub fn signer() -> Arc<Signer> {
    Arc::new(Signer::from_seed([7; 32]))
}

pub fn attacker() -> Signer {
    Signer::from_seed([66; 32])
}

pub fn config(every: u64) -> LogConfig {
    LogConfig {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
    }
}

pub fn entry(i: u64) -> NewEntry {
    NewEntry {
        ts: 1_700_000_000_000 + i,
        kind: "net.request".into(),
        data: json!({
            "host": "api.example.com",
            "path": format!("/v1/items/{i}"),
            "decision": if i.is_multiple_of(3) { "deny" } else { "allow" },
            "rule": "default",
            "bytes": i * 17,
            "ratio": 0.1 * i as f64,
            "note": "ünïcode \"quoted\" \\ \u{1}",
        }),
    }
}

pub fn entries(range: std::ops::Range<u64>) -> Vec<NewEntry> {
    range.map(entry).collect()
}

/// A log in `dir` with `n` entries appended in batches of `batch`, checkpointed every
/// `every` entries (by `maybe_checkpoint`) and once more at the end.
pub fn build_log(dir: &Path, n: u64, batch: u64, every: u64) -> AuditLog {
    let (mut log, _) = AuditLog::open(dir, "run-test", signer(), config(every)).unwrap();
    let mut i = 0;
    let mut now = 1_000;
    while i < n {
        let end = (i + batch).min(n);
        log.append_batch(&entries(i..end)).unwrap();
        now += 10;
        log.maybe_checkpoint(now).unwrap();
        i = end;
    }
    if log.checkpoints().last().map(|c| c.tree_size) != Some(n) {
        log.checkpoint_at(now + 10).unwrap();
    }
    log
}
