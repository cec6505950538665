//! Hostile input: deep nesting, alias bombs, huge numbers and strings, tabs, odd bytes.
//! Each must be refused or bounded: no panic, no hang, a clear error.

use std::time::{Duration, Instant};

use paddock_config::{Config, ConfigError, ErrorKind, Origin, load_from_bytes, load_from_str};
use proptest::prelude::*;

fn origin() -> Origin {
    Origin::project("/p/paddock.yaml").with_home(Some("/home/u".into()))
}

/// Parse with a time bound; hostile inputs must be handled in well under a second.
#[track_caller]
fn timed(bytes: &[u8]) -> Result<Config, ConfigError> {
    let start = Instant::now();
    let r = load_from_bytes(bytes, &origin());
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    r
}

#[track_caller]
fn refused(bytes: &[u8]) -> ConfigError {
    match timed(bytes) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn deep_flow_nesting() {
    for n in [100, 10_000, 500_000] {
        let doc = format!("mounts: {}{}\n", "[".repeat(n), "]".repeat(n));
        let e = refused(doc.as_bytes());
        assert!(
            matches!(e.kind(), ErrorKind::Limit | ErrorKind::Type),
            "{e}"
        );
        let doc = "{a: ".repeat(n);
        refused(doc.as_bytes());
    }
}

#[test]
fn deep_block_nesting() {
    let mut doc = String::from("network:\n");
    for i in 0..600 {
        doc.push_str(&" ".repeat(i + 1));
        doc.push_str("rules:\n");
    }
    let e = refused(doc.as_bytes());
    assert!(e.position().is_some(), "{e}");
    let mut doc = String::new();
    for i in 0..5_000 {
        doc.push_str(&" ".repeat(i));
        doc.push_str("- \n");
    }
    refused(doc.as_bytes());
}

fn laughs(root_key: &str) -> String {
    let mut doc =
        format!("{root_key}:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for n in names {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        doc.push_str(&format!("  - &{n} [{refs}]\n"));
        prev = n;
    }
    doc
}

#[test]
fn billion_laughs_is_bounded() {
    // Under an unknown key, a known list key, and a known map key.
    for key in ["lol", "grants", "mounts", "command", "env"] {
        let e = refused(laughs(key).as_bytes());
        assert!(e.position().is_some(), "{key}: {e}");
    }
    // As the whole document.
    let doc = laughs("x")
        .replacen("x:\n", "", 1)
        .replace("\n  - ", "\n- ");
    refused(doc.trim_start().as_bytes());
}

/// Merge keys are the one way aliases fit the schema (maps of strings); a nested merge
/// bomb must hit the alias budget instead of expanding 10^9 entries.
#[test]
fn merge_key_bomb_is_bounded() {
    fn level(i: usize) -> String {
        if i == 0 {
            return "&l0 {A: x}".to_string();
        }
        let mut items = vec![level(i - 1)];
        items.extend(std::iter::repeat_n(format!("*l{}", i - 1), 9));
        format!("&l{i} {{<<: [{}]}}", items.join(", "))
    }
    let doc = format!("env: {}\n", level(9));
    let e = refused(doc.as_bytes());
    assert_eq!(e.kind(), ErrorKind::Limit, "{e}");
    assert!(e.position().is_some(), "{e}");
    // A small, legitimate use of anchors and merge keys still works.
    let ok = "env: &base {A: a}\nports: {web: 3000}\n";
    assert_eq!(load_from_str(ok, &origin()).unwrap().env["A"], "a");
}

#[test]
fn huge_numbers_and_strings() {
    for doc in [
        "limits: {pids: 99999999999999999999999999999999999999999999999999}\n",
        "limits: {pids: -99999999999999999999999999999999999999999999999999}\n",
        "limits: {memory: 99999999999999999999999999999999999999999999999999}\n",
        "limits: {memory: \"99999999999999999999999999999999999999999999999999G\"}\n",
        "limits: {cpus: 1e99999}\n",
        "ports: {web: 1e10}\n",
        "daemon: {idle_timeout: 999999999999999999999999999999999d}\n",
    ] {
        let e = refused(doc.as_bytes());
        assert!(e.position().is_some(), "{doc}: {e}");
    }
    let long_name = format!("name: {}\n", "a".repeat(500_000));
    let e = refused(long_name.as_bytes());
    assert!(e.message().contains("characters long"), "{e}");
    let many_keys: String = (0..20_000).map(|i| format!("  K{i}: v\n")).collect();
    let doc = format!("env:\n{many_keys}");
    // 20k env vars is silly but within limits; must not be slow.
    assert_eq!(timed(doc.as_bytes()).unwrap().env.len(), 20_000);
    let too_many: String = (0..60_000).map(|i| format!("  K{i}: v\n")).collect();
    let e = refused(format!("env:\n{too_many}").as_bytes());
    assert_eq!(e.kind(), ErrorKind::Limit, "{e}");
}

#[test]
fn tabs() {
    let e = refused(b"limits:\n\tpids: 5\n");
    assert_eq!(e.kind(), ErrorKind::Syntax);
    assert_eq!(e.position(), Some((2, 1)));
    assert!(e.hint().unwrap().contains("tabs"), "{e:?}");
    // Tabs inside values are fine.
    let c = timed(b"env:\n  A: \"a\tb\"\n").unwrap();
    assert_eq!(c.env["A"], "a\tb");
}

#[test]
fn odd_bytes() {
    let e = refused(b"name: a\0b\n");
    assert!(e.position().is_some(), "{e}");
    let e = refused(b"\xff\xfen\0a\0m\0e\0");
    assert_eq!(e.kind(), ErrorKind::NotUtf8);
    assert_eq!(e.position(), Some((1, 1)));
    let e = refused(b"name: ok\nenv: {A: \xc3}\n");
    assert_eq!(e.kind(), ErrorKind::NotUtf8);
    assert_eq!(e.position(), Some((2, 10)));
    // A UTF-8 BOM is allowed.
    assert_eq!(
        timed("\u{feff}name: x\n".as_bytes())
            .unwrap()
            .name
            .as_deref(),
        Some("x")
    );
    // Many documents.
    refused("---\n".repeat(10_000).as_bytes());
    // Unknown tags and explicit keys.
    refused(b"name: !!python/object x\n");
    refused(b"? [a, b]\n: c\n");
}

const VALID: &str = r#"name: agent
command: "make test"
env: {A: b}
mounts: ["./a:/a:ro", {source: /b, target: /b}]
workspace: {mode: bind}
limits: {memory: 1G, pids: 100, cpus: 1.5}
runtime: docker
network:
  policy: strict
  rules: [{host: "*.example.com", port: 443, allow_methods: [GET], allow_paths: ["/x/*"]}]
  passthrough: [bank.example]
  headers: [{host: api.example.com, set: {X-Team: blue}, remove: [User-Agent]}]
grants: [github]
ports: {web: 3000}
"#;

#[test]
fn many_and_huge_header_edits_are_bounded() {
    // Many entries, a long name and a long value: handled quickly, within the size limit.
    let mut doc = String::from("network:\n  headers:\n");
    for i in 0..5_000 {
        doc.push_str(&format!(
            "    - {{host: h{i}.example, set: {{X-N: '{i}'}}}}\n"
        ));
    }
    let c = timed(doc.as_bytes()).unwrap();
    assert_eq!(c.network.headers.len(), 5_000);
    let doc = format!(
        "network:\n  headers:\n    - {{host: a.com, set: {{X-{}: '{}'}}}}\n",
        "n".repeat(1_000),
        "v".repeat(500_000)
    );
    timed(doc.as_bytes()).unwrap();
    // Odd bytes in names and values: errors, not panics.
    for name in ["\\u0000", "\\u00ff", "\\uffff", "\\U0001F600", "\\t"] {
        let doc = format!(
            "network:\n  headers:\n    - {{host: a.com, set: {{\"X{name}\": \"v{name}\"}}}}\n"
        );
        refused(doc.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = load_from_bytes(&bytes, &origin());
    }

    #[test]
    fn random_yamlish_text_never_panics(s in "[a-z:{}\\[\\],&*!|>'\"#?\\- \n\t0-9.~<]{0,300}") {
        let _ = load_from_str(&s, &origin());
    }

    #[test]
    fn mutated_valid_config_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        let r = load_from_bytes(&bytes, &origin());
        if let Err(e) = r {
            // Every error names the file and renders without panicking.
            prop_assert!(e.to_string().starts_with("/p/paddock.yaml:"));
        }
    }
}

#[test]
fn the_valid_base_of_the_mutation_test_is_valid() {
    load_from_str(VALID, &origin()).unwrap();
}
