//! `paddock grant …` through the real binary: adding credentials from the environment, stdin
//! and a CLI, listing, showing and revoking them, and the promise that the value never
//! shows: not in output, not in the daemon's log or audit log, not in clear in any file
//! under `$PADDOCK_HOME`, not in the daemon's environment, never taken from argv.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};

use common::{Env, request};

const GH: &str = "ghp_PaddockTestGithubValue0123456789AbCd";
const ANT: &str = "sk-ant-api03-PaddockTestAnthropicValue0123456789-xyzAA";
const HTTP: &str = "PaddockTestHttpValue-0123456789";

/// A test home whose secret store keeps its key in a file (no OS keyring is reachable).
fn env() -> Env {
    let mut env = Env::new();
    let runtime = env.dir.path().join("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    env.extra_env.extend([
        ("XDG_RUNTIME_DIR".into(), runtime.display().to_string()),
        ("DBUS_SESSION_BUS_ADDRESS".into(), String::new()),
    ]);
    env
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn with_stdin(env: &Env, args: &[&str], input: &str) -> Output {
    let mut child = env
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn with_env(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = env.cmd();
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}", text(out));
}

fn assert_hides(out: &Output, values: &[&str]) {
    let t = text(out);
    for v in values {
        assert!(!t.contains(v), "a value leaked into the output:\n{t}");
    }
}

/// Files under `dir` that contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if meta.is_file()
            && std::fs::read(&p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

#[test]
fn grants_from_env_stdin_and_a_cli_never_show_their_values() {
    let env = env();
    let all = [GH, ANT, HTTP, "PaddockTestFromGh0123456789zz"];

    let out = with_env(
        &env,
        &["grant", "github", "--from-env", "MY_GH"],
        &[("MY_GH", GH)],
    );
    assert_code(&out, 0, "grant github --from-env");
    assert_hides(&out, &all);
    let t = text(&out);
    assert!(t.contains("added grant github"), "{t}");
    assert!(t.contains("ghp_…AbCd"), "masked preview: {t}");
    assert!(t.contains("api.github.com") && t.contains("Basic base64(x-access-token:{})"));

    // The daemon this CLI started did not inherit the variable the value came from.
    let pid = env.daemon_pid().expect("daemon running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        !environ.windows(GH.len()).any(|w| w == GH.as_bytes()),
        "the daemon inherited the credential"
    );

    let out = with_stdin(
        &env,
        &["grant", "anthropic", "--name", "claude", "--stdin"],
        &format!("{ANT}\n"),
    );
    assert_code(&out, 0, "grant anthropic --stdin");
    assert_hides(&out, &all);

    let out = with_stdin(
        &env,
        &[
            "grant",
            "http",
            "internal",
            "--host",
            "api.example.com",
            "--host",
            "*.example.org",
            "--header",
            "X-Api-Key",
            "--format",
            "Token {}",
            "--env",
            "INTERNAL_TOKEN",
            "--stdin",
        ],
        HTTP,
    );
    assert_code(&out, 0, "grant http --stdin");
    assert_hides(&out, &all);
    assert!(text(&out).contains("x-api-key: Token {}"), "{}", text(&out));

    // The default source of `grant github` is `gh auth token`.
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let gh = bin.join("gh");
    std::fs::write(
        &gh,
        "#!/bin/sh\n[ \"$1 $2\" = 'auth token' ] || exit 3\necho PaddockTestFromGh0123456789zz\n",
    )
    .unwrap();
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = with_env(
        &env,
        &["grant", "github", "--name", "gh-cli"],
        &[("PATH", &path)],
    );
    assert_code(&out, 0, "grant github from gh");
    assert_hides(&out, &all);
    assert!(text(&out).contains("gh auth token"), "{}", text(&out));

    // Replacing a grant says so.
    let out = with_env(
        &env,
        &["grant", "github", "--from-env", "MY_GH"],
        &[("MY_GH", GH)],
    );
    assert_code(&out, 0, "replace");
    assert!(
        text(&out).contains("updated grant github"),
        "{}",
        text(&out)
    );

    let out = env.run(&["grant", "list"]);
    assert_code(&out, 0, "list");
    assert_hides(&out, &all);
    let t = text(&out);
    for name in ["claude", "gh-cli", "github", "internal"] {
        assert!(t.contains(name), "{t}");
    }
    assert!(t.contains("api.example.com, *.example.org"), "{t}");

    let out = env.run(&["grant", "list", "--json"]);
    assert_code(&out, 0, "list --json");
    assert_hides(&out, &all);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let grants = list["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 4);
    assert_eq!(grants[0]["name"], "claude");
    assert_eq!(grants[0]["kind"], "anthropic");
    assert_eq!(grants[0]["preview"], "sk-ant-api03-…yzAA");

    for name in ["github", "claude", "internal", "gh-cli"] {
        let out = env.run(&["grant", "show", name]);
        assert_code(&out, 0, "show");
        assert_hides(&out, &all);
        assert!(text(&out).contains("(masked)"), "{}", text(&out));
        let out = env.run(&["grant", "show", name, "--json"]);
        assert_code(&out, 0, "show --json");
        assert_hides(&out, &all);
    }
    let show: serde_json::Value =
        serde_json::from_slice(&env.run(&["grant", "show", "internal", "--json"]).stdout).unwrap();
    assert_eq!(show["env"], serde_json::json!(["INTERNAL_TOKEN"]));
    assert_eq!(show["rules"][1]["host"], "*.example.org");

    let out = env.run(&["grant", "revoke", "gh-cli"]);
    assert_code(&out, 0, "revoke");

    // The daemon's audit log records names and kinds, nothing more.
    let out = env.run(&["audit", "show", "--daemon", "--type", "grant.", "--json"]);
    assert_code(&out, 0, "audit");
    assert_hides(&out, &all);
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<(String, String)> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["data"].as_object().unwrap().len(), 2, "{e}");
            (
                e["type"].as_str().unwrap().to_string(),
                e["data"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("grant.added", "github"),
        ("grant.added", "claude"),
        ("grant.added", "internal"),
        ("grant.added", "gh-cli"),
        ("grant.updated", "github"),
        ("grant.revoked", "gh-cli"),
    ];
    assert_eq!(
        kinds,
        want.map(|(a, b)| (a.to_string(), b.to_string())),
        "audit entries"
    );
    let out = env.run(&["audit", "show", "--daemon"]);
    assert!(text(&out).contains("github (github)"), "{}", text(&out));

    // Secret store permissions.
    let secrets = env.home.join("secrets");
    assert_eq!(std::fs::metadata(&secrets).unwrap().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&secrets).unwrap().flatten() {
        let mode = e.metadata().unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", e.path().display());
    }

    // Nothing in clear anywhere under PADDOCK_HOME (daemon.log and audit logs included),
    // once the daemon has flushed everything and stopped.
    env.stop_daemon();
    assert!(env.home.join("daemon.log").exists());
    for v in all {
        let hits = files_containing(&env.home, v.as_bytes());
        assert!(hits.is_empty(), "a value is in clear in {hits:?}");
    }
}

#[test]
fn revoke_and_unknown_grants() {
    let env = env();
    let out = with_env(
        &env,
        &["grant", "openai", "--from-env", "OPENAI_API_KEY"],
        &[("OPENAI_API_KEY", "sk-proj-PaddockTestOpenai0123456789")],
    );
    assert_code(&out, 0, "grant openai");

    let out = env.run(&["grant", "show", "nope"]);
    assert_code(&out, 1, "show unknown");
    let t = text(&out);
    assert!(t.contains("no grant named `nope`"), "{t}");
    assert!(
        t.contains("hint: add it with `paddock grant <kind> --name nope`"),
        "{t}"
    );
    assert!(t.contains("existing grants: openai"), "{t}");

    let out = env.run(&["grant", "revoke", "github"]);
    assert_code(&out, 1, "revoke unknown");
    assert!(
        text(&out).contains("add it with `paddock grant github`"),
        "{}",
        text(&out)
    );

    let out = env.run(&["grant", "revoke", "openai", "--json"]);
    assert_code(&out, 0, "revoke");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["name"], "openai");
    assert_eq!(r["grant"]["kind"], "openai");
    let out = env.run(&["grant", "revoke", "openai"]);
    assert_code(&out, 1, "revoke twice");
    assert!(
        text(&out).contains("there are no grants yet"),
        "{}",
        text(&out)
    );
    let out = env.run(&["grant", "list"]);
    assert_code(&out, 0, "empty list");
    assert!(text(&out).contains("no grants yet"), "{}", text(&out));
    assert!(!env.home.join("secrets/openai.grant").exists());
}

#[test]
fn values_are_never_taken_from_argv() {
    let env = env();
    let token = "ghp_ArgvTokenMustNotBeEchoed0123456789ab";
    let eq = format!("--value={token}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["grant", "github", token],
        vec!["grant", "github", "--value", token],
        vec!["grant", "github", &eq],
        vec!["grant", "github", "--token", token],
        vec![
            "grant",
            "anthropic",
            "--stdin",
            "sk-ant-api03-ArgvTokenMustNotBeEchoed0123",
        ],
        vec![
            "grant",
            "http",
            "x",
            "--host",
            "api.example.com",
            "--header",
            "X-Key",
            token,
        ],
        vec![
            "grant",
            "http",
            token,
            "--host",
            "api.example.com",
            "--header",
            "X-Key",
        ],
        vec!["grant", "github", "--name", token],
        vec!["grant", "github", "--from-env", token],
        vec!["grant", "show", token],
        vec!["grant", "revoke", token],
    ];
    for args in &cases {
        let out = env.run(args);
        assert_code(&out, 2, &format!("{args:?}"));
        assert_hides(&out, &[token, "ArgvTokenMustNotBeEchoed"]);
        assert!(text(&out).contains("hint:"), "{}", text(&out));
    }
    assert!(env.health().is_none(), "nothing was sent to a daemon");
    for kind in ["github", "anthropic", "openai", "http"] {
        let help = String::from_utf8(env.run(&["grant", kind, "--help"]).stdout).unwrap();
        assert!(
            help.contains("--from-env") && help.contains("--stdin"),
            "{help}"
        );
        assert!(help.contains("Examples:"), "{help}");
        assert!(
            !help.contains("--value") && !help.contains("--token"),
            "{help}"
        );
    }
}

#[test]
fn bad_names_flags_and_sources_are_refused_with_hints() {
    let env = env();
    // Usage errors: exit 2, before any value is read or any daemon is started.
    let usage: &[&[&str]] = &[
        &["grant", "github", "--name", "Bad Name", "--from-env", "X"],
        &["grant", "github", "--name", "-leading", "--from-env", "X"],
        &["grant", "show", "UPPER"],
        &[
            "grant",
            "http",
            "x",
            "--host",
            "api.example.com",
            "--header",
            "bad header",
            "--stdin",
        ],
        &[
            "grant",
            "http",
            "x",
            "--host",
            "api.example.com",
            "--header",
            "Host",
            "--stdin",
        ],
        &[
            "grant",
            "http",
            "x",
            "--host",
            "api.example.com",
            "--header",
            "X-Key",
            "--format",
            "Bearer",
            "--stdin",
        ],
        &[
            "grant",
            "http",
            "x",
            "--host",
            "api.example.com",
            "--header",
            "X-Key",
            "--format",
            "{} {}",
            "--stdin",
        ],
        &[
            "grant", "http", "x", "--host", "*.com", "--header", "X-Key", "--stdin",
        ],
        &["grant", "http", "x", "--header", "X-Key", "--stdin"],
        &[
            "grant",
            "http",
            "x",
            "--host",
            "api.example.com",
            "--header",
            "X-Key",
            "--env",
            "1BAD",
            "--stdin",
        ],
        &["grant", "github", "--from-env", "NOT-A-VAR"],
        &["grant", "github", "--from-env", "X", "--stdin"],
    ];
    for args in usage {
        let out = env.run(args);
        assert_code(&out, 2, &format!("{args:?}"));
        let t = text(&out);
        assert!(t.contains("error:"), "{t}");
    }
    for (args, hint) in [
        (&["grant", "show", "UPPER"][..], "lower-case letters"),
        (
            &[
                "grant",
                "http",
                "x",
                "--host",
                "api.example.com",
                "--header",
                "bad header",
                "--stdin",
            ][..],
            "Authorization or X-Api-Key",
        ),
        (
            &[
                "grant",
                "http",
                "x",
                "--host",
                "api.example.com",
                "--header",
                "X-Key",
                "--format",
                "Bearer",
                "--stdin",
            ][..],
            "exactly once",
        ),
    ] {
        let t = text(&env.run(args));
        assert!(t.contains("hint:") && t.contains(hint), "{args:?}: {t}");
    }

    // No source for a kind without a CLI: say how to give one.
    let out = env
        .cmd()
        .args(["grant", "anthropic"])
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    assert_code(&out, 2, "no source");
    let t = text(&out);
    assert!(
        t.contains("--from-env ANTHROPIC_API_KEY") && t.contains("--stdin"),
        "{t}"
    );

    // A variable that is not set.
    let out = env
        .cmd()
        .args(["grant", "github", "--from-env", "PADDOCK_TEST_SURELY_UNSET"])
        .env_remove("PADDOCK_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    assert_code(&out, 1, "missing env var");
    let t = text(&out);
    assert!(t.contains("PADDOCK_TEST_SURELY_UNSET is not set"), "{t}");
    assert!(t.contains("hint: export PADDOCK_TEST_SURELY_UNSET="), "{t}");

    // `grant github` with no GitHub CLI installed.
    let empty = env.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = with_env(
        &env,
        &["grant", "github"],
        &[("PATH", empty.to_str().unwrap())],
    );
    assert_code(&out, 1, "no gh");
    let t = text(&out);
    assert!(t.contains("`gh` was not found"), "{t}");
    assert!(
        t.contains("gh auth login") && t.contains("environment variable or stdin"),
        "{t}"
    );
    assert!(env.health().is_none(), "nothing was sent to a daemon");

    // Values the daemon refuses: too short, empty.
    let out = with_stdin(&env, &["grant", "openai", "--stdin"], "short\n");
    assert_code(&out, 1, "short value");
    assert!(text(&out).contains("shorter than 8"), "{}", text(&out));
    let out = with_stdin(&env, &["grant", "openai", "--stdin"], "");
    assert_code(&out, 1, "empty value");
    assert!(text(&out).contains("hint:"), "{}", text(&out));
}

#[test]
fn the_api_never_echoes_a_value_and_lists_the_capability() {
    let env = env();
    env.ok(&["grant", "list"]);
    let h = env.wait_health();
    assert!(
        h["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "grants")
    );
    let sock = env.socket();
    // A malformed request: serde would quote the string; the daemon must not.
    let (status, body) = request(
        &sock,
        "PUT",
        "/v1/grants/x",
        Some(r#"{"kind":"github","value":"ApiValueMustNotEcho0123","hosts":"ApiValueMustNotEcho0123"}"#),
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("ApiValueMustNotEcho"), "{body}");
    assert!(body["error"]["hint"].is_string());

    let (status, body) = request(
        &sock,
        "PUT",
        "/v1/grants/x",
        Some(r#"{"kind":"ApiValueMustNotEcho0123","value":"ApiValueMustNotEcho0123"}"#),
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("ApiValueMustNotEcho"), "{body}");

    let (status, body) = request(
        &sock,
        "PUT",
        "/v1/grants/api-test",
        Some(r#"{"kind":"openai","value":"sk-proj-ApiValueMustNotEcho0123"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    assert!(!body.to_string().contains("ApiValueMustNotEcho"), "{body}");
    assert_eq!(body["replaced"], false);
    let (status, body) = request(
        &sock,
        "PUT",
        "/v1/grants/api-test",
        Some(r#"{"kind":"openai","value":"sk-proj-ApiValueMustNotEcho0123"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replaced"], true);

    let (status, body) = request(&sock, "GET", "/v1/grants/nope", None).unwrap();
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "grant_not_found");
    assert!(
        body["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("existing grants: api-test")
    );
    let (status, _) = request(&sock, "POST", "/v1/grants/api-test", Some("{}")).unwrap();
    assert_eq!(status, 405);
    let (status, body) = request(&sock, "DELETE", "/v1/grants/api-test", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "api-test");
}
