//! paddock-daemon: the composition root. It owns the daemon process: `$PADDOCK_HOME`, the
//! daemon lock, state.db, the event bus, the run manager and the API server, and wires
//! the runtimes into them.
//!
//! Never: parses CLI arguments or prints for humans (that is paddock-cli); never lets
//! anything but itself write state.db.
//!
//! Lifecycle: take `daemon.lock` (one daemon per home), open state.db, the audit writer
//! (signing key, daemon log), the local CA (`ca/`) and the secret store (`secrets/`, key
//! loaded on first use), re-adopt live sandboxes (re-opening their audit logs and restoring
//! their egress listeners), rebuild the hostname router's routes from state.db and start it
//! on 127.0.0.1 (a taken port is reported, never replaced, and retried until free), listen on `daemon.sock` (0600, peers checked by SO_PEERCRED), serve until
//! SIGTERM/SIGINT, `POST /v1/shutdown` or idleness, then stop accepting, let in-flight
//! requests finish, record `daemon.stop` and sign a checkpoint in every open audit log,
//! flush state and remove the socket. Once `daemon.start` is recorded, every way out of
//! [`serve`] (an error while re-adopting, routing or binding, or a panic) records
//! `daemon.stop` too, with the error. Sandboxes keep running.

mod agentstate;
mod audit;
mod bus;
mod dockerhost;
mod egress;
mod error;
mod exec;
mod grants;
mod grants_api;
mod home;
mod logins;
mod metrics;
mod names;
mod review;
mod routing;
mod rundirs;
mod runs;
mod server;
mod snapshots;
mod store;
mod ui;
mod version;
mod worktree;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use paddock_sandbox::Runtime;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use audit::{AuditOptions, key_path as audit_key_path};
pub use bus::EventBus;
pub use error::DaemonError;
pub use home::Home;
pub use names::{check_dns_label, random_name};
pub use routing::{DEFAULT_ROUTER_PORT, endpoint_port_conflict};
pub use runs::SANDBOX_HOME;
pub use ui::DEFAULT_UI_PORT;
pub use version::{VERSION, commit};
pub use worktree::{WORKTREES_DIR, WorktreeError, check_branch_name};

/// Entry points for the fuzz targets in `fuzz/`: the docker:host policy's pure checks
/// (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::dockerhost::policy;
}

/// Default idle time before the daemon exits when it has no runs.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How to run the daemon.
pub struct DaemonOptions {
    pub home: Home,
    /// Exit after this long with no active runs, no open streams and no requests.
    /// `Duration::ZERO` disables idle shutdown.
    pub idle_timeout: Duration,
    pub runtime: Arc<dyn Runtime>,
    /// Checkpoint schedule of the audit logs (`audit:` in the user config).
    pub audit: AuditOptions,
    /// How the egress proxy reaches upstreams (`upstream:` in the user config).
    pub upstream: paddock_config::UpstreamConfig,
    /// Port of the hostname router on 127.0.0.1 (`PADDOCK_ROUTER_PORT`, else `router.port`
    /// in the user config, else [`DEFAULT_ROUTER_PORT`]). Never replaced by another one.
    pub router_port: u16,
    /// Port of the web dashboard on 127.0.0.1 (`PADDOCK_UI_PORT`, else `ui.port`, else
    /// [`DEFAULT_UI_PORT`]; 0 takes a free one). It listens from the first `paddock ui`.
    pub ui_port: u16,
}

/// What `daemon.lock` records (besides being locked for the daemon's lifetime).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    pub version: String,
    pub commit: String,
    pub started_at: String,
    /// The router port the daemon was started with (as in `GET /v1/health`). Lets a CLI
    /// tell whether a running daemon is the one it would start without a request.
    #[serde(default)]
    pub router_port: Option<u16>,
}

/// Read `daemon.lock` and tell whether its daemon is alive (the lock is held).
pub fn read_lock(home: &Home) -> Option<(LockInfo, bool)> {
    let text = std::fs::read_to_string(home.daemon_lock()).ok()?;
    let info: LockInfo = serde_json::from_str(&text).ok()?;
    let file = File::open(home.daemon_lock()).ok()?;
    let held = match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => false,
        Err(_) => true,
    };
    Some((info, held))
}

/// Take the daemon lock, or say who holds it.
fn take_lock(home: &Home, started_at: &str, router_port: u16) -> Result<Flock<File>, DaemonError> {
    let path = home.daemon_lock();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| DaemonError::io("open", &path, e))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, _)) => {
            let pid = read_lock(home)
                .map(|(i, _)| i.pid.to_string())
                .unwrap_or_else(|| "unknown".into());
            return Err(DaemonError::AlreadyRunning {
                home: home.root().display().to_string(),
                pid,
            });
        }
    };
    // The lock is ours: whatever the file said before was a stale daemon's.
    let info = LockInfo {
        pid: std::process::id(),
        version: VERSION.into(),
        commit: commit(),
        started_at: started_at.into(),
        router_port: Some(router_port),
    };
    lock.set_len(0)
        .map_err(|e| DaemonError::io("truncate", &path, e))?;
    let text = serde_json::to_string(&info).expect("lock info serialises");
    lock.write_all(text.as_bytes())
        .map_err(|e| DaemonError::io("write", &path, e))?;
    lock.sync_all()
        .map_err(|e| DaemonError::io("sync", &path, e))?;
    Ok(lock)
}

/// Run the daemon until it is told to stop or goes idle.
/// The daemon holds a few descriptors per live run (sockets, pidfds, logs, listeners in
/// each netns): raise the soft limit on open files toward the hard one, to 65536 at most
/// (sandboxes inherit it; tools that loop over every possible fd stay quick).
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const WANT: u64 = 1 << 16;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let target = WANT.min(hard);
    if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => tracing::debug!(from = soft, to = target, "raised the open-files limit"),
            Err(e) => tracing::warn!(error = %e, soft, "could not raise the open-files limit"),
        }
    }
}

pub async fn serve(opts: DaemonOptions) -> Result<(), DaemonError> {
    raise_nofile();
    let home = opts.home;
    home.ensure()?;
    let started_at = store::now_rfc3339();
    let lock = take_lock(&home, &started_at, opts.router_port)?;

    let store = store::Store::open(&home.state_db())?;
    let audit = audit::Audit::open(&home, opts.audit)?;
    let ca = std::sync::Arc::new(
        paddock_ca::CertAuthority::open_or_create(&home.root().join("ca")).map_err(|e| {
            DaemonError::Config {
                message: format!("the local certificate authority: {e}"),
                hint: e.hint().into(),
            }
        })?,
    );
    let bus = EventBus::with_audit(audit.clone());
    let metrics = metrics::Metrics::new();
    {
        let metrics = metrics.clone();
        bus.set_observer(Arc::new(move |e| metrics.observe_event(e)));
    }
    let grants = Arc::new(grants::Grants::open(&home.secrets_dir(), bus.clone())?);
    let egress = egress::Egress::new(
        paddock_egress::EgressShared::with_ca(ca.clone(), &opts.upstream).map_err(|e| {
            DaemonError::Network {
                message: format!("upstream settings: {e}"),
                hint: format!(
                    "{} (`upstream:` in ~/.config/paddock/config.yaml; restart the daemon after changing it)",
                    e.hint()
                ),
            }
        })?,
        grants.clone(),
    );
    let egress = Arc::new(egress);
    // Logins of live runs are refreshed before they expire (the margin is minutes; a
    // look every 30 s is plenty).
    {
        let egress = Arc::downgrade(&egress);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(e) = egress.upgrade() else { break };
                e.refresh_logins().await;
            }
        });
    }
    let runs = runs::RunManager::new(
        home.clone(),
        store,
        bus.clone(),
        opts.runtime,
        grants,
        egress,
    );
    // First in the daemon log: what re-adoption records comes after it. From here on,
    // every way out of `serve` records `daemon.stop` and closes the logs (`StopRecord`).
    bus.publish(
        None,
        "daemon.start",
        serde_json::json!({ "pid": std::process::id(), "version": VERSION, "commit": commit() }),
    );
    let mut stop_record = StopRecord {
        bus: bus.clone(),
        audit: audit.clone(),
        data: serde_json::json!({
            "pid": std::process::id(),
            "error": "the daemon ended abnormally (panic)",
        }),
    };
    let socket_path = home.socket();
    let result = serve_started(
        &home,
        &runs,
        ca,
        Listen {
            router_port: opts.router_port,
            ui_port: opts.ui_port,
            idle_timeout: opts.idle_timeout,
            metrics,
        },
        started_at,
    )
    .await;
    stop_record.data = match &result {
        Ok(()) => serde_json::json!({ "pid": std::process::id() }),
        Err(e) => serde_json::json!({ "pid": std::process::id(), "error": e.to_string() }),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "the daemon stops on an error");
    }
    // In-flight requests are done (or the daemon never served). Record the stop, close
    // every log, flush state and leave no socket behind.
    drop(stop_record);
    if let Err(e) = runs.store().checkpoint() {
        tracing::warn!(error = %e, "could not checkpoint state.db");
    }
    let _ = std::fs::remove_file(&socket_path);
    drop(lock);
    tracing::info!("paddock daemon stopped");
    result
}

/// Records `daemon.stop` (with `data`: the pid, and the error when `serve` failed) and
/// closes every audit log with a signed checkpoint when dropped: on every way out of
/// `serve` after `daemon.start` was recorded, an early error or a panic included.
struct StopRecord {
    bus: EventBus,
    audit: Arc<audit::Audit>,
    data: serde_json::Value,
}

impl Drop for StopRecord {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if !self.bus.publish_recorded(None, "daemon.stop", data) {
            tracing::error!("could not record daemon.stop in the daemon's audit log");
        }
        self.audit.close_all();
    }
}

/// Where and how the daemon listens.
struct Listen {
    router_port: u16,
    ui_port: u16,
    idle_timeout: Duration,
    metrics: Arc<metrics::Metrics>,
}

/// `serve` after `daemon.start` is recorded: re-adopt, route, listen, serve until told to
/// stop.
async fn serve_started(
    home: &Home,
    runs: &Arc<runs::RunManager>,
    ca: Arc<paddock_ca::CertAuthority>,
    listen: Listen,
    started_at: String,
) -> Result<(), DaemonError> {
    let Listen {
        router_port,
        ui_port,
        idle_timeout,
        metrics,
    } = listen;
    runs.adopt_all().await?;
    // Hostname routing: routes rebuilt from state.db for the runs that are live now, then
    // the listener. A taken port is remembered and reported; the daemon serves anyway.
    let routing = routing::Routing::new(Arc::downgrade(runs), router_port, ca);
    runs.set_routing(routing.clone());
    routing.rebuild(runs.store())?;
    let _ = routing.listen().await;
    routing.keep_listening();

    let socket_path = home.socket();
    match std::fs::remove_file(&socket_path) {
        Ok(()) => tracing::info!("removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            routing.shutdown().await;
            return Err(DaemonError::io("remove", &socket_path, e));
        }
    }
    let listener = match tokio::net::UnixListener::bind(&socket_path)
        .map_err(|e| DaemonError::io("bind", &socket_path, e))
        .and_then(|l| {
            std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| DaemonError::io("chmod", &socket_path, e))?;
            Ok(l)
        }) {
        Ok(l) => l,
        Err(e) => {
            routing.shutdown().await;
            return Err(e);
        }
    };

    let shutdown = Arc::new(Notify::new());
    let state = Arc::new(server::ServerState {
        runs: runs.clone(),
        pid: std::process::id(),
        started_at,
        idle_timeout,
        shutdown: shutdown.clone(),
        open_streams: AtomicUsize::new(0),
        last_request: std::sync::Mutex::new(Instant::now()),
        execs: exec::Sessions::default(),
    });
    tracing::info!(socket = %socket_path.display(), pid = state.pid, "paddock daemon listening");

    let owner = nix::unistd::geteuid().as_raw();
    let dashboard = ui::Ui::new(state.clone(), metrics.clone(), ui_port);
    let app = server::router(state.clone())
        .merge(ui::socket_routes(dashboard.clone()))
        .layer(axum::middleware::from_fn_with_state(
            (metrics, "socket"),
            ui::observe,
        ))
        .into_make_service_with_connect_info::<server::Peer>();
    let stop = stop_signal(state.clone());
    // Accepted on a worker thread, not the thread that blocks on this future: a
    // connection's task then starts on the worker that accepted it, without waking
    // another thread first (one cross-thread hand-over less on every request).
    let serve = axum::serve(server::PeerCheckedListener::new(listener, owner), app)
        .with_graceful_shutdown(stop)
        .into_future();
    let served = match tokio::spawn(serve).await {
        Ok(r) => r.map_err(|e| DaemonError::io("serve", &socket_path, e)),
        Err(e) => Err(DaemonError::io(
            "serve",
            &socket_path,
            std::io::Error::other(e.to_string()),
        )),
    };
    // Upgraded connections outlive graceful shutdown: end the exec sessions now, so that
    // their ends are on the record before daemon.stop.
    state.execs.end_all(Duration::from_secs(5)).await;
    dashboard.shutdown().await;
    routing.shutdown().await;
    served
}

/// Resolves when the daemon should stop: a signal, `POST /v1/shutdown`, or idleness.
async fn stop_signal(state: Arc<server::ServerState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let idle = idle_watch(state.clone());
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = state.shutdown.notified() => tracing::info!("shutdown requested over the API"),
        _ = idle => tracing::info!("idle: shutting down"),
    }
}

async fn idle_watch(state: Arc<server::ServerState>) {
    if state.idle_timeout.is_zero() {
        return std::future::pending().await;
    }
    let tick = (state.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut idle_since = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let active = state.runs.counts().map(|(_, a)| a).unwrap_or(1);
        let streams = state.open_streams.load(Ordering::SeqCst);
        let last = *state.last_request.lock().expect("lock poisoned");
        if active > 0 || streams > 0 {
            idle_since = Instant::now();
            continue;
        }
        let since = idle_since.max(last);
        if since.elapsed() >= state.idle_timeout {
            return;
        }
    }
}
