#!/usr/bin/env bash
# The test command. Two passes, chosen deliberately:
#  1. debug build (bounds-checked): every fast test on tiny in-process models,
#     catching pointer mistakes; real-model tests skip themselves here;
#  2. optimized build with -enable-testing: the whole suite again, now including
#     the tests on the real SmolLM2 model (numeric code is 10-100x slower in debug).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
echo "== debug build: tiny-model tests (bounds-checked)" >&2
swift test
echo "== release build: all tests including the real model" >&2
swift test -c release -Xswiftc -enable-testing
