//! [`Runtimes`]: several backends behind one [`Runtime`], so the daemon keeps one seam.
//!
//! `create` and `start` go to the backend the spec names ([`SandboxSpec::runtime`]); every
//! other call goes to the backend that made the handle ([`SandboxHandle::kind`]). A kind
//! without a backend is refused with the reason its probe gives.
//!
//! Owns: nothing but the dispatch. Never: falls back from one backend to another (a run
//! asked for gVisor never silently runs on runc or native).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{
    Adopted, Attachment, EventSink, ExecCapability, ExitInfo, LogQuery, NetnsCapability,
    OutputChunk, Runtime, RuntimeKind, SandboxError, SandboxHandle, SandboxSpec, SandboxStats,
    StatsCapability,
};

/// The daemon's backends; the first is the default kind.
pub struct Runtimes {
    backends: Vec<Arc<dyn Runtime>>,
}

impl Runtimes {
    /// `backends[0]` is the default (native); one backend per kind.
    pub fn new(backends: Vec<Arc<dyn Runtime>>) -> Self {
        assert!(!backends.is_empty(), "at least one runtime");
        Runtimes { backends }
    }

    pub fn get(&self, kind: RuntimeKind) -> Result<&Arc<dyn Runtime>, SandboxError> {
        self.backends
            .iter()
            .find(|b| b.kind() == kind)
            .ok_or_else(|| SandboxError::Unsupported {
                message: format!(
                    "the {} runtime is not available in this daemon",
                    kind.as_str()
                ),
                hint: "`paddock doctor` lists the runtimes and how to enable them".into(),
            })
    }

    fn of(&self, handle: &SandboxHandle) -> Result<&Arc<dyn Runtime>, SandboxError> {
        self.get(handle.kind)
    }
}

#[async_trait]
impl Runtime for Runtimes {
    fn kind(&self) -> RuntimeKind {
        self.backends[0].kind()
    }

    async fn probe(&self, kind: RuntimeKind) -> Result<String, SandboxError> {
        self.get(kind)?.probe(kind).await
    }

    fn lay_out(&self, run_dir: &Path) -> Result<(), SandboxError> {
        self.backends[0].lay_out(run_dir)
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle, SandboxError> {
        self.get(spec.runtime)?.create(spec).await
    }

    async fn start(
        &self,
        handle: &SandboxHandle,
        spec: &SandboxSpec,
        events: EventSink,
    ) -> Result<SandboxHandle, SandboxError> {
        self.of(handle)?.start(handle, spec, events).await
    }

    async fn attach(&self, handle: &SandboxHandle) -> Result<Attachment, SandboxError> {
        self.of(handle)?.attach(handle).await
    }

    async fn wait(&self, handle: &SandboxHandle) -> Result<ExitInfo, SandboxError> {
        self.of(handle)?.wait(handle).await
    }

    async fn stop(
        &self,
        handle: &SandboxHandle,
        grace: Duration,
    ) -> Result<ExitInfo, SandboxError> {
        self.of(handle)?.stop(handle, grace).await
    }

    async fn kill(&self, handle: &SandboxHandle, signal: i32) -> Result<(), SandboxError> {
        self.of(handle)?.kill(handle, signal).await
    }

    async fn logs(
        &self,
        handle: &SandboxHandle,
        query: LogQuery,
    ) -> Result<mpsc::Receiver<OutputChunk>, SandboxError> {
        self.of(handle)?.logs(handle, query).await
    }

    async fn destroy(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        self.of(handle)?.destroy(handle).await
    }

    async fn adopt(
        &self,
        handle: &SandboxHandle,
        events: EventSink,
    ) -> Result<Adopted, SandboxError> {
        self.of(handle)?.adopt(handle, events).await
    }

    fn as_exec(&self) -> Option<&dyn ExecCapability> {
        Some(self)
    }

    fn as_stats(&self) -> Option<&dyn StatsCapability> {
        Some(self)
    }

    fn as_netns(&self) -> Option<&dyn NetnsCapability> {
        Some(self)
    }
}

fn missing(handle: &SandboxHandle, what: &str) -> SandboxError {
    SandboxError::Unsupported {
        message: format!("the {} runtime cannot {what}", handle.kind.as_str()),
        hint: "use the native runtime".into(),
    }
}

#[async_trait]
impl ExecCapability for Runtimes {
    async fn exec(
        &self,
        handle: &SandboxHandle,
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
    ) -> Result<Attachment, SandboxError> {
        let b = self.of(handle)?;
        let x = b.as_exec().ok_or_else(|| missing(handle, "exec"))?;
        x.exec(handle, command, env, tty).await
    }

    async fn exec_with_exit(
        &self,
        handle: &SandboxHandle,
        command: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
    ) -> Result<(Attachment, tokio::sync::oneshot::Receiver<ExitInfo>), SandboxError> {
        let b = self.of(handle)?;
        let x = b.as_exec().ok_or_else(|| missing(handle, "exec"))?;
        x.exec_with_exit(handle, command, env, tty).await
    }
}

#[async_trait]
impl StatsCapability for Runtimes {
    async fn stats(&self, handle: &SandboxHandle) -> Result<SandboxStats, SandboxError> {
        let b = self.of(handle)?;
        let x = b
            .as_stats()
            .ok_or_else(|| missing(handle, "report stats"))?;
        x.stats(handle).await
    }
}

impl NetnsCapability for Runtimes {
    fn netns_fd(&self, handle: &SandboxHandle) -> Result<OwnedFd, SandboxError> {
        let b = self.of(handle)?;
        b.as_netns()
            .ok_or_else(|| missing(handle, "give a run its network"))?
            .netns_fd(handle)
    }

    fn socket_in_netns(
        &self,
        handle: &SandboxHandle,
        domain: i32,
        ty: i32,
    ) -> Result<OwnedFd, SandboxError> {
        let b = self.of(handle)?;
        b.as_netns()
            .ok_or_else(|| missing(handle, "give a run its network"))?
            .socket_in_netns(handle, domain, ty)
    }

    fn sockets_in_netns(
        &self,
        handle: &SandboxHandle,
        kinds: &[(i32, i32)],
    ) -> Result<Vec<OwnedFd>, SandboxError> {
        let b = self.of(handle)?;
        b.as_netns()
            .ok_or_else(|| missing(handle, "give a run its network"))?
            .sockets_in_netns(handle, kinds)
    }

    fn release(&self, handle: &SandboxHandle) -> Result<(), SandboxError> {
        let b = self.of(handle)?;
        b.as_netns()
            .ok_or_else(|| missing(handle, "give a run its network"))?
            .release(handle)
    }
}
