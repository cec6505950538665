//! The sandbox's network namespace: loopback only; the daemon can place sockets in it.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use paddock_sandbox::*;

#[tokio::test]
async fn host_loopback_and_outside_are_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = Env::new();
    let rt = runtime();
    let script = format!(
        "ip=$(cat /proc/net/dev | grep -c ':'); echo ifaces=$ip; \
         (echo hi > /dev/tcp/127.0.0.1/{port}) 2>&1; echo local=$?; \
         (echo hi > /dev/tcp/1.1.1.1/80) 2>&1; echo out=$?; \
         (echo hi > /dev/tcp/10.0.0.1/22) 2>&1; echo priv=$?"
    );
    let t = Instant::now();
    let o = run_spec(&rt, &env.spec(&["/bin/bash", "-c", &script]), false).await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "connections must fail immediately"
    );
    eprintln!("{}", o.stdout);
    assert!(
        o.stdout.contains("ifaces=1"),
        "only lo expected: {}",
        o.stdout
    );
    assert!(o.stdout.contains("Connection refused"), "{}", o.stdout);
    assert!(o.stdout.contains("local=1"), "{}", o.stdout);
    assert!(o.stdout.contains("Network is unreachable"), "{}", o.stdout);
    assert!(
        o.stdout.contains("out=1") && o.stdout.contains("priv=1"),
        "{}",
        o.stdout
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the host listener got a connection from the sandbox"
    );
}

#[tokio::test]
async fn daemon_listener_inside_the_netns() {
    let env = Env::new();
    let rt = runtime();
    // A port free on the host right now, so the last check means something.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "for i in $(seq 1 100); do (echo from-sandbox > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
    );
    let spec = env.spec(&["/bin/bash", "-c", &script]);
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let net = rt.as_netns().expect("netns capability");
    let nsfd = net.netns_fd(&h).unwrap();
    assert!(nsfd.as_raw_fd() >= 0);
    let sock = net
        .socket_in_netns(&h, libc::AF_INET, libc::SOCK_STREAM)
        .unwrap();
    let listener: std::net::TcpListener = std::net::TcpListener::from(sock);
    // Bind + listen on the raw socket through socket2-free std: use libc via nix.
    let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, port);
    nix::sys::socket::bind(listener.as_raw_fd(), &addr).unwrap();
    nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(8).unwrap()).unwrap();
    let (mut conn, _) = tokio::task::spawn_blocking(move || listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut s = String::new();
    conn.read_to_string(&mut s).unwrap();
    assert_eq!(s, "from-sandbox\n");
    let exit = rt.wait(&h).await.unwrap();
    assert_eq!(exit.exit_code, Some(0));
    rt.destroy(&h).await.unwrap();
    // The host's 127.0.0.1 is a different namespace: nothing listens there.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A held command execs only after `release`, and a listener placed in the netns while it
/// is held is there from its very first instruction: no retry loop needed.
#[tokio::test]
async fn held_command_sees_the_network_the_daemon_placed_before_release() {
    let env = Env::new();
    let rt = runtime();
    let mut spec = env.spec(&[
        "/bin/bash",
        "-c",
        "(echo first-try > /dev/tcp/127.0.0.1/8081) && echo connected",
    ]);
    spec.hold_until_released = true;
    let ev = Events::default();
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, ev.sink()).await.unwrap();
    let net = rt.as_netns().expect("netns capability");
    // Held: the command has not run (no Started event) however long we wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !ev.all()
            .iter()
            .any(|e| matches!(e, SandboxEvent::Started { .. })),
        "the command ran before release: {:?}",
        ev.all()
    );
    let sock = net
        .socket_in_netns(&h, libc::AF_INET, libc::SOCK_STREAM)
        .unwrap();
    let listener: std::net::TcpListener = std::net::TcpListener::from(sock);
    let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, 8081);
    nix::sys::socket::bind(listener.as_raw_fd(), &addr).unwrap();
    nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(8).unwrap()).unwrap();
    net.release(&h).unwrap();
    let (mut conn, _) = tokio::task::spawn_blocking(move || listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut s = String::new();
    conn.read_to_string(&mut s).unwrap();
    assert_eq!(s, "first-try\n");
    let exit = rt.wait(&h).await.unwrap();
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    assert!(
        ev.all()
            .iter()
            .any(|e| matches!(e, SandboxEvent::Started { .. }))
    );
    // A second release is harmless once the run ended.
    let _ = net.release(&h);
    rt.destroy(&h).await.unwrap();
}

/// Stopping a held run never lets its command run.
#[tokio::test]
async fn stopping_a_held_run_never_runs_the_command() {
    let env = Env::new();
    let rt = runtime();
    let marker = env.workspace.join("ran");
    let mut spec = env.spec(&["/bin/sh", "-c", "touch ran"]);
    spec.workspace_mode = WorkspaceMode::Bind;
    spec.hold_until_released = true;
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
    let exit = rt.stop(&h, Duration::from_secs(5)).await.unwrap();
    assert_ne!(exit.exit_code, Some(0), "{exit:?}");
    assert!(!marker.exists(), "the held command ran");
    rt.destroy(&h).await.unwrap();
}
