//! Every key: a valid value resolves as documented, invalid values fail at the exact
//! line:column with a useful message and hint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use paddock_config::{
    Config, ConfigError, ErrorKind, HeaderRule, HostPattern, HttpMethod, MountSpec, NetworkPolicy,
    Origin, Rule, RuleAction, RuntimeKind, WorkspaceMode, load_from_str,
};

const PROJECT: &str = "/proj/paddock.yaml";
const USER: &str = "/home/u/.config/paddock/config.yaml";

fn project(yaml: &str) -> Result<Config, ConfigError> {
    load_from_str(
        yaml,
        &Origin::project(PROJECT).with_home(Some("/home/u".into())),
    )
}

fn user(yaml: &str) -> Result<Config, ConfigError> {
    load_from_str(yaml, &Origin::user(USER).with_home(Some("/home/u".into())))
}

#[track_caller]
fn err(yaml: &str) -> ConfigError {
    match user(yaml) {
        Ok(c) => panic!("expected an error for {yaml:?}, got {c:?}"),
        Err(e) => e,
    }
}

/// `path:line:column: message` plus the hint, for snapshots.
fn render(yaml: &str) -> String {
    let e = err(yaml);
    format!("--- input\n{yaml}--- error\n{}\n", e.display_with_hint())
}

#[test]
fn full_config_resolves() {
    let yaml = r#"
name: my-agent
command: "claude --model 'big one'"
env:
  FOO: bar
  _UNDER_1: "1"
mounts:
  - "~/data:/data:ro"
  - ./cache:/cache
  - "../shared:/shared:rw"
  - {source: /abs/src, target: /dst/./x, read_only: true}
workspace: {mode: bind}
limits: {memory: 1.5G, pids: 512, cpus: 2}
runtime: gvisor
dependencies: [node, "docker:host", "apt:jq", docker:host]
network:
  policy: strict
  rules:
    - host: api.github.com
      port: 443
      allow_methods: [GET, HEAD]
      deny_methods: [DELETE]
      allow_paths: ["/repos/**"]
      deny_paths: ["/admin/*"]
    - {host: "*.Example.com", action: deny}
    - {host: 10.0.0.5}
  passthrough: ["*.pinned.example", bank.example]
  headers:
    - host: api.github.com
      set: {X-GitHub-Api-Version: "2022-11-28", X-Retries: 3}
      remove: [User-Agent, x-debug, USER-AGENT]
    - {host: "*.internal.example", remove: [Cookie]}
grants: [github, npm_token]
ports: {web: 3000, api: "8080"}
upstream:
  extra_ca: certs/ca.pem
  resolve:
    internal.example: "10.0.0.5:443"
    v6.example: "[::1]:8443"
router: {port: 8080}
ui: {port: 7780, browser: firefox}
daemon: {idle_timeout: 5m}
audit: {checkpoint_every: 1000, checkpoint_interval: 1h30m}
"#;
    let c = user(yaml).unwrap();
    assert_eq!(c.name.as_deref(), Some("my-agent"));
    assert_eq!(
        c.command,
        Some(vec!["claude".into(), "--model".into(), "big one".into()])
    );
    assert_eq!(c.env.get("FOO").map(String::as_str), Some("bar"));
    assert_eq!(c.env.get("_UNDER_1").map(String::as_str), Some("1"));
    let m = |s: &str, t: &str, ro: bool| MountSpec {
        source: s.into(),
        target: t.into(),
        read_only: ro,
    };
    assert_eq!(
        c.mounts,
        vec![
            m("/home/u/data", "/data", true),
            m("/home/u/.config/paddock/cache", "/cache", false),
            m("/home/u/.config/shared", "/shared", false),
            m("/abs/src", "/dst/x", true),
        ]
    );
    assert_eq!(c.workspace.mode, WorkspaceMode::Bind);
    assert_eq!(c.limits.memory_bytes, Some(1536 * 1024 * 1024));
    assert_eq!(c.limits.pids, Some(512));
    assert_eq!(c.limits.cpus, Some(2.0));
    assert_eq!(c.runtime, RuntimeKind::Gvisor);
    assert_eq!(c.network.policy, NetworkPolicy::Strict);
    assert_eq!(
        c.network.rules[0],
        Rule {
            host: HostPattern::Exact("api.github.com".into()),
            port: Some(443),
            allow_methods: vec![HttpMethod::Get, HttpMethod::Head],
            deny_methods: vec![HttpMethod::Delete],
            allow_paths: vec!["/repos/**".into()],
            deny_paths: vec!["/admin/*".into()],
            action: RuleAction::Allow,
        }
    );
    assert_eq!(
        c.network.rules[1].host,
        HostPattern::Subdomains("example.com".into())
    );
    assert_eq!(c.network.rules[1].action, RuleAction::Deny);
    assert_eq!(
        c.network.rules[2].host,
        HostPattern::Exact("10.0.0.5".into())
    );
    assert_eq!(c.network.passthrough.len(), 2);
    assert_eq!(
        c.network.headers,
        [
            HeaderRule {
                host: HostPattern::Exact("api.github.com".into()),
                set: [
                    ("x-github-api-version".into(), "2022-11-28".into()),
                    ("x-retries".into(), "3".into()),
                ]
                .into(),
                remove: vec!["user-agent".into(), "x-debug".into()],
            },
            HeaderRule {
                host: HostPattern::Subdomains("internal.example".into()),
                set: Default::default(),
                remove: vec!["cookie".into()],
            },
        ]
    );
    assert_eq!(c.grants, vec!["github", "npm_token"]);
    assert_eq!(c.ports.get("web"), Some(&3000));
    assert_eq!(c.ports.get("api"), Some(&8080));
    assert_eq!(
        c.upstream.extra_ca,
        Some(PathBuf::from("/home/u/.config/paddock/certs/ca.pem"))
    );
    assert_eq!(
        c.upstream.resolve.get("v6.example"),
        Some(&"[::1]:8443".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(c.router.port, Some(8080));
    assert_eq!(c.ui.port, Some(7780));
    assert_eq!(c.ui.browser.as_deref(), Some("firefox"));
    assert_eq!(c.daemon.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(c.audit.checkpoint_every, Some(1000));
    assert_eq!(c.audit.checkpoint_interval, Some(Duration::from_secs(5400)));

    // The daemon stores the resolved config as JSON; it must read back identically.
    let json = serde_json::to_string_pretty(&c).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    insta::assert_snapshot!("full_config_json", json);
}

#[test]
fn defaults_and_empty_inputs() {
    for yaml in ["", "\n\n", "# only a comment\n", "~\n", "---\n", "\u{feff}"] {
        assert_eq!(project(yaml).unwrap(), Config::default(), "{yaml:?}");
    }
    let c = project("").unwrap();
    assert_eq!(c.workspace.mode, WorkspaceMode::Overlay);
    assert_eq!(c.runtime, RuntimeKind::Native);
    assert_eq!(c.network.policy, NetworkPolicy::Permissive);
    // Explicit nulls and empty mappings mean "not set".
    let c = project("name: ~\nenv: {}\nmounts: []\nlimits: {}\nnetwork: {rules: []}\nports:\n")
        .unwrap();
    assert_eq!(c, Config::default());
    // Old JSON without newer fields still reads.
    let c: Config = serde_json::from_str(r#"{"name":"x","future_field":1}"#).unwrap();
    assert_eq!(c.name.as_deref(), Some("x"));
}

#[test]
fn command_forms() {
    let argv = |y: &str| project(y).unwrap().command.unwrap();
    assert_eq!(argv("command: make test\n"), ["make", "test"]);
    assert_eq!(
        argv("command: \"sh -c 'echo $HOME'\"\n"),
        ["sh", "-c", "echo $HOME"]
    );
    assert_eq!(
        argv("command: [sh, -c, 'a && b']\n"),
        ["sh", "-c", "a && b"]
    );
    assert_eq!(argv("command:\n  - python3\n  - \"\"\n"), ["python3", ""]);
}

#[test]
fn memory_forms() {
    let mem = |y: &str| {
        project(&format!("limits: {{memory: {y}}}\n"))
            .unwrap()
            .limits
            .memory_bytes
            .unwrap()
    };
    assert_eq!(mem("1048576"), 1 << 20);
    assert_eq!(mem("512M"), 512 << 20);
    assert_eq!(mem("512MiB"), 512 << 20);
    assert_eq!(mem("512MB"), 512 << 20);
    assert_eq!(mem("512m"), 512 << 20);
    assert_eq!(mem("2G"), 2 << 30);
    assert_eq!(mem("1T"), 1 << 40);
    assert_eq!(mem("64K"), 64 << 10);
    assert_eq!(mem("'1.5G'"), 3 << 29);
}

#[test]
fn cpus_forms() {
    let cpus = |y: &str| {
        project(&format!("limits: {{cpus: {y}}}\n"))
            .unwrap()
            .limits
            .cpus
            .unwrap()
    };
    assert_eq!(cpus("1"), 1.0);
    assert_eq!(cpus("0.5"), 0.5);
    assert_eq!(cpus("'1.5'"), 1.5);
}

#[test]
fn host_patterns_match() {
    let p: HostPattern = "*.example.com".parse().unwrap();
    assert!(p.matches("a.example.com"));
    assert!(p.matches("a.b.EXAMPLE.com."));
    assert!(!p.matches("example.com"));
    assert!(!p.matches("badexample.com"));
    let e: HostPattern = "api.github.com".parse().unwrap();
    assert!(e.matches("API.github.com"));
    assert!(!e.matches("x.api.github.com"));
}

/// Every user-only key is refused in a project file, pointing at the value, and
/// accepted in the user config.
#[test]
fn user_only_keys_refused_in_project() {
    let cases = [
        ("router:\n  port: 8080\n", "router.port", (2, 9)),
        ("ui:\n  port: 7780\n", "ui.port", (2, 9)),
        ("ui:\n  browser: firefox\n", "ui.browser", (2, 12)),
        (
            "daemon:\n  idle_timeout: 5m\n",
            "daemon.idle_timeout",
            (2, 17),
        ),
        (
            "audit:\n  checkpoint_every: 10\n",
            "audit.checkpoint_every",
            (2, 21),
        ),
        (
            "audit:\n  checkpoint_interval: 1h\n",
            "audit.checkpoint_interval",
            (2, 24),
        ),
    ];
    for (yaml, key, pos) in cases {
        let e = project(yaml).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UserOnlyKey, "{yaml}");
        assert_eq!(e.position(), Some(pos), "{yaml}");
        assert!(e.message().contains(key), "{e}");
        assert!(e.hint().unwrap().contains("config.yaml"), "{e}");
        assert!(user(yaml).is_ok(), "{yaml}");
    }
    insta::assert_snapshot!(
        "user_only_key",
        project("name: x\nrouter:\n  port: 8080\n")
            .unwrap_err()
            .display_with_hint()
    );
}

#[test]
fn exact_positions() {
    // (input, kind, line, column) — the column points at the offending key or value.
    let cases: &[(&str, ErrorKind, u64, u64)] = &[
        ("nmae: x\n", ErrorKind::UnknownKey, 1, 1),
        ("limits:\n  memroy: 1G\n", ErrorKind::UnknownKey, 2, 3),
        ("name: a\nname: b\n", ErrorKind::DuplicateKey, 2, 1),
        (
            "env:\n  A: 1\n  B: 2\n  A: 3\n",
            ErrorKind::DuplicateKey,
            4,
            3,
        ),
        (
            "ports:\n  web: 1\n  web: 2\n",
            ErrorKind::DuplicateKey,
            3,
            3,
        ),
        ("name: [a]\n", ErrorKind::Type, 1, 7),
        ("limits:\n  memory: 12XB\n", ErrorKind::Value, 2, 11),
        ("limits:\n  pids: -3\n", ErrorKind::Value, 2, 9),
        (
            "network:\n  rules:\n    - host: 'a.*.com'\n",
            ErrorKind::Value,
            3,
            13,
        ),
        (
            "network:\n  headers:\n    - host: a.com\n      set: {Host: x}\n",
            ErrorKind::Value,
            4,
            13,
        ),
        (
            "network:\n  headers:\n    - host: a.com\n      set:\n        X-A: 1\n        x-a: 2\n",
            ErrorKind::DuplicateKey,
            6,
            9,
        ),
        (
            "network:\n  headers:\n    - host: a.com\n      sett: {X-A: 1}\n",
            ErrorKind::UnknownKey,
            4,
            7,
        ),
        (
            "network:\n  headers:\n    - host: a.com\n      remove: [x-a, 'bad name']\n",
            ErrorKind::Value,
            4,
            21,
        ),
        (
            "review:\n  autorun: [.envrc, /etc/profile]\n",
            ErrorKind::Value,
            2,
            21,
        ),
        ("review:\n  autorn: []\n", ErrorKind::UnknownKey, 2, 3),
        ("name: x\nrule: [\n", ErrorKind::UnknownKey, 2, 1),
        ("name: 'x\n", ErrorKind::Syntax, 1, 7),
        ("name: x\n  bad: : :\n", ErrorKind::Syntax, 2, 6),
        ("name: x\n\tenv: y\n", ErrorKind::Syntax, 2, 1),
    ];
    for (yaml, kind, line, column) in cases {
        let e = err(yaml);
        assert_eq!(
            (e.kind(), e.position()),
            (*kind, Some((*line, *column))),
            "{yaml:?} => {e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{USER}:{line}:{column}: ")),
            "{e}"
        );
    }
}

#[test]
fn did_you_mean() {
    let hint = |y: &str| err(y).hint().map(str::to_string);
    assert_eq!(hint("nmae: x\n").as_deref(), Some("did you mean `name`?"));
    assert_eq!(
        hint("comand: x\n").as_deref(),
        Some("did you mean `command`?")
    );
    assert_eq!(
        hint("limits: {memroy: 1G}\n").as_deref(),
        Some("did you mean `memory`?")
    );
    assert_eq!(
        hint("network: {rule: []}\n").as_deref(),
        Some("did you mean `rules`?")
    );
    assert_eq!(
        hint("network: {rules: [{host: a.com, allow_method: [GET]}]}\n").as_deref(),
        Some("did you mean `allow_methods`?")
    );
    assert_eq!(
        hint("mounts: [{source: a, traget: /b}]\n").as_deref(),
        Some("did you mean `target`?")
    );
    assert_eq!(
        hint("runtime: dokcer\n").as_deref(),
        Some("did you mean `docker`?")
    );
    assert_eq!(
        hint("workspace: {mode: Overlay}\n").as_deref(),
        Some("did you mean `overlay`?")
    );
    assert_eq!(
        hint("network: {policy: strcit}\n").as_deref(),
        Some("did you mean `strict`?")
    );
    // Nothing close: list what is valid at that level.
    assert_eq!(
        hint("limits: {zzzzzzzz: 1}\n").as_deref(),
        Some("valid keys here: `memory`, `pids`, `cpus`")
    );
}

/// One snapshot per key with its invalid values, so a change in any message is reviewed.
#[test]
fn invalid_values_snapshot() {
    let cases = [
        // dependencies: services
        "dependencies: [\"docker:dind\", \"docker:host\"]\n",
        "dependencies: [node, \"docker:hots\"]\n",
        // name
        "name: My_Agent\n",
        "name: -agent\n",
        "name: agent-\n",
        "name: ''\n",
        "name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        "name: {a: 1}\n",
        // command
        "command: \"echo 'unterminated\"\n",
        "command: ''\n",
        "command: []\n",
        "command: ['', x]\n",
        "command: 42\n",
        "command: {a: b}\n",
        "command: [a, [b]]\n",
        // env
        "env:\n  1ABC: x\n",
        "env:\n  A-B: x\n",
        "env:\n  A: ~\n",
        "env:\n  A: [x]\n",
        "env:\n  A: \"a\\0b\"\n",
        "env: [A=b]\n",
        // mounts
        "mounts:\n  - /a\n",
        "mounts:\n  - /a:b\n",
        "mounts:\n  - /a:/b:rx\n",
        "mounts:\n  - /a:/b:ro:x\n",
        "mounts:\n  - :/b\n",
        "mounts:\n  - /a:/\n",
        "mounts:\n  - /a:/b/../c\n",
        "mounts:\n  - ~bob/x:/b\n",
        "mounts:\n  - 5\n",
        "mounts:\n  - {source: /a}\n",
        "mounts:\n  - {source: /a, target: rel}\n",
        "mounts:\n  - {source: /a, target: /b, read_only: yes}\n",
        "mounts:\n  - /a:/b\n  - /c:/b/\n",
        "mounts: /a:/b\n",
        // workspace
        "workspace:\n  mode: cow\n",
        "workspace: overlay\n",
        // limits
        "limits:\n  memory: 12XB\n",
        "limits:\n  memory: 0\n",
        "limits:\n  memory: -5\n",
        "limits:\n  memory: 1.5\n",
        "limits:\n  memory: 99999999999T\n",
        "limits:\n  memory: 1..5G\n",
        "limits:\n  memory: true\n",
        "limits:\n  pids: 0\n",
        "limits:\n  pids: 1.5\n",
        "limits:\n  pids: lots\n",
        "limits:\n  pids: 99999999999999999999999999\n",
        "limits:\n  cpus: 0\n",
        "limits:\n  cpus: -1\n",
        "limits:\n  cpus: .nan\n",
        "limits:\n  cpus: 1e400\n",
        "limits:\n  cpus: many\n",
        // runtime
        "runtime: dokcer\n",
        "runtime: [native]\n",
        // network
        "network:\n  policy: strcit\n",
        "network:\n  rules:\n    - host: https://api.github.com/repos\n",
        "network:\n  rules:\n    - host: api.github.com:443\n",
        "network:\n  rules:\n    - host: '*example.com'\n",
        "network:\n  rules:\n    - host: '*.*.example.com'\n",
        "network:\n  rules:\n    - host: 'a..b'\n",
        "network:\n  rules:\n    - host: 'exa mple.com'\n",
        "network:\n  rules:\n    - host: '-a.com'\n",
        "network:\n  rules:\n    - host: 'a.com.'\n",
        "network:\n  rules:\n    - host: ''\n",
        "network:\n  rules:\n    - port: 443\n",
        "network:\n  rules:\n    - host: a.com\n      port: 0\n",
        "network:\n  rules:\n    - host: a.com\n      port: 65536\n",
        "network:\n  rules:\n    - host: a.com\n      port: https\n",
        "network:\n  rules:\n    - host: a.com\n      allow_methods: [get]\n",
        "network:\n  rules:\n    - host: a.com\n      deny_methods: [FETCH]\n",
        "network:\n  rules:\n    - host: a.com\n      allow_paths: [repos/*]\n",
        "network:\n  rules:\n    - host: a.com\n      deny_paths: ['/a b']\n",
        "network:\n  rules:\n    - host: a.com\n      action: block\n",
        "network:\n  passthrough: ['*.']\n",
        "network:\n  passthrough: [http://bank.example]\n",
        // grants
        "grants: [GitHub]\n",
        "grants: ['-x']\n",
        "grants: github\n",
        // ports
        "ports:\n  web: 0\n",
        "ports:\n  web: 70000\n",
        "ports:\n  web: http\n",
        "ports:\n  Web: 80\n",
        "ports:\n  my_web: 80\n",
        "ports:\n  web: 80\n  web: 81\n",
        // upstream
        "upstream:\n  extra_ca: ''\n",
        "upstream:\n  resolve:\n    '*.a.com': 1.2.3.4:443\n",
        "upstream:\n  resolve:\n    a.com: 1.2.3.4\n",
        "upstream:\n  resolve:\n    a.com: a.internal:443\n",
        "upstream:\n  resolve:\n    a.com: 1.2.3.4:0\n",
        "upstream:\n  resolve:\n    a.com: 1.2.3.4:1\n    A.COM: 1.2.3.4:2\n",
        "upstream:\n  proxy: x\n",
        // router / daemon / audit (user config)
        "router:\n  port: 0\n",
        "router:\n  port: 100000\n",
        "ui:\n  port: 0\n",
        "ui:\n  port: web\n",
        "ui:\n  browser: ' '\n",
        "ui:\n  brwoser: firefox\n",
        "daemon:\n  idle_timeout: 5\n",
        "daemon:\n  idle_timeout: 5x\n",
        "daemon:\n  idle_timeout: 0s\n",
        "daemon:\n  idle_timeout: m5\n",
        "daemon:\n  idle_timeout: 99999999999999999999h\n",
        "audit:\n  checkpoint_every: 0\n",
        "audit:\n  checkpoint_interval: soon\n",
        // documents
        "name: a\n---\nname: b\n",
        "just a string\n",
        "- a\n- b\n",
    ];
    let out: String = cases
        .iter()
        .map(|c| render(c))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("invalid_values", out);
}

/// `network.headers`: every way an entry can be wrong, one snapshot.
#[test]
fn invalid_headers_snapshot() {
    let cases = [
        "network:\n  headers:\n    - {host: a.com, set: {Host: x}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {content-length: '5'}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {Transfer-Encoding: chunked}}\n",
        "network:\n  headers:\n    - {host: a.com, remove: [Connection]}\n",
        "network:\n  headers:\n    - {host: a.com, remove: [upgrade, TE, trailer, keep-alive]}\n",
        "network:\n  headers:\n    - {host: a.com, set: {Proxy-Authorization: x}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {'X Team': blue}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {'X-Team:': blue}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {'X-Tëam': blue}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {'': blue}}\n",
        "network:\n  headers:\n    - {host: a.com, remove: ['']}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Team: \"blue\\r\\nX-Evil: 1\"}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Team: \"a\\0b\"}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Team: ~}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Team: true}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Team: 1.5}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Team: [a]}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-A: '1', x-a: '2'}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-A: '1'}, remove: [x-a]}\n",
        "network:\n  headers:\n    - {host: a.com}\n",
        "network:\n  headers:\n    - host: a.com\n      set: {}\n      remove: []\n",
        "network:\n  headers:\n    - {set: {X-A: '1'}}\n",
        "network:\n  headers:\n    - {host: 'https://a.com', set: {X-A: '1'}}\n",
        "network:\n  headers:\n    - {host: 'a.com:443', set: {X-A: '1'}}\n",
        "network:\n  headers:\n    - {host: a.com, add: {X-A: '1'}}\n",
        "network:\n  headers:\n    - {host: a.com, set: [X-A]}\n",
        "network:\n  headers:\n    - {host: a.com, remove: X-A}\n",
        "network:\n  headers: {host: a.com}\n",
        "network:\n  headers:\n    - ~\n",
    ];
    let out: String = cases
        .iter()
        .map(|c| render(c))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("invalid_headers", out);
}

/// A header value may be a token: no error about it, wherever it is, repeats it.
#[test]
fn header_value_errors_do_not_repeat_the_value() {
    for yaml in [
        "network:\n  headers:\n    - {host: a.com, set: {X-Token: \"SeKrEt-1\\nSeKrEt-2\"}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Token: \"SeKrEt-1\\u007f\"}}\n",
        "network:\n  headers:\n    - {host: a.com, set: {X-Token: \"SeKrEt-1\", Host: x}}\n",
    ] {
        let e = err(yaml);
        let shown = e.display_with_hint();
        assert!(!shown.contains("SeKrEt"), "{shown}");
        assert!(!format!("{e:?}").contains("SeKrEt"), "{e:?}");
    }
    // Nor does the resolved config's Debug (it may end up in a log).
    let c = user("network:\n  headers:\n    - {host: a.com, set: {X-Token: SeKrEt-1}}\n").unwrap();
    let dbg = format!("{c:?}");
    assert!(dbg.contains("x-token") && !dbg.contains("SeKrEt"), "{dbg}");
}

/// The CLI sends `network` to the daemon as JSON, and the daemon reads it back.
#[test]
fn network_headers_round_trip_through_json() {
    let c = project(
        "network:\n  headers:\n    - {host: api.github.com, set: {X-Team: blue, X-Empty: ''}, remove: [User-Agent]}\n    - {host: '*.example.com', set: {Authorization: 'Bearer t'}}\n",
    )
    .unwrap();
    let json = serde_json::to_value(&c.network).unwrap();
    assert_eq!(
        json["headers"][0],
        serde_json::json!({
            "host": "api.github.com",
            "set": {"x-empty": "", "x-team": "blue"},
            "remove": ["user-agent"],
        })
    );
    let back: paddock_config::NetworkConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, c.network);
    // Older senders (no `headers`) and entries without `set`/`remove` still read.
    let old: paddock_config::NetworkConfig =
        serde_json::from_value(serde_json::json!({"policy": "strict", "rules": []})).unwrap();
    assert!(old.headers.is_empty());
    let partial: paddock_config::NetworkConfig = serde_json::from_value(
        serde_json::json!({"headers": [{"host": "a.com", "remove": ["x-a"]}]}),
    )
    .unwrap();
    assert!(partial.headers[0].set.is_empty());
}

#[test]
fn header_names_follow_the_http_rules() {
    for ok in [
        "X-Team",
        "x_team",
        "a",
        "X-!#$%&'*+.^_`|~",
        "Authorization",
        "Cookie",
    ] {
        paddock_config::parse_header_name(ok).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
    for bad in [
        "",
        "a b",
        "a:b",
        "ä",
        "a\u{0}",
        "(x)",
        "host",
        "HOST",
        "proxy-x",
        "Proxy-Connection",
    ] {
        assert!(paddock_config::parse_header_name(bad).is_err(), "{bad:?}");
    }
    for ok in ["", "blue", "a\tb", "ünïcode", " padded "] {
        paddock_config::check_header_value(ok).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
    for bad in ["a\nb", "a\rb", "a\u{0}", "a\u{7f}", "a\u{1b}[0m"] {
        assert!(paddock_config::check_header_value(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn agents_override_and_resolve() {
    let c = project(
        "agents:\n  claude:\n    version: 2.0.1\n    allow: [registry.npmjs.org]\n    env: {FOO: bar}\n  aider:\n    command: aider --yes\n    allow: [api.openai.com]\n",
    )
    .unwrap();
    let claude = paddock_config::resolve_agent("claude", &c).unwrap();
    assert_eq!(claude.package.as_ref().unwrap().version, "2.0.1");
    assert!(
        claude
            .allow
            .iter()
            .any(|h| h.to_string() == "api.anthropic.com")
    );
    assert!(
        claude
            .allow
            .iter()
            .any(|h| h.to_string() == "registry.npmjs.org")
    );
    assert_eq!(claude.env.get("FOO").map(String::as_str), Some("bar"));
    let aider = paddock_config::resolve_agent("aider", &c).unwrap();
    assert_eq!(aider.command, ["aider", "--yes"]);
    assert!(aider.package.is_none());
    let net = aider.network(&Default::default());
    assert_eq!(net.policy, NetworkPolicy::Strict);
    assert_eq!(net.rules.len(), 1);
    let e = paddock_config::resolve_agent("nope", &c).unwrap_err();
    assert!(e.hint.contains("claude"), "{}", e.hint);
}

#[test]
fn bad_agent_values_point_at_them() {
    for (yaml, line, column, needle) in [
        (
            "agents:\n  claude:\n    package: -evil\n",
            3,
            14,
            "not a valid package name",
        ),
        (
            "agents:\n  claude:\n    version: \"--registry=x\"\n",
            3,
            14,
            "version",
        ),
        (
            "agents:\n  claude:\n    allow: [\"a b\"]\n",
            3,
            13,
            "agents.claude.allow",
        ),
        (
            "agents:\n  claude:\n    state: [relative/dir]\n",
            3,
            13,
            "agents.claude.state",
        ),
        ("agents:\n  claude:\n    colour: red\n", 3, 5, "colour"),
        ("agents:\n  Bad_Name: {}\n", 2, 3, "agent"),
    ] {
        let e = err(yaml);
        let shown = e.display_with_hint();
        assert!(shown.contains(needle), "{yaml:?}: {shown}");
        assert!(
            shown.contains(&format!(":{line}:{column}:")),
            "{yaml:?} should point at {line}:{column}: {shown}"
        );
    }
}
