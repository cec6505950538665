#!/usr/bin/env bash
# `paddock run -- true` on each runtime, side by side with its peer on the same engine:
#   native                         vs bwrap
#   native on the deps image       vs native, and vs bwrap on the same unpacked tree
#   --runtime docker               vs docker run --rm --network none (same image)
#   --runtime gvisor               vs docker run --rm --network none --runtime runsc, runsc do
#   dependencies: [apt:jq] cached  vs --runtime docker on the base (what cached deps add)
# and the image builds: base cold (debootstrap) and cached, a dependency image cold and cached.
# Root, Debian: uses scripts/dockerd.sh's engine (starts it if none answers). Prints ratios.
#   bench/run.sh runtimes [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-15}"
paddock="${PADDOCK_BIN:-$PWD/target/release/paddock}"
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
command -v bwrap >/dev/null || apt-get install -y -qq bubblewrap >/dev/null
scripts/dockerd.sh start >/dev/null
eval "$(scripts/dockerd.sh env)"
DOCKER=/usr/bin/docker

work=$(mktemp -d /tmp/paddock-bench-rt.XXXXXX)
export PADDOCK_HOME="$work/home" XDG_CONFIG_HOME="$work/config"
mkdir -p "$work/ws" "$work/deps" "$XDG_CONFIG_HOME"
printf 'dependencies: ["apt:jq"]\n' > "$work/deps/paddock.yaml"
cleanup() {
  "$paddock" daemon stop >/dev/null 2>&1 || true
  $DOCKER ps -aq --filter "label=paddock.home=$PADDOCK_HOME" | xargs -r $DOCKER rm -fv >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

base=$("$paddock" image build -q)
deps_tag=$(cd "$work/deps" && "$paddock" image build -q apt:jq)
"$paddock" run -q -- true   # the daemon is up before timing
"$paddock" run -q --runtime native --image "$deps_tag" -- true   # unpacked once, before timing
tree=$(ls -d "$PADDOCK_HOME"/cache/images/*/ | head -1)
cd "$work/ws"

json="$work/times.json"
runsc_do=(-n "runsc do" "runsc --network=none do true")
runsc --network=none do true >/dev/null 2>&1 || { echo "runsc do does not run here; left out"; runsc_do=(); }
hyperfine -N --warmup 3 --runs "$runs" --export-json "$json" \
  -n native "$paddock run -q -- true" \
  -n bwrap "bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all --die-with-parent true" \
  -n "native+image" "$paddock run -q --runtime native --image $deps_tag -- true" \
  -n "bwrap image" "bwrap --ro-bind $tree / --dev /dev --proc /proc --unshare-all --die-with-parent /usr/bin/true" \
  -n docker "$paddock run -q --runtime docker -- true" \
  -n "docker run" "$DOCKER run --rm --network none $base true" \
  -n gvisor "$paddock run -q --runtime gvisor -- true" \
  -n "docker run runsc" "$DOCKER run --rm --network none --runtime runsc $base true" \
  "${runsc_do[@]}" \
  -n "docker+deps" "sh -c 'cd $work/deps && $paddock run -q --runtime docker -- true'" \
  >/dev/null

# Image builds: the base cold (its tag removed first) and cached; a dependency image the same.
t() { python3 -c 'import subprocess, sys, time; s = time.monotonic(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(time.monotonic() - s)' "$@"; }
$DOCKER rmi -f "$deps_tag" >/dev/null
deps_cold=$(t "$paddock" image build -q apt:jq)
deps_warm=$(t "$paddock" image build -q apt:jq)
base_warm=$(t "$paddock" image build -q)
if [ "${PADDOCK_BENCH_COLD_BASE:-1}" = 1 ]; then
  $DOCKER rmi -f "$deps_tag" "$base" >/dev/null 2>&1 || true
  base_cold=$(t "$paddock" image build -q)
  "$paddock" image build -q apt:jq >/dev/null
else
  base_cold=nan
fi

python3 - "$json" "$base_cold" "$base_warm" "$deps_cold" "$deps_warm" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ms = lambda n: r[n]["mean"] * 1000
sd = lambda n: r[n]["stddev"] * 1000
print("runtime start, `run -- true` (mean ± sd over %d runs, ms)" % len(r["native"]["times"]))
rows = [("native", "bwrap"), ("native+image", "bwrap image"), ("native+image", "native"), ("docker", "docker run"), ("gvisor", "docker run runsc")]
if "runsc do" in r:
    rows.append(("gvisor", "runsc do"))
print("%-22s %10s   %-22s %10s   %s" % ("paddock", "ms", "peer", "ms", "ratio"))
for a, b in rows:
    print("%-22s %6.1f±%-4.1f %-22s %6.1f±%-4.1f %.2fx" % (a, ms(a), sd(a), b, ms(b), sd(b), ms(a) / ms(b)))
print("cached dependencies add: %.1f ms (docker+deps %.1f vs docker %.1f; goal <= 50 ms)"
      % (ms("docker+deps") - ms("docker"), ms("docker+deps"), ms("docker")))
print("docker runtime / bare docker run --network none: %.2fx (goal <= 1.3x)" % (ms("docker") / ms("docker run")))
print("image build: base cold %s s, cached %.2f s; apt:jq cold %.1f s, cached %.2f s"
      % (sys.argv[2] if sys.argv[2] == "nan" else "%.1f" % float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])))
EOF
