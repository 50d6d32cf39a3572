#!/usr/bin/env bash
# The main job: install what is needed, build in Release, extract the built-in corpus (the King James
# Bible from Debian's bible-kjv), train a byte-level model for a few minutes with the progress
# display, print validation bits per character, save a checkpoint, and print a sample generated from
# that checkpoint with the model's cache.
#
# The default model is the Hourglass of issue 14's fair comparison with the lowest mean bpc (equal
# parameters, equal wall-clock, two seeds; docs/performance.md): `2@1 6@4 2@1` (two full-rate
# layers, six at a quarter of the rate, two full-rate layers) with average-pooling shortening and
# repeat upsampling, d = 256, 4 heads, T = 1024, batch 4; its sample comes from the hierarchical
# cache (the shortened level steps only when one of its short positions completes). The flat
# Transformer of equal parameter count (10 layers) is one flag away:
#
#   bash scripts/main_job.sh                 # the Hourglass, 5 minutes of training
#   bash scripts/main_job.sh --transformer   # the flat Transformer, same data, sizes and budget
#   HSEQ_TRAIN_SECONDS=60 bash scripts/main_job.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

model=hourglass
for arg in "$@"; do
  case "$arg" in
    --transformer) model=transformer ;;
    --hourglass) model=hourglass ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "main_job.sh: unknown argument '$arg' (known: --transformer, --hourglass)" >&2; exit 2 ;;
  esac
done
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

# Both models: d = 256, 4 heads, context 1024, batch 4, peak lr 2e-3 (100 warm-up steps), cosine
# schedule over the budget; equal parameter counts (8,227,328 and 8,225,792).
common=(--data "$corpus" --dim 256 --heads 4 --context 1024 --batch 4 --lr 2e-3 --warmup 100 --steps 0
        --time-budget "$seconds" --eval-every 100 --eval-windows 32 --sample-bytes 0)
if [ "$model" = hourglass ]; then
  flags=(--model hourglass --hierarchy "2@1 6@4 2@1" --shorten avg --upsample repeat)
else
  flags=(--model transformer --layers 10)
fi
ckpt="$out/kjv-$model.safetensors"
"$out/examples/hseq-train" "${common[@]}" "${flags[@]}" --out "$ckpt"

echo
echo "for reference, issue 14's fair comparison (docs/performance.md: 1200 s each, this configuration,"
echo "bpc on the whole held-out split, seeds 1 and 2):"
echo "  Hourglass 2@1 6@4 2@1 (avg / repeat): 2.321 and 2.268 bpc"
echo "  Transformer, 10 layers:               3.367 and 3.379 bpc"
echo
echo "sample from $ckpt (temperature 0.8, top-k 40, cached generation):"
"$out/examples/hseq-generate" --checkpoint "$ckpt" --prompt "Ge1:1 In the beginning" --bytes 400 \
  --temperature 0.8 --top-k 40 --seed 7
