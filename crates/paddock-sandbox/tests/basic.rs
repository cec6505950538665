//! Core behaviour of a native sandbox: exit codes, output, init steps, process isolation,
//! terminals and stdin.

mod common;

use std::time::Duration;

use common::*;
use paddock_sandbox::*;

#[tokio::test]
async fn exit_code_and_output_streams() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &sh(&env, "echo out; echo err >&2; exit 7"), false).await;
    assert_eq!(
        o.exit.exit_code,
        Some(7),
        "{:?} stderr={}",
        o.exit,
        o.stderr
    );
    assert_eq!(o.exit.signal, None);
    assert!(!o.exit.oom_killed);
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
}

#[tokio::test]
async fn true_exits_zero() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &env.spec(&["true"]), false).await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?}", o.exit);
}

#[tokio::test]
async fn signal_death_is_128_plus_n() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &sh(&env, "kill -TERM $$; sleep 5"), false).await;
    assert_eq!(o.exit.exit_code, Some(143), "{:?}", o.exit);
    assert_eq!(o.exit.signal, Some(15));
}

#[tokio::test]
async fn command_not_found_is_127() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &env.spec(&["no-such-command-xyz", "arg"]), false).await;
    assert_eq!(o.exit.exit_code, Some(127), "{:?}", o.exit);
    assert!(
        o.stderr
            .contains("paddock: command not found: no-such-command-xyz"),
        "stderr: {}",
        o.stderr
    );
    assert!(
        o.exit
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("command not found"),
        "{:?}",
        o.exit
    );
}

#[tokio::test]
async fn not_executable_is_126() {
    let env = Env::new();
    std::fs::write(env.workspace.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let rt = runtime();
    let path = env.workspace.join("script.sh");
    let o = run_spec(&rt, &env.spec(&[path.to_str().unwrap()]), false).await;
    assert_eq!(o.exit.exit_code, Some(126), "{:?}", o.exit);
    assert!(
        o.stderr.contains("paddock: permission denied"),
        "stderr: {}",
        o.stderr
    );
}

#[tokio::test]
async fn init_steps_and_started_are_reported() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &env.spec(&["true"]), false).await;
    let steps: Vec<(u32, u32, String)> = o
        .events
        .iter()
        .filter_map(|e| match e {
            SandboxEvent::InitStep {
                index,
                total,
                description,
                ..
            } => Some((*index, *total, description.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 5, "{steps:?}");
    for (i, (index, total, desc)) in steps.iter().enumerate() {
        assert_eq!(*index as usize, i + 1);
        assert_eq!(*total, 5);
        assert!(!desc.is_empty());
    }
    assert!(steps.iter().any(|s| s.2.contains("workspace")));
    assert!(
        o.events
            .iter()
            .any(|e| matches!(e, SandboxEvent::Started { .. }))
    );
    assert!(
        matches!(o.events.last(), Some(SandboxEvent::Exited { exit, .. }) if exit.exit_code == Some(0))
    );
}

#[tokio::test]
async fn host_processes_are_invisible_and_hostname_is_the_run_name() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(
        &rt,
        &sh(
            &env,
            "hostname; echo $$; ps -e -o pid= | wc -l; ls /proc | grep -c '^[0-9]'",
        ),
        false,
    )
    .await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "test-run");
    // The shell is the first process after init.
    assert_eq!(lines[1], "2", "{lines:?}");
    // init, sh, ps (+ wc) / init, sh, ls, grep: never the host's processes.
    let n: u32 = lines[2].trim().parse().unwrap();
    assert!(n <= 5, "ps saw {n} processes: {lines:?}");
    let n: u32 = lines[3].trim().parse().unwrap();
    assert!(n <= 5, "/proc has {n} pids: {lines:?}");
}

#[tokio::test]
async fn identity_inside() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(
        &rt,
        &sh(
            &env,
            "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
        ),
        false,
    )
    .await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    let expect = if is_root() {
        "1000".to_string()
    } else {
        nix::unistd::geteuid().to_string()
    };
    assert_eq!(lines[0], expect);
    assert!(
        o.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("CapBnd:\t0000000000000000"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{}", o.stdout);
    assert!(o.stdout.contains("Seccomp:\t2"), "{}", o.stdout);
}

#[tokio::test]
async fn tty_mode_gives_a_terminal() {
    let env = Env::new();
    let rt = runtime();
    let mut spec = sh(
        &env,
        "test -t 0 && test -t 1 && echo is-a-tty; stty size; tty",
    );
    spec.tty = true;
    spec.tty_size = Some(TtySize {
        rows: 33,
        cols: 101,
    });
    let o = run_spec(&rt, &spec, false).await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stdout);
    assert!(o.stdout.contains("is-a-tty"), "{}", o.stdout);
    assert!(o.stdout.contains("33 101"), "{}", o.stdout);
    assert!(o.stdout.contains("/dev/pts/0"), "{}", o.stdout);
}

#[tokio::test]
async fn stdin_through_attach() {
    let env = Env::new();
    let rt = runtime();
    let mut spec = sh(&env, "read line; echo got:$line; cat");
    spec.stdin = true;
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let mut a = rt.attach(&h).await.unwrap();
    a.input
        .send(AttachInput::Stdin(b"hello\nrest".to_vec()))
        .await
        .unwrap();
    a.input.send(AttachInput::CloseStdin).await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(20), a.output.recv()).await {
        out.extend_from_slice(&c.data);
    }
    let exit = rt.wait(&h).await.unwrap();
    assert_eq!(exit.exit_code, Some(0));
    assert_eq!(String::from_utf8_lossy(&out), "got:hello\nrest");
    rt.destroy(&h).await.unwrap();
}

#[tokio::test]
async fn signal_forwarding_and_kill() {
    let env = Env::new();
    let rt = runtime();
    let spec = sh(
        &env,
        "trap 'echo got-usr1; exit 3' USR1; echo ready; while :; do sleep 0.05; done",
    );
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let mut logs = rt
        .logs(
            &h,
            LogQuery {
                tail: None,
                follow: true,
            },
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), logs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.data, b"ready\n");
    rt.kill(&h, libc::SIGUSR1).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), rt.wait(&h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(3), "{exit:?}");
    let mut rest = Vec::new();
    while let Some(c) = logs.recv().await {
        // The signal goes to the whole process group: the shell's `sleep` dies of it too.
        if c.stream == OutputStream::Stdout {
            rest.extend_from_slice(&c.data);
        }
    }
    assert_eq!(String::from_utf8_lossy(&rest), "got-usr1\n");
    rt.destroy(&h).await.unwrap();
}

#[tokio::test]
async fn binary_output_is_logged_losslessly() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &sh(&env, "printf 'a\\377\\000b'"), true).await;
    assert_eq!(o.exit.exit_code, Some(0));
    let log = read(&env.run_dir.join("log.jsonl"));
    assert!(log.contains("\"b64\""), "{log}");
    let mut logs = rt.logs(&o.handle, LogQuery::default()).await.unwrap();
    let c = logs.recv().await.unwrap();
    assert_eq!(c.data, b"a\xff\x00b");
    rt.destroy(&o.handle).await.unwrap();
}

#[tokio::test]
async fn a_run_whose_directory_was_never_made_starts_and_gets_it_private() {
    // The daemon makes no directory at create when none was laid out ahead of time: the
    // start makes what it needs.
    let env = Env::new();
    std::fs::remove_dir_all(&env.run_dir).unwrap();
    let rt = runtime();
    let o = run_spec(&rt, &sh(&env, "echo hi > /tmp/x && cat /tmp/x"), false).await;
    assert_eq!(o.exit.exit_code, Some(0), "{:?} {}", o.exit, o.stderr);
    assert_eq!(o.stdout, "hi\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&env.run_dir)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}
