//! A real (in-memory) TLS handshake: a rustls client that trusts only `ca.crt` accepts the
//! minted leaves, also after the CA is loaded again from disk.

use std::sync::Arc;

use paddock_ca::{CertAuthority, LeafResolver};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn handshake(
    ca: Arc<CertAuthority>,
    trust: &CertAuthority,
    name: &str,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.cert_der().clone()).unwrap();
    let cc = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let sc = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LeafResolver::new(ca)));
    let mut c = ClientConnection::new(
        Arc::new(cc),
        ServerName::try_from(name.to_string()).unwrap(),
    )?;
    let mut s = ServerConnection::new(Arc::new(sc))?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut &buf[..]).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

#[test]
fn client_trusting_the_ca_accepts_leaves() {
    let d = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertAuthority::open_or_create(d.path()).unwrap());
    handshake(ca.clone(), &ca, "api.example.com").unwrap();
    // A wildcard leaf serves any name one label below.
    ca.leaf("*.svc.localhost").unwrap();
    // Reloaded from disk: the new leaves still chain to the original ca.crt.
    let again = Arc::new(CertAuthority::open_or_create(d.path()).unwrap());
    handshake(again, &ca, "other.example.org").unwrap();
}

#[test]
fn client_trusting_another_ca_refuses() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertAuthority::open_or_create(d1.path()).unwrap());
    let other = CertAuthority::open_or_create(d2.path()).unwrap();
    assert!(handshake(ca, &other, "api.example.com").is_err());
}
