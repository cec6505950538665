//! Capability dropping, securebits and no_new_privs, with raw syscalls only.
//!
//! Owns: clearing the bounding, ambient, inheritable, permitted and effective capability sets
//! of the calling thread, locking securebits, and `PR_SET_NO_NEW_PRIVS`. Never: changes uids
//! or gids (the sandbox does that before), allocates (this runs in a forked child), or raises
//! anything.
//!
//! Order matters: dropping the bounding set and setting securebits need `CAP_SETPCAP`, so they
//! come before `capset` empties the permitted set.

use std::io;

use crate::ConfineError;

/// `_LINUX_CAPABILITY_VERSION_3`
const CAP_V3: u32 = 0x2008_0522;
const CAP_SETPCAP: u32 = 8;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Raw prctl with all-integer arguments.
fn prctl(op: libc::c_int, a: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: every prctl used here takes plain integer arguments (no pointers); unused
    // trailing arguments must be zero.
    let rc = unsafe {
        libc::prctl(
            op,
            a,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The highest capability number this kernel knows, found by probing `PR_CAPBSET_READ`
/// (EINVAL past the last one) so no file needs to be read.
pub fn last_cap() -> u32 {
    let mut cap = 0u32;
    while cap < 64 && prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap + 1)).is_ok() {
        cap += 1;
    }
    cap
}

fn capget() -> io::Result<[CapData; 2]> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: v3 header with two data structs, as the capget ABI requires; both live on our stack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn has_effective(cap: u32) -> bool {
    capget()
        .map(|d| d[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0)
        .unwrap_or(false)
}

/// What [`drop_all`] managed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsOutcome {
    /// The bounding set is empty afterwards.
    pub bounding_set_cleared: bool,
    /// Securebits were set and locked (NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off, NO_CAP_AMBIENT_RAISE).
    pub securebits_locked: bool,
}

/// Drop every capability of the calling thread.
///
/// Without `CAP_SETPCAP` (an unprivileged process outside any user namespace) the bounding
/// set cannot be changed; that is reported, not an error: with no_new_privs set afterwards,
/// execve cannot gain capabilities from setuid/file capabilities or from being uid 0.
pub fn drop_all() -> Result<CapsOutcome, ConfineError> {
    // Raise effective to permitted first (always allowed): a caller that kept its permitted
    // set across a uid change (PR_SET_KEEPCAPS) then has CAP_SETPCAP for the steps below.
    if let Ok(mut data) = capget() {
        for d in &mut data {
            d.effective = d.permitted;
        }
        let mut hdr = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        // SAFETY: v3 header plus two data structs on our stack; capset only reads them.
        // Failure is harmless: we only lose the chance to clear the bounding set.
        let _ =
            unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    }
    let can_setpcap = has_effective(CAP_SETPCAP);
    let last = last_cap();

    let mut bounding_set_cleared = true;
    for cap in 0..=last {
        match prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) => {
                return Err(ConfineError::Capabilities {
                    step: "bounding set read",
                    source: e,
                });
            }
        }
        match prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)) {
            Ok(_) => {}
            Err(e) if !can_setpcap && e.raw_os_error() == Some(libc::EPERM) => {
                bounding_set_cleared = false;
                break;
            }
            Err(e) => {
                return Err(ConfineError::Capabilities {
                    step: "bounding set drop",
                    source: e,
                });
            }
        }
    }

    let mut securebits_locked = false;
    if can_setpcap {
        let bits = libc::SECBIT_NOROOT
            | libc::SECBIT_NOROOT_LOCKED
            | libc::SECBIT_NO_SETUID_FIXUP
            | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
            | libc::SECBIT_KEEP_CAPS_LOCKED
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        match prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong) {
            Ok(_) => securebits_locked = true,
            // Already locked differently by someone earlier: not fatal, caps are still dropped.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => {
                return Err(ConfineError::Capabilities {
                    step: "securebits",
                    source: e,
                });
            }
        }
    }

    // Ambient first (it would be cleared by capset anyway, but be explicit). EINVAL: kernel < 4.3.
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => {
            return Err(ConfineError::Capabilities {
                step: "ambient",
                source: e,
            });
        }
    }

    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: v3 header plus two zeroed data structs on our stack; capset only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(ConfineError::Capabilities {
            step: "capset",
            source: io::Error::last_os_error(),
        });
    }
    Ok(CapsOutcome {
        bounding_set_cleared,
        securebits_locked,
    })
}

/// Set no_new_privs on the calling thread (inherited, irreversible).
pub fn set_no_new_privs() -> Result<(), ConfineError> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(ConfineError::NoNewPrivs)?;
    Ok(())
}

/// Whether no_new_privs is set on the calling thread.
pub fn no_new_privs() -> bool {
    matches!(prctl(libc::PR_GET_NO_NEW_PRIVS, 0), Ok(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_cap_matches_proc() {
        let from_proc: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .expect("read cap_last_cap")
            .trim()
            .parse()
            .expect("number");
        assert_eq!(last_cap(), from_proc);
    }
}
