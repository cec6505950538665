//! `paddock-egress-bench`: the pieces bench/egress.sh measures, on this machine only.
//!
//! Starts a TLS upstream (its own test CA, h2 + http/1.1) on 127.0.0.1 and a paddock
//! proxy in front of it: a transparent listener on 127.0.0.1 that intercepts TLS (leaf for
//! the address), applies policy, injects a header and forwards to the upstream. Prints
//! `upstream=PORT paddock=PORT ca=PATH upstream_ca=PATH` and serves until killed. No sandbox is involved:
//! this measures the proxy's own cost.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use paddock_egress::dns::SyntheticMap;
use paddock_egress::proxy::Proxy;
use paddock_egress::record::Recorder;
use paddock_egress::upstream::Upstream;
use paddock_egress::{GrantUse, Injector, Policy};

struct HeaderInjector;

impl Injector for HeaderInjector {
    fn on_request(
        &self,
        _: paddock_egress::Dest<'_>,
        parts: &mut http::request::Parts,
    ) -> Vec<GrantUse> {
        parts
            .headers
            .insert("authorization", "Bearer real-token-value".parse().unwrap());
        vec![GrantUse {
            grant: "bench".into(),
        }]
    }
}

fn die(msg: String) -> ! {
    eprintln!("paddock-egress-bench: {msg}");
    std::process::exit(1)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = std::env::temp_dir().join(format!("paddock-egress-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| die(format!("temp dir: {e}")));
    let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| die(e.to_string()));
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| die(e.to_string()));
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench upstream CA");
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .unwrap_or_else(|e| die(e.to_string()));
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap_or_else(|e| die(e.to_string()));
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .and_then(|p| p.signed_by(&leaf_key, &issuer))
        .unwrap_or_else(|e| die(e.to_string()));
    let up_ca = dir.join("upstream-ca.pem");
    std::fs::write(&up_ca, ca_cert.pem()).unwrap_or_else(|e| die(e.to_string()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| die(e.to_string()))
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap_or_else(|e| die(e.to_string()));
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
    let up_l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| die(e.to_string()));
    let up_addr = up_l.local_addr().unwrap_or_else(|e| die(e.to_string()));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = up_l.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let auth = req.headers().contains_key("authorization");
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(if auth {
                        "ok injected\n"
                    } else {
                        "ok\n"
                    }))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    let ca = Arc::new(
        paddock_ca::CertAuthority::open_or_create(&dir.join("ca"))
            .unwrap_or_else(|e| die(e.to_string())),
    );
    let mut resolve = BTreeMap::new();
    resolve.insert("127.0.0.1".to_string(), up_addr);
    let upstream =
        Arc::new(Upstream::new(Some(&up_ca), resolve).unwrap_or_else(|e| die(e.to_string())));
    let policy = Arc::new(Policy::new(&paddock_config::NetworkConfig::default(), &[]));
    let proxy = Proxy::new(
        policy,
        Arc::new(SyntheticMap::new(16)),
        ca.clone(),
        upstream,
        Arc::new(HeaderInjector),
        Recorder::new("run_bench", Arc::new(|_| {})).expect("record thread"),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| die(e.to_string()));
    let p_addr = l.local_addr().unwrap_or_else(|e| die(e.to_string()));
    println!(
        "upstream={} paddock={} ca={} upstream_ca={}",
        up_addr.port(),
        p_addr.port(),
        ca.cert_path().display(),
        up_ca.display()
    );
    proxy.serve_transparent(l).await;
}
