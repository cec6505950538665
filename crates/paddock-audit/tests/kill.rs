//! Crash consistency with a real process: a child writes batches as fast as it can and
//! reports each acknowledged batch; it is killed with SIGKILL mid-stream. After reopening,
//! every acknowledged entry is present, unchanged, and the log verifies.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paddock_audit::{AuditLog, VerifyOptions, verify_log_dir};

const CHILD_ENV: &str = "PADDOCK_AUDIT_KILL_CHILD_DIR";

/// The child: append batches of 50 until killed (or, as a safety net, for 30 s).
fn child(dir: &str) {
    let (mut log, _) =
        AuditLog::open(dir, "run-test", common::signer(), common::config(500)).unwrap();
    let start = Instant::now();
    let mut next = log.len();
    while start.elapsed() < Duration::from_secs(30) {
        let r = log.append_batch(&common::entries(next..next + 50)).unwrap();
        println!("acked {}", r.end);
        next = r.end;
        log.maybe_checkpoint(paddock_audit::entry::now_ms())
            .unwrap();
    }
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_entry() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked_total = 0u64;
    for round in 0..3 {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_while_appending_loses_no_acknowledged_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        let target = acked_total + 2000 + 700 * round;
        let mut acked = acked_total;
        while acked < target {
            let line = lines.next().expect("child exited early").unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
            }
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        // anything the child printed before it died was acknowledged, too
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
            }
        }
        let (log, rec) = AuditLog::open(
            dir.path(),
            "run-test",
            common::signer(),
            common::config(500),
        )
        .unwrap();
        assert!(
            rec.entries >= acked,
            "round {round}: {} entries after restart, {acked} were acknowledged",
            rec.entries
        );
        let got = log.reader().read_entries(0..acked).unwrap();
        for (i, e) in got.iter().enumerate() {
            assert_eq!(*e, common::entry(i as u64).with_seq(i as u64), "entry {i}");
        }
        drop(log);
        verify_log_dir(
            dir.path(),
            &VerifyOptions {
                allow_uncovered: true,
                ..Default::default()
            },
        )
        .unwrap();
        acked_total = rec.entries;
    }
    // a final checkpoint makes the whole log verify strictly
    let (mut log, _) = AuditLog::open(
        dir.path(),
        "run-test",
        common::signer(),
        common::config(500),
    )
    .unwrap();
    log.checkpoint().unwrap();
    drop(log);
    let r = verify_log_dir(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(r.entries, acked_total);
}
