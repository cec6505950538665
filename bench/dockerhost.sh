#!/usr/bin/env bash
# docker:host: what the policy proxy adds per Docker API call, side by side with the
# engine's own socket (same client, same calls, same machine):
#   GET /containers/json (`docker ps`), and the calls of `docker run IMAGE true`
#   (create; start + wait; rm), then `docker run --rm IMAGE true` with the docker CLI.
# The proxied calls run inside a native run with `--dep docker:host`. Needs root and a
# Docker engine (scripts/dockerd.sh starts one) and paddock's base image (built if missing).
#   bench/run.sh dockerhost [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
paddock="${PADDOCK_BIN:-$PWD/target/release/paddock}"
scripts/dockerd.sh start >/dev/null
eval "$(scripts/dockerd.sh env)"
engine="${DOCKER_HOST#unix://}"
work=$(mktemp -d /tmp/paddock-bench-dh.XXXXXX)
export PADDOCK_HOME="$work/home" XDG_CONFIG_HOME="$work/config" PADDOCK_ROUTER_PORT=18497 PADDOCK_IDLE_TIMEOUT=0
mkdir -p "$work/ws" "$XDG_CONFIG_HOME"
cp bench/dockerhost.py "$work/ws/"
cleanup() { "$paddock" rm -f dh >/dev/null 2>&1 || true; "$paddock" daemon stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
image=$("$paddock" image build -q)
cd "$work/ws"
"$paddock" run -d -q --name dh --dep docker:host -- sleep 3600 >/dev/null
direct=$(python3 dockerhost.py "$engine" "$image" "$n")
proxied=$("$paddock" exec dh -- python3 dockerhost.py /run/paddock-docker/docker.sock "$image" "$n")
runs=$(( n / 20 > 3 ? n / 20 : 3 ))
# The direct run gets network none; the proxied one joins the run's network holder.
cli_direct=$(python3 dockerhost.py cli "$image" "$runs" --network none)
cli_proxied=$("$paddock" exec dh -- python3 dockerhost.py cli "$image" "$runs")
python3 - "$n" "$direct" "$proxied" "$cli_direct" "$cli_proxied" <<'PY'
import json, sys
n, d, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
cd, cp = float(sys.argv[4]), float(sys.argv[5])
print(f"docker:host policy proxy vs the engine's socket ({n} calls of ps, {max(1, int(n) // 10)} of the rest; ms)")
print(f"{'call':28} {'engine':>8} {'proxied':>8} {'added':>7} {'ratio':>6}   p99 engine / proxied")
for k, label in [("ps", "GET /containers/json (ps)"), ("create", "POST /containers/create"), ("start_wait", "start + wait (`true`)"), ("rm", "DELETE /containers/{id}")]:
    a, b = d[k]["median"], p[k]["median"]
    print(f"{label:28} {a:8.2f} {b:8.2f} {b - a:7.2f} {b / a:5.2f}x   {d[k]['p99']:.2f} / {p[k]['p99']:.2f}")
print(f"{'docker run --rm IMAGE true':28} {cd:8.1f} {cp:8.1f} {cp - cd:7.1f} {cp / cd:5.2f}x   (the docker CLI, median)")
print("goal: <= 5 ms added per API call")
PY
