#!/usr/bin/env bash
# The main job: install what is needed, build in Release, extract the built-in corpus (the King James
# Bible from Debian's bible-kjv), train the default byte-level Transformer LM for a few minutes with
# the progress display, print validation bits per character, save a checkpoint, and print a sample
# generated from that checkpoint with the key/value cache.
#
#   bash scripts/main_job.sh                 # 5 minutes of training
#   HSEQ_TRAIN_SECONDS=60 bash scripts/main_job.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${HSEQ_TRAIN_SECONDS:-300}"
out=build-main

bash scripts/setup.sh
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Release -DHSEQ_BUILD_TESTS=OFF -DHSEQ_BUILD_BENCHMARKS=OFF \
  -DHSEQ_BUILD_EXAMPLES=ON -DHSEQ_ENABLE_CUDA=OFF
cmake --build "$out" -j"$(nproc)" --target hseq-train hseq-generate

corpus="$out/kjv.txt"
if [ ! -s "$corpus" ]; then
  bible -f Gen1:1-Rev22:21 > "$corpus.tmp"
  mv "$corpus.tmp" "$corpus"
fi
echo "corpus: $corpus ($(wc -c < "$corpus") bytes, King James Bible from Debian's bible-kjv)"

# Default model: d = 256, 4 heads, 4 layers, context 128, batch 16, peak lr 2e-3; cosine schedule over the budget.
"$out/examples/hseq-train" --data "$corpus" --steps 0 --time-budget "$seconds" --eval-every 250 \
  --out "$out/kjv.safetensors" --sample-bytes 0

echo
echo "sample from $out/kjv.safetensors (temperature 0.8, top-k 40, cached generation):"
"$out/examples/hseq-generate" --checkpoint "$out/kjv.safetensors" --prompt "Ge1:1 In the beginning" --bytes 400 \
  --temperature 0.8 --top-k 40 --seed 7
