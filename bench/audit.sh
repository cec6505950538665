#!/usr/bin/env bash
# Audit log benchmark: paddock-audit vs a naive SQLite hash chain, side by side.
# Usage: bench/audit.sh [--entries N] [--batch B] [--proofs K] [--dir PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -p paddock-audit --example audit-bench -- "$@"
