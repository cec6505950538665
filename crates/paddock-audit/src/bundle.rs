//! The export bundle: one JSON document with everything needed to verify a log offline.
//!
//! Owns: the bundle format (`paddock-audit-bundle/1`).
//! Never: carries a private key; is trusted by being read (verify it with
//! [`crate::verify::verify_bundle`]).
//!
//! ```json
//! {"format":"paddock-audit-bundle/1","log_id":"run-…",
//!  "public_key":{"algorithm":"ed25519","public_key":"<hex>","key_id":"<hex>"},
//!  "checkpoints":[{"log_id":…,"tree_size":…,"root_hash":…,"time":…,"key_id":…,"signature":…}],
//!  "entries":[{"seq":0,"ts":1700000000000,"type":"run.state","data":{…}}]}
//! ```

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::keys::PublicKeyInfo;

/// Format tag of a bundle.
pub const BUNDLE_FORMAT: &str = "paddock-audit-bundle/1";

/// An exported log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The log (run id, or `daemon`).
    pub log_id: String,
    /// The key the checkpoints claim to be signed with. Pin it out of band to detect a
    /// log that was rewritten and re-signed with another key.
    pub public_key: PublicKeyInfo,
    /// Signed checkpoints, oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// Every entry, in order.
    pub entries: Vec<Entry>,
}

impl Bundle {
    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Every field is a plain type with a total serialisation.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a bundle.
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
