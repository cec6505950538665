//! Finding the daemon, and starting it on demand.
//!
//! The check-and-spawn sequence runs under an exclusive flock on `spawn.lock`, so any
//! number of CLIs started at once leave exactly one daemon. A daemon from another build,
//! or one whose router port is not the configured one (`PADDOCK_ROUTER_PORT`,
//! `router.port`), is replaced when it has no active runs, and otherwise kept with a
//! warning. A broken user config is an error before any daemon is started.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::fcntl::{Flock, FlockArg};
use paddock_api::{Client, Health};
use paddock_daemon::Home;

use crate::ui::Hinted;

/// How long to wait for a spawned daemon to answer.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of a running daemon, started if needed.
pub async fn ensure_running(home: &Home) -> Result<Client> {
    ensure_running_without(home, &[]).await
}

/// [`ensure_running`] without a request when `daemon.lock` already shows a live daemon of
/// this build on the configured router port (`paddock run`'s path: a health round trip is
/// a tenth of a sandbox start). The lock is taken before the daemon listens, so a caller
/// whose first request cannot connect must fall back to [`ensure_running`].
pub async fn ensure_running_fast(home: &Home) -> Result<Client> {
    if let Some((info, true)) = paddock_daemon::read_lock(home)
        && info.commit == paddock_daemon::commit()
        && let Ok(port) = crate::commands::configured_router_port()
        && info.router_port == Some(port)
    {
        return Ok(Client::new(home.socket()));
    }
    ensure_running(home).await
}

/// Why a running daemon is not the one this CLI would start.
enum Stale {
    /// Another build (commit).
    Build,
    /// Its router listens (or tries to) on another port than the configured one.
    RouterPort { daemon: u16, configured: u16 },
}

/// Whether the daemon answering `h` differs from the one this CLI would start with router
/// port `port`. A daemon that does not report its port (an older build) differs by build.
fn stale(h: &Health, port: u16) -> Option<Stale> {
    if h.commit != paddock_daemon::commit() {
        return Some(Stale::Build);
    }
    match h.router_port {
        Some(daemon) if daemon != port => Some(Stale::RouterPort {
            daemon,
            configured: port,
        }),
        _ => None,
    }
}

/// [`ensure_running`], where a daemon started here does not inherit the environment
/// variables `scrub` (e.g. the one `paddock grant --from-env VAR` read a credential from),
/// nor the credential variables of the built-in grant kinds (GH_TOKEN, …).
pub async fn ensure_running_without(home: &Home, scrub: &[&str]) -> Result<Client> {
    // What a daemon started now would use. A broken user config or PADDOCK_ROUTER_PORT
    // never starts a daemon (and URLs) on defaults nobody asked for. A daemon of this build
    // that already runs is still used, with a warning: stopping or removing a run must
    // not depend on fixing a typo first.
    let client = Client::new(home.socket());
    let port = match crate::commands::configured_router_port() {
        Ok(p) => p,
        Err(e) => match client.health().await {
            Ok(h) if h.commit == paddock_daemon::commit() => {
                eprintln!("warning: {e:#}");
                if let Some(h) = e.downcast_ref::<Hinted>() {
                    eprintln!("hint: {}", h.hint);
                }
                eprintln!(
                    "hint: the running daemon keeps its settings; a new one (`paddock daemon \
                     restart`) starts only once this is fixed"
                );
                return Ok(client);
            }
            _ => return Err(e),
        },
    };
    if let Ok(h) = client.health().await
        && stale(&h, port).is_none()
    {
        return Ok(client);
    }
    home.ensure().map_err(Hinted::from_daemon)?;
    let _lock = lock_spawn(home).await?;
    // Re-check under the lock: another CLI may have done the work.
    if let Ok(h) = client.health().await {
        match stale(&h, port) {
            None => return Ok(client),
            Some(why) => {
                if !replace(&client, &h, &why).await? {
                    return Ok(client);
                }
            }
        }
    }
    spawn_daemon(home, scrub)?;
    wait_for_health(&client, home).await?;
    Ok(client)
}

/// A client of the daemon if it is running; never starts one.
pub async fn running(home: &Home) -> Option<(Client, Health)> {
    let client = Client::new(home.socket());
    let health = client.health().await.ok()?;
    Some((client, health))
}

async fn lock_spawn(home: &Home) -> Result<Flock<std::fs::File>> {
    let path = home.spawn_lock();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    tokio::task::spawn_blocking(move || {
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e)
    })
    .await?
    .with_context(|| format!("locking {}", path.display()))
}

/// The daemon is not the one this CLI would start (`why`). Returns whether it was stopped
/// (and a new one should be started): only when it has no active runs, whose URLs and
/// sandboxes it serves; otherwise a warning says what differs and how to fix it.
async fn replace(client: &Client, h: &Health, why: &Stale) -> Result<bool> {
    let mine = paddock_daemon::commit();
    if h.runs.active > 0 {
        match why {
            Stale::Build => eprintln!(
                "warning: the running paddock daemon is from another build (commit {}, this CLI: {mine}); \
                 it has {} active run(s), so it keeps running.\n\
                 hint: restart it when they are done: `paddock daemon restart`",
                h.commit, h.runs.active
            ),
            Stale::RouterPort { daemon, configured } => eprintln!(
                "warning: the running paddock daemon routes on port {daemon}, but this CLI is \
                 configured for port {configured} (PADDOCK_ROUTER_PORT or `router.port` in \
                 ~/.config/paddock/config.yaml); it has {} active run(s), so it keeps port \
                 {daemon} and their URLs (http://<endpoint>.<run>.localhost:{daemon}).\n\
                 hint: the new port takes effect after `paddock daemon restart` (when those runs are done)",
                h.runs.active
            ),
        }
        return Ok(false);
    }
    match why {
        Stale::Build => {
            tracing::info!(daemon = %h.commit, cli = %mine, "replacing a daemon from another build")
        }
        Stale::RouterPort { daemon, configured } => tracing::info!(
            daemon,
            configured,
            "replacing a daemon whose router port is not the configured one"
        ),
    }
    stop_daemon(client, h.pid).await?;
    Ok(true)
}

/// Ask the daemon to stop, and wait until it is gone.
pub async fn stop_daemon(client: &Client, pid: u32) -> Result<()> {
    let _ = client.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if !pid_alive(pid) && client.health().await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(anyhow!(Hinted::new(
        format!("the paddock daemon (pid {pid}) did not stop within 15 s"),
        format!("look at $PADDOCK_HOME/daemon.log, or stop it with `kill {pid}`"),
    )))
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Zombies count as gone: the daemon's parent (an old CLI) may not have reaped it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Start `paddock daemon` detached: its own session, stdin /dev/null, output to daemon.log,
/// without the credential variables of the built-in grant kinds nor those in `scrub` (the
/// daemon needs none of them: grants reach it through the API).
pub fn spawn_daemon(home: &Home, scrub: &[&str]) -> Result<()> {
    // A daemon that would refuse its settings fails here, not after a 15 s wait.
    crate::commands::configured_router_port()?;
    let exe = std::env::current_exe().context("finding the paddock executable")?;
    let log_path = home.daemon_log();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("daemon")
        .env("PADDOCK_HOME", home.root())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for var in paddock_secrets::KINDS
        .iter()
        .flat_map(|k| k.env.iter().copied())
        .chain(scrub.iter().copied())
    {
        cmd.env_remove(var);
    }
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent; it
    // detaches the daemon from the CLI's terminal and process group.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the paddock daemon")?;
    tracing::info!(pid = child.id(), "started the paddock daemon");
    Ok(())
}

async fn wait_for_health(client: &Client, home: &Home) -> Result<Health> {
    let deadline = Instant::now() + SPAWN_TIMEOUT;
    let mut delay = Duration::from_millis(1);
    loop {
        match client.health().await {
            Ok(h) => return Ok(h),
            Err(e) if Instant::now() >= deadline => {
                let tail = std::fs::read_to_string(home.daemon_log())
                    .map(|s| {
                        s.lines()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                return Err(anyhow!(Hinted::new(
                    format!(
                        "the paddock daemon did not answer within {} s: {e}\n{tail}",
                        SPAWN_TIMEOUT.as_secs()
                    ),
                    format!("see {}", home.daemon_log().display()),
                )));
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// `client` if its daemon has `capability`; else an error saying the running daemon lacks
/// `what` (an older daemon: restart it).
pub async fn require(client: Client, capability: &str, what: &str) -> Result<Client> {
    if !client.health().await?.has(capability) {
        return Err(anyhow!(Hinted::new(
            format!("the running paddock daemon {what}"),
            "restart it to pick up this version: `paddock daemon restart`",
        )));
    }
    Ok(client)
}
