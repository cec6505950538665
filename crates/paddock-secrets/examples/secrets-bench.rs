//! Rough cost of the per-request and per-byte work the proxy calls (release build):
//! `cargo run --release -p paddock-secrets --example secrets-bench`.

use std::time::Instant;

use paddock_secrets::{Grant, GrantInfo, GrantSpec, RunSecrets, SecretValue, Target};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn grant(name: &str, spec: GrantSpec, v: &str) -> Grant {
    let value = SecretValue::new(v).unwrap();
    Grant {
        info: GrantInfo {
            name: name.into(),
            spec,
            created_at: String::new(),
            updated_at: String::new(),
            preview: value.masked(),
        },
        value,
    }
}

fn main() {
    let run = RunSecrets::new(
        vec![
            grant(
                "github",
                GrantSpec::Github,
                "ghp_R3alT0kenR3alT0kenR3alT0kenR3alT0k1",
            ),
            grant(
                "anthropic",
                GrantSpec::Anthropic,
                &format!("sk-ant-api03-{}AA", "x".repeat(93)),
            ),
            grant(
                "openai",
                GrantSpec::Openai,
                &format!("sk-proj-{}", "y".repeat(156)),
            ),
        ],
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    let ph = run.placeholder("anthropic").unwrap().to_string();
    let n = 200_000;
    let start = Instant::now();
    for _ in 0..n {
        let mut parts = http::Request::builder()
            .uri("https://api.anthropic.com/v1/messages?beta=true")
            .header("x-api-key", &ph)
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .header("user-agent", "claude-cli/1.0")
            .header("accept", "application/json")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let inj = run.inject_request(Target::https("api.anthropic.com"), &mut parts);
        assert_eq!(inj.grants_used.len(), 1);
    }
    let per = start.elapsed() / n;
    println!("inject_request (build + inject, 5 headers): {per:?} per request");

    let body: Vec<u8> = (0..64 * 1024 * 1024)
        .map(|i| b"data: hello world\n\n"[i % 19])
        .collect();
    let start = Instant::now();
    let mut st = run.scrubber().stream();
    let mut out = Vec::with_capacity(body.len());
    for c in body.chunks(16 * 1024) {
        st.push_into(c, &mut out);
    }
    out.extend(st.finish());
    let secs = start.elapsed().as_secs_f64();
    println!("scrub stream, 16 KiB chunks: {:.0} MiB/s", 64.0 / secs);

    let start = Instant::now();
    let mut st = run.scrubber().stream();
    let mut sent = 0;
    for c in body[..4 * 1024 * 1024].chunks(40) {
        sent += st.push(c).len();
    }
    let per = start.elapsed() / (4 * 1024 * 1024 / 40);
    println!("scrub stream, 40-byte SSE events: {per:?} per event ({sent} bytes)");
}
