#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest examples.precision: `hseq-train --precision bf16` (hseq::cpu_bf16's GEMM math, docs/performance.md).
#   1. Every model family trains with bf16 GEMMs: the run says so, reports a validation bpc, and
#      writes a checkpoint.
#   2. The bf16 loss sequence is not the fp32 one (the GEMMs did change) but stays within 0.05 nats
#      of it over the first steps (at initialisation bf16 moves the loss by ~1e-3).
#   3. A bf16 checkpoint resumes in fp32 and an fp32 one in bf16 (checkpoints hold fp32).
#   4. An unknown precision, and TF32 on the CPU, are refused naming the flag.
#   usage: run_precision.sh HSEQ_TRAIN DATA_FILE WORK_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/families.sh"  # for_each_family (before the cd below)
train="$1" data="$2" work="$3"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
# Wide enough for the bf16 path: 2 m n / (m + n) >= 64 with m = 4 x 32 rows, n = 64 (ops/gemm.hpp).
base=(--data "$data" --dim 64 --heads 2 --layers 1 --batch 4 --seed 7 --warmup 2 --eval-every 0 --eval-windows 2
      --sample-bytes 0 --threads 1)

# 1. Every family.
family() {
  local name="$1"; shift
  out="$("$train" --model "$@" "${base[@]}" --steps 4 --precision bf16 --out "$work/$name.safetensors" 2>&1)" \
    || fail "$name with --precision bf16: $out"
  [[ "$out" == *"precision bf16 GEMMs"* ]] || fail "$name: no 'precision bf16 GEMMs' in the header: $out"
  grep -q "validation bpc: [0-9]" <<< "$out" || fail "$name: no validation bpc: $out"
  [ -f "$work/$name.safetensors" ] || fail "$name: no checkpoint"
  echo "ok: $name trains with --precision bf16"
}
for_each_family family

# 2. The loss sequences, from the CSV logs (step and loss columns).
lm=(--model transformer "${base[@]}" --context 32)
"$train" "${lm[@]}" --steps 6 --csv fp32.csv --out fp32.safetensors > fp32.log 2>&1 || fail "fp32: $(cat fp32.log)"
"$train" "${lm[@]}" --steps 6 --precision bf16 --csv bf16.csv --out bf16.safetensors > bf16.log 2>&1 || fail "bf16: $(cat bf16.log)"
losses() { awk -F, 'NR > 1 && $2 != "nan" && $2 != "" { print $2 }' "$1"; }
[ "$(losses fp32.csv | wc -l)" -eq 6 ] || fail "the fp32 log has not 6 steps: $(cat fp32.csv)"
[ "$(losses fp32.csv)" != "$(losses bf16.csv)" ] || fail "bf16 and fp32 losses are identical: the bf16 GEMMs did not run"
paste -d' ' <(losses fp32.csv) <(losses bf16.csv) |
  awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 0.05) { print "step " NR ": fp32 " $1 ", bf16 " $2; bad = 1 } } END { exit bad }' ||
  fail "bf16 losses further than 0.05 nats from fp32"
echo "ok: bf16 losses differ from fp32 and stay within 0.05 nats over 6 steps"

# 3. Checkpoints across precisions.
"$train" "${lm[@]}" --steps 8 --precision fp32 --resume bf16.safetensors > r32.log 2>&1 || fail "bf16 -> fp32: $(cat r32.log)"
[[ "$(cat r32.log)" == *"resuming at step 6, precision fp32"* ]] || fail "bf16 checkpoint not resumed in fp32: $(cat r32.log)"
"$train" "${lm[@]}" --steps 8 --precision bf16 --resume fp32.safetensors > r16.log 2>&1 || fail "fp32 -> bf16: $(cat r16.log)"
[[ "$(cat r16.log)" == *"resuming at step 6, precision bf16"* ]] || fail "fp32 checkpoint not resumed in bf16: $(cat r16.log)"
echo "ok: checkpoints resume across precisions"

# 4. Refusals.
set +e
out="$("$train" "${lm[@]}" --steps 1 --precision fp16 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] && [[ "$out" == *"--precision: unknown precision 'fp16'"* ]] || fail "fp16 not refused: $out"
set +e
out="$("$train" "${lm[@]}" --steps 1 --precision tf32 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] && [[ "$out" == *"TF32 GEMMs exist only on the CUDA backend"* ]] || fail "tf32 on the CPU not refused: $out"
echo "ok: unknown and CPU-less precisions are refused"
