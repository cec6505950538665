//! Audit log benchmark: paddock-audit (Merkle tree + signed checkpoints, group commit)
//! against a naive baseline (one SQLite row per entry, each row storing prev_hash and
//! hash = SHA-256(prev_hash || data), one transaction per batch), on the same machine.
//!
//! Run it with `bench/audit.sh` (release build). Options:
//!   --entries N   entries in the big log (default 1000000)
//!   --batch B     entries per group commit / per SQLite transaction (default 1000)
//!   --proofs K    proofs generated and timed (default 10000)
//!   --dir PATH    where the logs are written (default: the system temp dir)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_audit::merkle::{verify_consistency, verify_inclusion};
use paddock_audit::{
    AuditLog, Bundle, Committer, CommitterConfig, LogConfig, NewEntry, Signer, VerifyOptions,
    verify_bundle, verify_bundle_json, verify_log_dir,
};
use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Repetitions of each verification measure (the best is reported).
const RUNS: usize = 3;

struct Args {
    entries: u64,
    batch: u64,
    proofs: u64,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        entries: 1_000_000,
        batch: 1000,
        proofs: 10_000,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--entries" => a.entries = v().parse().expect("--entries N"),
            "--batch" => a.batch = v().parse().expect("--batch B"),
            "--proofs" => a.proofs = v().parse().expect("--proofs K"),
            "--dir" => a.dir = PathBuf::from(v()),
            "-h" | "--help" => {
                println!("usage: audit-bench [--entries N] [--batch B] [--proofs K] [--dir PATH]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// A pool of realistic entries (the kinds the daemon records), reused cyclically.
fn pool() -> Vec<NewEntry> {
    let kinds = [
        "net.request",
        "policy.denied",
        "grant.used",
        "init.step",
        "run.state",
        "exec",
    ];
    (0..10_000u64)
        .map(|i| {
            let kind = kinds[(i % kinds.len() as u64) as usize];
            let data = match kind {
                "net.request" => json!({"run":"r-7f3a","method":"GET","host":format!("api{}.example.com", i % 13),
                    "path":format!("/v1/items/{i}"),"decision":"allow","rule":"hosts.allow[2]","status":200,"bytes":i * 37 % 65536}),
                "policy.denied" => json!({"run":"r-7f3a","host":"tracker.example.net","port":443,"rule":"default-deny"}),
                "grant.used" => json!({"run":"r-7f3a","grant":"github","host":"api.github.com","header":"authorization"}),
                "init.step" => json!({"run":"r-7f3a","step":i % 5 + 1,"of":5,"name":"mount workspace"}),
                "run.state" => json!({"run":"r-7f3a","from":"starting","to":"running","pid":4242}),
                _ => json!({"run":"r-7f3a","argv":["cargo","test","--workspace"],"cwd":"/home/dev/project"}),
            };
            NewEntry { ts: 1_700_000_000_000 + i, kind: kind.to_owned(), data }
        })
        .collect()
}

fn batch_of(pool: &[NewEntry], start: u64, len: u64) -> Vec<NewEntry> {
    (start..start + len)
        .map(|i| {
            let mut e = pool[(i % pool.len() as u64) as usize].clone();
            e.ts = 1_700_000_000_000 + i;
            e
        })
        .collect()
}

fn secs(d: Duration) -> String {
    if d.as_secs_f64() >= 1.0 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

struct Append {
    elapsed: Duration,
    n: u64,
}

impl Append {
    fn rate(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }
}

// ---------------------------------------------------------------- paddock-audit

fn paddock_append(dir: &Path, pool: &[NewEntry], n: u64, batch: u64) -> Append {
    let signer = Arc::new(Signer::from_seed([42; 32]));
    let cfg = LogConfig {
        checkpoint_every: 10_000,
        checkpoint_interval: Duration::from_secs(10),
    };
    let batches: Vec<Vec<NewEntry>> = (0..n.div_ceil(batch))
        .map(|b| batch_of(pool, b * batch, batch.min(n - b * batch)))
        .collect();
    let start = Instant::now();
    let (mut log, _) = AuditLog::open(dir, "bench", signer, cfg).expect("open");
    for b in &batches {
        log.append_batch(b).expect("append");
        log.maybe_checkpoint(paddock_audit::entry::now_ms())
            .expect("checkpoint");
    }
    log.checkpoint().expect("final checkpoint");
    Append {
        elapsed: start.elapsed(),
        n,
    }
}

/// The daemon's path: `producers` threads each submitting single entries to a Committer
/// (bounded queue, batches drained from it, one fsync per batch).
fn paddock_committer(dir: &Path, pool: &[NewEntry], n: u64, producers: u64) -> Append {
    let signer = Arc::new(Signer::from_seed([42; 32]));
    let cfg = LogConfig {
        checkpoint_every: 10_000,
        checkpoint_interval: Duration::from_secs(10),
    };
    let per = n / producers;
    let inputs: Vec<Vec<NewEntry>> = (0..producers)
        .map(|p| batch_of(pool, p * per, per))
        .collect();
    let start = Instant::now();
    let (log, _) = AuditLog::open(dir, "bench-committer", signer, cfg).expect("open");
    let committer = Committer::spawn(log, CommitterConfig::default()).expect("spawn");
    std::thread::scope(|s| {
        for input in inputs {
            let h = committer.handle();
            s.spawn(move || {
                // submit everything, then wait for the acks in order (a producer that
                // waits for each entry is limited by fsync latency instead)
                let acks: Vec<_> = input
                    .into_iter()
                    .map(|e| h.submit(e).expect("submit"))
                    .collect();
                for a in acks {
                    a.wait().expect("ack");
                }
            });
        }
    });
    let (log, _) = committer.finish().expect("finish");
    assert_eq!(log.len(), per * producers);
    Append {
        elapsed: start.elapsed(),
        n: per * producers,
    }
}

// ---------------------------------------------------------------- SQLite chain

fn sqlite_open(path: &Path) -> Connection {
    let c = Connection::open(path).expect("sqlite open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("sync");
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, type TEXT NOT NULL,
         data TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL)",
    )
    .expect("schema");
    c
}

fn chain_hash(prev: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(data);
    h.finalize().into()
}

fn sqlite_append(path: &Path, pool: &[NewEntry], n: u64, batch: u64) -> Append {
    let batches: Vec<Vec<NewEntry>> = (0..n.div_ceil(batch))
        .map(|b| batch_of(pool, b * batch, batch.min(n - b * batch)))
        .collect();
    let start = Instant::now();
    let mut c = sqlite_open(path);
    let mut prev = [0u8; 32];
    let mut seq = 0u64;
    for b in &batches {
        let tx = c.transaction().expect("tx");
        {
            let mut st = tx
                .prepare_cached("INSERT INTO log (seq, ts, type, data, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .expect("prepare");
            for e in b {
                let data = serde_json::to_string(&e.data).expect("json");
                let h = chain_hash(&prev, data.as_bytes());
                st.execute(params![
                    seq as i64,
                    e.ts as i64,
                    e.kind,
                    data,
                    &prev[..],
                    &h[..]
                ])
                .expect("insert");
                prev = h;
                seq += 1;
            }
        }
        tx.commit().expect("commit");
    }
    Append {
        elapsed: start.elapsed(),
        n,
    }
}

fn sqlite_verify(path: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let c = sqlite_open(path);
    let mut st = c
        .prepare("SELECT seq, data, prev_hash, hash FROM log ORDER BY seq")
        .expect("prepare");
    let mut rows = st.query([]).expect("query");
    let mut prev = [0u8; 32];
    let mut n = 0u64;
    while let Some(r) = rows.next().expect("row") {
        let seq: i64 = r.get(0).expect("seq");
        assert_eq!(seq as u64, n, "sequence");
        let data = r.get_ref(1).expect("data").as_bytes().expect("text");
        let p = r.get_ref(2).expect("prev").as_blob().expect("blob");
        let h = r.get_ref(3).expect("hash").as_blob().expect("blob");
        assert_eq!(p, prev, "prev_hash at {n}");
        let want = chain_hash(&prev, data);
        assert_eq!(h, want, "hash at {n}");
        prev = want;
        n += 1;
    }
    (start.elapsed(), n)
}

/// The chain's "proof" that entry i is in the log whose head hash the verifier holds:
/// every later row's data (the verifier re-hashes forward to the head).
fn sqlite_proof(c: &Connection, i: u64) -> (Duration, u64, u64) {
    let start = Instant::now();
    let mut st = c
        .prepare_cached("SELECT data FROM log WHERE seq > ?1 ORDER BY seq")
        .expect("prepare");
    let mut rows = st.query([i as i64]).expect("query");
    let (mut bytes, mut count) = (32u64, 0u64);
    let mut proof: Vec<Vec<u8>> = Vec::new();
    while let Some(r) = rows.next().expect("row") {
        let d = r.get_ref(0).expect("data").as_bytes().expect("text");
        bytes += d.len() as u64;
        count += 1;
        proof.push(d.to_vec());
    }
    (start.elapsed(), bytes, count)
}

// ---------------------------------------------------------------- main

fn main() {
    let a = args();
    let base = tempfile::Builder::new()
        .prefix("paddock-audit-bench-")
        .tempdir_in(&a.dir)
        .expect("temp dir");
    let pool = pool();
    let n = a.entries;
    println!(
        "paddock-audit benchmark: {n} entries, batch {} entries per fsync, {} proofs",
        a.batch, a.proofs
    );
    println!(
        "machine: {} cores; logs under {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        base.path().display()
    );
    println!();

    // --- one fsync per entry, on a small log (first, before the big runs' writeback)
    let small = 2000.min(n);
    let p_one = paddock_append(&base.path().join("paddock-b1"), &pool, small, 1);
    let s_one = sqlite_append(&base.path().join("chain-b1.sqlite"), &pool, small, 1);
    // --- append with group commit
    let pdir = base.path().join("paddock");
    let p_app = paddock_append(&pdir, &pool, n, a.batch);
    let sdb = base.path().join("chain.sqlite");
    let s_app = sqlite_append(&sdb, &pool, n, a.batch);
    let c_app = paddock_committer(
        &base.path().join("paddock-committer"),
        &pool,
        200_000.min(n),
        4,
    );

    let p_bytes: u64 = std::fs::read_dir(&pdir)
        .expect("dir")
        .map(|e| e.expect("e").metadata().expect("m").len())
        .sum();
    let s_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", sdb.display())).ok())
        .map(|m| m.len())
        .sum();

    // --- reopen (crash recovery path: scan, CRC, rebuild tree)
    let t = Instant::now();
    let (log, rec) = AuditLog::open(
        &pdir,
        "bench",
        Arc::new(Signer::from_seed([42; 32])),
        LogConfig::default(),
    )
    .expect("reopen");
    let p_reopen = t.elapsed();
    assert_eq!(rec.entries, n);
    let leaves = std::fs::read(pdir.join("leaves.hash")).expect("leaves");
    let _ = std::fs::remove_file(pdir.join("leaves.hash"));
    drop(log);
    let t = Instant::now();
    let (log, rec) = AuditLog::open(
        &pdir,
        "bench",
        Arc::new(Signer::from_seed([42; 32])),
        LogConfig::default(),
    )
    .expect("reopen");
    let p_reopen_rehash = t.elapsed();
    assert_eq!(rec.rehashed, n);
    drop(leaves);

    // --- verify
    // best of RUNS: the machine is shared, the minimum is the least disturbed run
    let best = |f: &mut dyn FnMut() -> Duration| (0..RUNS).map(|_| f()).min().unwrap_or_default();
    let p_verify_dir = best(&mut || {
        let t = Instant::now();
        let r = verify_log_dir(&pdir, &VerifyOptions::default()).expect("verify dir");
        assert_eq!(r.entries, n);
        t.elapsed()
    });
    let t = Instant::now();
    let bundle = log.export_bundle().expect("export");
    let p_export = t.elapsed();
    let p_verify_bundle = best(&mut || {
        let t = Instant::now();
        let r = verify_bundle(&bundle).expect("verify bundle");
        assert_eq!(r.entries, n);
        t.elapsed()
    });
    let t = Instant::now();
    let json = bundle.to_json();
    let p_ser = t.elapsed();
    drop(bundle);
    let t = Instant::now();
    let parsed = Bundle::from_json(&json).expect("parse");
    let p_parse = t.elapsed();
    drop(parsed);
    let json_len = json.len();
    let p_verify_json = best(&mut || {
        let t = Instant::now();
        let r = verify_bundle_json(&json, &VerifyOptions::default()).expect("verify bundle json");
        assert_eq!(r.entries, n);
        t.elapsed()
    });
    drop(json);
    let s_verify = best(&mut || {
        let (d, rows) = sqlite_verify(&sdb);
        assert_eq!(rows, n);
        d
    });

    // --- proofs
    let root = log.root();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let idx: Vec<u64> = (0..a.proofs).map(|_| next() % n).collect();
    let t = Instant::now();
    let mut hashes = 0usize;
    let mut max_hashes = 0usize;
    let mut proofs = Vec::with_capacity(idx.len());
    for &i in &idx {
        let p = log.inclusion_proof(i, n).expect("proof");
        hashes += p.path.len();
        max_hashes = max_hashes.max(p.path.len());
        proofs.push(p);
    }
    let p_incl_us = t.elapsed().as_secs_f64() * 1e6 / idx.len() as f64;
    let t = Instant::now();
    for p in &proofs {
        verify_inclusion(&p.leaf_hash, p.leaf_index, p.tree_size, &p.path, &root)
            .expect("verify proof");
    }
    let p_incl_verify_us = t.elapsed().as_secs_f64() * 1e6 / idx.len() as f64;
    let avg_hashes = hashes as f64 / idx.len() as f64;
    let json_proof_bytes = serde_json::to_vec(&proofs[0]).expect("json").len();
    let olds: Vec<u64> = (0..a.proofs).map(|_| 1 + next() % (n - 1)).collect();
    let t = Instant::now();
    let mut c_hashes = 0usize;
    let mut cproofs = Vec::with_capacity(olds.len());
    for &m in &olds {
        let p = log.consistency_proof(m, n).expect("consistency");
        c_hashes += p.path.len();
        cproofs.push(p);
    }
    let p_cons_us = t.elapsed().as_secs_f64() * 1e6 / olds.len() as f64;
    for p in &cproofs {
        verify_consistency(p.old_size, p.new_size, &p.old_root, &p.new_root, &p.path)
            .expect("verify consistency");
    }
    let c_avg = c_hashes as f64 / olds.len() as f64;

    let c = sqlite_open(&sdb);
    let samples: Vec<u64> = (0..5).map(|_| next() % n).collect();
    let (mut s_time, mut s_bytes_sum, mut s_rows_sum) = (Duration::ZERO, 0u64, 0u64);
    for &i in &samples {
        let (d, b, r) = sqlite_proof(&c, i);
        s_time += d;
        s_bytes_sum += b;
        s_rows_sum += r;
    }
    let s_proof_us = s_time.as_secs_f64() * 1e6 / samples.len() as f64;
    let s_proof_bytes = s_bytes_sum as f64 / samples.len() as f64;
    let s_proof_rows = s_rows_sum as f64 / samples.len() as f64;

    // --- report
    let p_proof_bytes = avg_hashes * 32.0;
    println!(
        "{:<44} {:>20} {:>20} {:>12}",
        "measure", "paddock-audit", "sqlite chain", "ratio"
    );
    println!("{}", "-".repeat(99));
    let row = |name: &str, p: String, s: String, ratio: String| {
        println!("{name:<44} {p:>20} {s:>20} {ratio:>12}")
    };
    row(
        &format!("append, batch {} (entries/s)", a.batch),
        format!("{:.0}", p_app.rate()),
        format!("{:.0}", s_app.rate()),
        format!("{:.2}x", p_app.rate() / s_app.rate()),
    );
    row(
        &format!("  time for {n} entries"),
        secs(p_app.elapsed),
        secs(s_app.elapsed),
        String::new(),
    );
    row(
        &format!("append, batch 1 ({small} entries, entries/s)"),
        format!("{:.0}", p_one.rate()),
        format!("{:.0}", s_one.rate()),
        format!("{:.2}x", p_one.rate() / s_one.rate()),
    );
    row(
        "on-disk size (bytes/entry)",
        format!("{:.0}", p_bytes as f64 / n as f64),
        format!("{:.0}", s_bytes as f64 / n as f64),
        String::new(),
    );
    row(
        &format!("verify {n} entries (files, best of {RUNS})"),
        secs(p_verify_dir),
        secs(s_verify),
        format!(
            "{:.2}x",
            s_verify.as_secs_f64() / p_verify_dir.as_secs_f64()
        ),
    );
    row(
        "verify bundle in memory (canonical re-encode)",
        secs(p_verify_bundle),
        "-".into(),
        String::new(),
    );
    row(
        &format!(
            "verify bundle file, {} MB JSON (best of {RUNS})",
            json_len / 1_000_000
        ),
        secs(p_verify_json),
        "-".into(),
        String::new(),
    );
    row(
        "inclusion proof size (bytes / hashes, avg)",
        format!("{:.0} / {:.1}", p_proof_bytes, avg_hashes),
        format!("{:.0} / {:.0} rows", s_proof_bytes, s_proof_rows),
        format!("{:.0}x smaller", s_proof_bytes / p_proof_bytes),
    );
    row(
        "inclusion proof generation (us, avg)",
        format!("{p_incl_us:.2}"),
        format!("{s_proof_us:.0}"),
        format!("{:.0}x faster", s_proof_us / p_incl_us),
    );
    println!();
    println!("paddock-audit extras:");
    println!(
        "  max inclusion proof: {max_hashes} hashes ({} bytes); as JSON: {json_proof_bytes} bytes",
        max_hashes * 32
    );
    println!(
        "  Committer, 4 producers submitting single entries: {:.0} entries/s ({} entries, batches drained from a bounded queue)",
        c_app.rate(),
        c_app.n
    );
    println!("  inclusion proof verification: {p_incl_verify_us:.2} us avg");
    println!(
        "  consistency proof: {:.1} hashes avg ({:.0} bytes), generated in {p_cons_us:.2} us avg",
        c_avg,
        c_avg * 32.0
    );
    println!(
        "  reopen after restart: {} (leaf hashes from leaves.hash); {} with every leaf re-hashed",
        secs(p_reopen),
        secs(p_reopen_rehash)
    );
    println!(
        "  export bundle: {}; JSON: {} MB, serialise {}, parse {}",
        secs(p_export),
        json_len / 1_000_000,
        secs(p_ser),
        secs(p_parse)
    );
    println!(
        "  checkpoints signed during the append run: {}",
        log.checkpoints().len()
    );
    println!();
    println!(
        "targets: append >= 100000 entries/s: {}; verify 1M <= 2 s: {}; proof O(log n) < 1 ms: {}",
        if p_app.rate() >= 100_000.0 {
            "met"
        } else {
            "MISSED"
        },
        if p_verify_dir.as_secs_f64() * 1_000_000.0 / n as f64 <= 2.0 {
            "met"
        } else {
            "MISSED"
        },
        if p_incl_us < 1000.0 { "met" } else { "MISSED" }
    );
    println!(
        "the sqlite chain has no signature (anyone with write access can rewrite it) and no compact proof:"
    );
    println!("proving entry i to a holder of the head hash takes every later row.");
}
