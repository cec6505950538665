//! `paddock`: the CLI, the daemon (`paddock daemon`) and the sandbox's PID 1 (`paddock
//! init`, hidden) in one binary.
//!
//! This crate only parses arguments, talks to the daemon through paddock-api and prints.
//! It holds no state: it never opens state.db or a run's files.

/// `print!` for command output. A closed output pipe (`paddock grant list | head -1`)
/// ends the command quietly with status 141, as a Unix filter killed by SIGPIPE would;
/// SIGPIPE itself stays ignored so that a daemon closing the socket is an error, not death.
macro_rules! out {
    ($($arg:tt)*) => { $crate::ui::write_out(format_args!($($arg)*), false) };
}

/// `println!` for command output; see [`out!`].
macro_rules! outln {
    () => { $crate::ui::write_out(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::ui::write_out(format_args!($($arg)*), true) };
}

mod agents;
mod audit;
mod cli;
mod commands;
mod dashboard;
mod ensure;
mod events;
mod grant;
mod images;
mod routing;
mod run;
mod trace;
mod ui;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command};
use paddock_daemon::Home;

/// `0.1.0 (commit)` for `--version`.
pub fn version_string() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{} ({})", paddock_daemon::VERSION, paddock_daemon::commit())
    });
    VERSION.as_str()
}

fn main() {
    // PID 1 inside a sandbox: no argument parsing, no async runtime, nothing shared.
    if std::env::args_os().nth(1).is_some_and(|a| a == "init") {
        std::process::exit(paddock_sandbox::native::init_main());
    }
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Daemon(ref d) if d.action.is_none());
    init_tracing(cli.verbose, daemon);
    // The daemon needs worker threads (the egress proxy blocks in place on them); a client
    // command is a few requests and a session, which one thread serves without the cost of
    // spawning workers (and reading cgroup quotas to size them) on every invocation.
    let runtime = if daemon {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let code = match runtime {
        Ok(rt) => match rt.block_on(dispatch(cli)) {
            Ok(code) => code,
            Err(e) => ui::report(&e),
        },
        Err(e) => ui::report(&anyhow::anyhow!(e).context("starting the async runtime")),
    };
    std::process::exit(code);
}

fn init_tracing(verbose: u8, daemon: bool) {
    let default = match (daemon, verbose) {
        (true, 0) => "info",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PADDOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!daemon && ui::stderr_color())
        .init();
}

async fn dispatch(cli: Cli) -> Result<i32> {
    let home = Home::from_env().map_err(ui::Hinted::from_daemon)?;
    match cli.command {
        Command::Run(args) => run::run(&home, args).await,
        Command::Claude(a) => agents::preset(&home, "claude", a.args).await,
        Command::Codex(a) => agents::preset(&home, "codex", a.args).await,
        Command::Gemini(a) => agents::preset(&home, "gemini", a.args).await,
        Command::Agents(a) => agents::dispatch(&home, a).await,
        Command::Exec(args) => run::exec(&home, args).await,
        Command::Ps(args) => commands::ps(&home, args).await,
        Command::Logs(args) => commands::logs(&home, args).await,
        Command::Trace(args) => trace::trace(&home, args).await,
        Command::Events(args) => events::events(&home, args).await,
        Command::Ui(args) => dashboard::ui(&home, args).await,
        Command::Stop(args) => commands::stop(&home, args).await,
        Command::Rm(args) => commands::rm(&home, args).await,
        Command::Inspect(args) => commands::inspect(&home, args).await,
        Command::Wait(args) => commands::wait(&home, args).await,
        Command::Diff(args) => commands::diff(&home, args).await,
        Command::Apply(args) => commands::apply(&home, args).await,
        Command::Snapshot(args) => commands::snapshot(&home, args).await,
        Command::Snapshots(args) => commands::snapshots(&home, args).await,
        Command::Rollback(args) => commands::rollback(&home, args).await,
        Command::Discard(args) => commands::discard(&home, args).await,
        Command::Doctor(args) => commands::doctor(args).await,
        Command::Image(a) => images::dispatch(&home, a).await,
        Command::Audit(a) => audit::dispatch(&home, a).await,
        Command::Grant(g) => grant::dispatch(&home, g).await,
        Command::Version(j) => commands::version(&home, j.json).await,
        Command::Router(a) => routing::router(&home, a).await,
        Command::Ca(a) => routing::ca(&home, a).await,
        Command::Daemon(d) => match d.action {
            Some(action) => commands::daemon(&home, action).await,
            None => run_daemon(home, d.idle_timeout.as_deref()).await,
        },
        Command::Init => unreachable!("handled before argument parsing"),
    }
}

/// `paddock daemon`: serve in the foreground until stopped or idle.
async fn run_daemon(home: Home, idle_flag: Option<&str>) -> Result<i32> {
    let user = commands::user_config()?;
    let idle_timeout = commands::idle_timeout(idle_flag, &user)?;
    let exe = std::env::current_exe().context("finding the paddock executable")?;
    let mut config = paddock_sandbox::native::NativeConfig::new(exe);
    config.paddock_home = Some(home.root().to_path_buf());
    let docker = |kind| {
        let mut c = paddock_sandbox::docker::DockerConfig::new(kind);
        c.paddock_home = Some(home.root().to_path_buf());
        Arc::new(paddock_sandbox::docker::DockerRuntime::new(c))
    };
    let runc = docker(paddock_sandbox::RuntimeKind::Docker);
    // Native runs on an image get its filesystem from the Docker engine.
    let native = paddock_sandbox::native::NativeRuntime::new(config).with_images(runc.clone());
    let runtime = paddock_sandbox::Runtimes::new(vec![
        Arc::new(native),
        runc,
        docker(paddock_sandbox::RuntimeKind::Gvisor),
    ]);
    paddock_daemon::serve(paddock_daemon::DaemonOptions {
        home,
        idle_timeout,
        runtime: Arc::new(runtime),
        audit: audit::daemon_options(&user.audit),
        router_port: commands::router_port(&user)?,
        ui_port: commands::ui_port(&user)?,
        upstream: user.upstream,
    })
    .await
    .map_err(ui::Hinted::from_daemon)?;
    Ok(0)
}
