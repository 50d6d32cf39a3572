#!/usr/bin/env bash
# Equal wall-clock comparison of Hourglass and the plain Transformer LM of the same width and the
# same total layer count on tinyshakespeare: each trains for $SECONDS_EACH seconds (cosine schedule
# over the budget), validation bpc is logged every $EVAL_EVERY steps, and a PNG plots bpc against
# training time.
#
#   bash bench/hourglass_vs_transformer.sh build/examples/hseq-train ../shared/data/tinyshakespeare.txt
set -euo pipefail
train="${1:?path to hseq-train}"
data="${2:?path to the text file}"
out="${OUT:-bench/results/hourglass_vs_transformer}"
seconds="${SECONDS_EACH:-600}"
ctx="${CONTEXT:-512}"
batch="${BATCH:-8}"
lr="${LR:-2e-3}"
eval_every="${EVAL_EVERY:-100}"
mkdir -p "$out"
common=(--data "$data" --dim 256 --heads 4 --context "$ctx" --batch "$batch" --lr "$lr" --warmup 100 --steps 0
        --time-budget "$seconds" --eval-every "$eval_every" --eval-windows 32 --sample-bytes 0 --seed 1234)
echo "== hourglass 2@1 4@4 2@1 (attention pooling, attention upsampling)"
"$train" "${common[@]}" --model hourglass --hierarchy "2@1 4@4 2@1" --shorten attention --upsample attention \
  --csv "$out/hourglass.csv" | tee "$out/hourglass.log"
echo "== transformer, 8 layers"
"$train" "${common[@]}" --model transformer --layers 8 --csv "$out/transformer.csv" | tee "$out/transformer.log"
python3 "$(dirname "$0")/../tools/plot_curves.py" --out "$out/bpc_vs_time.png" \
  --title "tinyshakespeare, d=256, T=$ctx, batch $batch, $seconds s each" \
  "hourglass 2@1 4@4 2@1=$out/hourglass.csv" "transformer 8 layers=$out/transformer.csv"
