//! The streaming scrubber against the one-shot one: for random texts with secrets inserted at
//! random positions and random chunkings, the output never contains a secret, equals the
//! one-shot replacement, holds back less than the longest pattern, and holds back nothing
//! after a byte that cannot start a match (server-sent events flow).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use paddock_secrets::scrub::{ScrubEntry, Scrubber};
use paddock_secrets::{Grant, GrantInfo, GrantSpec, RunSecrets, SecretValue, Target};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn run_stream(s: &Scrubber, text: &[u8], cuts: &[usize]) -> (Vec<u8>, usize) {
    let mut st = s.stream();
    let mut out = Vec::new();
    let mut last = 0;
    let mut max_pending = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    points.sort();
    points.push(text.len());
    for p in points {
        st.push_into(&text[last..p], &mut out);
        max_pending = max_pending.max(st.pending());
        last = p;
    }
    out.extend(st.finish());
    (out, max_pending)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    /// A tiny alphabet makes overlapping secrets, shared prefixes and near-misses common.
    #[test]
    fn stream_equals_one_shot_and_leaks_nothing(
        secrets in prop::collection::vec("[abc]{4,12}", 1..5),
        filler in "[abcd \n]{0,300}",
        inserts in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..8),
        cuts in prop::collection::vec(0usize..10_000, 0..40),
        placeholder_seed in any::<u64>(),
    ) {
        let values: Vec<SecretValue> = secrets.iter().map(|s| SecretValue::new(s.clone()).unwrap()).collect();
        // Placeholders from another alphabet, so a replacement never creates a secret.
        let mut seed = placeholder_seed;
        let placeholders: Vec<String> = secrets
            .iter()
            .map(|s| {
                s.bytes()
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        [b'X', b'Y', b'Z'][(seed >> 33) as usize % 3] as char
                    })
                    .collect()
            })
            .collect();
        for p in &placeholders {
            let enc = B64.encode(p);
            for s in &secrets {
                prop_assume!(!contains(enc.as_bytes(), s.as_bytes()));
            }
        }
        let entries: Vec<ScrubEntry> = values
            .iter()
            .zip(&placeholders)
            .map(|(v, p)| ScrubEntry { real: v, placeholder: p, basic_usernames: vec![] })
            .collect();
        let scrubber = Scrubber::new(&entries);

        let mut text = filler.into_bytes();
        for (pos, which) in inserts {
            let s = secrets[which.index(secrets.len())].as_bytes();
            let at = pos.index(text.len() + 1);
            text.splice(at..at, s.iter().copied());
        }

        let one_shot = scrubber.scrub(&text).into_owned();
        let (streamed, max_pending) = run_stream(&scrubber, &text, &cuts);
        prop_assert_eq!(&streamed, &one_shot);
        for s in &secrets {
            prop_assert!(!contains(&streamed, s.as_bytes()), "secret {} in output", s);
        }
        prop_assert!(max_pending < scrubber.max_len().max(1));

        // Byte by byte, too.
        let all_cuts: Vec<usize> = (0..text.len()).collect();
        let (bytewise, _) = run_stream(&scrubber, &text, &all_cuts);
        prop_assert_eq!(&bytewise, &one_shot);
    }

    /// Realistic tokens (and their encodings) inside SSE-like text, random chunking.
    #[test]
    fn realistic_tokens_in_sse(
        events in prop::collection::vec("[ -~]{0,60}", 1..20),
        token_at in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        form in prop::collection::vec(0u8..3, 6),
        cuts in prop::collection::vec(0usize..4_000, 0..30),
    ) {
        let gh = "ghp_R3alT0kenR3alT0kenR3alT0kenR3alT0k1";
        let key = "sk-ant-api03-REAL_real-realrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealreaAA";
        let grant = |name: &str, spec, v: &str| {
            let value = SecretValue::new(v).unwrap();
            Grant { info: GrantInfo { name: name.into(), spec, created_at: String::new(), updated_at: String::new(), preview: value.masked() }, value }
        };
        let run = RunSecrets::new(
            vec![grant("github", GrantSpec::Github, gh), grant("anthropic", GrantSpec::Anthropic, key)],
            &mut StdRng::seed_from_u64(5),
        ).unwrap();
        let basic = B64.encode(format!("x-access-token:{gh}"));
        let mut lines: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        for (i, idx) in token_at.iter().enumerate() {
            let t = match form[i] { 0 => gh.to_string(), 1 => key.to_string(), _ => format!("Basic {basic}") };
            let at = idx.index(lines.len());
            lines[at] = format!("data: {{\"echo\":\"{t}\"}}\n\n");
        }
        let text = lines.concat().into_bytes();
        let scrubber = run.scrubber();
        let (out, _) = run_stream(scrubber, &text, &cuts);
        prop_assert_eq!(&out, &scrubber.scrub(&text).into_owned());
        prop_assert!(!contains(&out, gh.as_bytes()));
        prop_assert!(!contains(&out, key.as_bytes()));
        prop_assert!(!contains(&out, &basic.as_bytes()[..basic.len() - 4]));

        // An event boundary is never held back.
        let mut st = scrubber.stream();
        for line in &lines {
            st.push(line.as_bytes());
            prop_assert_eq!(st.pending(), 0);
        }
    }
}

#[test]
fn injection_then_scrub_round_trip() {
    // What the upstream sees has the real value; what comes back has the placeholder.
    let gh = "ghp_R3alT0kenR3alT0kenR3alT0kenR3alT0k1";
    let value = SecretValue::new(gh).unwrap();
    let run = RunSecrets::new(
        vec![Grant {
            info: GrantInfo {
                name: "github".into(),
                spec: GrantSpec::Github,
                created_at: String::new(),
                updated_at: String::new(),
                preview: value.masked(),
            },
            value,
        }],
        &mut StdRng::seed_from_u64(8),
    )
    .unwrap();
    let mut parts = http::Request::builder()
        .uri("https://api.github.com/user")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    run.inject_request(Target::https("api.github.com"), &mut parts);
    let sent = parts.headers["authorization"].to_str().unwrap().to_string();
    let echoed = format!("{{\"you_sent\":\"{sent}\"}}");
    let mut st = run.scrubber().stream();
    let mut back = Vec::new();
    for chunk in echoed.as_bytes().chunks(7) {
        st.push_into(chunk, &mut back);
    }
    back.extend(st.finish());
    let back = String::from_utf8(back).unwrap();
    assert_eq!(
        back,
        format!(
            "{{\"you_sent\":\"Bearer {}\"}}",
            run.placeholder("github").unwrap()
        )
    );
}
