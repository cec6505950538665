//! Escape attempts from inside a real sandbox, through the real CLI. Each test is named
//! after the promise it defends (DESIGN.md) and fails if the sandbox lets the attempt
//! through. The probes are Python run with the host's /usr/bin/python3 inside the sandbox.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use common::Env;

fn ws(env: &Env) -> std::path::PathBuf {
    let ws = env.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

fn sandboxed(env: &Env, ws: &Path, script: &str) -> Output {
    env.cmd()
        .current_dir(ws)
        .args(["run", "-q", "--", "/usr/bin/python3", "-c", script])
        .output()
        .unwrap()
}

/// Run a probe that prints `ESCAPED: …` for every attempt that worked, and `BLOCKED: …`
/// otherwise; assert nothing escaped and every attempt was made.
fn assert_all_blocked(out: &Output, attempts: usize) {
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "probe failed to run: {text}\n{err}");
    let escaped: Vec<&str> = text.lines().filter(|l| l.starts_with("ESCAPED")).collect();
    assert!(
        escaped.is_empty(),
        "escapes: {escaped:#?}\nfull output:\n{text}"
    );
    let blocked = text.lines().filter(|l| l.starts_with("BLOCKED")).count();
    assert_eq!(blocked, attempts, "not every attempt ran:\n{text}\n{err}");
}

const PRELUDE: &str = r#"
import ctypes, errno, os, socket, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, fn):
    try:
        r = fn()
    except Exception as e:
        print("BLOCKED:", name, "-", type(e).__name__, e)
        return
    if r is False:
        print("BLOCKED:", name)
    else:
        print("ESCAPED:", name, "->", repr(r)[:200])
def read(path):
    with open(path, "rb") as f:
        return f.read(64)
def write(path, data=b"x"):
    with open(path, "wb") as f:
        f.write(data)
    return path
def sys_ok(r):
    # a libc call that returned -1 failed
    return False if r == -1 else r
"#;

#[test]
fn promise1_host_secrets_outside_the_workspace_are_invisible() {
    let env = Env::new();
    let ws = ws(&env);
    // Secrets in a home directory outside the workspace, in root's home, and paddock's own.
    let fake_home = env.dir.path().join("alice");
    std::fs::create_dir_all(fake_home.join(".ssh")).unwrap();
    std::fs::write(fake_home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    let root_secret = format!("/root/.paddock-escape-test-{}", std::process::id());
    std::fs::write(&root_secret, "ROOT SECRET").unwrap();
    let script = format!(
        "{PRELUDE}
attempt('read a key in another home dir', lambda: read('{alice}/.ssh/id_ed25519'))
attempt('list the other home dir', lambda: os.listdir('{alice}'))
attempt('read root home secret', lambda: read('{root_secret}'))
attempt('read PADDOCK_HOME state.db', lambda: read('{home}/state.db'))
attempt('read /etc/shadow', lambda: read('/etc/shadow'))
attempt('read /etc/gshadow', lambda: read('/etc/gshadow'))
attempt('write /etc/shadow', lambda: write('/etc/shadow'))
attempt('reach the docker socket', lambda: os.stat('/var/run/docker.sock'))
attempt('read /proc/1/environ of the host', lambda: b'PADDOCK_HOME' in read('/proc/1/environ') or False)
",
        alice = fake_home.display(),
        home = env.home.display(),
    );
    env.ok(&["ps"]); // make sure state.db exists
    let out = sandboxed(&env, &ws, &script);
    let _ = std::fs::remove_file(&root_secret);
    assert_all_blocked(&out, 9);
}

#[test]
fn promise3_writes_outside_the_allowed_paths_fail_and_leave_the_host_untouched() {
    let env = Env::new();
    // A workspace outside /tmp (the sandbox's /tmp is private and writable by design).
    let outer = tempfile::Builder::new()
        .prefix("paddock-escape-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ws = outer.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let parent = outer.path().to_path_buf();
    let script = format!(
        "{PRELUDE}
attempt('write /usr', lambda: write('/usr/paddock-escape'))
attempt('write /etc', lambda: write('/etc/paddock-escape'))
attempt('write the root dir', lambda: write('/paddock-escape'))
attempt('write next to the workspace', lambda: write('{parent}/paddock-escape'))
attempt('write /proc/sys', lambda: write('/proc/sys/kernel/core_pattern', b'|/bin/evil'))
attempt('write /proc/sysrq-trigger', lambda: write('/proc/sysrq-trigger', b'h'))
attempt('chmod a system binary', lambda: os.chmod('/usr/bin/env', 0o777))
attempt('mkdir in /opt', lambda: os.mkdir('/opt/paddock-escape'))
",
        parent = parent.display()
    );
    let out = sandboxed(&env, &ws, &script);
    assert_all_blocked(&out, 8);
    for p in [
        "/usr/paddock-escape",
        "/etc/paddock-escape",
        "/paddock-escape",
        "/opt/paddock-escape",
    ] {
        assert!(!Path::new(p).exists(), "{p} appeared on the host");
    }
    assert!(!parent.join("paddock-escape").exists());
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern")
            .unwrap()
            .trim(),
        "|/bin/evil"
    );
}

#[test]
fn promise3_host_processes_can_be_neither_seen_nor_signalled() {
    let env = Env::new();
    let ws = ws(&env);
    let mut victim = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let host_init = String::from_utf8_lossy(&std::fs::read("/proc/1/cmdline").unwrap()[..])
        .chars()
        .take(64)
        .collect::<String>();
    let host_init = format!("b{host_init:?}");
    let pid = victim.id();
    let script = format!(
        "{PRELUDE}
attempt('see the host process in /proc', lambda: os.path.exists('/proc/{pid}/cmdline') and b'sleep' in read('/proc/{pid}/cmdline') or False)
attempt('signal the host process', lambda: os.kill({pid}, 0))
attempt('see the host init', lambda: any(read('/proc/%s/cmdline' % p) == {host_init} for p in os.listdir('/proc') if p.isdigit()) or False)
"
    );
    let out = sandboxed(&env, &ws, &script);
    assert!(common::pid_alive(pid), "the host process was killed");
    victim.kill().unwrap();
    let _ = victim.wait();
    assert_all_blocked(&out, 3);
}

fn external_address() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(addr.split('/').next()?.to_string())
}

#[test]
fn promise2_host_tcp_servers_are_unreachable() {
    let env = Env::new();
    let ws = ws(&env);
    let local = TcpListener::bind("127.0.0.1:0").unwrap();
    let local_port = local.local_addr().unwrap().port();
    let external = external_address();
    let any = TcpListener::bind("0.0.0.0:0").unwrap();
    let any_port = any.local_addr().unwrap().port();
    let mut script = format!(
        "{PRELUDE}
def connect(host, port):
    s = socket.create_connection((host, port), timeout=3)
    s.close()
    return 'connected'
attempt('host loopback server', lambda: connect('127.0.0.1', {local_port}))
attempt('host wildcard server via loopback', lambda: connect('127.0.0.1', {any_port}))
def real_resolution(name):
    # The stub answers with a synthetic 198.18.0.0/15 address; any other answer came
    # from a real resolver.
    ip = socket.gethostbyname(name)
    return False if ip.startswith('198.18.') or ip.startswith('198.19.') else ip
attempt('a real DNS answer for a public name', lambda: real_resolution('example.com'))
def direct_to_synthetic(name, port):
    # A direct connection to the synthetic address on a port nothing governs.
    return connect(socket.gethostbyname(name), port)
attempt('a direct connection to an unproxied port', lambda: direct_to_synthetic('example.com', 9))
"
    );
    let mut attempts = 4;
    match &external {
        Some(ip) => {
            script.push_str(&format!(
                "attempt('host external address', lambda: connect('{ip}', {any_port}))\n"
            ));
            attempts += 1;
        }
        None => eprintln!("SKIP part: this machine has no global IPv4 address to test against"),
    }
    let started = std::time::Instant::now();
    let out = sandboxed(&env, &ws, &script);
    assert_all_blocked(&out, attempts);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "connections must fail at once, not time out"
    );
    drop((local, any));
}

#[test]
fn promise3_kernel_attack_surface_is_closed() {
    let env = Env::new();
    let ws = ws(&env);
    let script = format!(
        "{PRELUDE}
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
attempt('mount a tmpfs', lambda: sys_ok(libc.mount(b'x', b'/tmp', b'tmpfs', 0, None)))
attempt('nested user namespace', lambda: sys_ok(libc.unshare(CLONE_NEWUSER)))
attempt('nested mount namespace', lambda: sys_ok(libc.unshare(CLONE_NEWNS)))
attempt('unshare(1) a user namespace', lambda: subprocess.run(['unshare', '-U', 'true'], capture_output=True).returncode == 0 or False)
child = subprocess.Popen(['sleep', '30'])
PTRACE_ATTACH = 16
attempt('ptrace a sibling', lambda: sys_ok(libc.ptrace(PTRACE_ATTACH, child.pid, None, None)))
attempt('read a sibling memory via /proc', lambda: read('/proc/%d/mem' % child.pid))
child.kill()
attempt('raw ICMP socket', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt('packet socket', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
attempt('read /dev/mem', lambda: read('/dev/mem'))
attempt('read /dev/kmsg', lambda: read('/dev/kmsg'))
attempt('read /proc/kmsg', lambda: read('/proc/kmsg'))
attempt('read /proc/kcore', lambda: read('/proc/kcore'))
attempt('syslog(2) read', lambda: sys_ok(libc.klogctl(3, ctypes.create_string_buffer(64), 64)))
attempt('load a kernel module', lambda: sys_ok(libc.syscall(313, 0, b'', 0)))
attempt('set the clock', lambda: sys_ok(libc.stime(ctypes.byref(ctypes.c_long(0)))) if hasattr(libc, 'stime') else sys_ok(libc.clock_settime(0, ctypes.byref((ctypes.c_long * 2)(0, 0)))))
attempt('keyctl', lambda: sys_ok(libc.syscall(250, 0, 0, 0, 0, 0)))
attempt('bpf', lambda: sys_ok(libc.syscall(321, 0, None, 0)))
attempt('io_uring_setup', lambda: sys_ok(libc.syscall(425, 1, ctypes.create_string_buffer(120))))
attempt('become root via setuid', lambda: (os.setuid(0), os.getuid())[1] == 0 or False)
status = read('/proc/self/status') if False else open('/proc/self/status').read()
caps = [l for l in status.splitlines() if l.startswith(('CapEff', 'CapPrm', 'CapBnd', 'CapAmb'))]
attempt('hold any capability', lambda: [c for c in caps if not c.endswith('0000000000000000')] or False)
# gVisor's /proc/self/status has no NoNewPrivs line: ask prctl(PR_GET_NO_NEW_PRIVS) there.
attempt('run without no_new_privs', lambda: ('NoNewPrivs:\\t1' not in status if 'NoNewPrivs:' in status else libc.prctl(39, 0, 0, 0, 0) != 1) or False)
attempt('run without seccomp', lambda: 'Seccomp:\\t2' not in status or False)
"
    );
    let out = sandboxed(&env, &ws, &script);
    assert_all_blocked(&out, 22);
}

#[test]
fn promise3_the_agent_is_unprivileged_inside() {
    let env = Env::new();
    let ws = ws(&env);
    let out = env
        .cmd()
        .current_dir(&ws)
        .args(["run", "-q", "--", "sh", "-c", "id -u; id -g"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(ids.len(), 2, "{text}");
    assert!(
        ids.iter().all(|id| *id != 0),
        "the agent must not be uid/gid 0 inside: {ids:?}"
    );
}
