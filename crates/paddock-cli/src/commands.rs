//! The commands other than `run`: each parses nothing (clap did), asks the daemon, prints.

use std::io::IsTerminal;
use std::io::Write;
use std::time::Duration;

use anyhow::{Result, anyhow};
use paddock_api::{ApplyRequest, Run, StopRequest};
use paddock_daemon::Home;

use crate::cli::{
    ApplyArgs, DaemonAction, DiffArgs, DoctorArgs, InspectArgs, JsonFlag, LogsArgs, PsArgs, RmArgs,
    StopArgs, WaitArgs,
};
use crate::ensure::{ensure_running, running, stop_daemon};
use crate::ui::{Hinted, age, paint, print_json, printable, stdout_color, table, truncate};

fn state_cell(run: &Run, color: bool) -> String {
    let text = match (run.state, run.exit_code) {
        (paddock_api::RunState::Stopped, Some(c)) => format!("stopped ({c})"),
        (s, _) => s.to_string(),
    };
    let code = match run.state {
        paddock_api::RunState::Running => "32",
        paddock_api::RunState::Failed => "31",
        paddock_api::RunState::Starting | paddock_api::RunState::Stopping => "33",
        _ => "2",
    };
    paint(color, code, &text)
}

pub async fn ps(home: &Home, args: PsArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let list = client.list_runs(args.all).await?;
    if args.json.json {
        print_json(&list)?;
        return Ok(0);
    }
    if args.quiet {
        for r in &list.runs {
            outln!("{}", r.id);
        }
        return Ok(0);
    }
    let color = stdout_color();
    // A URLS column (the routed services) only when some run has endpoints.
    let urls = list.runs.iter().any(|r| !r.urls.is_empty());
    // AGENT and BRANCH columns only when some run has an agent or works in a git worktree.
    let agents = list.runs.iter().any(|r| r.agent.is_some());
    let branches = list.runs.iter().any(|r| r.branch.is_some());
    // RUNTIME only when some run is not native.
    let runtimes = list.runs.iter().any(|r| r.runtime != "native");
    let rows: Vec<Vec<String>> = list
        .runs
        .iter()
        .map(|r| {
            let mut row = vec![
                r.id.clone(),
                r.name.clone(),
                state_cell(r, color),
                age(&r.created_at),
                truncate(&r.command.join(" "), 40),
                printable(&r.workspace.display().to_string()),
            ];
            if runtimes {
                row.push(r.runtime.clone());
            }
            if agents {
                row.push(r.agent.clone().unwrap_or_default());
            }
            if branches {
                row.push(r.branch.clone().unwrap_or_default());
            }
            if urls {
                row.push(r.urls.values().cloned().collect::<Vec<_>>().join(" "));
            }
            row
        })
        .collect();
    if rows.is_empty() {
        eprintln!(
            "no {}runs{}",
            if args.all { "" } else { "live " },
            if args.all {
                ""
            } else {
                " (see ended ones with `paddock ps -a`)"
            }
        );
        return Ok(0);
    }
    let mut header = vec!["ID", "NAME", "STATE", "CREATED", "COMMAND", "WORKSPACE"];
    if runtimes {
        header.push("RUNTIME");
    }
    if agents {
        header.push("AGENT");
    }
    if branches {
        header.push("BRANCH");
    }
    if urls {
        header.push("URLS");
    }
    out!("{}", table(&header, &rows));
    Ok(0)
}

pub async fn logs(home: &Home, args: LogsArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let mut stream = client.logs(&args.run, args.tail, args.follow).await?;
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    while let Some(line) = stream.next().await? {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
            continue;
        }
        let bytes = match (&line.text, &line.b64) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(b)) => decode_b64(b),
            _ => Vec::new(),
        };
        if line.stream == "stderr" {
            err.write_all(&bytes)?;
            err.flush()?;
        } else {
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(0)
}

fn decode_b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

pub async fn stop(home: &Home, args: StopArgs) -> Result<i32> {
    if !args.grace.is_finite() || !(0.0..=3600.0).contains(&args.grace) {
        return Err(anyhow!(crate::ui::Usage(Hinted::new(
            format!(
                "invalid --time {}: expected seconds from 0 to 3600",
                args.grace
            ),
            "e.g. -t 5",
        ))));
    }
    let client = ensure_running(home).await?;
    let mut code = 0;
    let mut done = Vec::new();
    for r in &args.runs {
        match client
            .stop_run(
                r,
                &StopRequest {
                    grace_secs: Some(args.grace),
                },
            )
            .await
        {
            Ok(run) => {
                if !args.json.json {
                    outln!("{}", run.name);
                }
                done.push(run);
            }
            Err(e) => {
                code = crate::ui::report(&anyhow!(e));
            }
        }
    }
    if args.json.json {
        print_json(&done)?;
    }
    Ok(code)
}

pub async fn rm(home: &Home, args: RmArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let mut code = 0;
    let mut done = Vec::new();
    for r in &args.runs {
        match client.delete_run(r, args.force).await {
            Ok(run) => {
                if !args.json.json {
                    outln!("{}", run.name);
                }
                done.push(run);
            }
            Err(e) => code = crate::ui::report(&anyhow!(e)),
        }
    }
    if args.json.json {
        print_json(&done)?;
    }
    Ok(code)
}

pub async fn inspect(home: &Home, args: InspectArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let run = client.get_run(&args.run).await?;
    if args.json.json {
        print_json(&run)?;
        return Ok(0);
    }
    let color = stdout_color();
    let kv = |k: &str, v: String| outln!("{:<14}{v}", paint(color, "1", &format!("{k}:")));
    kv("id", run.id.clone());
    kv("name", run.name.clone());
    kv("state", state_cell(&run, color));
    if let Some(r) = &run.reason {
        kv("reason", r.clone());
    }
    kv("command", run.command.join(" "));
    kv(
        "workspace",
        format!(
            "{} ({})",
            run.workspace.display(),
            run.workspace_mode.as_str()
        ),
    );
    if let Some(b) = &run.branch {
        kv("branch", b.clone());
    }
    if let Some(w) = &run.worktree {
        kv("worktree", w.display().to_string());
    }
    kv("runtime", run.runtime.clone());
    kv("created", run.created_at.clone());
    if let Some(t) = &run.started_at {
        kv("started", t.clone());
    }
    if let Some(t) = &run.finished_at {
        kv("finished", t.clone());
    }
    if let Some(c) = run.exit_code {
        kv("exit code", c.to_string());
    }
    let l = &run.limits;
    if l.memory_bytes.is_some() || l.pids.is_some() || l.cpus.is_some() {
        kv(
            "limits",
            [
                l.memory_bytes.map(|m| format!("memory {m} bytes")),
                l.pids.map(|p| format!("pids {p}")),
                l.cpus.map(|c| format!("cpus {c}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        );
    }
    for m in &run.mounts {
        kv(
            "mount",
            format!(
                "{} → {}{}",
                m.source.display(),
                m.target.display(),
                if m.read_only { " (ro)" } else { "" }
            ),
        );
    }
    for (endpoint, url) in &run.urls {
        let port = run.ports.get(endpoint).copied().unwrap_or_default();
        kv("url", format!("{url} (→ port {port} in the sandbox)"));
    }
    for s in &run.config_sources {
        kv("config", s.display().to_string());
    }
    if run.workspace_mode == paddock_api::WorkspaceMode::Overlay {
        kv(
            "applied",
            if run.applied {
                "yes".into()
            } else {
                format!("no (review with `paddock diff {}`)", run.name)
            },
        );
    }
    Ok(0)
}

pub async fn wait(home: &Home, args: WaitArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let r = client.wait_run(&args.run).await?;
    if args.json.json {
        print_json(&r)?;
    }
    Ok(crate::run::exit_code_of(&r))
}

pub async fn diff(home: &Home, args: DiffArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let d = client
        .diff_from(&args.run, !args.stat, args.from.as_deref())
        .await?;
    if args.json.json {
        print_json(&d)?;
        return Ok(0);
    }
    out!("{}", d.summary);
    if !d.patch.is_empty() {
        outln!();
        let color = stdout_color();
        // File content is the agent's: on a terminal, its control characters are shown,
        // not obeyed (names and headers are escaped by the daemon already).
        let tty = std::io::stdout().is_terminal();
        for line in d.patch.lines() {
            let shown;
            let line = if tty {
                shown = paddock_layer::escape_controls(line);
                shown.as_ref()
            } else {
                line
            };
            let code = if line.starts_with("+++") || line.starts_with("---") {
                "1"
            } else if line.starts_with('+') {
                "32"
            } else if line.starts_with('-') {
                "31"
            } else if line.starts_with("@@") {
                "36"
            } else {
                ""
            };
            if code.is_empty() {
                outln!("{line}")
            } else {
                outln!("{}", paint(color, code, line))
            }
        }
    }
    Ok(0)
}

pub async fn snapshot(home: &Home, args: crate::cli::SnapshotArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let s = client
        .snapshot(
            &args.run,
            &paddock_api::SnapshotRequest {
                message: args.message,
            },
        )
        .await?;
    if args.json.json {
        print_json(&s)?;
    } else {
        outln!("{}", s.id);
    }
    Ok(0)
}

pub async fn snapshots(home: &Home, args: crate::cli::SnapshotsArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let l = client.snapshots(&args.run).await?;
    if args.json.json {
        print_json(&l)?;
        return Ok(0);
    }
    if l.snapshots.is_empty() {
        outln!(
            "no snapshots of {} yet; `paddock snapshot {}` takes one",
            args.run,
            args.run
        );
        return Ok(0);
    }
    outln!(
        "{:<6} {:<24} {:>6} {:>9}  MESSAGE",
        "ID",
        "TAKEN",
        "FILES",
        "COPIED"
    );
    for s in &l.snapshots {
        let msg = s.message.as_deref().unwrap_or("");
        outln!(
            "{:<6} {:<24} {:>6} {:>8}K  {}{}",
            s.id,
            s.created_at,
            s.files,
            s.copied_bytes.div_ceil(1024),
            paddock_layer::escape_str(msg),
            if s.auto { " (auto)" } else { "" }
        );
    }
    Ok(0)
}

pub async fn discard(home: &Home, args: crate::cli::DiscardArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let paths = args.paths;
    let r = client
        .discard(&args.run, &paddock_api::DiscardRequest { paths })
        .await?;
    if args.json.json {
        print_json(&r)?;
    } else if r.discarded == 0 {
        outln!("nothing to discard: the run has no changes there");
    } else {
        outln!(
            "discarded {} change{}{}",
            r.discarded,
            if r.discarded == 1 { "" } else { "s" },
            if r.live {
                "; the running sandbox sees the workspace as it was"
            } else {
                ""
            }
        );
    }
    Ok(0)
}

pub async fn rollback(home: &Home, args: crate::cli::RollbackArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let r = client
        .rollback(
            &args.run,
            &paddock_api::RollbackRequest {
                snapshot: args.snapshot,
                paths: args.paths,
            },
        )
        .await?;
    if args.json.json {
        print_json(&r)?;
    } else if r.deleted + r.written == 0 {
        outln!(
            "nothing to roll back: the run already matches {}",
            r.snapshot
        );
    } else {
        outln!(
            "rolled back to {} ({} removed, {} written){}",
            r.snapshot,
            r.deleted,
            r.written,
            if r.live {
                "; the running sandbox sees it now"
            } else {
                ""
            }
        );
    }
    Ok(0)
}

pub async fn apply(home: &Home, args: ApplyArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let r = client
        .apply(
            &args.run,
            &ApplyRequest {
                force: args.force,
                include_git: args.include_git,
                include_autorun: args.include_autorun,
            },
        )
        .await?;
    if args.json.json {
        print_json(&r)?;
        return Ok(0);
    }
    out!("{}", r.summary);
    Ok(0)
}

pub async fn daemon(home: &Home, action: DaemonAction) -> Result<i32> {
    match action {
        DaemonAction::Status(JsonFlag { json }) => match running(home).await {
            Some((_, h)) => {
                if json {
                    print_json(
                        &serde_json::json!({ "running": true, "socket": home.socket(), "health": h }),
                    )?;
                } else {
                    outln!(
                        "running: pid {}, version {} ({}), since {}",
                        h.pid,
                        h.version,
                        h.commit,
                        h.started_at
                    );
                    outln!("runs: {} active, {} total", h.runs.active, h.runs.total);
                    if let Some(p) = h.router_port {
                        outln!("router: 127.0.0.1:{p} (routes: `paddock router status`)");
                    }
                    outln!("socket: {}", home.socket().display());
                    if let Some(a) = &h.audit {
                        outln!(
                            "audit: {} entries acknowledged, {} pending, {} failed, {} logs open; key sha256:{}",
                            a.acked_entries,
                            a.pending,
                            a.failed,
                            a.logs_open,
                            a.key_id
                        );
                    }
                    if h.event_bus.dropped > 0 {
                        outln!(
                            "event bus: {} events dropped for slow subscribers",
                            h.event_bus.dropped
                        );
                    }
                }
                Ok(0)
            }
            None => {
                if json {
                    print_json(&serde_json::json!({ "running": false, "socket": home.socket() }))?;
                } else {
                    outln!(
                        "not running (it starts on demand; socket {})",
                        home.socket().display()
                    );
                }
                Ok(3)
            }
        },
        DaemonAction::Stop(JsonFlag { json }) => {
            match running(home).await {
                Some((client, h)) => {
                    stop_daemon(&client, h.pid).await?;
                    if json {
                        print_json(&serde_json::json!({ "stopped": true, "pid": h.pid }))?;
                    } else {
                        outln!(
                            "stopped the paddock daemon (pid {}); {} run(s) keep running",
                            h.pid,
                            h.runs.active
                        );
                    }
                }
                None => {
                    if json {
                        print_json(&serde_json::json!({ "stopped": false }))?;
                    } else {
                        outln!("the paddock daemon is not running");
                    }
                }
            }
            Ok(0)
        }
        DaemonAction::Restart(JsonFlag { json }) => {
            // A new daemon would refuse a broken user config: keep the running one then.
            configured_router_port()?;
            if let Some((client, h)) = running(home).await {
                stop_daemon(&client, h.pid).await?;
            }
            let client = ensure_running(home).await?;
            let h = client.health().await?;
            if json {
                print_json(&h)?;
            } else {
                outln!(
                    "restarted the paddock daemon: pid {}, version {} ({})",
                    h.pid,
                    h.version,
                    h.commit
                );
            }
            Ok(0)
        }
    }
}

pub async fn version(home: &Home, json: bool) -> Result<i32> {
    let daemon = running(home).await.map(|(_, h)| h);
    if json {
        print_json(&serde_json::json!({
            "cli": { "version": paddock_daemon::VERSION, "commit": paddock_daemon::commit() },
            "daemon": daemon.as_ref().map(|h| serde_json::json!({ "version": h.version, "commit": h.commit, "pid": h.pid })),
        }))?;
        return Ok(0);
    }
    outln!(
        "paddock {} ({})",
        paddock_daemon::VERSION,
        paddock_daemon::commit()
    );
    match daemon {
        Some(h) => outln!("daemon  {} ({}), pid {}", h.version, h.commit, h.pid),
        None => outln!("daemon  not running"),
    }
    Ok(0)
}

pub async fn doctor(args: DoctorArgs) -> Result<i32> {
    let checks = paddock_confine::probe_all();
    let failed = checks
        .iter()
        .any(|c| c.status == paddock_confine::CheckStatus::Fail);
    let runtimes = runtime_checks(!failed).await;
    let services = service_checks(&runtimes);
    if args.json.json {
        print_json(
            &serde_json::json!({ "ok": !failed, "checks": checks, "runtimes": runtimes, "services": services }),
        )?;
        return Ok(i32::from(failed));
    }
    let color = stdout_color();
    for c in &checks {
        let mark = match c.status {
            paddock_confine::CheckStatus::Ok => paint(color, "32", "ok  "),
            paddock_confine::CheckStatus::Warn => paint(color, "33", "warn"),
            paddock_confine::CheckStatus::Fail => paint(color, "31", "FAIL"),
        };
        outln!("{mark}  {}: {}", c.title, c.detail);
        if let Some(fix) = &c.fix
            && c.status != paddock_confine::CheckStatus::Ok
        {
            outln!("      fix: {fix}");
        }
    }
    for (title, rows) in [
        ("runtimes (--runtime, `runtime:`)", &runtimes),
        ("docker services (--dep, `dependencies:`)", &services),
    ] {
        outln!("\n{title}:");
        for r in rows {
            let mark = if r.usable {
                paint(color, "32", "ok  ")
            } else {
                paint(color, "33", "no  ")
            };
            outln!("{mark}  {}: {}", r.name, r.detail);
            if let Some(fix) = &r.fix {
                outln!("      to enable: {fix}");
            }
        }
    }
    if failed {
        outln!("\nsome checks failed: the native sandbox may not work here until they are fixed");
    }
    Ok(i32::from(failed))
}

/// One runtime as `doctor` reports it.
#[derive(serde::Serialize)]
struct RuntimeCheck {
    name: &'static str,
    usable: bool,
    detail: String,
    fix: Option<String>,
}

/// `docker:host` and `docker:dind`, from the docker runtime's answer (both need the engine;
/// the private engine also needs a root daemon, to put the run's network in its sidecar).
fn service_checks(runtimes: &[RuntimeCheck]) -> Vec<RuntimeCheck> {
    let engine = runtimes.iter().find(|r| r.name == "docker");
    let engine_ok = engine.is_some_and(|r| r.usable);
    let no_engine = || RuntimeCheck {
        name: "",
        usable: false,
        detail: "needs the Docker engine (see the docker runtime above)".into(),
        fix: engine.and_then(|r| r.fix.clone()),
    };
    let root = nix::unistd::geteuid().is_root();
    let host = if engine_ok {
        RuntimeCheck {
            name: "docker:host",
            usable: true,
            detail: if root {
                "your engine behind paddock's policy proxy (its containers get the run's network)"
            } else {
                "your engine behind paddock's policy proxy (its containers get no network: that needs a root daemon)"
            }
            .into(),
            fix: None,
        }
    } else {
        RuntimeCheck {
            name: "docker:host",
            ..no_engine()
        }
    };
    let dind = match (engine_ok, root) {
        (false, _) => RuntimeCheck {
            name: "docker:dind",
            ..no_engine()
        },
        (true, false) => RuntimeCheck {
            name: "docker:dind",
            usable: false,
            detail: "needs a root daemon (it places the run's network in the sidecar)".into(),
            fix: Some("run the paddock daemon as root, or use docker:host".into()),
        },
        (true, true) => RuntimeCheck {
            name: "docker:dind",
            usable: true,
            detail: "a private dockerd per run in a sidecar that is not privileged (CAP_SYS_ADMIN, its own cgroup namespace, the run's network)".into(),
            fix: None,
        },
    };
    vec![host, dind]
}

/// Whether each runtime can make a sandbox here, asked the way the daemon would.
async fn runtime_checks(native_ok: bool) -> Vec<RuntimeCheck> {
    use paddock_sandbox::{Runtime, RuntimeKind};
    let mut out = vec![RuntimeCheck {
        name: "native",
        usable: native_ok,
        detail: if native_ok {
            "namespaces, seccomp, Landlock and cgroups (the default; no container engine)".into()
        } else {
            "see the failed checks above".into()
        },
        fix: None,
    }];
    for kind in [RuntimeKind::Docker, RuntimeKind::Gvisor] {
        let rt = paddock_sandbox::docker::DockerRuntime::new(
            paddock_sandbox::docker::DockerConfig::new(kind),
        );
        let probe = tokio::time::timeout(Duration::from_secs(10), rt.probe(kind)).await;
        out.push(match probe {
            Ok(Ok(detail)) => RuntimeCheck {
                name: kind.as_str(),
                usable: true,
                detail: if kind == RuntimeKind::Gvisor {
                    format!("{detail} with the runsc runtime (image runs use it by default)")
                } else {
                    detail
                },
                fix: None,
            },
            Ok(Err(e)) => RuntimeCheck {
                name: kind.as_str(),
                usable: false,
                detail: e.to_string(),
                fix: e.hint().map(str::to_string),
            },
            Err(_) => RuntimeCheck {
                name: kind.as_str(),
                usable: false,
                detail: "the Docker engine did not answer within 10 s".into(),
                fix: Some("check `docker info` and DOCKER_HOST".into()),
            },
        });
    }
    out
}

/// Parse the daemon's idle timeout flag/env/config.
pub fn idle_timeout(flag: Option<&str>, user: &paddock_config::Config) -> Result<Duration> {
    if let Some(raw) = flag {
        if raw.trim() == "0" {
            return Ok(Duration::ZERO);
        }
        return paddock_config::parse_duration(raw).map_err(|e| {
            anyhow!(crate::ui::Usage(Hinted::new(
                format!("invalid idle timeout `{raw}`: {}", e.message()),
                e.hint().unwrap_or("e.g. 30s, 5m, 1h, or 0 to never exit"),
            )))
        });
    }
    Ok(user
        .daemon
        .idle_timeout
        .unwrap_or(paddock_daemon::DEFAULT_IDLE_TIMEOUT))
}

/// The user config (`~/.config/paddock/config.yaml`), for the daemon's settings (idle
/// timeout, audit schedule, router port, `upstream:`). A missing file is the defaults; a
/// broken one is an error (file:line:column, and a did-you-mean for a misspelt key): the
/// daemon never starts on settings it was not given, since its router port makes URLs.
pub fn user_config() -> Result<paddock_config::Config> {
    paddock_config::Loader::from_env().load_user().map_err(|e| {
        let hint = e.hint().map(str::to_string).unwrap_or_else(|| {
            "fix the place named above; without a user config paddock uses its defaults".into()
        });
        anyhow::Error::from(e).context(Hinted::new(
            "the user config has an error, and the paddock daemon takes its settings (router \
             port, idle timeout, audit, upstream) from it: it does not start on defaults instead",
            hint,
        ))
    })
}

/// The router port a daemon started now would take: `PADDOCK_ROUTER_PORT`, else
/// `router.port` of the user config, else 8080. Errors on a bad variable or a broken user
/// config (never a default in their place).
pub fn configured_router_port() -> Result<u16> {
    router_port(&user_config()?)
}

/// The hostname router's port for the daemon: `PADDOCK_ROUTER_PORT`, else `router.port` in
/// the user config, else 8080.
pub fn router_port(user: &paddock_config::Config) -> Result<u16> {
    Ok(router_port_env()?
        .or(user.router.port)
        .unwrap_or(paddock_daemon::DEFAULT_ROUTER_PORT))
}

/// The dashboard's port: `PADDOCK_UI_PORT` (0 takes a free port: tests), else `ui.port`.
pub fn ui_port(user: &paddock_config::Config) -> Result<u16> {
    Ok(port_env("PADDOCK_UI_PORT", 0, "7780", "ui.port")?
        .or(user.ui.port)
        .unwrap_or(paddock_daemon::DEFAULT_UI_PORT))
}

/// `PADDOCK_ROUTER_PORT`, if set. A bad value is an error (never another port: URLs must not
/// move); `router.port` of the user config was checked when the config loaded.
pub fn router_port_env() -> Result<Option<u16>> {
    port_env("PADDOCK_ROUTER_PORT", 1, "8080", "router.port")
}

/// A port from environment variable `var`, if set: from `min` to 65535, else an error that
/// names the config key it stands for.
fn port_env(var: &str, min: u16, example: &str, key: &str) -> Result<Option<u16>> {
    let Some(raw) = std::env::var_os(var) else {
        return Ok(None);
    };
    let raw = raw.to_string_lossy();
    let port = raw.trim().parse::<u16>().ok().filter(|p| *p >= min);
    port.map(Some).ok_or_else(|| {
        anyhow!(crate::ui::Usage(Hinted::new(
            format!("invalid {var} `{raw}`: expected a port from {min} to 65535"),
            format!(
                "e.g. {var}={example}, or unset it to use `{key}` of ~/.config/paddock/config.yaml"
            ),
        )))
    })
}
