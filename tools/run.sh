#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, fetch SmolLM2-135M-Instruct,
# build wren (release), convert the GGUF into models/smol.wren once, and generate text.
# Extra arguments go to `wren run` (default: a short greedy completion).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build -c release >&2
WREN=.build/release/wren
[[ -f models/smol.wren ]] || $WREN convert models/SmolLM2-135M-Instruct.Q4_1.gguf -o models/smol.wren
if (($#)); then
  exec $WREN run -m models/smol.wren "$@"
fi
$WREN run -m models/smol.wren -p "The three most important inventions of the 20th century are" -n 64 --temp 0 --verbose
