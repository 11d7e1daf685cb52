#!/usr/bin/env bash
# Runs the README's tour (the ```sh block after "<!-- tour -->") line by line on
# the real model, with `wren` meaning the release build, so the README cannot rot.
# Needs tools/run.sh to have run once (model fetched, built, models/smol.wren).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .build/release/wren && -f models/smol.wren ]] || { echo "tour: run tools/run.sh first" >&2; exit 1; }
wren() { "$PWD/.build/release/wren" "$@"; }
mkdir -p out
n=0
while IFS= read -r line; do
  [[ -z "$line" || "$line" == \#* ]] && continue
  n=$((n + 1))
  echo "tour $n: $line" >&2
  eval "$line" || { echo "tour: line $n failed (exit $?): $line" >&2; exit 1; }
done < <(awk '/<!-- tour -->/ {on=1; next} on && /^```sh/ {inblock=1; next} inblock && /^```/ {exit} inblock {print}' README.md)
(( n > 0 )) || { echo "tour: no tour block found in README.md" >&2; exit 1; }
echo "tour: all $n lines ran" >&2
