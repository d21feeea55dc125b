#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: the release build under
# CTest, then the asan preset (clang, ASan + UBSan): its unit tests labelled
# "quick" and every libFuzzer target for a short run on seed inputs.
# FUZZ_SECONDS (default 20) sets the time per fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
ctest --preset release -j "$(nproc)"
bash scripts/build.sh asan
ctest --preset asan -L quick -j "$(nproc)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
