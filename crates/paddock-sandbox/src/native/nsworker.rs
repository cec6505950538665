//! One long-lived thread that makes sockets inside runs' network namespaces (root daemon).
//!
//! `setns` changes the calling thread's network namespace for good, so it never runs on a
//! runtime thread. Rather than a thread per request (a spawn and a join on every start),
//! this thread enters the run's namespace, makes the sockets, and returns to the
//! namespace it was started in before it answers.
//!
//! Owns: that thread. Never: calls anything but `socket` while inside a run's namespace,
//! or takes another request unless it is back in its own namespace (a thread that cannot
//! return ends, and the next request starts a new one).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::mpsc;

use nix::sched::CloneFlags;

use super::sys;

type Reply = std::io::Result<Vec<OwnedFd>>;

struct Job {
    netns: OwnedFd,
    kinds: Vec<(i32, i32)>,
    reply: mpsc::SyncSender<Reply>,
}

#[derive(Default)]
pub(crate) struct NsWorker {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
}

impl NsWorker {
    /// Sockets of `kinds` (domain, type) made inside `netns`. Blocks until they are made.
    pub fn sockets(&self, netns: OwnedFd, kinds: &[(i32, i32)]) -> Reply {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut job = Job {
            netns,
            kinds: kinds.to_vec(),
            reply,
        };
        // A thread that ended (it could not return to its namespace) is replaced once.
        for _ in 0..2 {
            let tx = {
                let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
                if tx.is_none() {
                    *tx = Some(start()?);
                }
                tx.clone().expect("just set")
            };
            match tx.send(job) {
                Ok(()) => {
                    return answer
                        .recv()
                        .unwrap_or_else(|_| Err(std::io::Error::other("the netns thread ended")));
                }
                Err(mpsc::SendError(back)) => {
                    job = back;
                    *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
            }
        }
        Err(std::io::Error::other("the netns thread cannot be started"))
    }
}

/// Start the thread; it remembers the namespace of the thread that starts it.
fn start() -> std::io::Result<mpsc::Sender<Job>> {
    let home = File::open("/proc/thread-self/ns/net")?;
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("paddock-netns".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            for job in rx {
                if let Err(e) = nix::sched::setns(job.netns.as_fd(), CloneFlags::CLONE_NEWNET) {
                    let _ = job.reply.send(Err(e.into()));
                    continue;
                }
                let made: Reply = job
                    .kinds
                    .iter()
                    .map(|&(domain, ty)| sys::new_socket(domain, ty))
                    .collect();
                let back = nix::sched::setns(home.as_fd(), CloneFlags::CLONE_NEWNET);
                let _ = job.reply.send(made);
                if back.is_err() {
                    tracing::error!(
                        "the netns thread could not return to its namespace; ending it"
                    );
                    return;
                }
            }
        })?;
    Ok(tx)
}
