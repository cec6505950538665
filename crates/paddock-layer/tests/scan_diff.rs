//! Scan classification and diff rendering on hand-built upper dirs.

mod common;

use std::time::Instant;

use common::*;
use paddock_layer::{
    ChangeKind, DiffBody, DiffOptions, FileKind, diff, has_changes, render_diff, scan, summary,
};

fn s(v: &[(char, &str)]) -> Vec<(char, String)> {
    v.iter().map(|(c, p)| (*c, p.to_string())).collect()
}

#[test]
fn added_modified_deleted_and_identical_copy_up() {
    let f = fixture();
    write(&f.ws, "a.txt", "one\n");
    write(&f.ws, "b.txt", "bee\n");
    write(&f.ws, "keep.txt", "same\n");
    write(&f.ws, "run.sh", "#!/bin/sh\n");
    chmod(&f.ws, "run.sh", 0o644);
    write(&f.ws, "d/x", "x\n");

    write(&f.upper, "a.txt", "one\ntwo\n"); // modified
    write(&f.upper, "keep.txt", "same\n"); // identical copy-up
    write(&f.upper, "run.sh", "#!/bin/sh\n");
    chmod(&f.upper, "run.sh", 0o755); // mode only
    write(&f.upper, "new.txt", "new\n"); // added
    mkdir(&f.upper, "d"); // merged dir, unchanged
    write(&f.upper, "d/y", "y\n"); // added inside existing dir
    whiteout(&f.upper, "b.txt"); // deleted
    whiteout(&f.upper, "ghost"); // whiteout of nothing: no change

    let c = scan(&f.upper, &f.ws).unwrap();
    assert_eq!(
        statuses(&c),
        s(&[
            ('M', "a.txt"),
            ('D', "b.txt"),
            ('A', "d/y"),
            ('A', "new.txt"),
            ('M', "run.sh"),
        ])
    );
    let run = c
        .changes
        .iter()
        .find(|c| c.path.ends_with("run.sh"))
        .unwrap();
    assert!(run.mode_changed && !run.content_changed && !run.type_changed);
    let a = &c.changes[0];
    assert!(a.content_changed && !a.mode_changed);

    let sm = summary(&c);
    assert_eq!((sm.added, sm.modified, sm.deleted), (2, 2, 1));
    let text = sm.render();
    assert!(text.contains("M  a.txt\n"), "{text}");
    assert!(text.contains("D  b.txt\n"), "{text}");
    assert!(text.contains("A  new.txt\n"), "{text}");
    assert!(
        text.contains("M  run.sh  (mode 100644 -> 100755)"),
        "{text}"
    );
    assert!(text.ends_with("2 added, 2 modified, 1 deleted\n"), "{text}");

    // JSON for --json.
    let j = serde_json::to_value(&c).unwrap();
    assert_eq!(j["changes"][0]["path"], "a.txt");
    assert_eq!(j["changes"][0]["kind"], "modified");
    serde_json::to_string(&sm).unwrap();
}

#[test]
fn identical_layer_has_no_changes() {
    let f = fixture();
    write(&f.ws, "a/b/c.txt", "c\n");
    write(&f.upper, "a/b/c.txt", "c\n");
    assert!(scan(&f.upper, &f.ws).unwrap().is_empty());
    assert!(!has_changes(&f.upper, &f.ws).unwrap());
    write(&f.upper, "a/new", "n");
    assert!(has_changes(&f.upper, &f.ws).unwrap());
    assert_eq!(
        summary(&scan(&f.upper, &f.ws).unwrap()).render(),
        "A  a/new\n1 added, 0 modified, 0 deleted\n"
    );
}

#[test]
fn whiteout_of_directory_deletes_whole_tree() {
    let f = fixture();
    write(&f.ws, "d/x", "x");
    write(&f.ws, "d/sub/y", "y");
    ln_s(&f.ws, "d/link", "x");
    whiteout(&f.upper, "d");
    let c = scan(&f.upper, &f.ws).unwrap();
    assert_eq!(
        statuses(&c),
        s(&[
            ('D', "d"),
            ('D', "d/link"),
            ('D', "d/sub"),
            ('D', "d/sub/y"),
            ('D', "d/x"),
        ])
    );
}

#[test]
fn opaque_directories_trusted_and_user_xattrs() {
    for prefix in ["trusted", "user"] {
        let f = fixture();
        write(&f.ws, "d/x", "x");
        write(&f.ws, "d/keep", "k\n");
        write(&f.ws, "d/sub/y", "y");
        write(&f.upper, "d/z", "z");
        write(&f.upper, "d/keep", "k\n"); // same bytes in the opaque dir: not a change
        mkdir(&f.upper, "d/sub"); // dir inside an opaque dir is opaque too
        set_xattr(
            &f.upper.join("d"),
            &format!("{prefix}.overlay.opaque"),
            b"y",
        );
        let c = scan(&f.upper, &f.ws).unwrap();
        assert_eq!(
            statuses(&c),
            s(&[('D', "d/sub/y"), ('D', "d/x"), ('A', "d/z")]),
            "prefix {prefix}"
        );
    }
}

#[test]
fn xwhiteouts_and_opaque_x_is_not_opaque() {
    let f = fixture();
    write(&f.ws, "d/gone", "g");
    write(&f.ws, "d/stay", "s");
    write(&f.upper, "d/gone", "");
    set_xattr(&f.upper.join("d/gone"), "trusted.overlay.whiteout", b"");
    set_xattr(&f.upper.join("d"), "trusted.overlay.opaque", b"x");
    let c = scan(&f.upper, &f.ws).unwrap();
    assert_eq!(statuses(&c), s(&[('D', "d/gone")]));

    // user.* variant, and an empty regular file without the xattr is just a file.
    let f = fixture();
    write(&f.ws, "gone", "g");
    write(&f.ws, "empty", "not empty");
    write(&f.upper, "gone", "");
    set_xattr(&f.upper.join("gone"), "user.overlay.whiteout", b"");
    write(&f.upper, "empty", "");
    let c = scan(&f.upper, &f.ws).unwrap();
    assert_eq!(statuses(&c), s(&[('M', "empty"), ('D', "gone")]));
}

#[test]
fn type_changes_and_symlinks() {
    let f = fixture();
    write(&f.ws, "f2d", "file");
    write(&f.ws, "d2f/inner", "i");
    ln_s(&f.ws, "link", "a");
    ln_s(&f.ws, "samelink", "a");
    write(&f.upper, "f2d/child", "c");
    write(&f.upper, "d2f", "now a file");
    ln_s(&f.upper, "link", "b");
    ln_s(&f.upper, "samelink", "a");
    ln_s(&f.upper, "newlink", "../../outside");
    let c = scan(&f.upper, &f.ws).unwrap();
    assert_eq!(
        statuses(&c),
        s(&[
            ('M', "d2f"),
            ('D', "d2f/inner"),
            ('M', "f2d"),
            ('A', "f2d/child"),
            ('M', "link"),
            ('A', "newlink"),
        ])
    );
    assert!(c.changes[0].type_changed);
    assert_eq!(c.changes[2].new.as_ref().unwrap().kind, FileKind::Dir);
    let text = summary(&c).render();
    assert!(
        text.contains("type changed: directory -> regular file"),
        "{text}"
    );
    assert!(
        text.contains("symlink points outside the workspace: ../../outside"),
        "{text}"
    );

    let d = render_diff(&diff(&c, &DiffOptions::default()).unwrap());
    assert!(
        d.contains(
            "diff --git a/link b/link\n--- a/link\n+++ b/link\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n"
        ),
        "{d}"
    );
    assert!(
        d.contains("diff --git a/newlink b/newlink\nnew file mode 120777\n"),
        "{d}"
    );
    // A type change is a deletion then an addition, like git.
    assert!(
        d.contains("diff --git a/d2f b/d2f\ndeleted directory mode 040755\n"),
        "{d}"
    );
    assert!(
        d.contains("diff --git a/d2f b/d2f\nnew file mode 100644\n--- /dev/null\n+++ b/d2f\n"),
        "{d}"
    );
}

#[test]
fn diff_text_binary_mode_large() {
    let f = fixture();
    write(&f.ws, "t.txt", "a\nb\nc\n");
    write(&f.upper, "t.txt", "a\nB\nc\n");
    write_bytes(&f.ws, "bin", b"\x00\x01\x02");
    write_bytes(&f.upper, "bin", b"\x00\x01\x03");
    write(&f.ws, "x.sh", "echo\n");
    write(&f.upper, "x.sh", "echo\n");
    chmod(&f.ws, "x.sh", 0o644);
    chmod(&f.upper, "x.sh", 0o755);
    write(&f.upper, "big", &"line\n".repeat(1000));
    write(&f.ws, "del.txt", "bye\n");
    whiteout(&f.upper, "del.txt");
    write(&f.upper, "suid", "s");
    chmod(&f.upper, "suid", 0o4755);

    let c = scan(&f.upper, &f.ws).unwrap();
    let diffs = diff(
        &c,
        &DiffOptions {
            max_bytes: 1000,
            context: 3,
        },
    )
    .unwrap();
    let by = |p: &str| diffs.iter().find(|d| d.path.to_str() == Some(p)).unwrap();
    assert!(matches!(by("bin").body, DiffBody::Binary));
    assert!(matches!(
        by("big").body,
        DiffBody::TooLarge {
            new_size: Some(5000),
            ..
        }
    ));
    assert!(matches!(by("x.sh").body, DiffBody::None));
    assert_eq!(by("del.txt").change, ChangeKind::Deleted);

    let text = render_diff(&diffs);
    assert!(
        text.contains("diff --git a/t.txt b/t.txt\n--- a/t.txt\n+++ b/t.txt\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"),
        "{text}"
    );
    assert!(
        text.contains("diff --git a/bin b/bin\nBinary files a/bin and b/bin differ\n"),
        "{text}"
    );
    assert!(
        text.contains("diff --git a/x.sh b/x.sh\nold mode 100644\nnew mode 100755\n"),
        "{text}"
    );
    assert!(
        text.contains("diff --git a/del.txt b/del.txt\ndeleted file mode 100644\n--- a/del.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"),
        "{text}"
    );
    assert!(
        text.contains("File too large to diff (old: none, new: 5000 bytes; limit 1000 bytes)"),
        "{text}"
    );
    assert!(
        text.contains("new file mode 104755\n# setuid/setgid bits will be stripped on apply\n"),
        "{text}"
    );
    serde_json::to_string(&diffs).unwrap();
}

#[test]
fn special_files_are_shown() {
    let f = fixture();
    nix::unistd::mkfifo(
        &f.upper.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let c = scan(&f.upper, &f.ws).unwrap();
    assert_eq!(statuses(&c), s(&[('A', "fifo")]));
    assert!(summary(&c).render().contains("fifo: will not be applied"));
    let d = render_diff(&diff(&c, &DiffOptions::default()).unwrap());
    assert!(
        d.contains("# fifo in the layer: it will not be applied"),
        "{d}"
    );
}

#[test]
fn missing_dirs_are_typed_errors() {
    let f = fixture();
    let e = scan(&f.upper.join("nope"), &f.ws).unwrap_err();
    assert!(matches!(
        e,
        paddock_layer::LayerError::NotADirectory { what: "layer", .. }
    ));
    assert!(e.hint().is_some());
}

#[test]
fn scale_scan_10k_files() {
    let f = fixture();
    for d in 0..100 {
        for i in 0..100 {
            write(&f.upper, &format!("d{d}/f{i}.txt"), "x\n");
        }
    }
    // Half of them exist on the host with the same content (copy-ups, not changes).
    for d in 0..50 {
        for i in 0..100 {
            write(&f.ws, &format!("d{d}/f{i}.txt"), "x\n");
        }
    }
    let t = Instant::now();
    let c = scan(&f.upper, &f.ws).unwrap();
    let el = t.elapsed();
    println!(
        "scan of 10k-file upper: {el:?} ({} changes)",
        c.changes.len()
    );
    assert_eq!(c.changes.len(), 50 + 5000);

    let t = Instant::now();
    assert!(has_changes(&f.upper, &f.ws).unwrap());
    println!("has_changes: {:?}", t.elapsed());

    let t = Instant::now();
    paddock_layer::apply(&c, std::time::SystemTime::now(), false).unwrap();
    println!("apply of {} changes: {:?}", c.changes.len(), t.elapsed());
    assert!(scan(&f.upper, &f.ws).unwrap().is_empty());
}
