//! `exec` into a running sandbox: same namespaces and confinement, own output and exit.

mod common;

use std::time::Duration;

use common::*;
use paddock_sandbox::*;

async fn drain(a: &mut Attachment) -> (String, String) {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    while let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(20), a.output.recv()).await {
        match c.stream {
            OutputStream::Stderr => e.extend_from_slice(&c.data),
            _ => o.extend_from_slice(&c.data),
        }
    }
    (
        String::from_utf8_lossy(&o).into_owned(),
        String::from_utf8_lossy(&e).into_owned(),
    )
}

#[tokio::test]
async fn exec_into_a_running_sandbox() {
    let env = Env::new();
    let rt = runtime();
    let spec = sh(&env, "echo main > /tmp/marker; sleep 30");
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let ex = rt.as_exec().expect("exec capability");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Same filesystem (/tmp is the sandbox's), same pid namespace, own exit code.
    let cmd = |s: &str| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()];
    let (mut a, exit) = ex
        .exec_with_exit(&h, cmd("cat /tmp/marker; hostname; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; echo oops >&2; exit 9"), vec![], false)
        .await
        .unwrap();
    let (out, err) = drain(&mut a).await;
    let exit = exit.await.unwrap();
    assert_eq!(exit.exit_code, Some(9), "{exit:?} {out} {err}");
    assert!(out.starts_with("main\ntest-run\n"), "{out}");
    assert!(
        out.contains("NoNewPrivs:\t1") && out.contains("CapEff:\t0000000000000000"),
        "{out}"
    );
    assert_eq!(err, "oops\n");

    // stdin.
    let (mut a, exit) = ex
        .exec_with_exit(&h, vec!["cat".into()], vec![], false)
        .await
        .unwrap();
    a.input
        .send(AttachInput::Stdin(b"piped".to_vec()))
        .await
        .unwrap();
    a.input.send(AttachInput::CloseStdin).await.unwrap();
    let (out, _) = drain(&mut a).await;
    assert_eq!(out, "piped");
    assert_eq!(exit.await.unwrap().exit_code, Some(0));

    // tty.
    let (mut a, exit) = ex
        .exec_with_exit(&h, cmd("test -t 1 && echo tty-ok"), vec![], true)
        .await
        .unwrap();
    let (out, _) = drain(&mut a).await;
    assert!(out.contains("tty-ok"), "{out}");
    assert_eq!(exit.await.unwrap().exit_code, Some(0));

    // Not found.
    let (mut a, exit) = ex
        .exec_with_exit(&h, vec!["nope-exec".into()], vec![], false)
        .await
        .unwrap();
    let (_, err) = drain(&mut a).await;
    assert!(
        err.contains("paddock: command not found: nope-exec"),
        "{err}"
    );
    assert_eq!(exit.await.unwrap().exit_code, Some(127));

    // The main command's log does not contain exec output.
    let exit = rt.stop(&h, Duration::from_secs(2)).await.unwrap();
    assert!(exit.exit_code.is_some());
    assert!(!read(&env.run_dir.join("log.jsonl")).contains("oops"));
    // Exec into an ended sandbox fails cleanly.
    assert!(matches!(
        ex.exec(&h, vec!["true".into()], vec![], false).await,
        Err(SandboxError::NotRunning { .. })
    ));
    rt.destroy(&h).await.unwrap();
}
