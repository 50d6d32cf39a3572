#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Issue 14's fair comparison of the Hourglass and the flat Transformer LM on the built-in corpus
# (the King James Bible), with native BLAS kernels (run it as shown, under `env -u ...`):
#
#   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bash bench/hourglass_fair.sh fair
#   bash bench/hourglass_fair.sh fair-summary   # summary.txt and the plot again, from the fair runs' files
#   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bash bench/hourglass_fair.sh throughput
#   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bash bench/hourglass_fair.sh closing
#
# fair: equal wall-clock ($SECONDS_EACH, default 1200 s of training each, validation excluded),
#   T = 1024, two seeds, three models of equal parameter count within 5 % (the logs' "parameters:"
#   lines; the summary prints the ratios):
#     - Hourglass 2@1 4@4 2@1, attention shortening with average-pooled queries and attention
#       upsampling with linear queries (the paper's enwik8 choice, trax's defaults), 8.49 M;
#     - Hourglass 2@1 6@4 2@1, average pooling and repetition, 8.23 M (two more shortened layers
#       instead of the attention resampling's parameters);
#     - the flat Transformer, 10 layers, 8.23 M.
#   d = 256, 4 heads, batch 4 x 1024, peak lr 2e-3 (100 warm-up steps, cosine decay over the budget),
#   validation on 32 windows every $EVAL_EVERY steps (the curves), then hseq-eval scores the final
#   checkpoint on every window of the held-out split (the table's bpc).
# throughput: training tokens/s at T = 2048 (batch 2) for the hierarchies 2@1 4@4 2@1, 1@1 6@4 1@1
#   and 1@1 2@2 4@8 2@2 1@1 with average pooling and repetition (no resampling parameters, so the
#   flat model of equal parameter count is the Transformer with as many layers: 8, 8 and 10),
#   $TPUT_STEPS steps each after the first (warm-up) step.
# closing: whether trax's closing LayerNorms help (issue 14 keeps the version-1 form only as an
#   option to load old checkpoints): Hourglass 2@1 4@4 2@1 (attention / attention_linear), d = 256,
#   T = 256, batch 8, $CLOSING_STEPS steps (default 400) with and without them, two seeds; the
#   table's bpc is hseq-eval's on the whole held-out split. Equal steps (the norms cost < 0.1 % of
#   the FLOPs), so the comparison is per step, not per second.
#
# Raw output lands in $OUT (default bench/results/hourglass_fair): one log and CSV per run, the
# commands, summary.txt, and bpc_vs_time.png (tools/plot_curves.py) for the fair runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode="${1:?usage: bench/hourglass_fair.sh fair|fair-summary|throughput|closing}"
train="${TRAIN:-build/examples/hseq-train}"
eval="${EVAL:-build/examples/hseq-eval}"
out="${OUT:-bench/results/hourglass_fair}"
seconds="${SECONDS_EACH:-1200}"
seeds="${SEEDS:-1 2}"
eval_every="${EVAL_EVERY:-100}"
tput_steps="${TPUT_STEPS:-20}"
corpus="${CORPUS:-build/kjv.txt}"
mkdir -p "$out"
if [ ! -s "$corpus" ]; then
  bible -f Gen1:1-Rev22:21 > "$corpus.tmp"
  mv "$corpus.tmp" "$corpus"
fi
[ -x "$train" ] || { echo "no $train: build it first (cmake --build build --target hseq-train)" >&2; exit 2; }

# shellcheck source=bench/common.sh
source bench/common.sh
machine() {  # the machine record (bench_env_lines), and whether the overrides are unset here
  bench_env_lines . "$train" "$(nproc)"
  echo "this run: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-<unset>}"
}

run() {  # run NAME ARGS...: one training run (log, CSV, checkpoint under $out), then the full-split bpc
  local name="$1"; shift
  echo "$train $* --out $out/$name.safetensors" >> "$out/commands.txt"
  echo "== $name"
  "$train" "$@" --out "$out/$name.safetensors" | tee "$out/$name.log"
  echo "$eval --checkpoint $out/$name.safetensors --data $corpus --seq-len 1024 --batch 4" >> "$out/commands.txt"
  "$eval" --checkpoint "$out/$name.safetensors" --data "$corpus" --seq-len 1024 --batch 4 | tee "$out/$name.eval"
}

fair_summary() {  # summary.txt and bpc_vs_time.png from the fair runs' logs, CSVs and evals
  local runs=()
  for f in "$out"/hourglass_*_s*.log "$out"/transformer_s*.log; do [ -e "$f" ] && runs+=("$f"); done
  {
    cat "$out/machine.txt"  # the machine record written when the runs started
    echo
    printf '%-22s %12s %8s %8s %12s %10s %10s\n' run parameters ratio steps tokens/s val_bpc32 full_bpc
    base=$(sed -n 's/^parameters: //p' "$out/transformer_s${seeds%% *}.log")
    for f in "${runs[@]}"; do
      n=$(basename "$f" .log)
      p=$(sed -n 's/^parameters: //p' "$f")
      steps=$(sed -n 's/^steps: \([0-9]*\).*/\1/p' "$f")
      tps=$(sed -n 's/.*throughput: \([0-9.]*\) tokens\/s.*/\1/p' "$f")
      bpc=$(sed -n 's/^validation bpc: //p' "$f")
      full=$(grep -o 'bpc[^0-9]*[0-9.]*' "${f%.log}.eval" | tail -1 | grep -o '[0-9.]*$')
      printf '%-22s %12s %8.3f %8s %12s %10s %10s\n' "$n" "$p" "$(echo "$p / $base" | bc -l)" "$steps" "$tps" "$bpc" \
        "$full"
    done
  } | tee "$out/summary.txt"
  local curves=()
  for f in "${runs[@]}"; do curves+=("$(basename "$f" .log)=${f%.log}.csv"); done
  python3 tools/plot_curves.py --out "$out/bpc_vs_time.png" \
    --title "KJV, d=256, T=1024, batch 4, $seconds s each, equal parameters" "${curves[@]}" || true
}

case "$mode" in
fair)
  : > "$out/commands.txt"
  machine | tee "$out/machine.txt"
  common=(--data "$corpus" --dim 256 --heads 4 --context 1024 --batch 4 --lr 2e-3 --warmup 100 --steps 0
          --time-budget "$seconds" --eval-every "$eval_every" --eval-windows 32 --sample-bytes 0)
  for seed in $seeds; do
    run "hourglass_attn_s$seed" "${common[@]}" --seed "$seed" --model hourglass --hierarchy "2@1 4@4 2@1" \
      --shorten attention --upsample attention_linear --csv "$out/hourglass_attn_s$seed.csv"
    run "hourglass_avg_s$seed" "${common[@]}" --seed "$seed" --model hourglass --hierarchy "2@1 6@4 2@1" \
      --shorten avg --upsample repeat --csv "$out/hourglass_avg_s$seed.csv"
    run "transformer_s$seed" "${common[@]}" --seed "$seed" --model transformer --layers 10 \
      --csv "$out/transformer_s$seed.csv"
  done
  fair_summary
  ;;
fair-summary)  # rebuild summary.txt and the plot from the fair runs already in $out
  fair_summary
  ;;
throughput)
  : > "$out/throughput_commands.txt"
  machine | tee "$out/throughput.txt"
  common=(--data "$corpus" --dim 256 --heads 4 --context 2048 --batch 2 --steps "$((tput_steps + 1))"
          --warmup 1 --eval-every 0 --eval-windows 1 --sample-bytes 0 --seed 1)
  tput() {  # tput NAME ARGS...: training tokens/s of the steps after the first (CSV rows 2..)
    local name="$1"; shift
    echo "$train $*" >> "$out/throughput_commands.txt"
    "$train" "$@" --csv "$out/tput_$name.csv" > "$out/tput_$name.log"
    local p
    p=$(sed -n 's/^parameters: //p' "$out/tput_$name.log")
    # tokens/s over rows 2..N of the CSV (seconds and tokens are cumulative): the first step warms up.
    awk -F, -v name="$name" -v p="$p" 'NR == 2 {t0 = $5; k0 = $6} NR > 2 {t = $5; k = $6}
      END {printf "%-28s %10s %12.1f\n", name, p, (k - k0) / (t - t0)}' "$out/tput_$name.csv"
  }
  {
    printf '%-28s %10s %12s\n' model parameters tokens/s
    tput "flat_8" "${common[@]}" --model transformer --layers 8
    tput "hg_2@1_4@4_2@1" "${common[@]}" --model hourglass --hierarchy "2@1 4@4 2@1" --shorten avg --upsample repeat
    tput "hg_1@1_6@4_1@1" "${common[@]}" --model hourglass --hierarchy "1@1 6@4 1@1" --shorten avg --upsample repeat
    tput "flat_10" "${common[@]}" --model transformer --layers 10
    tput "hg_1@1_2@2_4@8_2@2_1@1" "${common[@]}" --model hourglass --hierarchy "1@1 2@2 4@8 2@2 1@1" \
      --shorten avg --upsample repeat
  } | tee -a "$out/throughput.txt"
  ;;
closing)
  : > "$out/closing_commands.txt"
  machine | tee "$out/closing.txt"
  steps="${CLOSING_STEPS:-400}"
  common=(--data "$corpus" --dim 256 --heads 4 --context 256 --batch 8 --lr 2e-3 --warmup 100 --steps "$steps"
          --eval-every 100 --eval-windows 32 --sample-bytes 0 --model hourglass --hierarchy "2@1 4@4 2@1"
          --shorten attention --upsample attention_linear)
  for seed in $seeds; do
    for variant in closing no_closing; do
      name="closing_${variant}_s$seed"
      flags=()
      [ "$variant" = no_closing ] && flags=(--no-closing-norm)
      echo "$train ${common[*]} ${flags[*]} --seed $seed --csv $out/$name.csv --out $out/$name.safetensors" \
        >> "$out/closing_commands.txt"
      "$train" "${common[@]}" "${flags[@]}" --seed "$seed" --csv "$out/$name.csv" --out "$out/$name.safetensors" \
        > "$out/$name.log"
      "$eval" --checkpoint "$out/$name.safetensors" --data "$corpus" --seq-len 256 --batch 16 > "$out/$name.eval"
      printf '%-26s %s\n' "$name" "$(grep -i 'bpc' "$out/$name.eval" | tail -1)" | tee -a "$out/closing.txt"
    done
  done
  ;;
*)
  echo "unknown mode '$mode' (fair, throughput or closing)" >&2
  exit 2
  ;;
esac
