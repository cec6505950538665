#!/usr/bin/env bash
# bench/splice_section.sh FILE NAME CONTENT: put CONTENT between the lines
# `<!-- begin NAME -->` and `<!-- end NAME -->` of FILE (replacing what was there), or
# append it with those markers when FILE has no such section. Lets several benchmark
# scripts share one results file without overwriting each other's figures.
set -euo pipefail
file=$1 name=$2 content=$3
begin="<!-- begin $name -->" end="<!-- end $name -->"
[ -f "$file" ] || : > "$file"
new="$(mktemp)"
if grep -qxF "$begin" "$file"; then
  C="$content" awk -v b="$begin" -v e="$end" '
    $0 == b { print; print ENVIRON["C"]; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$file" > "$new"
else
  { cat "$file"; printf '\n%s\n%s\n%s\n' "$begin" "$content" "$end"; } > "$new"
fi
mv "$new" "$file"
