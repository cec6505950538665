//! Thin, safe wrappers over the Linux system calls the native runtime needs that `nix` does
//! not cover (pidfds, `mount_setattr`, raw `clone`, SCM_RIGHTS on seqpacket sockets, a few
//! ioctls).
//!
//! Owns: the `unsafe` of the native backend (the few call sites elsewhere — `fork`/`clone`,
//! taking ownership of an accepted fd, registering an fd with tokio — each carry their own
//! `SAFETY:` comment). Each wrapper states the invariant it relies on.
//!
//! Never: holds state, allocates in code that may run between `fork` and `exec` (the
//! `*_in_child` helpers only touch the stack), or panics.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `pidfd_open(2)`: a file descriptor referring to process `pid` (close-on-exec).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1; no memory is shared.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`: signal the process the pidfd refers to (immune to pid reuse).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo pointer is allowed and means "as kill(2) would"; the fd is valid
    // for the duration of the borrow.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// How a waited-for process ended, as `waitid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Exited(i32),
    Signaled(i32),
}

/// `waitid(P_PIDFD, .., WEXITED|WNOHANG)`: `Ok(None)` while the process still runs;
/// `Err(ECHILD)` when it is not our child (only its end, not its status, can be observed).
pub fn waitid_pidfd(pidfd: BorrowedFd<'_>) -> io::Result<Option<WaitOutcome>> {
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { zeroed() };
    const P_PIDFD: libc::idtype_t = 3;
    // SAFETY: `info` is a valid, writable siginfo_t that outlives the call; the fd is valid.
    cvt_int(unsafe {
        libc::waitid(
            P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    })?;
    // SAFETY: after a successful waitid the kernel filled si_pid/si_status/si_code (si_pid is
    // 0 when WNOHANG found nothing).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => WaitOutcome::Exited(status),
        _ => WaitOutcome::Signaled(status),
    }))
}

/// `clone(CLONE_PARENT | SIGCHLD)` without a new stack: fork semantics, but the child becomes
/// a child of our parent. Returns the child's pid in the parent, 0 in the child.
///
/// # Safety
/// The caller must be single-threaded (as after `fork`, only async-signal-safe state is
/// guaranteed consistent in the child otherwise).
pub unsafe fn clone_parent() -> io::Result<i32> {
    let flags = (libc::CLONE_PARENT as libc::c_ulong) | (libc::SIGCHLD as libc::c_ulong);
    // SAFETY: with a null stack pointer clone behaves like fork (the child runs on a
    // copy-on-write copy of our stack); the caller guarantees we are single-threaded.
    let ret = cvt(unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    })?;
    Ok(ret as i32)
}

/// `fork(2)`.
///
/// # Safety
/// The caller must be single-threaded (paddock init is), so the child may allocate.
pub unsafe fn fork() -> io::Result<i32> {
    // SAFETY: forwarded to the caller.
    cvt_int(unsafe { libc::fork() })
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)`: set mount flags on the mount at `path` (and below it when
/// `recursive`) without touching the others (atime flags stay as they are, which matters
/// for locked mounts in a user namespace).
pub fn mount_setattr(path: &Path, recursive: bool, set: u64) -> io::Result<()> {
    let c = cstring(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: `c` is a valid NUL-terminated path and `attr` a valid mount_attr of the size
    // we pass; both outlive the call.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

pub fn cstring(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `ioctl(fd, TIOCSCTTY, 0)`: make the terminal `fd` our controlling terminal.
pub fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument; no memory is passed.
    cvt_int(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    Ok(())
}

/// `ioctl(fd, TIOCSWINSZ, ..)`.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct, which `ws` is, and it outlives the call.
    cvt_int(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// Bring the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes integers and returns a new fd or -1.
    let fd =
        cvt_int(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface name from and writes flags into `req`, a
    // valid ifreq that outlives the call.
    cvt_int(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union member written by SIOCGIFFLAGS is ifru_flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    cvt_int(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// Mark every fd >= `from` close-on-exec (`close_range(.., CLOSE_RANGE_CLOEXEC)`).
pub fn cloexec_from(from: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes integers; with CLOEXEC it only sets flags, closing nothing.
    cvt(unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, CLOSE_RANGE_CLOEXEC) })?;
    Ok(())
}

/// `_exit(2)`: end the process without running destructors or atexit handlers (for a forked
/// child that failed before exec).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Close a raw fd in a forked child that never returns (so the `OwnedFd` it came from is
/// never dropped there and the fd is not closed twice). Errors are ignored.
pub fn close_raw(fd: RawFd) {
    // SAFETY: closing an fd number has no memory-safety preconditions; the caller
    // guarantees nothing in this process uses or closes it afterwards.
    unsafe {
        libc::close(fd);
    }
}

/// Write all of `buf` to a raw fd, ignoring errors (diagnostics in a forked child).
pub fn write_all_raw(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// `execve(2)`; returns only on failure, with the errno.
pub fn execve(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> i32 {
    // SAFETY: `path` is NUL-terminated; argv and envp are NULL-terminated arrays of pointers
    // to NUL-terminated strings owned by the caller, alive across the call.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::ENOENT)
}

/// Reset every signal disposition we may have changed and unblock all signals (in a child
/// before exec; Rust ignores SIGPIPE at startup and that would be inherited).
pub fn reset_signals_in_child() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: restoring the default disposition is always valid and installs no handler.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: sigset_t is plain old data; sigemptyset initialises it; sigprocmask reads it.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Send one seqpacket message with an optional fd attached (SCM_RIGHTS).
pub fn send_msg(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
    dontwait: bool,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // u64-aligned control buffer big enough for one fd.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `cbuf` (32 bytes >= space for one fd), so the first
        // header and its data lie inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    let mut flags = libc::MSG_NOSIGNAL;
    if dontwait {
        flags |= libc::MSG_DONTWAIT;
    }
    loop {
        // SAFETY: `msg` points at `iov`/`cbuf`, which outlive the call; the fd is valid.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

/// Receive one seqpacket message and any fds attached to it. `Ok((0, _))` means EOF.
pub fn recv_msg(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    dontwait: bool,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>();
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if dontwait {
        flags |= libc::MSG_DONTWAIT;
    }
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `cbuf`, all valid and writable for
        // the lengths given, and alive across the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG_* macros walk only
    // within that buffer, and every SCM_RIGHTS payload is an array of fds now owned by us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, fds))
}

/// A new socket of the given domain/type (close-on-exec) in the caller's network namespace.
pub fn new_socket(domain: i32, ty: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes integers and returns a new fd or -1.
    let fd = cvt_int(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Take ownership of an fd number inherited from our parent (e.g. fd 3 of `paddock init`).
///
/// # Safety
/// `fd` must be open and not owned by anything else in this process.
pub unsafe fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: forwarded to the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Set O_NONBLOCK on an fd.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL with integer flags on a valid fd.
    unsafe {
        let fl = cvt_int(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        cvt_int(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            fl | libc::O_NONBLOCK,
        ))?;
    }
    Ok(())
}

/// Whether the raw fd number is open and refers to a socket.
pub fn fd_is_socket(fd: RawFd) -> bool {
    // SAFETY: `stat` is plain old data; all-zero is valid.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: fstat only writes into `st`, which is valid and outlives the call; a closed fd
    // yields EBADF.
    let r = unsafe { libc::fstat(fd, &mut st) };
    r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

/// Whether the raw fd is a SOCK_SEQPACKET socket.
pub fn is_seqpacket(fd: RawFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`, which is valid for them.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && ty == libc::SOCK_SEQPACKET
}

/// Duplicate a raw fd to a new close-on-exec fd >= 3.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC with integer arguments; returns a new fd or -1.
    let new = cvt_int(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `dup2(fd, target)` for a standard stream number no Rust object owns.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: both are valid fd numbers; the target (0, 1 or 2) is replaced atomically and
    // is not owned by any Rust object in this process.
    cvt_int(unsafe { libc::dup2(fd.as_raw_fd(), target) })?;
    Ok(())
}

/// Whether the raw fd number is open.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags; a closed fd yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A user namespace that swaps 0 and `outside` (`inside 0 → outside `outside``, `inside
/// `outside` → outside 0`), for uid and gid: used as the idmapping of an idmapped mount.
/// Files owned by 0 on disk appear as owned by `outside`, and a process of `outside` writes
/// files owned by 0. The swap also keeps root representable on the mount, which a file
/// server working as root (gVisor's gofer) needs to create files before it chowns them.
///
/// A child is forked into a new user namespace, its maps written from here (root), its
/// namespace opened, and the child ended. Needs root.
pub fn userns_mapping_root_to(outside: u32) -> io::Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe().map_err(io::Error::from)?;
    // SAFETY: the child only calls async-signal-safe functions (unshare, read, write,
    // _exit) before it ends; it touches no lock or allocator of this multi-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(w);
        // SAFETY: plain syscalls on integers and a stack buffer; see above.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                libc::_exit(1);
            }
            let mut b = [0u8; 1];
            // Wait until the parent has opened our namespace (or gone).
            libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(r);
    let result = (|| {
        // The child unshares right away; its namespace differs from ours once it did.
        let ours = std::fs::metadata("/proc/self/ns/user")?.ino();
        let path = format!("/proc/{pid}/ns/user");
        let start = std::time::Instant::now();
        while std::fs::metadata(&path)?.ino() == ours {
            if start.elapsed() > std::time::Duration::from_secs(5) {
                return Err(io::Error::other(
                    "the helper did not enter a user namespace",
                ));
            }
            std::thread::yield_now();
        }
        let map = format!("0 {outside} 1\n{outside} 0 1\n");
        std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &map)?;
        let f = std::fs::File::open(&path)?;
        Ok(OwnedFd::from(f))
    })();
    drop(w); // ends the child's read
    let mut status = 0;
    // SAFETY: waiting for our own child by pid.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result
}

/// Attach at `target` an idmapped clone of the mount tree at `source` (recursive), with
/// the idmapping of the user namespace `userns`.
pub fn idmapped_bind(source: &Path, target: &Path, userns: &OwnedFd) -> io::Result<()> {
    let src = cstring(source)?;
    let dst = cstring(target)?;
    // SAFETY: `src` is a valid NUL-terminated path; open_tree returns a new fd or -1.
    let fd = cvt_int(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        ) as libc::c_int
    })?;
    // SAFETY: `fd` was just returned to us and is owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: `tree` is a detached mount fd, `empty` a valid empty path (AT_EMPTY_PATH),
    // `attr` a valid mount_attr of the size passed; all outlive the call.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    })?;
    // SAFETY: `tree` is a detached mount fd and `dst` a valid NUL-terminated path.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}
