//! Injected files shared between runs: one copy on disk per distinct content.
//!
//! Most of what the daemon injects (the CA bundle of about 220 KiB, resolv.conf) is the
//! same for every run. Writing it into each run's directory cost a create two new inodes
//! and a quarter of a megabyte. Instead each distinct content is written once, named by its
//! SHA-256, under `$PADDOCK_HOME/cache/files/`, and every run that injects it bind-mounts
//! that one file read-only. Contents seen by this process are remembered, so a start that
//! injects known contents does no file I/O at all.
//!
//! Owns: `$PADDOCK_HOME/cache/files/`. Never: hands out a path whose file could differ from
//! the contents asked for (files are named by their hash and written by temp + rename), or
//! makes a cached file writable (0444, and the sandbox sees it through a read-only bind).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// How many distinct contents are remembered in memory (each is also kept, shared, to
/// compare against without hashing).
const REMEMBERED: usize = 16;

pub(crate) struct FileCache {
    dir: PathBuf,
    known: Mutex<Vec<(Arc<[u8]>, PathBuf)>>,
}

impl FileCache {
    pub fn new(paddock_home: &Path) -> Self {
        FileCache {
            dir: paddock_home.join("cache").join("files"),
            known: Mutex::new(Vec::new()),
        }
    }

    /// A read-only file holding exactly `contents`.
    pub fn path_for(&self, contents: &Arc<[u8]>) -> std::io::Result<PathBuf> {
        {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            // The daemon hands every run the same shared bundle: usually the same
            // allocation, found without comparing a byte.
            let same = |c: &Arc<[u8]>| Arc::ptr_eq(c, contents) || c[..] == contents[..];
            if let Some((_, p)) = known.iter().find(|(c, _)| same(c)) {
                return Ok(p.clone());
            }
        }
        let name = hex(&Sha256::digest(contents));
        let path = self.dir.join(&name);
        if !matches!(std::fs::read(&path), Ok(on_disk) if on_disk[..] == contents[..]) {
            self.write(&path, &name, contents)?;
        }
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= REMEMBERED {
            known.remove(0);
        }
        known.push((contents.clone(), path.clone()));
        Ok(path)
    }

    fn write(&self, path: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        // A unique temporary name: two writers (threads of one daemon, or two daemons of
        // one home) never share one; a crash's leftover is never read (it is not a hash).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o444))?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &[u8]) -> Arc<[u8]> {
        Arc::from(b)
    }

    #[test]
    fn same_contents_share_one_read_only_file_and_different_contents_do_not() {
        let home = tempfile::tempdir().unwrap();
        let cache = FileCache::new(home.path());
        let a = cache.path_for(&bytes(b"bundle")).unwrap();
        let again = cache.path_for(&bytes(b"bundle")).unwrap();
        let b = cache.path_for(&bytes(b"resolv")).unwrap();
        assert_eq!(a, again);
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"bundle");
        assert_eq!(std::fs::read(&b).unwrap(), b"resolv");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
    }

    #[test]
    fn concurrent_first_uses_of_one_content_all_get_the_file() {
        // Several starts may inject contents this process has not seen yet at once; each
        // must get the complete file (the race is narrow, so try it many times).
        let contents: Arc<[u8]> = Arc::from(vec![7u8; 64 << 10]);
        for _ in 0..100 {
            let home = tempfile::tempdir().unwrap();
            let cache = Arc::new(FileCache::new(home.path()));
            let start = Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (cache, contents, start) = (cache.clone(), contents.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        cache.path_for(&contents).unwrap()
                    })
                })
                .collect();
            let paths: Vec<PathBuf> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert!(paths.iter().all(|p| *p == paths[0]));
            assert_eq!(std::fs::read(&paths[0]).unwrap(), &contents[..]);
        }
    }

    #[test]
    fn a_damaged_cached_file_is_rewritten_by_a_new_process() {
        let home = tempfile::tempdir().unwrap();
        let p = FileCache::new(home.path())
            .path_for(&bytes(b"bundle"))
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&p, b"tampered").unwrap();
        // A fresh cache (a restarted daemon) checks what is on disk before using it.
        let again = FileCache::new(home.path())
            .path_for(&bytes(b"bundle"))
            .unwrap();
        assert_eq!(again, p);
        assert_eq!(std::fs::read(&p).unwrap(), b"bundle");
    }
}
