//! Sandboxes outlive the runtime instance: adopt after a "daemon restart".

mod common;

use std::time::Duration;

use common::*;
use paddock_sandbox::*;

async fn collect_logs(rt: &dyn Runtime, h: &SandboxHandle) -> String {
    let mut rx = rt.logs(h, LogQuery::default()).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = rx.recv().await {
        out.extend_from_slice(&c.data);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn adopt_a_running_sandbox_after_dropping_the_runtime() {
    let env = Env::new();
    let spec = sh(&env, "echo before; sleep 1.5; echo after; exit 5");
    let h = {
        let rt = runtime();
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
        let c = tokio::time::timeout(Duration::from_secs(10), logs.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.data, b"before\n");
        h
        // rt dropped here: the watcher stops, the sandbox keeps running.
    };
    let handle_json = serde_json::to_string(&h).unwrap();
    let h: SandboxHandle = serde_json::from_str(&handle_json).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rt = runtime();
    let ev = Events::default();
    let adopted = rt.adopt(&h, ev.sink()).await.unwrap();
    assert_eq!(adopted, Adopted::Running);
    let exit = tokio::time::timeout(Duration::from_secs(20), rt.wait(&h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(5), "{exit:?}");
    assert_eq!(collect_logs(&rt, &h).await, "before\nafter\n");
    assert!(
        ev.all()
            .iter()
            .any(|e| matches!(e, SandboxEvent::Exited { .. }))
    );
    let rec: serde_json::Value =
        serde_json::from_str(&read(&env.run_dir.join("exit.json"))).unwrap();
    assert_eq!(rec["exit_code"], 5);
    rt.destroy(&h).await.unwrap();
}

#[tokio::test]
async fn adopt_a_sandbox_that_ended_unwatched() {
    let env = Env::new();
    let spec = sh(&env, "sleep 0.3; echo bye; exit 4");
    let h = {
        let rt = runtime();
        let h = rt.create(&spec).await.unwrap();
        rt.start(&h, &spec, Events::default().sink()).await.unwrap()
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rt = runtime();
    match rt.adopt(&h, Events::default().sink()).await.unwrap() {
        // Init kept the unacknowledged output for us, or left exit.json and ended.
        Adopted::Running | Adopted::Exited(_) => {}
    }
    let exit = tokio::time::timeout(Duration::from_secs(20), rt.wait(&h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(4), "{exit:?}");
    assert_eq!(collect_logs(&rt, &h).await, "bye\n");
    rt.destroy(&h).await.unwrap();
}

#[tokio::test]
async fn adopt_without_any_record() {
    let env = Env::new();
    let rt = runtime();
    let spec = sh(&env, "true");
    let h = rt.create(&spec).await.unwrap();
    let mut h2 = h.clone();
    // A pid that is certainly not our PID 1 (start time mismatch).
    h2.state = serde_json::json!({"init_pid": std::process::id(), "init_start": 1});
    match rt.adopt(&h2, Events::default().sink()).await.unwrap() {
        Adopted::Exited(info) => {
            assert_eq!(info.exit_code, None);
            assert_eq!(
                info.reason.as_deref(),
                Some("ended while the daemon was not running")
            );
        }
        other => panic!("{other:?}"),
    }
    rt.destroy(&h).await.unwrap();
    rt.destroy(&h).await.unwrap();
}

#[tokio::test]
async fn output_is_not_lost_while_no_runtime_watches() {
    let env = Env::new();
    // ~10.8 MB of output, more than init buffers: the command must block, not lose data.
    let spec = sh(&env, "head -c 8000000 /dev/zero | base64 -w 100; echo end");
    let h = {
        let rt = runtime();
        let h = rt.create(&spec).await.unwrap();
        rt.start(&h, &spec, Events::default().sink()).await.unwrap()
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The command is stuck on a full pipe, since init stopped reading.
    let rt = runtime();
    rt.adopt(&h, Events::default().sink()).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), rt.wait(&h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    let out = collect_logs(&rt, &h).await;
    let expected_len = 8_000_000usize.div_ceil(3) * 4;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.last(), Some(&"end"));
    let body: usize = lines[..lines.len() - 1].iter().map(|l| l.len()).sum();
    assert_eq!(body, expected_len, "output lost or duplicated");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.bytes().all(|b| b == b'A' || b == b'='))
    );
    rt.destroy(&h).await.unwrap();
}

#[tokio::test]
async fn the_end_of_the_output_survives_a_full_relay_buffer_at_exit() {
    let env = Env::new();
    // A bit more than init keeps unacknowledged (4 MiB), and no runtime reading it: init
    // stops reading at the cap, the command's last few KiB wait in the pipe, and the
    // command exits. Those last KiB (and "end") must still reach the log.
    let n = (4 << 20) + 48 * 1024;
    let spec = sh(
        &env,
        &format!("head -c {n} /dev/zero | tr '\\0' A; echo; echo end"),
    );
    let h = {
        let rt = runtime();
        let h = rt.create(&spec).await.unwrap();
        rt.start(&h, &spec, Events::default().sink()).await.unwrap()
    };
    // With no daemon, init records the exit itself once the command is done.
    let exit_json = h.run_dir.join("exit.json");
    for _ in 0..200 {
        if exit_json.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exit_json.exists(), "the command ended");
    let rt = runtime();
    rt.adopt(&h, Events::default().sink()).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), rt.wait(&h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    let out = collect_logs(&rt, &h).await;
    assert!(
        out.ends_with("\nend\n"),
        "the end is kept: …{:?}",
        &out[out.len().saturating_sub(40)..]
    );
    assert_eq!(
        out.bytes().filter(|b| *b == b'A').count(),
        n,
        "every byte is kept"
    );
    rt.destroy(&h).await.unwrap();
}
