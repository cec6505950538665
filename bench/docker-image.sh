#!/usr/bin/env bash
# Makes a Docker engine and a minimal local image `paddock-bench-true:latest` available for
# the `docker run --rm --network none IMAGE true` comparison. Installs Debian's docker.io
# when no engine is there, starts dockerd when it is not running, and builds the image with
# `docker import` from /bin/true and the libraries it needs (no registry is reachable).
# Needs root. Idempotent.
set -euo pipefail
image=paddock-bench-true:latest

if ! command -v dockerd >/dev/null 2>&1; then
  echo "installing docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /tmp/paddock-bench-dockerd.log)"
  nohup dockerd >/tmp/paddock-bench-dockerd.log 2>&1 &
  for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see /tmp/paddock-bench-dockerd.log"; exit 1; }
fi
if ! docker image inspect "$image" >/dev/null 2>&1; then
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin"
  cp /bin/true "$root/bin/true"
  for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  tar -C "$root" -c . | docker import - "$image" >/dev/null
fi
docker run --rm --network none "$image" true
echo "docker engine and $image ready"
