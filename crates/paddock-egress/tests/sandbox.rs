//! Egress inside real native sandboxes: clients in the sandbox, upstreams on this
//! machine's loopback (reached through `upstream.resolve`), policy, interception,
//! injection, DNS and capture.

mod common;

use common::*;
use paddock_config::{NetworkConfig, NetworkPolicy};

fn permissive() -> NetworkConfig {
    NetworkConfig {
        policy: NetworkPolicy::Permissive,
        rules: vec![],
        passthrough: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_explicit_proxy_is_intercepted_and_injected() {
    let Some(f) = fixture(permissive(), &[]).await else {
        return;
    };
    if !tool("/usr/bin/curl") {
        return f.finish().await;
    }
    let o = f.sh("curl -sS --max-time 10 https://api.test/echo").await;
    assert_eq!(o.code, Some(0), "{o}");
    assert!(o.stdout.starts_with("ok GET /echo"), "{o}");
    let seen = f.seen();
    let (_, _, h) = seen
        .iter()
        .find(|(_, p, _)| p == "/echo")
        .expect("upstream saw it");
    assert_eq!(h.get("x-test-token").unwrap(), "real-secret");
    // The sandbox never had the value: not in its environment.
    let o = f.sh("env; cat /proc/self/environ | tr '\\0' '\\n'").await;
    assert!(!o.stdout.contains("real-secret"), "{o}");
    let recs = f.records();
    let r = recs
        .iter()
        .find(|r| r.host == "api.test" && r.path.as_deref() == Some("/echo"))
        .expect("record");
    assert_eq!(r.status, Some(200));
    assert_eq!(r.grants, vec!["testgrant".to_string()]);
    assert!(r.decision.allowed);
    assert!(r.bytes_down > 0);
    f.finish().await;
}
