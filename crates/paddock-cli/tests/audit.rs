//! The audit log end to end: what a run records, export and offline verification (with a
//! tamper matrix), proofs, the signing key's privacy, and crash consistency under kill -9.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Env, daemon_processes, pid_alive, request, wait_until};
use serde_json::Value;

fn workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

/// A user config with a small checkpoint schedule, so logs get several checkpoints.
fn small_checkpoints(env: &Env) {
    let dir = env.config.join("paddock");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        "audit: {checkpoint_every: 4, checkpoint_interval: 1s}\n",
    )
    .unwrap();
}

fn json(env: &Env, args: &[&str]) -> Value {
    let out = env.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn only_run_id(env: &Env) -> String {
    env.ok(&["ps", "-a", "-q"]).trim().to_string()
}

/// `paddock audit verify FILE [extra]`: (exit code, stdout, stderr).
fn verify(env: &Env, file: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["audit", "verify", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).unwrap()).unwrap();
}

/// Expect verification of `bundle` to fail, naming `check` and `at`.
fn expect_tampered(env: &Env, dir: &Path, name: &str, bundle: &Value, check: &str, at: &str) {
    let path = dir.join(format!("{name}.json"));
    write_json(&path, bundle);
    let (code, _, err) = verify(env, &path, &[]);
    assert_eq!(code, 1, "{name}: verification must fail with exit 1\n{err}");
    assert!(
        err.contains(&format!("check: {check}, at {at}")),
        "{name}: expected check {check} at {at}, got:\n{err}"
    );
}

#[test]
fn a_run_is_on_the_record_and_its_export_verifies_offline_and_detects_tampering() {
    let env = Env::new();
    small_checkpoints(&env);
    let ws = workspace(&env);
    let out = env
        .cmd()
        .current_dir(&ws)
        .args([
            "run",
            "-q",
            "-e",
            "SECRET_TOKEN=hunter2-value",
            "--",
            "sh",
            "-c",
            "echo hello > note.txt",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = only_run_id(&env);

    // What the run recorded.
    let list = json(&env, &["audit", &id, "--json"]);
    let entries = list["entries"].as_array().unwrap();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in ["run.created", "init.step", "run.started", "run.exit"] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let states: Vec<&str> = entries
        .iter()
        .filter(|e| e["type"] == "run.state")
        .map(|e| e["data"]["to"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["created", "starting", "running", "stopped"]);
    let created = &entries[0];
    assert_eq!(created["type"], "run.created");
    assert_eq!(created["data"]["command"][2], "echo hello > note.txt");
    assert_eq!(
        created["data"]["env_names"],
        serde_json::json!(["SECRET_TOKEN"])
    );
    assert!(
        !list.to_string().contains("hunter2-value"),
        "an environment value reached the audit log"
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
    }
    // The readable view and the filters.
    let text = env.ok(&["audit", "show", &id]);
    assert!(
        text.contains("created → starting") && text.contains("step 1/"),
        "{text}"
    );
    let only = json(
        &env,
        &[
            "audit",
            &id,
            "--type",
            "run.state",
            "--since",
            "10m",
            "--json",
        ],
    );
    assert_eq!(only["entries"].as_array().unwrap().len(), 4);
    let none = json(
        &env,
        &[
            "audit",
            &id,
            "--since",
            "2000-01-01T00:00:00Z",
            "--type",
            "x",
            "--json",
        ],
    );
    assert_eq!(none["entries"].as_array().unwrap().len(), 0);

    // Diff and apply after the run ended are recorded in its log too.
    env.ok(&["diff", &id]);
    env.ok(&["apply", &id]);
    let list = json(&env, &["audit", &id, "--json"]);
    let types: Vec<String> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert!(
        types.ends_with(&["layer.diffed".into(), "layer.applied".into()]),
        "{types:?}"
    );
    let size = list["size"].as_u64().unwrap();
    assert_eq!(
        list["signed_size"], size,
        "the log is closed with a signed checkpoint"
    );

    // Export, key, proofs.
    let dir = env.dir.path().to_path_buf();
    let bundle_path = dir.join("bundle.json");
    env.ok(&["audit", "export", &id, "-o", bundle_path.to_str().unwrap()]);
    let key_path = dir.join("key.json");
    std::fs::write(&key_path, env.ok(&["audit", "key", "--json"])).unwrap();
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    let pin = key["pin"].as_str().unwrap().to_string();
    assert!(pin.starts_with("ed25519:"));

    let proof = json(&env, &["audit", "prove", &id, "--entry", "3", "--json"]);
    assert_eq!(proof["verified"], true);
    assert_eq!(proof["entry"]["seq"], 3);
    assert_eq!(proof["public_key"]["public_key"], key["public_key"]);
    // Check it here too, independently of the CLI.
    let pk: paddock_audit::PublicKeyInfo =
        serde_json::from_value(proof["public_key"].clone()).unwrap();
    paddock_audit::verify_entry_inclusion(
        &serde_json::from_value(proof["entry"].clone()).unwrap(),
        &serde_json::from_value(proof["proof"].clone()).unwrap(),
        &serde_json::from_value(proof["checkpoint"].clone()).unwrap(),
        &pk,
    )
    .unwrap();
    let bundle: Value = serde_json::from_slice(&std::fs::read(&bundle_path).unwrap()).unwrap();
    let cps = bundle["checkpoints"].as_array().unwrap();
    assert!(cps.len() >= 2, "several checkpoints: {cps:?}");
    let first = cps[0]["tree_size"].as_u64().unwrap().to_string();
    let cons = json(
        &env,
        &["audit", "consistency", &id, "--from", &first, "--json"],
    );
    assert_eq!(cons["verified"], true);
    assert_eq!(cons["new"]["tree_size"], size);
    let bad = env.run(&["audit", "consistency", &id, "--from", "999999"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("hint:"));

    // Offline: no daemon, and verify must not start one.
    env.stop_daemon();
    assert!(env.health().is_none());
    let (code, outp, err) = verify(&env, &bundle_path, &["--key", key_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{outp}{err}");
    assert!(
        outp.contains("verified:") && outp.contains("matches the pinned key"),
        "{outp}"
    );
    let (code, _, err) = verify(&env, &bundle_path, &["--key", &pin]);
    assert_eq!(code, 0, "{err}");
    assert!(env.health().is_none(), "verify started a daemon");
    assert!(daemon_processes(&env.home).is_empty());

    // The tamper matrix.
    let n = bundle["entries"].as_array().unwrap().len();
    let last_cp = cps.len() - 1;
    // The first checkpoint whose tree covers entry `k`.
    let covering = |k: usize| {
        cps.iter()
            .position(|c| c["tree_size"].as_u64().unwrap() > k as u64)
            .unwrap()
    };
    let mut flipped = bundle.clone();
    assert_eq!(flipped["entries"][1]["data"]["to"], "created");
    flipped["entries"][1]["data"]["to"] = Value::String("breated".into());
    expect_tampered(
        &env,
        &dir,
        "flipped",
        &flipped,
        "root",
        &format!("checkpoint {}", covering(1)),
    );

    let mut deleted = bundle.clone();
    deleted["entries"].as_array_mut().unwrap().remove(5);
    expect_tampered(&env, &dir, "deleted", &deleted, "sequence", "entry 5");

    let mut swapped = bundle.clone();
    swapped["entries"].as_array_mut().unwrap().swap(2, 3);
    expect_tampered(&env, &dir, "swapped", &swapped, "sequence", "entry 2");

    let mut truncated = bundle.clone();
    truncated["entries"].as_array_mut().unwrap().truncate(n - 2);
    expect_tampered(
        &env,
        &dir,
        "truncated",
        &truncated,
        "truncated",
        &format!("checkpoint {}", covering(n - 2)),
    );

    let mut appended = bundle.clone();
    appended["entries"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "seq": n, "ts": 1, "type": "run.state", "data": {"to": "running"}
        }));
    expect_tampered(
        &env,
        &dir,
        "appended",
        &appended,
        "uncovered",
        &format!("entry {n}"),
    );
    // …accepted (and reported) only on request.
    let path = dir.join("appended.json");
    let (code, outp, _) = verify(&env, &path, &["--allow-uncovered"]);
    assert_eq!(code, 0);
    // (the name the verifier's hint uses works too)
    assert_eq!(verify(&env, &path, &["--allow-unsigned-tail"]).0, 0);
    assert!(outp.contains(&format!("entries {n}..{}", n + 1)), "{outp}");

    let mut forged = bundle.clone();
    forged["checkpoints"][0]["root_hash"] = Value::String("00".repeat(32));
    expect_tampered(
        &env,
        &dir,
        "forged",
        &forged,
        "checkpoint_signature",
        "checkpoint 0",
    );

    let mut replayed = bundle.clone();
    let older = replayed["checkpoints"][0].clone();
    replayed["checkpoints"].as_array_mut().unwrap().push(older);
    expect_tampered(
        &env,
        &dir,
        "replayed",
        &replayed,
        "checkpoint_monotonic",
        &format!("checkpoint {}", last_cp + 1),
    );

    // Rewritten and re-signed with another key: self-consistent, caught by the pin.
    let other = paddock_audit::Signer::generate().unwrap();
    let mut b: paddock_audit::Bundle = serde_json::from_value(bundle.clone()).unwrap();
    b.entries[1].data = serde_json::json!({"to": "created", "note": "rewritten"});
    let leaves: Vec<_> = b.entries.iter().map(|e| e.leaf_hash().unwrap()).collect();
    let tree = paddock_audit::MerkleTree::from_leaves(leaves);
    b.public_key = other.public_key().clone();
    b.checkpoints = vec![paddock_audit::Checkpoint::sign(
        &other,
        &b.log_id,
        tree.len(),
        tree.root(),
        b.checkpoints.last().unwrap().time,
    )];
    let resigned = dir.join("resigned.json");
    std::fs::write(&resigned, b.to_json()).unwrap();
    let (code, _, _) = verify(&env, &resigned, &[]);
    assert_eq!(code, 0, "a re-signed log is self-consistent without a pin");
    let (code, outp, _) = verify(
        &env,
        &resigned,
        &["--key", key_path.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&outp).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["check"], "pinned_key");
    assert!(report["message"].as_str().unwrap().contains("wrong key"));
    let (code, _, err) = verify(&env, &resigned, &["--key", "sha256:nothex"]);
    assert_eq!(code, 2, "a malformed pin is a usage error: {err}");
    assert!(env.health().is_none(), "verify started a daemon");

    // Rollback: an older copy, genuinely signed up to the first checkpoint, verifies on its
    // own; against a newer checkpoint the verifier saw before, it must not.
    let first_size = cps[0]["tree_size"].as_u64().unwrap();
    assert!(first_size < size);
    let mut older = bundle.clone();
    older["entries"]
        .as_array_mut()
        .unwrap()
        .truncate(first_size as usize);
    older["checkpoints"] = Value::Array(vec![cps[0].clone()]);
    let older_path = dir.join("older.json");
    write_json(&older_path, &older);
    let (code, _, err) = verify(&env, &older_path, &[]);
    assert_eq!(code, 0, "a signed prefix is self-consistent: {err}");
    let newest_path = dir.join("newest-checkpoint.json");
    write_json(&newest_path, &cps[last_cp]);
    let newest = newest_path.to_str().unwrap();
    let (code, _, err) = verify(&env, &older_path, &["--known-checkpoint", newest]);
    assert_eq!(code, 1, "a rolled-back copy must fail: {err}");
    assert!(
        err.contains("check: rollback, at bundle")
            && err.contains(&format!(
                "rolled back: the log is signed up to tree size {first_size}, but a checkpoint already seen covers {size}"
            )),
        "{err}"
    );
    let (code, outp, _) = verify(&env, &older_path, &["--known-checkpoint", newest, "--json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&outp).unwrap();
    assert_eq!(report["check"], "rollback");
    // The current bundle extends both its own newest checkpoint and the older one (given
    // as the whole older bundle).
    let (code, outp, err) = verify(&env, &bundle_path, &["--known-checkpoint", newest]);
    assert_eq!(code, 0, "{err}");
    assert!(
        outp.contains(&format!(
            "extends  the known checkpoint at tree size {size}"
        )),
        "{outp}"
    );
    let (code, _, err) = verify(
        &env,
        &bundle_path,
        &["--known-checkpoint", older_path.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    // A known checkpoint that is not genuine is refused, not trusted.
    let mut fake = cps[last_cp].clone();
    fake["tree_size"] = Value::from(size + 10);
    let fake_path = dir.join("fake-checkpoint.json");
    write_json(&fake_path, &fake);
    let (code, _, err) = verify(
        &env,
        &bundle_path,
        &["--known-checkpoint", fake_path.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("check: known_checkpoint"), "{err}");
    let (code, _, err) = verify(
        &env,
        &bundle_path,
        &["--known-checkpoint", key_path.to_str().unwrap()],
    );
    assert_eq!(code, 2, "not a checkpoint is a usage error: {err}");
    assert!(err.contains("invalid --known-checkpoint"), "{err}");
    assert!(env.health().is_none(), "verify started a daemon");

    // rm deletes the run's log, and the daemon log keeps its final checkpoint.
    env.ok(&["rm", &id]);
    assert!(!env.home.join("runs").join(&id).exists());
    let daemon = json(
        &env,
        &[
            "audit",
            "show",
            "--daemon",
            "--type",
            "run.removed",
            "--json",
        ],
    );
    let removed = &daemon["entries"][0]["data"];
    assert_eq!(removed["run_id"], id.as_str());
    assert_eq!(removed["audit_checkpoint"]["tree_size"], size);
    assert_eq!(
        removed["audit_checkpoint"]["root_hash"],
        bundle["checkpoints"][last_cp]["root_hash"]
    );
    let types = json(&env, &["audit", "--daemon", "--json"]);
    let kinds: Vec<&str> = types["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"daemon.start") && kinds.contains(&"daemon.stop"),
        "{kinds:?}"
    );
    let gone = env.run(&["audit", &id]);
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn the_signing_key_is_private_and_invisible_inside_a_sandbox() {
    let env = Env::new();
    let ws = workspace(&env);
    env.ok(&["ps"]);
    let h = env.wait_health();
    assert!(
        h["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "audit")
    );
    let key = env.home.join("audit").join("signing.key");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&env.home.join("audit")), 0o700);
    let secret = std::fs::read_to_string(&key).unwrap();
    let script = format!(
        "cat {0} ; ls -la {1} ; cat {1}/daemon/entries.log ; echo done",
        key.display(),
        env.home.join("audit").display()
    );
    let out = env
        .cmd()
        .current_dir(&ws)
        .args(["run", "-q", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("done"), "{all}");
    assert!(
        !all.contains(secret.trim()),
        "the signing key was readable in a sandbox"
    );
    assert!(
        !all.contains("PADDOCK-AUDIT"),
        "an audit log was readable in a sandbox"
    );
    // Nor can a mount bring it in, however the path is spelled.
    let link = env.dir.path().join("innocent");
    std::os::unix::fs::symlink(env.home.join("audit"), &link).unwrap();
    let home_link = env.dir.path().join("innocent-home");
    std::os::unix::fs::symlink(&env.home, &home_link).unwrap();
    for source in [
        env.home.join("audit"),
        link.clone(),
        home_link.join("audit"),
        home_link.clone(),
    ] {
        let mount = format!("{}:/data/a", source.display());
        let out = env
            .cmd()
            .current_dir(&ws)
            .args([
                "run",
                "-q",
                "-m",
                &mount,
                "--",
                "sh",
                "-c",
                "cat /data/a/signing.key /data/a/audit/signing.key",
            ])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{mount}: {all}");
        assert!(
            !all.contains(secret.trim()),
            "{mount}: the signing key was mounted"
        );
        assert!(
            all.contains("exposes paddock's state directory"),
            "{mount}: {all}"
        );
    }
    // The key the API exports is the public half of that file's key.
    let k = json(&env, &["audit", "key", "--json"]);
    let seed = hex_bytes(secret.trim());
    let signer = paddock_audit::Signer::from_seed(seed);
    assert_eq!(k["public_key"], signer.public_key().public_key.as_str());
}

fn hex_bytes(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn all_run_ids(env: &Env) -> Vec<String> {
    let (_, body) = request(&env.socket(), "GET", "/v1/runs?all=1", None).unwrap();
    body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn log_entries(env: &Env, path: &str) -> Option<Vec<Value>> {
    let (status, body) = request(&env.socket(), "GET", path, None).ok()?;
    (status == 200).then(|| body["entries"].as_array().cloned().unwrap_or_default())
}

/// Entries in every log the daemon has (the daemon's and every run's).
fn total(env: &Env) -> u64 {
    let mut t = log_entries(env, "/v1/audit/daemon").unwrap().len() as u64;
    for id in all_run_ids(env) {
        t += log_entries(env, &format!("/v1/runs/{id}/audit"))
            .unwrap()
            .len() as u64;
    }
    t
}

fn acked(env: &Env) -> Option<(u64, u64)> {
    let h = env.health()?;
    Some((
        h["audit"]["acked_entries"].as_u64()?,
        h["audit"]["pending"].as_u64()?,
    ))
}

#[test]
fn acknowledged_entries_survive_kill_9_and_every_log_verifies() {
    let env = Arc::new(Env::new());
    small_checkpoints(&env);
    let ws = workspace(&env);
    env.ok(&["ps"]);

    // Phase 1: churn (create, stop, remove).
    let churn: Vec<_> = (0..6)
        .map(|i| {
            let env = env.clone();
            let ws = ws.clone();
            std::thread::spawn(move || {
                let name = format!("churn-{i}");
                let o = env
                    .cmd()
                    .current_dir(&ws)
                    .args(["run", "-d", "--name", &name, "--", "sleep", "30"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{o:?}");
                env.ok(&["stop", "-t", "0", &name]);
                if i % 2 == 0 {
                    env.ok(&["rm", &name]);
                }
            })
        })
        .collect();
    for t in churn {
        t.join().unwrap();
    }
    wait_until(Duration::from_secs(20), || {
        acked(&env).filter(|(_, p)| *p == 0)
    })
    .expect("audit queue drains");
    let (a0, _) = acked(&env).unwrap();
    let t0 = total(&env);

    // Phase 2: twenty runs with network traffic (every DNS lookup is a query to the
    // run's stub and a `net.denied` record in its log) and lifecycle churn at once;
    // kill -9 the daemon midway.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..20 {
        let env = env.clone();
        let ws = ws.clone();
        workers.push(std::thread::spawn(move || {
            let _ = env
                .cmd()
                .current_dir(&ws)
                .args([
                    "run",
                    "-d",
                    "--name",
                    &format!("load-{i}"),
                    "--",
                    "sh",
                    "-c",
                    "for i in $(seq 300); do echo $i; getent hosts n$i.example.invalid; done",
                ])
                .output();
        }));
    }
    for i in 0..4 {
        let env = env.clone();
        let ws = ws.clone();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("cycle-{i}-{k}");
                let _ = env
                    .cmd()
                    .current_dir(&ws)
                    .args(["run", "-d", "--name", &name, "--", "sleep", "30"])
                    .output();
                let _ = env.cmd().args(["stop", "-t", "0", &name]).output();
                k += 1;
            }
        }));
    }
    wait_until(Duration::from_secs(90), || {
        acked(&env).filter(|(a, _)| *a >= a0 + 1000)
    })
    .expect("entries are acknowledged under load");
    // Snapshot what each log holds (all of it acknowledged or about to be), the daemon's
    // own log included, then kill.
    let mut snapshot: HashMap<String, Vec<Value>> = HashMap::new();
    for id in all_run_ids(&env) {
        if let Some(e) = log_entries(&env, &format!("/v1/runs/{id}/audit")) {
            snapshot.insert(id, e);
        }
    }
    let daemon_before = log_entries(&env, "/v1/audit/daemon").unwrap();
    let (a1, _) = acked(&env).unwrap();
    let net: usize = snapshot
        .values()
        .flatten()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t == "net.denied" || t == "net.request")
                && e["data"]["kind"] == "dns"
                && e["data"]["host"]
                    .as_str()
                    .is_some_and(|h| h.contains(".example.invalid"))
        })
        .count();
    assert!(
        net >= 200,
        "the load must include network records: {net} DNS records in the snapshot"
    );
    let pid = env.daemon_pid().unwrap();
    // SAFETY: kill(2) on a pid we just read from the daemon's health.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    wait_until(Duration::from_secs(10), || (!pid_alive(pid)).then_some(())).expect("daemon killed");
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }

    // Restart (the next CLI call) and check every log.
    env.ok(&["ps", "-a", "-q"]);
    let t1 = total(&env);
    eprintln!(
        "{} entries acknowledged under load before the kill ({net} DNS records among them), {} runs snapshotted; logs held {t0} entries before, {t1} after",
        a1 - a0,
        snapshot.len()
    );
    assert!(
        t1 >= t0 + (a1 - a0),
        "acknowledged entries lost: {t1} < {t0} + {a1} - {a0}"
    );
    let dir = env.dir.path().join("bundles");
    std::fs::create_dir_all(&dir).unwrap();
    for id in all_run_ids(&env) {
        let path = dir.join(format!("{id}.json"));
        env.ok(&["audit", "export", &id, "-o", path.to_str().unwrap()]);
        let (code, outp, err) = verify(&env, &path, &[]);
        assert_eq!(code, 0, "{id}: {outp}{err}");
        let bundle: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let entries = bundle["entries"].as_array().unwrap();
        if let Some(before) = snapshot.get(&id) {
            assert!(
                entries.len() >= before.len(),
                "{id}: {} entries after restart, {} before the kill",
                entries.len(),
                before.len()
            );
            for (a, b) in before.iter().zip(entries) {
                assert_eq!(a, b, "{id}: an acknowledged entry changed");
            }
        }
    }
    let daemon = dir.join("daemon.json");
    env.ok(&[
        "audit",
        "export",
        "--daemon",
        "-o",
        daemon.to_str().unwrap(),
    ]);
    assert_eq!(verify(&env, &daemon, &[]).0, 0);
    let bundle: Value = serde_json::from_slice(&std::fs::read(&daemon).unwrap()).unwrap();
    let entries = bundle["entries"].as_array().unwrap();
    assert!(
        entries.len() > daemon_before.len(),
        "the restart is recorded after what was acknowledged"
    );
    for (a, b) in daemon_before.iter().zip(entries) {
        assert_eq!(a, b, "daemon log: an acknowledged entry changed");
    }
}

/// Read `GET /v1/events?run=ID` (SSE) until `until` appears or 20 s pass.
fn collect_events(
    socket: PathBuf,
    id: String,
    until: &'static str,
) -> std::thread::JoinHandle<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /v1/events?run={id} HTTP/1.1\r\nhost: paddock\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    // The subscription exists once the stream's first bytes arrived.
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(": paddock events")
        && std::time::Instant::now() < deadline
    {
        if let Ok(n) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&got).contains(until) && std::time::Instant::now() < deadline
        {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
}

#[test]
fn removing_an_unstarted_run_is_a_recorded_transition_and_every_daemon_exit_records_a_stop() {
    let env = Env::new();
    let ws = workspace(&env);
    env.ok(&["ps"]);

    // A run created but never started, then removed: `run.state` created → stopped is
    // published (and recorded, closing its log) before `run.removed`.
    let body = serde_json::json!({
        "name": "never", "workspace": ws, "command": ["true"], "start": false
    })
    .to_string();
    let (status, run) = request(&env.socket(), "POST", "/v1/runs", Some(&body)).unwrap();
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    // (Readable at once: a brand-new log's files are created by its writer's thread.)
    let before = json(&env, &["audit", &id, "--json"]);
    assert_eq!(before["log_id"], id.as_str());
    let events = collect_events(env.socket(), id.clone(), "event: run.removed");
    env.ok(&["rm", "never"]);
    let events = events.join().unwrap();
    let state_at = events
        .find("event: run.state")
        .unwrap_or_else(|| panic!("no run.state published on rm:\n{events}"));
    let removed_at = events.find("event: run.removed").unwrap();
    assert!(state_at < removed_at, "{events}");
    let state_line = events[state_at..]
        .lines()
        .find(|l| l.starts_with("data: "))
        .unwrap();
    let state: Value = serde_json::from_str(&state_line["data: ".len()..]).unwrap();
    assert_eq!(state["data"]["from"], "created", "{state}");
    assert_eq!(state["data"]["to"], "stopped", "{state}");
    let removed = json(
        &env,
        &["audit", "--daemon", "--type", "run.removed", "--json"],
    );
    let removed = removed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["run_id"] == id.as_str())
        .cloned()
        .expect("run.removed in the daemon log");
    assert_eq!(
        removed["data"]["audit_checkpoint"]["tree_size"], 3,
        "the run's final checkpoint covers run.created, run.state created and the recorded created → stopped"
    );

    // A daemon that fails after recording its start (here: its socket path is taken by a
    // directory) records its stop, with the error, and closes its logs.
    env.stop_daemon();
    let sock = env.socket();
    std::fs::create_dir_all(sock.join("in-the-way")).unwrap();
    let out = env.run(&["daemon"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("daemon.sock"),
        "{out:?}"
    );
    std::fs::remove_dir_all(&sock).unwrap();
    env.ok(&["ps"]);
    let log = json(&env, &["audit", "--daemon", "--json"]);
    let entries = log["entries"].as_array().unwrap();
    let failed = entries
        .iter()
        .position(|e| {
            e["type"] == "daemon.stop"
                && e["data"]["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("daemon.sock"))
        })
        .unwrap_or_else(|| panic!("no daemon.stop with the error: {entries:#?}"));
    assert_eq!(entries[failed - 1]["type"], "daemon.start");
    assert_eq!(
        entries[failed - 1]["data"]["pid"],
        entries[failed]["data"]["pid"]
    );
    assert_eq!(entries[failed + 1]["type"], "daemon.start", "{entries:#?}");
    // The clean stop before it carries no error.
    let clean = entries[..failed]
        .iter()
        .rfind(|e| e["type"] == "daemon.stop")
        .unwrap();
    assert!(clean["data"].get("error").is_none(), "{clean}");
    let path = env.dir.path().join("daemon.json");
    env.ok(&["audit", "export", "--daemon", "-o", path.to_str().unwrap()]);
    let (code, outp, err) = verify(&env, &path, &["--allow-uncovered"]);
    assert_eq!(code, 0, "{outp}{err}");
}
