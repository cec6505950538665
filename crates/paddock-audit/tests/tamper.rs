//! The tamper matrix: every manipulation of an exported bundle is detected, and the error
//! names the check and the entry or checkpoint index.

mod common;

use paddock_audit::{
    Bundle, Checkpoint, Location, MerkleTree, PinnedKey, VerifyError, VerifyOptions, verify_bundle,
    verify_bundle_with,
};
use serde_json::json;

/// 25 entries; checkpoints at sizes 10, 20 and 25 (indices 0, 1, 2).
fn bundle() -> Bundle {
    let dir = tempfile::tempdir().unwrap();
    let log = common::build_log(dir.path(), 25, 5, 10);
    let b = log.export_bundle().unwrap();
    let sizes: Vec<u64> = b.checkpoints.iter().map(|c| c.tree_size).collect();
    assert_eq!(sizes, [10, 20, 25]);
    b
}

fn fails(b: &Bundle) -> VerifyError {
    let err = verify_bundle(b).expect_err("tampered bundle verified");
    // Every failure message is self-contained and carries a hint.
    assert!(!err.hint().is_empty());
    err
}

fn has(err: &VerifyError, needles: &[&str]) {
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
    }
}

#[test]
fn untouched_bundle_verifies() {
    let b = bundle();
    let r = verify_bundle(&b).unwrap();
    assert_eq!((r.entries, r.checkpoints, r.signed_size), (25, 3, 25));
    assert_eq!(r.uncovered, None);
    // and survives a JSON round trip (canonical re-encoding of every entry)
    let back = Bundle::from_json(&b.to_json()).unwrap();
    verify_bundle(&back).unwrap();
    let pretty = serde_json::to_vec_pretty(&b).unwrap();
    verify_bundle(&Bundle::from_json(&pretty).unwrap()).unwrap();
}

#[test]
fn flipped_byte_in_entry_data() {
    let mut b = bundle();
    // Flip one byte of the path string of entry 13: "/v1/items/13" -> "/v1/items/12".
    b.entries[13].data["path"] = json!("/v1/items/12");
    let err = fails(&b);
    assert!(matches!(
        err,
        VerifyError::RootMismatch {
            checkpoint: 1,
            tree_size: 20,
            verified_up_to: 10,
            ..
        }
    ));
    assert_eq!(err.location(), Location::Checkpoint(1));
    has(
        &err,
        &[
            "root mismatch at checkpoint 1",
            "entries 10..20",
            "entries 0..10 verified",
        ],
    );

    // The same flip done on the raw JSON bytes of the bundle.
    let b = bundle();
    let mut raw = b.to_json();
    let needle = b"\"/v1/items/3\"";
    let at = raw.windows(needle.len()).position(|w| w == needle).unwrap();
    raw[at + needle.len() - 2] ^= 0x01; // '3' -> '2'
    let err = fails(&Bundle::from_json(&raw).unwrap());
    assert!(
        matches!(err, VerifyError::RootMismatch { checkpoint: 0, .. }),
        "{err}"
    );

    // Other fields are covered too: ts and type.
    let mut b = bundle();
    b.entries[21].ts += 1;
    assert!(matches!(
        fails(&b),
        VerifyError::RootMismatch { checkpoint: 2, .. }
    ));
    let mut b = bundle();
    b.entries[2].kind = "net.requesu".into();
    assert!(matches!(
        fails(&b),
        VerifyError::RootMismatch { checkpoint: 0, .. }
    ));
}

#[test]
fn deleted_middle_entry() {
    let mut b = bundle();
    b.entries.remove(12);
    let err = fails(&b);
    assert_eq!(
        err,
        VerifyError::SequenceGap {
            index: 12,
            expected: 12,
            found: 13
        }
    );
    assert_eq!(err.location(), Location::Entry(12));
    has(
        &err,
        &["entry 12", "sequence gap", "expected seq 12, found 13"],
    );

    // Deleted and renumbered so the sequence looks intact: the signed root catches it.
    let mut b = bundle();
    b.entries.remove(12);
    for (i, e) in b.entries.iter_mut().enumerate() {
        e.seq = i as u64;
    }
    let err = fails(&b);
    assert!(
        matches!(
            err,
            VerifyError::RootMismatch {
                checkpoint: 1,
                verified_up_to: 10,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn two_entries_swapped() {
    let mut b = bundle();
    b.entries.swap(5, 6);
    let err = fails(&b);
    assert_eq!(
        err,
        VerifyError::SequenceOutOfOrder {
            index: 5,
            expected: 5,
            found: 6
        }
    );
    has(&err, &["entry 5", "out of order", "swapped"]);

    // Swapped, with the seq numbers swapped back: the root of checkpoint 0 catches it.
    let mut b = bundle();
    b.entries.swap(5, 6);
    b.entries[5].seq = 5;
    b.entries[6].seq = 6;
    let err = fails(&b);
    assert!(
        matches!(
            err,
            VerifyError::RootMismatch {
                checkpoint: 0,
                tree_size: 10,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn duplicated_entry() {
    let mut b = bundle();
    let dup = b.entries[7].clone();
    b.entries.insert(8, dup);
    let err = fails(&b);
    assert_eq!(
        err,
        VerifyError::SequenceDuplicate {
            index: 8,
            seq: 7,
            previous: 7
        }
    );
    has(&err, &["entry 8", "duplicate seq 7"]);
}

#[test]
fn truncated_tail() {
    let mut b = bundle();
    b.entries.truncate(22);
    let err = fails(&b);
    assert_eq!(
        err,
        VerifyError::CheckpointBeyondEntries {
            checkpoint: 2,
            tree_size: 25,
            entries: 22
        }
    );
    assert_eq!(err.location(), Location::Checkpoint(2));
    has(
        &err,
        &["checkpoint 2 covers 25 entries", "only 22", "truncated"],
    );
}

#[test]
fn appended_forged_entry() {
    let mut b = bundle();
    let mut forged = b.entries[24].clone();
    forged.seq = 25;
    forged.data = json!({"host": "evil.example", "decision": "allow"});
    b.entries.push(forged);
    // Strict (default): fails, naming the uncovered range.
    let err = fails(&b);
    assert_eq!(
        err,
        VerifyError::Uncovered {
            range: 25..26,
            signed_size: 25
        }
    );
    assert_eq!(err.location(), Location::Entry(25));
    has(
        &err,
        &["entries 25..26 are not covered by any signed checkpoint"],
    );
    // Lenient: verifies the signed part and flags the rest.
    let opts = VerifyOptions {
        allow_uncovered: true,
        ..Default::default()
    };
    let r = verify_bundle_with(&b, &opts).unwrap();
    assert_eq!(r.signed_size, 25);
    assert_eq!(r.uncovered, Some(25..26));
}

/// Rewrites entry 3 and re-signs every checkpoint with the attacker's key.
fn resigned(b: &Bundle, replace_public_key: bool, keep_key_id: bool) -> Bundle {
    let mut b = b.clone();
    b.entries[3].data = json!({"host": "innocent.example", "decision": "allow"});
    let tree = MerkleTree::from_leaves(b.entries.iter().map(|e| e.leaf_hash().unwrap()));
    let evil = common::attacker();
    let original_key_id = b.public_key.key_id;
    for cp in &mut b.checkpoints {
        let mut n = Checkpoint::sign(
            &evil,
            &cp.log_id,
            cp.tree_size,
            tree.root_at(cp.tree_size).unwrap(),
            cp.time,
        );
        if keep_key_id {
            n.key_id = original_key_id;
        }
        *cp = n;
    }
    if replace_public_key {
        b.public_key = evil.public_key().clone();
    }
    b
}

#[test]
fn rewritten_chain_resigned_with_another_key() {
    let original = bundle();
    let pin = PinnedKey::PublicKey(original.public_key.clone());
    let pinned = VerifyOptions {
        pinned_key: Some(pin),
        ..Default::default()
    };

    // A complete forgery (entries, checkpoints and public key replaced) is self-consistent:
    // only a key pinned out of band detects it.
    let forged = resigned(&original, true, false);
    verify_bundle(&forged).expect("self-consistent forgery verifies without a pin");
    let err = verify_bundle_with(&forged, &pinned).unwrap_err();
    assert!(matches!(err, VerifyError::PinnedKeyMismatch { .. }));
    assert_eq!(err.location(), Location::Bundle);
    has(
        &err,
        &[
            "wrong key",
            &common::attacker().key_id().to_hex(),
            &original.public_key.key_id.to_hex(),
        ],
    );
    // Pinning only the key id works the same.
    let by_id = VerifyOptions {
        pinned_key: Some(PinnedKey::KeyId(original.public_key.key_id)),
        ..Default::default()
    };
    assert!(matches!(
        verify_bundle_with(&forged, &by_id),
        Err(VerifyError::PinnedKeyMismatch { .. })
    ));
    verify_bundle_with(&original, &by_id).unwrap();

    // Re-signed but the bundle's public key left alone: checkpoint 0 names the wrong key.
    let err = fails(&resigned(&original, false, false));
    assert!(
        matches!(err, VerifyError::CheckpointWrongKey { checkpoint: 0, .. }),
        "{err}"
    );
    has(&err, &["checkpoint 0", "wrong key"]);

    // Re-signed while claiming the original key id: the signature fails.
    let err = fails(&resigned(&original, false, true));
    assert!(
        matches!(
            err,
            VerifyError::CheckpointBadSignature { checkpoint: 0, .. }
        ),
        "{err}"
    );
}

#[test]
fn forged_checkpoint() {
    // Checkpoint 1 altered to commit to a different root, signature left as it was.
    let mut b = bundle();
    b.checkpoints[1].root_hash.0[0] ^= 0x01;
    let err = fails(&b);
    assert!(matches!(
        err,
        VerifyError::CheckpointBadSignature {
            checkpoint: 1,
            tree_size: 20,
            ..
        }
    ));
    assert_eq!(err.location(), Location::Checkpoint(1));
    has(&err, &["checkpoint 1", "bad signature"]);

    // Or with a garbage signature, or claiming a larger size.
    let mut b = bundle();
    b.checkpoints[2].signature = "00".repeat(64);
    assert!(matches!(
        fails(&b),
        VerifyError::CheckpointBadSignature { checkpoint: 2, .. }
    ));
    let mut b = bundle();
    b.checkpoints[0].tree_size = 11;
    assert!(matches!(
        fails(&b),
        VerifyError::CheckpointBadSignature { checkpoint: 0, .. }
    ));
    // A checkpoint moved from another log (log id is signed).
    let mut b = bundle();
    b.checkpoints[0].log_id = "run-other".into();
    assert!(matches!(
        fails(&b),
        VerifyError::CheckpointLogId { checkpoint: 0, .. }
    ));
}

#[test]
fn replayed_older_checkpoint_presented_as_newer() {
    // The oldest checkpoint appended again as the newest.
    let mut b = bundle();
    let old = b.checkpoints[0].clone();
    b.checkpoints.push(old);
    let err = fails(&b);
    assert_eq!(
        err,
        VerifyError::CheckpointSizeRegressed {
            checkpoint: 3,
            tree_size: 10,
            previous: 2,
            previous_size: 25
        }
    );
    has(&err, &["checkpoint 3", "not monotonic", "replayed"]);

    // Reordered: [c0, c2, c1].
    let mut b = bundle();
    b.checkpoints.swap(1, 2);
    assert!(matches!(
        fails(&b),
        VerifyError::CheckpointSizeRegressed { checkpoint: 2, .. }
    ));

    // The newest checkpoint replayed (same size, same time) after itself.
    let mut b = bundle();
    let last = b.checkpoints[2].clone();
    b.checkpoints.push(last);
    let err = fails(&b);
    assert!(
        matches!(
            err,
            VerifyError::CheckpointTimeRegressed {
                checkpoint: 3,
                previous: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn other_bundle_level_failures() {
    let mut b = bundle();
    b.format = "something/2".into();
    assert!(matches!(fails(&b), VerifyError::Format { .. }));
    let mut b = bundle();
    b.public_key.key_id.0[0] ^= 1;
    assert!(matches!(fails(&b), VerifyError::PublicKey(_)));
    let mut b = bundle();
    b.entries[4].kind = String::new();
    assert!(matches!(
        fails(&b),
        VerifyError::EntryInvalid { index: 4, .. }
    ));
}

#[test]
fn large_bundle_uses_parallel_hashing_and_still_locates_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::build_log(dir.path(), 20_000, 1000, 5000);
    let mut b = log.export_bundle().unwrap();
    verify_bundle(&b).unwrap();
    b.entries[17_345].data["bytes"] = json!(0);
    let err = fails(&b);
    assert!(
        matches!(
            err,
            VerifyError::RootMismatch {
                checkpoint: 3,
                verified_up_to: 15_000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn checkpoints_on_block_boundaries() {
    // Sizes 1024 and 2048 end exactly on the verifier's parallel blocks; 3000 does not.
    let dir = tempfile::tempdir().unwrap();
    let log = common::build_log(dir.path(), 3000, 512, 1024);
    let b = log.export_bundle().unwrap();
    let sizes: Vec<u64> = b.checkpoints.iter().map(|c| c.tree_size).collect();
    assert_eq!(sizes, [1024, 2048, 3000]);
    verify_bundle(&b).unwrap();
    for (at, cp, from) in [
        (0, 0, 0),
        (1023, 0, 0),
        (1024, 1, 1024),
        (2047, 1, 1024),
        (2048, 2, 2048),
        (2999, 2, 2048),
    ] {
        let mut t = b.clone();
        t.entries[at].ts ^= 1;
        let err = fails(&t);
        assert!(
            matches!(err, VerifyError::RootMismatch { checkpoint, verified_up_to, .. } if checkpoint == cp && verified_up_to == from),
            "entry {at}: {err}"
        );
    }
    // A root error before a sequence error is reported first; after it, the sequence error.
    let mut t = b.clone();
    t.entries[10].ts ^= 1;
    t.entries.remove(2500);
    assert!(matches!(
        fails(&t),
        VerifyError::RootMismatch { checkpoint: 0, .. }
    ));
    let mut t = b.clone();
    t.entries[2100].ts ^= 1;
    t.entries.remove(1500);
    assert!(matches!(
        fails(&t),
        VerifyError::SequenceGap { index: 1500, .. }
    ));
}

#[test]
fn rollback_to_an_older_signed_prefix_is_caught_with_a_known_checkpoint() {
    // A genuine older state of the log: only the first 20 entries and checkpoints 0 and 1.
    // It verifies on its own (it was signed), so the verifier needs something it saw before.
    let full = bundle();
    let mut old = full.clone();
    old.entries.truncate(20);
    old.checkpoints.truncate(2);
    verify_bundle(&old).unwrap();
    let known = full.checkpoints[2].clone();
    let opts = VerifyOptions {
        known_checkpoint: Some(known.clone()),
        ..Default::default()
    };
    let err = verify_bundle_with(&old, &opts).unwrap_err();
    assert_eq!(
        err,
        VerifyError::RolledBack {
            known_size: 25,
            known_time: known.time,
            signed_size: 20
        }
    );
    has(
        &err,
        &["rolled back", "signed up to tree size 20", "covers 25"],
    );
    // The full log extends the known checkpoint, and so does a later one.
    verify_bundle_with(&full, &opts).unwrap();
    let earlier = VerifyOptions {
        known_checkpoint: Some(full.checkpoints[0].clone()),
        ..Default::default()
    };
    verify_bundle_with(&full, &earlier).unwrap();
    verify_bundle_with(&old, &earlier).unwrap();
    // A forged "known" checkpoint is refused rather than trusted.
    let mut forged = known.clone();
    forged.tree_size = 24;
    let opts = VerifyOptions {
        known_checkpoint: Some(forged),
        ..Default::default()
    };
    assert!(matches!(
        verify_bundle_with(&full, &opts),
        Err(VerifyError::KnownCheckpointInvalid { .. })
    ));
    // A different history signed by the same key (split view) disagrees with the known one.
    let dir = tempfile::tempdir().unwrap();
    let (mut other, _) = paddock_audit::AuditLog::open(
        dir.path(),
        "run-test",
        common::signer(),
        common::config(1000),
    )
    .unwrap();
    other.append_batch(&common::entries(100..125)).unwrap();
    other.checkpoint_at(known.time + 1).unwrap();
    let fork = other.export_bundle().unwrap();
    let opts = VerifyOptions {
        known_checkpoint: Some(known),
        ..Default::default()
    };
    let err = verify_bundle_with(&fork, &opts).unwrap_err();
    assert!(
        matches!(err, VerifyError::KnownCheckpointFork { known_size: 25, .. }),
        "{err}"
    );
}

#[test]
fn bundle_verified_straight_from_json_bytes() {
    use paddock_audit::verify_bundle_json;
    let dir = tempfile::tempdir().unwrap();
    let log = common::build_log(dir.path(), 9000, 1000, 4000);
    let b = log.export_bundle().unwrap();
    let raw = b.to_json();
    let opts = VerifyOptions::default();
    assert_eq!(
        verify_bundle_json(&raw, &opts).unwrap(),
        verify_bundle(&b).unwrap()
    );
    verify_bundle_json(&serde_json::to_vec_pretty(&b).unwrap(), &opts).unwrap();
    // a flipped byte in entry 6001's data
    let needle = b"\"/v1/items/6001\"";
    let at = raw.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut t = raw.clone();
    t[at + 5] = b'2';
    let err = verify_bundle_json(&t, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::RootMismatch {
                checkpoint: 1,
                verified_up_to: 4000,
                ..
            }
        ),
        "{err}"
    );
    // an entry that is not an entry, and a file that is not JSON
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["entries"][5000].as_object_mut().unwrap().remove("type");
    let err = verify_bundle_json(&serde_json::to_vec(&v).unwrap(), &opts).unwrap_err();
    assert!(
        matches!(err, VerifyError::EntryJson { index: 5000, .. }),
        "{err}"
    );
    let err = verify_bundle_json(&raw[..raw.len() / 2], &opts).unwrap_err();
    assert!(matches!(err, VerifyError::Json { .. }), "{err}");
}
