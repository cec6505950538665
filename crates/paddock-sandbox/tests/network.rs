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
    let spec = env.spec(&[
        "/bin/bash",
        "-c",
        "for i in $(seq 1 100); do (echo from-sandbox > /dev/tcp/127.0.0.1/8080) 2>/dev/null && exit 0; sleep 0.05; done; exit 1",
    ]);
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
    let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, 8080);
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
    // The host's 127.0.0.1:8080 is a different namespace: nothing listens there.
    assert!(std::net::TcpStream::connect("127.0.0.1:8080").is_err());
}
