//! 50 runs started, stopped and destroyed leave nothing behind: no mounts, cgroups,
//! processes or run-directory state beyond the log and exit record.

mod common;

use std::time::Duration;

use common::*;
use paddock_sandbox::*;

fn children_of_us() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid: i32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if ppid == me {
            out.push(pid);
        }
    }
    out
}

/// Our children once `ok` holds of them, or after 5 s of not holding.
async fn settled(ok: impl Fn(&[i32]) -> bool) -> Vec<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let c = children_of_us();
        if ok(&c) || std::time::Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn fifty_runs_leave_nothing_behind() {
    let mountinfo_before = read(std::path::Path::new("/proc/self/mountinfo"))
        .lines()
        .count();
    let rt = runtime();
    let mut envs = Vec::new();
    for i in 0..50 {
        let env = Env::new();
        let mut spec = sh(&env, "echo up; sleep 100");
        if i % 2 == 0 && !rt.is_rootless() {
            spec.limits = Limits {
                memory_bytes: Some(256 << 20),
                pids: Some(64),
                cpus: Some(1.0),
            };
        }
        if i % 3 == 0 {
            spec.workspace_mode = WorkspaceMode::Bind;
        }
        let h = rt.create(&spec).await.unwrap();
        let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
        let exit = rt.stop(&h, Duration::from_secs(2)).await.unwrap();
        assert!(exit.exit_code.is_some(), "{exit:?}");
        rt.destroy(&h).await.unwrap();
        let st: paddock_sandbox::native::NativeState =
            serde_json::from_value(h.state.clone()).unwrap();
        for d in &st.cgroups.dirs {
            assert!(!d.exists(), "cgroup {} left behind", d.display());
        }
        // PID 1 is gone (its pid may be reused by something else, with another start time).
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", st.init_pid)).unwrap_or_default();
        let start_time = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(19))
            .unwrap_or("");
        assert_ne!(
            start_time,
            st.init_start.to_string(),
            "PID 1 of run {i} still exists"
        );
        let mut names: Vec<String> = std::fs::read_dir(&env.run_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec!["exit.json".to_string(), "log.jsonl".to_string()],
            "run {i}"
        );
        envs.push(env);
    }
    // The runtime keeps one stage 1 launched ahead of time (a child of ours that holds
    // nothing of any run); dropping the runtime ends and reaps it.
    // A PID 1 that was just killed is a child of ours until it is reaped: counts settle
    // within moments, a leak stays.
    let spare = settled(|c| c.len() <= 1).await;
    assert!(
        spare.len() <= 1,
        "more than the one spare stage 1: {spare:?}"
    );
    drop(rt);
    // No PID 1 (ours via CLONE_PARENT) left, not even as a zombie.
    let left = settled(|c| c.is_empty()).await;
    assert!(left.is_empty(), "children left: {left:?}");
    let mountinfo_after = read(std::path::Path::new("/proc/self/mountinfo"));
    assert_eq!(
        mountinfo_after.lines().count(),
        mountinfo_before,
        "{mountinfo_after}"
    );
    assert!(
        !mountinfo_after.contains("pdk"),
        "a sandbox mount leaked into the host: {mountinfo_after}"
    );
    for base in [
        "/sys/fs/cgroup/memory/paddock",
        "/sys/fs/cgroup/pids/paddock",
        "/sys/fs/cgroup/cpu/paddock",
        "/sys/fs/cgroup/paddock",
    ] {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !envs.iter().any(|env| env.run_id == name),
                    "cgroup {base}/{name} left behind"
                );
            }
        }
    }
}
