#!/usr/bin/env bash
# Perplexity, Wren against llama.cpp's llama-perplexity, side by side: the same
# GGUF (Wren converts it to .wren byte for byte), the same text, context and
# threads. Prints both estimates, their relative difference, both wall times
# and the speed ratio.
#
#   LLAMA_PERPLEXITY=/path/to/llama-perplexity tools/eval-vs-llama-perplexity.sh [GGUF] [TEXT] [CTX] [THREADS] [-- wren flags]
#
# Defaults: models/SmolLM2-135M-Instruct.Q4_1.gguf, the book of Genesis (KJV,
# public domain, from Debian's bible-kjv-text, fetched with apt-get download),
# -c 512, 2 threads. Build llama-perplexity from llama-cpp-python's vendored
# tree: cmake -B build && cmake --build build --target llama-perplexity.
# Extra wren flags after -- (e.g. --exact against an F32 GGUF).
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
TEXT=${2:-}
CTX=${3:-512}
THREADS=${4:-2}
shift $(( $# < 4 ? $# : 4 )) || true
[ "${1:-}" = "--" ] && shift
LP=${LLAMA_PERPLEXITY:?set LLAMA_PERPLEXITY to the llama-perplexity binary}
WREN=.build/release/wren
WORK=.build/eval-ppl
mkdir -p "$WORK"
if [ -z "$TEXT" ]; then
    TEXT=$WORK/genesis.txt
    if [ ! -s "$TEXT" ]; then
        (cd "$WORK" && apt-get download bible-kjv bible-kjv-text >/dev/null \
            && for d in bible-kjv_*.deb bible-kjv-text_*.deb; do dpkg-deb -x "$d" kjv; done)
        "$WORK/kjv/usr/bin/bible" -p "$WORK/kjv/usr/lib" -f "Genesis 1:1-50:26" > "$TEXT"
    fi
fi
MODEL=$WORK/$(basename "$GGUF" .gguf).wren
[ -s "$MODEL" ] || "$WREN" convert "$GGUF" -o "$MODEL" --force >/dev/null

now() { date +%s.%N; }
t0=$(now)
lp_out=$("$LP" -m "$GGUF" -f "$TEXT" -c "$CTX" -t "$THREADS" 2>&1)
t1=$(now)
wren_json=$("$WREN" eval ppl -m "$MODEL" -f "$TEXT" -c "$CTX" -t "$THREADS" --json "$@" 2>/dev/null)
t2=$(now)
python3 - "$lp_out" "$wren_json" "$t0" "$t1" "$t2" "$GGUF" "$TEXT" "$CTX" "$THREADS" "$*" <<'EOF'
import json, re, sys
lp, wj, t0, t1, t2, gguf, text, ctx, threads, flags = sys.argv[1:]
m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", lp)
if not m:
    sys.exit("llama-perplexity gave no final estimate:\n" + lp[-2000:])
lppl, lerr = float(m.group(1)), float(m.group(2))
w = json.loads(wj)
tl, tw = float(t1) - float(t0), float(t2) - float(t1)
print(f"{text}: {w['tokens']} tokens, {w['chunks']} chunks of {ctx}, {threads} threads, {gguf} {flags}")
print(f"llama-perplexity  PPL = {lppl:.4f} +/- {lerr:.5f}   {tl:6.1f} s")
print(f"wren eval ppl     PPL = {w['perplexity']:.4f} +/- {w['perplexityError']:.5f}   {tw:6.1f} s")
print(f"difference {100 * (w['perplexity'] - lppl) / lppl:+.3f}%   speed wren/llama.cpp {tl / tw:.2f}x")
EOF
