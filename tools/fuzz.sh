#!/usr/bin/env bash
# The fuzz campaign: every parsing entry point (Tests/WrenFuzzTests) with RUNS
# mutated inputs per target from SEED, in the optimized build. Prints one line
# per target (runs, rate, refused/accepted, truncated inputs accepted, slow
# executions) and fails on any crash, hang (> 20 s aborts; > 2 s fails),
# unexpected error type or accepted truncated file.
#   tools/fuzz.sh [RUNS=10000] [SEED=1]
# The test command runs the same targets briefly (1,500 runs each in debug,
# 3,000 in release). After a crash, the last input under the printed directory
# is the reproducer.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10000}
seed=${2:-1}
swift build -c release -Xswiftc -enable-testing --build-tests >&2
WREN_FUZZ_RUNS=$runs WREN_FUZZ_SEED=$seed swift test -c release -Xswiftc -enable-testing --skip-build --filter WrenFuzzTests 2>&1 \
  | tee /tmp/wren-fuzz.log | grep -E '^fuzz|error:|Executed .* tests' | sort -u
grep -q "with 0 failures" /tmp/wren-fuzz.log
