//! Sockets and routes inside a run's network namespace.
//!
//! Every socket comes from [`NetnsCapability::sockets_in_netns`] (a socket's namespace is
//! fixed when it is created; all of a run's in one namespace switch), then is bound and
//! listened on here, in the daemon. Binding
//! ports below 1024 needs CAP_NET_BIND_SERVICE over the netns's user namespace at bind
//! time: root has it; a rootless daemon has it too, because it owns the run's user
//! namespace (its euid created it, and the owner in the parent namespace holds every
//! capability in the child).
//!
//! The AnyIP routes (`local 0.0.0.0/0 dev lo`, `local ::/0 dev lo` in the local table) are
//! added with one hand-built `RTM_NEWROUTE` each over a NETLINK_ROUTE socket created in
//! the netns. Hand-built rather than netlink-packet-route: it is two fixed 44-byte
//! messages and one ack to read, which does not justify three crates of generated
//! message types.
//!
//! Never: touches the daemon's own network namespace, or adds any route but these two.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use paddock_sandbox::{NetnsCapability, SandboxHandle};

use crate::error::EgressError;

fn netns_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> EgressError {
    let action = action.into();
    move |source| EgressError::Netns { action, source }
}

fn errno_err(action: String) -> EgressError {
    EgressError::Netns {
        action,
        source: std::io::Error::last_os_error(),
    }
}

fn setsockopt_int(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> std::io::Result<()> {
    // SAFETY: `fd` is a valid socket; the option value is a live i32 of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn bind(fd: &OwnedFd, addr: SocketAddr) -> std::io::Result<()> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin) };
            (
                st,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                st,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn domain_of(addr: SocketAddr) -> i32 {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// The socket kinds [`Sockets::create`] asks for, for a TCP listener at `addr`.
pub fn tcp_kind(addr: SocketAddr) -> (i32, i32) {
    (domain_of(addr), libc::SOCK_STREAM | libc::SOCK_NONBLOCK)
}

/// The socket kinds for a UDP socket at `addr`.
pub fn udp_kind(addr: SocketAddr) -> (i32, i32) {
    (domain_of(addr), libc::SOCK_DGRAM | libc::SOCK_NONBLOCK)
}

/// The socket kinds for the NETLINK_ROUTE socket [`add_anyip_routes`] uses.
pub const NETLINK_KIND: (i32, i32) = (libc::AF_NETLINK, libc::SOCK_RAW);

/// Sockets created in the netns in one go (one namespace switch for all of them, see
/// [`NetnsCapability::sockets_in_netns`]), handed out in the order they were asked for.
pub struct Sockets(std::vec::IntoIter<OwnedFd>);

impl Sockets {
    pub fn create(
        netns: &dyn NetnsCapability,
        handle: &SandboxHandle,
        kinds: &[(i32, i32)],
    ) -> Result<Sockets, EgressError> {
        Ok(Sockets(netns.sockets_in_netns(handle, kinds)?.into_iter()))
    }

    /// The next socket; asking for more than were created is a bug of the caller.
    pub fn take(&mut self) -> OwnedFd {
        self.0
            .next()
            .expect("asked for more sockets than were created")
    }
}

/// Make a socket from [`tcp_kind`]`(addr)` a listener at `addr` (non-blocking). An IPv6
/// wildcard address makes a dual-stack socket (IPv4 arrives as v4-mapped addresses).
pub fn listen_on(fd: OwnedFd, addr: SocketAddr) -> Result<std::net::TcpListener, EgressError> {
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
        .map_err(netns_err(format!("set SO_REUSEADDR for {addr}")))?;
    if addr.is_ipv6() {
        setsockopt_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)
            .map_err(netns_err(format!("make {addr} dual-stack")))?;
    }
    bind(&fd, addr).map_err(netns_err(format!("bind {addr}")))?;
    // SAFETY: listen(2) on a valid, bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 1024) } != 0 {
        return Err(errno_err(format!("listen on {addr}")));
    }
    Ok(std::net::TcpListener::from(fd))
}

/// Bind a socket from [`udp_kind`]`(addr)` at `addr`.
pub fn bind_udp(fd: OwnedFd, addr: SocketAddr) -> Result<std::net::UdpSocket, EgressError> {
    bind(&fd, addr).map_err(netns_err(format!("bind {addr}")))?;
    Ok(std::net::UdpSocket::from(fd))
}

/// The socket kind for [`any_listener`] (a dual-stack IPv6 socket).
pub fn any_kind() -> (i32, i32) {
    tcp_kind(any_v6(0))
}

fn any_v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
}

/// A transparent listener on `port` for every address, from a socket of [`any_kind`]:
/// dual-stack `[::]:port`, or `0.0.0.0:port` (on a new socket) when the netns has no IPv6.
pub fn any_listener(
    netns: &dyn NetnsCapability,
    handle: &SandboxHandle,
    fd: OwnedFd,
    port: u16,
) -> Result<std::net::TcpListener, EgressError> {
    match listen_on(fd, any_v6(port)) {
        Ok(l) => Ok(l),
        Err(e) => {
            tracing::debug!(error = %e, port, "no IPv6 in the run's netns; listening on IPv4 only");
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
            let (domain, ty) = tcp_kind(v4);
            listen_on(netns.socket_in_netns(handle, domain, ty)?, v4)
        }
    }
}

const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const RT_TABLE_LOCAL: u8 = 255;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_HOST: u8 = 254;
const RTN_LOCAL: u8 = 2;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
/// lo is interface 1 in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// The `RTM_NEWROUTE` message for `local <any>/0 dev lo table local`.
pub fn anyip_route_message(family: u8, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(44);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    m.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    // struct rtmsg
    m.extend_from_slice(&[
        family,
        0, // dst_len: /0
        0, // src_len
        0, // tos
        RT_TABLE_LOCAL,
        RTPROT_BOOT,
        RT_SCOPE_HOST,
        RTN_LOCAL,
    ]);
    m.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    for (ty, v) in [
        (RTA_OIF, LOOPBACK_IFINDEX),
        (RTA_TABLE, RT_TABLE_LOCAL as u32),
    ] {
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&v.to_ne_bytes());
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// Add the AnyIP routes in the run's netns. IPv4 must succeed; IPv6 is skipped (with a
/// debug log) when the netns has no IPv6. An existing route is fine (idempotent).
/// `fd` is a socket of [`NETLINK_KIND`] (protocol 0 = NETLINK_ROUTE, which is what
/// `sockets_in_netns` passes).
pub fn add_anyip_routes(fd: OwnedFd) -> Result<(), EgressError> {
    for (family, required) in [(libc::AF_INET as u8, true), (libc::AF_INET6 as u8, false)] {
        let seq = family as u32;
        let msg = anyip_route_message(family, seq);
        // SAFETY: sending a valid buffer on a valid netlink socket; the kernel is the
        // destination (zeroed sockaddr_nl via send on an unconnected socket: pid 0).
        let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(errno_err("send a route to the run's netns".into()));
        }
        let mut buf = [0u8; 1024];
        // SAFETY: receiving into a live buffer of the given length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(errno_err("read the kernel's route ack".into()));
        }
        let n = n as usize;
        let ty = (n >= 6).then(|| u16::from_ne_bytes([buf[4], buf[5]]));
        let errno = if ty == Some(NLMSG_ERROR) && n >= 20 {
            -i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]])
        } else {
            libc::EPROTO
        };
        if errno == 0 || errno == libc::EEXIST {
            continue;
        }
        let e = std::io::Error::from_raw_os_error(errno);
        if required {
            return Err(EgressError::Netns {
                action: "add the route `local 0.0.0.0/0 dev lo`".into(),
                source: e,
            });
        }
        tracing::debug!(error = %e, "no IPv6 AnyIP route in the run's netns");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_message_shape() {
        let m = anyip_route_message(libc::AF_INET as u8, 7);
        assert_eq!(m.len(), 16 + 12 + 16);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m[20], RT_TABLE_LOCAL);
        assert_eq!(m[23], RTN_LOCAL);
    }
}
