//! `paddock run`: build the request from config and flags (`ports:` under `-p ENDPOINT=PORT`
//! among them), create the run, print its service URLs on stderr (not with `-q`/`--json`),
//! and either detach or attach to it (progress, output, stdin, terminal, signals) until it
//! ends. `paddock exec` drives the same kind of session for a command exec'd into a
//! running run.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, anyhow};
use paddock_api::attach::{Frame, read_frame, write_frame};
use paddock_api::{
    CreateRun, ExecRequest, ExecResult, InitStep, Limits, Mount, TtySize, WaitResult,
    WorkspaceMode, WorktreeRequest,
};
use paddock_daemon::Home;

use crate::cli::{ExecArgs, RunArgs};
use crate::ui::{Hinted, paint, stderr_color, usage};

fn value_error(flag: &str, raw: &str, e: paddock_config::ValueError) -> anyhow::Error {
    usage(
        format!("invalid {flag} `{raw}`: {}", e.message()),
        e.hint().unwrap_or_default(),
    )
}

/// The request for a run: config layered under flags, the run's `dependencies:` among it
/// (its start builds their image). Fails before anything is created.
pub fn build_request(args: &RunArgs) -> Result<CreateRun> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let workspace = match &args.workspace {
        Some(w) => cwd.join(w),
        None => cwd.clone(),
    };
    let workspace = std::fs::canonicalize(&workspace).map_err(|e| {
        anyhow!(Hinted::new(
            format!("workspace {} does not exist: {e}", workspace.display()),
            "create it first, or pass an existing directory with -w",
        ))
    })?;
    if !workspace.is_dir() {
        return Err(anyhow!(Hinted::new(
            format!("workspace {} is not a directory", workspace.display()),
            "pass a directory with -w",
        )));
    }
    let loaded = paddock_config::load(&workspace)?;
    let cfg = loaded.config;

    let mut mounts: Vec<Mount> = cfg
        .mounts
        .iter()
        .map(|m| Mount {
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
        })
        .collect();
    for raw in &args.mounts {
        let m = paddock_config::parse_mount_spec(raw, &cwd)
            .map_err(|e| value_error("mount", raw, e))?;
        if !m.source.exists() {
            return Err(usage(
                format!("mount source {} does not exist", m.source.display()),
                "create it first, or fix the path in -m SRC:DST[:ro]",
            ));
        }
        mounts.push(Mount {
            source: m.source,
            target: m.target,
            read_only: m.read_only,
        });
    }

    let mut env: BTreeMap<String, String> = cfg.env.clone();
    for raw in &args.env {
        let (k, v) = parse_env_flag(raw)?;
        env.insert(k, v);
    }

    let ports = ports_of(&cfg.ports, &args.ports)?;
    // Ports paddock itself listens on inside the sandbox (the daemon refuses them too).
    for (endpoint, port) in &ports {
        if let Some((message, hint)) =
            paddock_daemon::endpoint_port_conflict(endpoint, *port, &cfg.network)
        {
            return Err(usage(message, hint));
        }
    }

    let mut limits = Limits {
        memory_bytes: cfg.limits.memory_bytes,
        pids: cfg.limits.pids,
        cpus: cfg.limits.cpus,
    };
    if let Some(m) = &args.memory {
        limits.memory_bytes =
            Some(paddock_config::parse_memory(m).map_err(|e| value_error("--memory", m, e))?);
    }
    if let Some(p) = &args.pids {
        let n: u64 = p.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            usage(
                format!("invalid --pids `{p}`: expected a whole number above 0"),
                "e.g. --pids 512",
            )
        })?;
        limits.pids = Some(n);
    }
    if let Some(c) = &args.cpus {
        limits.cpus = Some(paddock_config::parse_cpus(c).map_err(|e| value_error("--cpus", c, e))?);
    }

    if let Some(n) = &args.name {
        paddock_config::validate_dns_label(n).map_err(|e| {
            let e = if e.hint().is_none() {
                e.with_hint("run names are DNS labels because URLs use them, e.g. `fix-bug-2`")
            } else {
                e
            };
            value_error("--name", n, e)
        })?;
    }

    let command = if !args.command.is_empty() || args.agent.is_some() {
        args.command.clone()
    } else {
        cfg.command.clone().unwrap_or_default()
    };
    let tty = args.tty;
    if tty && let Ok(term) = std::env::var("TERM") {
        env.entry("TERM".into()).or_insert(term);
    }
    // Grants from config, then -g (each name once).
    let mut grants: Vec<String> = cfg.grants.clone();
    for g in &args.grants {
        paddock_config::validate_grant_name(g).map_err(|e| {
            usage(
                format!("invalid grant name `{g}`: {}", e.message()),
                "grant names are what `paddock grant list` shows, e.g. -g github",
            )
        })?;
        if !grants.contains(g) {
            grants.push(g.clone());
        }
    }
    // `runtime: native` is the default and says nothing: an image then picks its runtime.
    let runtime = args.runtime.clone().or_else(|| {
        let r = serde_json::to_value(cfg.runtime).ok()?;
        r.as_str().filter(|r| *r != "native").map(str::to_string)
    });
    let image = match &args.image {
        Some(i) => Some(paddock_config::parse_image(i).map_err(|e| value_error("--image", i, e))?),
        None => cfg.image.clone(),
    };
    let mut dependencies: Vec<String> = cfg
        .dependencies
        .iter()
        .map(paddock_config::Dependency::label)
        .chain(cfg.services.iter().map(|s| s.label().to_string()))
        .collect();
    for d in &args.deps {
        let label = paddock_config::parse_dependency_entry(d)
            .map_err(|e| value_error("--dep", d, e))?
            .label();
        if !dependencies.contains(&label) {
            dependencies.push(label);
        }
    }
    let worktree = match &args.worktree {
        Some(branch) => {
            paddock_daemon::check_branch_name(branch)
                .map_err(|e| usage(e.to_string(), e.hint()))?;
            Some(WorktreeRequest {
                repo: workspace.clone(),
                branch: branch.clone(),
            })
        }
        None => None,
    };
    let workspace_mode = if args.bind || cfg.workspace.mode == paddock_config::WorkspaceMode::Bind {
        WorkspaceMode::Bind
    } else {
        WorkspaceMode::Overlay
    };
    let req = CreateRun {
        name: args.name.clone().or(cfg.name.clone()),
        workspace,
        command,
        env,
        workspace_mode,
        mounts,
        limits,
        runtime,
        image,
        dependencies,
        tty,
        stdin: args.interactive,
        tty_size: if tty { terminal_size() } else { None },
        start: args.detach,
        config: serde_json::to_value(&cfg).unwrap_or_default(),
        config_sources: loaded.sources,
        grants,
        network: serde_json::to_value(&cfg.network).unwrap_or_default(),
        ports,
        agent: None,
        worktree,
    };
    Ok(req)
}

/// One `-e KEY=VALUE` flag.
fn parse_env_flag(raw: &str) -> Result<(String, String)> {
    let Some((k, v)) = raw.split_once('=') else {
        // Never echo the flag: it may be a value typed without its name.
        return Err(usage(
            "invalid -e: expected KEY=VALUE",
            "write -e NAME=value; paddock never copies your environment into a sandbox",
        ));
    };
    if k.is_empty()
        || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || k.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(usage(
            format!("invalid env name `{k}`"),
            "use letters, digits and `_`",
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Named ports: `ports:` of the config, then `-p ENDPOINT=PORT` flags (a flag replaces the
/// config's entry of the same endpoint; one endpoint twice among the flags is an error).
fn ports_of(config: &BTreeMap<String, u16>, flags: &[String]) -> Result<BTreeMap<String, u16>> {
    let mut ports = config.clone();
    let mut from_flags: BTreeMap<String, u16> = BTreeMap::new();
    for raw in flags {
        let m = paddock_config::parse_port_mapping(raw).map_err(|e| {
            let e = if e.hint().is_none() {
                e.with_hint("write -p ENDPOINT=PORT, e.g. `-p web=3000`")
            } else {
                e
            };
            value_error("-p", raw, e)
        })?;
        if let Some(first) = from_flags.insert(m.endpoint.clone(), m.port) {
            return Err(usage(
                format!(
                    "endpoint `{}` is given twice (-p {0}={first} and -p {raw})",
                    m.endpoint
                ),
                "each endpoint names one port; give a second service another name, e.g. `-p api=8081`",
            ));
        }
    }
    ports.extend(from_flags);
    Ok(ports)
}

/// The service URLs of a run, one per line (stderr: stdout stays the command's).
fn print_urls(run: &paddock_api::Run) {
    if run.urls.is_empty() {
        return;
    }
    let color = stderr_color();
    for (endpoint, url) in &run.urls {
        let port = run.ports.get(endpoint).copied().unwrap_or_default();
        eprintln!(
            "{} {url}  {}",
            paint(color, "1", &format!("[{}] {endpoint}:", run.name)),
            paint(color, "2", &format!("→ port {port} in the sandbox")),
        );
    }
}

fn terminal_size() -> Option<TtySize> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, exclusively borrowed `ws`;
    // fd 0 is ours for the process lifetime.
    let r = unsafe { nix::libc::ioctl(0, nix::libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(TtySize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// `paddock run`. Returns the process exit code.
pub async fn run(home: &Home, args: RunArgs) -> Result<i32> {
    let mut req = build_request(&args)?;
    crate::agents::setup(home, &args, &mut req).await?;
    crate::images::gvisor_notice(&req, args.quiet).await;
    if args.tty && !std::io::stdin().is_terminal() {
        return Err(usage(
            "-t needs a terminal on stdin",
            "drop -t when piping input, or run from a terminal",
        ));
    }
    if !args.detach {
        // One request creates the run and attaches to it (the run starts once the stream
        // is in place, so no output is missed). A request that could not connect never
        // reached a daemon: retried once after the full check (which starts one).
        let client = crate::ensure::ensure_running_fast(home).await?;
        let (run, io) = match client.create_and_attach(&req).await {
            Err(paddock_api::ClientError::Connect { .. }) => {
                crate::ensure::ensure_running(home)
                    .await?
                    .create_and_attach(&req)
                    .await?
            }
            r => r?,
        };
        if !args.quiet && !args.json {
            print_urls(&run);
        }
        return attach_session(io, &run.name, args.tty, args.interactive, args.quiet).await;
    }
    let client = crate::ensure::ensure_running(home).await?;
    let run = client.create_run(&req).await?;
    if !args.quiet && !args.json {
        print_urls(&run);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        outln!("{}", run.id);
        if !args.quiet && std::io::stderr().is_terminal() {
            eprintln!(
                "started {} ({}); follow it with `paddock logs -f {}`",
                run.id, run.name, run.name
            );
        }
    }
    Ok(0)
}

/// `paddock exec`: a command in a running run's sandbox. Returns the command's exit code
/// (127: not found, 128+N: signal N).
pub async fn exec(home: &Home, args: ExecArgs) -> Result<i32> {
    let mut env = BTreeMap::new();
    for raw in &args.env {
        let (k, v) = parse_env_flag(raw)?;
        env.insert(k, v);
    }
    if args.tty && !std::io::stdin().is_terminal() {
        return Err(usage(
            "-t needs a terminal on stdin",
            "drop -t when piping input, or run from a terminal",
        ));
    }
    if args.tty
        && let Ok(term) = std::env::var("TERM")
    {
        env.entry("TERM".into()).or_insert(term);
    }
    let req = ExecRequest {
        command: args.command.clone(),
        env,
        tty: args.tty,
        stdin: args.interactive,
        tty_size: if args.tty { terminal_size() } else { None },
    };
    let client = crate::ensure::ensure_running(home).await?;
    let client = crate::ensure::require(client, "exec", "cannot exec into a run").await?;
    let io = client.exec(&args.run, &req).await?;
    let exit = drive_session(io, &args.run, args.tty, args.interactive, true).await?;
    let Some(result) = exit.and_then(|b| serde_json::from_slice::<ExecResult>(&b).ok()) else {
        return Err(anyhow!(Hinted::new(
            format!(
                "lost the connection to the daemon before `{}` ended",
                args.command.join(" ")
            ),
            format!(
                "the command was killed; check the run with `paddock inspect {}`",
                args.run
            ),
        )));
    };
    match result.exit_code {
        Some(code) => {
            // Why paddock ended it (the daemon stopped, …). A command that was not found or
            // could not run has already said so on its stderr.
            if let Some(reason) = &result.reason
                && code != 126
                && code != 127
            {
                eprintln!(
                    "{} `{}` in run {}: {reason}",
                    paint(stderr_color(), "1;33", "paddock:"),
                    args.command.join(" "),
                    args.run
                );
            }
            Ok(code)
        }
        None => {
            eprintln!(
                "{} `{}` in run {} ended without an exit status: {}",
                paint(stderr_color(), "1;31", "error:"),
                args.command.join(" "),
                args.run,
                result.reason.as_deref().unwrap_or("unknown reason")
            );
            Ok(1)
        }
    }
}

/// Restores the terminal's mode when dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).context("reading the terminal mode")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("setting the terminal to raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// Drive a framed session (a run's attach, or an exec) until its `Exit` frame: progress
/// and output to the terminal; stdin (with -i or -t), resizes and signals to the daemon.
/// Returns the `Exit` frame's payload, or `None` when the connection ended before it.
async fn drive_session<IO>(
    io: IO,
    name: &str,
    tty: bool,
    interactive: bool,
    quiet: bool,
) -> Result<Option<Vec<u8>>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(io);
    let wr = std::sync::Arc::new(tokio::sync::Mutex::new(wr));
    let show_progress = !quiet && std::io::stderr().is_terminal();
    let color = stderr_color();
    let raw = if tty { Some(RawMode::enter()?) } else { None };

    // Input: stdin bytes (when asked for), resizes and signals.
    let mut tasks = Vec::new();
    if interactive || tty {
        // A plain thread reads stdin: a blocking read pending in the async runtime would
        // keep the process alive after the run has ended.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(16);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(None);
                        break;
                    }
                    Ok(n) => {
                        if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let w = wr.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                let frame = match chunk {
                    Some(bytes) => Frame::Stdin(bytes),
                    None => Frame::CloseStdin,
                };
                let last = frame == Frame::CloseStdin;
                if write_frame(&mut *w.lock().await, &frame).await.is_err() || last {
                    break;
                }
            }
        }));
    }
    {
        use tokio::signal::unix::{SignalKind, signal};
        let w = wr.clone();
        tasks.push(tokio::spawn(async move {
            let (Ok(mut winch), Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::window_change()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            loop {
                let frame = tokio::select! {
                    _ = winch.recv() => match terminal_size() {
                        Some(s) if tty => Frame::Resize { rows: s.rows, cols: s.cols },
                        _ => continue,
                    },
                    _ = int.recv() => Frame::Signal(nix::libc::SIGINT),
                    _ = term.recv() => Frame::Signal(nix::libc::SIGTERM),
                    _ = hup.recv() => Frame::Signal(nix::libc::SIGHUP),
                };
                if write_frame(&mut *w.lock().await, &frame).await.is_err() {
                    break;
                }
            }
        }));
    }

    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut exit: Option<Vec<u8>> = None;
    let mut progress_shown = false;
    while let Some(frame) = read_frame(&mut rd)
        .await
        .context("reading from the paddock daemon")?
    {
        // A step stays on screen until the next step replaces it or real output comes.
        if progress_shown && !matches!(frame, Frame::InitStep(_)) {
            // Cleared before real output or the end.
            eprint!("\r\x1b[2K");
            progress_shown = false;
        }
        match frame {
            Frame::Stdout(b) => {
                stdout.write_all(&b)?;
                stdout.flush()?;
            }
            Frame::Stderr(b) => {
                stderr.write_all(&b)?;
                stderr.flush()?;
            }
            Frame::InitStep(b) => {
                if let (true, Ok(step)) = (
                    show_progress && !tty,
                    serde_json::from_slice::<InitStep>(&b),
                ) {
                    eprint!(
                        "\r\x1b[2K{}",
                        paint(
                            color,
                            "2",
                            &format!(
                                "[{name}] step {} of {}: {}",
                                step.index, step.total, step.description
                            )
                        )
                    );
                    progress_shown = true;
                }
            }
            Frame::Exit(b) => {
                exit = Some(b);
                break;
            }
            _ => {}
        }
    }
    for t in tasks {
        t.abort();
    }
    drop(raw);
    Ok(exit)
}

/// Drive a run's attach session; returns the run's exit code.
async fn attach_session<IO>(
    io: IO,
    name: &str,
    tty: bool,
    interactive: bool,
    quiet: bool,
) -> Result<i32>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let exit = drive_session(io, name, tty, interactive, quiet).await?;
    let color = stderr_color();
    let mut failure: Option<String> = None;
    let result = exit.and_then(|b| match serde_json::from_slice::<WaitResult>(&b) {
        Ok(r) => Some(r),
        Err(_) => {
            failure = Some(String::from_utf8_lossy(&b).into_owned());
            None
        }
    });
    let Some(result) = result else {
        return Err(anyhow!(Hinted::new(
            format!(
                "lost the connection to run {name} before it ended{}",
                failure.map(|f| format!(": {f}")).unwrap_or_default()
            ),
            format!(
                "check it with `paddock inspect {name}`; its output is in `paddock logs {name}`"
            ),
        )));
    };
    if let Some(reason) = &result.reason
        && result.state == paddock_api::RunState::Failed
    {
        eprintln!(
            "{} run {name} failed: {reason}",
            paint(color, "1;31", "error:")
        );
    }
    Ok(exit_code_of(&result))
}

/// The shell-style exit code of an ended run (1 when it failed without one).
pub fn exit_code_of(r: &WaitResult) -> i32 {
    r.exit_code
        .unwrap_or(if r.state == paddock_api::RunState::Failed {
            1
        } else {
            0
        })
}
