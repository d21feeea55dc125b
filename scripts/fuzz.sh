#!/usr/bin/env bash
# Runs every libFuzzer target of the asan build for N seconds (default 20),
# seeded with real files from ../shared where one fits the parser; a fixed
# libFuzzer seed keeps CI runs repeatable (new inputs come from longer local runs).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
SHARED="${LOWBIT_SHARED:-../shared}"
status=0
for fuzzer in build/asan/fuzz/fuzz_*; do
  [ -x "$fuzzer" ] || continue
  name=$(basename "$fuzzer")
  corpus="build/asan/fuzz-corpus/$name"
  mkdir -p "$corpus"
  case "$name" in
    fuzz_gguf) cp -n "$SHARED"/data/tokenizer-tests/*.gguf "$corpus"/ 2>/dev/null || true ;;
    fuzz_llama2c) cp -n "$SHARED"/models/stories260K/stories260K.bin "$corpus"/ 2>/dev/null || true ;;
    fuzz_tokenizer_llama2c) cp -n "$SHARED"/models/stories260K/tok512.bin "$corpus"/ 2>/dev/null || true ;;
  esac
  echo "fuzz: $name for ${secs}s"
  if ! "$fuzzer" -seed=1 -max_total_time="$secs" -artifact_prefix="build/asan/$name-" -rss_limit_mb=4096 -max_len=65536 "$corpus" >"build/asan/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; last lines of build/asan/$name.log:" >&2
    tail -40 "build/asan/$name.log" >&2
    status=1
  fi
done
exit $status
