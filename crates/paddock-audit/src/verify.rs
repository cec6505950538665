//! Offline verification of a bundle or a log directory, and of standalone proofs.
//!
//! Owns: every check a third party runs, and the error that says which check failed and
//! where ([`VerifyError::location`]): entry indices are positions in the bundle's `entries`
//! array (0-based, equal to `seq` in an intact log); checkpoint indices are positions in
//! `checkpoints` (0-based).
//! Never: needs a daemon, a network, or the signing key; trusts the bundle's own public key
//! beyond what it can check (pin a key with [`VerifyOptions::pinned_key`] to detect a log
//! rewritten and re-signed with another key).
//!
//! Order of checks: the public key (and the pin); each checkpoint's log id, key id,
//! signature, then monotonicity against the previous one (size never shrinks, time strictly
//! grows, equal sizes have equal roots); then entries in order: sequence (gap, duplicate,
//! out of order), and the root at every checkpoint's size; then checkpoints larger than
//! the entries (a truncated log); then, given a checkpoint seen earlier
//! ([`VerifyOptions::known_checkpoint`]), that the log extends it (no rollback, no fork);
//! then entries past the last checkpoint.
//!
//! What a bundle alone cannot prove: that it is the *whole* log (an older, genuinely signed
//! prefix verifies; pass a known checkpoint to catch that), and that its key is the
//! daemon's (a log rewritten and re-signed with another key, public key replaced, is
//! self-consistent; pin the key).
//!
//! Entries not covered by any signed checkpoint: by default (strict) verification fails
//! with [`VerifyError::Uncovered`], because anyone can append such entries. With
//! [`VerifyOptions::allow_uncovered`] it succeeds and reports them in
//! [`VerifyReport::uncovered`] (for a live log exported between checkpoints).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{BUNDLE_FORMAT, Bundle};
use crate::checkpoint::{Checkpoint, SignatureError};
use crate::entry::{CanonicalEntry, EncodedHeader, Entry, EntryError, encode_fields_canonical};
use crate::hash::{Hash, leaf_hash};
use crate::keys::{KeyError, PublicKeyInfo};
use crate::merkle::{ConsistencyProof, Frontier, InclusionProof, ProofError};
use crate::record::{CHECKPOINTS_MAGIC, ENTRIES_MAGIC, FILE_HEADER_LEN, RecordReader, Step};
use crate::store::{CHECKPOINTS_FILE, ENTRIES_FILE, META_FILE};

/// A key the verifier trusts, given separately from the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedKey {
    /// The full public key.
    PublicKey(PublicKeyInfo),
    /// Only its key id (SHA-256 of the public key).
    KeyId(Hash),
}

impl PinnedKey {
    /// Parses a pin as a person passes it: `ed25519:<64 hex>` (a public key),
    /// `sha256:<64 hex>` (a key id), or the JSON of an exported [`PublicKeyInfo`].
    pub fn parse(s: &str) -> Result<PinnedKey, KeyError> {
        let s = s.trim();
        if let Some(hex) = s.strip_prefix("ed25519:") {
            return PublicKeyInfo::from_hex(hex).map(PinnedKey::PublicKey);
        }
        if let Some(hex) = s.strip_prefix("sha256:") {
            return Hash::from_hex(hex)
                .map(PinnedKey::KeyId)
                .map_err(|_| KeyError::NotHex);
        }
        if s.starts_with('{') {
            let info: PublicKeyInfo = serde_json::from_str(s).map_err(|_| KeyError::NotHex)?;
            info.verifying_key()?;
            return Ok(PinnedKey::PublicKey(info));
        }
        Err(KeyError::NotHex)
    }

    fn key_id(&self) -> Hash {
        match self {
            PinnedKey::PublicKey(k) => k.key_id,
            PinnedKey::KeyId(id) => *id,
        }
    }
}

/// How strict verification is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Require the log to be signed by this key.
    pub pinned_key: Option<PinnedKey>,
    /// Accept entries after the last checkpoint (reported in [`VerifyReport::uncovered`])
    /// instead of failing.
    pub allow_uncovered: bool,
    /// A checkpoint of this log the verifier saw earlier (e.g. kept from a previous export
    /// or published). The log must extend it: same root at its size, and signed at least as
    /// far. Detects a rollback: an older, genuinely signed prefix presented as current.
    pub known_checkpoint: Option<Checkpoint>,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub log_id: String,
    /// Key that signed every checkpoint.
    pub key_id: Hash,
    /// Whether that key was checked against a pinned key.
    pub pinned: bool,
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Entries covered by the last signed checkpoint.
    pub signed_size: u64,
    /// Root of the last signed checkpoint (None without checkpoints).
    pub signed_root: Option<Hash>,
    /// Time of the last signed checkpoint (ms since the Unix epoch).
    pub last_checkpoint_time: Option<u64>,
    /// Entries after the last checkpoint (only with `allow_uncovered`).
    pub uncovered: Option<Range<u64>>,
    /// Remarks that are not failures (e.g. an ignored torn tail in a log directory).
    pub notes: Vec<String>,
}

/// Which check failed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a paddock audit bundle: format is {found:?}, expected {BUNDLE_FORMAT:?}")]
    Format { found: String },
    #[error("bundle public key is unusable: {0}")]
    PublicKey(KeyError),
    #[error(
        "wrong key: the log is signed by key {found}, not the pinned key {pinned}; it was rewritten and re-signed, or it is not the log you expect"
    )]
    PinnedKeyMismatch { found: Hash, pinned: Hash },
    #[error("the known checkpoint given to the verifier is not valid for this log: {reason}")]
    KnownCheckpointInvalid { reason: String },
    #[error(
        "rolled back: the log is signed up to tree size {signed_size}, but a checkpoint already seen covers {known_size} (time {known_time}); entries were removed and an older checkpoint presented as current"
    )]
    RolledBack {
        known_size: u64,
        known_time: u64,
        signed_size: u64,
    },
    #[error(
        "the log disagrees with the known checkpoint at tree size {known_size}: its entries give root {computed}, the known checkpoint signed {signed}; two different histories were signed"
    )]
    KnownCheckpointFork {
        known_size: u64,
        signed: Hash,
        computed: Hash,
    },
    #[error("checkpoint {checkpoint}: belongs to log {found:?}, not {expected:?}")]
    CheckpointLogId {
        checkpoint: usize,
        found: String,
        expected: String,
    },
    #[error(
        "checkpoint {checkpoint} (tree size {tree_size}): wrong key: signed by key {found}, the log's key is {expected}"
    )]
    CheckpointWrongKey {
        checkpoint: usize,
        tree_size: u64,
        found: Hash,
        expected: Hash,
    },
    #[error(
        "checkpoint {checkpoint} (tree size {tree_size}): bad signature ({reason}): forged or altered checkpoint"
    )]
    CheckpointBadSignature {
        checkpoint: usize,
        tree_size: u64,
        reason: SignatureError,
    },
    #[error(
        "checkpoint {checkpoint}: tree size {tree_size} is smaller than checkpoint {previous}'s {previous_size}: checkpoints not monotonic (an older checkpoint replayed as newer, or reordered)"
    )]
    CheckpointSizeRegressed {
        checkpoint: usize,
        tree_size: u64,
        previous: usize,
        previous_size: u64,
    },
    #[error(
        "checkpoint {checkpoint}: time {time} is not after checkpoint {previous}'s {previous_time}: checkpoints not monotonic (an older checkpoint replayed as newer, or reordered)"
    )]
    CheckpointTimeRegressed {
        checkpoint: usize,
        time: u64,
        previous: usize,
        previous_time: u64,
    },
    #[error(
        "checkpoint {checkpoint}: same tree size {tree_size} as checkpoint {previous} but a different root: two histories were signed"
    )]
    CheckpointFork {
        checkpoint: usize,
        tree_size: u64,
        previous: usize,
    },
    #[error("entry {index}: invalid: {reason}")]
    EntryInvalid { index: u64, reason: EntryError },
    #[error(
        "entry {index}: sequence gap: expected seq {expected}, found {found} (entries {expected}..{found} missing or deleted)"
    )]
    SequenceGap {
        index: u64,
        expected: u64,
        found: u64,
    },
    #[error("entry {index}: duplicate seq {seq} (same as entry {previous})")]
    SequenceDuplicate { index: u64, seq: u64, previous: u64 },
    #[error(
        "entry {index}: out of order: expected seq {expected}, found {found} (entries swapped or reordered)"
    )]
    SequenceOutOfOrder {
        index: u64,
        expected: u64,
        found: u64,
    },
    #[error(
        "root mismatch at checkpoint {checkpoint} (tree size {tree_size}): entries {verified_up_to}..{tree_size} do not match the signed root {signed} (computed {computed}); an entry in that range was altered, inserted, removed or reordered{}",
        if *verified_up_to > 0 { format!(" (entries 0..{verified_up_to} verified)") } else { String::new() }
    )]
    RootMismatch {
        checkpoint: usize,
        tree_size: u64,
        verified_up_to: u64,
        signed: Hash,
        computed: Hash,
    },
    #[error(
        "checkpoint {checkpoint} covers {tree_size} entries but the log has only {entries}: truncated (entries {entries}..{tree_size} missing)"
    )]
    CheckpointBeyondEntries {
        checkpoint: usize,
        tree_size: u64,
        entries: u64,
    },
    #[error(
        "entries {}..{} are not covered by any signed checkpoint (the last one covers {signed_size}); anyone could have appended them",
        range.start, range.end
    )]
    Uncovered { range: Range<u64>, signed_size: u64 },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("bundle is not valid JSON: {message}")]
    Json { message: String },
    #[error("entry {index}: not a valid entry: {message}")]
    EntryJson { index: u64, message: String },
    #[error("{} at byte {offset} (entry {index}): {reason}", path.display())]
    Record {
        path: PathBuf,
        index: u64,
        offset: u64,
        reason: String,
    },
}

/// Where a verification failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "index", rename_all = "snake_case")]
pub enum Location {
    /// The bundle as a whole (format, key).
    Bundle,
    /// Checkpoint index.
    Checkpoint(usize),
    /// Entry index.
    Entry(u64),
}

impl VerifyError {
    /// Which entry or checkpoint the failure is about.
    pub fn location(&self) -> Location {
        use VerifyError::*;
        match self {
            Format { .. }
            | PublicKey(_)
            | PinnedKeyMismatch { .. }
            | KnownCheckpointInvalid { .. }
            | RolledBack { .. }
            | KnownCheckpointFork { .. }
            | Json { .. }
            | Io { .. } => Location::Bundle,
            CheckpointLogId { checkpoint, .. }
            | CheckpointWrongKey { checkpoint, .. }
            | CheckpointBadSignature { checkpoint, .. }
            | CheckpointSizeRegressed { checkpoint, .. }
            | CheckpointTimeRegressed { checkpoint, .. }
            | CheckpointFork { checkpoint, .. }
            | RootMismatch { checkpoint, .. }
            | CheckpointBeyondEntries { checkpoint, .. } => Location::Checkpoint(*checkpoint),
            EntryInvalid { index, .. }
            | EntryJson { index, .. }
            | SequenceGap { index, .. }
            | SequenceDuplicate { index, .. }
            | SequenceOutOfOrder { index, .. }
            | Record { index, .. } => Location::Entry(*index),
            Uncovered { range, .. } => Location::Entry(range.start),
        }
    }

    /// Short stable name of the failed check (for `--json` output and tests).
    pub fn check(&self) -> &'static str {
        use VerifyError::*;
        match self {
            Format { .. } => "format",
            PublicKey(_) => "public_key",
            PinnedKeyMismatch { .. } => "pinned_key",
            KnownCheckpointInvalid { .. } => "known_checkpoint",
            RolledBack { .. } => "rollback",
            KnownCheckpointFork { .. } => "known_checkpoint_fork",
            CheckpointLogId { .. } => "checkpoint_log_id",
            CheckpointWrongKey { .. } => "checkpoint_key",
            CheckpointBadSignature { .. } => "checkpoint_signature",
            CheckpointSizeRegressed { .. } | CheckpointTimeRegressed { .. } => {
                "checkpoint_monotonic"
            }
            CheckpointFork { .. } => "checkpoint_fork",
            EntryInvalid { .. } | EntryJson { .. } => "entry",
            Json { .. } => "json",
            SequenceGap { .. } | SequenceDuplicate { .. } | SequenceOutOfOrder { .. } => "sequence",
            RootMismatch { .. } => "root",
            CheckpointBeyondEntries { .. } => "truncated",
            Uncovered { .. } => "uncovered",
            Io { .. } => "io",
            Record { .. } => "record",
        }
    }

    /// What a person can do about it.
    pub fn hint(&self) -> &'static str {
        use VerifyError::*;
        match self {
            Format { .. } => "export the bundle with `paddock audit export RUN -o bundle.json`",
            PublicKey(_) => {
                "the bundle's public_key block was altered; obtain the daemon's public key out of band and pin it"
            }
            PinnedKeyMismatch { .. } | CheckpointWrongKey { .. } => {
                "do not trust this log; compare the key id with the one you pinned from the daemon (`paddock audit key`)"
            }
            CheckpointBadSignature { .. } | CheckpointLogId { .. } | CheckpointFork { .. } => {
                "the checkpoint was not signed by the daemon for this log: the bundle was tampered with"
            }
            KnownCheckpointInvalid { .. } => {
                "pass a checkpoint of this same log, as exported earlier"
            }
            RolledBack { .. } | KnownCheckpointFork { .. } => {
                "do not trust this copy: compare with the copy the known checkpoint came from"
            }
            CheckpointSizeRegressed { .. } | CheckpointTimeRegressed { .. } => {
                "a log only grows: an older checkpoint presented as the newest hides later entries"
            }
            Json { .. } => "export the bundle again; a bundle is one JSON document",
            EntryInvalid { .. } | EntryJson { .. } | Record { .. } => {
                "the entry's bytes are not a valid record; the log was altered or damaged"
            }
            SequenceGap { .. } | SequenceDuplicate { .. } | SequenceOutOfOrder { .. } => {
                "entries were deleted, duplicated or reordered after they were recorded"
            }
            RootMismatch { .. } => {
                "an entry in the named range was changed after it was signed; compare with another copy or run inclusion proofs"
            }
            CheckpointBeyondEntries { .. } => {
                "entries at the end were removed after they were signed"
            }
            Uncovered { .. } => {
                "export after a checkpoint (the daemon signs one at run end), or verify with --allow-unsigned-tail to accept them as unproven"
            }
            Io { .. } => "check the path and permissions",
        }
    }
}

/// Verifies a bundle strictly (every entry covered by a checkpoint), trusting the bundle's
/// own public key. See [`verify_bundle_with`] to pin a key or accept an unsigned tail.
pub fn verify_bundle(bundle: &Bundle) -> Result<VerifyReport, VerifyError> {
    verify_bundle_with(bundle, &VerifyOptions::default())
}

/// Verifies a bundle with options.
pub fn verify_bundle_with(
    bundle: &Bundle,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(VerifyError::Format {
            found: bundle.format.clone(),
        });
    }
    let leaves = hash_entries(&bundle.entries)?;
    let seqs: Vec<u64> = bundle.entries.iter().map(|e| e.seq).collect();
    verify_core(
        &bundle.log_id,
        &bundle.public_key,
        &bundle.checkpoints,
        &seqs,
        &leaves,
        opts,
        Vec::new(),
    )
}

/// Parses and verifies a bundle given as JSON bytes (what `paddock audit verify FILE`
/// should call): each entry's data is turned into canonical JSON while it is parsed (no
/// JSON value tree is built), then entries are encoded and hashed on all cores.
pub fn verify_bundle_json(bytes: &[u8], opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    #[derive(serde::Deserialize)]
    struct RawBundle {
        format: String,
        log_id: String,
        public_key: PublicKeyInfo,
        checkpoints: Vec<Checkpoint>,
        entries: Vec<CanonicalEntry>,
    }
    let raw: RawBundle = serde_json::from_slice(bytes).map_err(|e| locate_json_error(bytes, e))?;
    if raw.format != BUNDLE_FORMAT {
        return Err(VerifyError::Format { found: raw.format });
    }
    let parsed = parallel_chunks(&raw.entries, |base, part| {
        let mut buf = Vec::with_capacity(256);
        let mut out = Vec::with_capacity(part.len());
        for (i, e) in part.iter().enumerate() {
            let index = (base + i) as u64;
            buf.clear();
            encode_fields_canonical(e.seq, e.ts, &e.kind, &e.data, &mut buf)
                .map_err(|reason| VerifyError::EntryInvalid { index, reason })?;
            out.push((e.seq, leaf_hash(&buf)));
        }
        Ok(out)
    })?;
    let (seqs, leaves): (Vec<u64>, Vec<Hash>) = parsed.into_iter().unzip();
    verify_core(
        &raw.log_id,
        &raw.public_key,
        &raw.checkpoints,
        &seqs,
        &leaves,
        opts,
        Vec::new(),
    )
}

/// Names the entry a bundle parse error is in (slow path, only on failure).
fn locate_json_error(bytes: &[u8], err: serde_json::Error) -> VerifyError {
    let whole = || VerifyError::Json {
        message: err.to_string(),
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return whole();
    };
    let Some(entries) = v.get("entries").and_then(|e| e.as_array()) else {
        return whole();
    };
    for (index, e) in entries.iter().enumerate() {
        if let Err(e) = CanonicalEntry::deserialize(e) {
            return VerifyError::EntryJson {
                index: index as u64,
                message: e.to_string(),
            };
        }
    }
    whole()
}

/// Runs `f(first_index, chunk)` over `items` on all cores and concatenates the results.
fn parallel_chunks<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(usize, &[T]) -> Result<Vec<R>, VerifyError> + Sync,
) -> Result<Vec<R>, VerifyError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = items.len().div_ceil(threads).max(4096);
    if items.len() <= chunk {
        return f(0, items);
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(k, part)| s.spawn(move || f(k * chunk, part)))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
        }
        Ok(out)
    })
}

/// Canonical leaf hashes of all entries, on all cores.
fn hash_entries(entries: &[Entry]) -> Result<Vec<Hash>, VerifyError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = entries.len().div_ceil(threads).max(4096);
    let hash_chunk = |base: usize, part: &[Entry]| -> Result<Vec<Hash>, VerifyError> {
        let mut buf = Vec::with_capacity(256);
        let mut out = Vec::with_capacity(part.len());
        for (i, e) in part.iter().enumerate() {
            buf.clear();
            e.encode_into(&mut buf)
                .map_err(|reason| VerifyError::EntryInvalid {
                    index: (base + i) as u64,
                    reason,
                })?;
            out.push(leaf_hash(&buf));
        }
        Ok(out)
    };
    if entries.len() <= chunk {
        return hash_chunk(0, entries);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .enumerate()
            .map(|(k, part)| s.spawn(move || hash_chunk(k * chunk, part)))
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(out)
    })
}

fn check_checkpoints(
    log_id: &str,
    public_key: &PublicKeyInfo,
    checkpoints: &[Checkpoint],
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let vk = public_key.verifying_key().map_err(VerifyError::PublicKey)?;
    if let Some(pin) = &opts.pinned_key
        && pin.key_id() != public_key.key_id
    {
        return Err(VerifyError::PinnedKeyMismatch {
            found: public_key.key_id,
            pinned: pin.key_id(),
        });
    }
    for (k, cp) in checkpoints.iter().enumerate() {
        if cp.log_id != log_id {
            return Err(VerifyError::CheckpointLogId {
                checkpoint: k,
                found: cp.log_id.clone(),
                expected: log_id.to_owned(),
            });
        }
        if cp.key_id != public_key.key_id {
            return Err(VerifyError::CheckpointWrongKey {
                checkpoint: k,
                tree_size: cp.tree_size,
                found: cp.key_id,
                expected: public_key.key_id,
            });
        }
        cp.verify_signature(&vk)
            .map_err(|reason| VerifyError::CheckpointBadSignature {
                checkpoint: k,
                tree_size: cp.tree_size,
                reason,
            })?;
        if k > 0 {
            let prev = &checkpoints[k - 1];
            if cp.tree_size < prev.tree_size {
                return Err(VerifyError::CheckpointSizeRegressed {
                    checkpoint: k,
                    tree_size: cp.tree_size,
                    previous: k - 1,
                    previous_size: prev.tree_size,
                });
            }
            if cp.time <= prev.time {
                return Err(VerifyError::CheckpointTimeRegressed {
                    checkpoint: k,
                    time: cp.time,
                    previous: k - 1,
                    previous_time: prev.time,
                });
            }
            if cp.tree_size == prev.tree_size && cp.root_hash != prev.root_hash {
                return Err(VerifyError::CheckpointFork {
                    checkpoint: k,
                    tree_size: cp.tree_size,
                    previous: k - 1,
                });
            }
        }
    }
    Ok(())
}

fn verify_core(
    log_id: &str,
    public_key: &PublicKeyInfo,
    checkpoints: &[Checkpoint],
    seqs: &[u64],
    leaves: &[Hash],
    opts: &VerifyOptions,
    notes: Vec<String>,
) -> Result<VerifyReport, VerifyError> {
    check_checkpoints(log_id, public_key, checkpoints, opts)?;
    if let Some(known) = &opts.known_checkpoint {
        let invalid = |reason: String| VerifyError::KnownCheckpointInvalid { reason };
        if known.log_id != log_id {
            return Err(invalid(format!("it belongs to log {:?}", known.log_id)));
        }
        if known.key_id != public_key.key_id {
            return Err(invalid(format!(
                "it is signed by key {}, the log by {}",
                known.key_id, public_key.key_id
            )));
        }
        let vk = public_key.verifying_key().map_err(VerifyError::PublicKey)?;
        known
            .verify_signature(&vk)
            .map_err(|e| invalid(e.to_string()))?;
    }
    let n = seqs.len() as u64;
    // Sequence first (cheap); roots are checked for every checkpoint before the first bad
    // seq, so a damaged earlier range is reported before a later sequence error.
    let first_bad_seq = seqs.iter().enumerate().position(|(i, &s)| s != i as u64);
    let limit = first_bad_seq.map_or(n, |i| i as u64);
    // Roots of aligned blocks of BLOCK leaves, on all cores; the frontier then advances a
    // block at a time, and leaf by leaf only inside the block where a checkpoint ends.
    let block_roots = block_roots(&leaves[..limit as usize]);
    let mut frontier = Frontier::new();
    let mut verified_up_to = 0;
    let mut next_cp = 0;
    while let Some(cp) = checkpoints.get(next_cp).filter(|cp| cp.tree_size <= limit) {
        let block = (cp.tree_size / BLOCK) as usize;
        while frontier.size() / BLOCK < block as u64 {
            let b = (frontier.size() / BLOCK) as usize;
            frontier.push_subtree(block_roots[b], BLOCK.trailing_zeros());
        }
        let mut at = frontier.clone();
        for leaf in &leaves[at.size() as usize..cp.tree_size as usize] {
            at.push(*leaf);
        }
        let computed = at.root();
        if computed != cp.root_hash {
            return Err(VerifyError::RootMismatch {
                checkpoint: next_cp,
                tree_size: cp.tree_size,
                verified_up_to,
                signed: cp.root_hash,
                computed,
            });
        }
        verified_up_to = cp.tree_size;
        next_cp += 1;
    }
    if let Some(i) = first_bad_seq {
        return Err(sequence_error(seqs, i));
    }
    if let Some(cp) = checkpoints.get(next_cp) {
        return Err(VerifyError::CheckpointBeyondEntries {
            checkpoint: next_cp,
            tree_size: cp.tree_size,
            entries: n,
        });
    }
    let last = checkpoints.last();
    let signed_size = last.map_or(0, |c| c.tree_size);
    if let Some(known) = &opts.known_checkpoint {
        if known.tree_size > signed_size {
            return Err(VerifyError::RolledBack {
                known_size: known.tree_size,
                known_time: known.time,
                signed_size,
            });
        }
        let computed = root_with_blocks(leaves, &block_roots, known.tree_size);
        if computed != known.root_hash {
            return Err(VerifyError::KnownCheckpointFork {
                known_size: known.tree_size,
                signed: known.root_hash,
                computed,
            });
        }
    }
    let mut uncovered = None;
    if n > signed_size {
        if !opts.allow_uncovered {
            return Err(VerifyError::Uncovered {
                range: signed_size..n,
                signed_size,
            });
        }
        uncovered = Some(signed_size..n);
    }
    Ok(VerifyReport {
        log_id: log_id.to_owned(),
        key_id: public_key.key_id,
        pinned: opts.pinned_key.is_some(),
        entries: n,
        checkpoints: checkpoints.len(),
        signed_size,
        signed_root: last.map(|c| c.root_hash),
        last_checkpoint_time: last.map(|c| c.time),
        uncovered,
        notes,
    })
}

/// Leaves per block in the parallel root computation (a power of two).
const BLOCK: u64 = 1024;

/// Root of each complete aligned block of [`BLOCK`] leaves.
fn block_roots(leaves: &[Hash]) -> Vec<Hash> {
    let blocks: Vec<&[Hash]> = leaves.chunks_exact(BLOCK as usize).collect();
    let root_of = |block: &[Hash]| {
        let mut f = Frontier::new();
        for l in block {
            f.push(*l);
        }
        f.root()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if blocks.len() < 16 || threads == 1 {
        return blocks.iter().map(|b| root_of(b)).collect();
    }
    let per = blocks.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(|b| root_of(b)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Root of the first `size` leaves (`size <= leaves.len()`), using the block roots.
fn root_with_blocks(leaves: &[Hash], block_roots: &[Hash], size: u64) -> Hash {
    let mut f = Frontier::new();
    for root in &block_roots[..(size / BLOCK) as usize] {
        f.push_subtree(*root, BLOCK.trailing_zeros());
    }
    for leaf in &leaves[f.size() as usize..size as usize] {
        f.push(*leaf);
    }
    f.root()
}

/// Classifies a wrong seq at position `i` (where `seqs[i] != i` and all before are right).
fn sequence_error(seqs: &[u64], i: usize) -> VerifyError {
    let index = i as u64;
    let found = seqs[i];
    if found < index {
        if i > 0 && seqs[i - 1] == found {
            return VerifyError::SequenceDuplicate {
                index,
                seq: found,
                previous: index - 1,
            };
        }
        return VerifyError::SequenceOutOfOrder {
            index,
            expected: index,
            found,
        };
    }
    // found > index: a gap, unless the missing seq shows up later (reordering).
    if seqs[i + 1..].iter().take(1024).any(|&s| s == index) {
        return VerifyError::SequenceOutOfOrder {
            index,
            expected: index,
            found,
        };
    }
    VerifyError::SequenceGap {
        index,
        expected: index,
        found,
    }
}

/// Verifies a log directory directly from its files (no daemon, read-only): every record's
/// CRC, every entry re-hashed from its stored canonical bytes, every checkpoint. A torn
/// tail (an unacknowledged last batch) is ignored and mentioned in the report's notes.
pub fn verify_log_dir(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Meta {
        log_id: String,
        public_key: PublicKeyInfo,
    }
    let io = |path: &Path, e: &dyn std::fmt::Display| VerifyError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let meta_path = dir.join(META_FILE);
    let meta: Meta = std::fs::read(&meta_path)
        .map_err(|e| io(&meta_path, &e))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| io(&meta_path, &e)))?;
    let mut notes = Vec::new();

    let open = |name: &str,
                magic: &[u8; 16]|
     -> Result<(RecordReader<std::io::BufReader<File>>, PathBuf, u64), VerifyError> {
        use std::io::Read;
        let path = dir.join(name);
        let f = File::open(&path).map_err(|e| io(&path, &e))?;
        let len = f.metadata().map_err(|e| io(&path, &e))?.len();
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let mut head = [0u8; 16];
        if r.read_exact(&mut head).is_err() || &head != magic {
            return Err(io(&path, &"missing file header"));
        }
        Ok((RecordReader::new(r, FILE_HEADER_LEN), path, len))
    };
    let torn = |path: &Path,
                index: u64,
                offset: u64,
                len: u64,
                reason: String|
     -> Result<String, VerifyError> {
        use std::os::unix::fs::FileExt;
        let f = File::open(path).map_err(|e| io(path, &e))?;
        let mut tail = vec![0u8; (len - offset) as usize];
        f.read_exact_at(&mut tail, offset)
            .map_err(|e| io(path, &e))?;
        let info = crate::record::analyze_tail(&tail);
        if info.later_batch {
            return Err(VerifyError::Record {
                path: path.to_owned(),
                index,
                offset,
                reason: format!(
                    "{reason}; intact records of a later batch follow, so this is damage, not a torn write"
                ),
            });
        }
        Ok(format!(
            "{}: ignored a torn tail of {} bytes at byte {offset} ({reason})",
            path.display(),
            len - offset
        ))
    };

    let (mut rr, cp_path, cp_len) = open(CHECKPOINTS_FILE, CHECKPOINTS_MAGIC)?;
    let mut checkpoints = Vec::new();
    loop {
        match rr.next().map_err(|e| io(&cp_path, &e))? {
            Step::Record { offset, .. } => {
                let cp: Checkpoint =
                    serde_json::from_slice(&rr.payload).map_err(|e| VerifyError::Record {
                        path: cp_path.clone(),
                        index: checkpoints.len() as u64,
                        offset,
                        reason: format!("checkpoint is unreadable: {e}"),
                    })?;
                checkpoints.push(cp);
            }
            Step::End => break,
            Step::Bad { offset, reason } => {
                notes.push(torn(
                    &cp_path,
                    checkpoints.len() as u64,
                    offset,
                    cp_len,
                    reason,
                )?);
                break;
            }
        }
    }

    let (mut rr, e_path, e_len) = open(ENTRIES_FILE, ENTRIES_MAGIC)?;
    let mut seqs = Vec::new();
    let mut leaves = Vec::new();
    // Payloads are gathered into chunks and their leaf hashes computed on all cores: unlike
    // a hash chain, Merkle leaves do not depend on each other.
    let mut chunk = PayloadChunk::default();
    loop {
        match rr.next().map_err(|e| io(&e_path, &e))? {
            Step::Record { .. } => {
                let index = seqs.len() as u64;
                let h = EncodedHeader::parse(&rr.payload)
                    .map_err(|reason| VerifyError::EntryInvalid { index, reason })?;
                seqs.push(h.seq);
                chunk.push(&rr.payload);
                if chunk.bytes.len() >= 8 << 20 {
                    chunk.hash_into(&mut leaves);
                }
            }
            Step::End => break,
            Step::Bad { offset, reason } => {
                notes.push(torn(&e_path, seqs.len() as u64, offset, e_len, reason)?);
                break;
            }
        }
    }
    chunk.hash_into(&mut leaves);
    verify_core(
        &meta.log_id,
        &meta.public_key,
        &checkpoints,
        &seqs,
        &leaves,
        opts,
        notes,
    )
}

/// Encoded entries waiting to be leaf-hashed in parallel.
#[derive(Default)]
struct PayloadChunk {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl PayloadChunk {
    fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }

    fn hash_into(&mut self, out: &mut Vec<Hash>) {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let per = self.ends.len().div_ceil(threads).max(1024);
        let bytes = &self.bytes;
        let hash_range = |ends: &[usize], start: usize| -> Vec<Hash> {
            let mut from = start;
            ends.iter()
                .map(|&end| {
                    let h = leaf_hash(&bytes[from..end]);
                    from = end;
                    h
                })
                .collect()
        };
        if self.ends.len() <= per {
            out.extend(hash_range(&self.ends, 0));
        } else {
            let all_ends = &self.ends;
            let parts: Vec<Vec<Hash>> = std::thread::scope(|s| {
                let handles: Vec<_> = all_ends
                    .chunks(per)
                    .enumerate()
                    .map(|(k, ends)| {
                        let start = if k == 0 { 0 } else { all_ends[k * per - 1] };
                        s.spawn(move || hash_range(ends, start))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            for p in parts {
                out.extend(p);
            }
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Verifies a standalone inclusion proof of `entry` against a signed checkpoint: the
/// checkpoint's signature with `key`, the proof's tree size against the checkpoint's, and
/// the audit path from the entry's canonical leaf hash to the signed root.
pub fn verify_entry_inclusion(
    entry: &Entry,
    proof: &InclusionProof,
    checkpoint: &Checkpoint,
    key: &PublicKeyInfo,
) -> Result<(), ProofCheckError> {
    verify_signed(checkpoint, key)?;
    if proof.tree_size != checkpoint.tree_size {
        return Err(ProofCheckError::SizeMismatch {
            proof: proof.tree_size,
            checkpoint: checkpoint.tree_size,
        });
    }
    if proof.leaf_index != entry.seq {
        return Err(ProofCheckError::IndexMismatch {
            proof: proof.leaf_index,
            entry: entry.seq,
        });
    }
    let leaf = entry.leaf_hash().map_err(ProofCheckError::Entry)?;
    proof.verify(&leaf, &checkpoint.root_hash)?;
    Ok(())
}

/// Verifies a standalone consistency proof between two signed checkpoints (the older one
/// first): both signatures, the sizes, and the proof.
pub fn verify_checkpoint_consistency(
    proof: &ConsistencyProof,
    old: &Checkpoint,
    new: &Checkpoint,
    key: &PublicKeyInfo,
) -> Result<(), ProofCheckError> {
    verify_signed(old, key)?;
    verify_signed(new, key)?;
    if proof.old_size != old.tree_size || proof.new_size != new.tree_size {
        return Err(ProofCheckError::SizeMismatch {
            proof: proof.old_size,
            checkpoint: old.tree_size,
        });
    }
    proof.verify(&old.root_hash, &new.root_hash)?;
    Ok(())
}

fn verify_signed(cp: &Checkpoint, key: &PublicKeyInfo) -> Result<(), ProofCheckError> {
    let vk = key.verifying_key().map_err(ProofCheckError::Key)?;
    if cp.key_id != key.key_id {
        return Err(ProofCheckError::WrongKey {
            found: cp.key_id,
            expected: key.key_id,
        });
    }
    cp.verify_signature(&vk).map_err(ProofCheckError::Signature)
}

/// Why a standalone proof against a signed checkpoint failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofCheckError {
    #[error("public key: {0}")]
    Key(KeyError),
    #[error("checkpoint signed by key {found}, expected {expected}")]
    WrongKey { found: Hash, expected: Hash },
    #[error("checkpoint signature: {0}")]
    Signature(SignatureError),
    #[error("proof is for tree size {proof}, the checkpoint covers {checkpoint}")]
    SizeMismatch { proof: u64, checkpoint: u64 },
    #[error("proof is for entry {proof}, the entry has seq {entry}")]
    IndexMismatch { proof: u64, entry: u64 },
    #[error("entry: {0}")]
    Entry(EntryError),
    #[error(transparent)]
    Proof(#[from] ProofError),
}
