//! Offline audit bundle verification (`paddock_audit::verify_bundle_json`, what
//! `paddock audit verify FILE` runs, and `verify_bundle_with` on a parsed `Bundle`).
//!
//! Input: a selector byte, then either
//! - bundle JSON (seeds are real exports): both verifiers must agree — the same verdict
//!   and the same report (they canonicalise entry data in two different ways, and a
//!   bundle one accepts and the other refuses would be a verifier split); a bundle that
//!   verifies has, recomputed independently, the signed root over its entries and valid
//!   signatures on every checkpoint;
//! - or a description of a log, from which a genuine bundle is built and signed (with a
//!   fixed test key) the way the store does: it must verify by both paths and round-trip
//!   through its JSON; then one tampering (an entry covered by a checkpoint edited,
//!   dropped or moved; a checkpoint field changed; another key; a rollback against a known
//!   checkpoint) must make verification fail.
//!
//! Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use paddock_audit::{
    BUNDLE_FORMAT, Bundle, Checkpoint, Entry, Hash, MerkleTree, PinnedKey, Signer, VerifyOptions,
    verify_bundle_json, verify_bundle_with,
};
use serde_json::Value;

fn signer() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::from_seed([7; 32]))
}

fn other_signer() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::from_seed([8; 32]))
}

fn options(bits: u8) -> VerifyOptions {
    VerifyOptions {
        allow_uncovered: bits & 1 != 0,
        pinned_key: (bits & 2 != 0).then(|| PinnedKey::PublicKey(signer().public_key().clone())),
        known_checkpoint: None,
    }
}

/// The JSON verifier and the `Bundle` verifier agree, and what verifies is sound.
fn raw(bits: u8, json: &[u8]) {
    let opts = options(bits);
    let by_json = verify_bundle_json(json, &opts);
    let parsed = Bundle::from_json(json);
    let Ok(bundle) = parsed else {
        assert!(
            by_json.is_err(),
            "verify_bundle_json accepts what Bundle::from_json refuses: {:?}",
            Bundle::from_json(json).err()
        );
        return;
    };
    let by_struct = verify_bundle_with(&bundle, &opts);
    match (&by_json, &by_struct) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the two verifiers report differently"),
        (Err(_), Err(_)) => {}
        _ => panic!("verifiers disagree: json {by_json:?}, parsed {by_struct:?}"),
    }
    let Ok(report) = by_struct else { return };
    // Independent recomputation of what the report claims.
    let leaves: Vec<Hash> = bundle
        .entries
        .iter()
        .map(|e| e.leaf_hash().expect("a verified entry encodes"))
        .collect();
    let tree = MerkleTree::from_leaves(leaves);
    assert_eq!(report.entries, bundle.entries.len() as u64);
    assert_eq!(report.checkpoints, bundle.checkpoints.len());
    if let Some(root) = report.signed_root {
        assert_eq!(tree.root_at(report.signed_size).ok(), Some(root));
    }
    let vk = bundle.public_key.verifying_key().expect("a verified key");
    for cp in &bundle.checkpoints {
        cp.verify_signature(&vk)
            .expect("a verified checkpoint's signature");
        assert_eq!(tree.root_at(cp.tree_size).ok(), Some(cp.root_hash));
    }
    for (i, e) in bundle.entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
    }
}

fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let pick = if depth >= 3 {
        u.int_in_range(0..=6)?
    } else {
        u.int_in_range(0..=8)?
    };
    Ok(match pick {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<u64>()?),
        3 => Value::from(u.arbitrary::<i64>()?),
        4 => {
            let f: f64 = u.arbitrary()?;
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        5 | 6 => Value::String(u.arbitrary::<String>()?.chars().take(40).collect()),
        7 => Value::Array(
            (0..u.int_in_range(0..=3)?)
                .map(|_| value(u, depth + 1))
                .collect::<Result<_>>()?,
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                let k: String = u.arbitrary::<String>()?.chars().take(12).collect();
                m.insert(k, value(u, depth + 1)?);
            }
            Value::Object(m)
        }
    })
}

const KINDS: &[&str] = &["run.state", "net.request", "grant.used", "init.step", "ü"];

fn kind(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 4)? {
        let s: String = u.arbitrary::<String>()?.chars().take(20).collect();
        if !s.is_empty() && !s.chars().any(char::is_control) {
            return Ok(s);
        }
    }
    Ok(u.choose(KINDS)?.to_string())
}

fn sign_all(s: &Signer, log_id: &str, tree: &MerkleTree, points: &[(u64, u64)]) -> Vec<Checkpoint> {
    points
        .iter()
        .map(|&(size, time)| {
            let root = tree.root_at(size).expect("size within the tree");
            Checkpoint::sign(s, log_id, size, root, time)
        })
        .collect()
}

fn verify(b: &Bundle, opts: &VerifyOptions) -> bool {
    verify_bundle_with(b, opts).is_ok()
}

fn built(u: &mut Unstructured<'_>) -> Result<()> {
    let log_id = u.choose(&["run_0123456789ab", "daemon", ""])?.to_string();
    let n = u.int_in_range(0..=10u64)?;
    let mut ts: u64 = u.int_in_range(0..=u64::MAX / 2)?;
    let mut entries = Vec::new();
    for seq in 0..n {
        ts = ts.saturating_add(u.int_in_range(0..=1000)?);
        entries.push(Entry {
            seq,
            ts,
            kind: kind(u)?,
            data: value(u, 0)?,
        });
    }
    let tree = MerkleTree::from_leaves(
        entries
            .iter()
            .map(|e| e.leaf_hash().expect("a built entry encodes")),
    );
    // Up to two checkpoints, sizes non-decreasing, times increasing.
    let mut points = Vec::new();
    let mut size = 0;
    let mut time: u64 = u.int_in_range(1..=1 << 40)?;
    for _ in 0..u.int_in_range(0..=2)? {
        size = u.int_in_range(size..=n)?;
        time += u.int_in_range(1..=1000)?;
        points.push((size, time));
    }
    let bundle = Bundle {
        format: BUNDLE_FORMAT.to_string(),
        log_id: log_id.clone(),
        public_key: signer().public_key().clone(),
        checkpoints: sign_all(signer(), &log_id, &tree, &points),
        entries: entries.clone(),
    };
    let lenient = VerifyOptions {
        allow_uncovered: true,
        ..VerifyOptions::default()
    };
    let report = verify_bundle_with(&bundle, &lenient)
        .unwrap_or_else(|e| panic!("a genuine bundle does not verify: {e}"));
    let signed = report.signed_size;
    assert_eq!(signed, size);
    assert_eq!(
        verify(&bundle, &VerifyOptions::default()),
        signed == n,
        "strict verification and coverage disagree"
    );
    let json = bundle.to_json();
    assert_eq!(
        Bundle::from_json(&json).as_ref().ok(),
        Some(&bundle),
        "bundle changed through JSON"
    );
    assert_eq!(
        verify_bundle_json(&json, &lenient).as_ref().ok(),
        Some(&report),
        "the JSON verifier reports differently"
    );

    // One tampering, which must be detected.
    let mut t = bundle.clone();
    let mut opts = lenient.clone();
    let covered = signed as usize;
    match u.int_in_range(0..=7)? {
        0 if covered > 0 => {
            let i = u.int_in_range(0..=covered - 1)?;
            match u.int_in_range(0..=2)? {
                0 => t.entries[i].ts ^= 1 << u.int_in_range(0..=63)?,
                1 => t.entries[i].kind.push('x'),
                _ => {
                    let old = t.entries[i].data.take();
                    t.entries[i].data = Value::Array(vec![old]);
                }
            }
        }
        1 if covered > 0 => {
            let i = u.int_in_range(0..=covered - 1)?;
            t.entries.remove(i);
        }
        2 if covered > 1 => {
            let i = u.int_in_range(0..=covered - 2)?;
            t.entries.swap(i, i + 1);
            if t.entries[i].encode() == t.entries[i + 1].encode() {
                return Ok(());
            }
        }
        3 if !t.checkpoints.is_empty() => {
            let k = u.int_in_range(0..=t.checkpoints.len() - 1)?;
            let cp = &mut t.checkpoints[k];
            match u.int_in_range(0..=3)? {
                0 => cp.tree_size ^= 1,
                1 => cp.time ^= 1,
                2 => cp.root_hash.0[u.int_in_range(0..=31)?] ^= 1,
                _ => cp.log_id.push('x'),
            }
        }
        4 if !t.checkpoints.is_empty() => {
            // Another key claims the log: its checkpoints do not verify under it.
            t.public_key = other_signer().public_key().clone();
        }
        5 => {
            // The whole log re-signed with another key: self-consistent, caught by the pin.
            t.public_key = other_signer().public_key().clone();
            t.checkpoints = sign_all(other_signer(), &log_id, &tree, &points);
            assert!(verify(&t, &opts), "a re-signed log is self-consistent");
            opts.pinned_key = Some(PinnedKey::PublicKey(signer().public_key().clone()));
        }
        6 if t.checkpoints.len() == 2 && points[0].0 < points[1].0 => {
            // Rolled back to the older checkpoint, against a verifier who saw the newer.
            opts.known_checkpoint = t.checkpoints.pop();
        }
        7 if !t.checkpoints.is_empty() => {
            // A checkpoint moved to another log.
            let k = u.int_in_range(0..=t.checkpoints.len() - 1)?;
            let cp = &t.checkpoints[k];
            t.checkpoints[k] = Checkpoint::sign(
                signer(),
                &format!("{log_id}x"),
                cp.tree_size,
                cp.root_hash,
                cp.time,
            );
        }
        _ => return Ok(()),
    }
    if let Ok(r) = verify_bundle_with(&t, &opts) {
        panic!("tampering not detected: {r:?}");
    }
    assert!(
        verify_bundle_json(&t.to_json(), &opts).is_err(),
        "tampering not detected by the JSON verifier"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 0x80 == 0 {
        raw(which, rest);
    } else {
        let _ = built(&mut Unstructured::new(rest));
    }
});
