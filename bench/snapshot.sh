#!/usr/bin/env bash
# Snapshot and rollback cost with 10,000 changed files in a live run's layer, side by side
# with copying the same upper directory (`cp -a`) and hard-linking it (`cp -al`, a link farm):
#   1st snapshot   (every file copied)            vs cp -a of the upper
#   2nd snapshot   (nothing changed: all shared)  vs cp -al of the upper
#   3rd snapshot   (100 files changed since)      vs cp -al
#   rollback of 100 files inside the running sandbox (plan + tar through its overlay)
# Times are the daemon's own (`took_ms` of the snapshot) and the CLI's wall time.
#   bench/run.sh snapshot [FILES]
set -euo pipefail
cd "$(dirname "$0")/.."
files="${1:-10000}"
paddock="${PADDOCK_BIN:-$PWD/target/release/paddock}"
work=$(mktemp -d /tmp/paddock-bench-snap.XXXXXX)
export PADDOCK_HOME="$work/home" XDG_CONFIG_HOME="$work/config"
mkdir -p "$work/ws" "$XDG_CONFIG_HOME"
cleanup() { "$paddock" daemon stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work/ws"
"$paddock" run -d -q --name snap -- sh -c "mkdir -p d; i=0; while [ \$i -lt $files ]; do echo \"file \$i\" > d/f\$i.txt; i=\$((i+1)); done; touch done; sleep 600" >/dev/null
id=$("$paddock" ps -q | head -1)
upper="$PADDOCK_HOME/runs/$id/layer/upper"
while [ ! -e "$upper/done" ]; do sleep 0.2; done
ms() { python3 -c 'import sys, time, subprocess; s = time.monotonic(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print("%.1f" % ((time.monotonic() - s) * 1000))' "$@"; }
took() { "$paddock" snapshots snap --json | python3 -c 'import json, sys; print("%.1f" % json.load(sys.stdin)["snapshots"][-1]["took_ms"])'; }
cp_a=$(ms cp -a "$upper" "$work/cp-a")
cp_al=$(ms cp -al "$upper" "$work/cp-al")
w1=$(ms "$paddock" snapshot snap); t1=$(took)
w2=$(ms "$paddock" snapshot snap); t2=$(took)
"$paddock" exec snap -- sh -c 'i=0; while [ $i -lt 100 ]; do echo changed > d/f$i.txt; i=$((i+1)); done'
w3=$(ms "$paddock" snapshot snap); t3=$(took)
"$paddock" exec snap -- sh -c 'i=0; while [ $i -lt 100 ]; do echo again > d/f$i.txt; i=$((i+1)); done'
last=$("$paddock" snapshots snap --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["snapshots"][-2]["id"])')
rb=$(ms "$paddock" rollback snap "$last")
python3 - "$files" "$cp_a" "$cp_al" "$w1" "$t1" "$w2" "$t2" "$w3" "$t3" "$rb" <<'PY'
import sys
n, cp_a, cp_al, w1, t1, w2, t2, w3, t3, rb = sys.argv[1], *map(float, sys.argv[2:])
print(f"snapshots of a live run with {n} changed files (ms; daemon's own time, CLI wall time)")
print(f"{'':34} {'daemon':>8} {'CLI':>8}   peer            ms   ratio")
print(f"{'1st snapshot (all copied)':34} {t1:8.1f} {w1:8.1f}   cp -a     {cp_a:8.1f}   {t1 / cp_a:.2f}x")
print(f"{'2nd snapshot (none changed)':34} {t2:8.1f} {w2:8.1f}   cp -al    {cp_al:8.1f}   {t2 / cp_al:.2f}x")
print(f"{'3rd snapshot (100 changed)':34} {t3:8.1f} {w3:8.1f}   cp -al    {cp_al:8.1f}   {t3 / cp_al:.2f}x")
print(f"{'rollback of 100 files, live':34} {'':8} {rb:8.1f}")
print(f"goal: a snapshot of {n} changed files <= 50 ms")
PY
