//! `paddock grant …`: add a credential (github, anthropic, openai, gemini, http), import
//! an agent CLI's login (claude, codex, gemini `--from-login`), list, show and revoke
//! grants.
//!
//! Owns: choosing where the value comes from (`--from-env VAR`, `--stdin`, else the kind's
//! default: `gh auth token` for GitHub, the kind's variable when set), reading it on the
//! user's side (paddock-secrets' [`ValueSource`]; a terminal is read without echo), checking
//! names and `http` flags before reading anything, and sending the value to the daemon in
//! a request body.
//! Never: takes a value from argv (extra arguments are refused without being echoed);
//! prints a value (only the daemon's masked preview); lets a daemon it starts inherit the
//! variable the value came from.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use paddock_api::{Client, GrantInfo, PutGrant};
use paddock_daemon::Home;
use paddock_secrets::{GrantKind, HttpSpec, LoginRow, SecretValue, SecretsError, ValueSource};
use zeroize::Zeroize;

use crate::cli::{
    BuiltinGrantArgs, GrantAction, GrantArgs, GrantNameArgs, HttpGrantArgs, JsonFlag,
    LoginGrantArgs, SubstitutePlace, ValueSourceArgs,
};
use crate::ensure::ensure_running_without;
use crate::ui::{Hinted, age, paint, print_json, stdout_color, table, usage};

pub async fn dispatch(home: &Home, args: GrantArgs) -> Result<i32> {
    match args.action {
        GrantAction::Github(a) => add_builtin(home, GrantKind::Github, a).await,
        GrantAction::Anthropic(a) => add_builtin(home, GrantKind::Anthropic, a).await,
        GrantAction::Openai(a) => add_builtin(home, GrantKind::Openai, a).await,
        GrantAction::Gemini(a) => match a.from_login {
            Some(file) => {
                let login = LoginGrantArgs {
                    from_login: Some(file),
                    name: a.key.name,
                    json: a.key.json,
                    refused: a.key.refused,
                };
                add_login(home, "gemini", login).await
            }
            None => add_builtin(home, GrantKind::Gemini, a.key).await,
        },
        GrantAction::Claude(a) => add_login(home, "claude", a).await,
        GrantAction::Codex(a) => add_login(home, "codex", a).await,
        GrantAction::Http(a) => add_http(home, a).await,
        GrantAction::List(j) => list(home, j).await,
        GrantAction::Show(a) => show(home, a).await,
        GrantAction::Revoke(a) => revoke(home, a).await,
    }
}

/// Whether `s` looks like a credential rather than a name: a known issuer prefix, or a
/// long run of mixed letters and digits.
pub fn looks_like_secret(s: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "sk-",
        "xox",
        "glpat-",
        "AKIA",
        "eyJ",
        "Bearer ",
        "Basic ",
    ];
    if s.len() >= 12 && PREFIXES.iter().any(|p| s.starts_with(p)) {
        return true;
    }
    let digits = s.bytes().any(|b| b.is_ascii_digit());
    let upper = s.bytes().any(|b| b.is_ascii_uppercase());
    let lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let separators = s
        .bytes()
        .filter(|b| matches!(b, b'-' | b'_' | b'.'))
        .count();
    s.len() >= 20 && digits && ((upper && lower) || separators == 0 || s.len() >= 40)
}

/// Refuses anything left on the command line, without echoing it.
fn refuse_extra(refused: &[String], example: &str) -> Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    if refused.iter().any(|a| looks_like_secret(a)) {
        return Err(usage(
            "refusing a credential on the command line: it was neither stored nor sent, but `ps` \
             and your shell history may have seen it (consider rotating it)",
            format!("pass the value with --from-env VAR or --stdin, e.g. {example}"),
        ));
    }
    Err(usage(
        format!(
            "unexpected argument{} (not shown: values are never taken from the command line)",
            if refused.len() > 1 { "s" } else { "" }
        ),
        format!(
            "see `paddock grant --help`; a value goes through --from-env VAR or --stdin, e.g. {example}"
        ),
    ))
}

/// Checks a grant name on this side, so a mistyped token is refused before it is echoed
/// or sent anywhere.
fn check_name(name: &str) -> Result<()> {
    if looks_like_secret(name) {
        return Err(usage(
            "refusing a grant name that looks like a credential (not shown)",
            "names are short labels such as `github` or `internal-api`; the value goes through --from-env VAR or --stdin",
        ));
    }
    paddock_secrets::validate_name(name)
        .map_err(|e| usage(e.to_string(), e.hint().unwrap_or_default()))
}

fn secrets_error(e: SecretsError) -> anyhow::Error {
    let hint = e.hint().unwrap_or_default();
    anyhow!(Hinted::new(e.to_string(), hint))
}

/// Where the value comes from, and a note for the user when it was not asked for.
fn choose_source(kind: GrantKind, src: &ValueSourceArgs) -> Result<(ValueSource, Option<String>)> {
    if let Some(var) = &src.from_env {
        if looks_like_secret(var) {
            return Err(usage(
                "--from-env takes the NAME of an environment variable, and this looks like a credential (not shown)",
                "e.g. `export GH_TOKEN=…` in your shell, then `--from-env GH_TOKEN`; consider rotating the credential",
            ));
        }
        let valid = !var.is_empty()
            && !var.as_bytes()[0].is_ascii_digit()
            && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(usage(
                format!("invalid environment variable name `{var}` for --from-env"),
                "use letters, digits and '_', not starting with a digit, e.g. --from-env GH_TOKEN",
            ));
        }
        return Ok((ValueSource::Env(var.clone()), None));
    }
    if src.stdin {
        return Ok((ValueSource::Stdin, None));
    }
    match ValueSource::default_for(kind) {
        ValueSource::Stdin => {
            let row = kind.row();
            let example = match row.env.first() {
                Some(var) => format!(
                    "`paddock grant {} --from-env {var}`, or `… | paddock grant {} --stdin`",
                    row.name, row.name
                ),
                None => {
                    "`--from-env MY_TOKEN`, or `printenv MY_TOKEN | paddock grant http … --stdin`"
                        .to_string()
                }
            };
            let unset = match row.env {
                [] => String::new(),
                vars => format!(" (and {} is not set)", vars.join(", ")),
            };
            Err(usage(
                format!(
                    "where should the {} value come from? No source was given{unset}",
                    row.name
                ),
                format!("name one: {example}"),
            ))
        }
        ValueSource::Env(var) => {
            let note =
                format!("reading the value from ${var} (use --from-env or --stdin to choose)");
            Ok((ValueSource::Env(var), Some(note)))
        }
        cmd @ ValueSource::Command { .. } => {
            let ValueSource::Command { program, args } = &cmd else {
                unreachable!()
            };
            let note = format!("reading the value from `{program} {}`", args.join(" "));
            Ok((cmd, Some(note)))
        }
    }
}

/// Reads the value; a terminal on stdin is read without echo.
fn read_value(source: &ValueSource) -> Result<SecretValue> {
    if *source == ValueSource::Stdin && std::io::stdin().is_terminal() {
        return read_hidden_line();
    }
    source.read().map_err(secrets_error)
}

fn read_hidden_line() -> Result<SecretValue> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("value (not echoed), then Enter: ");
    let saved = tcgetattr(&stdin).map_err(|e| anyhow!("reading the terminal settings: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
        .map_err(|e| anyhow!("turning off the terminal echo: {e}"))?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    let value = read
        .map_err(|source| secrets_error(SecretsError::Read { source }))
        .and_then(|_| paddock_secrets::source::from_reader(line.as_bytes()).map_err(secrets_error));
    line.zeroize();
    value
}

async fn client(home: &Home, scrub: &[&str]) -> Result<Client> {
    let client = ensure_running_without(home, scrub).await?;
    crate::ensure::require(client, "grants", "does not manage grants").await
}

async fn add_builtin(home: &Home, kind: GrantKind, a: BuiltinGrantArgs) -> Result<i32> {
    let row = kind.row();
    let example = match row.env.first() {
        Some(var) => format!("`paddock grant {} --from-env {var}`", row.name),
        None => format!("`paddock grant {} --stdin`", row.name),
    };
    refuse_extra(&a.refused, &example)?;
    let name = a.name.clone().unwrap_or_else(|| row.name.to_string());
    check_name(&name)?;
    let req = PutGrant {
        kind: row.name.to_string(),
        ..PutGrant::default()
    };
    put(home, &name, req, kind, &a.source, a.json.json).await
}

/// Where `cli` keeps its login on this machine (its own config-dir variable first).
fn login_file(row: &LoginRow) -> Option<PathBuf> {
    let var = match row.cli {
        "claude" => Some(("CLAUDE_CONFIG_DIR", ".credentials.json")),
        "codex" => Some(("CODEX_HOME", "auth.json")),
        _ => None,
    };
    if let Some((var, file)) = var
        && let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty())
    {
        return Some(PathBuf::from(dir).join(file));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(row.file))
}

/// `paddock grant claude|codex|gemini --from-login [FILE]`: read the CLI's login file
/// here, check its shape, and hand it to the daemon, which keeps it encrypted.
async fn add_login(home: &Home, cli: &str, a: LoginGrantArgs) -> Result<i32> {
    let row = LoginRow::for_cli(cli).ok_or_else(|| anyhow!("no login kind for {cli}"))?;
    refuse_extra(&a.refused, &format!("`paddock grant {cli} --from-login`"))?;
    let Some(file) = a.from_login else {
        return Err(usage(
            format!("`paddock grant {cli}` imports a login: add --from-login"),
            match cli {
                "claude" => {
                    "`paddock grant claude --from-login` imports your Claude Code login; for an API key use `paddock grant anthropic`"
                }
                _ => {
                    "`paddock grant codex --from-login` imports your Codex (ChatGPT) login; for an API key use `paddock grant openai`"
                }
            },
        ));
    };
    let name = a.name.unwrap_or_else(|| row.kind.name().to_string());
    check_name(&name)?;
    let path = if file.as_os_str().is_empty() {
        login_file(row).ok_or_else(|| {
            usage(
                "HOME is not set, so the login file cannot be found",
                format!("name the file: paddock grant {cli} --from-login FILE"),
            )
        })?
    } else {
        file
    };
    let bytes = read_login_file(&path, cli)?;
    let login = paddock_secrets::Login::import(row, &bytes).map_err(|e| {
        anyhow!(Hinted::new(
            format!("{}: {e}", path.display()),
            e.hint().unwrap_or_default(),
        ))
    })?;
    let expires = login.expires_at_ms;
    drop(login);
    let mut value =
        String::from_utf8(bytes).map_err(|_| anyhow!("{}: not UTF-8", path.display()))?;
    let client = client(home, &[]).await?;
    let req = PutGrant {
        kind: row.kind.name().to_string(),
        value: std::mem::take(&mut value),
        ..PutGrant::default()
    };
    let mut req = req;
    let sent = client.put_grant(&name, &req).await;
    req.value.zeroize();
    let out = sent?;
    if a.json.json {
        print_json(&out)?;
        return Ok(0);
    }
    let g = &out.grant;
    let color = stdout_color();
    outln!(
        "{} grant {} ({}): the {cli} login from {}, access token {}",
        if out.replaced { "updated" } else { "imported" },
        paint(color, "1", &g.name),
        g.kind,
        path.display(),
        g.preview
    );
    if let Some(at) = expires {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if at <= now {
            outln!("  the access token has expired: the daemon refreshes it before the next run");
        } else {
            let mins = (at - now) / 60_000;
            outln!(
                "  access token valid for {}h {:02}m; the daemon refreshes it before it expires",
                mins / 60,
                mins % 60
            );
        }
    }
    print_rules(g, "  ");
    outln!(
        "  the sandbox gets ~/{} with placeholders; the real tokens stay in the daemon",
        row.file
    );
    outln!(
        "  note: a refresh by paddock may rotate the refresh token; if `{cli}` on the host is logged out later, log in again there and re-import"
    );
    outln!("use it: paddock {cli} (it picks this login up by itself)");
    Ok(0)
}

/// A login file: a regular file of at most 64 KiB.
fn read_login_file(path: &Path, cli: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| {
        anyhow!(Hinted::new(
            format!("cannot read {}: {e}", path.display()),
            format!(
                "log in with `{cli}` on this machine first, or name the file: --from-login FILE"
            ),
        ))
    })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(usage(
            format!("{} is not a file", path.display()),
            "name the login file",
        ));
    }
    let mut bytes = Vec::new();
    f.take(64 * 1024 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > 64 * 1024 {
        return Err(usage(
            format!("{} is larger than 64 KiB: not a login file", path.display()),
            "name the login file",
        ));
    }
    Ok(bytes)
}

async fn add_http(home: &Home, a: HttpGrantArgs) -> Result<i32> {
    refuse_extra(
        &a.refused,
        "`paddock grant http NAME … --from-env MY_TOKEN`",
    )?;
    check_name(&a.name)?;
    // Check the flags here, before any value is read.
    let hosts: Vec<&str> = a.hosts.iter().map(String::as_str).collect();
    let env: Vec<&str> = a.env.iter().map(String::as_str).collect();
    HttpSpec::new(&hosts, &a.header, Some(&a.format))
        .and_then(|s| s.with_env(&env))
        .map_err(|e| usage(e.to_string(), e.hint().unwrap_or_default()))?;
    let req = PutGrant {
        kind: "http".into(),
        hosts: a.hosts.clone(),
        header: Some(a.header.clone()),
        format: Some(a.format.clone()),
        env: a.env.clone(),
        substitute: dedup_places(&a.substitute),
        ..PutGrant::default()
    };
    put(home, &a.name, req, GrantKind::Http, &a.source, a.json.json).await
}

/// `--substitute` as the API's names, each once, in the order given.
fn dedup_places(places: &[SubstitutePlace]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in places {
        if !out.iter().any(|o| o == p.as_str()) {
            out.push(p.as_str().to_string());
        }
    }
    out
}

async fn put(
    home: &Home,
    name: &str,
    mut req: PutGrant,
    kind: GrantKind,
    src: &ValueSourceArgs,
    json: bool,
) -> Result<i32> {
    let (source, note) = choose_source(kind, src)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    // Read before talking to the daemon: a missing source fails fast, starting nothing.
    let reader = source.clone();
    let value = tokio::task::spawn_blocking(move || read_value(&reader)).await??;
    let scrub: Vec<&str> = match &source {
        ValueSource::Env(var) => vec![var.as_str()],
        _ => Vec::new(),
    };
    let client = client(home, &scrub).await?;
    req.value = value.expose().to_string();
    drop(value);
    let sent = client.put_grant(name, &req).await;
    req.value.zeroize();
    let out = sent?;
    if req.substitute != out.grant.substitute {
        return Err(anyhow!(Hinted::new(
            "the grant was stored, but without --substitute: the running daemon predates it",
            "run `paddock daemon restart` (to use this paddock's daemon), then add the grant again",
        )));
    }
    if json {
        print_json(&out)?;
        return Ok(0);
    }
    let g = &out.grant;
    let color = stdout_color();
    outln!(
        "{} grant {} ({}), value {}",
        if out.replaced { "updated" } else { "added" },
        paint(color, "1", &g.name),
        g.kind,
        g.preview
    );
    print_rules(g, "  ");
    if !g.substitute.is_empty() {
        outln!(
            "  placeholder also replaced in: {}",
            g.substitute.join(", ")
        );
    }
    if !g.env.is_empty() {
        outln!("  placeholder in the sandbox: {}", g.env.join(", "));
    }
    outln!("use it in a run: paddock run -g {} -- …", g.name);
    Ok(0)
}

fn print_rules(g: &GrantInfo, indent: &str) {
    let rows: Vec<Vec<String>> = g
        .rules
        .iter()
        .map(|r| {
            vec![
                format!("{indent}{}", r.host),
                format!("{}: {}", r.header, r.format),
            ]
        })
        .collect();
    let text = table(&["", ""], &rows);
    // Skip the (empty) header line.
    for line in text.lines().skip(1) {
        outln!("{line}");
    }
}

async fn list(home: &Home, j: JsonFlag) -> Result<i32> {
    let client = client(home, &[]).await?;
    let list = client.list_grants().await?;
    if j.json {
        print_json(&list)?;
        return Ok(0);
    }
    if list.grants.is_empty() {
        eprintln!(
            "no grants yet (add one with `paddock grant github`; see `paddock grant --help`)"
        );
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .grants
        .iter()
        .map(|g| {
            let mut hosts: Vec<&str> = g.rules.iter().map(|r| r.host.as_str()).collect();
            hosts.dedup();
            vec![
                g.name.clone(),
                g.kind.clone(),
                g.preview.clone(),
                age(&g.updated_at),
                hosts.join(", "),
            ]
        })
        .collect();
    out!(
        "{}",
        table(&["NAME", "KIND", "VALUE", "UPDATED", "HOSTS"], &rows)
    );
    Ok(0)
}

async fn show(home: &Home, a: GrantNameArgs) -> Result<i32> {
    refuse_extra(&a.refused, "`paddock grant show NAME`")?;
    check_name(&a.name)?;
    let client = client(home, &[]).await?;
    let g = client.get_grant(&a.name).await?;
    if a.json.json {
        print_json(&g)?;
        return Ok(0);
    }
    let color = stdout_color();
    let kv = |k: &str, v: String| outln!("{:<10}{v}", paint(color, "1", &format!("{k}:")));
    kv("name", g.name.clone());
    kv("kind", g.kind.clone());
    kv("value", format!("{} (masked)", g.preview));
    kv("created", g.created_at.clone());
    kv("updated", g.updated_at.clone());
    if !g.env.is_empty() {
        kv(
            "sandbox",
            format!("{} hold a placeholder, never the value", g.env.join(", ")),
        );
    }
    outln!("{}", paint(color, "1", "injected:"));
    print_rules(&g, "  ");
    if !g.substitute.is_empty() {
        kv(
            "replaced",
            format!(
                "the placeholder also in: {} (on these hosts only)",
                g.substitute.join(", ")
            ),
        );
    }
    Ok(0)
}

async fn revoke(home: &Home, a: GrantNameArgs) -> Result<i32> {
    refuse_extra(&a.refused, "`paddock grant revoke NAME`")?;
    check_name(&a.name)?;
    let client = client(home, &[]).await?;
    let r = client.revoke_grant(&a.name).await?;
    if a.json.json {
        print_json(&r)?;
        return Ok(0);
    }
    outln!("revoked grant {}", r.name);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_names_are_told_apart() {
        for s in [
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijkl",
            "sk-ant-api03-abcdefghijklmnop",
            "sk-proj-abcdefghij",
            "0123456789abcdef0123456789abcdef01234567",
            "AbCdEf0123456789xYz0",
            "ghp_lowercase123",
        ] {
            assert!(looks_like_secret(s), "{s}");
        }
        for s in [
            "github",
            "anthropic",
            "internal-api",
            "work_openai_2024",
            "my-very-long-grant-name-2024",
            "sk-prod",
        ] {
            assert!(!looks_like_secret(s), "{s}");
        }
    }
}
