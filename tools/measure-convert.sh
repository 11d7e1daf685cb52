#!/usr/bin/env bash
# Conversion time and file size of SmolLM2 for each --type, with and without
# --compress, and the time to open each file and read its table (median of 9
# `wren inspect` runs, which print the open time). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release >&2
WREN=.build/release/wren
SRC=models/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "| --type | --compress | convert s | file MB | zstd ratio | open ms (median of 9) |"
echo "|---|---|---|---|---|---|"
for t in keep f32 f16 bf16 q8_0 q4_0 q4_1; do
  for c in no yes; do
    args=("$SRC" -o "$OUT/m.wren" --force)
    [[ $t != keep ]] && args+=(--type "$t")
    [[ $c == yes ]] && args+=(--compress)
    s=$(date +%s.%N); $WREN convert "${args[@]}" 2>/dev/null; e=$(date +%s.%N)
    size=$(stat -c %s "$OUT/m.wren")
    ratio=$($WREN inspect "$OUT/m.wren" --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f" % (j["stored_bytes"]/j["tensor_bytes"]))')
    open=$(for i in $(seq 9); do $WREN inspect "$OUT/m.wren" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["open_ms"])'; done | sort -g | sed -n 5p)
    printf "| %s | %s | %.2f | %.1f | %s | %.2f |\n" "$t" "$c" "$(echo "$e - $s" | bc)" "$(echo "$size/1000000" | bc -l)" "$ratio" "$open"
  done
done
