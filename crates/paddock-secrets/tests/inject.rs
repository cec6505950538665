//! Injection: every kind on its hosts, refusal elsewhere, substitution in headers, URL and
//! bodies (with the bound), placeholders and the registry.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use paddock_secrets::{
    BODY_LIMIT, BodySkip, Grant, GrantInfo, GrantSpec, HeaderEdit, HostPattern, HttpSpec,
    RunSecrets, SecretValue, Substitution, Target,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use regex::Regex;

const GH: &str = "ghp_R3alT0kenR3alT0kenR3alT0kenR3alT0k1";
const ANT: &str = "sk-ant-api03-REALrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealreaAA";
const OAI: &str =
    "sk-proj-REALrealrealrealrealrealrealrealrealrealrealrealrealT3BlbkFJrealrealrealrealreal";
const GEN: &str = "generic-Secret-1234567890abcdef";

fn grant(name: &str, spec: GrantSpec, value: &str) -> Grant {
    let value = SecretValue::new(value).unwrap();
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

fn http_spec(hosts: &[&str], header: &str, format: Option<&str>, sub: Substitution) -> GrantSpec {
    GrantSpec::Http(
        HttpSpec::new(hosts, header, format)
            .unwrap()
            .with_env(&["EXAMPLE_TOKEN"])
            .unwrap()
            .with_substitution(sub),
    )
}

fn run() -> RunSecrets {
    RunSecrets::new(
        vec![
            grant("github", GrantSpec::Github, GH),
            grant("anthropic", GrantSpec::Anthropic, ANT),
            grant("openai", GrantSpec::Openai, OAI),
            grant(
                "example",
                http_spec(
                    &["api.example.com"],
                    "X-Api-Key",
                    Some("Token {}"),
                    Substitution::ALL,
                ),
                GEN,
            ),
        ],
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap()
}

fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn header<'a>(p: &'a http::request::Parts, name: &str) -> Vec<&'a str> {
    p.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn no_real_value(p: &http::request::Parts) {
    let dump = format!("{:?} {:?}", p.uri, p.headers);
    for real in [GH, ANT, OAI, GEN] {
        assert!(!dump.contains(real), "real value leaked: {dump}");
    }
}

#[test]
fn github_bearer_on_api_and_basic_on_git() {
    let s = run();
    let mut p = parts("https://api.github.com/user", &[]);
    let inj = s.inject_request(Target::https("api.github.com"), &mut p);
    assert_eq!(header(&p, "authorization"), [format!("Bearer {GH}")]);
    assert!(p.headers.get("authorization").unwrap().is_sensitive());
    assert_eq!(inj.grants_used, ["github"]);
    assert_eq!(header(&p, "accept-encoding"), ["identity"]);

    let mut p = parts(
        "https://github.com/o/r.git/info/refs?service=git-upload-pack",
        &[],
    );
    let inj = s.inject_request(Target::https("github.com:443"), &mut p);
    let basic = B64.encode(format!("x-access-token:{GH}"));
    assert_eq!(header(&p, "authorization"), [format!("Basic {basic}")]);
    assert_eq!(inj.grants_used, ["github"]);
}

#[test]
fn client_placeholder_is_replaced_in_place() {
    let s = run();
    let ph = s.placeholder("github").unwrap().to_string();
    // gh sends `token <ph>`: the client's scheme is kept.
    let mut p = parts(
        "https://api.github.com/user",
        &[("authorization", &format!("token {ph}"))],
    );
    s.inject_request(Target::https("api.github.com"), &mut p);
    assert_eq!(header(&p, "authorization"), [format!("token {GH}")]);

    // git with a credential helper sends Basic base64(user:<ph>).
    let creds = B64.encode(format!("oauth2:{ph}"));
    let mut p = parts(
        "https://github.com/o/r.git/info/refs",
        &[("authorization", &format!("Basic {creds}"))],
    );
    let inj = s.inject_request(Target::https("github.com"), &mut p);
    let want = B64.encode(format!("oauth2:{GH}"));
    assert_eq!(header(&p, "authorization"), [format!("Basic {want}")]);
    assert_eq!(inj.grants_used, ["github"]);

    // Something that is not a placeholder is overwritten by the grant.
    let mut p = parts(
        "https://api.github.com/user",
        &[("authorization", "Bearer junk")],
    );
    s.inject_request(Target::https("api.github.com"), &mut p);
    assert_eq!(header(&p, "authorization"), [format!("Bearer {GH}")]);
}

#[test]
fn anthropic_and_openai() {
    let s = run();
    let ph = s.placeholder("anthropic").unwrap().to_string();
    let mut p = parts(
        "https://api.anthropic.com/v1/messages",
        &[("x-api-key", &ph)],
    );
    let inj = s.inject_request(Target::https("api.anthropic.com"), &mut p);
    assert_eq!(header(&p, "x-api-key"), [ANT]);
    assert_eq!(inj.grants_used, ["anthropic"]);

    let mut p = parts("https://api.openai.com/v1/responses", &[]);
    let inj = s.inject_request(Target::https("API.OpenAI.com"), &mut p);
    assert_eq!(header(&p, "authorization"), [format!("Bearer {OAI}")]);
    assert_eq!(inj.grants_used, ["openai"]);
}

#[test]
fn generic_grant_header_and_format() {
    let s = run();
    let mut p = parts("https://api.example.com/x", &[]);
    let inj = s.inject_request(Target::https("api.example.com"), &mut p);
    assert_eq!(header(&p, "x-api-key"), [format!("Token {GEN}")]);
    assert_eq!(inj.grants_used, ["example"]);
}

#[test]
fn nothing_for_hosts_a_grant_does_not_name() {
    let s = run();
    let placeholders: Vec<String> = ["github", "anthropic", "openai", "example"]
        .iter()
        .map(|g| s.placeholder(g).unwrap().to_string())
        .collect();
    for host in [
        "evil.com",
        "api.github.com.evil.com",
        "gist.github.com",
        "evilgithub.com",
        "uploads.github.com",
        "example.com",
        "api.anthropic.com.attacker.net",
    ] {
        let mut headers: Vec<(&str, String)> = vec![
            ("authorization", format!("Bearer {}", placeholders[0])),
            ("x-api-key", placeholders[1].clone()),
            ("x-other", placeholders[2].clone()),
            ("cookie", format!("k={}", placeholders[3])),
        ];
        headers.push((
            "x-basic",
            format!("Basic {}", B64.encode(format!("u:{}", placeholders[0]))),
        ));
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let uri = format!("https://{host}/{}?k={}", placeholders[3], placeholders[0]);
        let mut p = parts(&uri, &hs);
        let before = p.headers.clone();
        let before_uri = p.uri.clone();
        let inj = s.inject_request(Target::https(host), &mut p);
        assert!(inj.grants_used.is_empty(), "{host}: {inj:?}");
        assert_eq!(p.headers, before, "{host}");
        assert_eq!(p.uri, before_uri, "{host}");
        no_real_value(&p);
        assert_eq!(
            inj.foreign_placeholders,
            ["anthropic", "example", "github", "openai"],
            "{host}"
        );
        let mut hm = HeaderMap::new();
        let body = format!("{{\"t\":\"{}\"}}", placeholders[3]);
        let b = s.inject_body(Target::https(host), &mut hm, body.as_bytes());
        assert!(b.body.is_none() && b.injection.grants_used.is_empty());
    }
}

#[test]
fn a_placeholder_for_one_grant_host_is_not_swapped_for_another_grant() {
    // The anthropic placeholder sent to api.github.com stays a placeholder.
    let s = run();
    let ph = s.placeholder("anthropic").unwrap().to_string();
    let mut p = parts("https://api.github.com/", &[("x-api-key", &ph)]);
    let inj = s.inject_request(Target::https("api.github.com"), &mut p);
    assert_eq!(header(&p, "x-api-key"), [ph.as_str()]);
    assert_eq!(inj.grants_used, ["github"]);
    assert_eq!(inj.foreign_placeholders, ["anthropic"]);
}

#[test]
fn plain_http_is_refused() {
    let s = run();
    let ph = s.placeholder("github").unwrap().to_string();
    let mut p = parts(
        "http://api.github.com/user",
        &[("authorization", &format!("Bearer {ph}"))],
    );
    let inj = s.inject_request(Target::http("api.github.com"), &mut p);
    assert!(inj.grants_used.is_empty());
    assert_eq!(inj.refused_plain_http, ["github"]);
    assert!(inj.foreign_placeholders.is_empty());
    assert_eq!(header(&p, "authorization"), [format!("Bearer {ph}")]);

    // A generic grant may opt in (local development).
    let mut spec = HttpSpec::new(&["localhost"], "authorization", Some("Bearer {}")).unwrap();
    spec.allow_plain_http = true;
    let s = RunSecrets::new(
        vec![grant("local", GrantSpec::Http(spec), GEN)],
        &mut StdRng::seed_from_u64(2),
    )
    .unwrap();
    let mut p = parts("http://localhost:8080/", &[]);
    let inj = s.inject_request(Target::http("localhost:8080"), &mut p);
    assert_eq!(inj.grants_used, ["local"]);
}

#[test]
fn header_edits_per_host() {
    let s = run().with_header_edits(vec![HeaderEdit {
        host: HostPattern::parse("*.github.com").unwrap(),
        set: vec![(
            HeaderName::from_static("x-github-api-version"),
            HeaderValue::from_static("2022-11-28"),
        )],
        remove: vec![HeaderName::from_static("x-debug")],
    }]);
    let mut p = parts(
        "https://api.github.com/",
        &[("x-debug", "1"), ("x-keep", "1")],
    );
    s.inject_request(Target::https("api.github.com"), &mut p);
    assert!(p.headers.get("x-debug").is_none());
    assert_eq!(header(&p, "x-github-api-version"), ["2022-11-28"]);
    assert_eq!(header(&p, "x-keep"), ["1"]);
    let mut p = parts("https://example.net/", &[("x-debug", "1")]);
    s.inject_request(Target::https("example.net"), &mut p);
    assert_eq!(header(&p, "x-debug"), ["1"]);
    assert!(p.headers.get("x-github-api-version").is_none());
}

#[test]
fn header_edits_apply_without_grants() {
    let s = RunSecrets::new(Vec::new(), &mut StdRng::seed_from_u64(7))
        .unwrap()
        .with_header_edits(vec![
            HeaderEdit {
                host: HostPattern::parse("api.github.com").unwrap(),
                set: vec![(
                    HeaderName::from_static("x-team"),
                    HeaderValue::from_static("blue"),
                )],
                remove: vec![HeaderName::from_static("user-agent")],
            },
            // A later edit wins over an earlier one for the same header.
            HeaderEdit {
                host: HostPattern::parse("*.github.com").unwrap(),
                set: vec![(
                    HeaderName::from_static("x-team"),
                    HeaderValue::from_static("red"),
                )],
                remove: vec![],
            },
        ]);
    for target in [
        Target::https("api.github.com"),
        Target::http("API.GitHub.com:80"),
    ] {
        let mut p = parts(
            "https://api.github.com/",
            &[("user-agent", "curl/8"), ("x-team", "client")],
        );
        let inj = s.inject_request(target, &mut p);
        assert!(p.headers.get("user-agent").is_none());
        assert_eq!(header(&p, "x-team"), ["red"]);
        assert!(inj.grants_used.is_empty());
    }
    let mut p = parts("https://api.anthropic.com/", &[("user-agent", "curl/8")]);
    s.inject_request(Target::https("api.anthropic.com"), &mut p);
    assert_eq!(header(&p, "user-agent"), ["curl/8"]);
    assert!(p.headers.get("x-team").is_none());
}

#[test]
fn substitution_in_other_headers() {
    let s = run();
    let ph = s.placeholder("example").unwrap().to_string();
    let mut p = parts(
        "https://api.example.com/",
        &[
            ("cookie", &format!("session=1; tok={ph}")),
            ("x-api-key", &format!("Token {ph}")),
        ],
    );
    let inj = s.inject_request(Target::https("api.example.com"), &mut p);
    assert_eq!(header(&p, "cookie"), [format!("session=1; tok={GEN}")]);
    assert_eq!(header(&p, "x-api-key"), [format!("Token {GEN}")]);
    assert_eq!(inj.grants_used, ["example"]);
}

#[test]
fn substitution_in_url_path_and_query() {
    let s = run();
    let ph = s.placeholder("example").unwrap().to_string();
    let mut p = parts(
        &format!("https://api.example.com/bot{ph}/send?key={ph}&x=1"),
        &[],
    );
    let inj = s.inject_request(Target::https("api.example.com"), &mut p);
    assert_eq!(p.uri.path(), format!("/bot{GEN}/send"));
    assert_eq!(p.uri.query(), Some(format!("key={GEN}&x=1").as_str()));
    assert_eq!(p.uri.host(), Some("api.example.com"));
    assert_eq!(inj.grants_used, ["example"]);

    // Built-in kinds do not substitute in URLs: the placeholder stays, and is not foreign.
    let gph = s.placeholder("github").unwrap().to_string();
    let mut p = parts(&format!("https://api.github.com/search?q={gph}"), &[]);
    let inj = s.inject_request(Target::https("api.github.com"), &mut p);
    assert_eq!(p.uri.query(), Some(format!("q={gph}").as_str()));
    assert!(inj.foreign_placeholders.is_empty());
}

#[test]
fn real_values_are_encoded_for_their_context() {
    let odd = "we!rd/val+ue=\"quote\"";
    let spec = http_spec(&["api.example.com"], "x-api-key", None, Substitution::ALL);
    let s = RunSecrets::new(vec![grant("odd", spec, odd)], &mut StdRng::seed_from_u64(3)).unwrap();
    let ph = s.placeholder("odd").unwrap().to_string();
    let mut p = parts(&format!("https://api.example.com/x?k={ph}"), &[]);
    s.inject_request(Target::https("api.example.com"), &mut p);
    assert_eq!(p.uri.query(), Some("k=we%21rd%2Fval%2Bue%3D%22quote%22"));

    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let b = s.inject_body(
        Target::https("api.example.com"),
        &mut h,
        format!("{{\"k\":\"{ph}\"}}").as_bytes(),
    );
    let body: serde_json::Value = serde_json::from_slice(&b.body.unwrap()).unwrap();
    assert_eq!(body["k"], odd);

    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let b = s.inject_body(
        Target::https("api.example.com"),
        &mut h,
        format!("k={ph}").as_bytes(),
    );
    assert_eq!(b.body.unwrap(), b"k=we%21rd%2Fval%2Bue%3D%22quote%22");
}

#[test]
fn body_substitution_and_bound() {
    let s = run();
    let ph = s.placeholder("example").unwrap().to_string();
    let target = Target::https("api.example.com");
    assert!(s.wants_body(target));
    assert!(!s.wants_body(Target::https("api.github.com")));

    let body = format!("token={ph}&again={ph}");
    let mut h = HeaderMap::new();
    h.insert("content-length", HeaderValue::from(body.len()));
    let b = s.inject_body(target, &mut h, body.as_bytes());
    let new = b.body.unwrap();
    assert_eq!(new, format!("token={GEN}&again={GEN}").as_bytes());
    assert_eq!(h["content-length"], new.len().to_string().as_str());
    assert_eq!(b.injection.grants_used, ["example"]);
    assert!(b.skipped.is_none());

    // Exactly at the bound: substituted. One byte over: untouched, and reported.
    let mut at = vec![b'x'; BODY_LIMIT - ph.len()];
    at.extend_from_slice(ph.as_bytes());
    assert_eq!(at.len(), BODY_LIMIT);
    let b = s.inject_body(target, &mut HeaderMap::new(), &at);
    assert!(b.body.unwrap().ends_with(GEN.as_bytes()));
    let mut over = vec![b'x'; BODY_LIMIT + 1 - ph.len()];
    over.extend_from_slice(ph.as_bytes());
    let b = s.inject_body(target, &mut HeaderMap::new(), &over);
    assert!(b.body.is_none());
    assert_eq!(
        b.skipped,
        Some(BodySkip::TooLarge {
            len: BODY_LIMIT + 1
        })
    );
    assert!(b.injection.grants_used.is_empty());

    // Compressed bodies are reported, not searched.
    let mut h = HeaderMap::new();
    h.insert("content-encoding", HeaderValue::from_static("gzip"));
    let b = s.inject_body(target, &mut h, body.as_bytes());
    assert_eq!(
        b.skipped,
        Some(BodySkip::Encoded {
            encoding: "gzip".into()
        })
    );

    // Built-in kinds never substitute in bodies (an agent could publish the value).
    let gph = s.placeholder("github").unwrap().to_string();
    let b = s.inject_body(
        Target::https("api.github.com"),
        &mut HeaderMap::new(),
        gph.as_bytes(),
    );
    assert!(b.body.is_none() && b.skipped.is_none());
}

#[test]
fn placeholder_env_and_registry() {
    let s = run();
    let env = s.placeholder_env();
    let get = |k: &str| {
        env.iter()
            .find(|(v, _)| v == k)
            .map(|(_, p)| p.clone())
            .unwrap()
    };
    assert_eq!(get("GH_TOKEN"), get("GITHUB_TOKEN"));
    assert_eq!(get("GH_TOKEN"), s.placeholder("github").unwrap());
    assert_eq!(
        get("ANTHROPIC_API_KEY"),
        s.placeholder("anthropic").unwrap()
    );
    assert_eq!(get("OPENAI_API_KEY"), s.placeholder("openai").unwrap());
    assert_eq!(get("EXAMPLE_TOKEN"), s.placeholder("example").unwrap());
    for (_, ph) in &env {
        for real in [GH, ANT, OAI, GEN] {
            assert_ne!(ph, real);
        }
    }
    let (name, real) = s.lookup(&get("OPENAI_API_KEY")).unwrap();
    assert_eq!((name, real.expose()), ("openai", OAI));
    assert!(s.lookup("nope").is_none());
    let hosts: Vec<String> = s.hosts().iter().map(|(g, h)| format!("{g}:{h}")).collect();
    assert!(hosts.contains(&"github:github.com".to_string()));

    // Per run: another RNG draw gives other placeholders.
    let other = RunSecrets::new(
        vec![grant("github", GrantSpec::Github, GH)],
        &mut StdRng::seed_from_u64(99),
    )
    .unwrap();
    assert_ne!(other.placeholder("github"), s.placeholder("github"));

    let dbg = format!("{s:?} {:?}", s.scrubber());
    for real in [GH, ANT, OAI, GEN] {
        assert!(!dbg.contains(real), "{dbg}");
    }
}

#[test]
fn revoke_mid_run() {
    let mut s = run();
    assert!(s.revoke("github"));
    assert!(!s.revoke("github"));
    let mut p = parts("https://api.github.com/user", &[]);
    let inj = s.inject_request(Target::https("api.github.com"), &mut p);
    assert!(inj.grants_used.is_empty());
    assert!(p.headers.get("authorization").is_none());
}

#[test]
fn placeholder_formats() {
    let gh = Regex::new(r"^ghp_[0-9A-Za-z]{36}$").unwrap();
    let gho = Regex::new(r"^gho_[0-9A-Za-z]{36}$").unwrap();
    let pat = Regex::new(r"^github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}$").unwrap();
    let ant = Regex::new(r"^sk-ant-api03-[A-Za-z0-9_-]{93}AA$").unwrap();
    let oai = Regex::new(r"^sk-proj-[A-Za-z0-9_-]{74}T3BlbkFJ[A-Za-z0-9_-]{74}$").unwrap();
    for seed in 0..50 {
        let s = RunSecrets::new(
            vec![
                grant("github", GrantSpec::Github, GH),
                grant("gho", GrantSpec::Github, "gho_0therT0ken0therT0ken0therT0ken0ther"),
                grant(
                    "pat",
                    GrantSpec::Github,
                    "github_pat_11AAAAAAA0aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                ),
                grant("anthropic", GrantSpec::Anthropic, ANT),
                grant("openai", GrantSpec::Openai, OAI),
                grant("example", http_spec(&["api.example.com"], "x-k", None, Substitution::HEADERS), GEN),
            ],
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap();
        let ph = |n| s.placeholder(n).unwrap();
        assert!(gh.is_match(ph("github")), "{}", ph("github"));
        // The GitHub checksum: CRC32 of the 30 random characters, base62, 6 wide.
        let p = ph("github");
        let crc = crc32fast::hash(&p.as_bytes()[4..34]);
        let mut n = crc;
        let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut check = Vec::new();
        for _ in 0..6 {
            check.push(alphabet[(n % 62) as usize]);
            n /= 62;
        }
        check.reverse();
        assert_eq!(&p.as_bytes()[34..], &check[..]);
        assert!(gho.is_match(ph("gho")), "{}", ph("gho"));
        assert!(pat.is_match(ph("pat")), "{}", ph("pat"));
        assert!(ant.is_match(ph("anthropic")), "{}", ph("anthropic"));
        assert_eq!(ph("anthropic").len(), 108);
        assert!(oai.is_match(ph("openai")), "{}", ph("openai"));
        let g = ph("example");
        assert_eq!(g.len(), GEN.len());
        assert!(g.starts_with("generic-"));
        assert!(g.bytes().all(|b| b.is_ascii_graphic()));
    }
}

#[test]
fn response_headers_are_scrubbed() {
    let s = run();
    let mut h = HeaderMap::new();
    h.insert(
        "x-echo",
        HeaderValue::from_str(&format!("you sent {GH}")).unwrap(),
    );
    let basic = B64.encode(format!("x-access-token:{GH}"));
    h.insert(
        "x-basic",
        HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
    );
    h.insert(
        "location",
        HeaderValue::from_str(&format!("https://x/?k={GEN}")).unwrap(),
    );
    assert!(s.scrub_response_headers(&mut h));
    let dump = format!("{h:?}");
    for real in [GH, GEN, &basic[..basic.len() - 4]] {
        assert!(!dump.contains(real), "{dump}");
    }
    assert!(dump.contains(s.placeholder("github").unwrap()));
    let mut clean = HeaderMap::new();
    clean.insert("x", HeaderValue::from_static("nothing"));
    assert!(!s.scrub_response_headers(&mut clean));
}

#[test]
fn streaming_body_substitution() {
    use paddock_secrets::BodyPlan;
    let s = run();
    let ph = s.placeholder("example").unwrap().to_string();
    let target = Target::https("api.example.com");
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let body = format!("{{\"a\":\"{ph}\",\"b\":[\"{ph}\"],\"c\":\"x\"}}");
    for chunk_len in [1, 3, 7, 64, 4096] {
        let BodyPlan::Substitute(mut sub) = s.request_body(target, &h) else {
            panic!("expected a substituter");
        };
        let mut out = Vec::new();
        for c in body.as_bytes().chunks(chunk_len) {
            out.extend(sub.push(c));
        }
        out.extend(sub.finish());
        assert_eq!(
            out,
            format!("{{\"a\":\"{GEN}\",\"b\":[\"{GEN}\"],\"c\":\"x\"}}").as_bytes()
        );
        assert_eq!(sub.grants_used(), ["example"]);
        assert!(sub.skipped().is_none());
    }

    // Hosts whose grants do not substitute in bodies, and other hosts: pass through.
    assert!(matches!(
        s.request_body(Target::https("api.github.com"), &h),
        BodyPlan::PassThrough
    ));
    assert!(matches!(
        s.request_body(Target::https("evil.com"), &h),
        BodyPlan::PassThrough
    ));

    // A declared length over the bound, or a compressed body: untouched, reported.
    let mut big = h.clone();
    big.insert("content-length", HeaderValue::from(BODY_LIMIT + 1));
    assert!(matches!(
        s.request_body(target, &big),
        BodyPlan::Skipped(BodySkip::TooLarge { len }) if len == BODY_LIMIT + 1
    ));
    let mut gz = h.clone();
    gz.insert("content-encoding", HeaderValue::from_static("br"));
    assert!(matches!(
        s.request_body(target, &gz),
        BodyPlan::Skipped(BodySkip::Encoded { .. })
    ));

    // A chunked body that grows past the bound: the first BODY_LIMIT bytes are searched,
    // the rest passes through, and that is reported.
    let BodyPlan::Substitute(mut sub) = s.request_body(target, &HeaderMap::new()) else {
        panic!("expected a substituter");
    };
    let mut first = vec![b' '; BODY_LIMIT - 100];
    first.extend_from_slice(ph.as_bytes());
    let mut out = sub.push(&first);
    let mut second = vec![b' '; 200];
    second.extend_from_slice(ph.as_bytes());
    out.extend(sub.push(&second));
    out.extend(sub.finish());
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches(GEN).count(), 1);
    assert_eq!(text.matches(&ph).count(), 1);
    assert!(text.ends_with(&ph));
    assert!(matches!(sub.skipped(), Some(BodySkip::TooLarge { .. })));
}

#[test]
fn built_in_kinds_use_only_their_own_header() {
    let s = run();
    let ph = s.placeholder("github").unwrap().to_string();
    let mut p = parts(
        "https://api.github.com/user",
        &[("x-note", &ph), ("cookie", &format!("t={ph}"))],
    );
    let inj = s.inject_request(Target::https("api.github.com"), &mut p);
    assert_eq!(header(&p, "x-note"), [ph.as_str()]);
    assert_eq!(header(&p, "cookie"), [format!("t={ph}")]);
    assert_eq!(header(&p, "authorization"), [format!("Bearer {GH}")]);
    assert_eq!(inj.grants_used, ["github"]);
    assert!(inj.foreign_placeholders.is_empty());
}

#[test]
fn scrubs_base64_at_every_alignment() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = run();
    for user in [
        "",
        "a",
        "ab",
        "abc",
        "oauth2",
        "x-access-token",
        "someone@example",
    ] {
        for encoded in [
            B64.encode(format!("{user}:{GH}")),
            URL_SAFE_NO_PAD.encode(format!("{user}:{GH}")),
            B64.encode(format!("{user}{GH}trailer")),
        ] {
            let out = s.scrubber().scrub(encoded.as_bytes()).into_owned();
            let decoded = B64
                .decode(&out)
                .or_else(|_| URL_SAFE_NO_PAD.decode(&out))
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(String::from_utf8_lossy(&out).trim_end_matches('='))
                })
                .unwrap_or_default();
            assert!(
                !decoded.is_empty(),
                "{user:?}: scrubbed base64 no longer decodes"
            );
            // At most two bytes at each end of the value survive in the decoded text.
            let text = String::from_utf8_lossy(&decoded);
            assert!(!text.contains(&GH[2..GH.len() - 2]), "{user:?}: {text}");
            assert_ne!(out, encoded.as_bytes(), "{user:?}");
        }
    }
}

#[test]
fn types_the_proxy_shares_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<RunSecrets>();
    send_sync::<paddock_secrets::Scrubber>();
    send_sync::<paddock_secrets::SecretStore>();
    send::<paddock_secrets::ScrubStream>();
    send::<paddock_secrets::BodySubstituter>();
}

#[test]
fn known_placeholders_survive_a_rebuild() {
    let first = run();
    let known = first.placeholders();
    assert_eq!(known.len(), 4);
    let grants = vec![
        grant("github", GrantSpec::Github, GH),
        grant("anthropic", GrantSpec::Anthropic, ANT),
    ];
    let again =
        RunSecrets::with_placeholders(grants, &known, &mut StdRng::seed_from_u64(99)).unwrap();
    assert_eq!(again.placeholder("github"), first.placeholder("github"));
    assert_eq!(
        again.placeholder("anthropic"),
        first.placeholder("anthropic")
    );
    // A placeholder that would clash with the real value is replaced by a fresh one.
    let clash = vec![("github".to_string(), GH.to_string())];
    let fresh = RunSecrets::with_placeholders(
        vec![grant("github", GrantSpec::Github, GH)],
        &clash,
        &mut StdRng::seed_from_u64(5),
    )
    .unwrap();
    assert_ne!(fresh.placeholder("github"), Some(GH));
}
