#!/usr/bin/env bash
# `paddock claude -p` vs the same claude CLI run bare on the host: the time from the start
# of the command to the first request reaching the (local, fake) Anthropic API, and the
# tool layer's install time (first: empty tool cache and empty npm cache; then cached).
# Needs root (the sandbox), node, npm, python3, openssl; reaches the npm registry once.
#   bench/agents.sh [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-7}"
cargo build --release --quiet -p paddock-cli
paddock="$PWD/target/release/paddock"
work="$(mktemp -d /tmp/paddock-bench-agents.XXXXXX)"
trap 'pkill -f "$work/fakes" 2>/dev/null || true; PADDOCK_HOME=$work/home "$paddock" daemon stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cd "$work"

names="api.anthropic.com console.anthropic.com platform.claude.com statsig.anthropic.com"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
{ printf 'subjectAltName=IP:127.0.0.1'; for h in $names; do printf ',DNS:%s' "$h"; done; echo; } > ext.cnf
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr -subj /CN=fake 2>/dev/null
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile ext.cnf 2>/dev/null
key="sk-ant-api03-BENCHKEYBENCHKEYBENCHKEYBENCHKEYBENCHKEYBENCHKEYBENCHKEYBENCHKEYBENCHKEYBENCHKEYBENCHKEYAA"
echo "{\"anthropic_key\": \"$key\"}" > state.json
cp "$OLDPWD/crates/paddock-cli/tests/agents/fakes.py" "$work/fakes.py"
python3 "$work/fakes.py" leaf.pem leaf.key log.jsonl state.json port >/dev/null 2>&1 &
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
port="$(cat port)"
mkdir -p cfg/paddock ws
{ echo "upstream:"; echo "  extra_ca: $work/ca.pem"; echo "  resolve:"; for h in $names; do echo "    $h: \"127.0.0.1:$port\""; done; } > cfg/paddock/config.yaml
export PADDOCK_HOME="$work/home" XDG_CONFIG_HOME="$work/cfg" XDG_CACHE_HOME="$work/cache" PATH=/usr/local/bin:/usr/bin:/bin
cd ws && git init -q .

now() { date +%s.%N; }
# Tool layer: first install (empty caches), then the cached path.
t0=$(now); npm_config_cache="$work/npm-cache" "$paddock" claude --version >/dev/null 2>&1; t1=$(now)
"$paddock" claude --version >/dev/null 2>&1; t2=$(now)
"$paddock" claude --version >/dev/null 2>&1; t3=$(now)
layer="$(dirname "$(find "$XDG_CACHE_HOME/paddock/tools" -path '*node_modules/.bin/claude' | head -1)")"
ANTHROPIC_API_KEY="$key" "$paddock" grant anthropic >/dev/null 2>&1

# "ANY/TURN": ms from $1 to the first request of any kind, and to the first /v1/messages.
first_request_after() { python3 - "$work/log.jsonl" "$1" <<'EOF'
import json, sys
t0 = float(sys.argv[2])
es = [json.loads(l) for l in open(sys.argv[1])]
es = [e for e in es if e["t"] >= t0]
anyt = min((e["t"] for e in es), default=float("nan"))
turn = min((e["t"] for e in es if e["path"].startswith("/v1/messages")), default=float("nan"))
print("%.1f/%.1f" % ((anyt - t0) * 1000, (turn - t0) * 1000))
EOF
}
# The bare CLI: same binary, same settings as the preset, straight to the fake.
bare_home="$work/bare-home"; mkdir -p "$bare_home/.claude"
echo '{"hasCompletedOnboarding": true, "theme": "dark"}' > "$bare_home/.claude/.claude.json"
bare() {
  HOME="$bare_home" CLAUDE_CONFIG_DIR="$bare_home/.claude" ANTHROPIC_API_KEY="$key" \
  ANTHROPIC_BASE_URL="https://127.0.0.1:$port" NODE_EXTRA_CA_CERTS="$work/ca.pem" \
  DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 DISABLE_ERROR_REPORTING=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
  "$layer/claude" -p hi >/dev/null 2>&1 || true
}
# Warm both (daemon started, page cache), then alternate.
"$paddock" claude -p hi >/dev/null 2>&1 || true; bare
p=(); b=()
for _ in $(seq "$n"); do
  t=$(now); "$paddock" claude -p hi >/dev/null 2>&1 || true; p+=("$(first_request_after "$t")")
  t=$(now); bare; b+=("$(first_request_after "$t")")
done
python3 - "$t0" "$t1" "$t2" "$t3" "${p[*]}" "${b[*]}" <<'EOF'
import statistics, sys
t0, t1, t2, t3 = map(float, sys.argv[1:5])
p = [tuple(map(float, x.split("/"))) for x in sys.argv[5].split()]
b = [tuple(map(float, x.split("/"))) for x in sys.argv[6].split()]
mb = [statistics.median(x[i] for x in b) for i in (0, 1)]
mp = [statistics.median(x[i] for x in p) for i in (0, 1)]
print("claude -p hi: ms from the command's start, median of %d" % len(p))
print("  %-34s %14s %14s" % ("", "first request", "first turn"))
print("  %-34s %14.1f %14.1f" % ("bare claude on the host", mb[0], mb[1]))
print("  %-34s %14.1f %14.1f" % ("paddock claude (sandbox + proxy)", mp[0], mp[1]))
print("  %-34s %+14.1f %+14.1f   (goal: <= +150 ms)" % ("difference", mp[0] - mb[0], mp[1] - mb[1]))
print("  %-34s %14.2f %14.2f" % ("ratio paddock/bare", mp[0] / mb[0], mp[1] / mb[1]))
print("  samples paddock: %s" % " ".join("%.0f/%.0f" % x for x in p))
print("  samples bare:    %s" % " ".join("%.0f/%.0f" % x for x in b))
print("tool layer (@anthropic-ai/claude-code, the whole `paddock claude --version`)")
print("  %-34s %8.1f s" % ("first (empty npm and tool caches)", t1 - t0))
print("  %-34s %8.2f s   (again: %.2f s)" % ("cached", t2 - t1, t3 - t2))
EOF
