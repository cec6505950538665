#!/usr/bin/env bash
# Dashboard benchmark, one command:
#   bench/dashboard.sh [RUNS] [EVENTS_PER_RUN_PER_SECOND] [SECONDS]
#
# The daemon (release build) with RUNS live runs (default 50), each making DNS lookups of
# a name the policy denies at RATE per second (default 20: 1,000 events/s in all, each a
# `net.denied` event recorded in the run's audit log and fanned out on the bus), while two
# real browsers (Debian's chromium through playwright-core, two separate browser
# processes) have the dashboard open and each follows the whole event stream
# (`/v1/events`, every kind). Side by side, the same daemon with the same runs live but
# quiet and no browser ("idle"): `GET /v1/runs` and `GET /v1/health` p50/p99 over the
# daemon socket, a new connection per request as the CLI does, and the ratios (target:
# loaded p99 within 1.2x of idle). Also the events/s each browser received, the daemon's
# RSS idle and loaded, and each browser page's JS heap.
#
# Needs root (or unprivileged user namespaces) for the sandboxes, node, and the test
# dependencies of tests/ui (installed here with npm when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-50}"
rate="${2:-20}"
secs="${3:-20}"

if [ -z "${PADDOCK:-}" ]; then
  cargo build --release --quiet -p paddock-cli
  PADDOCK="$PWD/target/release/paddock"
fi
[ -x /usr/bin/chromium ] || { echo "installing chromium"; apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
[ -d tests/ui/node_modules/playwright-core ] || npm ci --prefix tests/ui --no-audit --no-fund --silent

tmp="$(mktemp -d /tmp/paddock-bench-ui.XXXXXX)"
export PADDOCK_HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/config" PADDOCK_ROUTER_PORT="${PADDOCK_ROUTER_PORT:-18281}"
export PADDOCK_UI_PORT=0 PADDOCK_IDLE_TIMEOUT=0
unset PADDOCK_LOG
cleanup() {
  [ "${KEEP:-}" = 1 ] || "$PADDOCK" rm --force $(seq -f 'load-%g' 1 "$runs") >/dev/null 2>&1 || true
  "$PADDOCK" daemon stop >/dev/null 2>&1 || true
  if [ "${KEEP:-}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
mkdir -p "$tmp/ws"
cd "$tmp/ws"
PADDOCK="$PADDOCK" RUNS="$runs" RATE="$rate" SECS="$secs" \
  node "$OLDPWD/bench/dashboard.mjs"
