//! Agent presets with the real CLIs from npm (`@anthropic-ai/claude-code`, `@openai/codex`,
//! `@google/gemini-cli`, installed by paddock itself into a tool cache that every test run
//! shares), against local fakes of the model APIs and token endpoints
//! (`tests/agents/fakes.py`) reached through `upstream.resolve` and `upstream.extra_ca`,
//! exactly as a user's real hosts would be.
//!
//! Per CLI: a turn prints the fake's reply; the fake saw the real credential; the sandbox's
//! environment, files and /proc never hold it; an expired login is refreshed by the daemon
//! (with the real refresh token, at the provider's token endpoint only) and the next turn
//! uses the new token; a refresh from inside the sandbox gets placeholders back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, wait_until};

const NAMES: &[&str] = &[
    "api.anthropic.com",
    "console.anthropic.com",
    "platform.claude.com",
    "api.openai.com",
    "chatgpt.com",
    "auth.openai.com",
    "generativelanguage.googleapis.com",
    "cloudcode-pa.googleapis.com",
    "oauth2.googleapis.com",
    "www.googleapis.com",
    "play.googleapis.com",
    "statsig.anthropic.com",
];

const REPLY: &str = "PADDOCK-FAKE-REPLY";
const ANTHROPIC_KEY: &str = "sk-ant-api03-REALKEYzzREALKEYzzREALKEYzzREALKEYzzREALKEYzzREALKEYzzREALKEYzzREALKEYzzREALKEYzz01-AA";
const CLAUDE_ACCESS: &str = "sk-ant-oat01-REALCLAUDEACCESSzzREALCLAUDEACCESSzzREALCLAUDEACCESS";
const CLAUDE_REFRESH: &str = "sk-ant-ort01-REALCLAUDEREFRESHzzREALCLAUDEREFRESHzz";
const OPENAI_KEY: &str = "sk-proj-REALOPENAIKEYzzREALOPENAIKEYzzREALOPENAIKEYzz";
const CODEX_REFRESH: &str = "rt_REALCODEXREFRESHzzREALCODEXREFRESH";
const GEMINI_KEY: &str = "AIzaREALGEMINIKEYzzREALGEMINIKEY0123";
const GOOGLE_ACCESS: &str = "ya29.REALGOOGLEACCESSzzREALGOOGLEACCESSzz";
const GOOGLE_REFRESH: &str = "1//0REALGOOGLEREFRESHzzREALGOOGLEREFRESH";

struct Fake {
    child: Child,
    dir: PathBuf,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fake {
    fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::write(self.dir.join("log.jsonl"), "");
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn b64(v: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.REALSIGNATUREzzREALSIGNATUREzzREALSIGNATURE",
        b64(&serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(&claims)
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn codex_tokens() -> (String, String) {
    let auth = serde_json::json!({"chatgpt_account_id": "acc-123", "chatgpt_plan_type": "plus", "chatgpt_user_id": "user-1"});
    let id = jwt(
        serde_json::json!({"email": "dev@example.com", "exp": now() + 3600, "https://api.openai.com/auth": auth}),
    );
    let access = jwt(serde_json::json!({"exp": now() - 60, "https://api.openai.com/auth": auth}));
    (id, access)
}

/// The fake, its CA, and the user config that sends every name of [`NAMES`] to it.
fn fake(env: &Env, expired: &[&str]) -> Fake {
    let dir = env.dir.path().join("fake");
    std::fs::create_dir_all(&dir).unwrap();
    let ssl = |args: &[&str]| sh(Command::new("openssl").current_dir(&dir).args(args));
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=paddock agents test CA",
    ]);
    let san: Vec<String> = NAMES.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={}\n", san.join(",")),
    )
    .unwrap();
    ssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=fake",
    ]);
    ssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let (codex_id, codex_access) = codex_tokens();
    let state = serde_json::json!({
        "anthropic_key": ANTHROPIC_KEY,
        "claude_access": CLAUDE_ACCESS,
        "claude_refresh": CLAUDE_REFRESH,
        "openai_key": OPENAI_KEY,
        "codex_access": codex_access,
        "codex_refresh": CODEX_REFRESH,
        "codex_id_token": codex_id,
        "gemini_key": GEMINI_KEY,
        "google_access": GOOGLE_ACCESS,
        "google_refresh": GOOGLE_REFRESH,
        "expired": expired,
    });
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/fakes.py");
    let port_file = dir.join("port");
    let child = Command::new("/usr/bin/python3")
        .arg(script)
        .args([
            dir.join("leaf.pem"),
            dir.join("leaf.key"),
            dir.join("log.jsonl"),
            dir.join("state.json"),
            port_file.clone(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 fakes.py");
    let port = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
    })
    .expect("the fake did not start");
    let resolve: Vec<String> = NAMES
        .iter()
        .map(|n| format!("    {n}: \"127.0.0.1:{port}\""))
        .collect();
    std::fs::create_dir_all(env.config.join("paddock")).unwrap();
    std::fs::write(
        env.config.join("paddock/config.yaml"),
        format!(
            "upstream:\n  extra_ca: {}\n  resolve:\n{}\n",
            dir.join("ca.pem").display(),
            resolve.join("\n")
        ),
    )
    .unwrap();
    Fake { child, dir }
}

/// An Env whose agent CLIs come from the shared tool cache (installed on first use).
fn agent_env() -> Env {
    let mut env = Env::new();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-tools");
    std::fs::create_dir_all(&cache).unwrap();
    env.extra_env
        .push(("XDG_CACHE_HOME".into(), cache.display().to_string()));
    // The host's own agent CLIs (if any) are not what is under test.
    env.extra_env
        .push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    env
}

fn workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    sh(Command::new("git").current_dir(&ws).args(["init", "-q"]));
    ws
}

fn paddock(env: &Env, ws: &Path, args: &[&str]) -> (bool, String, String) {
    let out = env
        .cmd()
        .current_dir(ws)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn grant_from_env(env: &Env, ws: &Path, kind: &str, var: &str, value: &str) {
    let out = env
        .cmd()
        .current_dir(ws)
        .args(["grant", kind, "--from-env", var])
        .env(var, value)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn import_login(env: &Env, ws: &Path, cli: &str, file: &serde_json::Value) {
    let path = env.dir.path().join(format!("{cli}-login.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(file).unwrap()).unwrap();
    let (ok, out, err) = paddock(
        env,
        ws,
        &["grant", cli, "--from-login", path.to_str().unwrap()],
    );
    assert!(ok, "{out}{err}");
}

/// What the sandbox of agent `agent` can see: its environment, every process's
/// environment in /proc, and every file of its state directories.
fn sandbox_view(env: &Env, ws: &Path, agent: &str) -> String {
    let (ok, out, err) = paddock(
        env,
        ws,
        &[
            "run",
            "-q",
            "--agent",
            agent,
            "--",
            "/bin/sh",
            "-c",
            "env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; done 2>/dev/null; find /home/paddock /tmp -type f -exec cat {} + 2>/dev/null",
        ],
    );
    assert!(ok, "{err}");
    out
}

fn assert_no_secret(where_: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        // The distinctive middle of each value (no placeholder shares it); of a JWT, its
        // signature (placeholders keep a JWT's header and claims, which name the account).
        let s = match s.rsplit_once('.') {
            Some((_, sig)) if s.matches('.').count() == 2 => sig,
            _ => s,
        };
        let needle = &s[s.len().min(14)..s.len().min(40)];
        assert!(
            !text.contains(needle),
            "{where_} holds a real credential ({}…)",
            &s[..10]
        );
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(b) = std::fs::read(&p)
                && b.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(p);
            }
        }
    }
    hits
}

fn seen(fake: &Fake, host: &str, path_prefix: &str) -> Vec<serde_json::Value> {
    fake.log()
        .into_iter()
        .filter(|e| e["host"] == host && e["path"].as_str().unwrap_or("").starts_with(path_prefix))
        .collect()
}

#[test]
fn claude_turns_with_a_key_and_with_a_login_that_paddock_refreshes() {
    let env = agent_env();
    let fake = fake(&env, &[CLAUDE_ACCESS]);
    let ws = workspace(&env);

    // An API key: the fake sees the real key; the turn prints its reply.
    grant_from_env(&env, &ws, "anthropic", "ANTHROPIC_API_KEY", ANTHROPIC_KEY);
    let (ok, out, err) = paddock(&env, &ws, &["claude", "-p", "say hi"]);
    assert!(ok && out.contains(REPLY), "stdout: {out}\nstderr: {err}");
    let turns = seen(&fake, "api.anthropic.com", "/v1/messages");
    assert!(
        !turns.is_empty(),
        "no turn reached the fake: {:?}",
        fake.log()
    );
    assert!(
        turns
            .iter()
            .all(|e| e["x-api-key"] == ANTHROPIC_KEY && e["auth_ok"] == true)
    );
    paddock(&env, &ws, &["grant", "revoke", "anthropic"]);

    // A login whose access token has expired: the daemon refreshes it before the run.
    fake.clear_log();
    import_login(
        &env,
        &ws,
        "claude",
        &serde_json::json!({"claudeAiOauth": {"accessToken": CLAUDE_ACCESS, "refreshToken": CLAUDE_REFRESH,
            "expiresAt": (now() - 60) * 1000, "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}}),
    );
    let (ok, out, err) = paddock(&env, &ws, &["claude", "-p", "say hi"]);
    assert!(ok && out.contains(REPLY), "stdout: {out}\nstderr: {err}");
    let refreshes = seen(&fake, "console.anthropic.com", "/v1/oauth/token");
    assert_eq!(
        refreshes.len(),
        1,
        "one refresh by the daemon: {:?}",
        fake.log()
    );
    assert_eq!(refreshes[0]["body"]["refresh_token"], CLAUDE_REFRESH);
    let minted = refreshes[0]["minted"].as_str().unwrap().to_string();
    let turns = seen(&fake, "api.anthropic.com", "/v1/messages");
    assert!(!turns.is_empty());
    assert!(
        turns
            .iter()
            .all(|e| e["authorization"] == format!("Bearer {minted}"))
    );
    // The refresh token went to the token endpoint and nowhere else.
    for e in fake.log() {
        if e["host"] != "console.anthropic.com" {
            assert!(!e.to_string().contains(CLAUDE_REFRESH), "{e}");
        }
    }

    // The sandbox holds placeholders of the same shape, never a real value.
    let view = sandbox_view(&env, &ws, "claude");
    assert!(
        view.contains("claudeAiOauth") && view.contains("sk-ant-oat01-"),
        "{view}"
    );
    assert_no_secret(
        "the sandbox",
        &view,
        &[CLAUDE_ACCESS, CLAUDE_REFRESH, &minted, ANTHROPIC_KEY],
    );
    assert!(files_containing(&env.home.join("agents"), &minted[14..40]).is_empty());
    assert!(files_containing(&env.home.join("agents"), &CLAUDE_REFRESH[14..40]).is_empty());

    // A refresh made inside the sandbox with its placeholder refresh token gets
    // placeholders back from paddock; the provider never sees it.
    fake.clear_log();
    let script = r#"
RT=$(python3 -c 'import json,os; print(json.load(open(os.path.expanduser("~/.claude/.credentials.json")))["claudeAiOauth"]["refreshToken"])')
AT=$(python3 -c 'import json,os; print(json.load(open(os.path.expanduser("~/.claude/.credentials.json")))["claudeAiOauth"]["accessToken"])')
curl -sS -X POST https://console.anthropic.com/v1/oauth/token -H 'content-type: application/json' \
  -d "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"$RT\",\"client_id\":\"x\"}" > /tmp/answer
python3 -c 'import json,sys; a=json.load(open("/tmp/answer")); print("SAME-ACCESS" if a["access_token"]==sys.argv[1] else "OTHER", "SAME-REFRESH" if a["refresh_token"]==sys.argv[2] else "OTHER")' "$AT" "$RT"
cat /tmp/answer
"#;
    let (ok, out, err) = paddock(
        &env,
        &ws,
        &[
            "run", "-q", "--agent", "claude", "--", "/bin/sh", "-c", script,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("SAME-ACCESS SAME-REFRESH"), "{out}");
    assert_no_secret(
        "the in-sandbox refresh answer",
        &out,
        &[CLAUDE_ACCESS, CLAUDE_REFRESH, &minted],
    );
    assert!(seen(&fake, "console.anthropic.com", "/v1/oauth/token").is_empty());

    // The next turn still works (same login, no second refresh needed).
    let (ok, out, err) = paddock(&env, &ws, &["claude", "-p", "again"]);
    assert!(ok && out.contains(REPLY), "stdout: {out}\nstderr: {err}");
    drop(fake);
}

#[test]
fn codex_turns_with_a_key_and_its_login_is_refreshed_by_the_daemon() {
    let env = agent_env();
    let (codex_id, codex_access) = codex_tokens();
    let fake = fake(&env, &[&codex_access]);
    let ws = workspace(&env);

    grant_from_env(&env, &ws, "openai", "OPENAI_API_KEY", OPENAI_KEY);
    let (ok, out, err) = paddock(
        &env,
        &ws,
        &["codex", "exec", "--skip-git-repo-check", "say hi"],
    );
    assert!(ok && out.contains(REPLY), "stdout: {out}\nstderr: {err}");
    let turns: Vec<_> = seen(&fake, "api.openai.com", "/v1/responses")
        .into_iter()
        .filter(|e| e["method"] == "POST")
        .collect();
    assert!(!turns.is_empty(), "{:?}", fake.log());
    assert!(
        turns
            .iter()
            .all(|e| e["authorization"] == format!("Bearer {OPENAI_KEY}"))
    );
    let view = sandbox_view(&env, &ws, "codex");
    assert_no_secret("the sandbox", &view, &[OPENAI_KEY]);
    paddock(&env, &ws, &["grant", "revoke", "openai"]);

    // The ChatGPT login, expired: the daemon refreshes it at auth.openai.com, and the new
    // access token is what reaches chatgpt.com.
    fake.clear_log();
    import_login(
        &env,
        &ws,
        "codex",
        &serde_json::json!({"OPENAI_API_KEY": null, "tokens": {"id_token": codex_id, "access_token": codex_access,
            "refresh_token": CODEX_REFRESH, "account_id": "acc-123"}, "last_refresh": "2026-12-01T00:00:00Z"}),
    );
    let _ = paddock(
        &env,
        &ws,
        &["codex", "exec", "--skip-git-repo-check", "say hi"],
    );
    let refreshes = seen(&fake, "auth.openai.com", "/oauth/token");
    assert_eq!(refreshes.len(), 1, "{:?}", fake.log());
    assert_eq!(refreshes[0]["body"]["refresh_token"], CODEX_REFRESH);
    assert_eq!(refreshes[0]["body"]["grant_type"], "refresh_token");
    let minted = refreshes[0]["minted"].as_str().unwrap().to_string();
    let chatgpt = seen(&fake, "chatgpt.com", "/backend-api/");
    assert!(
        !chatgpt.is_empty(),
        "codex never reached chatgpt.com: {:?}",
        fake.log()
    );
    assert!(
        chatgpt
            .iter()
            .all(|e| e["authorization"] == format!("Bearer {minted}")
                && e["chatgpt-account-id"] == "acc-123"),
        "{chatgpt:?}"
    );
    let view = sandbox_view(&env, &ws, "codex");
    assert!(
        view.contains("\"refresh_token\"") && view.contains("acc-123"),
        "{view}"
    );
    assert_no_secret(
        "the sandbox",
        &view,
        &[&codex_access, &codex_id, CODEX_REFRESH, &minted],
    );
    drop(fake);
}

#[test]
fn gemini_turns_with_a_key_and_with_a_google_login_that_paddock_refreshes() {
    let env = agent_env();
    let fake = fake(&env, &[GOOGLE_ACCESS]);
    let ws = workspace(&env);

    grant_from_env(&env, &ws, "gemini", "GEMINI_API_KEY", GEMINI_KEY);
    let (ok, out, err) = paddock(
        &env,
        &ws,
        &["gemini", "-m", "gemini-2.5-flash", "-p", "say hi"],
    );
    assert!(ok && out.contains(REPLY), "stdout: {out}\nstderr: {err}");
    let turns = seen(
        &fake,
        "generativelanguage.googleapis.com",
        "/v1beta/models/",
    );
    assert!(!turns.is_empty(), "{:?}", fake.log());
    assert!(turns.iter().all(|e| e["x-goog-api-key"] == GEMINI_KEY));
    paddock(&env, &ws, &["grant", "revoke", "gemini"]);

    fake.clear_log();
    import_login(
        &env,
        &ws,
        "gemini",
        &serde_json::json!({"access_token": GOOGLE_ACCESS, "refresh_token": GOOGLE_REFRESH,
            "scope": "https://www.googleapis.com/auth/cloud-platform openid", "token_type": "Bearer",
            "expiry_date": (now() - 60) * 1000}),
    );
    let (ok, out, err) = paddock(
        &env,
        &ws,
        &["gemini", "-m", "gemini-2.5-flash", "-p", "say hi"],
    );
    assert!(ok && out.contains(REPLY), "stdout: {out}\nstderr: {err}");
    let refreshes = seen(&fake, "oauth2.googleapis.com", "/token");
    assert_eq!(refreshes.len(), 1, "{:?}", fake.log());
    assert_eq!(refreshes[0]["body"]["refresh_token"], GOOGLE_REFRESH);
    assert!(refreshes[0]["body"]["client_secret"].is_string());
    let minted = refreshes[0]["minted"].as_str().unwrap().to_string();
    let turns = seen(
        &fake,
        "cloudcode-pa.googleapis.com",
        "/v1internal:streamGenerateContent",
    );
    assert!(!turns.is_empty());
    assert!(
        turns
            .iter()
            .all(|e| e["authorization"] == format!("Bearer {minted}"))
    );
    // The CLI's tokeninfo check about its placeholder is answered by paddock.
    assert!(seen(&fake, "oauth2.googleapis.com", "/tokeninfo").is_empty());
    let view = sandbox_view(&env, &ws, "gemini");
    assert!(
        view.contains("ya29.") && view.contains("refresh_token"),
        "{view}"
    );
    assert_no_secret(
        "the sandbox",
        &view,
        &[GOOGLE_ACCESS, GOOGLE_REFRESH, &minted, GEMINI_KEY],
    );
    drop(fake);
}

#[test]
fn interactive_claude_reaches_its_prompt_and_remembers_the_trust_answer() {
    let env = agent_env();
    let _fake = fake(&env, &[]);
    let ws = workspace(&env);
    import_login(
        &env,
        &ws,
        "claude",
        &serde_json::json!({"claudeAiOauth": {"accessToken": CLAUDE_ACCESS, "refreshToken": CLAUDE_REFRESH,
            "expiresAt": (now() + 3600) * 1000, "scopes": ["user:inference"], "subscriptionType": "max"}}),
    );
    let expect = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/expect.py");
    let prompt = r"ClaudeCodev[\s\S]*(forshortcuts|shift\+tab)";
    let run = |steps: serde_json::Value| {
        let mut c = Command::new("/usr/bin/python3");
        c.arg(&expect)
            .arg(steps.to_string())
            .arg(common::exe())
            .arg("claude");
        c.current_dir(&ws).env("EXPECT_TIMEOUT", "60");
        c.env("PADDOCK_HOME", &env.home)
            .env("XDG_CONFIG_HOME", &env.config);
        for (k, v) in &env.extra_env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // First start: the workspace trust question (answered "yes"), then the prompt.
    let out = run(serde_json::json!([
        ["trustthisfolder", "\u{1b}[B"],
        ["❯Yes,Itrust", "\r"],
        [prompt, ""]
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Second start in the same workspace: the answer was kept; straight to the prompt.
    let out = run(serde_json::json!([[prompt, ""]]));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(!screen.contains("trustthisfolder"), "{screen}");
}

#[test]
fn agents_ls_shows_where_each_cli_comes_from() {
    let env = agent_env();
    let ws = workspace(&env);
    let (ok, out, err) = paddock(&env, &ws, &["agents", "ls", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["claude", "codex", "gemini"]);
    // Bad input: an unknown agent is a usage error with the known ones in the hint.
    let (ok, _, err) = paddock(&env, &ws, &["run", "--agent", "nope", "--", "true"]);
    assert!(
        !ok && err.contains("no agent named `nope`") && err.contains("claude"),
        "{err}"
    );
}

#[test]
fn two_claudes_work_at_once_on_their_own_worktrees() {
    let env = agent_env();
    let fake = fake(&env, &[]);
    let ws = workspace(&env);
    let git = |args: &[&str]| {
        sh(Command::new("git")
            .current_dir(&ws)
            .args(["-c", "user.email=dev@example.com", "-c", "user.name=dev"])
            .args(args))
    };
    git(&["commit", "-q", "--allow-empty", "-m", "init"]);
    grant_from_env(&env, &ws, "anthropic", "ANTHROPIC_API_KEY", ANTHROPIC_KEY);
    let turns: Vec<Child> = ["fix-a", "fix-b"]
        .iter()
        .map(|b| {
            env.cmd()
                .current_dir(&ws)
                .args(["claude", "--wt", b, "-p", "say hi"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for t in turns {
        let out = t.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains(REPLY),
            "stdout: {stdout}\nstderr: {stderr}"
        );
    }
    assert!(seen(&fake, "api.anthropic.com", "/v1/messages").len() >= 2);
    // ps: agent, branch and state of each.
    let (ok, out, err) = paddock(&env, &ws, &["ps", "-a"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("AGENT") && header.contains("BRANCH") && header.contains("STATE"),
        "{out}"
    );
    for b in ["fix-a", "fix-b"] {
        let line = out.lines().find(|l| l.contains(b)).unwrap_or_default();
        assert!(line.contains("claude") && line.contains("stopped"), "{out}");
    }
    // The worktrees' branches exist in the repository; its own checkout is untouched.
    for b in ["fix-a", "fix-b"] {
        git(&["rev-parse", "--verify", "-q", &format!("refs/heads/{b}")]);
    }
}
