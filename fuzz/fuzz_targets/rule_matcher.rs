//! The egress policy: host patterns, path globs and rule evaluation
//! (`paddock_egress::policy`, over paddock-config's `Rule`/`HostPattern`).
//!
//! Input: a structured description of a `network:` section (default policy, rules,
//! passthrough hosts, hosts implied by grants) and of queries against it.
//!
//! Properties:
//! - nothing panics (matching hostile patterns and paths included);
//! - `glob_match` agrees with a straightforward reference matcher;
//! - a host pattern prints as text that parses back to it, matches what it should
//!   (case-insensitively, trailing dot ignored) and `*.suffix` never matches `suffix`;
//! - knowing more never turns a denial into an allow: a name denied at DNS time is denied
//!   for every connection to it, and a connection denied is denied for every request on it;
//! - `explicitly_allows` agrees with `decide`;
//! - the paddock.yaml snippet a denial hint suggests loads, and a strict policy with just
//!   that rule allows the request; a rule's printed text loads back as the same rule.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use paddock_config::{
    ConfigLayer, HostPattern, HttpMethod, NetworkConfig, NetworkPolicy, Origin, Rule, RuleAction,
    parse_host_pattern,
};
use paddock_egress::policy::{Decision, RuleRef, denial_hint, glob_match, rule_text};
use paddock_egress::{ImpliedHost, Policy, Query};

const HOSTS: &[&str] = &[
    "example.com",
    "api.example.com",
    "a.b.example.com",
    "Example.COM",
    "example.com.",
    "github.com",
    "api.github.com",
    "10.0.0.5",
    "::1",
    "127.0.0.1",
    "localhost",
    "x",
    "xexample.com",
    "",
    ".",
];

const PATTERNS: &[&str] = &[
    "example.com",
    "*.example.com",
    "api.example.com",
    "*.api.example.com",
    "github.com",
    "*.github.com",
    "10.0.0.5",
    "::1",
    "*.com",
    "localhost",
];

const PATHS: &[&str] = &[
    "/",
    "/*",
    "/**",
    "/repos/**",
    "/repos/*/issues",
    "/a?c",
    "*",
    "**",
    "/admin/*",
    "/x/**/y",
];

fn pick(u: &mut Unstructured<'_>, from: &[&str]) -> Result<String> {
    if u.ratio(1, 4)? {
        let s: String = u.arbitrary()?;
        Ok(s.chars().take(80).collect())
    } else {
        Ok(u.choose(from)?.to_string())
    }
}

fn pattern(u: &mut Unstructured<'_>) -> Result<Option<HostPattern>> {
    Ok(parse_host_pattern(&pick(u, PATTERNS)?).ok())
}

/// A method list as paddock-config keeps it: each method once.
fn methods(u: &mut Unstructured<'_>) -> Result<Vec<HttpMethod>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let m = *u.choose(&HttpMethod::ALL)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Path globs as paddock-config accepts them: starting with `/` or `*`, without
/// whitespace or control characters.
fn paths(u: &mut Unstructured<'_>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let mut g: String = pick(u, PATHS)?
            .chars()
            .filter(|c| !(c.is_whitespace() || c.is_control()))
            .collect();
        if !(g.starts_with('/') || g.starts_with('*')) {
            g.insert(0, '/');
        }
        out.push(g);
    }
    Ok(out)
}

fn port(u: &mut Unstructured<'_>) -> Result<Option<u16>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => None,
        1 => Some(80),
        2 => Some(443),
        // Port 0 is refused by paddock-config.
        _ => Some(u.arbitrary::<u16>()?.max(1)),
    })
}

#[derive(Debug)]
struct Input {
    cfg: NetworkConfig,
    implied: Vec<ImpliedHost>,
    queries: Vec<(String, u16, String, String)>,
    /// Which rule's text, and which denial's hint, go through paddock-config (a YAML load
    /// is much slower than the rest: one of each per input).
    text_of: usize,
    hint_of: usize,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut cfg = NetworkConfig {
            policy: if u.arbitrary()? {
                NetworkPolicy::Strict
            } else {
                NetworkPolicy::Permissive
            },
            ..NetworkConfig::default()
        };
        for _ in 0..u.int_in_range(0..=8)? {
            let Some(host) = pattern(u)? else { continue };
            cfg.rules.push(Rule {
                host,
                port: port(u)?,
                allow_methods: methods(u)?,
                deny_methods: methods(u)?,
                allow_paths: paths(u)?,
                deny_paths: paths(u)?,
                action: if u.arbitrary()? {
                    RuleAction::Deny
                } else {
                    RuleAction::Allow
                },
            });
        }
        for _ in 0..u.int_in_range(0..=2)? {
            if let Some(p) = pattern(u)? {
                cfg.passthrough.push(p);
            }
        }
        let mut implied = Vec::new();
        for _ in 0..u.int_in_range(0..=2)? {
            if let Some(host) = pattern(u)? {
                implied.push(ImpliedHost {
                    grant: pick(u, &["github", "openai"])?,
                    host,
                });
            }
        }
        let mut queries = Vec::new();
        for _ in 0..u.int_in_range(1..=6)? {
            let host = pick(u, HOSTS)?;
            let port = port(u)?.unwrap_or(443);
            let method = if u.ratio(1, 8)? {
                pick(u, &["get", "BREW"])?
            } else {
                u.choose(&HttpMethod::ALL)?.as_str().to_string()
            };
            let path = pick(
                u,
                &[
                    "/",
                    "/repos/a/b",
                    "/repos/a/issues",
                    "/abc",
                    "/admin/x",
                    "/x/1/2/y?q#f",
                ],
            )?;
            queries.push((host, port, method, path));
        }
        Ok(Input {
            cfg,
            implied,
            queries,
            text_of: u.arbitrary()?,
            hint_of: u.arbitrary()?,
        })
    }
}

/// Reference glob: `**` any bytes, `*` any bytes but `/`, `?` one byte but `/`, the rest
/// literal; memoised recursion over (pattern index, path index).
fn reference_glob(p: &[u8], s: &[u8]) -> bool {
    fn go(p: &[u8], s: &[u8], i: usize, j: usize, memo: &mut Vec<Option<bool>>) -> bool {
        let w = s.len() + 1;
        if let Some(v) = memo[i * w + j] {
            return v;
        }
        let v = if i == p.len() {
            j == s.len()
        } else if p[i] == b'*' && i + 1 < p.len() && p[i + 1] == b'*' {
            (j..=s.len()).any(|k| go(p, s, i + 2, k, memo))
        } else if p[i] == b'*' {
            let stop = s[j..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(s.len(), |k| j + k);
            (j..=stop).any(|k| go(p, s, i + 1, k, memo))
        } else {
            j < s.len()
                && (p[i] == s[j] || (p[i] == b'?' && s[j] != b'/'))
                && go(p, s, i + 1, j + 1, memo)
        };
        memo[i * w + j] = Some(v);
        v
    }
    let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
    go(p, s, 0, 0, &mut memo)
}

fn check_pattern(p: &HostPattern) {
    let text = p.to_string();
    assert_eq!(
        parse_host_pattern(&text).as_ref().ok(),
        Some(p),
        "pattern {text:?} does not parse back to itself"
    );
    match p {
        HostPattern::Exact(h) => {
            assert!(p.matches(h), "{text} does not match itself");
            assert!(p.matches(&h.to_ascii_uppercase()), "{text}: case matters");
            assert!(p.matches(&format!("{h}.")), "{text}: trailing dot matters");
            assert!(!p.matches(&format!("x.{h}")), "{text} matches a subdomain");
        }
        HostPattern::Subdomains(s) => {
            assert!(!p.matches(s), "{text} matches its own suffix");
            assert!(p.matches(&format!("x.{s}")), "{text} misses x.{s}");
            assert!(p.matches(&format!("a.b.{s}.")), "{text} misses a.b.{s}.");
            assert!(!p.matches(&format!("x{s}")), "{text} matches x{s}");
        }
    }
}

fn load_network(yaml: &str) -> Option<NetworkConfig> {
    let origin = Origin {
        path: "/fuzz/ws/paddock.yaml".into(),
        layer: ConfigLayer::Project,
        home: None,
    };
    paddock_config::load_from_str(yaml, &origin)
        .ok()
        .map(|c| c.network)
}

fn check_hint(q: &Query<'_>, d: &Decision, hint: &str) {
    let Some((_, snippet)) = hint.split_once("To allow it, add to paddock.yaml:\n\n") else {
        assert!(
            matches!(d.rule, RuleRef::Builtin { .. }),
            "no snippet in {hint}"
        );
        return;
    };
    // Only a host that paddock.yaml accepts, with a method it knows, can be suggested.
    let known = q
        .method
        .is_none_or(|m| HttpMethod::ALL.iter().any(|k| k.as_str() == m));
    let host = q.host.strip_suffix('.').unwrap_or(q.host);
    if parse_host_pattern(host).is_err() || !known {
        return;
    }
    let net = load_network(snippet)
        .unwrap_or_else(|| panic!("the suggested snippet does not load:\n{snippet}"));
    let only = NetworkConfig {
        policy: NetworkPolicy::Strict,
        ..net
    };
    let d2 = Policy::new(&only, &[]).decide(q);
    assert!(
        d2.allowed,
        "the suggested rule does not allow {q:?}:\n{snippet}\n{d2:?}"
    );
}

fuzz_target!(|input: Input| {
    let Input {
        cfg,
        implied,
        queries,
        text_of,
        hint_of,
    } = input;
    for (i, r) in cfg.rules.iter().enumerate() {
        check_pattern(&r.host);
        for g in r.allow_paths.iter().chain(&r.deny_paths) {
            for (_, _, _, path) in &queries {
                if g.len() <= 48 && path.len() <= 48 {
                    assert_eq!(
                        glob_match(g, path),
                        reference_glob(g.as_bytes(), path.as_bytes()),
                        "glob {g:?} on {path:?}"
                    );
                }
            }
        }
        // A rule's text is YAML that loads as the same rule.
        let text = rule_text(r);
        if i != text_of % cfg.rules.len() {
            continue;
        }
        let net = load_network(&format!("network:\n  rules:\n    - {text}\n"))
            .unwrap_or_else(|| panic!("rule text {text} does not load"));
        assert_eq!(net.rules.len(), 1, "{text}");
        assert_eq!(&net.rules[0], r, "rule text {text} loads as another rule");
    }
    let policy = Policy::new(&cfg, &implied);
    let mut denials = 0;
    for (host, port, method, path) in &queries {
        let _ = policy.is_passthrough(host);
        let by_name = policy.decide(&Query::host(host));
        let by_conn = policy.decide(&Query::conn(host, *port));
        let q = Query::request(host, *port, method, path);
        let by_req = policy.decide(&q);
        if !by_name.allowed {
            assert!(
                !by_conn.allowed,
                "{host} denied by name ({by_name:?}) but a connection is allowed ({by_conn:?})"
            );
        }
        if !by_conn.allowed {
            assert!(
                !by_req.allowed,
                "{host}:{port} denied ({by_conn:?}) but {method} {path} is allowed ({by_req:?})"
            );
        }
        for (qq, d) in [
            (Query::host(host), &by_name),
            (Query::conn(host, *port), &by_conn),
            (q, &by_req),
        ] {
            assert_eq!(
                policy.explicitly_allows(&qq),
                d.allowed && matches!(d.rule, RuleRef::Rule { .. })
            );
            if let RuleRef::Rule { index, .. } = d.rule {
                assert!(index < cfg.rules.len());
            }
            let _ = d.rule.to_string();
            if !d.allowed {
                let hint = denial_hint(&qq, d);
                if denials == hint_of % 8 {
                    check_hint(&qq, d, &hint);
                }
                denials += 1;
            }
        }
    }
});
