#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, fetch SmolLM2-135M-Instruct,
# build wren (release), convert the GGUF into .wren, and show what is inside.
# (Text generation arrives with the engine issue; this script will run it then.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build -c release >&2
WREN=.build/release/wren
[[ -f models/smol.wren ]] || $WREN convert models/SmolLM2-135M-Instruct.Q4_1.gguf -o models/smol.wren
$WREN inspect models/smol.wren --verify | head -12
