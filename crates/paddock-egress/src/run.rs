//! One run's egress: everything [`RunEgress::start`] places in the run's netns, and what
//! the sandbox spec needs ([`sandbox_net`]).
//!
//! Fixed addresses inside every sandbox:
//! - explicit proxy: `127.0.0.80:3128` (a loopback address of its own, so a dev server on
//!   127.0.0.1 or 0.0.0.0 never collides with it; 3128 is the customary proxy port);
//! - DNS stub: `127.0.0.1:53`, UDP and TCP;
//! - transparent listeners: `[::]:80`, `[::]:443` and the configured extra ports
//!   (dual-stack), reached through the AnyIP routes.
//!
//! Sequencing (native runtime): the netns exists once `Runtime::start` has run stage 1.
//! The daemon calls [`sandbox_net`] before `create` (env and files), then `start`, then
//! [`RunEgress::start`] right after.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use paddock_ca::CertAuthority;
use paddock_config::NetworkConfig;
use paddock_sandbox::{InjectedFile, NetnsCapability, SandboxHandle};
use tokio::task::JoinHandle;

use crate::dns::{DnsStub, SyntheticMap};
use crate::error::EgressError;
use crate::inject::Injector;
use crate::netns;
use crate::policy::{ImpliedHost, Policy};
use crate::proxy::Proxy;
use crate::record::{RecordSink, Recorder};
use crate::upstream::Upstream;

/// Where the explicit proxy listens inside every sandbox.
pub const PROXY_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 80)), 3128);
/// Where the DNS stub listens inside every sandbox.
pub const DNS_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 53);
/// Ports with a transparent listener in every sandbox.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];
/// The CA bundle path inside the sandbox (system bundle + paddock's CA).
pub const SANDBOX_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Capacity of a run's synthetic address map.
pub const MAX_NAMES: usize = 65536;

/// The daemon-wide pieces every run shares.
#[derive(Clone)]
pub struct EgressShared {
    pub ca: Arc<CertAuthority>,
    pub upstream: Arc<Upstream>,
}

impl EgressShared {
    /// Use an already open CA (the daemon shares one with the router) and set up upstream
    /// TLS from `upstream:` config.
    pub fn with_ca(
        ca: Arc<CertAuthority>,
        upstream: &paddock_config::UpstreamConfig,
    ) -> Result<Self, EgressError> {
        Ok(EgressShared {
            ca,
            upstream: Arc::new(Upstream::new(
                upstream.extra_ca.as_deref(),
                upstream.resolve.clone(),
            )?),
        })
    }

    /// Open (or create) the CA in `ca_dir` and set up upstream TLS from `upstream:` config.
    pub fn new(
        ca_dir: &Path,
        upstream: &paddock_config::UpstreamConfig,
    ) -> Result<Self, EgressError> {
        Self::with_ca(Arc::new(CertAuthority::open_or_create(ca_dir)?), upstream)
    }
}

/// What one run is allowed and how its requests are modified.
pub struct RunPolicy {
    pub network: NetworkConfig,
    /// Hosts implied by the run's grants.
    pub implied: Vec<ImpliedHost>,
    /// Transparent ports besides 80 and 443 (53 and 3128 are ignored: taken).
    pub extra_ports: Vec<u16>,
    pub injector: Arc<dyn Injector>,
}

/// Env vars and files a sandbox needs for egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNet {
    pub env: Vec<(String, String)>,
    pub files: Vec<InjectedFile>,
}

/// The system CA bundle read from the host (first of the usual paths that exists).
pub fn system_bundle() -> Option<(PathBuf, Vec<u8>)> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok().map(|b| (PathBuf::from(p), b)))
}

/// Env vars (replacing any proxy variables the user passed) and injected files:
/// `/etc/resolv.conf` → the stub, and the system CA bundle plus paddock's CA at the
/// standard path and at the path the host's bundle was found (where clients that ignore
/// the variables look on this distribution).
pub fn sandbox_net(ca_pem: &str) -> SandboxNet {
    sandbox_net_with(system_bundle(), ca_pem)
}

/// [`sandbox_net`] with the host's bundle given: `(path, contents)` as found by
/// [`system_bundle`].
pub fn sandbox_net_with(system: Option<(PathBuf, Vec<u8>)>, ca_pem: &str) -> SandboxNet {
    let proxy = format!("http://{PROXY_ADDR}");
    let mut env = Vec::new();
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        env.push((k.to_string(), proxy.clone()));
        env.push((k.to_ascii_lowercase(), proxy.clone()));
    }
    let no_proxy = "localhost,127.0.0.1,::1".to_string();
    env.push(("NO_PROXY".into(), no_proxy.clone()));
    env.push(("no_proxy".into(), no_proxy));
    // NODE_EXTRA_CA_CERTS takes a bundle too; the native runtime injects files only where
    // their directory exists, so the bundle's standard path serves every variable.
    for k in [
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "CARGO_HTTP_CAINFO",
    ] {
        env.push((k.to_string(), SANDBOX_BUNDLE.to_string()));
    }
    let (found, mut bundle) = match system {
        Some((path, b)) => (Some(path), b),
        None => (None, Vec::new()),
    };
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(b"# paddock local interception CA\n");
    bundle.extend_from_slice(ca_pem.as_bytes());
    let bundle: Arc<[u8]> = Arc::from(bundle);
    let mut files = vec![
        InjectedFile {
            path: "/etc/resolv.conf".into(),
            contents: Arc::from(&b"# paddock DNS stub: answers allowed names, forwards nothing\nnameserver 127.0.0.1\noptions edns0 trust-ad\n"[..]),
        },
        InjectedFile {
            path: SANDBOX_BUNDLE.into(),
            contents: bundle.clone(),
        },
    ];
    if let Some(path) = found.filter(|p| p != Path::new(SANDBOX_BUNDLE)) {
        files.push(InjectedFile {
            path,
            contents: bundle,
        });
    }
    SandboxNet { env, files }
}

/// Replace the proxy variables in a command's environment with [`SandboxNet::env`].
pub fn apply_env(env: &mut Vec<(String, String)>, net: &SandboxNet) {
    env.retain(|(k, _)| !net.env.iter().any(|(n, _)| n == k));
    env.extend(net.env.iter().cloned());
}

/// A run's live egress. Dropping it (or [`stop`](RunEgress::stop)) closes every listener.
pub struct RunEgress {
    tasks: Vec<JoinHandle<()>>,
    map: Arc<SyntheticMap>,
    policy: Arc<Policy>,
    recorder: Recorder,
}

impl RunEgress {
    /// Set up the run's network: AnyIP routes, DNS stub, explicit proxy, transparent
    /// listeners. Call inside a tokio runtime, with the sandbox running.
    pub fn start(
        netns: &dyn NetnsCapability,
        handle: &SandboxHandle,
        shared: &EgressShared,
        run: RunPolicy,
        sink: RecordSink,
    ) -> Result<RunEgress, EgressError> {
        let recorder = Recorder::new(&handle.run_id, sink)?;
        let policy = Arc::new(Policy::new(&run.network, &run.implied));
        let map = Arc::new(SyntheticMap::new(MAX_NAMES));
        let mut ports: Vec<u16> = DEFAULT_PORTS.to_vec();
        for p in run.extra_ports {
            if p != 0 && p != 53 && p != PROXY_ADDR.port() && !ports.contains(&p) {
                ports.push(p);
            }
        }
        // Create every socket first, in one namespace switch: a failure leaves nothing
        // running.
        let mut kinds = vec![
            netns::NETLINK_KIND,
            netns::udp_kind(DNS_ADDR),
            netns::tcp_kind(DNS_ADDR),
            netns::tcp_kind(PROXY_ADDR),
        ];
        kinds.extend(ports.iter().map(|_| netns::any_kind()));
        let mut fds = netns::Sockets::create(netns, handle, &kinds)?;
        netns::add_anyip_routes(fds.take())?;
        let dns_udp = netns::bind_udp(fds.take(), DNS_ADDR)?;
        let dns_tcp = netns::listen_on(fds.take(), DNS_ADDR)?;
        let explicit = netns::listen_on(fds.take(), PROXY_ADDR)?;
        let mut transparent = Vec::new();
        for p in ports {
            transparent.push(netns::any_listener(netns, handle, fds.take(), p)?);
        }

        let io = |e: std::io::Error| EgressError::Netns {
            action: "register a socket with the async runtime".into(),
            source: e,
        };
        let stub = Arc::new(DnsStub {
            policy: policy.clone(),
            map: map.clone(),
            recorder: recorder.clone(),
        });
        let proxy = Proxy::new(
            policy.clone(),
            map.clone(),
            shared.ca.clone(),
            shared.upstream.clone(),
            run.injector,
            recorder.clone(),
        );
        let mut tasks = Vec::new();
        let udp = tokio::net::UdpSocket::from_std(dns_udp).map_err(io)?;
        tasks.push(tokio::spawn(stub.clone().serve_udp(udp)));
        let tcp = tokio::net::TcpListener::from_std(dns_tcp).map_err(io)?;
        tasks.push(tokio::spawn(stub.serve_tcp(tcp)));
        let l = tokio::net::TcpListener::from_std(explicit).map_err(io)?;
        tasks.push(tokio::spawn(proxy.clone().serve_explicit(l)));
        for t in transparent {
            let l = tokio::net::TcpListener::from_std(t).map_err(io)?;
            tasks.push(tokio::spawn(proxy.clone().serve_transparent(l)));
        }
        Ok(RunEgress {
            tasks,
            map,
            policy,
            recorder,
        })
    }

    /// The run's name ⇄ synthetic address map.
    pub fn names(&self) -> &SyntheticMap {
        &self.map
    }

    /// The run's compiled policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The run's record queue (to wait for it to drain: [`Recorder::flushed`]).
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// Close every listener (connections in flight finish on their own).
    pub fn stop(self) {}
}

impl Drop for RunEgress {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\npaddock\n-----END CERTIFICATE-----\n";

    fn file<'a>(net: &'a SandboxNet, path: &str) -> Option<&'a InjectedFile> {
        net.files.iter().find(|f| f.path == Path::new(path))
    }

    #[test]
    fn the_bundle_goes_where_the_host_keeps_it_and_at_the_standard_path() {
        let host = PathBuf::from("/etc/pki/tls/certs/ca-bundle.crt");
        let net = sandbox_net_with(Some((host.clone(), b"SYSTEM ROOTS".to_vec())), CA);
        for path in [SANDBOX_BUNDLE, "/etc/pki/tls/certs/ca-bundle.crt"] {
            let f = file(&net, path).unwrap_or_else(|| panic!("no bundle at {path}"));
            let text = String::from_utf8_lossy(&f.contents);
            assert!(text.starts_with("SYSTEM ROOTS\n"), "{text}");
            assert!(text.ends_with(CA), "{text}");
        }
        // The standard path once when the host's bundle is there.
        let net = sandbox_net_with(Some((SANDBOX_BUNDLE.into(), b"R".to_vec())), CA);
        assert_eq!(
            net.files
                .iter()
                .filter(|f| f.path == Path::new(SANDBOX_BUNDLE))
                .count(),
            1
        );
        assert_eq!(net.files.len(), 2);
        // No host bundle: paddock's CA alone, at the standard path.
        let net = sandbox_net_with(None, CA);
        assert!(
            String::from_utf8_lossy(&file(&net, SANDBOX_BUNDLE).unwrap().contents).ends_with(CA)
        );
        for (k, v) in &net.env {
            if k.ends_with("CA_CERTS") || k.ends_with("CAINFO") || k.ends_with("BUNDLE") {
                assert_eq!(v, SANDBOX_BUNDLE, "{k}");
            }
        }
    }

    #[test]
    fn user_proxy_variables_are_replaced() {
        let net = sandbox_net_with(None, CA);
        let mut env = vec![
            ("HTTP_PROXY".to_string(), "http://evil:1".to_string()),
            ("all_proxy".to_string(), "socks5://evil:2".to_string()),
            ("KEEP".to_string(), "1".to_string()),
        ];
        apply_env(&mut env, &net);
        assert!(!env.iter().any(|(_, v)| v.contains("evil")), "{env:?}");
        assert!(env.contains(&("KEEP".into(), "1".into())));
        for k in ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            assert!(
                env.contains(&(k.into(), format!("http://{PROXY_ADDR}"))),
                "{k}"
            );
        }
    }
}
