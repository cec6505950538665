//! The data key that encrypts every grant: 32 random bytes, kept in the OS keyring when a
//! keyring service answers, else in `secrets/key` (0600).
//!
//! Where the key lives is decided once, on first use, and then remembered: an existing key
//! file always wins; a key placed in the keyring leaves a marker (`secrets/key.keyring`,
//! holding no secret) so that a keyring that is later locked or gone gives a clear error
//! instead of a new key (which would make every grant undecryptable).
//!
//! Never: writes the key anywhere but the keyring or the 0600 key file; blocks for long
//! on a keyring (probes run on a thread with a timeout, and only when a session bus exists).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Result, SecretsError};

/// Key length in bytes (XChaCha20-Poly1305).
pub const KEY_LEN: usize = 32;
pub(crate) const KEY_FILE: &str = "key";
pub(crate) const MARKER_FILE: &str = "key.keyring";

/// The data key. Zeroized on drop; `Debug` shows only its id.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    fn generate() -> Result<Self> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut k[..]).map_err(|e| SecretsError::Read {
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self(k))
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A public identifier of the key (16 hex digits of a domain-separated SHA-256), stored
    /// beside each ciphertext so a changed key is told apart from a tampered file.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"paddock-secrets key id v1\0");
        h.update(&self.0[..]);
        hex::encode(&h.finalize()[..8])
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(id={})", self.id())
    }
}

/// A place to keep the data key other than the key file: the OS keyring, or a stand-in in
/// tests. Errors are strings because they are only shown, never matched.
pub trait KeyVault: Send + Sync {
    /// Where the key is kept, for messages and the marker file (no secret).
    fn describe(&self) -> String;
    /// `Ok(None)`: the vault answered and holds no key. `Err`: it is unavailable.
    fn load(&self) -> std::result::Result<Option<Zeroizing<Vec<u8>>>, String>;
    /// Stores the key.
    fn store(&self, key: &[u8]) -> std::result::Result<(), String>;
}

/// Where the data key may be kept.
#[derive(Clone, Default)]
pub enum KeyBackend {
    /// The OS keyring when a keyring service answers (feature `os-keyring`), else the file.
    #[default]
    Auto,
    /// Only `secrets/key`.
    FileOnly,
    /// The given vault, falling back to the file when it is unavailable at creation.
    Vault(Arc<dyn KeyVault>),
}

impl std::fmt::Debug for KeyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("Auto"),
            Self::FileOnly => f.write_str("FileOnly"),
            Self::Vault(v) => write!(f, "Vault({})", v.describe()),
        }
    }
}

/// Where the key in use came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The key file (path).
    File(PathBuf),
    /// A keyring entry (its description).
    Keyring(String),
}

/// Loads the data key for the store at `dir`, creating it on first use.
pub(crate) fn load_or_create(dir: &Path, backend: &KeyBackend) -> Result<(DataKey, KeyOrigin)> {
    let key_path = dir.join(KEY_FILE);
    if let Some(key) = read_key_file(&key_path)? {
        return Ok((key, KeyOrigin::File(key_path)));
    }
    let marker = dir.join(MARKER_FILE);
    let has_marker = marker.exists();
    let vault: Option<Arc<dyn KeyVault>> = match backend {
        KeyBackend::FileOnly => None,
        KeyBackend::Vault(v) => Some(v.clone()),
        KeyBackend::Auto => os_vault(dir),
    };
    let marker_entry = || {
        fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_else(|| "OS keyring".into())
    };
    let Some(vault) = vault else {
        if has_marker {
            return Err(SecretsError::KeyringUnavailable {
                entry: marker_entry(),
                reason: "no keyring service is running".into(),
            });
        }
        return create_key_file(&key_path);
    };
    match vault.load() {
        Ok(Some(bytes)) => {
            let key = DataKey::from_slice(&bytes).ok_or_else(|| SecretsError::Corrupt {
                path: marker.clone(),
                reason: format!(
                    "the keyring entry {} is not a {KEY_LEN}-byte key",
                    vault.describe()
                ),
            })?;
            Ok((key, KeyOrigin::Keyring(vault.describe())))
        }
        Ok(None) if has_marker => Err(SecretsError::KeyringUnavailable {
            entry: marker_entry(),
            reason: "the keyring no longer holds the entry".into(),
        }),
        Err(reason) if has_marker => Err(SecretsError::KeyringUnavailable {
            entry: marker_entry(),
            reason,
        }),
        Ok(None) => {
            let key = DataKey::generate()?;
            let stored = vault
                .store(&key.bytes()[..])
                .and_then(|()| match vault.load() {
                    Ok(Some(back)) if back.as_slice() == &key.bytes()[..] => Ok(()),
                    Ok(_) => Err("the key read back differs".to_string()),
                    Err(e) => Err(e),
                });
            match stored {
                Ok(()) => {
                    let text = format!("{}\nkey id {}\n", vault.describe(), key.id());
                    crate::store::write_atomic(dir, MARKER_FILE, text.as_bytes())?;
                    Ok((key, KeyOrigin::Keyring(vault.describe())))
                }
                Err(_) => create_key_file(&key_path),
            }
        }
        Err(_) => create_key_file(&key_path),
    }
}

fn read_key_file(path: &Path) -> Result<Option<DataKey>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SecretsError::io(path, e)),
    };
    let mode = meta.mode() & 0o7777;
    if !meta.file_type().is_file() || mode & 0o077 != 0 {
        return Err(SecretsError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(|e| SecretsError::io(path, e))?);
    DataKey::from_slice(&bytes)
        .map(Some)
        .ok_or_else(|| SecretsError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "a key file holds exactly {KEY_LEN} bytes, this one {}",
                bytes.len()
            ),
        })
}

/// Creates the key file without ever replacing one: the key is written to a 0600 temp
/// file and hard-linked into place, so a concurrent creator's key wins and is used.
fn create_key_file(path: &Path) -> Result<(DataKey, KeyOrigin)> {
    let key = DataKey::generate()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".key-{}", key.id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| SecretsError::io(&tmp, e))?;
    let written = f
        .write_all(&key.bytes()[..])
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)));
    drop(f);
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            crate::store::sync_dir(dir)?;
            Ok((key, KeyOrigin::File(path.to_path_buf())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let key = read_key_file(path)?.ok_or_else(|| SecretsError::io(path, e))?;
            Ok((key, KeyOrigin::File(path.to_path_buf())))
        }
        Err(e) => Err(SecretsError::io(path, e)),
    }
}

/// Whether a D-Bus session bus (where a Secret Service would live) seems to exist. Checked
/// before touching the keyring so headless machines fall back to the file at once.
pub fn session_bus_present() -> bool {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            fs::metadata("/proc/self")
                .ok()
                .map(|m| PathBuf::from(format!("/run/user/{}", m.uid())))
        });
    runtime.is_some_and(|d| d.join("bus").exists())
}

#[cfg(feature = "os-keyring")]
fn os_vault(dir: &Path) -> Option<Arc<dyn KeyVault>> {
    if !session_bus_present() {
        return None;
    }
    Some(Arc::new(os::OsKeyring::for_dir(dir)))
}

#[cfg(not(feature = "os-keyring"))]
fn os_vault(_dir: &Path) -> Option<Arc<dyn KeyVault>> {
    None
}

#[cfg(feature = "os-keyring")]
pub use os::OsKeyring;

#[cfg(feature = "os-keyring")]
mod os {
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use sha2::{Digest, Sha256};
    use zeroize::Zeroizing;

    use super::KeyVault;

    /// The OS keyring (Secret Service over D-Bus), through the `keyring` crate. Every call
    /// runs on its own thread and gives up after a timeout: a keyring that prompts or a bus
    /// that never answers makes the store fall back instead of hanging.
    #[derive(Clone, Debug)]
    pub struct OsKeyring {
        service: String,
        user: String,
        timeout: Duration,
    }

    impl OsKeyring {
        /// The entry for the store at `dir` (service `paddock`, user `data-key:<hash of
        /// the directory>`), so several paddock homes do not share a key.
        pub fn for_dir(dir: &Path) -> Self {
            let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let digest = Sha256::digest(canon.as_os_str().as_encoded_bytes());
            Self {
                service: "paddock".into(),
                user: format!("data-key:{}", hex::encode(&digest[..8])),
                timeout: Duration::from_secs(3),
            }
        }

        fn call<T: Send + 'static>(
            &self,
            f: impl FnOnce(keyring::Entry) -> keyring::Result<T> + Send + 'static,
        ) -> Result<T, String> {
            let (tx, rx) = mpsc::channel();
            let (service, user) = (self.service.clone(), self.user.clone());
            std::thread::Builder::new()
                .name("paddock-keyring".into())
                .spawn(move || {
                    let r = keyring::Entry::new(&service, &user).and_then(f);
                    let _ = tx.send(r);
                })
                .map_err(|e| e.to_string())?;
            match rx.recv_timeout(self.timeout) {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {}s", self.timeout.as_secs())),
            }
        }
    }

    impl KeyVault for OsKeyring {
        fn describe(&self) -> String {
            format!("OS keyring service={} user={}", self.service, self.user)
        }

        fn load(&self) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
            let got = self.call(|e| match e.get_secret() {
                Ok(v) => Ok(Some(v)),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(e),
            })?;
            Ok(got.map(Zeroizing::new))
        }

        fn store(&self, key: &[u8]) -> Result<(), String> {
            let key = Zeroizing::new(key.to_vec());
            self.call(move |e| e.set_secret(&key))
        }
    }
}
