#!/usr/bin/env bash
# Fuzzing (cargo-fuzz / libFuzzer, nightly Rust): the targets in fuzz/fuzz_targets/.
#
#   scripts/fuzz.sh ci [TARGET...]        each target briefly (FUZZ_CI_SECONDS, default 15 s,
#                                         after its committed corpus); fails on any crash
#   scripts/fuzz.sh long N [TARGET...]    each target for N executions (or FUZZ_MAX_SECONDS,
#                                         if set, whichever comes first); prints executions
#                                         and exec/s per target (for bench/RESULTS.md)
#   scripts/fuzz.sh merge [TARGET...]     adds to fuzz/corpus/<target> the inputs of the long
#                                         runs' work corpus that reach new edges (-merge=1)
#   scripts/fuzz.sh list                  the targets
#
# Installs cargo-fuzz when missing (`cargo install cargo-fuzz --locked`); needs the nightly
# toolchain. Built without a sanitizer (-s none): the code under test is safe Rust, and
# libFuzzer's exec/s matter more here; debug assertions and overflow checks are on.
# The committed corpus is never written by `ci` or `long`: new inputs go to a work
# corpus (a temporary one for `ci`, fuzz/target/corpus-work/<target> for `long`). A crash
# leaves its input in fuzz/artifacts/<target>/; reproduce it with
# `fuzz/target/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/crash-…`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
fuzz=$repo/fuzz
triple=x86_64-unknown-linux-gnu
bin_dir=$fuzz/target/$triple/release

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

mode=${1:-}
[ -n "$mode" ] || usage
shift
runs=
if [ "$mode" = long ]; then
  runs=${1:-}
  [[ "$runs" =~ ^[0-9]+$ ]] || usage
  shift
fi

all_targets() { sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz/Cargo.toml" | grep -v -e '^paddock-fuzz$' -e '^seeds$'; }
if [ "$mode" = list ]; then all_targets; exit 0; fi
case "$mode" in ci|long|merge) ;; *) usage ;; esac
if (($#)); then targets=("$@"); else mapfile -t targets < <(all_targets); fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is needed (cargo +nightly); it is not installed" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets (cargo +nightly fuzz build -s none)"
build=()
if ((${#targets[@]} == 1)); then build=("${targets[0]}"); fi
(cd "$fuzz" && cargo +nightly fuzz build -s none "${build[@]}")

# libFuzzer options every run shares: a run that takes more than 20 s on one input is a
# hang; 2 GiB of RSS is a leak.
common=(-timeout=20 -rss_limit_mb=2048 -print_final_stats=1)

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

failed=()
summary=()
for t in "${targets[@]}"; do
  bin=$bin_dir/$t
  [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 2; }
  corpus=$fuzz/corpus/$t
  mkdir -p "$corpus" "$fuzz/artifacts/$t"
  log=$(mktemp)
  case "$mode" in
    ci)
      work=$(mktemp -d)
      secs=${FUZZ_CI_SECONDS:-15}
      echo "== fuzz $t: ${secs}s after its corpus ($(ls "$corpus" | wc -l) inputs)"
      set +e
      "$bin" "${common[@]}" -max_total_time="$secs" -artifact_prefix="$fuzz/artifacts/$t/" \
        "$work" "$corpus" >"$log" 2>&1
      rc=$?
      set -e
      rm -rf "$work"
      ;;
    long)
      work=$fuzz/target/corpus-work/$t
      mkdir -p "$work"
      cap=()
      if [ -n "${FUZZ_MAX_SECONDS:-}" ]; then cap=(-max_total_time="$FUZZ_MAX_SECONDS"); fi
      echo "== fuzz $t: $runs executions${FUZZ_MAX_SECONDS:+ (at most ${FUZZ_MAX_SECONDS}s)}"
      set +e
      "$bin" "${common[@]}" -runs="$runs" "${cap[@]}" -artifact_prefix="$fuzz/artifacts/$t/" \
        "$work" "$corpus" >"$log" 2>&1
      rc=$?
      set -e
      ;;
    merge)
      work=$fuzz/target/corpus-work/$t
      mkdir -p "$work"
      before=$(ls "$corpus" | wc -l)
      max=${FUZZ_CORPUS_MAX:-200}
      echo "== merge $t: work corpus ($(ls "$work" | wc -l) inputs) into $corpus ($before)"
      merged=$(mktemp -d)
      set +e
      # Edge coverage only (no hit counters, no value profile), then at most $max inputs
      # besides the seeds, the smallest first: the committed corpus stays small.
      "$bin" -merge=1 -use_counters=0 -use_value_profile=0 -max_len=4096 -timeout=20 \
        -rss_limit_mb=2048 "$merged" "$corpus" "$work" >"$log" 2>&1
      rc=$?
      set -e
      if [ "$rc" -eq 0 ]; then
        find "$corpus" -type f ! -name 'seed-*' -delete
        # libFuzzer names inputs by their SHA-1: skip those that are a seed already.
        seeds=$(cd "$corpus" && sha1sum seed-* 2>/dev/null | cut -d' ' -f1)
        (cd "$merged" && ls -S -r >"$log.list" && grep -vxF "${seeds:-none}" "$log.list" >"$log.keep" || true
          sed -n "1,${max}p" "$log.keep" | while read -r f; do cp "$f" "$corpus/$f"; done)
        rm -f "$log.list" "$log.keep"
      fi
      rm -rf "$merged"
      echo "   $before -> $(ls "$corpus" | wc -l) inputs, $(du -sh --apparent-size "$corpus" | cut -f1)"
      ;;
  esac
  execs=$(stat number_of_executed_units "$log")
  rate=$(stat average_exec_per_sec "$log")
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "!! $t failed (exit $rc):"
    pattern='panicked at|==ERROR|SUMMARY|deadly signal|Test unit written|timeout after|out-of-memory'
    if grep -qE "$pattern" "$log"; then grep -E -A30 "$pattern" "$log" | head -80; else tail -40 "$log"; fi
  fi
  if [ "$mode" != merge ]; then
    echo "   $t: ${execs:-?} executions, ${rate:-?} exec/s, corpus $(ls "$corpus" | wc -l) committed inputs"
    summary+=("$(printf '%-14s %12s executions %8s exec/s  %s' "$t" "${execs:-?}" "${rate:-?}" \
      "$([ "$rc" -eq 0 ] && echo clean || echo CRASH)")")
  fi
  rm -f "$log"
done

if ((${#summary[@]})); then
  echo "== fuzz summary ($mode)"
  printf '   %s\n' "${summary[@]}"
fi
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
