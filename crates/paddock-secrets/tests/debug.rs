//! Every type that holds a secret prints it masked: no `Debug` (plain or pretty) of any of
//! them contains the value, or even a 6-character window of its random part.

use http::{HeaderMap, HeaderValue};
use paddock_secrets::key::KeyOrigin;
use paddock_secrets::{
    BodyPlan, Grant, GrantSpec, HttpSpec, KeyBackend, RunSecrets, SecretStore, SecretValue,
    Substitution, Target,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const GH: &str = "ghp_Zq8mW2xK7vN4pL9rT3yB6cF1hJ5sD0gA2eQ1";
const GEN: &str = "api-Wm4Kx9Pq2Rt7Vz3Nb8Lc5Hd1Fg6Js0Ty";

fn assert_masked(what: &str, text: &str) {
    for real in [GH, GEN] {
        let random = &real[4..];
        for w in random.as_bytes().windows(6) {
            let w = std::str::from_utf8(w).unwrap();
            assert!(!text.contains(w), "{what} shows {w:?}: {text}");
        }
    }
}

#[test]
fn nothing_prints_a_value() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open_with(tmp.path(), KeyBackend::FileOnly).unwrap();
    let spec = GrantSpec::Http(
        HttpSpec::new(&["api.example.com"], "x-api-key", None)
            .unwrap()
            .with_substitution(Substitution::ALL),
    );
    store
        .put("github", GrantSpec::Github, &SecretValue::new(GH).unwrap())
        .unwrap();
    store
        .put("example", spec, &SecretValue::new(GEN).unwrap())
        .unwrap();
    let grants: Vec<Grant> = ["github", "example"]
        .iter()
        .map(|n| store.get(n).unwrap())
        .collect();
    let value = SecretValue::new(GH).unwrap();
    assert_masked("SecretValue", &format!("{value:?} {value:#?}"));
    assert_masked("Grant", &format!("{grants:?} {grants:#?}"));
    assert_masked("SecretStore", &format!("{store:?}"));
    let origin: KeyOrigin = store.key_origin().unwrap();
    assert_masked("KeyOrigin", &format!("{origin:?}"));

    let run = RunSecrets::new(grants, &mut StdRng::seed_from_u64(4)).unwrap();
    assert_masked("RunSecrets", &format!("{run:?} {run:#?}"));
    assert_masked("Scrubber", &format!("{:?}", run.scrubber()));

    // A stream holding part of a value, a substituter holding real values.
    let mut stream = run.scrubber().stream();
    stream.push(&GH.as_bytes()[..20]);
    assert!(stream.pending() > 0);
    assert_masked("ScrubStream", &format!("{stream:?}"));
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    match run.request_body(Target::https("api.example.com"), &h) {
        BodyPlan::Substitute(sub) => assert_masked("BodySubstituter", &format!("{sub:?} {sub:#?}")),
        other => panic!("{other:?}"),
    }

    // Injection reports and request dumps carry names, and header values marked sensitive.
    let mut parts = http::Request::builder()
        .uri("https://api.github.com/")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let inj = run.inject_request(Target::https("api.github.com"), &mut parts);
    assert_masked("Injection", &format!("{inj:?}"));
    assert_masked("HeaderMap", &format!("{:?}", parts.headers));

    // Errors name grants, never values.
    let bad = store.put(
        "x",
        GrantSpec::Github,
        &SecretValue::new("shortv1").unwrap(),
    );
    assert_masked("error", &format!("{bad:?}"));
    let e = SecretValue::new(format!("{GH}\n")).unwrap_err();
    assert_masked("error", &format!("{e:?} {e}"));
}
