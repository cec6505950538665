//! Run directories laid out ahead of time.
//!
//! A run directory holds half a dozen directories before it starts (the runtime's layer
//! and home; the audit log's directory). Each is a new inode, and on a busy disk each
//! mkdir costs from 0.03 to 0.8 ms (ext4 without a journal scans the inodes freed in the
//! last minutes on every allocation). So the daemon keeps [`READY`] empty directories laid
//! out under `runs/.ready/`, and a create claims one with a single rename to
//! `runs/<run_id>`. A background thread lays out the next one. A claim that finds none
//! makes nothing: the run's directory and what is in it are made when they are first
//! needed (the audit writer makes the log's, the runtime's start its own).
//!
//! A ready directory belongs to no run: it holds only empty directories (what
//! `Runtime::lay_out` makes and `audit/`), nothing of any run, so one left over by a
//! stopped daemon is simply claimed by the next.
//!
//! The layout is one thread at normal priority, and the run's audit log files are created
//! by its writer, not here: in a burst of creates the layout is what falls behind.
//!
//! Owns: `runs/.ready/`. Never: hands one directory to two runs (a claim is a rename, which
//! only one caller can win), or lays out anything a run wrote.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

/// How many directories are kept ready.
const READY: usize = 4;

/// Where the layout thread builds, under `.ready/` (see `lay_out_one`).
const BUILDING: &str = ".building";

type LayOut = dyn Fn(&Path) -> std::io::Result<()> + Send + Sync;

pub struct RunDirs {
    ready_dir: PathBuf,
    ready: Mutex<Vec<PathBuf>>,
    lay_out: Box<LayOut>,
    /// Wakes the one thread that lays directories out (started by the first refill;
    /// capacity 1, so wake-ups that arrive while it works coalesce). It holds only a weak
    /// reference and ends when this is dropped.
    wake: OnceLock<SyncSender<()>>,
}

impl RunDirs {
    /// `lay_out` fills an empty directory with what a run needs before it is created.
    /// Ready directories left by an earlier daemon are taken over.
    pub fn new(runs_dir: &Path, lay_out: Box<LayOut>) -> Arc<Self> {
        let ready_dir = runs_dir.join(".ready");
        let ready = take_over(&ready_dir);
        Arc::new(RunDirs {
            ready_dir,
            ready: Mutex::new(ready),
            lay_out,
            wake: OnceLock::new(),
        })
    }

    /// Put a ready directory (0700) at `run_dir` when there is one, and have another laid
    /// out in the background. Returns whether it did; when it did not, nothing is made
    /// (the run's directory is made by whatever first needs it).
    pub fn claim(self: &Arc<Self>, run_dir: &Path) -> bool {
        let spare = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop();
        self.refill();
        let Some(spare) = spare else { return false };
        match std::fs::rename(&spare, run_dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, dir = %spare.display(), "a ready run directory could not be claimed");
                false
            }
        }
    }

    /// Have directories laid out until [`READY`] are waiting, on the layout thread (never
    /// the caller's: a claim only sends a wake-up).
    pub fn refill(self: &Arc<Self>) {
        let wake = self.wake.get_or_init(|| {
            let (tx, rx) = sync_channel::<()>(1);
            let me = Arc::downgrade(self);
            // Should the thread not start, `rx` is gone and claims make plain directories.
            let _ = std::thread::Builder::new()
                .name("paddock-rundirs".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        let Some(me) = me.upgrade() else { return };
                        me.fill();
                    }
                });
            tx
        });
        let _ = wake.try_send(());
    }

    fn fill(&self) {
        while self.ready.lock().unwrap_or_else(|e| e.into_inner()).len() < READY {
            match self.lay_out_one() {
                Ok(p) => self.ready.lock().unwrap_or_else(|e| e.into_inner()).push(p),
                Err(e) => {
                    tracing::debug!(error = %e, "could not lay out a run directory ahead of time");
                    return;
                }
            }
        }
    }

    fn lay_out_one(&self) -> std::io::Result<PathBuf> {
        let building = self.ready_dir.join(BUILDING);
        for d in [&self.ready_dir, &building] {
            make_private_dir(d).or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })?;
        }
        let name = format!("{:016x}", rand::random::<u64>());
        // Built elsewhere, then renamed in: a directory under its final name is always
        // complete. And not built in `.ready/` itself: a mkdir holds its parent's lock for
        // as long as the inode takes to allocate (up to a millisecond), which a claim's
        // rename out of `.ready/` would wait for.
        let tmp = building.join(&name);
        make_private_dir(&tmp)?;
        let built = (self.lay_out)(&tmp).and_then(|()| make_private_dir(&tmp.join("audit")));
        let done = self.ready_dir.join(name);
        match built.and_then(|()| std::fs::rename(&tmp, &done)) {
            Ok(()) => Ok(done),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }
}

/// The ready directories an earlier daemon left, after removing its unfinished layouts
/// (under [`BUILDING`], or `*.tmp` from older daemons).
fn take_over(ready_dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(ready_dir) else {
        return Vec::new();
    };
    let (unfinished, ready): (Vec<PathBuf>, Vec<PathBuf>) =
        rd.flatten().map(|e| e.path()).partition(|p| {
            p.file_name().is_some_and(|n| n == BUILDING)
                || p.extension().is_some_and(|e| e == "tmp")
        });
    for p in unfinished {
        let _ = std::fs::remove_dir_all(p);
    }
    ready
}

fn make_private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dirs(runs: &Path) -> Arc<RunDirs> {
        RunDirs::new(
            runs,
            Box::new(|d: &Path| std::fs::create_dir(d.join("home"))),
        )
    }

    fn wait_ready(d: &RunDirs, n: usize) {
        for _ in 0..500 {
            if d.ready.lock().unwrap().len() >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no ready directories");
    }

    #[test]
    fn claims_are_laid_out_private_and_distinct() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dirs(tmp.path());
        d.refill();
        wait_ready(&d, READY);
        let claimed: Vec<PathBuf> = (0..READY)
            .map(|i| tmp.path().join(format!("run_{i}")))
            .collect();
        for p in &claimed {
            assert!(d.claim(p));
            assert_eq!(
                std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
                0o700
            );
            assert!(p.join("home").is_dir() && p.join("audit").is_dir());
        }
        std::fs::write(claimed[0].join("home/x"), b"a").unwrap();
        assert!(!claimed[1].join("home/x").exists());
    }

    #[test]
    fn a_later_daemon_takes_over_ready_directories_and_drops_unfinished_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dirs(tmp.path());
        d.refill();
        wait_ready(&d, READY);
        std::fs::create_dir(tmp.path().join(".ready/half.tmp")).unwrap();
        std::fs::create_dir_all(tmp.path().join(".ready/.building/half")).unwrap();
        drop(d);
        let again = dirs(tmp.path());
        assert_eq!(again.ready.lock().unwrap().len(), READY);
        assert!(!tmp.path().join(".ready/half.tmp").exists());
        assert!(!tmp.path().join(".ready/.building").exists());
        assert!(again.claim(&tmp.path().join("run_x")));
        assert!(tmp.path().join("run_x/home").is_dir());
    }

    #[test]
    fn a_claim_without_any_ready_directory_makes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let d = RunDirs::new(
            &tmp.path().join("missing"),
            Box::new(|_: &Path| Err(std::io::Error::other("cannot lay out"))),
        );
        let p = tmp.path().join("run_y");
        assert!(!d.claim(&p));
        assert!(!p.exists());
    }
}
