#!/usr/bin/env bash
# The test command: installs what the tests need, then checks formatting, lints and runs
# every test (real namespaces, real SQLite, real processes). Run as root to include the
# root-only sandbox tests; rootless cases run as uid 65534 from inside the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

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

echo "== cargo test"
# Tests inside one binary run two at a time: sandboxes and daemons are real processes.
cargo test --workspace --quiet -- --test-threads="${PADDOCK_TEST_THREADS:-2}" 2>&1 | tee target/test-output.txt

# One test list, every runtime: the escape, egress, grant, routing, review (run), exec and
# worktree suites again with docker and gvisor as the default runtime.
for runtime in docker gvisor; do
  echo "== the shared suites on the $runtime runtime"
  PADDOCK_RUNTIME=$runtime cargo test -p paddock-cli --quiet \
    --test escape --test egress --test grants --test routing --test run --test exec --test worktrees \
    -- --test-threads="${PADDOCK_TEST_THREADS:-2}" 2>&1 | tee -a target/test-output.txt
done
# Sum every test binary's result line into one closing line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
