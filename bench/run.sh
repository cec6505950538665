#!/usr/bin/env bash
# One command per benchmark, each printing paddock side by side with its named peer.
#   bench/run.sh api       API round-trip latency (health, create, list) and daemon RSS
#   bench/run.sh sandbox   `paddock run -- true` vs bwrap (and docker where an engine runs)
#   bench/run.sh audit     audit log append/verify/proofs vs a naive SQLite chain
#   bench/run.sh egress    egress proxy (intercept + inject) vs direct and mitmproxy
#   bench/run.sh router    hostname router vs nginx reverse proxy (wrk): the router crate alone
#   bench/run.sh router-daemon  the same through the daemon to a backend inside a sandbox (root)
#   bench/run.sh agents    `paddock claude -p` vs bare claude: start → first API request; tool layer install
#   bench/run.sh runtimes  `run -- true` on native/docker/gvisor vs bwrap, docker run, runsc; image builds
#   bench/run.sh snapshot  snapshot/rollback of 10,000 changed files vs cp -a / cp -al
#   bench/run.sh dashboard 50 live runs, 1,000 events/s to two browsers: API p99 vs idle, memory
#   bench/run.sh dockerhost  docker:host policy proxy vs the engine's socket: per API call, `docker run`
#   bench/run.sh dind        docker:dind start vs a privileged dind container; build cache reuse
#   bench/run.sh all       all of the above
# Builds release binaries first. Sandbox benchmarks need root (or unprivileged userns).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
shift || true

cargo build --release --quiet -p paddock-cli -p paddock-bench
paddock="$PWD/target/release/paddock"
bench="$PWD/target/release/paddock-bench"

run_api()     { "$bench" api "$paddock" "$@"; }
run_sandbox() {
  command -v bwrap >/dev/null || { echo "installing bubblewrap for the comparison"; apt-get install -y -qq bubblewrap >/dev/null; }
  if [ -z "${PADDOCK_BENCH_DOCKER_IMAGE:-}" ] && [ "${PADDOCK_BENCH_NO_DOCKER:-}" != 1 ]; then
    # Docker's engine for the `docker run` comparison: Debian's docker.io, started here if
    # it is not running, and an image built locally (no registry is reachable).
    if bench/docker-image.sh >/tmp/paddock-bench-docker.log 2>&1; then
      export PADDOCK_BENCH_DOCKER_IMAGE=paddock-bench-true:latest
    else
      echo "docker comparison skipped: $(tail -1 /tmp/paddock-bench-docker.log)"
    fi
  fi
  "$bench" sandbox "$paddock" "$@"
}
run_audit()   { bench/audit.sh "$@"; }
run_egress()  { bench/egress.sh "$@"; }
run_router()  { bench/router.sh "$@"; }
run_router_daemon() { bench/router_daemon.sh "$@"; }
run_agents()  { bench/agents.sh "$@"; }
run_runtimes() { PADDOCK_BIN="$paddock" bench/runtimes.sh "$@"; }
run_snapshot() { PADDOCK_BIN="$paddock" bench/snapshot.sh "$@"; }
run_dashboard() { PADDOCK="$paddock" bench/dashboard.sh "$@"; }
run_dockerhost() { PADDOCK_BIN="$paddock" bench/dockerhost.sh "$@"; }
run_dind() { PADDOCK_BIN="$paddock" bench/dind.sh "$@"; }

case "$what" in
  api) run_api "$@" ;;
  sandbox) run_sandbox "$@" ;;
  audit) run_audit "$@" ;;
  egress) run_egress "$@" ;;
  router) run_router "$@" ;;
  router-daemon) run_router_daemon "$@" ;;
  agents) run_agents "$@" ;;
  runtimes) run_runtimes "$@" ;;
  snapshot) run_snapshot "$@" ;;
  dashboard) run_dashboard "$@" ;;
  dockerhost) run_dockerhost "$@" ;;
  dind) run_dind "$@" ;;
  all) rc=0; for b in api sandbox audit egress router router_daemon agents runtimes snapshot dashboard dockerhost dind; do "run_$b" || rc=1; echo; done; exit $rc ;;
  *) echo "usage: bench/run.sh [api|sandbox|audit|egress|router|router-daemon|agents|runtimes|snapshot|dashboard|dockerhost|dind|all] [ITERATIONS]" >&2; exit 2 ;;
esac
