//! How the router reaches a service: the [`Dialer`] the daemon implements, and the pool
//! connector built on it.
//!
//! Owns: the trait, and the helper that connects a socket created inside a network
//! namespace. Never knows
//! how a run is executed or where its namespace comes from.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;

use async_trait::async_trait;
use tokio::net::TcpStream;

/// Opens a TCP connection to `127.0.0.1:port` as seen from inside run `run_id`.
///
/// The daemon implements this with its runtime's network-namespace capability (for the
/// native runtime: `NetnsCapability::socket_in_netns(handle, AF_INET, SOCK_STREAM)`, then
/// [`connect_loopback`]). Errors keep their [`io::ErrorKind`]: `ConnectionRefused` is how the
/// router tells "nothing listens on that port" (502) from other failures; return
/// `NotFound` when the run has no live sandbox.
#[async_trait]
pub trait Dialer: Send + Sync + 'static {
    async fn dial(&self, run_id: &str, port: u16) -> io::Result<TcpStream>;
}

/// Connect `socket` (an `AF_INET` stream socket, typically created inside a run's network
/// namespace) to `127.0.0.1:port` without blocking a runtime thread.
pub async fn connect_loopback(socket: OwnedFd, port: u16) -> io::Result<TcpStream> {
    let sock = socket2::Socket::from(socket);
    sock.set_nonblocking(true)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(sock))?;
    stream.writable().await?;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    // A connect that failed can also surface as "not connected" here.
    stream.peer_addr()?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Dials `127.0.0.1:port` on the host itself, ignoring the run id. For benchmarks and
/// development only: it bypasses the sandbox boundary.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackDialer;

#[async_trait]
impl Dialer for LoopbackDialer {
    async fn dial(&self, _run_id: &str, port: u16) -> io::Result<TcpStream> {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_loopback_reports_refused_and_connects() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mk = || {
            OwnedFd::from(
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap(),
            )
        };
        let s = connect_loopback(mk(), port).await.unwrap();
        assert_eq!(s.peer_addr().unwrap().port(), port);
        drop(l);
        let e = connect_loopback(mk(), port).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }
}
