#!/usr/bin/env bash
# The main job on the bundled default model (stories260K from ../shared):
# set up, build, generate its golden greedy text, and print its perplexity
# on TinyStories with llama.cpp's protocol, then compare a handful of
# quantizations of it (report in build/release/demo-report/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
SHARED="${LOWBIT_SHARED:-../shared}"
MODEL="$SHARED/models/stories260K/stories260K-f32.llamacpp.gguf"
if [ ! -f "$MODEL" ]; then
  echo "demo: $MODEL not found; put the shared data folder beside the checkout (or set LOWBIT_SHARED)" >&2
  exit 1
fi
echo "== lowbit run (greedy, 200 tokens from BOS) =="
./build/release/lowbit run "$MODEL" -n 200 --temp 0
echo "== lowbit ppl (llama.cpp protocol, ctx 256, TinyStories validation head) =="
./build/release/lowbit ppl "$MODEL" --data "$SHARED/data/tinystories/validation-head.txt" --ctx 256
echo "== lowbit compare (size, perplexity, KLD, speed of a few formats; report.md/.json/.html) =="
./build/release/lowbit compare "$MODEL" --data "$SHARED/data/tinystories/validation-head.txt" \
  --formats q8_0,q6_k,q5_k,q4_k,q4_0,q3_k,q2_k --methods rtn,imatrix --ctx 256 --chunks 16 \
  -o build/release/demo-report
echo "open build/release/demo-report/report.html in a browser"
