//! Reaching upstreams: name resolution (with `upstream.resolve` overrides), the private
//! address guard, verified TLS (system roots plus an optional extra bundle), and HTTP
//! connections (h2 when the upstream offers it, HTTP/1.1 otherwise).
//!
//! Never: dials an address the sandbox chose for a named host (only the name is used), or
//! skips certificate verification.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{EgressError, UpstreamError};
use crate::policy::{Policy, Query};

/// How the proxy reaches upstreams (shared by all runs with the same settings).
pub struct Upstream {
    tls: Arc<ClientConfig>,
    tls_h1: Arc<ClientConfig>,
    resolve: BTreeMap<String, SocketAddr>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("resolve", &self.resolve)
            .finish_non_exhaustive()
    }
}

/// Parse all certificates in a PEM bundle.
pub fn pem_certs(pem: &[u8]) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

impl Upstream {
    /// System roots (the platform bundle, e.g. /etc/ssl/certs), plus `extra_ca` if given.
    pub fn new(
        extra_ca: Option<&Path>,
        resolve: BTreeMap<String, SocketAddr>,
    ) -> Result<Self, EgressError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for c in native.certs {
            let _ = roots.add(c);
        }
        if let Some(p) = extra_ca {
            let pem = std::fs::read(p).map_err(|e| EgressError::ExtraCa {
                path: p.to_path_buf(),
                message: e.to_string(),
            })?;
            let certs = pem_certs(&pem);
            if certs.is_empty() {
                return Err(EgressError::ExtraCa {
                    path: p.to_path_buf(),
                    message: "no PEM certificate in it".into(),
                });
            }
            for c in certs {
                roots.add(c).map_err(|e| EgressError::ExtraCa {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mk = |alpn: Vec<Vec<u8>>| -> Result<Arc<ClientConfig>, EgressError> {
            let mut c = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| EgressError::Tls(e.to_string()))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = alpn;
            Ok(Arc::new(c))
        };
        Ok(Upstream {
            tls: mk(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
            tls_h1: mk(vec![b"http/1.1".to_vec()])?,
            resolve: resolve
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        })
    }

    /// The address to dial for `host:port`. `upstream.resolve` overrides are explicit
    /// configuration and are used as given; everything else is resolved here and refused
    /// when it is private, loopback or link-local unless a rule explicitly allows `host`.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        policy: &Policy,
    ) -> Result<SocketAddr, UpstreamError> {
        if let Some(a) = self.resolve.get(host) {
            return Ok(*a);
        }
        let allowed_private = || policy.explicitly_allows(&Query::conn(host, port));
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| UpstreamError::Resolve {
                    host: host.into(),
                    source,
                })?
                .collect(),
        };
        let first = *addrs
            .first()
            .ok_or_else(|| UpstreamError::NoAddress { host: host.into() })?;
        if let Some(bad) = addrs.iter().find(|a| is_private(a.ip()))
            && !allowed_private()
        {
            return Err(UpstreamError::Private {
                host: host.into(),
                addr: bad.ip(),
            });
        }
        Ok(first)
    }

    /// A TCP connection to `host:port` (resolved here).
    pub async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        policy: &Policy,
    ) -> Result<TcpStream, UpstreamError> {
        let addr = self.resolve(host, port, policy).await?;
        let s = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect {
                host: host.into(),
                addr,
                source,
            })?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    /// A verified TLS connection to `host:port`; `h1_only` offers only http/1.1 (for
    /// upgrades).
    pub async fn connect_tls(
        &self,
        host: &str,
        port: u16,
        policy: &Policy,
        h1_only: bool,
    ) -> Result<TlsStream<TcpStream>, UpstreamError> {
        let tcp = self.connect_tcp(host, port, policy).await?;
        let name = rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
            UpstreamError::Tls {
                host: host.into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        let cfg = if h1_only { &self.tls_h1 } else { &self.tls };
        TlsConnector::from(cfg.clone())
            .connect(name, tcp)
            .await
            .map_err(|source| UpstreamError::Tls {
                host: host.into(),
                source,
            })
    }
}

impl Upstream {
    /// One verified HTTPS POST of the daemon's own (an OAuth refresh with the real refresh
    /// token): to `https://host{path}` on port 443, resolved and verified exactly as the
    /// proxy's requests are, over HTTP/1.1, within `timeout`. Returns the status and the
    /// body (at most 1 MiB).
    pub async fn post_https(
        &self,
        host: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<(u16, bytes::Bytes), UpstreamError> {
        use http_body_util::BodyExt;
        let policy = Policy::new(&paddock_config::NetworkConfig::default(), &[]);
        let http_err = |source| UpstreamError::Http {
            host: host.into(),
            source,
        };
        let exchange = async {
            let tls = self.connect_tls(host, 443, &policy, true).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(http_err)?;
            tokio::spawn(conn);
            let req = http::Request::post(path)
                .header(http::header::HOST, host)
                .header(http::header::CONTENT_TYPE, content_type)
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::USER_AGENT, "paddock")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .map_err(|e| UpstreamError::Tls {
                    host: host.into(),
                    source: std::io::Error::other(e.to_string()),
                })?;
            let resp = sender.send_request(req).await.map_err(http_err)?;
            let status = resp.status().as_u16();
            let limited = http_body_util::Limited::new(resp.into_body(), 1 << 20);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| UpstreamError::Tls {
                    host: host.into(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Tls {
                host: host.into(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"),
            }),
        }
    }
}

/// Private (RFC 1918, ULA), loopback, link-local, unspecified, CGNAT, and the synthetic
/// range itself: never dialled unless a rule says so.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || crate::dns::is_synthetic(v)
        }
        IpAddr::V6(v) => {
            if let Some(m) = v.to_ipv4_mapped() {
                return is_private(IpAddr::V4(m));
            }
            let s = v.segments();
            v.is_loopback()
                || v.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.5",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }
}
