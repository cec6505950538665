//! The network policy as data: what a run may reach, and which rule says so.
//!
//! Uses paddock-config's `Rule`/`HostPattern`/`NetworkPolicy` directly rather than a copy:
//! the config crate is a leaf dependency (no I/O beyond reading config, no daemon), its
//! types are already validated (host syntax, path globs, methods), and one definition
//! means a rule printed in a denial hint is exactly what the user writes in paddock.yaml.
//!
//! Evaluation: the rules (and the hosts implied by grants, after the user's rules) are
//! grouped by host pattern specificity. The most specific group whose pattern matches the
//! host is tried first, and within it the first matching rule wins; when nothing in a group
//! matches, the next less specific group is tried, and when nothing matches at all the
//! default (`permissive` → allow, `strict` → deny) decides. Every [`Decision`] names what
//! decided it.
//!
//! Never: does I/O, or resolves names (it sees host names and IP literals as text).

use std::fmt;

use paddock_config::{HostPattern, NetworkConfig, NetworkPolicy, Rule, RuleAction};

/// What is being decided. `method`/`path`/`port` are `None` when not known yet (a DNS
/// query knows only the name; a CONNECT or a TLS passthrough knows no method or path).
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
}

impl<'a> Query<'a> {
    /// A name-only query (DNS).
    pub fn host(host: &'a str) -> Self {
        Query {
            host,
            port: None,
            method: None,
            path: None,
        }
    }

    /// A connection-level query (CONNECT, passthrough, SNI).
    pub fn conn(host: &'a str, port: u16) -> Self {
        Query {
            host,
            port: Some(port),
            method: None,
            path: None,
        }
    }

    /// A full HTTP request.
    pub fn request(host: &'a str, port: u16, method: &'a str, path: &'a str) -> Self {
        Query {
            host,
            port: Some(port),
            method: Some(method),
            path: Some(path),
        }
    }
}

/// What decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleRef {
    /// `network.rules[index]`, shown as written.
    Rule { index: usize, text: String },
    /// A host implied by a grant.
    Grant { name: String, host: String },
    /// No rule matched: the default policy.
    Default { policy: String },
    /// A built-in safety check (domain fronting, private address, …).
    Builtin { what: String },
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Rule { index, text } => write!(f, "network.rules[{index}] ({text})"),
            RuleRef::Grant { name, host } => write!(f, "grant {name} (host {host})"),
            RuleRef::Default { policy } => write!(f, "network.policy: {policy}"),
            RuleRef::Builtin { what } => write!(f, "built-in: {what}"),
        }
    }
}

/// A policy decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub rule: RuleRef,
}

impl Decision {
    pub fn builtin_deny(what: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            rule: RuleRef::Builtin { what: what.into() },
        }
    }
}

/// A host implied by a grant (`paddock grant github` implies api.github.com, github.com).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpliedHost {
    pub grant: String,
    pub host: HostPattern,
}

#[derive(Debug, Clone)]
enum Source {
    Rule(usize),
    Grant(String),
}

#[derive(Debug, Clone)]
struct Entry {
    rule: Rule,
    source: Source,
}

/// The compiled policy of one run. Cheap to share (`Arc`), immutable.
#[derive(Debug, Clone)]
pub struct Policy {
    default: NetworkPolicy,
    /// Groups of entries with the same host pattern, most specific first; rule order kept
    /// within a group.
    groups: Vec<(HostPattern, Vec<Entry>)>,
    passthrough: Vec<HostPattern>,
}

/// Specificity of a pattern: exact beats any wildcard; a longer wildcard suffix beats a
/// shorter one.
fn specificity(p: &HostPattern) -> (u8, usize) {
    match p {
        HostPattern::Exact(h) => (1, h.len()),
        HostPattern::Subdomains(s) => (0, s.len()),
    }
}

impl Policy {
    /// Compile `network:` plus the hosts implied by the run's grants.
    pub fn new(cfg: &NetworkConfig, implied: &[ImpliedHost]) -> Self {
        let mut entries: Vec<(HostPattern, Entry)> = cfg
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.host.clone(),
                    Entry {
                        rule: r.clone(),
                        source: Source::Rule(i),
                    },
                )
            })
            .collect();
        for g in implied {
            entries.push((
                g.host.clone(),
                Entry {
                    rule: Rule {
                        host: g.host.clone(),
                        port: None,
                        allow_methods: vec![],
                        deny_methods: vec![],
                        allow_paths: vec![],
                        deny_paths: vec![],
                        action: RuleAction::Allow,
                    },
                    source: Source::Grant(g.grant.clone()),
                },
            ));
        }
        let mut groups: Vec<(HostPattern, Vec<Entry>)> = Vec::new();
        for (pat, e) in entries {
            match groups.iter_mut().find(|(p, _)| *p == pat) {
                Some((_, v)) => v.push(e),
                None => groups.push((pat, vec![e])),
            }
        }
        // Stable: equal specificity keeps first-written order.
        groups.sort_by_key(|(p, _)| std::cmp::Reverse(specificity(p)));
        Policy {
            default: cfg.policy,
            groups,
            passthrough: cfg.passthrough.clone(),
        }
    }

    /// The default policy.
    pub fn mode(&self) -> NetworkPolicy {
        self.default
    }

    /// Whether TLS to `host` is passed through without interception.
    pub fn is_passthrough(&self, host: &str) -> bool {
        self.passthrough.iter().any(|p| p.matches(host))
    }

    /// Decide `q`. Unknown parts of `q` (method, path, port) make conditional allow rules
    /// match ("may be allowed once known") and conditional deny rules not match (the final
    /// decision comes with the full request).
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        for (pat, entries) in &self.groups {
            if !pat.matches(q.host) {
                continue;
            }
            for e in entries {
                if let Some(allowed) = rule_matches(&e.rule, q) {
                    return Decision {
                        allowed,
                        rule: match &e.source {
                            Source::Rule(i) => RuleRef::Rule {
                                index: *i,
                                text: rule_text(&e.rule),
                            },
                            Source::Grant(g) => RuleRef::Grant {
                                name: g.clone(),
                                host: e.rule.host.to_string(),
                            },
                        },
                    };
                }
            }
        }
        Decision {
            allowed: self.default == NetworkPolicy::Permissive,
            rule: RuleRef::Default {
                policy: match self.default {
                    NetworkPolicy::Permissive => "permissive".into(),
                    NetworkPolicy::Strict => "strict".into(),
                },
            },
        }
    }

    /// Whether a rule explicitly allows `host` (used to let a rule open a private or
    /// loopback upstream address: the default policy never does).
    pub fn explicitly_allows(&self, q: &Query<'_>) -> bool {
        let d = self.decide(q);
        d.allowed && matches!(d.rule, RuleRef::Rule { .. })
    }
}

/// `Some(allowed)` when the rule matches `q`, `None` when it does not (or cannot tell yet
/// and the rule is a deny).
fn rule_matches(r: &Rule, q: &Query<'_>) -> Option<bool> {
    let allow = r.action == RuleAction::Allow;
    // Port.
    match (r.port, q.port) {
        (Some(rp), Some(qp)) if rp != qp => return None,
        (Some(_), None) if !allow => return None,
        _ => {}
    }
    let method_in = |list: &[paddock_config::HttpMethod], m: &str| {
        list.iter().any(|x| x.as_str().eq_ignore_ascii_case(m))
    };
    let path_in = |list: &[String], p: &str| list.iter().any(|g| glob_match(g, p));
    if allow {
        if let Some(m) = q.method {
            if !r.allow_methods.is_empty() && !method_in(&r.allow_methods, m) {
                return None;
            }
            if method_in(&r.deny_methods, m) {
                return None;
            }
        }
        if let Some(p) = q.path {
            let p = strip_query(p);
            if !r.allow_paths.is_empty() && !path_in(&r.allow_paths, p) {
                return None;
            }
            if path_in(&r.deny_paths, p) {
                return None;
            }
        }
        Some(true)
    } else {
        let has_m = !(r.allow_methods.is_empty() && r.deny_methods.is_empty());
        let has_p = !(r.allow_paths.is_empty() && r.deny_paths.is_empty());
        if has_m {
            let m = q.method?;
            if !(method_in(&r.allow_methods, m) || method_in(&r.deny_methods, m)) {
                return None;
            }
        }
        if has_p {
            let p = strip_query(q.path?);
            if !(path_in(&r.allow_paths, p) || path_in(&r.deny_paths, p)) {
                return None;
            }
        }
        Some(false)
    }
}

fn strip_query(p: &str) -> &str {
    p.split(['?', '#']).next().unwrap_or(p)
}

/// Path glob: `**` matches anything (including `/`), `*` anything but `/`, `?` one
/// character but `/`; everything else literally. Iterative with backtracking on the last
/// star only per kind, so hostile patterns and paths stay linear-ish (bounded by len²).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p = pattern.as_bytes();
    let s = path.as_bytes();
    // Dynamic programming over (pattern index) with a set of reachable string positions:
    // O(|p|·|s|), no recursion.
    let mut cur = vec![false; s.len() + 1];
    cur[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; s.len() + 1];
        if p[i] == b'*' {
            let double = i + 1 < p.len() && p[i + 1] == b'*';
            let mut reach = false;
            for j in 0..=s.len() {
                if cur[j] {
                    reach = true;
                }
                if reach {
                    next[j] = true;
                }
                if j < s.len() && s[j] == b'/' && !double {
                    reach = false;
                }
            }
            i += if double { 2 } else { 1 };
        } else {
            for j in 0..s.len() {
                if cur[j] && (p[i] == s[j] || (p[i] == b'?' && s[j] != b'/')) {
                    next[j + 1] = true;
                }
            }
            i += 1;
        }
        cur = next;
    }
    cur[s.len()]
}

/// A value as YAML reads it back as the same string: plain when that is unambiguous (a
/// host name, a simple path), else double-quoted. A wildcard host (`*` starts an alias),
/// and a path with `,`, `[`, `{`, `#`, `:` … (flow indicators), are quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_' | '~' | '%' | '+')
        })
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        // A JSON string is a YAML double-quoted scalar.
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// A rule as the user would write it (one line, YAML flow style): the text loads back as
/// the same rule.
pub fn rule_text(r: &Rule) -> String {
    let mut parts = vec![format!("host: {}", yaml_scalar(&r.host.to_string()))];
    if let Some(p) = r.port {
        parts.push(format!("port: {p}"));
    }
    let list = |v: Vec<String>| format!("[{}]", v.join(", "));
    let quoted = |v: &[String]| v.iter().map(|s| yaml_scalar(s)).collect::<Vec<_>>();
    if !r.allow_methods.is_empty() {
        parts.push(format!(
            "allow_methods: {}",
            list(r.allow_methods.iter().map(|m| m.to_string()).collect())
        ));
    }
    if !r.deny_methods.is_empty() {
        parts.push(format!(
            "deny_methods: {}",
            list(r.deny_methods.iter().map(|m| m.to_string()).collect())
        ));
    }
    if !r.allow_paths.is_empty() {
        parts.push(format!("allow_paths: {}", list(quoted(&r.allow_paths))));
    }
    if !r.deny_paths.is_empty() {
        parts.push(format!("deny_paths: {}", list(quoted(&r.deny_paths))));
    }
    parts.push(format!(
        "action: {}",
        match r.action {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
        }
    ));
    format!("{{ {} }}", parts.join(", "))
}

/// What to tell the user when `q` was denied by `d`: the rule to add to paddock.yaml.
pub fn denial_hint(q: &Query<'_>, d: &Decision) -> String {
    let mut s = format!(
        "paddock blocked this request: {} {}{} (decided by {}).\n",
        q.method.unwrap_or("connection to"),
        q.host,
        q.path.unwrap_or(""),
        d.rule
    );
    match &d.rule {
        RuleRef::Builtin { .. } => {}
        RuleRef::Rule { .. } => s.push_str(
            "To allow it, change or remove that rule in paddock.yaml, or add a more specific allow rule.\n",
        ),
        _ => {}
    }
    if !matches!(d.rule, RuleRef::Builtin { .. }) {
        s.push_str("To allow it, add to paddock.yaml:\n\nnetwork:\n  rules:\n");
        // As paddock.yaml takes it: quoted where YAML needs it (`::1`), no trailing dot.
        let host = q.host.strip_suffix('.').unwrap_or(q.host);
        s.push_str(&format!("    - host: {}\n", yaml_scalar(host)));
        if let Some(m) = q.method {
            s.push_str(&format!("      allow_methods: [{}]\n", yaml_scalar(m)));
        }
        s.push_str("      action: allow\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_config::HttpMethod;

    fn rule(host: &str) -> Rule {
        Rule {
            host: host.parse().unwrap(),
            port: None,
            allow_methods: vec![],
            deny_methods: vec![],
            allow_paths: vec![],
            deny_paths: vec![],
            action: RuleAction::Allow,
        }
    }

    fn deny(host: &str) -> Rule {
        Rule {
            action: RuleAction::Deny,
            ..rule(host)
        }
    }

    fn cfg(policy: NetworkPolicy, rules: Vec<Rule>) -> NetworkConfig {
        NetworkConfig {
            policy,
            rules,
            passthrough: vec![],
            headers: vec![],
        }
    }

    #[test]
    fn defaults() {
        let p = Policy::new(&cfg(NetworkPolicy::Permissive, vec![]), &[]);
        assert!(p.decide(&Query::host("x.com")).allowed);
        let p = Policy::new(&cfg(NetworkPolicy::Strict, vec![]), &[]);
        let d = p.decide(&Query::host("x.com"));
        assert!(!d.allowed);
        assert_eq!(
            d.rule,
            RuleRef::Default {
                policy: "strict".into()
            }
        );
    }

    #[test]
    fn most_specific_host_wins() {
        let p = Policy::new(
            &cfg(
                NetworkPolicy::Permissive,
                vec![deny("*.example.com"), rule("api.example.com")],
            ),
            &[],
        );
        assert!(p.decide(&Query::host("api.example.com")).allowed);
        let d = p.decide(&Query::host("www.example.com"));
        assert!(!d.allowed);
        assert!(matches!(d.rule, RuleRef::Rule { index: 0, .. }));
        // The suffix itself is not matched by `*.`.
        assert!(p.decide(&Query::host("example.com")).allowed);
        // Longer wildcard beats shorter.
        let p = Policy::new(
            &cfg(
                NetworkPolicy::Strict,
                vec![deny("*.com"), rule("*.example.com")],
            ),
            &[],
        );
        assert!(p.decide(&Query::host("a.b.example.com")).allowed);
        assert!(!p.decide(&Query::host("a.other.com")).allowed);
    }

    #[test]
    fn first_matching_rule_within_a_host_then_fall_back() {
        let mut get_only = rule("api.github.com");
        get_only.allow_methods = vec![HttpMethod::Get];
        let mut no_admin = deny("api.github.com");
        no_admin.allow_paths = vec!["/admin/**".into()];
        let p = Policy::new(&cfg(NetworkPolicy::Strict, vec![no_admin, get_only]), &[]);
        assert!(
            p.decide(&Query::request("api.github.com", 443, "GET", "/repos/x"))
                .allowed
        );
        let d = p.decide(&Query::request(
            "api.github.com",
            443,
            "GET",
            "/admin/users",
        ));
        assert!(!d.allowed);
        assert!(matches!(d.rule, RuleRef::Rule { index: 0, .. }));
        let d = p.decide(&Query::request("api.github.com", 443, "POST", "/repos/x"));
        assert!(!d.allowed);
        assert!(matches!(d.rule, RuleRef::Default { .. }));
        // Connection level: may be allowed once the request is known.
        assert!(p.decide(&Query::conn("api.github.com", 443)).allowed);
    }

    #[test]
    fn ports_paths_and_query_strings() {
        let mut r = rule("h.test");
        r.port = Some(8443);
        r.allow_paths = vec!["/v1/*".into()];
        r.deny_paths = vec!["/v1/secret".into()];
        let p = Policy::new(&cfg(NetworkPolicy::Strict, vec![r]), &[]);
        assert!(
            p.decide(&Query::request("h.test", 8443, "GET", "/v1/x?a=/b"))
                .allowed
        );
        assert!(
            !p.decide(&Query::request("h.test", 443, "GET", "/v1/x"))
                .allowed
        );
        assert!(
            !p.decide(&Query::request("h.test", 8443, "GET", "/v1/x/y"))
                .allowed
        );
        assert!(
            !p.decide(&Query::request("h.test", 8443, "GET", "/v1/secret"))
                .allowed
        );
        assert!(p.decide(&Query::host("h.test")).allowed);
    }

    #[test]
    fn grants_imply_hosts_after_user_rules() {
        let implied = [ImpliedHost {
            grant: "github".into(),
            host: "api.github.com".parse().unwrap(),
        }];
        let p = Policy::new(&cfg(NetworkPolicy::Strict, vec![]), &implied);
        let d = p.decide(&Query::request("api.github.com", 443, "GET", "/"));
        assert!(d.allowed);
        assert!(matches!(d.rule, RuleRef::Grant { .. }));
        let p = Policy::new(
            &cfg(NetworkPolicy::Strict, vec![deny("api.github.com")]),
            &implied,
        );
        assert!(!p.decide(&Query::host("api.github.com")).allowed);
    }

    #[test]
    fn globs() {
        assert!(glob_match("/a/*", "/a/b"));
        assert!(!glob_match("/a/*", "/a/b/c"));
        assert!(glob_match("/a/**", "/a/b/c"));
        assert!(!glob_match("*", "/x"));
        assert!(glob_match("**", "/x/y"));
        assert!(glob_match("/f?o", "/foo"));
        assert!(!glob_match("/f?o", "/f/o"));
        assert!(glob_match("/a/*/c", "/a/bb/c"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exact2"));
    }

    /// Where a paddock.yaml snippet in these tests comes from.
    fn project() -> paddock_config::Origin {
        paddock_config::Origin {
            path: "/p/paddock.yaml".into(),
            layer: paddock_config::ConfigLayer::Project,
            home: None,
        }
    }

    #[test]
    fn rule_text_reads_back_as_the_rule() {
        // Found by fuzz/fuzz_targets/rule_matcher.rs: a path with a `,` (and any wildcard
        // host, `*` being YAML's alias mark) printed unquoted read back as another rule.
        let mut r = deny("*.example.com");
        r.port = Some(443);
        r.allow_methods = vec![paddock_config::HttpMethod::Get];
        r.allow_paths = vec!["/repos/**".into(), "/plain/path".into()];
        r.deny_paths = vec!["/i".into(), "/,".into(), "/a[b]{c}#d:e".into()];
        let text = rule_text(&r);
        assert_eq!(
            text,
            r#"{ host: "*.example.com", port: 443, allow_methods: [GET], allow_paths: ["/repos/**", /plain/path], deny_paths: [/i, "/,", "/a[b]{c}#d:e"], action: deny }"#
        );
        let yaml = format!("network:\n  rules:\n    - {text}\n");
        let cfg = paddock_config::load_from_str(&yaml, &project()).expect("the text loads");
        assert_eq!(cfg.network.rules, vec![r]);
        assert_eq!(
            rule_text(&rule("api.github.com")),
            "{ host: api.github.com, action: allow }"
        );
    }

    #[test]
    fn hint_names_the_rule_to_add() {
        let p = Policy::new(&cfg(NetworkPolicy::Strict, vec![]), &[]);
        let q = Query::request("x.test", 443, "POST", "/p");
        let h = denial_hint(&q, &p.decide(&q));
        assert!(h.contains("- host: x.test"), "{h}");
        assert!(h.contains("allow_methods: [POST]"), "{h}");
    }

    #[test]
    fn the_suggested_rule_loads_and_allows() {
        // Found by fuzz/fuzz_targets/rule_matcher.rs: for an IPv6 literal the hint said
        // `- host: ::`, which is not YAML paddock.yaml can load.
        let p = Policy::new(&cfg(NetworkPolicy::Strict, vec![]), &[]);
        for (host, method) in [("::", Some("GET")), ("::1", None), ("x.test.", Some("PUT"))] {
            let q = match method {
                Some(m) => Query::request(host, 443, m, "/"),
                None => Query::conn(host, 443),
            };
            let h = denial_hint(&q, &p.decide(&q));
            let (_, yaml) = h.split_once("add to paddock.yaml:\n\n").expect("a snippet");
            let net = paddock_config::load_from_str(yaml, &project())
                .unwrap_or_else(|e| panic!("{yaml}: {e}"))
                .network;
            let only = NetworkConfig {
                policy: NetworkPolicy::Strict,
                ..net
            };
            assert!(Policy::new(&only, &[]).decide(&q).allowed, "{yaml}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            // Glob matching never panics, and a pattern without metacharacters is equality.
            #[test]
            fn glob_literal_is_equality(a in "[/a-z.]{0,20}", b in "[/a-z.]{0,20}") {
                prop_assert_eq!(glob_match(&a, &b), a == b);
            }

            #[test]
            fn glob_never_panics(p in ".{0,40}", s in ".{0,60}") {
                let _ = glob_match(&p, &s);
            }

            // `**` after a literal prefix matches every extension of it.
            #[test]
            fn doublestar_matches_every_suffix(pre in "/[a-z]{0,8}", rest in "[/a-z]{0,20}") {
                let pat = format!("{}**", pre);
                let path = format!("{}{}", pre, rest);
                prop_assert!(glob_match(&pat, &path));
            }

            // A deny rule for exactly a host beats any wildcard allow, whatever the order.
            #[test]
            fn exact_beats_wildcard(label in "[a-z]{1,10}", deny_first in any::<bool>()) {
                let host = format!("{}.example.com", label);
                let rules = if deny_first {
                    vec![deny(&host), rule("*.example.com")]
                } else {
                    vec![rule("*.example.com"), deny(&host)]
                };
                let p = Policy::new(&cfg(NetworkPolicy::Permissive, rules), &[]);
                prop_assert!(!p.decide(&Query::host(&host)).allowed);
                let other = format!("other{}.example.com", label);
                let allowed = p.decide(&Query::host(&other)).allowed;
                prop_assert!(allowed);
            }
        }
    }
}
