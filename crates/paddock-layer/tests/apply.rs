//! Applying layers: results, conflicts, rollback, recovery, refusals.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use paddock_layer::{ApplyOptions, LayerError, apply, apply_with, recover, scan};

/// A workspace and a layer that exercise every kind of operation.
fn rich_fixture() -> Fixture {
    let f = fixture();
    write(&f.ws, "a.txt", "one\n");
    write(&f.ws, "b.txt", "bee\n");
    write(&f.ws, "keep.txt", "keep\n");
    write(&f.ws, "run.sh", "#!/bin/sh\n");
    chmod(&f.ws, "run.sh", 0o644);
    write(&f.ws, "old/x", "x");
    write(&f.ws, "old/deep/y", "y");
    write(&f.ws, "opq/gone", "g");
    write(&f.ws, "opq/kept", "k");
    write(&f.ws, "f2d", "file");
    write(&f.ws, "d2f/inner", "i");
    ln_s(&f.ws, "link", "a.txt");
    mkdir(&f.ws, "modedir");
    chmod(&f.ws, "modedir", 0o755);

    write(&f.upper, "a.txt", "one\ntwo\n");
    whiteout(&f.upper, "b.txt");
    write(&f.upper, "keep.txt", "keep\n");
    write(&f.upper, "run.sh", "#!/bin/sh\n");
    chmod(&f.upper, "run.sh", 0o755);
    whiteout(&f.upper, "old");
    write(&f.upper, "opq/kept", "k");
    write(&f.upper, "opq/new", "n");
    set_xattr(&f.upper.join("opq"), "trusted.overlay.opaque", b"y");
    write(&f.upper, "f2d/child", "c");
    write(&f.upper, "d2f", "now a file");
    ln_s(&f.upper, "link", "b.txt");
    ln_s(&f.upper, "newlink", "a.txt");
    mkdir(&f.upper, "modedir");
    chmod(&f.upper, "modedir", 0o700);
    mkdir(&f.upper, "empty/nested");
    write(&f.upper, "ro/file", "r");
    chmod(&f.upper, "ro", 0o555);
    write(&f.upper, "new/sub/file.txt", "hello\n");
    f
}

/// The tree the rich fixture must produce.
fn expected_rich(f: &Fixture) -> Fixture {
    let e = fixture();
    write(&e.ws, "a.txt", "one\ntwo\n");
    write(&e.ws, "keep.txt", "keep\n");
    write(&e.ws, "run.sh", "#!/bin/sh\n");
    chmod(&e.ws, "run.sh", 0o755);
    write(&e.ws, "opq/kept", "k");
    write(&e.ws, "opq/new", "n");
    write(&e.ws, "f2d/child", "c");
    write(&e.ws, "d2f", "now a file");
    ln_s(&e.ws, "link", "b.txt");
    ln_s(&e.ws, "newlink", "a.txt");
    mkdir(&e.ws, "modedir");
    chmod(&e.ws, "modedir", 0o700);
    mkdir(&e.ws, "empty/nested");
    write(&e.ws, "ro/file", "r");
    chmod(&e.ws, "ro", 0o555);
    write(&e.ws, "new/sub/file.txt", "hello\n");
    let _ = f;
    e
}

#[test]
fn apply_makes_workspace_match_the_layer() {
    let f = rich_fixture();
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    let r = apply(&c, started, false).unwrap();
    assert_eq!(r.applied.total(), c.changes.len());
    assert!(r.conflicts_overridden.is_empty());
    let e = expected_rich(&f);
    assert_eq!(snapshot(&f.ws, false), snapshot(&e.ws, false));
    assert!(leftovers(&f.ws).is_empty());
    // Nothing left to apply.
    assert!(scan(&f.upper, &f.ws).unwrap().is_empty());
    serde_json::to_string(&r).unwrap();
}

#[test]
fn conflicts_are_refused_and_listed_then_force_applies() {
    let f = fixture();
    write(&f.ws, "mod.txt", "base\n");
    write(&f.ws, "del.txt", "base\n");
    write(&f.ws, "quiet.txt", "base\n");
    write(&f.upper, "mod.txt", "run\n");
    whiteout(&f.upper, "del.txt");
    write(&f.upper, "added.txt", "run\n");
    write(&f.upper, "quiet.txt", "run\n");
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    // Host changes after the run started.
    write(&f.ws, "mod.txt", "host\n");
    write(&f.ws, "del.txt", "host edit\n");
    write(&f.ws, "added.txt", "host too\n");
    let before = snapshot(&f.ws, true);

    let e = apply(&c, started, false).unwrap_err();
    let LayerError::Conflicts { paths } = &e else {
        panic!("expected conflicts, got {e}")
    };
    let names: Vec<_> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(names, ["added.txt", "del.txt", "mod.txt"]);
    let msg = e.to_string();
    for n in ["added.txt", "del.txt", "mod.txt"] {
        assert!(msg.contains(n), "{msg}");
    }
    assert!(!msg.contains("quiet.txt"), "{msg}");
    let hint = e.hint().unwrap();
    assert!(
        hint.contains("paddock diff") && hint.contains("--force"),
        "{hint}"
    );
    assert_eq!(
        snapshot(&f.ws, true),
        before,
        "a refused apply changes nothing"
    );
    assert!(leftovers(&f.ws).is_empty());

    let r = apply(&c, started, true).unwrap();
    assert_eq!(r.conflicts_overridden.len(), 3);
    assert_eq!(fs::read_to_string(f.ws.join("mod.txt")).unwrap(), "run\n");
    assert_eq!(fs::read_to_string(f.ws.join("added.txt")).unwrap(), "run\n");
    assert_eq!(fs::read_to_string(f.ws.join("quiet.txt")).unwrap(), "run\n");
    assert!(!f.ws.join("del.txt").exists());
}

#[test]
fn host_deleting_a_file_the_run_modified_is_a_conflict() {
    let f = fixture();
    write(&f.ws, "m.txt", "base\n");
    write(&f.upper, "m.txt", "run\n");
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    fs::remove_file(f.ws.join("m.txt")).unwrap();
    let e = apply(&c, started, false).unwrap_err();
    assert!(
        matches!(e, LayerError::Conflicts { ref paths } if paths.len() == 1),
        "{e}"
    );
}

#[test]
fn a_failure_at_any_step_rolls_back_exactly() {
    let f = rich_fixture();
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    let before = snapshot(&f.ws, true);
    let mut k = 0;
    loop {
        let mut o = ApplyOptions::new(started);
        o.fail_before_op = Some(k);
        match apply_with(&c, &o) {
            Err(LayerError::RolledBack { .. }) => {}
            Ok(_) => break, // k is past the last operation: it applied
            Err(e) => panic!("step {k}: unexpected {e}"),
        }
        assert_eq!(snapshot(&f.ws, true), before, "after failing before op {k}");
        assert!(leftovers(&f.ws).is_empty(), "staging left after op {k}");
        k += 1;
    }
    assert!(k > 10, "the rich fixture has many operations ({k})");
    let e = expected_rich(&f);
    assert_eq!(snapshot(&f.ws, false), snapshot(&e.ws, false));
}

/// FS_IOC_SETFLAGS with FS_IMMUTABLE_FL: a real EPERM in the middle of the commit.
fn set_immutable(p: &Path, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x80086601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x40086602;
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let Ok(fd) = fs::File::open(p) else {
        return false;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`, a valid local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return false;
    }
    if on {
        flags |= FS_IMMUTABLE_FL;
    } else {
        flags &= !FS_IMMUTABLE_FL;
    }
    // SAFETY: FS_IOC_SETFLAGS reads one long from `flags`, a valid local.
    unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_SETFLAGS, &flags) == 0 }
}

#[test]
fn a_real_midway_error_rolls_back() {
    let f = fixture();
    write(&f.ws, "a.txt", "a\n");
    write(&f.ws, "m/locked.txt", "host\n");
    write(&f.ws, "z.txt", "z\n");
    write(&f.upper, "a.txt", "A\n");
    write(&f.upper, "b-new.txt", "new\n");
    write(&f.upper, "m/locked.txt", "run\n");
    whiteout(&f.upper, "z.txt");
    if !set_immutable(&f.ws.join("m"), true) {
        eprintln!("skipping: filesystem has no immutable flag (or not root)");
        return;
    }
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    let before = snapshot(&f.ws, true);
    let e = apply(&c, started, false).unwrap_err();
    set_immutable(&f.ws.join("m"), false);
    let LayerError::RolledBack { source } = &e else {
        panic!("expected a rollback, got {e}")
    };
    assert!(source.to_string().contains("m/locked.txt"), "{source}");
    assert!(e.to_string().contains("rolled back"), "{e}");
    assert_eq!(snapshot(&f.ws, true), before);
    assert!(leftovers(&f.ws).is_empty());
}

#[test]
fn recovery_from_a_killed_apply_at_any_step() {
    let f = rich_fixture();
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    let before = snapshot(&f.ws, true);
    let mut k = 0;
    loop {
        let mut o = ApplyOptions::new(started);
        o.crash_before_op = Some(k);
        // A standalone recover() cannot tell which layer the journal was for, so it keeps
        // no ledger of the entries it moved back: their new ctimes would read as conflicts.
        o.force = true;
        match apply_with(&c, &o) {
            Err(LayerError::Journal { .. }) => {}
            Ok(_) => break,
            Err(e) => panic!("step {k}: unexpected {e}"),
        }
        assert_eq!(leftovers(&f.ws).len(), 1, "the journal stays after a crash");
        if k > 0 {
            assert_ne!(
                snapshot(&f.ws, true),
                before,
                "crash after op {k} left partial state"
            );
        }
        let r = recover(&f.ws).unwrap();
        assert_eq!(r.rolled_back.len(), 1);
        assert_eq!(
            snapshot(&f.ws, true),
            before,
            "after recovering a crash before op {k}"
        );
        assert!(leftovers(&f.ws).is_empty());
        k += 1;
    }
    let e = expected_rich(&f);
    assert_eq!(snapshot(&f.ws, false), snapshot(&e.ws, false));
}

#[test]
fn apply_recovers_first_and_committed_leftovers_are_cleaned() {
    let f = rich_fixture();
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    let mut o = ApplyOptions::new(started);
    o.crash_before_op = Some(5);
    apply_with(&c, &o).unwrap_err();
    // A second apply rolls the first back, then applies from a clean state.
    let r = apply(&c, started, false).unwrap();
    assert_eq!(r.recovered.rolled_back.len(), 1);
    assert_eq!(
        snapshot(&f.ws, false),
        snapshot(&expected_rich(&f).ws, false)
    );

    // A committed apply whose cleanup was interrupted: just removed, nothing undone.
    let st =
        f.ws.join(format!("{}deadbeef", paddock_layer::STAGING_PREFIX));
    mkdir(&st, "s");
    mkdir(&st, "b");
    write(&st, "b/0", "old backup");
    write(
        &st,
        "journal",
        r#"{"version":1,"ops":[{"Backup":{"idx":0,"path":[97,46,116,120,116]}}],"dir_times":[]}"#,
    );
    write(&st, "committed", "1\n");
    let before = snapshot(&f.ws, false);
    let r = recover(&f.ws).unwrap();
    assert_eq!((r.cleaned.len(), r.rolled_back.len()), (1, 0));
    assert!(leftovers(&f.ws).is_empty());
    let mut after = snapshot(&f.ws, false);
    after.retain(|_, _| true);
    let mut before = before;
    before.retain(|p, _| !p.starts_with(st.file_name().unwrap()));
    assert_eq!(after, before);
}

#[test]
fn a_journal_with_escaping_paths_is_rejected() {
    let f = fixture();
    let st = f.ws.join(format!("{}evil", paddock_layer::STAGING_PREFIX));
    mkdir(&st, "s");
    mkdir(&st, "b");
    write(&st, "b/0", "payload");
    // path "../x"
    write(
        &st,
        "journal",
        r#"{"version":1,"ops":[{"Backup":{"idx":0,"path":[46,46,47,120]}}],"dir_times":[]}"#,
    );
    let e = recover(&f.ws).unwrap_err();
    assert!(matches!(e, LayerError::Journal { .. }), "{e}");
    assert!(!f.ws.parent().unwrap().join("x").exists());
}

#[test]
fn host_symlink_swapped_in_after_review_is_refused() {
    let f = fixture();
    let outside = f._tmp.path().join("outside");
    mkdir(&outside, "");
    write(&outside, "passwd", "root:x:0:0\n");
    write(&f.ws, "src/passwd", "workspace copy\n");
    write(&f.upper, "src/passwd", "pwned\n");
    write(&f.upper, "src/new", "new\n");
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    // After the review, the host directory becomes a symlink to outside the workspace.
    fs::rename(f.ws.join("src"), f._tmp.path().join("src-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, f.ws.join("src")).unwrap();
    let out_before = snapshot(&outside, true);
    let e = apply(&c, started, true).unwrap_err();
    assert!(matches!(e, LayerError::UnsafePath { .. }), "{e}");
    assert!(e.to_string().contains("symlink"), "{e}");
    assert_eq!(snapshot(&outside, true), out_before);
    assert!(leftovers(&f.ws).is_empty());
}

#[test]
fn layer_symlinks_are_created_not_followed() {
    let f = fixture();
    let outside = f._tmp.path().join("outside");
    mkdir(&outside, "");
    // Host has a symlink to outside; the run replaced it with a real directory.
    std::os::unix::fs::symlink(&outside, f.ws.join("cfg")).unwrap();
    write(&f.upper, "cfg/passwd", "run\n");
    // And the run created a symlink pointing outside.
    ln_s(&f.upper, "evil", outside.to_str().unwrap());
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    apply(&c, started, false).unwrap();
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "outside untouched"
    );
    assert!(fs::symlink_metadata(f.ws.join("cfg")).unwrap().is_dir());
    assert_eq!(
        fs::read_to_string(f.ws.join("cfg/passwd")).unwrap(),
        "run\n"
    );
    assert_eq!(fs::read_link(f.ws.join("evil")).unwrap(), outside);
}

#[test]
fn special_files_and_reserved_names_are_refused() {
    let f = fixture();
    write(&f.upper, "ok.txt", "ok");
    nix::unistd::mkfifo(
        &f.upper.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    let e = apply(&c, started, true).unwrap_err();
    assert!(matches!(e, LayerError::UnsupportedFileType { .. }), "{e}");
    assert!(e.to_string().contains("pipe (fifo)"), "{e}");
    assert!(!f.ws.join("ok.txt").exists(), "nothing applied");

    let f = fixture();
    write(
        &f.upper,
        &format!("{}x/journal", paddock_layer::STAGING_PREFIX),
        "{}",
    );
    let c = scan(&f.upper, &f.ws).unwrap();
    let e = apply(&c, settle_now(), true).unwrap_err();
    assert!(matches!(e, LayerError::ReservedName { .. }), "{e}");
}

#[test]
fn setuid_and_setgid_are_stripped() {
    let f = fixture();
    write(&f.upper, "suid", "s");
    chmod(&f.upper, "suid", 0o6755);
    write(&f.upper, "sticky/f", "f");
    chmod(&f.upper, "sticky", 0o1777);
    let c = scan(&f.upper, &f.ws).unwrap();
    let r = apply(&c, settle_now(), false).unwrap();
    assert_eq!(r.setid_stripped, vec![PathBuf::from("suid")]);
    assert_eq!(
        fs::metadata(f.ws.join("suid")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        fs::metadata(f.ws.join("sticky")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn layer_changed_after_review_is_refused() {
    let f = fixture();
    write(&f.upper, "a", "one");
    let c = scan(&f.upper, &f.ws).unwrap();
    write(&f.upper, "a", "three");
    let e = apply(&c, settle_now(), false).unwrap_err();
    assert!(matches!(e, LayerError::LayerChanged { .. }), "{e}");
    assert!(!f.ws.join("a").exists());
    assert!(leftovers(&f.ws).is_empty());
}

#[test]
fn new_files_take_the_owner_of_what_they_replace_or_their_parent() {
    if !is_root() {
        return;
    }
    let f = fixture();
    write(&f.ws, "mine.txt", "x");
    mkdir(&f.ws, "dir");
    std::os::unix::fs::chown(f.ws.join("mine.txt"), Some(1234), Some(2345)).unwrap();
    std::os::unix::fs::chown(f.ws.join("dir"), Some(1111), Some(2222)).unwrap();
    write(&f.upper, "mine.txt", "y");
    write(&f.upper, "dir/new/f", "z");
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    apply(&c, started, false).unwrap();
    let o = |p: &str| {
        let m = fs::symlink_metadata(f.ws.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(o("mine.txt"), (1234, 2345));
    assert_eq!(o("dir/new"), (1111, 2222));
    assert_eq!(o("dir/new/f"), (1111, 2222));
}

#[test]
fn a_rollback_is_not_a_conflict_but_a_later_host_edit_is() {
    let f = fixture();
    write(&f.ws, "a.txt", "host\n");
    write(&f.upper, "a.txt", "run\n");
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    // Ops: [Backup a.txt, Put a.txt]; failing before the Put moves a.txt back (new ctime).
    let mut o = ApplyOptions::new(started);
    o.fail_before_op = Some(1);
    assert!(matches!(
        apply_with(&c, &o),
        Err(LayerError::RolledBack { .. })
    ));
    assert_eq!(fs::read_to_string(f.ws.join("a.txt")).unwrap(), "host\n");

    // Rolled back again, then the host really edits the file: that is a conflict.
    assert!(matches!(
        apply_with(&c, &o),
        Err(LayerError::RolledBack { .. })
    ));
    std::thread::sleep(std::time::Duration::from_millis(30));
    chmod(&f.ws, "a.txt", 0o600); // ctime only
    let e = apply(&c, started, false).unwrap_err();
    assert!(matches!(e, LayerError::Conflicts { .. }), "{e}");
    chmod(&f.ws, "a.txt", 0o644);

    // A fresh rollback, no host edit: the retry applies without --force.
    let f2 = fixture();
    write(&f2.ws, "a.txt", "host\n");
    write(&f2.upper, "a.txt", "run\n");
    let started = settle_now();
    let c = scan(&f2.upper, &f2.ws).unwrap();
    let mut o = ApplyOptions::new(started);
    o.fail_before_op = Some(1);
    assert!(matches!(
        apply_with(&c, &o),
        Err(LayerError::RolledBack { .. })
    ));
    apply(&c, started, false).unwrap();
    assert_eq!(fs::read_to_string(f2.ws.join("a.txt")).unwrap(), "run\n");
}

#[test]
fn host_changes_inside_a_directory_the_run_deleted_are_conflicts() {
    let f = fixture();
    write(&f.ws, "gone/a/edited.txt", "base\n");
    write(&f.ws, "gone2/x", "base\n");
    write(&f.ws, "merged/base.txt", "b\n");
    whiteout(&f.upper, "gone");
    whiteout(&f.upper, "gone2");
    write(&f.upper, "both/run.txt", "run\n"); // the host creates both/ too: no conflict
    write(&f.upper, "merged/new.txt", "n\n");
    let started = settle_now();
    let c = scan(&f.upper, &f.ws).unwrap();
    write(&f.ws, "gone/a/edited.txt", "host edit\n"); // modified inside the deleted tree
    write(&f.ws, "gone2/host-new.txt", "new\n"); // added inside the deleted tree
    write(&f.ws, "both/host.txt", "host\n");
    write(&f.ws, "merged/host.txt", "h\n"); // sibling of an added file: fine
    let e = apply(&c, started, false).unwrap_err();
    let LayerError::Conflicts { paths } = &e else {
        panic!("{e}")
    };
    let names: Vec<_> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(names, ["gone/a/edited.txt", "gone2"], "{e}");

    apply(&c, started, true).unwrap();
    assert!(!f.ws.join("gone").exists() && !f.ws.join("gone2").exists());
    assert_eq!(
        fs::read_to_string(f.ws.join("both/host.txt")).unwrap(),
        "host\n"
    );
    assert_eq!(
        fs::read_to_string(f.ws.join("both/run.txt")).unwrap(),
        "run\n"
    );
    assert!(f.ws.join("merged/host.txt").exists() && f.ws.join("merged/new.txt").exists());
}
