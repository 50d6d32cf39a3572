#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Issue 19's experiment (../shared/spec/segmentation.md §5) at CPU scale: fixed against
# data-dependent segmentation at equal parameters and equal wall-clock, run as a user runs it
# (native BLAS kernels):
#
#   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bash bench/segmentation.sh compare
#   bash bench/segmentation.sh summary      # summary.txt again from the runs' files
#
# Corpus $CORPUS (default tinyshakespeare from ../shared/data), d = 192, 4 heads, context 256,
# batch 16, peak lr 2e-3 (50 warm-up steps, cosine over the budget), $SECONDS_EACH s of training
# per run (default 240), seeds $SEEDS (default 1 2). Arms (every Hourglass is "2@1 4@X 2@1": the
# same blocks, so the same parameters; the flat model has as many blocks):
#   - transformer: the flat Transformer, 8 layers;
#   - avg4: the numeric Hourglass, factor 4, average pooling, repeat upsampling (issue 14's best
#     pooling; ratio 4, more inner compute than the others);
#   - fixed5: fixed:5 through the data-dependent path, select / repeat (ratio 5);
#   - space: SpaceByte's spacelike boundaries, select / repeat (ratio ~5.3 on tinyshakespeare);
#   - word: AU-Net's word boundaries, select / repeat (ratio ~5.5);
#   - entropy: BLT's global entropy threshold over a byte LM (2 layers, d 128, trained for
#     $LM_SECONDS s first, charged to the arm: it trains $SECONDS_EACH - $LM_SECONDS s), the
#     threshold calibrated to 5.4 bytes per segment on the training split (tools/segment_stats.py);
#   - spacemean: the spacelike boundaries with the segment mean (--shorten avg) instead of select
#     (Dynamic Token Pooling's pooling);
#   - router: H-Net's learned cosine router, its ratio loss aiming at N = 5.4 positions per segment
#     (weight 0.03), select / repeat; 2 d^2 more parameters (its W_q, W_k);
#   - routerema: the router with H-Net's EMA de-chunking of its segment outputs (--dechunk ema:
#     the spec's arm E; no further parameters);
#   - mlp: Dynamic Token Pooling's MLP boundary predictor (d^2 + 2 d + 1 more parameters), trained
#     like the router (ratio loss aiming at 5.4), with EMA de-chunking;
#   - fixed5attn / spaceattn: fixed:5 / spacelike boundaries with attention pooling over each
#     segment's bytes and cross-attention unpooling (--shorten attention --upsample attention; both
#     arms have the same 2 x (4 d^2 + 8 d^2) + LayerNorm parameters more than the select arms).
# hseq-train reports each rule arm's bytes per segment on held-out windows (the bytes/seg column).
# The table's bpc is hseq-eval's on the whole held-out split (T = 256). Raw output in $OUT (default
# bench/results/segmentation): logs, CSVs, evals, commands.txt, machine.txt, stats.txt (bytes per
# segment of each rule), boundaries.png (every rule's boundaries on a sample), summary.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode="${1:?usage: bench/segmentation.sh compare|summary}"
train="${TRAIN:-build/examples/hseq-train}"
eval="${EVAL:-build/examples/hseq-eval}"
out="${OUT:-bench/results/segmentation}"
seconds="${SECONDS_EACH:-240}"
lm_seconds="${LM_SECONDS:-60}"
seeds="${SEEDS:-1 2}"
corpus="${CORPUS:-../shared/data/tinyshakespeare.txt}"
arms="${ARMS:-transformer avg4 fixed5 space word entropy}"
mkdir -p "$out"
[ -x "$train" ] || { echo "no $train: build it first (cmake --build build --target hseq-train)" >&2; exit 2; }
# shellcheck source=bench/common.sh
source bench/common.sh

common=(--data "$corpus" --dim 192 --heads 4 --context 256 --batch 16 --lr 2e-3 --warmup 50 --steps 0
        --eval-every 100 --eval-windows 32 --sample-bytes 0)
hg=(--model hourglass --shorten select --upsample repeat)

run() {  # run NAME BUDGET ARGS...: one training run, then hseq-eval on the whole held-out split
  local name="$1" budget="$2"; shift 2
  echo "$train ${common[*]} --time-budget $budget $* --csv $out/$name.csv --out $out/$name.safetensors" \
    >> "$out/commands.txt"
  echo "== $name"
  "$train" "${common[@]}" --time-budget "$budget" "$@" --csv "$out/$name.csv" --out "$out/$name.safetensors" \
    > "$out/$name.log"
  echo "$eval --checkpoint $out/$name.safetensors --data $corpus --seq-len 256 --batch 16" >> "$out/commands.txt"
  "$eval" --checkpoint "$out/$name.safetensors" --data "$corpus" --seq-len 256 --batch 16 > "$out/$name.eval"
  rm -f "$out/$name.safetensors"  # (large; the logs and CSVs are the record)
}

summary() {
  {
    cat "$out/machine.txt"
    echo
    [ -f "$out/stats.txt" ] && cat "$out/stats.txt" && echo
    printf '%-18s %11s %7s %11s %10s %10s %10s\n' run parameters steps tokens/s val_bpc32 full_bpc bytes/seg
    for f in "$out"/*_s*.log; do
      n=$(basename "$f" .log)
      p=$(sed -n 's/^parameters: //p' "$f")
      steps=$(sed -n 's/^steps: \([0-9]*\).*/\1/p' "$f")
      tps=$(sed -n 's/.*throughput: \([0-9.]*\) tokens\/s.*/\1/p' "$f")
      bpc=$(sed -n 's/^validation bpc: //p' "$f")
      full=$(sed -n 's/^bpc: //p' "${f%.log}.eval")
      seg=$(sed -n 's/^segments ([^)]*): level 0 ([^)]*) \([0-9.]*\) bytes per segment.*/\1/p' "$f")
      printf '%-18s %11s %7s %11s %10s %10s %10s\n' "$n" "$p" "$steps" "$tps" "$bpc" "$full" "${seg:--}"
    done
  } | tee "$out/summary.txt"
}

case "$mode" in
compare)
  : > "$out/commands.txt"
  { bench_env_lines . "$train" "$(nproc)"
    echo "this run: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-<unset>}"
    echo "corpus: $corpus; $seconds s per run; seeds $seeds"; } | tee "$out/machine.txt"
  theta=""
  if [[ " $arms " == *" entropy "* ]]; then
    echo "== entropy LM ($lm_seconds s)"
    echo "$train --data $corpus --model transformer --dim 128 --heads 4 --layers 2 --context 256 --batch 16 --lr 2e-3 --warmup 50 --steps 0 --time-budget $lm_seconds --eval-every 0 --sample-bytes 0 --seed 1 --out $out/entropy_lm.safetensors" >> "$out/commands.txt"
    "$train" --data "$corpus" --model transformer --dim 128 --heads 4 --layers 2 --context 256 --batch 16 --lr 2e-3 \
      --warmup 50 --steps 0 --time-budget "$lm_seconds" --eval-every 0 --sample-bytes 0 --seed 1 \
      --out "$out/entropy_lm.safetensors" > "$out/entropy_lm.log"
    echo "python3 tools/segment_stats.py --corpus $corpus --rules fixed:5 space word --lm $out/entropy_lm.safetensors --target 5.4 --plot $out/boundaries.png" >> "$out/commands.txt"
    python3 tools/segment_stats.py --corpus "$corpus" --rules fixed:5 space word --lm "$out/entropy_lm.safetensors" \
      --target 5.4 --plot "$out/boundaries.png" | tee "$out/stats.txt"
    theta=$(sed -n 's/^entropy threshold for 5.4 bytes per segment: //p' "$out/stats.txt")
    theta=$(python3 -c "print(f'{float(\"$theta\"):.4f}')")
  fi
  for seed in $seeds; do
    for arm in $arms; do
      case "$arm" in
        transformer) run "transformer_s$seed" "$seconds" --seed "$seed" --model transformer --layers 8 ;;
        avg4) run "avg4_s$seed" "$seconds" --seed "$seed" --model hourglass --hierarchy "2@1 4@4 2@1" --shorten avg \
                --upsample repeat ;;
        fixed5) run "fixed5_s$seed" "$seconds" --seed "$seed" "${hg[@]}" --hierarchy "2@1 4@fixed:5 2@1" ;;
        space) run "space_s$seed" "$seconds" --seed "$seed" "${hg[@]}" --hierarchy "2@1 4@space 2@1" ;;
        word) run "word_s$seed" "$seconds" --seed "$seed" "${hg[@]}" --hierarchy "2@1 4@word 2@1" ;;
        router) run "router_s$seed" "$seconds" --seed "$seed" "${hg[@]}" --hierarchy "2@1 4@router:5.4 2@1" ;;
        routerema) run "routerema_s$seed" "$seconds" --seed "$seed" "${hg[@]}" --hierarchy "2@1 4@router:5.4 2@1" \
                     --dechunk ema ;;
        mlp) run "mlp_s$seed" "$seconds" --seed "$seed" "${hg[@]}" --hierarchy "2@1 4@mlp:5.4 2@1" --dechunk ema ;;
        fixed5attn) run "fixed5attn_s$seed" "$seconds" --seed "$seed" --model hourglass --shorten attention \
                      --upsample attention --hierarchy "2@1 4@fixed:5 2@1" ;;
        spaceattn) run "spaceattn_s$seed" "$seconds" --seed "$seed" --model hourglass --shorten attention \
                     --upsample attention --hierarchy "2@1 4@space 2@1" ;;
        spacemean) run "spacemean_s$seed" "$seconds" --seed "$seed" --model hourglass --shorten avg --upsample repeat \
                     --hierarchy "2@1 4@space 2@1" ;;
        entropy) run "entropy_s$seed" "$((seconds - lm_seconds))" --seed "$seed" "${hg[@]}" \
                   --hierarchy "2@1 4@entropy:$theta 2@1" --entropy-model "$out/entropy_lm.safetensors" ;;
        *) echo "unknown arm $arm" >&2; exit 2 ;;
      esac
    done
  done
  rm -f "$out/entropy_lm.safetensors"
  summary
  ;;
summary) summary ;;
*) echo "unknown mode '$mode' (compare or summary)" >&2; exit 2 ;;
esac
