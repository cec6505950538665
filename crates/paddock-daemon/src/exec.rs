//! `exec`: another command inside a running run's sandbox (`POST /v1/runs/{ref}/exec`).
//!
//! The command is exactly as confined as the run's own: the runtime's
//! [`ExecCapability`](paddock_sandbox::ExecCapability) has the sandbox's PID 1 fork it, so
//! it shares the run's user, mount, pid, network, uts, ipc and cgroup namespaces and its
//! cgroup, runs as the same unprivileged uid, and gets the same confinement right before
//! exec (every capability dropped, no_new_privs, the seccomp deny list, the Landlock
//! ruleset). Its environment is the run's (proxy and CA variables, grant placeholders,
//! service URLs, the run's identity) with the request's variables over it.
//!
//! On the record, in the run's audit log: `run.exec` (exec id, command, tty, stdin, the
//! *names* of the request's variables) is durable before the process is started, and
//! `run.exec.exit` (exec id, exit code, signal, reason) follows however it ends: its own
//! exit, a failure to start, the sandbox ending under it, the client going away or the
//! daemon stopping (both kill it: nobody is left to read its output; a stopping daemon
//! waits for these records before its own `daemon.stop`).
//!
//! Never: records an environment variable's value; lets an exec change the run's
//! identity (`PADDOCK`, `PADDOCK_RUN_ID`, `PADDOCK_RUN_NAME`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use paddock_api::attach::{Frame, read_frame, write_frame};
use paddock_api::{ExecRequest, ExecResult, RunState};
use paddock_sandbox::{AttachInput, Attachment, ExitInfo, OutputStream, SandboxSpec, TtySize};
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, oneshot, watch};

use crate::DaemonError;
use crate::bus::EventBus;
use crate::runs::RunManager;

/// The daemon's live exec sessions: at shutdown they are ended (their commands killed)
/// and their ends recorded before the daemon records its own stop and closes the logs.
pub struct Sessions {
    stop: watch::Sender<bool>,
    live: AtomicUsize,
    idle: Notify,
}

/// Counts one live session until dropped.
pub struct SessionGuard<'a>(&'a Sessions);

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            stop: watch::channel(false).0,
            live: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }
}

impl Sessions {
    /// A session begins: its guard, and the signal to end it.
    pub fn enter(&self) -> (SessionGuard<'_>, watch::Receiver<bool>) {
        self.live.fetch_add(1, Ordering::SeqCst);
        (SessionGuard(self), self.stop.subscribe())
    }

    /// End every live session (their commands are killed) and wait, at most `timeout`,
    /// until each has recorded its end.
    pub async fn end_all(&self, timeout: Duration) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let idle = self.idle.notified();
                if self.live.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
    }
}

/// Variables an exec cannot set: the run's identity.
const IDENTITY: &[&str] = &["PADDOCK", "PADDOCK_RUN_ID", "PADDOCK_RUN_NAME"];

/// A started exec: its I/O, and how it ends. Recording its end is owed until
/// [`finish`](ExecSession::finish); dropped before that, it kills the command and records
/// the abandonment.
pub struct ExecSession {
    run_id: String,
    exec_id: String,
    attachment: Attachment,
    exit: oneshot::Receiver<ExitInfo>,
    bus: EventBus,
    finished: bool,
    /// Why the daemon ended it, when it did (recorded when the runtime reports no reason).
    ended_by: Option<&'static str>,
}

/// A new exec id (`exec_<8 hex>`), unique enough within one run's log.
fn new_exec_id() -> String {
    let n: u32 = rand::rng().random();
    format!("exec_{n:08x}")
}

fn check_request(req: &ExecRequest) -> Result<(), DaemonError> {
    if req.command.is_empty() {
        return Err(DaemonError::bad_request(
            "exec needs a command",
            "give it after `--`, e.g. `paddock exec RUN -- ls -la`",
        ));
    }
    if req.command.iter().any(|a| a.contains('\0')) {
        return Err(DaemonError::bad_request(
            "the command contains a NUL byte",
            "remove it",
        ));
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(DaemonError::bad_request(
                format!("invalid environment variable `{}`", k.escape_default()),
                "names may not be empty or contain `=`; values may not contain NUL",
            ));
        }
        if IDENTITY.contains(&k.as_str()) {
            return Err(DaemonError::bad_request(
                format!("`{k}` is the run's identity and cannot be changed by an exec"),
                "drop this -e; the exec'd command sees the run's own value",
            ));
        }
    }
    Ok(())
}

/// Why a run in `state` cannot take an exec (409, with what to do instead).
fn not_running(id: &str, name: &str, state: RunState) -> DaemonError {
    let (message, hint) = match state {
        RunState::Created => (
            format!("run {id} ({name}) has not been started"),
            "exec needs a running run; start one with `paddock run -d …`".to_string(),
        ),
        RunState::Starting => (
            format!("run {id} ({name}) is still starting"),
            format!("retry in a moment; `paddock inspect {name}` shows its state"),
        ),
        RunState::Stopping => (
            format!("run {id} ({name}) is stopping"),
            "exec needs a running run; start a new one with `paddock run`".to_string(),
        ),
        _ => (
            format!("run {id} ({name}) has ended ({state})"),
            format!(
                "exec needs a running run: see what it did with `paddock logs {name}`, or start a new one with `paddock run`"
            ),
        ),
    };
    DaemonError::Conflict { message, hint }
}

/// Check the request and the run, record `run.exec`, and start the command.
pub async fn start(
    runs: &Arc<RunManager>,
    id: &str,
    req: ExecRequest,
) -> Result<ExecSession, DaemonError> {
    check_request(&req)?;
    let rec = runs
        .store()
        .get(id)?
        .ok_or_else(|| DaemonError::RunNotFound {
            reference: id.to_string(),
        })?;
    if rec.run.state != RunState::Running {
        return Err(not_running(id, &rec.run.name, rec.run.state));
    }
    let Some(exec) = runs.runtime().as_exec() else {
        return Err(DaemonError::Unsupported {
            message: format!(
                "the {} runtime cannot exec into a sandbox",
                runs.runtime().kind().as_str()
            ),
            hint: "use the native runtime".into(),
        });
    };
    let spec: SandboxSpec = rec
        .spec
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| DaemonError::Conflict {
            message: format!("run {id} has no sandbox spec to take its environment from"),
            hint: "it was created by an incompatible paddock version; start a new run".into(),
        })?;
    let handle = runs.sandbox_handle(id)?;
    // The run's complete environment, the request's variables over it.
    let mut env: BTreeMap<String, String> = spec.env.into_iter().collect();
    let env_names: Vec<&String> = req.env.keys().collect();
    let exec_id = new_exec_id();
    let recorded = serde_json::json!({
        "exec_id": exec_id,
        "command": req.command,
        "tty": req.tty,
        "stdin": req.stdin,
        "env_names": env_names,
    });
    env.extend(req.env.clone());

    // On the record before the process exists.
    let bus = runs.bus().clone();
    if bus.audit().is_some() {
        let (b, rid) = (bus.clone(), id.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            b.publish_recorded(Some(&rid), "run.exec", recorded)
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(DaemonError::Audit {
                message: format!("could not record the exec in run {id}'s audit log"),
                hint: "nothing was started; see $PADDOCK_HOME/daemon.log".into(),
            });
        }
    } else {
        bus.publish(Some(id), "run.exec", recorded);
    }

    let started = exec
        .exec_with_exit(
            &handle,
            req.command.clone(),
            env.into_iter().collect(),
            req.tty,
        )
        .await;
    let (attachment, exit) = match started {
        Ok(v) => v,
        Err(e) => {
            let result = ExecResult {
                exec_id: exec_id.clone(),
                exit_code: None,
                signal: None,
                reason: Some(format!("could not start: {e}")),
            };
            record_end(&bus, id, &result);
            return Err(match e {
                paddock_sandbox::SandboxError::NotRunning { .. } => {
                    not_running(id, &rec.run.name, RunState::Stopped)
                }
                e => e.into(),
            });
        }
    };
    if req.tty
        && let Some(s) = req.tty_size
    {
        let _ = attachment
            .input
            .send(AttachInput::Resize(TtySize {
                rows: s.rows,
                cols: s.cols,
            }))
            .await;
    }
    if !req.stdin && !req.tty {
        let _ = attachment.input.send(AttachInput::CloseStdin).await;
    }
    Ok(ExecSession {
        run_id: id.to_string(),
        exec_id,
        attachment,
        exit,
        bus,
        finished: false,
        ended_by: None,
    })
}

/// Run `command` in run `id`'s sandbox with `input` as its stdin, to the end (on the
/// record like any exec); returns how it ended and its output (stdout and stderr, up to
/// 64 KiB).
pub async fn run_with_input(
    runs: &Arc<RunManager>,
    id: &str,
    command: Vec<String>,
    input: Vec<u8>,
) -> Result<(ExecResult, Vec<u8>), DaemonError> {
    let req = ExecRequest {
        command,
        env: BTreeMap::new(),
        tty: false,
        stdin: true,
        tty_size: None,
    };
    let mut session = start(runs, id, req).await?;
    let tx = session.attachment.input.clone();
    let feed = tokio::spawn(async move {
        for chunk in input.chunks(64 * 1024) {
            if tx.send(AttachInput::Stdin(chunk.to_vec())).await.is_err() {
                return;
            }
        }
        let _ = tx.send(AttachInput::CloseStdin).await;
    });
    let mut output = Vec::new();
    while let Some(c) = session.attachment.output.recv().await {
        if output.len() < 64 * 1024 {
            output.extend_from_slice(&c.data);
        }
    }
    let _ = feed.await;
    Ok((session.finish().await, output))
}

fn record_end(bus: &EventBus, run_id: &str, r: &ExecResult) {
    bus.publish(
        Some(run_id),
        "run.exec.exit",
        serde_json::json!({
            "exec_id": r.exec_id,
            "exit_code": r.exit_code,
            "signal": r.signal,
            "reason": r.reason,
        }),
    );
}

impl ExecSession {
    /// Kill the command (its process group), recording `why` as the reason of its end.
    fn end(&mut self, why: &'static str) {
        self.ended_by.get_or_insert(why);
        self.kill();
    }

    /// Kill the command (its process group).
    pub fn kill(&self) {
        let msg = AttachInput::Signal(libc::SIGKILL);
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(msg)) =
            self.attachment.input.try_send(msg)
        {
            // Queued input ahead of it: deliver it after that, without blocking here (the
            // sandbox side may be waiting for its output to be read).
            let tx = self.attachment.input.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(msg).await;
                });
            }
        }
    }

    /// Wait until the command has ended, and record how (`run.exec.exit`).
    pub async fn finish(mut self) -> ExecResult {
        let exit = (&mut self.exit).await.unwrap_or(ExitInfo {
            exit_code: None,
            signal: None,
            oom_killed: false,
            reason: Some("the sandbox runtime stopped reporting on it".into()),
        });
        let result = ExecResult {
            exec_id: self.exec_id.clone(),
            exit_code: exit.exit_code,
            signal: exit.signal,
            reason: exit.reason.or(self.ended_by.map(str::to_string)),
        };
        record_end(&self.bus, &self.run_id, &result);
        self.finished = true;
        result
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if !self.finished {
            self.kill();
            record_end(
                &self.bus,
                &self.run_id,
                &ExecResult {
                    exec_id: self.exec_id.clone(),
                    exit_code: None,
                    signal: Some(libc::SIGKILL),
                    reason: Some("killed: its session ended before it began".into()),
                },
            );
        }
    }
}

/// Drive one exec session over an upgraded connection: output out, input in, then the
/// `Exit` frame with the [`ExecResult`].
pub async fn serve<IO>(mut session: ExecSession, io: IO, mut stop: watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let input = session.attachment.input.clone();
    // Client → command. Ends with true when the client is gone.
    let mut input_task = tokio::spawn(async move {
        loop {
            let msg = match read_frame(&mut rd).await {
                Ok(Some(Frame::Stdin(b))) => AttachInput::Stdin(b),
                Ok(Some(Frame::CloseStdin)) => AttachInput::CloseStdin,
                Ok(Some(Frame::Resize { rows, cols })) => {
                    AttachInput::Resize(TtySize { rows, cols })
                }
                Ok(Some(Frame::Signal(s))) => AttachInput::Signal(s),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return true,
            };
            if input.send(msg).await.is_err() {
                return false;
            }
        }
    });
    // Command → client, until its output ends. A client that goes away, or a daemon that
    // stops, ends the command: nobody would be left to read its output.
    let mut client = true;
    let mut input_done = false;
    let mut stopping = *stop.borrow();
    if stopping {
        session.end("killed: the daemon stopped");
    }
    loop {
        let chunk = tokio::select! {
            c = session.attachment.output.recv() => c,
            r = stop.changed(), if !stopping => {
                if r.is_err() || *stop.borrow() {
                    stopping = true;
                    session.end("killed: the daemon stopped");
                }
                continue;
            }
            gone = &mut input_task, if !input_done => {
                input_done = true;
                if gone.unwrap_or(true) {
                    client = false;
                    session.end("killed: the client went away");
                }
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        if !client {
            continue;
        }
        let frame = match chunk.stream {
            OutputStream::Stderr => Frame::Stderr(chunk.data),
            OutputStream::Stdout | OutputStream::Tty => Frame::Stdout(chunk.data),
        };
        if write_frame(&mut wr, &frame).await.is_err() {
            client = false;
            session.end("killed: the client went away");
        }
    }
    let result = session.finish().await;
    if client {
        let body = serde_json::to_vec(&result).unwrap_or_default();
        if write_frame(&mut wr, &Frame::Exit(body)).await.is_ok() {
            let _ = wr.shutdown().await;
        }
    }
    if !input_done {
        input_task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(env: &[(&str, &str)]) -> ExecRequest {
        ExecRequest {
            command: vec!["true".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tty: false,
            stdin: false,
            tty_size: None,
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(check_request(&req(&[("FOO", "bar")])).is_ok());
        for bad in [
            req(&[("PADDOCK_RUN_ID", "run_x")]),
            req(&[("A=B", "c")]),
            req(&[("", "c")]),
            ExecRequest {
                command: vec![],
                ..req(&[])
            },
        ] {
            let e = check_request(&bad).unwrap_err();
            assert_eq!(e.status(), 400, "{e}");
        }
    }

    #[test]
    fn not_running_is_a_conflict_with_a_hint() {
        for s in [
            RunState::Created,
            RunState::Starting,
            RunState::Stopping,
            RunState::Stopped,
            RunState::Failed,
        ] {
            let e = not_running("run_1", "n", s);
            assert_eq!(e.status(), 409);
            assert!(e.hint().is_some_and(|h| h.contains("paddock")), "{e}");
        }
    }
}
