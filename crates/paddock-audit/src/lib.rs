//! paddock-audit: the tamper-evident audit log (Merkle tree, signed checkpoints, proofs).
//!
//! Never: needs a daemon to verify; the daemon is the only writer.
