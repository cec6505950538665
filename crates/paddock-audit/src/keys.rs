//! The checkpoint signing key (Ed25519) and its exportable public half.
//!
//! Owns: loading or creating the signing key file (created 0600, atomically, on first use;
//! refused when group or others can read it), [`PublicKeyInfo`] (what a bundle carries and
//! what a verifier pins), and the key id = SHA-256 of the 32-byte public key.
//! Never: writes the private key anywhere but the file the caller names; prints it; loads a
//! key file that other users can read.
//!
//! Key file format: 64 lower-case hex characters (the 32-byte Ed25519 seed) and a newline.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::AuditError;
use crate::hash::Hash;

/// Name of the only signature algorithm.
pub const ALGORITHM: &str = "ed25519";

/// Key id of an Ed25519 public key: SHA-256 of its 32 bytes.
pub fn key_id(public_key: &[u8; 32]) -> Hash {
    Hash::digest(public_key)
}

/// A public key as exported: algorithm, key bytes (hex) and key id (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The 32-byte public key, hex.
    pub public_key: String,
    /// SHA-256 of the public key bytes, hex.
    pub key_id: Hash,
}

impl PublicKeyInfo {
    /// Describes a verifying key.
    pub fn from_verifying_key(vk: &VerifyingKey) -> Self {
        Self {
            algorithm: ALGORITHM.to_owned(),
            public_key: hex::encode(vk.as_bytes()),
            key_id: key_id(vk.as_bytes()),
        }
    }

    /// Parses a hex public key.
    pub fn from_hex(public_key_hex: &str) -> Result<Self, KeyError> {
        let vk = parse_verifying_key(public_key_hex)?;
        Ok(Self::from_verifying_key(&vk))
    }

    /// The verifying key, after checking the algorithm and that `key_id` matches the key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        if self.algorithm != ALGORITHM {
            return Err(KeyError::Algorithm(self.algorithm.clone()));
        }
        let vk = parse_verifying_key(&self.public_key)?;
        let actual = key_id(vk.as_bytes());
        if actual != self.key_id {
            return Err(KeyError::KeyIdMismatch {
                stated: self.key_id,
                actual,
            });
        }
        Ok(vk)
    }
}

fn parse_verifying_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| KeyError::NotHex)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint)
}

/// A public key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported signature algorithm {0:?} (only ed25519)")]
    Algorithm(String),
    #[error("public key is not 64 hex characters")]
    NotHex,
    #[error("public key is not a valid Ed25519 point")]
    NotAPoint,
    #[error("key id {stated} does not match the public key (its SHA-256 is {actual})")]
    KeyIdMismatch { stated: Hash, actual: Hash },
}

/// The checkpoint signer.
pub struct Signer {
    key: SigningKey,
    public: PublicKeyInfo,
    /// Signatures made (checkpoints signed), for the daemon's metrics.
    signed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a 32-byte seed (tests, or keys held elsewhere).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let public = PublicKeyInfo::from_verifying_key(&key.verifying_key());
        Self {
            key,
            public,
            signed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A fresh random key, held only in memory.
    pub fn generate() -> Result<Self, AuditError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| AuditError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// Loads the key at `path`, creating it (mode 0600, parent directories 0700) when absent.
    /// Creation is atomic: a concurrent creator either wins or reads the winner's key.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditError> {
        match Self::load(path) {
            Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            other => return other,
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| AuditError::io("create key directory", parent, e))?;
        }
        let signer = Self::generate()?;
        let tmp = tmp_path(path);
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(format!("{}\n", hex::encode(signer.key.to_bytes())).as_bytes())?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(AuditError::io("write signing key", &tmp, e));
        }
        // hard_link fails if `path` exists: a concurrent creator won, use its key.
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = fs::File::open(parent).and_then(|d| d.sync_all());
                }
                Ok(signer)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(AuditError::io("install signing key", path, e)),
        }
    }

    /// Loads an existing key file; refuses one that group or others can access.
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let meta = fs::metadata(path).map_err(|e| AuditError::io("open signing key", path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuditError::KeyPermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text =
            fs::read_to_string(path).map_err(|e| AuditError::io("read signing key", path, e))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| AuditError::KeyFile {
            path: path.to_owned(),
            reason: "expected 64 hex characters (an Ed25519 seed)".into(),
        })?;
        Ok(Self::from_seed(seed))
    }

    /// The exportable public key.
    pub fn public_key(&self) -> &PublicKeyInfo {
        &self.public
    }

    /// The key id (SHA-256 of the public key).
    pub fn key_id(&self) -> Hash {
        self.public.key_id
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Signature {
        self.signed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.key.sign(msg)
    }

    /// How many signatures (checkpoints) this signer made since it was loaded.
    pub fn signatures(&self) -> u64 {
        self.signed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}
