#!/usr/bin/env bash
# The test command: installs what the tests need, then checks formatting, lints and runs
# every test (real namespaces, real SQLite, real processes). Run as root to include the
# root-only sandbox tests; rootless cases run as uid 65534 from inside the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

scripts/install-test-deps.sh

# The docker runtime's tests need an engine: an existing one, or a private dockerd with
# gVisor (scripts/dockerd.sh), stopped again when this script exits. One that was already
# running before this script (a developer's) is left running.
if ! scripts/dockerd.sh status >/dev/null 2>&1; then
  trap 'scripts/dockerd.sh stop' EXIT
fi
scripts/dockerd.sh start
eval "$(scripts/dockerd.sh env)"
echo "== docker engine: $DOCKER_HOST"
# The container tests fail (instead of skipping) when the engine cannot run them.
export PADDOCK_REQUIRE_DOCKER=1

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== paddock's base image (debootstrap once; cached in the engine)"
cargo build --quiet --bin paddock
target/debug/paddock image build

echo "== the agent CLIs from npm (the presets' pinned versions; cached in target/tmp/agent-tools)"
# The real @anthropic-ai/claude-code, @openai/codex and @google/gemini-cli, installed by
# paddock's own tool layer (the path a user's first `paddock claude` takes) into the cache
# the agent tests use: a one-line `true` run of each preset, in a throwaway home.
agent_home=$(mktemp -d /tmp/paddock-agent-install.XXXXXX)
mkdir -p target/tmp/agent-tools "$agent_home/ws"
for agent in claude codex gemini; do
  (cd "$agent_home/ws" && env PADDOCK_HOME="$agent_home/home" XDG_CONFIG_HOME="$agent_home/config" \
     XDG_CACHE_HOME="$repo/target/tmp/agent-tools" PATH=/usr/local/bin:/usr/bin:/bin \
     "$repo/target/debug/paddock" run -q --agent "$agent" -- true)
done
PADDOCK_HOME="$agent_home/home" target/debug/paddock daemon stop >/dev/null 2>&1 || true
rm -rf "$agent_home"

echo "== playwright-core for the dashboard tests (npm; tests/ui)"
# The exact version of tests/ui/package-lock.json; it drives /usr/bin/chromium.
npm ci --prefix tests/ui --no-audit --no-fund --silent
# The dashboard's browser test fails (instead of skipping) without chromium or playwright-core.
export PADDOCK_REQUIRE_BROWSER=1

echo "== cargo test"
# Tests inside one binary run two at a time: sandboxes and daemons are real processes.
# A failing stage does not stop the others (every failure shows in one run); the script
# fails at the end if any did.
failed_stages=()
cargo test --workspace --quiet --no-fail-fast -- --test-threads="${PADDOCK_TEST_THREADS:-2}" 2>&1 | tee target/test-output.txt \
  || failed_stages+=("cargo test")

# One test list, every runtime: the escape, egress, grant, routing, review (run), exec and
# worktree suites again with docker and gvisor as the default runtime.
for runtime in docker gvisor; do
  skip=()
  if [ "$runtime" = gvisor ]; then
    # What Debian's runsc (2022-12) cannot do, and these tests check on purpose: its statx
    # rejects the flags coreutils passes (`tty` prints "not a tty", `ls -l` fails), its
    # /proc has no ns/cgroup for the exec-vs-run confinement probe to compare, and the
    # pids limit counts gVisor's own threads (a fork bomb ends the whole sandbox, not
    # just the bomb). Everything else runs on gvisor as on native.
    skip=(--skip tty_mode_gives_a_real_terminal
          --skip exec_with_a_tty_gets_a_terminal_of_the_clients_size
          --skip exec_runs_in_the_runs_sandbox_confined_like_its_command_and_is_on_the_record
          --skip out_of_memory_fails_the_run_and_a_fork_bomb_is_contained)
  fi
  echo "== the shared suites on the $runtime runtime"
  PADDOCK_RUNTIME=$runtime cargo test -p paddock-cli --quiet --no-fail-fast \
    --test escape --test egress --test grants --test routing --test run --test exec --test worktrees --test review --test snapshots \
    -- --test-threads="${PADDOCK_TEST_THREADS:-2}" "${skip[@]}" 2>&1 | tee -a target/test-output.txt \
    || failed_stages+=("the shared suites on $runtime")
done
echo "== fuzzing: a short run of each target (scripts/fuzz.sh; nightly, cargo-fuzz)"
scripts/fuzz.sh ci 2>&1 | tee target/fuzz-output.txt || failed_stages+=("fuzzing")

# Sum every test binary's result line into one closing line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
if [ ${#failed_stages[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed_stages[@]}"
  grep -- '--- FAILED' target/test-output.txt | sort -u || true
  exit 1
fi
