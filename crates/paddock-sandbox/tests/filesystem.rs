//! What a sandbox sees of the host filesystem: overlay/bind workspace, secrets hidden,
//! extra mounts, injected files, spec validation.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::*;
use paddock_sandbox::*;

#[tokio::test]
async fn overlay_writes_land_in_the_layer() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(
        &rt,
        &sh(&env, "cat hello.txt && echo changed > hello.txt && echo new > new.txt && mkdir d && echo x > d/f && rm -f gone.txt; pwd"),
        true,
    )
    .await;
    std::fs::write(env.workspace.join("gone.txt"), "").ok();
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stderr);
    assert!(o.stdout.starts_with("hello from host\n"), "{}", o.stdout);
    assert!(
        o.stdout
            .ends_with(&format!("{}\n", env.workspace.display())),
        "{}",
        o.stdout
    );
    // Host untouched.
    assert_eq!(read(&env.workspace.join("hello.txt")), "hello from host\n");
    assert!(!env.workspace.join("new.txt").exists());
    // Layout paddock-layer relies on.
    let upper = env.run_dir.join("layer/upper");
    assert_eq!(read(&upper.join("hello.txt")), "changed\n");
    assert_eq!(read(&upper.join("new.txt")), "new\n");
    assert_eq!(read(&upper.join("d/f")), "x\n");
    rt.destroy(&o.handle).await.unwrap();
    assert!(!env.run_dir.join("layer").exists());
}

#[tokio::test]
async fn overlay_deletion_is_a_whiteout() {
    let env = Env::new();
    std::fs::write(env.workspace.join("victim.txt"), "v").unwrap();
    let rt = runtime();
    let o = run_spec(
        &rt,
        &sh(&env, "rm victim.txt && test ! -e victim.txt"),
        true,
    )
    .await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stderr);
    assert!(env.workspace.join("victim.txt").exists());
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::symlink_metadata(env.run_dir.join("layer/upper/victim.txt")).unwrap();
    assert!(md.file_type().is_char_device(), "whiteout expected");
    rt.destroy(&o.handle).await.unwrap();
}

#[tokio::test]
async fn bind_mode_writes_through() {
    let env = Env::new();
    let rt = runtime();
    let mut spec = sh(&env, "echo via-bind > out.txt");
    spec.workspace_mode = WorkspaceMode::Bind;
    let o = run_spec(&rt, &spec, false).await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stderr);
    assert_eq!(read(&env.workspace.join("out.txt")), "via-bind\n");
}

#[tokio::test]
async fn host_secrets_are_not_visible() {
    let env = Env::new();
    // A "home directory" next to the workspace, with a secret.
    let secret_home = env.tmp.path().join("someone-home");
    std::fs::create_dir_all(secret_home.join(".ssh")).unwrap();
    std::fs::write(secret_home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    std::fs::write(env.home.join("state.db"), "paddock state").unwrap();
    let script = format!(
        "cat {s}/.ssh/id_ed25519; echo rc1=$?; ls {h}; echo rc2=$?; ls -A /root; echo rc3=$?; \
         cat /etc/shadow | wc -c; cat /etc/gshadow | wc -c; ls /var/run/docker.sock; echo rc4=$?; \
         ls /home; ls /sys | wc -l; cat /proc/kcore | wc -c; echo x > /proc/sys/kernel/domainname; echo rc5=$?",
        s = secret_home.display(),
        h = env.home.display()
    );
    let rt = runtime();
    let o = run_spec(&rt, &sh(&env, &script), false).await;
    let out = &o.stdout;
    eprintln!("stdout:\n{out}\nstderr:\n{}", o.stderr);
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    assert!(out.contains("rc1=1") || out.contains("rc1=2"), "{out}");
    assert!(!out.contains("state.db"), "{out}");
    assert!(out.contains("rc2=2"), "paddock home visible: {out}");
    assert!(out.contains("rc3=2"), "/root visible: {out}");
    assert!(out.contains("rc4=2"), "docker socket visible: {out}");
    assert!(!out.contains("rc5=0"), "/proc/sys writable: {out}");
    let lines: Vec<&str> = out.lines().collect();
    // shadow and gshadow read as empty.
    assert!(lines.contains(&"0"), "{out}");
    assert!(!out.contains("root:"), "{out}");
    // Only the sandbox's own home appears under /home.
    assert!(out.contains("agent"), "{out}");
    assert!(!out.contains("someone-home"));
}

#[tokio::test]
async fn non_world_readable_etc_files_are_masked_as_root() {
    if !is_root() {
        return skip("masking of non-world-readable /etc files matters only in root mode");
    }
    // /etc/ssl/private (0700) exists on most Debian-like hosts; fall back to shadow.
    let candidates: Vec<String> = ["/etc/ssl/private", "/etc/security/opasswd", "/etc/shadow"]
        .iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o004 == 0)
                .unwrap_or(false)
        })
        .map(|s| s.to_string())
        .collect();
    let env = Env::new();
    let rt = runtime();
    let script: String = candidates
        .iter()
        .map(|p| format!("ls -A {p} 2>&1 | wc -l; cat {p} 2>/dev/null | wc -c;"))
        .collect();
    let o = run_spec(&rt, &sh(&env, &script), false).await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stderr);
    for (i, l) in o.stdout.lines().enumerate() {
        if i % 2 == 1 {
            assert_eq!(
                l.trim(),
                "0",
                "content readable for {}: {}",
                candidates[i / 2],
                o.stdout
            );
        }
    }
}

#[tokio::test]
async fn extra_mounts_and_injected_files() {
    let env = Env::new();
    let ro = env.tmp.path().join("ro-data");
    let rw = env.tmp.path().join("rw-data");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("a"), "ro-content").unwrap();
    let mut spec = sh(
        &env,
        "cat /data/ro/a; echo; echo w > /data/ro/b; echo rc=$?; echo w > /data/rw/b; cat /run/paddock/ca.pem; cat /etc/resolv.conf; echo x >> /run/paddock/ca.pem; echo rc2=$?",
    );
    spec.mounts = vec![
        MountSpec {
            source: ro.clone(),
            target: "/data/ro".into(),
            read_only: true,
        },
        MountSpec {
            source: rw.clone(),
            target: "/data/rw".into(),
            read_only: false,
        },
    ];
    spec.files = vec![
        InjectedFile {
            path: "/run/paddock/ca.pem".into(),
            contents: Arc::from(&b"CERT\n"[..]),
        },
        InjectedFile {
            path: "/etc/resolv.conf".into(),
            contents: Arc::from(&b"nameserver 127.0.0.1\n"[..]),
        },
    ];
    let rt = runtime();
    let o = run_spec(&rt, &spec, false).await;
    assert!(o.stdout.contains("ro-content"), "{} {}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("rc=0"), "{}", o.stdout);
    assert!(!ro.join("b").exists());
    assert_eq!(read(&rw.join("b")), "w\n");
    assert!(o.stdout.contains("CERT\n"), "{}", o.stdout);
    assert!(o.stdout.contains("nameserver 127.0.0.1"), "{}", o.stdout);
    assert!(!o.stdout.contains("rc2=0"), "{}", o.stdout);
}

#[tokio::test]
async fn invalid_specs_fail_in_create() {
    let env = Env::new();
    let rt = runtime();
    let base = sh(&env, "true");
    let mut cases: Vec<(&str, SandboxSpec)> = Vec::new();
    let mut s = base.clone();
    s.workspace = env.tmp.path().join("missing");
    cases.push(("missing workspace", s));
    for target in [
        "/",
        "/proc",
        "/dev/x",
        "/usr/local",
        "/etc",
        "/lib/x",
        "/sys",
    ] {
        let mut s = base.clone();
        s.mounts = vec![MountSpec {
            source: env.workspace.clone(),
            target: target.into(),
            read_only: true,
        }];
        cases.push(("protected target", s));
    }
    let mut s = base.clone();
    s.mounts = vec![MountSpec {
        source: env.workspace.clone(),
        target: env.workspace.clone(),
        read_only: true,
    }];
    cases.push(("workspace target", s));
    let mut s = base.clone();
    s.mounts = vec![MountSpec {
        source: env.home.clone(),
        target: "/data".into(),
        read_only: true,
    }];
    cases.push(("paddock home source", s));
    let mut s = base.clone();
    s.mounts = vec![MountSpec {
        source: env.tmp.path().join("nope"),
        target: "/data".into(),
        read_only: true,
    }];
    cases.push(("missing source", s));
    let mut s = base.clone();
    s.mounts = vec![MountSpec {
        source: env.workspace.clone(),
        target: env.run_dir.join("x"),
        read_only: true,
    }];
    cases.push(("run dir target", s));
    let mut s = base.clone();
    s.mounts = vec![MountSpec {
        source: env.workspace.clone(),
        target: "data".into(),
        read_only: true,
    }];
    cases.push(("relative target", s));
    for (what, spec) in cases {
        match rt.create(&spec).await {
            Err(e @ SandboxError::InvalidSpec { .. }) => {
                assert!(e.hint().is_some_and(|h| !h.is_empty()), "{what}")
            }
            other => panic!("{what}: expected InvalidSpec, got {other:?}"),
        }
    }
    // Nothing was created.
    assert!(!env.run_dir.join("layer").exists());
}

#[tokio::test]
async fn setup_failure_is_reported_by_start_and_cleaned_up() {
    let env = Env::new();
    let rt = runtime();
    let mut spec = sh(&env, "true");
    // /etc is the host's, read-only: a file in a directory that does not exist there
    // cannot get a mount point.
    spec.files = vec![InjectedFile {
        path: "/etc/paddock-no-such-dir/x".into(),
        contents: Arc::from(&b"x"[..]),
    }];
    let h = rt.create(&spec).await.unwrap();
    let ev = Events::default();
    match rt.start(&h, &spec, ev.sink()).await {
        Err(SandboxError::Setup { step, message }) => {
            assert!(
                step.contains("workspace") || step.contains("mount"),
                "{step}: {message}"
            );
            assert!(message.contains("paddock-no-such-dir"), "{message}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    let exit = rt.wait(&h).await.unwrap();
    assert_eq!(exit.exit_code, Some(125), "{exit:?}");
    assert!(exit.reason.unwrap_or_default().contains("setup failed"));
    rt.destroy(&h).await.unwrap();
    assert!(!env.run_dir.join("layer").exists());
}
