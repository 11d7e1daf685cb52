#!/usr/bin/env bash
# The test command. Two passes, chosen deliberately:
#  1. debug build (bounds-checked): every fast test on tiny in-process models,
#     catching pointer mistakes; real-model tests skip themselves here;
#  2. optimized build with -enable-testing: the whole suite again, now including
#     the tests on the real SmolLM2 model (numeric code is 10-100x slower in debug);
#  3. the kernel and engine tests of that build once more with WREN_KERNELS=scalar,
#     so the portable C fallback is covered on every machine, AVX2 or not;
#  4. the official `openai` Python package against `wren serve` on the real model
#     (loopback only; tools/check-openai.py).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
echo "== debug build: tiny-model tests (bounds-checked)" >&2
swift test
echo "== release build: all tests including the real model" >&2
swift test -c release -Xswiftc -enable-testing
echo "== release build, portable kernels (WREN_KERNELS=scalar): kernel and engine tests" >&2
# (without the real-model speculative test: 3 minutes on the portable f16 kernel, and speculation
#  is covered on tiny models here and on the real model in pass 2)
WREN_KERNELS=scalar swift test -c release -Xswiftc -enable-testing --skip-build --filter 'WrenKernelsTests|WrenEngineTests' \
  --skip 'RealModelEngineTests.testSpeculativeGreedyIsExact'
echo "== the official openai Python package against wren serve (loopback)" >&2
# Installed beside the build (pip --target works on an externally managed Python too).
if ! python3 -c "import openai" 2>/dev/null; then
  python3 -m pip install --quiet --target .build/pydeps openai >&2
fi
[[ -f models/smol.wren ]] || .build/release/wren convert models/SmolLM2-135M-Instruct.Q4_1.gguf -o models/smol.wren >&2
PYTHONPATH="$PWD/.build/pydeps${PYTHONPATH:+:$PYTHONPATH}" python3 tools/check-openai.py -m models/smol.wren --wren .build/release/wren
