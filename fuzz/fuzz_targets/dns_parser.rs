//! The DNS stub (`paddock_egress::dns`): query parsing and answering, as a sandbox's
//! resolver sends them over UDP or TCP.
//!
//! Input: one DNS message.
//!
//! Properties:
//! - neither `parse_query` nor `answer` panics, whatever the bytes (compression loops,
//!   pointers past the end, over-long names, …);
//! - an answer is a well-formed response: QR set, the query's id and RD bit, a header
//!   that says what follows, the question echoed with the same labels, type and class, an
//!   A record only for an allowed name (and then a synthetic address the stub maps back to
//!   that name), NXDOMAIN for a denied one; its rcode and address read back with
//!   `rcode_of` / `answer_addr`; and it fits one UDP datagram (512 bytes);
//! - messages that are not queries (QR=1) or too short get no answer at all;
//! - `Question::name` is always printable text with no unescaped dots inside labels, and a
//!   query built with `make_query` for that name parses back to the same question.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_config::{NetworkConfig, NetworkPolicy, Rule, RuleAction};
use paddock_egress::Policy;
use paddock_egress::dns::{
    ParseError, SyntheticMap, answer, answer_addr, is_synthetic, make_query, parse_query, rcode_of,
};

fn policy() -> Policy {
    let rule = |host: &str, action| Rule {
        host: host.parse().expect("valid pattern"),
        port: None,
        allow_methods: vec![],
        deny_methods: vec![],
        allow_paths: vec![],
        deny_paths: vec![],
        action,
    };
    let cfg = NetworkConfig {
        policy: NetworkPolicy::Strict,
        rules: vec![
            rule("*.example.com", RuleAction::Allow),
            rule("api.github.com", RuleAction::Allow),
            rule("bad.example.com", RuleAction::Deny),
        ],
        ..NetworkConfig::default()
    };
    Policy::new(&cfg, &[])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fuzz_target!(|msg: &[u8]| {
    let policy = policy();
    // Small, so that eviction is exercised too.
    let map = SyntheticMap::new(4);
    let parsed = parse_query(msg);
    let out = answer(msg, &policy, &map);
    match &parsed {
        Err(ParseError::NoHeader) | Err(ParseError::NotQuery) => {
            assert!(out.is_none(), "answered a message that is not a query");
            if msg.len() < 12 {
                assert_eq!(parsed, Err(ParseError::NoHeader));
            }
            return;
        }
        _ => {}
    }
    let (q, _decision, a) = out.expect("a query always gets an answer");
    let r = &a.bytes;
    assert!(r.len() >= 12, "short answer");
    assert!(
        r.len() <= 512,
        "answer of {} bytes does not fit UDP",
        r.len()
    );
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let rd = msg[2] & 0x01 != 0;
    assert_eq!(be16(r, 0), id, "id not echoed");
    let flags = be16(r, 2);
    assert!(flags & 0x8000 != 0, "QR not set");
    assert_eq!(flags & 0x0100 != 0, rd, "RD not echoed");
    assert_eq!(rcode_of(r), Some(a.rcode));
    assert_eq!((flags & 0x000f) as u8, a.rcode);
    assert_eq!(answer_addr(r), a.addr);
    let qd = be16(r, 4);
    let an = be16(r, 6);
    match &parsed {
        Err(ParseError::Reply {
            id: eid,
            rd: erd,
            rcode,
        }) => {
            assert_eq!((*eid, *erd, *rcode), (id, rd, a.rcode));
            assert_eq!(
                (qd, an, r.len()),
                (0, 0, 12),
                "an error reply carries nothing"
            );
            assert!(q.is_none());
        }
        Ok(question) => {
            assert_eq!(qd, 1, "the question is echoed");
            // The echoed question: uncompressed labels, then type and class.
            let mut at = 12;
            for l in &question.labels {
                assert_eq!(r[at] as usize, l.len());
                assert_eq!(&r[at + 1..at + 1 + l.len()], &l[..]);
                at += 1 + l.len();
            }
            assert_eq!(r[at], 0);
            assert_eq!(be16(r, at + 1), question.qtype);
            assert_eq!(be16(r, at + 3), question.qclass);
            at += 5;
            match a.addr {
                Some(ip) => {
                    assert_eq!(an, 1);
                    assert_eq!(r.len(), at + 16, "one A record");
                    assert_eq!(a.rcode, 0);
                    assert!(is_synthetic(ip), "{ip} is not a synthetic address");
                    assert_eq!(map.name_of(ip), Some(question.name()));
                    assert_eq!(question.qtype, 1, "an address for a non-A query");
                }
                None => {
                    assert_eq!(an, 0);
                    assert_eq!(r.len(), at, "trailing bytes in an answer without records");
                }
            }
            let name = question.name();
            assert!(
                name.bytes().all(|b| b.is_ascii_graphic()),
                "name is not printable: {name:?}"
            );
            if let Some(d) = _decision {
                if a.rcode == 0 {
                    assert!(d.allowed, "NOERROR for a denied name");
                }
                if !d.allowed {
                    assert_eq!(a.rcode, 3, "a denied name is NXDOMAIN");
                }
            }
            // A name made only of host-name bytes rebuilds into the same question.
            let plain = question.labels.iter().all(|l| {
                !l.is_empty()
                    && l.iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            });
            if plain {
                let labels: Vec<String> = question
                    .labels
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect();
                let rebuilt = make_query(question.id, &labels.join("."), question.qtype);
                let again = parse_query(&rebuilt).expect("a built query parses");
                assert_eq!(again.labels, question.labels);
                assert_eq!(again.qtype, question.qtype);
                assert_eq!(again.name(), name);
            }
        }
        Err(_) => unreachable!(),
    }
});
