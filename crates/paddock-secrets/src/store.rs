//! The encrypted secret store: one file per grant in the directory the caller names
//! (`$PADDOCK_HOME/secrets`, 0700).
//!
//! `<name>.grant` (0600) is JSON: the grant's metadata in clear (name, kind, rules, env,
//! created/updated times, masked preview: readable without the key), the id of the data key,
//! a random 24-byte nonce and the XChaCha20-Poly1305 ciphertext of the value. The
//! associated data is the canonical JSON of the metadata, so the value is bound to its
//! grant's name *and* to where it may be sent: editing the hosts, renaming the file or
//! swapping ciphertexts between grants makes decryption fail with a clear error.
//!
//! Never: writes a secret in clear to disk or to a log; replaces a file in place (temp +
//! rename, then the directory is fsynced); reuses a nonce on purpose (a fresh random one on
//! every write).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Result, SecretsError};
use crate::host::HostPattern;
use crate::key::{DataKey, KeyBackend, KeyOrigin, load_or_create};
use crate::kind::{GrantKind, GrantSpec, InjectRule};
use crate::value::SecretValue;

const FORMAT: &str = "paddock-grant-v1";
/// Shortest value a grant accepts.
pub const MIN_GRANT_VALUE_LEN: usize = 8;
const AAD_DOMAIN: &[u8] = b"paddock-secrets grant v1\0";
const EXT: &str = "grant";

/// A grant's metadata: everything but the value. Safe to print and to send over the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    pub name: String,
    #[serde(flatten)]
    pub spec: GrantSpec,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Masked preview of the value, e.g. `ghp_…abcd`.
    pub preview: String,
}

impl GrantInfo {
    pub fn kind(&self) -> GrantKind {
        self.spec.kind()
    }
    pub fn kind_name(&self) -> &'static str {
        self.spec.kind().name()
    }
    pub fn rules(&self) -> Vec<InjectRule> {
        self.spec.rules()
    }
    pub fn hosts(&self) -> Vec<HostPattern> {
        self.spec.hosts()
    }
    pub fn env(&self) -> Vec<String> {
        self.spec.env()
    }
}

/// A grant with its decrypted value.
#[derive(Clone)]
pub struct Grant {
    pub info: GrantInfo,
    pub value: SecretValue,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("info", &self.info)
            .field("value", &self.value)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct GrantFile {
    format: String,
    grant: GrantInfo,
    key_id: String,
    nonce: String,
    ciphertext: String,
}

/// Validates a grant name: 1-64 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(SecretsError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("it must be 1-64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return bad("only lower-case letters, digits, '-' and '_' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    Ok(())
}

/// The secret store. Cheap to open: the data key is loaded (or created) on the first
/// operation that needs it, so listing never touches the keyring.
pub struct SecretStore {
    dir: PathBuf,
    backend: KeyBackend,
    key: Mutex<Option<std::sync::Arc<(DataKey, KeyOrigin)>>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("dir", &self.dir)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Opens (creating, mode 0700) the store at `dir`, keeping the key in the OS keyring
    /// when one answers, else in `dir/key`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, KeyBackend::Auto)
    }

    /// Opens the store with an explicit key backend.
    pub fn open_with(dir: impl AsRef<Path>, backend: KeyBackend) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| SecretsError::io(&dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| SecretsError::io(&dir, e))?;
        Ok(Self {
            dir,
            backend,
            key: Mutex::new(None),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn key(&self) -> Result<std::sync::Arc<(DataKey, KeyOrigin)>> {
        let mut slot = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = slot.as_ref() {
            return Ok(k.clone());
        }
        let k = std::sync::Arc::new(load_or_create(&self.dir, &self.backend)?);
        *slot = Some(k.clone());
        Ok(k)
    }

    /// Where the data key is kept (loading or creating it).
    pub fn key_origin(&self) -> Result<KeyOrigin> {
        Ok(self.key()?.1.clone())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.{EXT}"))
    }

    /// Creates the grant `name`, or replaces its value and spec (keeping `created_at`).
    /// Values shorter than [`MIN_GRANT_VALUE_LEN`] are refused: they would be guessable and
    /// too short to scrub reliably.
    pub fn put(&self, name: &str, spec: GrantSpec, value: &SecretValue) -> Result<GrantInfo> {
        let kind = spec.kind();
        validate_name(name)?;
        spec.validate()?;
        if value.len() < MIN_GRANT_VALUE_LEN {
            return Err(SecretsError::InvalidValue {
                reason: "it is shorter than 8 characters",
            });
        }
        let key = self.key()?;
        let now = now_rfc3339();
        let created_at = self
            .info(name)
            .map(|i| i.created_at)
            .unwrap_or_else(|_| now.clone());
        let info = GrantInfo {
            name: name.to_string(),
            spec,
            created_at,
            updated_at: now,
            // A login's preview is its access token's, not its JSON's.
            preview: match kind.login() {
                Some(_) => crate::login::Login::from_value(value.expose())
                    .map(|l| crate::value::mask(&l.access_token))
                    .unwrap_or_else(|_| value.masked()),
                None => value.masked(),
            },
        };
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SecretsError::Read {
            source: std::io::Error::other(e.to_string()),
        })?;
        let aad = aad(&info)?;
        let cipher = XChaCha20Poly1305::new(key.0.bytes().into());
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::InvalidValue {
                reason: "it could not be encrypted",
            })?;
        let file = GrantFile {
            format: FORMAT.into(),
            grant: info.clone(),
            key_id: key.0.id(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| SecretsError::Corrupt {
            path: self.path(name),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomic(&self.dir, &format!("{name}.{EXT}"), &json)?;
        Ok(info)
    }

    fn read_file(&self, name: &str) -> Result<GrantFile> {
        validate_name(name)?;
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretsError::NotFound {
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(SecretsError::io(&path, e)),
        };
        parse_file(&path, name, &bytes)
    }

    /// A grant's metadata, without decrypting (what `grant show` prints).
    pub fn info(&self, name: &str) -> Result<GrantInfo> {
        Ok(self.read_file(name)?.grant)
    }

    /// A grant with its decrypted value. Fails with [`SecretsError::KeyMismatch`] when the
    /// data key changed, [`SecretsError::Tampered`] when the file was modified or its
    /// ciphertext swapped, [`SecretsError::Swapped`] when files were renamed.
    pub fn get(&self, name: &str) -> Result<Grant> {
        let file = self.read_file(name)?;
        let path = self.path(name);
        let key = self.key()?;
        if file.key_id != key.0.id() {
            return Err(SecretsError::KeyMismatch {
                name: name.to_string(),
                stored_key_id: file.key_id,
                current_key_id: key.0.id(),
            });
        }
        let corrupt = |reason: &str| SecretsError::Corrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let nonce = B64
            .decode(&file.nonce)
            .map_err(|_| corrupt("nonce is not base64"))?;
        if nonce.len() != 24 {
            return Err(corrupt("nonce is not 24 bytes"));
        }
        let ciphertext = B64
            .decode(&file.ciphertext)
            .map_err(|_| corrupt("ciphertext is not base64"))?;
        let aad = aad(&file.grant)?;
        let cipher = XChaCha20Poly1305::new(key.0.bytes().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| SecretsError::Tampered {
                    name: name.to_string(),
                })?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| SecretsError::Tampered {
            name: name.to_string(),
        })?;
        let value = SecretValue::new(text.to_string())?;
        Ok(Grant {
            info: file.grant,
            value,
        })
    }

    /// Every grant's metadata, sorted by name, without decrypting.
    pub fn list(&self) -> Result<Vec<GrantInfo>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| SecretsError::io(&self.dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| SecretsError::io(&self.dir, e))?;
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".grant"))
            else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let bytes = fs::read(&path).map_err(|e| SecretsError::io(&path, e))?;
            out.push(parse_file(&path, name, &bytes)?.grant);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes the grant's file (then fsyncs the directory). Returns its metadata, or
    /// `None` when the file was unreadable (a corrupt or renamed file can still be revoked).
    /// Values already handed out are [`SecretValue`]s, zeroized when their owners drop them;
    /// a running run stops using the grant through [`crate::RunSecrets::revoke`].
    pub fn revoke(&self, name: &str) -> Result<Option<GrantInfo>> {
        let info = match self.info(name) {
            Ok(i) => Some(i),
            Err(SecretsError::Corrupt { .. } | SecretsError::Swapped { .. }) => None,
            Err(e) => return Err(e),
        };
        let path = self.path(name);
        fs::remove_file(&path).map_err(|e| SecretsError::io(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(info)
    }
}

fn parse_file(path: &Path, name: &str, bytes: &[u8]) -> Result<GrantFile> {
    let file: GrantFile = serde_json::from_slice(bytes).map_err(|e| SecretsError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if file.format != FORMAT {
        return Err(SecretsError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("unknown format {:?} (expected {FORMAT})", file.format),
        });
    }
    if file.grant.name != name {
        return Err(SecretsError::Swapped {
            path: path.to_path_buf(),
            expected: name.to_string(),
            found: file.grant.name,
        });
    }
    Ok(file)
}

fn aad(info: &GrantInfo) -> Result<Vec<u8>> {
    let mut aad = AAD_DOMAIN.to_vec();
    serde_json::to_writer(&mut aad, info).map_err(|e| SecretsError::Corrupt {
        path: PathBuf::from(&info.name),
        reason: e.to_string(),
    })?;
    Ok(aad)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes `dir/name` atomically: a 0600 temp file in `dir`, fsync, rename, fsync of `dir`.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let mut suffix = [0u8; 6];
    let _ = getrandom::fill(&mut suffix);
    let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(suffix)));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(SecretsError::io(dir.join(name), e));
    }
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SecretsError::io(dir, e))
}
