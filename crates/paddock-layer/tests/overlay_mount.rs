//! End to end with a real overlayfs mount: write through the mount in a private mount
//! namespace (`unshare -m`, needs root), unmount, then check that `scan` sees exactly what
//! was done and that `apply` makes the real workspace equal to the merged view.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use common::*;
use paddock_layer::{DiffOptions, apply, diff, render_diff, scan, summary};

/// As root: `trusted.overlay.*` xattrs, `redirect_dir=off`.
#[test]
fn real_overlay_scan_and_apply_root() {
    real_overlay(false);
}

/// As in a rootless daemon: a user namespace, `userxattr` (so `user.overlay.*` xattrs).
/// With `userxattr` the kernel rejects `redirect_dir=off`; `nofollow` creates no redirects
/// either (a directory rename falls back to copy + delete, as with `off`).
#[test]
fn real_overlay_scan_and_apply_userxattr() {
    real_overlay(true);
}

fn real_overlay(rootless: bool) {
    if !is_root() {
        eprintln!("skipping: overlay mount test needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (ws, upper, work, mnt, expected) = (
        t.join("ws"),
        t.join("layer/upper"),
        t.join("layer/work"),
        t.join("mnt"),
        t.join("expected"),
    );
    for d in [&ws, &upper, &work, &mnt, &expected] {
        fs::create_dir_all(d).unwrap();
    }
    write(&ws, "edit.txt", "line 1\n");
    write(&ws, "del.txt", "bye\n");
    write(&ws, "keep.txt", "same\n");
    write(&ws, "touched.txt", "same\n");
    write(&ws, "chm.sh", "#!/bin/sh\n");
    chmod(&ws, "chm.sh", 0o644);
    write(&ws, "mv_src.txt", "moving\n");
    write(&ws, "dir/a", "a");
    write(&ws, "dir/b/c", "c");
    write(&ws, "tree/x/y", "y");
    write(&ws, "olddir/f", "f");
    write_bytes(&ws, "bin.dat", b"\x00\x00");
    ln_s(&ws, "oldlink", "edit.txt");
    let ws_before = snapshot(&ws, false);

    let started = settle_now();
    let script = format!(
        r#"set -e
mount -t overlay overlay -o lowerdir={ws},upperdir={upper},workdir={work},{opts} {mnt}
cd {mnt}
echo "line 2" >> edit.txt
rm del.txt
rm -rf tree
mv mv_src.txt mv_dst.txt
mv olddir newdir
chmod 755 chm.sh
chmod 644 touched.txt
cp keep.txt keep.tmp && mv keep.tmp keep.txt
ln -s edit.txt link
rm oldlink
mkdir -p new/deep && echo hi > new/deep/f
rm -rf dir && mkdir dir && echo z > dir/z
printf '\001\002' > bin.dat
cd /
cp -a {mnt}/. {expected}/
umount {mnt}
"#,
        ws = ws.display(),
        upper = upper.display(),
        work = work.display(),
        mnt = mnt.display(),
        expected = expected.display(),
        opts = if rootless {
            "redirect_dir=nofollow,metacopy=off,index=off,userxattr"
        } else {
            "redirect_dir=off,metacopy=off,index=off"
        },
    );
    let ns_args: &[&str] = if rootless {
        &["-U", "--map-root-user", "-m"]
    } else {
        &["-m"]
    };
    let out = Command::new("unshare")
        .args(ns_args)
        .args(["--propagation", "private", "sh", "-c", &script])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping: cannot run unshare: {e}");
            return;
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("mount") && !upper.read_dir().unwrap().any(|_| true) {
            eprintln!("skipping: overlay mount unavailable: {err}");
            return;
        }
        panic!("overlay script failed: {err}");
    }
    assert_eq!(snapshot(&ws, false), ws_before, "the lower is untouched");

    // The opaque marker of the re-created dir uses the expected xattr namespace.
    let prefix = if rootless { "user" } else { "trusted" };
    assert_eq!(
        get_xattr(&upper.join("dir"), &format!("{prefix}.overlay.opaque")).as_deref(),
        Some(&b"y"[..])
    );
    let c = scan(&upper, &ws).unwrap();
    let got: BTreeSet<(char, String)> = statuses(&c).into_iter().collect();
    let want: BTreeSet<(char, String)> = [
        ('M', "edit.txt"),
        ('D', "del.txt"),
        ('D', "tree"),
        ('D', "tree/x"),
        ('D', "tree/x/y"),
        ('D', "mv_src.txt"),
        ('A', "mv_dst.txt"),
        ('D', "olddir"),
        ('D', "olddir/f"),
        ('A', "newdir"),
        ('A', "newdir/f"),
        ('M', "chm.sh"),
        ('A', "link"),
        ('D', "oldlink"),
        ('A', "new"),
        ('A', "new/deep"),
        ('A', "new/deep/f"),
        ('D', "dir/a"),
        ('D', "dir/b"),
        ('D', "dir/b/c"),
        ('A', "dir/z"),
        ('M', "bin.dat"),
    ]
    .iter()
    .map(|(c, p)| (*c, p.to_string()))
    .collect();
    assert_eq!(
        got,
        want,
        "extra: {:?}\nmissing: {:?}",
        got.difference(&want).collect::<Vec<_>>(),
        want.difference(&got).collect::<Vec<_>>()
    );
    // Parents always come before their children.
    for (i, ch) in c.changes.iter().enumerate() {
        for later in &c.changes[i + 1..] {
            assert!(
                !ch.path.starts_with(&later.path),
                "{:?} before its parent",
                ch.path
            );
        }
    }
    let text = summary(&c).render();
    println!("{text}");
    assert!(
        text.contains("M  chm.sh  (mode 100644 -> 100755)"),
        "{text}"
    );
    let d = render_diff(&diff(&c, &DiffOptions::default()).unwrap());
    assert!(
        d.contains("--- a/edit.txt\n+++ b/edit.txt\n@@ -1 +1,2 @@\n line 1\n+line 2\n"),
        "{d}"
    );
    assert!(
        d.contains("Binary files a/bin.dat and b/bin.dat differ"),
        "{d}"
    );

    let r = apply(&c, started, false).unwrap();
    assert_eq!(r.applied.total(), want.len());
    assert_eq!(snapshot(&ws, false), snapshot(&expected, false));
    assert!(leftovers(&ws).is_empty());
    assert!(
        scan(&upper, &ws).unwrap().is_empty(),
        "nothing left to apply"
    );
}
