//! Signed checkpoints: `{log_id, tree_size, root_hash, time, key_id}` + Ed25519 signature.
//!
//! Owns: the checkpoint type and the exact bytes that are signed.
//! Never: signs anything but that fixed, domain-separated binary message, so a checkpoint
//! signature cannot be replayed as any other kind of signature, nor moved to another log.
//!
//! Signed message, version 1:
//!
//! ```text
//! "paddock-audit checkpoint v1\n"   (28 bytes, ASCII)
//! u32 big-endian length of log_id, then log_id (UTF-8)
//! u64 big-endian tree_size
//! 32 bytes root_hash
//! u64 big-endian time (milliseconds since the Unix epoch)
//! 32 bytes key_id
//! ```

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::keys::Signer;

const DOMAIN: &[u8] = b"paddock-audit checkpoint v1\n";

/// A signed statement that the log `log_id` had `tree_size` entries with root `root_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The log this checkpoint belongs to (run id, or `daemon`).
    pub log_id: String,
    /// Number of entries covered.
    pub tree_size: u64,
    /// RFC 6962 root of the first `tree_size` entries.
    pub root_hash: Hash,
    /// When it was signed: milliseconds since the Unix epoch. Strictly increasing in a log.
    pub time: u64,
    /// SHA-256 of the signer's public key.
    pub key_id: Hash,
    /// Ed25519 signature over [`Checkpoint::signed_message`], hex (128 characters).
    pub signature: String,
}

impl Checkpoint {
    /// Creates and signs a checkpoint.
    pub fn sign(signer: &Signer, log_id: &str, tree_size: u64, root_hash: Hash, time: u64) -> Self {
        let mut cp = Checkpoint {
            log_id: log_id.to_owned(),
            tree_size,
            root_hash,
            time,
            key_id: signer.key_id(),
            signature: String::new(),
        };
        cp.signature = hex::encode(signer.sign(&cp.signed_message()).to_bytes());
        cp
    }

    /// The bytes the signature covers (see the module docs).
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN.len() + 4 + self.log_id.len() + 8 + 32 + 8 + 32);
        m.extend_from_slice(DOMAIN);
        m.extend_from_slice(&(self.log_id.len() as u32).to_be_bytes());
        m.extend_from_slice(self.log_id.as_bytes());
        m.extend_from_slice(&self.tree_size.to_be_bytes());
        m.extend_from_slice(&self.root_hash.0);
        m.extend_from_slice(&self.time.to_be_bytes());
        m.extend_from_slice(&self.key_id.0);
        m
    }

    /// Checks the signature with `key` (strict Ed25519 verification).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), SignatureError> {
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).map_err(|_| SignatureError::Malformed)?;
        key.verify_strict(&self.signed_message(), &Signature::from_bytes(&sig))
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Why a checkpoint signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is not 128 hex characters")]
    Malformed,
    #[error("signature does not verify")]
    Invalid,
}
