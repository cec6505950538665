//! paddock's seccomp deny table as a Docker/OCI seccomp profile (JSON).
//!
//! The rows are the same [`paddock_confine::seccomp::deny_table`] the native runtime
//! compiles to BPF; here each becomes one or more entries of the profile format the engine
//! hands to runc or runsc. The default action is allow (as for native); architectures are
//! limited to the build's native one, so an `int 0x80` or x32 syscall hits the profile's
//! bad-architecture action (the process is killed) instead of slipping past the rows.
//!
//! Owns: the translation. Never: adds a rule the table does not have.

use paddock_confine::seccomp::{Action, DenyRule, When, deny_table};
use serde_json::{Value, json};

fn action(a: Action) -> Value {
    match a {
        Action::Eperm => json!({"action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}),
        Action::Enosys => json!({"action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
    }
}

fn entry(rule: &DenyRule, args: Vec<Value>) -> Value {
    let mut e = action(rule.action);
    e["names"] = json!([rule.name]);
    if !args.is_empty() {
        e["args"] = Value::Array(args);
    }
    e
}

fn masked(arg: u8, bit: u64) -> Value {
    json!({"index": arg, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"})
}

fn entries(rule: &DenyRule) -> Vec<Value> {
    match rule.when {
        When::Always => vec![entry(rule, vec![])],
        When::AnyBit { arg, bits } => bits
            .iter()
            .map(|&b| entry(rule, vec![masked(arg, b)]))
            .collect(),
        // libseccomp takes one comparison per argument in a rule, so "any of these bits,
        // unless the value is exactly `unless`" cannot be one entry. `unless` is the query
        // value (every bit set): one entry per bit whose value has that bit set but is not
        // the query, i.e. compare the argument with the bit while also requiring a bit the
        // query has and real flag sets never carry (the top bit of the 32-bit value).
        When::AnyBitUnless { arg, bits, unless } => {
            let top = 0x8000_0000u64;
            bits.iter()
                .map(|&b| {
                    if unless & top != 0 {
                        entry(
                            rule,
                            vec![json!({"index": arg, "value": b | top, "valueTwo": b,
                                        "op": "SCMP_CMP_MASKED_EQ"})],
                        )
                    } else {
                        entry(rule, vec![masked(arg, b)])
                    }
                })
                .collect()
        }
        When::ArgIn { arg, values } => values
            .iter()
            .map(|&v| {
                entry(
                    rule,
                    vec![json!({"index": arg, "value": v, "op": "SCMP_CMP_EQ"})],
                )
            })
            .collect(),
    }
}

fn native_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "SCMP_ARCH_X86_64"
    } else if cfg!(target_arch = "aarch64") {
        "SCMP_ARCH_AARCH64"
    } else {
        "SCMP_ARCH_NATIVE"
    }
}

/// The profile, as the JSON text `--security-opt seccomp=<json>` takes.
///
/// `gvisor`: runsc applies a profile inside its own kernel (with `--oci-seccomp`), but the
/// runsc Debian ships answers every matching row with EPERM whatever `errnoRet` says. The
/// rows that must fail with ENOSYS (`clone3`, so libc falls back to an inspectable `clone`)
/// would then break thread creation, so they are left out for gVisor: its own kernel does
/// not implement `clone3` and answers ENOSYS itself.
pub fn profile_json(gvisor: bool) -> String {
    profile_of(|r| !(gvisor && r.action == Action::Enosys))
}

/// The profile of the table's rows that `keep` keeps: allow by default, the native
/// architecture only.
fn profile_of(keep: impl Fn(&DenyRule) -> bool) -> String {
    let rows: Vec<DenyRule> = deny_table().into_iter().filter(|r| keep(r)).collect();
    let syscalls: Vec<Value> = rows.iter().flat_map(entries).collect();
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [native_arch()],
        "syscalls": syscalls,
    })
    .to_string()
}

/// Rows an engine inside a container (the docker:dind sidecar) needs lifted: runc makes
/// namespaces, mounts and pivots into each inner container's root, and joins a session
/// keyring. Inner containers get the inner engine's own default profile.
const ENGINE_NEEDS: &[&str] = &[
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "mount_setattr",
    "unshare",
    "setns",
    "clone",
    "keyctl",
    "add_key",
    "request_key",
];

/// The profile of a container that runs a Docker engine: [`profile_json`]'s rows minus
/// [`ENGINE_NEEDS`] (and `bpf` on a cgroup v2 host, where runc confines devices with a
/// BPF program). Everything else stays denied: modules, kexec, ptrace, perf, io_uring,
/// userfaultfd, handle-based opens, the clock, swap and reboot.
pub fn engine_profile_json(cgroup_v2: bool) -> String {
    profile_of(|r| !(ENGINE_NEEDS.contains(&r.name) || (cgroup_v2 && r.name == "bpf")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_profile_lifts_only_what_runc_needs() {
        let names = |json: String| -> std::collections::BTreeSet<String> {
            let p: Value = serde_json::from_str(&json).unwrap();
            p["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["names"][0].as_str().unwrap().to_owned())
                .collect()
        };
        let engine = names(engine_profile_json(false));
        for lifted in ENGINE_NEEDS {
            assert!(!engine.contains(*lifted), "{lifted} still denied");
        }
        for kept in [
            "init_module",
            "kexec_load",
            "ptrace",
            "bpf",
            "perf_event_open",
            "open_by_handle_at",
            "io_uring_setup",
        ] {
            assert!(engine.contains(kept), "{kept} no longer denied");
        }
        assert!(!names(engine_profile_json(true)).contains("bpf"));
    }

    #[test]
    fn every_row_of_the_table_is_in_the_profile() {
        let p: Value = serde_json::from_str(&profile_json(false)).unwrap();
        let names: std::collections::BTreeSet<String> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["names"][0].as_str().unwrap().to_owned())
            .collect();
        for rule in deny_table() {
            assert!(names.contains(rule.name), "{} missing", rule.name);
        }
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(p["architectures"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn unconditional_rows_have_no_arguments_and_conditional_rows_do() {
        let p: Value = serde_json::from_str(&profile_json(false)).unwrap();
        let mount = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["names"][0] == "mount")
            .unwrap();
        assert!(mount.get("args").is_none());
        assert_eq!(mount["errnoRet"], libc::EPERM);
        let ioctl: Vec<&Value> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["names"][0] == "ioctl")
            .collect();
        assert!(!ioctl.is_empty());
        assert!(ioctl.iter().all(|e| e["args"][0]["op"] == "SCMP_CMP_EQ"));
    }
}
