//! The two ways to reach canonical JSON agree: via a parsed `serde_json::Value`
//! (`canonical_json`, used when writing) and straight from the parser
//! (`deserialize_canonical`, used when verifying a bundle file).

use paddock_audit::canonical_json;
use paddock_audit::entry::deserialize_canonical;
use proptest::prelude::*;
use serde_json::Value;

fn direct(s: &str) -> Vec<u8> {
    let mut de = serde_json::Deserializer::from_str(s);
    deserialize_canonical(&mut de).unwrap()
}

fn via_value(s: &str) -> Vec<u8> {
    canonical_json(&serde_json::from_str::<Value>(s).unwrap())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        "[\\u{0}-\\u{1f}\"\\\\/a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// JSON text with every object's keys in reverse order (exercises the unsorted path).
fn reversed(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| b.0.cmp(a.0));
            let inner: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("{} : {}", serde_json::to_string(k).unwrap(), reversed(v)))
                .collect();
            format!("{{ {} }}", inner.join(" , "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(reversed).collect::<Vec<_>>().join(",")),
        other => serde_json::to_string(other).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn direct_equals_via_value(v in json_value()) {
        for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap(), reversed(&v)] {
            prop_assert_eq!(direct(&text), via_value(&text));
        }
        // and canonical JSON is a fixed point
        let c = String::from_utf8(canonical_json(&v)).unwrap();
        let d = direct(&c);
        prop_assert_eq!(d.as_slice(), c.as_bytes());
    }
}

#[test]
fn edge_cases() {
    for text in [
        r#"{"b":1,"a":2,"b":3}"#,
        r#"{"a":1,"c":{"y":1,"x":[{"q":1,"p":2}]},"b":2,"a":5}"#,
        r#"{"a":1,"b":2,"b":3}"#,
        r#"{"a":{"a":1,"a":[]},"":0}"#,
        r#"[1e400, -0.0, 1.0, 1e-7, 12345678901234567890, -9223372036854775808, 18446744073709551616]"#,
        r#""\u00e9\ud83d\ude00\u0001\/""#,
        r#"{"k": [ {"z":null, "y": true}, [], {} ] }"#,
        "  null ",
    ] {
        let ok = serde_json::from_str::<Value>(text).is_ok();
        if ok {
            assert_eq!(direct(text), via_value(text), "{text}");
        }
    }
    assert_eq!(direct(r#"{"b":1,"a":2,"b":3}"#), br#"{"a":2,"b":3}"#);
}
