//! The overlay layer reader (`paddock_layer::scan`, `summary`, `diff`, `render_diff`,
//! `has_changes`): what `paddock diff` and `paddock apply` see of a run's upper directory.
//!
//! Input: a description of two small trees, an overlay upper directory and a workspace,
//! built in a temporary directory (on tmpfs when there is one): files (a few contents and
//! modes, setuid included), directories (modes; `overlay.opaque` = `y`, `x` or junk, under
//! `trusted.` or `user.`; now and then an `overlay.redirect`, which the reader refuses),
//! symlinks, FIFOs, whiteouts (0/0 character devices, only as root) and xwhiteouts (empty
//! files with `overlay.whiteout`), with names that collide between the trees and include
//! non-UTF-8 bytes, control characters and dashes.
//!
//! Properties:
//! - nothing panics; a layer with a redirect is an error, anything else scans;
//! - the changes are exactly those the overlay rules give (a model of the merged view,
//!   computed from the description): same paths in the same order (parents first), same
//!   kinds, same content/mode/type flags;
//! - `has_changes` agrees with `scan`; the summary counts what the scan found and renders
//!   one line per change; the diff and its rendering succeed; the changes serialise.
#![no_main]

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use paddock_layer::{ChangeKind, DiffOptions, diff, has_changes, render_diff, scan, summary};

const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b".git",
    b"paddock.yaml",
    b"-n",
    b"sp ace",
    b"\xff\xfe",
    b"nl\nx",
    b"esc\x1b[31m",
    b"\xe2\x80\xaeevil",
    b"z",
];
const CONTENTS: &[&[u8]] = &[
    b"",
    b"one\n",
    b"two\n",
    b"one\ntwo\n",
    b"\x00\x01bin",
    b"one\n",
];
const FILE_MODES: &[u32] = &[0o644, 0o755, 0o600, 0o4755, 0o2644];
const DIR_MODES: &[u32] = &[0o755, 0o700, 0o1777];
const TARGETS: &[&[u8]] = &[b"a", b"../x", b"/etc/passwd", b"\xff", b"b/c"];

#[derive(Debug, Clone)]
enum Node {
    File {
        content: &'static [u8],
        mode: u32,
        origin: bool,
    },
    Dir {
        children: Vec<(&'static [u8], Node)>,
        mode: u32,
        opaque: Option<&'static [u8]>,
        redirect: bool,
        trusted: bool,
    },
    Symlink(&'static [u8]),
    Fifo(u32),
    /// A 0/0 character device (upper only, as root).
    Whiteout,
    /// An empty file with `overlay.whiteout` (upper only).
    XWhiteout {
        trusted: bool,
    },
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn node(u: &mut Unstructured<'_>, upper: bool, depth: u32) -> Result<Node> {
    let max = if upper { 7 } else { 3 };
    let mut pick = u.int_in_range(0..=max)?;
    if depth >= 3 && (pick == 1 || pick == 5) {
        pick = 0;
    }
    if pick == 4 && !root() {
        pick = 0;
    }
    Ok(match pick {
        1 | 5 => {
            let mut children: Vec<(&'static [u8], Node)> = Vec::new();
            for _ in 0..u.int_in_range(0..=4)? {
                let name = *u.choose(NAMES)?;
                if children.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                children.push((name, node(u, upper, depth + 1)?));
            }
            Node::Dir {
                children,
                mode: *u.choose(DIR_MODES)?,
                opaque: if upper && u.ratio(1, 3)? {
                    Some(*u.choose(&[&b"y"[..], b"x", b"n", b"yy"])?)
                } else {
                    None
                },
                redirect: upper && u.ratio(1, 64)?,
                trusted: u.arbitrary()?,
            }
        }
        2 => Node::Symlink(u.choose(TARGETS)?),
        3 => Node::Fifo(*u.choose(&[0o644, 0o600])?),
        4 => Node::Whiteout,
        6 => Node::XWhiteout {
            trusted: u.arbitrary()?,
        },
        _ => Node::File {
            content: u.choose(CONTENTS)?,
            mode: *u.choose(FILE_MODES)?,
            origin: upper && u.ratio(1, 4)?,
        },
    })
}

fn top(u: &mut Unstructured<'_>, upper: bool) -> Result<Vec<(&'static [u8], Node)>> {
    let mut children: Vec<(&'static [u8], Node)> = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let name = *u.choose(NAMES)?;
        if children.iter().any(|(n, _)| *n == name) {
            continue;
        }
        children.push((name, node(u, upper, 1)?));
    }
    Ok(children)
}

fn xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
    let n = CString::new(name).expect("no NUL in the name");
    // SAFETY: both strings are NUL-terminated and outlive the call; value is a valid slice.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
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

fn prefix(trusted: bool) -> &'static str {
    if trusted {
        "trusted.overlay."
    } else {
        "user.overlay."
    }
}

fn build(dir: &Path, children: &[(&'static [u8], Node)]) {
    for (name, n) in children {
        let p = dir.join(OsStr::from_bytes(name));
        match n {
            Node::File {
                content,
                mode,
                origin,
            } => {
                std::fs::write(&p, content).expect("write a file");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                    .expect("chmod");
                if *origin {
                    xattr(&p, "trusted.overlay.origin", b"\x00\xfb");
                }
            }
            Node::Dir {
                children,
                mode,
                opaque,
                redirect,
                trusted,
            } => {
                std::fs::create_dir(&p).expect("mkdir");
                build(&p, children);
                if let Some(v) = opaque {
                    xattr(&p, &format!("{}opaque", prefix(*trusted)), v);
                }
                if *redirect {
                    xattr(&p, &format!("{}redirect", prefix(*trusted)), b"/elsewhere");
                }
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                    .expect("chmod");
            }
            Node::Symlink(t) => symlink(OsStr::from_bytes(t), &p).expect("symlink"),
            Node::Fifo(mode) => {
                let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
                // SAFETY: c is a NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), *mode) }, 0, "mkfifo");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                    .expect("chmod");
            }
            Node::Whiteout => {
                let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
                // SAFETY: c is a NUL-terminated path; a 0/0 character device is a whiteout.
                let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
                assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
            }
            Node::XWhiteout { trusted } => {
                std::fs::write(&p, b"").expect("write a file");
                xattr(&p, &format!("{}whiteout", prefix(*trusted)), b"");
            }
        }
    }
}

/// What the model expects of one changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    path: Vec<u8>,
    kind: ChangeKind,
    content: bool,
    mode: bool,
    typ: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lower {
    None,
    Merge,
    Replace,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum K {
    File,
    Dir,
    Symlink,
    Fifo,
}

fn kind_of(n: &Node) -> K {
    match n {
        Node::File { .. } => K::File,
        Node::Dir { .. } => K::Dir,
        Node::Symlink(_) => K::Symlink,
        Node::Fifo(_) => K::Fifo,
        Node::Whiteout | Node::XWhiteout { .. } => unreachable!("whiteouts are handled first"),
    }
}

fn mode_of(n: &Node) -> u32 {
    match n {
        Node::File { mode, .. } | Node::Dir { mode, .. } | Node::Fifo(mode) => *mode,
        Node::Symlink(_) => 0o777,
        _ => 0,
    }
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

fn ch(path: Vec<u8>, kind: ChangeKind, content: bool, mode: bool, typ: bool) -> Expect {
    Expect {
        path,
        kind,
        content,
        mode,
        typ,
    }
}

fn deleted_tree(rel: &[u8], lower: &Node, out: &mut Vec<Expect>) {
    if let Node::Dir { children, .. } = lower {
        let mut sorted: Vec<_> = children.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (name, n) in sorted {
            let p = join(rel, name);
            out.push(ch(p.clone(), ChangeKind::Deleted, true, false, false));
            deleted_tree(&p, n, out);
        }
    }
}

/// The overlay rules over the model (see paddock-layer's scan module docs).
fn expect(
    rel: &[u8],
    upper: &[(&'static [u8], Node)],
    lower: &[(&'static [u8], Node)],
    mode: Lower,
    out: &mut Vec<Expect>,
) {
    let mut names: Vec<&[u8]> = upper.iter().map(|(n, _)| *n).collect();
    if mode == Lower::Replace {
        names.extend(lower.iter().map(|(n, _)| *n));
    }
    names.sort();
    names.dedup();
    for name in names {
        let p = join(rel, name);
        let host = if mode == Lower::None {
            None
        } else {
            lower.iter().find(|(n, _)| *n == name).map(|(_, n)| n)
        };
        let Some(up) = upper.iter().find(|(n, _)| *n == name).map(|(_, n)| n) else {
            if let Some(h) = host {
                out.push(ch(p.clone(), ChangeKind::Deleted, true, false, false));
                deleted_tree(&p, h, out);
            }
            continue;
        };
        if matches!(up, Node::Whiteout | Node::XWhiteout { .. }) {
            if let Some(h) = host {
                out.push(ch(p.clone(), ChangeKind::Deleted, true, false, false));
                deleted_tree(&p, h, out);
            }
            continue;
        }
        if let Node::Dir {
            children, opaque, ..
        } = up
        {
            let opaque = *opaque == Some(&b"y"[..]);
            let (child_lower, lower_children): (Lower, &[(&'static [u8], Node)]) = match host {
                Some(Node::Dir { children: lc, .. }) => (
                    if opaque || mode == Lower::Replace {
                        Lower::Replace
                    } else {
                        Lower::Merge
                    },
                    lc,
                ),
                _ => (Lower::None, &[]),
            };
            match host {
                None => out.push(ch(p.clone(), ChangeKind::Added, true, false, false)),
                Some(h @ Node::Dir { .. }) => {
                    if mode_of(h) != mode_of(up) {
                        out.push(ch(p.clone(), ChangeKind::Modified, false, true, false));
                    }
                }
                Some(_) => out.push(ch(p.clone(), ChangeKind::Modified, true, false, true)),
            }
            expect(&p, children, lower_children, child_lower, out);
            continue;
        }
        match host {
            None => out.push(ch(p, ChangeKind::Added, true, false, false)),
            Some(h) => {
                if kind_of(h) != kind_of(up) {
                    out.push(ch(p.clone(), ChangeKind::Modified, true, false, true));
                    deleted_tree(&p, h, out);
                    continue;
                }
                let content = match (h, up) {
                    (Node::File { content: a, .. }, Node::File { content: b, .. }) => a != b,
                    (Node::Symlink(a), Node::Symlink(b)) => a != b,
                    _ => false,
                };
                let mode = mode_of(h) != mode_of(up) && kind_of(up) != K::Symlink;
                if content || mode {
                    out.push(ch(p, ChangeKind::Modified, content, mode, false));
                }
            }
        }
    }
}

fn has_redirect(children: &[(&'static [u8], Node)]) -> bool {
    children.iter().any(|(_, n)| match n {
        Node::Dir {
            redirect, children, ..
        } => *redirect || has_redirect(children),
        _ => false,
    })
}

fn base() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        parent.join(format!("paddock-fuzz-layer-{}", std::process::id()))
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let upper_tree = top(u, true)?;
    let lower_tree = top(u, false)?;
    let base = base();
    let _ = std::fs::remove_dir_all(base);
    let (upper, ws) = (base.join("upper"), base.join("ws"));
    std::fs::create_dir_all(&upper).expect("mkdir upper");
    std::fs::create_dir_all(&ws).expect("mkdir ws");
    build(&upper, &upper_tree);
    build(&ws, &lower_tree);

    let scanned = scan(&upper, &ws);
    let quick = has_changes(&upper, &ws);
    if has_redirect(&upper_tree) {
        assert!(scanned.is_err(), "a layer with a redirect scanned");
        assert!(quick.is_err() || quick.as_ref().is_ok_and(|c| *c));
        return Ok(());
    }
    let changes = scanned.unwrap_or_else(|e| panic!("scan failed: {e}"));
    assert_eq!(quick.expect("has_changes"), !changes.is_empty());

    let mut want = Vec::new();
    expect(b"", &upper_tree, &lower_tree, Lower::Merge, &mut want);
    let got: Vec<Expect> = changes
        .changes
        .iter()
        .map(|c| Expect {
            path: c.path.as_os_str().as_bytes().to_vec(),
            kind: c.kind,
            content: c.content_changed,
            mode: c.mode_changed,
            typ: c.type_changed,
        })
        .collect();
    assert_eq!(got, want, "scan differs from the overlay model");

    let s = summary(&changes);
    assert_eq!(s.total(), changes.changes.len());
    assert_eq!(s.entries.len(), changes.changes.len());
    let text = s.render();
    assert_eq!(text.lines().count(), changes.changes.len() + 1, "{text}");
    let diffs = diff(&changes, &DiffOptions::default()).unwrap_or_else(|e| panic!("diff: {e}"));
    let _ = render_diff(&diffs);
    let _ = serde_json::to_string(&changes).expect("changes serialise");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
