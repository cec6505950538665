"""Docker Engine API latency over a Unix socket: the engine's own socket, or a run's
docker:host socket (the same calls, so the difference is the proxy).
    python3 dockerhost.py SOCKET IMAGE N   ->  one JSON line: per-call milliseconds
    python3 dockerhost.py cli IMAGE N [ARG...]  ->  the median ms of `docker run --rm ARG... IMAGE true`"""
import http.client, json, socket, statistics, subprocess, sys, time

if sys.argv[1] == "cli":
    image, n, args = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    ts = []
    for _ in range(n):
        s = time.monotonic()
        subprocess.run(["docker", "run", "--rm", *args, image, "true"], check=True, stdout=subprocess.DEVNULL)
        ts.append((time.monotonic() - s) * 1000)
    print("%.1f" % statistics.median(ts))
    sys.exit(0)

sock, image, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock)

def call(method, path, body=None):
    c = Conn("docker")  # a connection per call, as the docker CLI makes for each command
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, "/v1.41" + path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")
    return data

def timed(f):
    s = time.perf_counter(); f(); return (time.perf_counter() - s) * 1000

ps, create, start_wait, rm = [], [], [], []
for _ in range(3):
    call("GET", "/containers/json")
for i in range(n):
    ps.append(timed(lambda: call("GET", "/containers/json")))
for i in range(max(1, n // 10)):
    cid = {}
    create.append(timed(lambda: cid.update(json.loads(call("POST", "/containers/create", {"Image": image, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})))))
    start_wait.append(timed(lambda: (call("POST", f"/containers/{cid['Id']}/start"), call("POST", f"/containers/{cid['Id']}/wait"))))
    rm.append(timed(lambda: call("DELETE", f"/containers/{cid['Id']}?force=1")))

def q(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))]
print(json.dumps({k: {"median": statistics.median(v), "p99": q(v, 0.99)} for k, v in
                  {"ps": ps, "create": create, "start_wait": start_wait, "rm": rm}.items()}))
