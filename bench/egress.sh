#!/usr/bin/env bash
# bench/egress.sh — egress proxy cost, side by side, on this machine only (127.0.0.1):
#   direct HTTPS to a local upstream | paddock intercepting + injecting a header |
#   mitmproxy (PyPI, installed here into target/bench-venv) injecting the same header
#   through an addon. Measures requests/s and latency with wrk on keep-alive connections,
#   requests/s with a new connection per request, and leaf minting / cache hits.
# Usage: bench/egress.sh   (DUR=seconds per measurement, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${DUR:-5}"
if ! command -v wrk >/dev/null; then
  echo "installing wrk for the comparison" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null \
    || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
fi

cargo build --release -q -p paddock-egress --bin paddock-egress-bench
cargo build --release -q -p paddock-ca --bin paddock-ca-bench

VENV=target/bench-venv
if [ ! -x "$VENV/bin/mitmdump" ]; then
  echo "installing mitmproxy into $VENV (once)…" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q mitmproxy
fi

tmp=$(mktemp -d)
BPID=""; MPID=""
cleanup() { [ -n "$BPID" ] && kill "$BPID" 2>/dev/null; [ -n "$MPID" ] && kill "$MPID" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

target/release/paddock-egress-bench >"$tmp/ports" &
BPID=$!
for _ in $(seq 100); do [ -s "$tmp/ports" ] && break; sleep 0.05; done
read -r line <"$tmp/ports"
UP=$(sed -E 's/.*upstream=([0-9]+).*/\1/' <<<"$line")
PD=$(sed -E 's/.*paddock=([0-9]+).*/\1/' <<<"$line")
UPCA=$(sed -E 's/.*upstream_ca=([^ ]+).*/\1/' <<<"$line")

cat >"$tmp/inject.py" <<'PY'
def request(flow):
    flow.request.headers["authorization"] = "Bearer real-token-value"
PY
MP=$((PD + 1))
"$VENV/bin/mitmdump" -q --mode "reverse:https://127.0.0.1:$UP" --listen-host 127.0.0.1 -p "$MP" \
  --set ssl_verify_upstream_trusted_ca="$UPCA" --set confdir="$tmp/mitm" -s "$tmp/inject.py" &
MPID=$!
for _ in $(seq 200); do curl -sk "https://127.0.0.1:$MP/" >/dev/null 2>&1 && break; sleep 0.1; done
# Sanity: both proxies inject.
curl -sk "https://127.0.0.1:$PD/" | grep -q injected || { echo "paddock did not inject" >&2; exit 1; }
curl -sk "https://127.0.0.1:$MP/" | grep -q injected || { echo "mitmproxy did not inject" >&2; exit 1; }

# wrk → "rps p50_us p99_us"
measure() {
  local out
  out=$(wrk "$@" --latency 2>&1)
  awk '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return (v+0)*1000; if (v ~ /s$/) return (v+0)*1e6; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50.000%" || $1 == "50%" { p50 = us($2) }
    $1 == "99.000%" || $1 == "99%" { p99 = us($2) }
    END { printf "%.0f %.0f %.0f\n", rps, p50, p99 }' <<<"$out"
}

printf '%-28s %12s %12s %12s\n' "keep-alive, 32 conns" "req/s" "p50 µs" "p99 µs"
declare -A KA SEQ NEW
for who in direct paddock mitmproxy; do
  case $who in direct) port=$UP;; paddock) port=$PD;; mitmproxy) port=$MP;; esac
  KA[$who]=$(measure -t2 -c32 -d"${DUR}s" "https://127.0.0.1:$port/")
  printf '%-28s %12s %12s %12s\n' "  $who" ${KA[$who]}
done
printf '%-28s %12s %12s %12s\n' "keep-alive, 1 conn (latency)" "req/s" "p50 µs" "p99 µs"
for who in direct paddock mitmproxy; do
  case $who in direct) port=$UP;; paddock) port=$PD;; mitmproxy) port=$MP;; esac
  SEQ[$who]=$(measure -t1 -c1 -d"${DUR}s" "https://127.0.0.1:$port/")
  printf '%-28s %12s %12s %12s\n' "  $who" ${SEQ[$who]}
done
printf '%-28s %12s %12s %12s\n' "new connection per request" "req/s" "p50 µs" "p99 µs"
for who in direct paddock mitmproxy; do
  case $who in direct) port=$UP;; paddock) port=$PD;; mitmproxy) port=$MP;; esac
  NEW[$who]=$(measure -t2 -c8 -d"${DUR}s" -H 'Connection: close' "https://127.0.0.1:$port/")
  printf '%-28s %12s %12s %12s\n' "  $who" ${NEW[$who]}
done

read -r d_rps d_p50 _ <<<"${SEQ[direct]}"
read -r p_rps p_p50 _ <<<"${SEQ[paddock]}"
read -r m_rps m_p50 _ <<<"${SEQ[mitmproxy]}"
read -r pk _ <<<"${KA[paddock]}"
read -r mk _ <<<"${KA[mitmproxy]}"
echo
echo "paddock throughput vs mitmproxy (keep-alive, 32 conns): $(awk -v a="$pk" -v b="$mk" 'BEGIN{printf "%.1fx", a/b}') (target >= 10x)"
echo "added p50 on keep-alive (1 conn): paddock $((p_p50 - d_p50)) µs (target <= 300), mitmproxy $((m_p50 - d_p50)) µs"
echo
target/release/paddock-ca-bench 1000
echo "(targets: mint <= 1 ms, cache hit in µs)"
