//! Agent presets on the CLI's side: `paddock claude|codex|gemini [ARGS]` (= `paddock run
//! --agent NAME -- <preset command> ARGS`), what `--agent` adds to a run's request, the
//! tool layer that provides an agent CLI missing from the host, and `paddock agents
//! ls|update|rm`.
//!
//! The tool layer: `$XDG_CACHE_HOME/paddock/tools/<key>/` (else `~/.cache/…`), one
//! directory per npm package and version (the key is a hash of `name@version` and Node's
//! major version), installed by the host's npm on first use, shared by every run and
//! mounted read-only at the same path. `selected.json` there records the version `paddock
//! agents update` chose per agent.
//!
//! Owns: splitting paddock's options from the agent's arguments (paddock's come first and
//! are long options; the first other argument, or `--`, starts the agent's, which pass
//! through untouched), finding the agent's CLI (host PATH, else the tool layer), choosing
//! its login (the first grant of the preset's `login:` that exists).
//! Never: reads or copies a credential (logins are the daemon's); writes outside the tool
//! cache.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::{Args, FromArgMatches};
use paddock_api::{AgentSetup, CreateRun, Mount};
use paddock_config::{Agent, NpmPackage};
use paddock_daemon::Home;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::cli::{AgentsAction, AgentsArgs, RunArgs};
use crate::ui::{Hinted, print_json, table, usage};

/// Host directories every sandbox sees (read-only); a CLI under them needs no mount.
const VISIBLE: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// `paddock <agent> ARGS`: paddock's long options first, then the agent's arguments.
pub async fn preset(home: &Home, agent: &str, raw: Vec<String>) -> Result<i32> {
    let (ours, theirs) = split_args(&raw);
    let mut argv = vec![format!("paddock {agent}")];
    argv.extend(ours);
    let cmd = RunArgs::augment_args(clap::Command::new("paddock-agent"));
    let matches = cmd.try_get_matches_from(&argv).map_err(|e| {
        usage(
            format!("paddock {agent}: {}", e.kind()),
            format!(
                "paddock's options come first and are long ones (e.g. `paddock {agent} --wt fix-bug -- …`); everything from the first other argument on goes to {agent}"
            ),
        )
    })?;
    let mut args = RunArgs::from_arg_matches(&matches).map_err(|e| anyhow!("{e}"))?;
    if !args.command.is_empty() {
        return Err(usage(
            "unexpected command after the agent's options",
            format!(
                "`paddock {agent} ARGS` runs {agent} with ARGS; for another command use `paddock run --agent {agent} -- CMD`"
            ),
        ));
    }
    args.agent = Some(agent.to_string());
    args.agent_args = theirs;
    if !args.detach {
        // An agent is a conversation: the terminal, when there is one, is the agent's.
        let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        args.tty = args.tty || terminal;
        args.interactive = true;
    }
    crate::run::run(home, args).await
}

/// Split `raw` into paddock's options (a leading run of `RunArgs`' long options with
/// their values) and the agent's arguments (the rest; a `--` between them is dropped).
pub fn split_args(raw: &[String]) -> (Vec<String>, Vec<String>) {
    let cmd = RunArgs::augment_args(clap::Command::new("x"));
    let takes_value = |long: &str| -> Option<bool> {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .map(|a| a.get_action().takes_values())
    };
    let mut i = 0;
    while i < raw.len() {
        let a = &raw[i];
        if a == "--" {
            return (raw[..i].to_vec(), raw[i + 1..].to_vec());
        }
        let Some(long) = a.strip_prefix("--") else {
            break;
        };
        let (name, inline) = match long.split_once('=') {
            Some((n, _)) => (n, true),
            None => (long, false),
        };
        // Options of `run` that make no sense here stay the agent's.
        if matches!(name, "agent" | "help") {
            break;
        }
        match takes_value(name) {
            Some(true) if !inline => i += 2,
            Some(_) => i += 1,
            None => break,
        }
    }
    let i = i.min(raw.len());
    (raw[..i].to_vec(), raw[i..].to_vec())
}

/// What `--agent NAME` adds to a run's request: the command (the preset's, found on the
/// host or in the tool layer, unless the user gave one), environment, mounts, the
/// preset's network, its login, and its state directories.
pub async fn setup(home: &Home, args: &RunArgs, req: &mut CreateRun) -> Result<()> {
    let Some(name) = &args.agent else {
        return Ok(());
    };
    let loaded = paddock_config::load(&req.workspace)?;
    let agent = paddock_config::resolve_agent(name, &loaded.config)
        .map_err(|e| usage(e.message, e.hint))?;

    let mut env: BTreeMap<String, String> = agent.env.clone();
    let mut path_prefix: Vec<PathBuf> = Vec::new();
    let mut mounts: Vec<Mount> = Vec::new();
    let program = &agent.command[0];
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        on_path(program)
    };
    let resolved = match found {
        Some(p) => {
            if !is_visible(&p) {
                let real = std::fs::canonicalize(&p).unwrap_or(p.clone());
                let root = package_root(&real).unwrap_or_else(|| {
                    real.parent().map(Path::to_path_buf).unwrap_or(real.clone())
                });
                mounts.push(ro(&root));
                real
            } else {
                p
            }
        }
        None => {
            let Some(pkg) = chosen_package(&agent)? else {
                return Err(anyhow!(Hinted::new(
                    format!(
                        "`{program}` is not on your PATH and agent `{name}` names no npm package"
                    ),
                    format!(
                        "install {program}, or set `agents.{name}.package` and `version` in paddock.yaml"
                    ),
                )));
            };
            let layer = Tools::open()?.ensure(&pkg, args.quiet).await?;
            mounts.push(ro(&layer.dir));
            let bin = layer.dir.join("node_modules/.bin");
            path_prefix.push(bin.clone());
            bin.join(program)
        }
    };
    // The CLI's interpreter: node from the host; mounted when it lives outside what every
    // sandbox sees (nvm, a home-directory prefix).
    if let Some(node) = on_path("node")
        && !is_visible(&node)
    {
        let real = std::fs::canonicalize(&node).unwrap_or(node);
        if let Some(prefix) = real.parent().and_then(Path::parent) {
            mounts.push(ro(prefix));
            path_prefix.push(prefix.join("bin"));
        }
    }
    if !path_prefix.is_empty() {
        let base = req.env.get("PATH").cloned().unwrap_or_else(|| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        let mut parts: Vec<String> = path_prefix
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        parts.push(base);
        env.insert("PATH".into(), parts.join(":"));
    }

    if args.command.is_empty() {
        let mut command = agent.command.clone();
        command[0] = resolved.to_string_lossy().into_owned();
        command.extend(args.agent_args.iter().cloned());
        req.command = command;
    }
    // The preset's environment under the user's own (-e and `env:` win).
    for (k, v) in env {
        if k == "PATH" || !req.env.contains_key(&k) {
            req.env.insert(k, v);
        }
    }
    for m in mounts {
        if !req.mounts.iter().any(|o| o.target == m.target) {
            req.mounts.push(m);
        }
    }
    req.network = serde_json::to_value(agent.network(&loaded.config.network))?;

    // The login: the first of the preset's grants that exists (unless one was asked for).
    if !agent.login.iter().any(|g| req.grants.contains(g)) {
        let client = crate::ensure::ensure_running(home).await?;
        let existing: Vec<String> = client
            .list_grants()
            .await?
            .grants
            .into_iter()
            .map(|g| g.name)
            .collect();
        match agent.login.iter().find(|g| existing.contains(g)) {
            Some(g) => req.grants.push(g.clone()),
            None if !args.quiet && !agent.login.is_empty() => {
                eprintln!(
                    "paddock: no login for {name}: {} (the agent will ask you to log in, and that login stays in its sandbox state)",
                    login_hint(&agent)
                );
            }
            None => {}
        }
    }
    // The login in use may select a mode of the CLI (its OAuth rather than a key).
    if let Some(g) = agent.login.iter().find(|g| req.grants.contains(g)) {
        for (k, v) in agent.login_env.get(g).into_iter().flatten() {
            req.env.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    req.agent = Some(AgentSetup {
        name: name.clone(),
        state: agent.state.clone(),
        seed: agent.seed.clone(),
    });
    Ok(())
}

/// How to give `agent` a login, by its preset's `login:` grants.
fn login_hint(agent: &Agent) -> String {
    let ways: Vec<String> = agent
        .login
        .iter()
        .map(|g| match g.as_str() {
            "claude" => "`paddock grant claude --from-login` (your Claude Code login)".to_string(),
            "codex" => "`paddock grant codex --from-login` (your ChatGPT login)".to_string(),
            "gemini-login" => "`paddock grant gemini --from-login` (your Google login)".to_string(),
            "anthropic" | "openai" | "gemini" => format!("`paddock grant {g}` (an API key)"),
            other => format!("a grant named `{other}`"),
        })
        .collect();
    ways.join(" or ")
}

fn ro(p: &Path) -> Mount {
    Mount {
        source: p.to_path_buf(),
        target: p.to_path_buf(),
        read_only: true,
    }
}

fn is_visible(p: &Path) -> bool {
    let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    VISIBLE.iter().any(|d| p.starts_with(d)) && VISIBLE.iter().any(|d| real.starts_with(d))
}

/// `name` on the host's PATH: the first executable file.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The npm package directory a file belongs to (nearest `package.json` above it).
fn package_root(file: &Path) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut dir = file.parent()?;
    loop {
        if dir.join("package.json").is_file() {
            return Some(dir.to_path_buf());
        }
        if Some(dir) == home.as_deref() {
            return None;
        }
        dir = dir.parent()?;
    }
}

/// The package version a run of `agent` uses: one set in config over the built-in pin,
/// else the one `paddock agents update` chose, else the pin.
fn chosen_package(agent: &Agent) -> Result<Option<NpmPackage>> {
    let Some(pkg) = agent.package.clone() else {
        return Ok(None);
    };
    let pinned = paddock_config::builtin_agent(&agent.name).and_then(|b| b.version.clone());
    if pinned.as_deref() != Some(pkg.version.as_str()) {
        return Ok(Some(pkg));
    }
    let selected = Tools::open()?.selected();
    Ok(Some(match selected.get(&agent.name) {
        Some(v) => NpmPackage {
            name: pkg.name,
            version: v.clone(),
        },
        None => pkg,
    }))
}

/// The tool cache.
pub struct Tools {
    root: PathBuf,
}

/// One installed package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolLayer {
    pub dir: PathBuf,
    pub package: String,
    pub version: String,
    pub node: String,
    /// RFC 3339.
    pub installed_at: String,
    #[serde(default)]
    pub bytes: u64,
}

const META: &str = "paddock-tool.json";

impl Tools {
    pub fn open() -> Result<Tools> {
        let base = match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
            Some(x) if x.is_absolute() => x,
            _ => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache"))
                .ok_or_else(|| {
                    usage(
                        "neither XDG_CACHE_HOME nor HOME is set: no place for the tool cache",
                        "set HOME",
                    )
                })?,
        };
        Ok(Tools {
            root: base.join("paddock").join("tools"),
        })
    }

    fn selected_path(&self) -> PathBuf {
        self.root.join("selected.json")
    }

    pub fn selected(&self) -> BTreeMap<String, String> {
        std::fs::read(self.selected_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn select(&self, agent: &str, version: &str) -> Result<()> {
        let mut s = self.selected();
        s.insert(agent.to_string(), version.to_string());
        let tmp = self.root.join(".selected.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&s)?)?;
        std::fs::rename(&tmp, self.selected_path())?;
        Ok(())
    }

    fn key(pkg: &NpmPackage, node: &str) -> String {
        let d = sha2::Sha256::digest(format!("npm\n{}\nnode {node}", pkg.spec()).as_bytes());
        hex::encode(&d[..10])
    }

    /// Every installed layer.
    pub fn list(&self) -> Vec<ToolLayer> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<ToolLayer> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let b = std::fs::read(e.path().join(META)).ok()?;
                let mut l: ToolLayer = serde_json::from_slice(&b).ok()?;
                l.dir = e.path();
                Some(l)
            })
            .collect();
        out.sort_by(|a, b| (&a.package, &a.version).cmp(&(&b.package, &b.version)));
        out
    }

    /// The layer of `pkg`, installed now (with progress) when it is missing.
    pub async fn ensure(&self, pkg: &NpmPackage, quiet: bool) -> Result<ToolLayer> {
        let node = node_major()?;
        let dir = self.root.join(Self::key(pkg, &node));
        if let Ok(b) = std::fs::read(dir.join(META))
            && let Ok(mut l) = serde_json::from_slice::<ToolLayer>(&b)
        {
            l.dir = dir;
            return Ok(l);
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating the tool cache {}", self.root.display()))?;
        // One install at a time (another paddock may be installing the same package).
        let lock = std::fs::File::create(self.root.join(".lock"))?;
        let lock = tokio::task::spawn_blocking(move || {
            nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| anyhow!("locking the tool cache: {e}"))
        })
        .await??;
        if let Ok(b) = std::fs::read(dir.join(META))
            && let Ok(mut l) = serde_json::from_slice::<ToolLayer>(&b)
        {
            l.dir = dir;
            return Ok(l);
        }
        let tmp = self.root.join(format!(".tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let started = Instant::now();
        let progress = Progress::start(
            quiet,
            format!(
                "installing {} from npm (first use; cached for later runs)",
                pkg.spec()
            ),
        );
        let result = npm_install(&tmp, pkg).await;
        progress.finish();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let layer = ToolLayer {
            dir: dir.clone(),
            package: pkg.name.clone(),
            version: pkg.version.clone(),
            node,
            installed_at: now_rfc3339(),
            bytes: du(&tmp),
        };
        std::fs::write(tmp.join(META), serde_json::to_vec_pretty(&layer)?)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("moving the installed package to {}", dir.display()))?;
        drop(lock);
        if !quiet {
            eprintln!(
                "paddock: installed {} in {:.1}s ({} MB) at {}",
                pkg.spec(),
                started.elapsed().as_secs_f64(),
                layer.bytes / 1_000_000,
                dir.display()
            );
        }
        Ok(layer)
    }
}

/// Node's major version on the host (`v20`), part of a layer's key: native modules are
/// built for it.
fn node_major() -> Result<String> {
    let out = std::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow!(Hinted::new(
                format!("node is needed to run this agent and was not found: {e}"),
                "install Node.js and npm (Debian: `apt install nodejs npm`), or put the agent's CLI on your PATH",
            ))
        })?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(v.split('.').next().unwrap_or("v0").to_string())
}

async fn npm_install(prefix: &Path, pkg: &NpmPackage) -> Result<()> {
    let out = tokio::process::Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(prefix)
        .args([
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--no-package-lock",
            "--omit=dev",
            "--loglevel=error",
            "--no-update-notifier",
        ])
        .arg(pkg.spec())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| {
            anyhow!(Hinted::new(
                format!("npm could not be started: {e}"),
                "install npm (Debian: `apt install npm`), or put the agent's CLI on your PATH",
            ))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(anyhow!(Hinted::new(
            format!("npm install {} failed:\n{}", pkg.spec(), tail.join("\n")),
            "check that the npm registry is reachable (`npm ping`) and the version exists (`npm view PACKAGE versions`)",
        )));
    }
    Ok(())
}

/// A spinner with the elapsed time on a terminal, one line otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn start(quiet: bool, what: String) -> Progress {
        if quiet {
            return Progress(None);
        }
        if !std::io::stderr().is_terminal() {
            eprintln!("paddock: {what}…");
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(bar))
    }

    fn finish(self) {
        if let Some(b) = self.0 {
            b.finish_and_clear();
        }
    }
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `paddock agents ls|update|rm`.
pub async fn dispatch(home: &Home, a: AgentsArgs) -> Result<i32> {
    let _ = home;
    let cwd = std::env::current_dir()?;
    let config = paddock_config::load(&cwd)?.config;
    let tools = Tools::open()?;
    match a.action {
        AgentsAction::Ls(j) => {
            let layers = tools.list();
            let selected = tools.selected();
            let mut agents = Vec::new();
            for name in paddock_config::agent_names(&config) {
                let Ok(agent) = paddock_config::resolve_agent(&name, &config) else {
                    continue;
                };
                let host = on_path(&agent.command[0]);
                let pkg = chosen_package(&agent)?;
                let installed = pkg.as_ref().and_then(|p| {
                    layers
                        .iter()
                        .find(|l| l.package == p.name && l.version == p.version)
                });
                agents.push(serde_json::json!({
                    "agent": name,
                    "command": agent.command,
                    "package": pkg.as_ref().map(|p| &p.name),
                    "version": pkg.as_ref().map(|p| &p.version),
                    "selected": selected.get(&name),
                    "source": if host.is_some() { "host" } else if installed.is_some() { "tool layer" } else { "not installed" },
                    "path": host.map(|p| p.display().to_string()).or_else(|| installed.map(|l| l.dir.display().to_string())),
                }));
            }
            if j.json {
                print_json(&serde_json::json!({ "agents": agents, "layers": layers }))?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    let s = |k: &str| a[k].as_str().unwrap_or("-").to_string();
                    vec![
                        s("agent"),
                        s("package"),
                        s("version"),
                        s("source"),
                        s("path"),
                    ]
                })
                .collect();
            out!(
                "{}",
                table(&["AGENT", "PACKAGE", "VERSION", "USES", "PATH"], &rows)
            );
            if !layers.is_empty() {
                outln!();
                let rows: Vec<Vec<String>> = layers
                    .iter()
                    .map(|l| {
                        vec![
                            format!("{}@{}", l.package, l.version),
                            format!("{} MB", l.bytes / 1_000_000),
                            l.installed_at.clone(),
                            l.dir.display().to_string(),
                        ]
                    })
                    .collect();
                out!("{}", table(&["INSTALLED", "SIZE", "WHEN", "LAYER"], &rows));
            }
            Ok(0)
        }
        AgentsAction::Update(u) => {
            let names = if u.agents.is_empty() {
                paddock_config::agent_names(&config)
            } else {
                u.agents.clone()
            };
            for name in names {
                let agent = paddock_config::resolve_agent(&name, &config)
                    .map_err(|e| usage(e.message, e.hint))?;
                let Some(pkg) = agent.package.clone() else {
                    if !u.agents.is_empty() {
                        return Err(usage(
                            format!("agent `{name}` has no npm package to update"),
                            format!("set `agents.{name}.package` in paddock.yaml"),
                        ));
                    }
                    continue;
                };
                let latest = npm_latest(&pkg.name).await?;
                let target = NpmPackage {
                    name: pkg.name.clone(),
                    version: latest.clone(),
                };
                tools.ensure(&target, false).await?;
                std::fs::create_dir_all(&tools.root)?;
                tools.select(&name, &latest)?;
                outln!(
                    "{name}: {} (pinned in the preset: {})",
                    target.spec(),
                    pkg.version
                );
            }
            Ok(0)
        }
        AgentsAction::Rm(r) => {
            let layers = tools.list();
            let doomed: Vec<&ToolLayer> = if r.all {
                layers.iter().collect()
            } else {
                if r.agents.is_empty() {
                    return Err(usage(
                        "name the agents whose tool layers to remove",
                        "e.g. `paddock agents rm claude`, or `paddock agents rm --all`",
                    ));
                }
                let mut out = Vec::new();
                for name in &r.agents {
                    let agent = paddock_config::resolve_agent(name, &config)
                        .map_err(|e| usage(e.message, e.hint))?;
                    let pkg = agent.package.map(|p| p.name);
                    out.extend(layers.iter().filter(|l| Some(&l.package) == pkg.as_ref()));
                }
                out
            };
            for l in &doomed {
                std::fs::remove_dir_all(&l.dir)
                    .with_context(|| format!("removing {}", l.dir.display()))?;
                outln!("removed {}@{} ({})", l.package, l.version, l.dir.display());
            }
            if doomed.is_empty() {
                outln!("nothing to remove");
            }
            Ok(0)
        }
    }
}

async fn npm_latest(package: &str) -> Result<String> {
    let out = tokio::process::Command::new("npm")
        .args(["view", "--no-update-notifier"])
        .arg(format!("{package}@latest"))
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            anyhow!(Hinted::new(
                format!("npm could not be started: {e}"),
                "install npm"
            ))
        })?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || paddock_config::validate_npm_version(&v).is_err() {
        return Err(anyhow!(Hinted::new(
            format!(
                "npm could not tell the latest version of {package}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "check that the npm registry is reachable (`npm ping`)",
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paddock_options_first_then_the_agents_untouched() {
        let (a, b) = split_args(&s(&["-p", "hi"]));
        assert!(a.is_empty());
        assert_eq!(b, s(&["-p", "hi"]));
        let (a, b) = split_args(&s(&["--name", "fix", "--memory=1G", "-p", "--name", "y"]));
        assert_eq!(a, s(&["--name", "fix", "--memory=1G"]));
        assert_eq!(b, s(&["-p", "--name", "y"]));
        let (a, b) = split_args(&s(&["--detach", "--", "--name", "z"]));
        assert_eq!(a, s(&["--detach"]));
        assert_eq!(b, s(&["--name", "z"]));
        let (a, b) = split_args(&s(&["exec", "--json", "hi"]));
        assert!(a.is_empty());
        assert_eq!(b, s(&["exec", "--json", "hi"]));
        let (a, b) = split_args(&s(&["--model", "opus"]));
        assert!(a.is_empty(), "unknown long options are the agent's");
        assert_eq!(b, s(&["--model", "opus"]));
    }
}
