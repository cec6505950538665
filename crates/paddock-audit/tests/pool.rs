//! A writer pool: many logs on a fixed set of threads, each log's entries acknowledged only
//! once durable (checked with SIGKILL), each log closed with a signed checkpoint.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paddock_audit::{
    AuditLog, CommitError, CommitterConfig, LogConfig, VerifyOptions, WriterPool, verify_log_dir,
};

fn opener(
    dir: &Path,
    every: u64,
) -> impl FnOnce() -> Result<AuditLog, paddock_audit::AuditError> + Send + 'static {
    let dir = dir.to_path_buf();
    move || Ok(AuditLog::open(&dir, "run-test", common::signer(), common::config(every))?.0)
}

/// Threads of this process whose name is `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn many_logs_share_the_pool_threads_and_each_verifies() {
    let root = tempfile::tempdir().unwrap();
    let name = "pool-test-many";
    let pool = WriterPool::new(
        2,
        CommitterConfig {
            queue: 64,
            max_batch: 16,
            tick: Duration::from_millis(20),
        },
        name,
    )
    .unwrap();
    assert_eq!(pool.threads(), 2);
    let logs: Vec<_> = (0..40)
        .map(|i| {
            let dir = root.path().join(format!("log-{i}"));
            (dir.clone(), pool.open_with(opener(&dir, 7)).unwrap())
        })
        .collect();
    // Forty open logs, no more than two threads (a thread names itself once it runs).
    assert!(threads_named(name) <= 2);
    // Producers on every log at once, some entries waited for one by one.
    let producers: Vec<_> = logs
        .iter()
        .map(|(_, log)| {
            let h = log.handle();
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut seqs = Vec::new();
                for i in 0..50u64 {
                    if i % 5 == 0 {
                        seqs.push(h.append(common::entry(i)).unwrap());
                    } else {
                        pending.push(h.submit(common::entry(i)).unwrap());
                    }
                }
                seqs.extend(pending.into_iter().map(|a| a.wait().unwrap()));
                seqs.sort();
                seqs
            })
        })
        .collect();
    for p in producers {
        assert_eq!(p.join().unwrap(), (0..50).collect::<Vec<u64>>());
    }
    // Both threads have served logs by now, so both carry their name.
    assert_eq!(threads_named(name), 2);
    for (dir, log) in logs {
        let h = log.handle();
        let cp = log.close().wait().unwrap();
        assert_eq!(cp.tree_size, 50);
        // Closed: the lock is released and later entries are refused.
        assert_eq!(h.append(common::entry(99)), Err(CommitError::Closed));
        let (reopened, _) = AuditLog::open(&dir, "run-test", common::signer(), common::config(7))
            .expect("a closed log can be opened again");
        assert_eq!(reopened.len(), 50);
        // In order within the log.
        let entries = reopened.reader().read_entries(0..50).unwrap();
        let paths: Vec<String> = entries
            .iter()
            .map(|e| e.data["path"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..50).map(|i| format!("/v1/items/{i}")).collect();
        assert_eq!(paths, want);
        drop(reopened);
        verify_log_dir(&dir, &VerifyOptions::default()).unwrap();
    }
}

#[test]
fn a_log_that_cannot_be_opened_fails_its_entries_and_spares_the_others() {
    let root = tempfile::tempdir().unwrap();
    let pool = WriterPool::new(1, CommitterConfig::default(), "pool-test-fail").unwrap();
    let bad = pool
        .open_with(|| {
            Err(paddock_audit::AuditError::Random(
                "no randomness today".into(),
            ))
        })
        .unwrap();
    let good_dir = root.path().join("good");
    let good = pool.open_with(opener(&good_dir, 1000)).unwrap();
    assert!(matches!(
        bad.handle().append(common::entry(0)),
        Err(CommitError::Failed(why)) if why.contains("no randomness today")
    ));
    assert_eq!(good.handle().append(common::entry(0)).unwrap(), 0);
    assert!(matches!(bad.close().wait(), Err(CommitError::Failed(_))));
    assert_eq!(good.close().wait().unwrap().tree_size, 1);
}

#[test]
fn idle_logs_get_time_based_checkpoints_while_another_log_is_busy() {
    let root = tempfile::tempdir().unwrap();
    let pool = WriterPool::new(
        1,
        CommitterConfig {
            tick: Duration::from_millis(10),
            ..Default::default()
        },
        "pool-test-tick",
    )
    .unwrap();
    let cfg = LogConfig {
        checkpoint_every: 1_000_000,
        checkpoint_interval: Duration::from_millis(30),
    };
    let open = |dir: std::path::PathBuf| {
        move || Ok(AuditLog::open(&dir, "run-test", common::signer(), cfg)?.0)
    };
    let idle_dir = root.path().join("idle");
    let idle = pool.open_with(open(idle_dir.clone())).unwrap();
    let busy = pool.open_with(open(root.path().join("busy"))).unwrap();
    idle.handle().append(common::entry(0)).unwrap();
    // Keep the thread busy with the other log until the idle one has a checkpoint.
    let h = busy.handle();
    let mut i = 0;
    loop {
        h.append(common::entry(i)).unwrap();
        i += 1;
        let (reader, _) = paddock_audit::LogReader::open(&idle_dir).unwrap();
        if reader.checkpoints().last().map(|c| c.tree_size) == Some(1) {
            break;
        }
    }
    drop(idle);
    drop(busy);
}

const CHILD_ENV: &str = "PADDOCK_AUDIT_POOL_KILL_CHILD_DIR";
const LOGS: usize = 6;

/// The child: a pool of 2 threads, producers on 6 logs appending until killed, each
/// acknowledged seq reported as `acked <log> <seq>`.
fn child(root: &str) {
    let pool = WriterPool::new(
        2,
        CommitterConfig {
            queue: 256,
            max_batch: 64,
            tick: Duration::from_millis(50),
        },
        "pool-kill-child",
    )
    .unwrap();
    let logs: Vec<_> = (0..LOGS)
        .map(|k| {
            pool.open_with(opener(&Path::new(root).join(format!("log-{k}")), 300))
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let producers: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(k, log)| {
            let h = log.handle();
            std::thread::spawn(move || {
                let mut i = 0;
                while start.elapsed() < Duration::from_secs(30) {
                    let acks: Vec<_> = (i..i + 20)
                        .map(|j| h.submit(common::entry(j)).unwrap())
                        .collect();
                    for a in acks {
                        let seq = a.wait().unwrap();
                        println!("acked {k} {seq}");
                    }
                    i += 20;
                }
            })
        })
        .collect();
    for p in producers {
        let _ = p.join();
    }
}

#[test]
fn sigkill_loses_no_entry_the_pool_acknowledged() {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        child(&root);
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_loses_no_entry_the_pool_acknowledged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
    let mut acked: HashMap<usize, u64> = HashMap::new();
    let mut total = 0;
    while total < 3000 {
        let line = lines.next().expect("child exited early").unwrap();
        let mut words = line.split_whitespace();
        if words.next() != Some("acked") {
            continue;
        }
        let k: usize = words.next().unwrap().parse().unwrap();
        let seq: u64 = words.next().unwrap().parse().unwrap();
        let e = acked.entry(k).or_default();
        *e = (*e).max(seq + 1);
        total += 1;
    }
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
    // Whatever else the pipe held was acknowledged too.
    for line in lines.map_while(Result::ok) {
        let mut words = line.split_whitespace();
        if words.next() == Some("acked") {
            let k: usize = words.next().unwrap().parse().unwrap();
            let seq: u64 = words.next().unwrap().parse().unwrap();
            let e = acked.entry(k).or_default();
            *e = (*e).max(seq + 1);
        }
    }
    assert!(acked.len() > 1, "several logs were written: {acked:?}");
    for k in 0..LOGS {
        let dir = root.path().join(format!("log-{k}"));
        let (log, _) = AuditLog::open(&dir, "run-test", common::signer(), common::config(300))
            .expect("reopens after the kill");
        let want = acked.get(&k).copied().unwrap_or(0);
        assert!(
            log.len() >= want,
            "log {k}: {} entries after the kill, {want} acknowledged",
            log.len()
        );
        let entries = log.reader().read_entries(0..want).unwrap();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                *e,
                common::entry(i as u64).with_seq(i as u64),
                "log {k} entry {i}"
            );
        }
        drop(log);
        verify_log_dir(
            &dir,
            &VerifyOptions {
                allow_uncovered: true,
                ..Default::default()
            },
        )
        .unwrap();
    }
}
