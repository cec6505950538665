#!/usr/bin/env bash
# docker:dind: what a private engine per run costs, side by side with the same dockerd in a
# plain `docker run --privileged` container (the usual dind) on the same engine:
#   start: `paddock run --dep docker:dind -- docker version` (sidecar up, engine answering,
#   the run's network attached, the command run) vs `paddock run -- true` and vs the
#   privileged container until its socket answers `/_ping`;
#   build cache: the same two-step Dockerfile built twice in the run's engine (the second
#   build must come from the cache) and twice on the host engine.
# Needs root and a Docker engine (scripts/dockerd.sh starts one).
#   bench/run.sh dind [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5}"
paddock="${PADDOCK_BIN:-$PWD/target/release/paddock}"
scripts/dockerd.sh start >/dev/null
eval "$(scripts/dockerd.sh env)"
work=$(mktemp -d /tmp/paddock-bench-dind.XXXXXX)
export PADDOCK_HOME="$work/home" XDG_CONFIG_HOME="$work/config" PADDOCK_ROUTER_PORT=18496 PADDOCK_IDLE_TIMEOUT=0
mkdir -p "$work/ws/ctx" "$work/rootfs" "$work/peer" "$XDG_CONFIG_HOME"
cleanup() {
  "$paddock" rm -f bk >/dev/null 2>&1 || true
  docker rm -f paddock-bench-dind >/dev/null 2>&1 || true
  docker rmi -f paddock-bench-mini:1 paddock-bench-built:1 >/dev/null 2>&1 || true
  "$paddock" daemon stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }

# An image rootfs of host binaries (no registry here): sh, cat, sleep and their libraries.
for b in /bin/sh /bin/cat /bin/sleep; do
  for f in "$b" $(ldd "$(readlink -f "$b")" | grep -o '/[^ ]*'); do
    mkdir -p "$work/rootfs$(dirname "$f")"; cp -Ln "$f" "$work/rootfs$f"
  done
done
tar -C "$work/rootfs" -cf "$work/ws/mini.tar" .
printf 'FROM mini:1\nRUN sleep 2 && echo one > /one\nRUN cat /one > /two\n' > "$work/ws/ctx/Dockerfile"
cd "$work/ws"

# Warm up: the sidecar's image is built once (not measured).
"$paddock" run -q --dep docker:dind -- docker version >/dev/null
image=$(docker images -q --filter label=paddock.dependencies=apt:docker.io | head -1)

# The usual dind is `--privileged`; where the engine cannot start privileged containers
# (this kind of machine: "unable to apply caps"), the same capabilities as paddock's sidecar.
if docker run --rm --privileged --network none "$image" true >/dev/null 2>&1; then
  peer_flags=(--privileged); peer_label="docker run --privileged dind"
else
  peer_flags=(--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined)
  peer_label="docker run dind (SYS_ADMIN; no --privileged here)"
fi
export peer_label

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
plain=(); dind=(); peer=()
for _ in $(seq "$n"); do
  t=$(now); "$paddock" run -q -- true >/dev/null; plain+=("$(echo "$(now) - $t" | bc)")
  t=$(now); "$paddock" run -q --dep docker:dind -- docker version >/dev/null; dind+=("$(echo "$(now) - $t" | bc)")
  rm -rf "$work/peer"/*
  t=$(now)
  docker run -d --name paddock-bench-dind "${peer_flags[@]}" --network none -v "$work/peer:/run/peer" "$image" \
    dockerd --host unix:///run/peer/docker.sock --bridge none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false >/dev/null
  until curl -sf --unix-socket "$work/peer/docker.sock" http://d/_ping >/dev/null 2>&1; do sleep 0.02; done
  peer+=("$(echo "$(now) - $t" | bc)")
  docker rm -f paddock-bench-dind >/dev/null
done
p=$(printf '%s\n' "${plain[@]}" | median); d=$(printf '%s\n' "${dind[@]}" | median); q=$(printf '%s\n' "${peer[@]}" | median)

# Build cache: twice in a run's private engine, twice on the host engine.
"$paddock" run -d -q --dep docker:dind --name bk -- sleep 3600 >/dev/null
timed_build() { local t; t=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $t" | bc; }
"$paddock" exec bk -- sh -c 'docker import - mini:1 < mini.tar' >/dev/null
in1=$(timed_build "$paddock" exec bk -- docker build -q -t built:1 ctx)
in2=$(timed_build "$paddock" exec bk -- docker build -q -t built:1 ctx)
cached=$("$paddock" exec bk -- sh -c 'docker build -t built:1 ctx 2>&1 | grep -c "Using cache"' || true)
docker import - paddock-bench-mini:1 < mini.tar >/dev/null
sed 's/^FROM mini:1/FROM paddock-bench-mini:1/' ctx/Dockerfile > "$work/peer.Dockerfile"
host1=$(timed_build docker build -q -t paddock-bench-built:1 -f "$work/peer.Dockerfile" ctx)
host2=$(timed_build docker build -q -t paddock-bench-built:1 -f "$work/peer.Dockerfile" ctx)

python3 - "$n" "$p" "$d" "$q" "$in1" "$in2" "$host1" "$host2" "$cached" <<'PY'
import sys
n, p, d, q, i1, i2, h1, h2 = sys.argv[1], *map(float, sys.argv[2:9])
cached = sys.argv[9]
print(f"docker:dind start ({n} runs each, median, s)")
print(f"  paddock run -- true                                  {p:6.2f}")
print(f"  paddock run --dep docker:dind -- docker version      {d:6.2f}   (+{d - p:.2f} s for the private engine)")
import os
print(f"  {os.environ['peer_label'] + ' until /_ping':52} {q:6.2f}   (the peer)")
print(f"  {'ratio (the private engine part vs the peer)':52} {(d - p) / q:5.2f}x")
print("build of a 2-step Dockerfile (classic builder; s)")
print(f"  {'':22} {'first':>7} {'second':>7}")
print(f"  {'in the private engine':22} {i1:7.2f} {i2:7.2f}   ({cached} steps from the cache on a third build)")
print(f"  {'on the host engine':22} {h1:7.2f} {h2:7.2f}")
PY
