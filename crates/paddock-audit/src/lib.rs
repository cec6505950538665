//! paddock-audit: the tamper-evident audit log (promise 4 of DESIGN.md).
//!
//! An append-only log of typed entries, committed to by an RFC 6962 Merkle tree (SHA-256,
//! leaf = H(0x00 || canonical entry), node = H(0x01 || left || right)), with Ed25519-signed
//! checkpoints `{log_id, tree_size, root_hash, time, key_id}`, inclusion and consistency
//! proofs, and an export bundle that anyone can verify offline.
//!
//! Who calls what:
//! - the daemon (the only writer): [`Signer::load_or_create`] once, then per log
//!   [`AuditLog::open`] (recovers after a crash), [`AuditLog::append_batch`] (group
//!   commit: one fsync per batch; `Ok` = acknowledged), [`AuditLog::maybe_checkpoint`] on
//!   a timer and after batches, [`AuditLog::checkpoint`] at run end,
//!   [`AuditLog::export_bundle`], [`AuditLog::inclusion_proof`],
//!   [`AuditLog::consistency_proof`]; or, with many producers, [`Committer::spawn`] (a
//!   thread for one log) or [`WriterPool::open_with`] (a fixed set of threads for any
//!   number of logs) and [`CommitHandle::append`] / [`CommitHandle::submit`] (bounded
//!   queue: producers block instead of entries being dropped; batches drained from the
//!   queue, one fsync per log each);
//! - the CLI or a third party, offline: [`verify_bundle_json`] (a bundle file's bytes),
//!   [`verify_bundle`] / [`verify_bundle_with`] (a parsed [`Bundle`]),
//!   [`verify_log_dir`], [`verify_entry_inclusion`], [`verify_checkpoint_consistency`],
//!   [`merkle::verify_inclusion`], [`merkle::verify_consistency`], [`LogReader`].
//!
//! Never: needs a daemon to verify; rewrites an acknowledged entry; lets two writers share
//! a log; signs without a domain-separated message; keeps a private key anywhere but the
//! 0600 file the caller names.

pub mod bundle;
pub mod checkpoint;
pub mod commit;
pub mod entry;
pub mod error;
pub mod hash;
pub mod keys;
pub mod merkle;
mod record;
pub mod store;
pub mod verify;

pub use bundle::{BUNDLE_FORMAT, Bundle};
pub use checkpoint::{Checkpoint, SignatureError};
pub use commit::{
    Ack, Closing, CommitError, CommitHandle, Committer, CommitterConfig, PooledLog, WriterPool,
};
pub use entry::{Entry, EntryError, NewEntry, canonical_json};
pub use error::{AuditError, Result};
pub use hash::{Hash, empty_root, leaf_hash, node_hash};
pub use keys::{PublicKeyInfo, Signer};
pub use merkle::{ConsistencyProof, Frontier, InclusionProof, MerkleTree, ProofError};
pub use store::{AuditLog, LogConfig, LogReader, Recovery, TornTail};
pub use verify::{
    Location, PinnedKey, ProofCheckError, VerifyError, VerifyOptions, VerifyReport, verify_bundle,
    verify_bundle_json, verify_bundle_with, verify_checkpoint_consistency, verify_entry_inclusion,
    verify_log_dir,
};
