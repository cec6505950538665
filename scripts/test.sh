#!/usr/bin/env bash
# The test command: installs what the tests need, then checks formatting, lints and runs
# every test (real namespaces, real SQLite, real processes). Run as root to include the
# root-only sandbox tests; rootless cases run as uid 65534 from inside the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
# Tests inside one binary run two at a time: sandboxes and daemons are real processes.
cargo test --workspace --quiet -- --test-threads="${PADDOCK_TEST_THREADS:-2}" 2>&1 | tee target/test-output.txt
# Sum every test binary's result line into one closing line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
