#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz/corpus/<target>/ (seed-*): the same bytes on
every run, except the TLS ClientHellos (made by Python's ssl module, with fresh randoms).

The audit bundle seeds come from the audit crate itself: `cargo +nightly test
--manifest-path fuzz/Cargo.toml --test seeds` (fuzz/seeds.rs) writes them. Inputs the
fuzzer found and `scripts/fuzz.sh merge` kept are the other files of each directory.

`make_seeds.py TARGET...` writes only those targets' seeds.
"""

import json
import os
import struct
import ssl
import hashlib
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    if len(sys.argv) > 1 and target not in sys.argv[1:]:
        return
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- config_yaml
FULL = """name: my-agent
command: "claude --model 'big one'"
env:
  FOO: bar
  _UNDER_1: "1"
mounts:
  - "~/data:/data:ro"
  - ./cache:/cache
  - {source: /abs/src, target: /dst/./x, read_only: true}
workspace: {mode: bind}
limits: {memory: 1.5G, pids: 512, cpus: 2}
runtime: gvisor
image: debian:bookworm
dependencies: [node, "apt:jq", "pip:requests==2.32.3", "npm:typescript@5"]
network:
  policy: strict
  rules:
    - host: api.github.com
      port: 443
      allow_methods: [GET, HEAD]
      deny_methods: [DELETE]
      allow_paths: ["/repos/**"]
      deny_paths: ["/admin/*"]
    - {host: "*.Example.com", action: deny}
    - {host: 10.0.0.5}
  passthrough: ["*.pinned.example", bank.example]
  headers:
    - host: api.github.com
      set: {X-GitHub-Api-Version: "2022-11-28", X-Retries: 3}
      remove: [User-Agent]
grants: [github, npm_token]
ports: {web: 3000, api: "8080"}
agents:
  claude: {version: 2.1.332, allow: [registry.npmjs.org], env: {FOO: bar}}
  aider:
    command: [aider, --yes]
    login: [openai]
    allow: [api.openai.com]
    state: [/home/paddock/.aider]
review:
  autorun: [Makefile.local, scripts/hooks/]
"""
USER_ONLY = """router: {port: 8080}
daemon: {idle_timeout: 5m}
audit: {checkpoint_every: 1000, checkpoint_interval: 1h}
upstream:
  extra_ca: certs/ca.pem
  resolve:
    internal.example: "10.0.0.5:443"
    v6.example: "[::1]:8443"
"""
README = """name: api-agent
command: ["claude", "--dangerously-skip-permissions"]
env: { RUST_LOG: debug }
mounts: ["~/.cache/pip:/home/paddock/.cache/pip"]
workspace: { mode: overlay }        # or bind
limits: { memory: 4G, pids: 1024, cpus: 2 }
"""
put("config_yaml", "full", FULL)
put("config_yaml", "user-only", USER_ONLY)
put("config_yaml", "readme", README)
put("config_yaml", "layered", USER_ONLY + "env: {A: user}\nmounts: [/a:/a]\n\0" + README)
put("config_yaml", "anchors", "env: &e {A: b}\nagents:\n  x: {env: *e, command: [x]}\n")
put("config_yaml", "errors", "nmae: x\nlimits: {memory: 12Q}\nenv: {A: 1, A: 2}\n\tbad: tab\n")
put("config_yaml", "multi-doc", "name: a\n---\nname: b\n")
put("config_yaml", "bom-empty", "\ufeff# nothing\n")

# ---------------------------------------------------------------- api_bodies
def body(sel, obj):
    return bytes([sel]) + json.dumps(obj, separators=(",", ":")).encode()


create = {
    "name": "fix-bug", "workspace": "/src/app", "command": ["make", "test"],
    "env": {"RUST_LOG": "debug"}, "workspace_mode": "overlay",
    "mounts": [{"source": "/home/u/data", "target": "/data", "read_only": True}],
    "limits": {"memory_bytes": 2147483648, "pids": 512, "cpus": 1.5},
    "runtime": "native", "image": None, "dependencies": ["node", "apt:jq"],
    "tty": True, "stdin": True, "tty_size": {"rows": 40, "cols": 120}, "start": True,
    "config": {"name": "fix-bug"}, "config_sources": ["/src/app/paddock.yaml"],
    "grants": ["github"],
    "network": {"policy": "strict", "rules": [
        {"host": "api.github.com", "port": 443, "allow_methods": ["GET"],
         "allow_paths": ["/repos/**"], "action": "allow"},
        {"host": "*.example.com", "action": "deny"}],
        "passthrough": ["bank.example.com"],
        "headers": [{"host": "api.github.com", "set": {"x-a": "1"}, "remove": ["user-agent"]}]},
    "ports": {"web": 3000},
    "agent": {"name": "claude", "state": ["/home/paddock/.claude"],
              "seed": {"/home/paddock/.claude.json": "{}"}},
    "worktree": {"repo": "/src/app", "branch": "wt/x"},
}
put("api_bodies", "create-run", body(0, create))
put("api_bodies", "create-run-min", body(0, {"workspace": "/w"}))
put("api_bodies", "stop", body(1, {"grace_secs": 2.5}))
put("api_bodies", "apply", body(2, {"force": True, "include_git": False, "include_autorun": True}))
put("api_bodies", "exec", body(3, {"command": ["bash", "-lc", "echo hi"], "env": {"A": "b"},
                                   "tty": True, "stdin": True, "tty_size": {"rows": 24, "cols": 80}}))
put("api_bodies", "put-grant", body(4, {"kind": "http", "hosts": ["api.example.com"],
                                        "header": "X-Api-Key", "format": "Bearer {}",
                                        "env": ["EXAMPLE_KEY"], "substitute": ["url", "body"],
                                        "value": "s3cr3t-v4lue"}))
run = {"id": "run_0123456789ab", "name": "fix-bug", "workspace": "/src/app", "command": ["make"],
       "runtime": "native", "state": "stopped", "workspace_mode": "overlay",
       "created_at": "2026-01-01T00:00:00Z", "started_at": "2026-01-01T00:00:01Z",
       "finished_at": "2026-01-01T00:00:09Z", "exit_code": 0, "tty": False,
       "limits": {"memory_bytes": None, "pids": None, "cpus": 0.5}, "mounts": [],
       "config": {}, "config_sources": [], "applied": False, "ports": {"web": 3000},
       "urls": {"web": "http://web.fix-bug.localhost:8080"}, "agent": "claude",
       "branch": "wt/x", "worktree": "/home/u/.paddock/wt/x"}
put("api_bodies", "run", body(5, run))
put("api_bodies", "event", body(11, {"seq": 7, "ts": "2026-01-01T00:00:00Z", "run_id": "run_0123456789ab",
                                     "kind": "run.state", "data": {"from": "running", "to": "stopped",
                                                                   "exit_code": 0, "x": [1.25, -3, 1e300]}}))
put("api_bodies", "snapshot", body(23, {"message": "before the refactor"}))
put("api_bodies", "rollback", body(24, {"snapshot": "s2", "paths": ["src/lib.rs", "docs/"]}))
put("api_bodies", "snapshots", body(26, {"run_id": "run_0123456789ab", "snapshots": [
    {"id": "s1", "message": None, "created_at": "2026-01-01T00:00:00Z", "auto": True,
     "files": 12, "shared": 10, "copied_bytes": 4096, "took_ms": 1.75}]}))
put("api_bodies", "error", body(18, {"error": {"code": "not_found", "message": "no run `x`",
                                               "hint": "see `paddock ps -a`"}}))

# ---------------------------------------------------------------- rule_matcher
# Structured input (arbitrary::Unstructured): any bytes describe some policy and queries.
for i, seed in enumerate([b"\x01" * 64, bytes(range(256)), b"\xff\x00" * 40]):
    put("rule_matcher", "bytes-%d" % i, seed)

# ---------------------------------------------------------------- layer_scan
# Structured input as well: each seed describes some upper and workspace trees.
for i, seed in enumerate([bytes(range(256)), bytes((i * 37 + 11) % 256 for i in range(512)),
                          b"\x05\x01" * 200, hashlib.sha256(b"paddock").digest() * 16]):
    put("layer_scan", "bytes-%d" % i, seed)

# ---------------------------------------------------------------- dns_parser
def qname(name):
    out = b""
    for l in name.split("."):
        if l:
            out += bytes([len(l)]) + l.encode()
    return out + b"\0"


def query(id_, name, qtype=1, flags=0x0100, extra=b"", ar=0):
    return struct.pack(">HHHHHH", id_, flags, 1, 0, 0, ar) + qname(name) + struct.pack(">HH", qtype, 1) + extra


opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)  # EDNS(0) OPT, as glibc and dig send it
put("dns_parser", "a-api.github.com", query(0x1234, "api.github.com"))
put("dns_parser", "aaaa-www.example.com", query(0xbeef, "www.example.com", 28))
put("dns_parser", "https-edns", query(7, "registry.npmjs.org", 65, extra=opt, ar=1))
put("dns_parser", "denied", query(9, "bad.example.com"))
# A compression pointer back into the header region, and a pointer loop.
put("dns_parser", "pointer", struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x03www\xc0\x0c" + b"\0\x01\0\x01")
put("dns_parser", "loop", struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\x01\0\x01")
put("dns_parser", "response", struct.pack(">HHHHHH", 5, 0x8180, 1, 1, 0, 0) + qname("x.example.com") + b"\0\x01\0\x01")
put("dns_parser", "chaos-class", struct.pack(">HHHHHH", 2, 0, 1, 0, 0, 0) + qname("version.bind") + b"\0\x10\0\x03")

# ---------------------------------------------------------------- router_head
GET = ("GET /api/items?x=1 HTTP/1.1\r\nHost: web.myapp.localhost:8080\r\nUser-Agent: curl/8.5.0\r\n"
       "Accept: application/json\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"
       "X-Forwarded-For: 1.2.3.4\r\n\r\n")
POST = ("POST /submit HTTP/1.1\r\nHost: myapp.localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 13\r\n\r\n{\"a\":\"hello\"}")
CHUNKED_REQ = ("PUT /up HTTP/1.1\r\nHost: api.run1.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n0\r\n\r\n")
SMUGGLE = ("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n")
WS = ("GET /ws HTTP/1.1\r\nHost: web.myapp.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
RESP = ("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
        "Keep-Alive: timeout=5\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nhello")
RESP_CHUNKED = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
RESP_10 = "HTTP/1.0 204 No Content\r\nServer: x\r\n\r\n"
RESP_100 = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
put("router_head", "req-get", b"\x00" + GET.encode())
put("router_head", "req-post", b"\x01" + POST.encode())
put("router_head", "req-chunked", b"\x00" + CHUNKED_REQ.encode())
put("router_head", "req-smuggle", b"\x00" + SMUGGLE.encode())
put("router_head", "req-websocket", b"\x00" + WS.encode())
put("router_head", "req-bare-lf", b"\x00" + GET.replace("\r\n", "\n").encode())
put("router_head", "resp-200", b"\x02" + RESP.encode())
put("router_head", "resp-head", b"\x03" + RESP_CHUNKED.encode())
put("router_head", "resp-close", b"\x04" + RESP_10.encode())
put("router_head", "resp-100", b"\x02" + RESP_100.encode())
put("router_head", "chunked", b"\x05\x03" + b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT")
put("router_head", "host", b"\x07" + b"Web.MyApp.localhost.:8080")

# ---------------------------------------------------------------- proxy_head
def client_hello(sni, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


hello_allowed = client_hello("allowed.test", ["h2", "http/1.1"])
hello_other = client_hello("Other.Test.", ["http/1.1"])
# The second byte picks the connection: name (sel % 5), address (sel / 5 % 3), port (sel / 15 % 3).
put("proxy_head", "tls-allowed", b"\x00\x10" + hello_allowed)  # allowed.test:443
put("proxy_head", "tls-fronting", b"\x00\x10" + hello_other)
put("proxy_head", "tls-passthrough", b"\x01\x12" + hello_allowed)
put("proxy_head", "http-get", b"\x00\x01GET /x HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
put("proxy_head", "http-fronting", b"\x01\x02GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
put("proxy_head", "http-post-chunked", b"\x00\x00POST /up HTTP/1.1\r\nHost: www.allowed.test:80\r\n"
    b"Transfer-Encoding: chunked\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
put("proxy_head", "h2-preface", b"\x00\x01PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
put("proxy_head", "explicit-get", b"\x02GET http://allowed.test/a?b HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
put("proxy_head", "explicit-fronting", b"\x02GET http://allowed.test/ HTTP/1.1\r\nHost: other.test:80\r\n\r\n")
put("proxy_head", "explicit-connect", b"\x02CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n" + hello_allowed)
put("proxy_head", "explicit-connect-ip", b"\x02CONNECT [::1]:443 HTTP/1.1\r\n\r\n")
put("proxy_head", "explicit-https-url", b"\x02GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
put("proxy_head", "hello-records", b"\x03" + hello_allowed)
put("proxy_head", "hello-message", b"\x03" + hello_allowed[5:])

# ---------------------------------------------------------------- attach_frames
def frame(kind, payload):
    return bytes([kind]) + struct.pack(">I", len(payload)) + payload


frames = (frame(1, b"hello\n") + frame(2, b"\x00\xff") + frame(3, json.dumps(
    {"index": 1, "total": 3, "description": "mounting the workspace"}).encode())
    + frame(12, struct.pack(">HH", 40, 120)) + frame(13, struct.pack(">i", 2)) + frame(11, b"")
    + frame(10, b"ls\n") + frame(99, b"future") + frame(5, b"{}") + frame(4, json.dumps(
        {"id": "run_0123456789ab", "state": "stopped", "exit_code": 0}).encode()))
put("attach_frames", "frames", b"\x00" + frames)
put("attach_frames", "frames-truncated", b"\x00" + frame(1, b"abc")[:6])
put("attach_frames", "frames-bad-resize", b"\x00" + frame(12, b"\x00\x28"))
ev = {"seq": 3, "ts": "2026-01-01T00:00:00Z", "run_id": "run_0123456789ab", "kind": "run.state",
      "data": {"from": "starting", "to": "running"}}
sse = ": paddock events\n\n" + "id: 3\nevent: run.state\ndata: %s\n\n" % json.dumps(ev, separators=(",", ":"))
put("attach_frames", "sse", b"\x01\x04" + sse.encode())
put("attach_frames", "sse-multiline", b"\x01\x00" + b"data: {\"seq\":1,\ndata: \"ts\":\"t\",\"kind\":\"k\",\"data\":null}\n\n")
ndjson = "".join(json.dumps(l) + "\n" for l in [
    {"ts_ms": 1700000000000, "stream": "stdout", "text": "hello\n"},
    {"ts_ms": 1700000000001, "stream": "stderr", "b64": "AP8="}]) + "\n"
put("attach_frames", "ndjson", b"\x02\x05" + ndjson.encode())

# ---------------------------------------------------------------- docker_policy
# `METHOD PATH?QUERY`, a newline, the body: requests as the docker CLI (API 1.47) sends them.
# The fuzz target's real workspace is /tmp/paddock-fuzz-docker-ws (src/, etc-link -> /etc).
WSP = "/tmp/paddock-fuzz-docker-ws"


def docker(method, target, body=None):
    head = ("%s %s" % (method, target)).encode()
    if body is None:
        return head
    return head + b"\n" + json.dumps(body, separators=(",", ":")).encode()


def docker_run(cmd, user="", host=None, labels=None):
    """The body of `docker run` (`docker container create`), as the CLI fills it in."""
    hc = {"Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
          "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
          "AutoRemove": True, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [40, 120],
          "CapAdd": None, "CapDrop": None, "CgroupnsMode": "", "Dns": [], "DnsOptions": [],
          "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "",
          "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
          "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
          "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
          "BlkioWeight": 0, "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None,
          "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": [],
          "MaskedPaths": None, "ReadonlyPaths": None}
    hc.update(host or {})
    return {"Hostname": "", "Domainname": "", "User": user, "AttachStdin": False, "AttachStdout": True,
            "AttachStderr": True, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
            "Cmd": cmd, "Image": "alpine:3.20", "Volumes": {}, "WorkingDir": "", "Entrypoint": None,
            "OnBuild": None, "Labels": labels if labels is not None else {}, "HostConfig": hc,
            "NetworkingConfig": {"EndpointsConfig": {"default": {"IPAMConfig": None, "Links": None,
                                                                 "Aliases": None, "MacAddress": "",
                                                                 "DriverOpts": None, "NetworkID": ""}}}}


put("docker_policy", "run", docker("POST", "/v1.47/containers/create?name=web", docker_run(["echo", "hi"])))
put("docker_policy", "run-binds", docker("POST", "/v1.47/containers/create", docker_run(
    ["make", "test"], user="1000:1000", labels={"com.example.app": "web"}, host={
        "Binds": [WSP + "/src:/src:ro", WSP + "/src-link/sub:/sub", "cache:/root/.cache"],
        "Mounts": [{"Type": "bind", "Source": WSP + "/src/file", "Target": "/f", "ReadOnly": True},
                   {"Type": "volume", "Source": "data", "Target": "/data"},
                   {"Type": "tmpfs", "Target": "/tmp"}],
        "SecurityOpt": ["no-new-privileges"]})))
put("docker_policy", "run-joined", docker("POST", "/v1.47/containers/create", docker_run(
    ["sh"], host={"NetworkMode": "container:web", "PidMode": "container:web", "IpcMode": "container:web",
                  "VolumesFrom": ["data:ro"], "Links": ["/db:db"], "CapDrop": ["ALL"]})))
put("docker_policy", "run-refused", docker("POST", "/v1.47/containers/create", docker_run(
    ["sh"], host={"Privileged": True, "CapAdd": ["SYS_ADMIN"], "NetworkMode": "host", "PidMode": "host",
                  "UsernsMode": "host", "Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda",
                                                     "CgroupPermissions": "rwm"}],
                  "SecurityOpt": ["seccomp=unconfined"], "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                  "Binds": ["/:/host", WSP + "/etc-link:/e"]})))
put("docker_policy", "run-spellings", docker("POST", "/containers/create", {
    "Image": "x", "hostconfig": {"privileged": True}, "HostConfig": {"Mounts": [
        {"type": "bind", "source": "/"}, {"Type": "volume", "Source": "v", "VolumeOptions": {
            "DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}}]},
    "Label\u017f": {"paddock.run": "x"}}))
put("docker_policy", "exec", docker("POST", "/v1.47/containers/web/exec", {
    "User": "", "Privileged": False, "Tty": False, "ConsoleSize": [40, 120], "AttachStdin": False,
    "AttachStderr": True, "AttachStdout": True, "Detach": False, "DetachKeys": "", "Env": None,
    "WorkingDir": "", "Cmd": ["ls", "-l"]}))
put("docker_policy", "exec-start", docker("POST", "/v1.47/exec/1f2e3d4c5b6a/start", {"Detach": False, "Tty": True}))
put("docker_policy", "volume", docker("POST", "/v1.47/volumes/create", {
    "Driver": "local", "DriverOpts": {}, "Labels": {"com.example": "1"}, "Name": "cache"}))
put("docker_policy", "volume-bind", docker("POST", "/v1.47/volumes/create", {
    "Driver": "local", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}, "Name": "etc"}))
BUILD_Q = ("buildargs=%7B%7D&cachefrom=%5B%5D&cgroupparent=&cpuperiod=0&cpuquota=0&cpusetcpus=&cpusetmems="
           "&cpushares=0&dockerfile=Dockerfile&labels=%7B%22org.opencontainers.image.title%22%3A%22app%22%7D"
           "&memory=0&memswap=0&networkmode=default&rm=1&shmsize=0&t=myapp%3A1&t=ghcr.io%2Fme%2Fapp%3Alatest"
           "&target=&ulimits=null&version=1")
put("docker_policy", "build", docker("POST", "/v1.47/build?" + BUILD_Q))
put("docker_policy", "build-refused", docker("POST", "/v1.47/build?networkmode=host&t=paddock-base%3Ax"
                                              "&remote=https%3A%2F%2Fgithub.com%2Fa%2Fb.git&version=2"
                                              "&labels=%7B%22paddock.dockerhost.run%22%3A%22other%22%7D"))
put("docker_policy", "pull", docker("POST", "/v1.47/images/create?fromImage=docker.io%2Flibrary%2Falpine&tag=3.20"))
put("docker_policy", "pull-registry", docker("POST", "/v1.47/images/create?fromImage=ghcr.io%2Fme%2Fapp"
                                              "&tag=sha256%3A" + "ab" * 32 + "&platform=linux%2Famd64"))
put("docker_policy", "import", docker("POST", "/v1.47/images/create?fromSrc=-&repo=x&tag=1"))
put("docker_policy", "push", docker("POST", "/v1.47/images/localhost:5000/me/app/push?tag=1"))
put("docker_policy", "tag", docker("POST", "/v1.47/images/3f4e5d/tag?repo=registry.example.com%2Fapp&tag=2"))
put("docker_policy", "commit", docker("POST", "/v1.47/commit?container=web&repo=myimg&tag=1&pause=1", {}))
put("docker_policy", "rmi", docker("DELETE", "/v1.47/images/myimg:1?force=0&noprune=0"))
put("docker_policy", "ps", docker("GET", "/v1.47/containers/json?all=1&filters=%7B%22label%22%3A%7B%22a%3Db"
                                   "%22%3Atrue%7D%2C%22status%22%3A%5B%22running%22%5D%7D"))
put("docker_policy", "volumes-ls", docker("GET", "/v1.47/volumes?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D"))
put("docker_policy", "events", docker("GET", "/v1.47/events?since=1700000000&filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D"))
put("docker_policy", "start", docker("POST", "/v1.47/containers/web/start"))
put("docker_policy", "rm", docker("DELETE", "/v1.47/containers/web?v=1&force=1"))
put("docker_policy", "logs", docker("GET", "/v1.47/containers/web/logs?stdout=1&stderr=1&follow=1&tail=all"))
put("docker_policy", "odd-path", docker("GET", "/v1.47/containers/..%2f..%2fjson"))
put("docker_policy", "ping", docker("HEAD", "/_ping"))
put("docker_policy", "swarm", docker("POST", "/v1.47/swarm/init", {"ListenAddr": "0.0.0.0:2377"}))

print("seeds written under", os.path.join(HERE, "corpus"))
