//! cgroup limits and stopping: OOM, pids, CPU, stop escalation, stats.

mod common;

use std::time::{Duration, Instant};

use common::*;
use paddock_sandbox::native::cgroup::CgroupSystem;
use paddock_sandbox::*;

fn limits_supported(rt: &paddock_sandbox::native::NativeRuntime) -> bool {
    let lim = Limits {
        memory_bytes: Some(1 << 30),
        pids: Some(100),
        cpus: None,
    };
    match rt.cgroup_system().check_limits(&lim, rt.is_rootless()) {
        Ok(()) => true,
        Err(e) => {
            skip(&format!("cgroup limits unavailable here: {e}"));
            false
        }
    }
}

#[tokio::test]
async fn oom_is_reported() {
    let rt = runtime();
    if !limits_supported(&rt) {
        return;
    }
    let env = Env::new();
    let mut spec = sh(
        &env,
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
    );
    spec.limits.memory_bytes = Some(32 << 20);
    let o = run_spec(&rt, &spec, false).await;
    assert!(o.exit.oom_killed, "{:?} {} {}", o.exit, o.stdout, o.stderr);
    assert_eq!(o.exit.reason.as_deref(), Some("out of memory"));
    assert_ne!(o.exit.exit_code, Some(0));
    assert!(!o.stdout.contains("survived"));
}

#[tokio::test]
async fn fork_bomb_is_contained_by_pids_limit() {
    let rt = runtime();
    if !limits_supported(&rt) {
        return;
    }
    let env = Env::new();
    // A classic fork bomb; the shell dies when fork fails.
    let mut spec = sh(&env, "b() { b | b & }; b; sleep 2; echo alive");
    spec.limits.pids = Some(20);
    let start = Instant::now();
    let o = run_spec(&rt, &spec, true).await;
    let st: paddock_sandbox::native::NativeState =
        serde_json::from_value(o.handle.state.clone()).unwrap();
    let events = read(&st.cgroups.pids.clone().unwrap().join("pids.events"));
    let max_hits: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(max_hits > 0, "pids.max never hit: {events:?} {:?}", o.exit);
    // The sandbox ended, and everything in it is gone once PID 1 left.
    assert!(start.elapsed() < Duration::from_secs(30));
    rt.destroy(&o.handle).await.unwrap();
    assert!(!st.cgroups.pids.unwrap().exists());
}

#[tokio::test]
async fn limits_are_written_and_stats_read() {
    let rt = runtime();
    if !limits_supported(&rt) {
        return;
    }
    let env = Env::new();
    let mut spec = sh(&env, "sleep 30");
    spec.limits = Limits {
        memory_bytes: Some(64 << 20),
        pids: Some(50),
        cpus: Some(0.5),
    };
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let st: paddock_sandbox::native::NativeState = serde_json::from_value(h.state.clone()).unwrap();
    assert!(!st.cgroups.dirs.is_empty());
    match rt.cgroup_system() {
        CgroupSystem::V1 { .. } => {
            let mem = st.cgroups.memory.clone().unwrap();
            assert_eq!(
                read(&mem.join("memory.limit_in_bytes")).trim(),
                (64u64 << 20).to_string()
            );
            assert_eq!(
                read(&st.cgroups.pids.clone().unwrap().join("pids.max")).trim(),
                "50"
            );
            assert_eq!(
                read(&st.cgroups.cpu.clone().unwrap().join("cpu.cfs_quota_us")).trim(),
                "50000"
            );
        }
        CgroupSystem::V2 { .. } => {
            let d = st.cgroups.memory.clone().unwrap();
            assert_eq!(
                read(&d.join("memory.max")).trim(),
                (64u64 << 20).to_string()
            );
            assert_eq!(read(&d.join("cpu.max")).trim(), "50000 100000");
        }
        CgroupSystem::None => unreachable!(),
    }
    let stats = rt.as_stats().unwrap().stats(&h).await.unwrap();
    assert!(stats.memory_bytes.unwrap_or(0) > 0, "{stats:?}");
    assert!(stats.pids.unwrap_or(0) >= 2, "{stats:?}");
    rt.stop(&h, Duration::from_secs(2)).await.unwrap();
    rt.destroy(&h).await.unwrap();
    for d in &st.cgroups.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[tokio::test]
async fn stop_terminates_politely() {
    let env = Env::new();
    let rt = runtime();
    let spec = sh(&env, "sleep 100");
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let t = Instant::now();
    let exit = rt.stop(&h, Duration::from_secs(10)).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(exit.exit_code, Some(143), "{exit:?}");
    rt.destroy(&h).await.unwrap();
}

#[tokio::test]
async fn stop_escalates_to_sigkill() {
    let env = Env::new();
    let rt = runtime();
    let spec = sh(
        &env,
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
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
    let _ = tokio::time::timeout(Duration::from_secs(10), logs.recv()).await;
    let t = Instant::now();
    let exit = rt.stop(&h, Duration::from_millis(500)).await.unwrap();
    let el = t.elapsed();
    assert!(
        el >= Duration::from_millis(450) && el < Duration::from_secs(5),
        "{el:?}"
    );
    assert_eq!(exit.exit_code, Some(137), "{exit:?}");
    assert_eq!(exit.signal, Some(9));
    rt.destroy(&h).await.unwrap();
}
