//! The local interception CA of paddock.
//!
//! Owns: `ca.key` (PKCS#8, mode 0600) and `ca.crt` (PEM) in a directory the caller names
//! (the daemon uses `$PADDOCK_HOME/ca`). The pair is created on first use (ECDSA P-256) and
//! loaded afterwards. Leaf certificates are minted per server name (exact names and
//! wildcards such as `*.name.localhost`), signed by the CA, and kept in a bounded LRU cache;
//! [`LeafResolver`] serves them to rustls as a [`ResolvesServerCert`].
//!
//! Never: writes the key anywhere but `ca.key`, hands the CA key out (only the CA
//! *certificate* leaves this crate), or mints a certificate for a name that is not a
//! syntactically valid DNS name or IP address.
//!
//! All leaves share one leaf key generated in memory when the CA is opened (what
//! mitmproxy does too): minting is then a single signature, well under a millisecond, and
//! the leaf key never touches the disk.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Default number of leaf certificates kept in the cache.
pub const DEFAULT_CACHE_SIZE: usize = 1024;

/// Errors of the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA files in {dir} are unusable: {message}")]
    Corrupt { dir: PathBuf, message: String },
    #[error("cannot mint a certificate for {name:?}: {message}")]
    BadName { name: String, message: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl CaError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            CaError::Io { .. } => "check that the CA directory exists and belongs to you",
            CaError::Corrupt { .. } => {
                "move the ca/ directory aside; a new CA is created on the next run (sandboxes trust it automatically)"
            }
            CaError::BadName { .. } => "the client sent a server name that is not a DNS name",
            CaError::Generate(_) => "this is a bug in paddock; please report it",
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CaError + 'a {
    move |source| CaError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn gen_err(e: rcgen::Error) -> CaError {
    CaError::Generate(e.to_string())
}

/// The subject of the CA. Fixed, so that a CA loaded from disk signs leaves whose issuer
/// matches `ca.crt` without parsing it (the authority key id comes from the key).
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "paddock local interception CA");
    dn.push(DnType::OrganizationName, "paddock");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// The local CA: its certificate, its key (in memory only), and the leaf cache.
pub struct CertAuthority {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    cache: LeafCache,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Open the CA in `dir`, creating `dir` (0700), `ca.key` (0600) and `ca.crt` when they
    /// do not exist yet.
    pub fn open_or_create(dir: &Path) -> Result<Self, CaError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_SIZE)
    }

    /// Like [`open_or_create`](Self::open_or_create) with a cache of `cache_size` leaves.
    pub fn open_with_cache(dir: &Path, cache_size: usize) -> Result<Self, CaError> {
        let key_path = dir.join("ca.key");
        let crt_path = dir.join("ca.crt");
        let (key, cert_pem) = if key_path.exists() {
            let key_pem = fs::read_to_string(&key_path).map_err(io_err("read", &key_path))?;
            let mode = fs::metadata(&key_path)
                .map_err(io_err("stat", &key_path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
                    .map_err(io_err("restrict permissions of", &key_path))?;
            }
            let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Corrupt {
                dir: dir.to_path_buf(),
                message: format!("ca.key: {e}"),
            })?;
            let cert_pem = match fs::read_to_string(&crt_path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The key is the identity; the certificate can be re-made from it.
                    let pem = ca_params().self_signed(&key).map_err(gen_err)?.pem();
                    write_atomic(&crt_path, pem.as_bytes(), 0o644)?;
                    pem
                }
                Err(e) => return Err(io_err("read", &crt_path)(e)),
            };
            (key, cert_pem)
        } else {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err("create", dir))?;
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
            let mut params = ca_params();
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(3650);
            let cert_pem = params.self_signed(&key).map_err(gen_err)?.pem();
            // Certificate first: a crash between the two leaves no key without certificate
            // that differs from it (the key is re-made, the certificate overwritten).
            write_atomic(&crt_path, cert_pem.as_bytes(), 0o644)?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            (key, cert_pem)
        };
        let cert_der = pem_to_der(&cert_pem).ok_or_else(|| CaError::Corrupt {
            dir: dir.to_path_buf(),
            message: "ca.crt holds no PEM certificate".into(),
        })?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let leaf_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = rustls::crypto::ring::sign::any_ecdsa_type(&leaf_der)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(CertAuthority {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der,
            issuer: Issuer::new(ca_params(), key),
            leaf_key,
            leaf_signer,
            cache: LeafCache::new(cache_size.max(1)),
        })
    }

    /// The CA certificate, PEM (what sandboxes trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Path of `ca.crt`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A leaf for `name` (a DNS name, `*.`-wildcard, or IP address), from the cache or
    /// minted now.
    pub fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let name = normalize(name)?;
        if let Some(k) = self.cache.get(&name) {
            return Ok(k);
        }
        let k = Arc::new(self.mint(&name)?);
        self.cache.put(name, k.clone());
        Ok(k)
    }

    /// Mint a leaf without touching the cache (the benchmark uses this).
    pub fn mint(&self, name: &str) -> Result<CertifiedKey, CaError> {
        let name = normalize(name)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        p.distinguished_name = dn;
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().map_err(|e: rcgen::Error| {
                CaError::BadName {
                    name: name.clone(),
                    message: e.to_string(),
                }
            })?),
        };
        p.subject_alt_names = vec![san];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
        let cert = p.signed_by(&self.leaf_key, &self.issuer).map_err(gen_err)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            self.leaf_signer.clone(),
        ))
    }

    /// Number of cached leaves.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// Lower-case, strip one trailing dot, and check the name is something a certificate can
/// name.
fn normalize(name: &str) -> Result<String, CaError> {
    let bad = |m: &str| CaError::BadName {
        name: name.chars().take(300).collect(),
        message: m.into(),
    };
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if n.parse::<IpAddr>().is_ok() {
        return Ok(n);
    }
    if n.is_empty() || n.len() > 253 {
        return Err(bad("empty or longer than 253 characters"));
    }
    for (i, label) in n.split('.').enumerate() {
        let ok = !label.is_empty()
            && label.len() <= 63
            && ((i == 0 && label == "*")
                || label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !ok {
            return Err(bad("not a DNS name"));
        }
    }
    if n == "*" || n.matches('*').count() > 1 {
        return Err(bad("a wildcard needs a parent domain"));
    }
    Ok(n)
}

fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    f.write_all(data).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

/// A bounded least-recently-used cache of leaves. A hit is a lock, a hash lookup and a
/// counter update; eviction scans (it happens only next to a mint, which costs far more).
struct LeafCache {
    cap: usize,
    tick: AtomicU64,
    map: Mutex<HashMap<String, (Arc<CertifiedKey>, u64)>>,
}

impl LeafCache {
    fn new(cap: usize) -> Self {
        LeafCache {
            cap,
            tick: AtomicU64::new(0),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let t = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.get_mut(name)?;
        e.1 = t;
        Some(e.0.clone())
    }

    fn put(&self, name: String, k: Arc<CertifiedKey>) {
        let t = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.cap
            && !m.contains_key(&name)
            && let Some(old) = m.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| k.clone())
        {
            m.remove(&old);
        }
        m.insert(name, (k, t));
    }

    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Serves leaves from a [`CertAuthority`] by SNI; `fallback` names the certificate for
/// clients that send no SNI (a connection to a literal IP: the caller knows the name or
/// address it stands for).
#[derive(Debug, Clone)]
pub struct LeafResolver {
    ca: Arc<CertAuthority>,
    fallback: Option<String>,
}

impl LeafResolver {
    pub fn new(ca: Arc<CertAuthority>) -> Self {
        LeafResolver { ca, fallback: None }
    }

    /// A resolver that answers `name` when the client sends no SNI.
    pub fn with_fallback(ca: Arc<CertAuthority>, name: impl Into<String>) -> Self {
        LeafResolver {
            ca,
            fallback: Some(name.into()),
        }
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().or(self.fallback.as_deref())?;
        match self.ca.leaf(name) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::debug!("no leaf for {name:?}: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_loads_the_same_ca() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ca");
        let a = CertAuthority::open_or_create(&dir).unwrap();
        let mode = fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        let b = CertAuthority::open_or_create(&dir).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        assert_eq!(a.cert_der(), b.cert_der());
    }

    #[test]
    fn leaves_are_cached_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let ca = CertAuthority::open_with_cache(d.path(), 2).unwrap();
        let a1 = ca.leaf("a.example").unwrap();
        let a2 = ca.leaf("A.example.").unwrap();
        assert!(Arc::ptr_eq(&a1, &a2));
        ca.leaf("b.example").unwrap();
        ca.leaf("a.example").unwrap(); // a is now more recent than b
        ca.leaf("c.example").unwrap(); // evicts b
        assert_eq!(ca.cached(), 2);
        assert!(Arc::ptr_eq(&a1, &ca.leaf("a.example").unwrap()));
        ca.leaf("*.name.localhost").unwrap();
        ca.leaf("10.1.2.3").unwrap();
    }

    #[test]
    fn refuses_bad_names() {
        let d = tempfile::tempdir().unwrap();
        let ca = CertAuthority::open_or_create(d.path()).unwrap();
        for n in ["", "*", "a..b", "a b", "x.*.y", "*.*.y", &"a".repeat(64)] {
            assert!(ca.leaf(n).is_err(), "{n:?}");
        }
    }

    #[test]
    fn pem_decodes_to_the_certificate_and_garbage_to_none() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertAuthority::open_or_create(dir.path()).unwrap();
        assert_eq!(pem_to_der(ca.cert_pem()).as_ref(), Some(ca.cert_der()));
        assert!(
            pem_to_der("-----BEGIN CERTIFICATE-----\na$\n-----END CERTIFICATE-----\n").is_none()
        );
        assert!(pem_to_der("no pem here").is_none());
    }
}
