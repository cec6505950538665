//! Shared helpers for the layer tests: building workspaces and layers, tree snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A snapshot of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File {
        mode: u32,
        data: Vec<u8>,
        mtime: i128,
    },
    Dir {
        mode: u32,
        mtime: Option<i128>,
    },
    Symlink {
        target: PathBuf,
    },
    Other {
        mode: u32,
    },
}

/// Snapshot every entry below `root` (not following symlinks).
/// `dir_mtimes`: include directory mtimes in the comparison.
pub fn snapshot(root: &Path, dir_mtimes: bool) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    if dir_mtimes {
        let md = fs::symlink_metadata(root).unwrap();
        out.insert(
            PathBuf::from("."),
            Node::Dir {
                mode: md.mode() & 0o7777,
                mtime: Some(mtime(&md)),
            },
        );
    }
    walk(root, Path::new(""), dir_mtimes, &mut out);
    out
}

fn mtime(md: &fs::Metadata) -> i128 {
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

fn walk(root: &Path, rel: &Path, dir_mtimes: bool, out: &mut BTreeMap<PathBuf, Node>) {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let p = root.join(&r);
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let mode = md.mode() & 0o7777;
        let node = if ft.is_symlink() {
            Node::Symlink {
                target: fs::read_link(&p).unwrap(),
            }
        } else if ft.is_dir() {
            Node::Dir {
                mode,
                mtime: dir_mtimes.then(|| mtime(&md)),
            }
        } else if ft.is_file() {
            Node::File {
                mode,
                data: fs::read(&p).unwrap(),
                mtime: if dir_mtimes { mtime(&md) } else { 0 },
            }
        } else {
            Node::Other { mode }
        };
        let is_dir = ft.is_dir();
        out.insert(r.clone(), node);
        if is_dir {
            walk(root, &r, dir_mtimes, out);
        }
    }
}

pub fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

pub fn write_bytes(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

pub fn mkdir(root: &Path, rel: &str) {
    fs::create_dir_all(root.join(rel)).unwrap();
}

pub fn chmod(root: &Path, rel: &str, mode: u32) {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

pub fn ln_s(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

/// A char-device 0/0 whiteout (needs CAP_MKNOD: root).
pub fn whiteout(root: &Path, rel: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    nix::sys::stat::mknod(
        &p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let cp = CString::new(path.as_os_str().as_bytes()).unwrap();
    let cn = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A time safely after everything written so far and before anything written next
/// (kernel file timestamps use a coarse clock).
pub fn settle_now() -> SystemTime {
    std::thread::sleep(Duration::from_millis(30));
    let t = SystemTime::now();
    std::thread::sleep(Duration::from_millis(30));
    t
}

/// Staging dirs left at the workspace root.
pub fn leftovers(ws: &Path) -> Vec<PathBuf> {
    fs::read_dir(ws)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(paddock_layer::STAGING_PREFIX)
        })
        .collect()
}

pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub ws: PathBuf,
    pub upper: PathBuf,
}

pub fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let upper = tmp.path().join("upper");
    fs::create_dir_all(&ws).unwrap();
    fs::create_dir_all(&upper).unwrap();
    Fixture {
        _tmp: tmp,
        ws,
        upper,
    }
}

/// Compact view of a scan: ("A"/"M"/"D", path).
pub fn statuses(c: &paddock_layer::Changes) -> Vec<(char, String)> {
    c.changes
        .iter()
        .map(|c| (c.kind.letter(), c.path.to_string_lossy().into_owned()))
        .collect()
}

pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cp = CString::new(path.as_os_str().as_bytes()).unwrap();
    let cn = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a writable buffer of the given length.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}
