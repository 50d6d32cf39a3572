#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest examples.mpi_train: `mpirun -np 2 hseq-train` (docs/distributed.md).
#   1. Every model family trains on 2 processes: "on each of 2 processes", one validation bpc,
#      rank 0 alone prints (one "steps:" line) and writes the checkpoint.
#   2. The loss sequence of 2 processes with batch 2 (the CSV log) equals, to the last digit printed,
#      that of one process with batch 2 and --accum 2 (the same rows, summed in the same order).
#   3. The 2-process checkpoint resumes under 1 process (--accum 2) and continues that sequence.
#   4. Processes given different flags stop, all of them, with an error naming the disagreement.
#   usage: run_mpi_train.sh HSEQ_TRAIN MPIEXEC DATA_FILE WORK_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/families.sh"  # for_each_family (before the cd below)
train="$1" mpiexec="$2" data="$3" work="$4"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
# Open MPI: more processes than cores, and as root in containers (other MPIs ignore these).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi2=("$mpiexec" -n 2)
base=(--data "$data" --dim 32 --heads 2 --layers 1 --batch 2 --seed 7 --warmup 2 --eval-every 0 --eval-windows 2
      --sample-bytes 0 --threads 1)
common=("${base[@]}" --steps 6)

# 1. Every family.
family() {
  local name="$1"; shift
  out="$("${mpi2[@]}" "$train" --model "$@" "${common[@]}" --out "$work/$name.safetensors" 2>&1)" \
    || fail "$name on 2 processes: $out"
  [[ "$out" == *"on each of 2 processes"* ]] || fail "$name: no '2 processes' line: $out"
  [ "$(grep -c '^steps: ' <<< "$out")" -eq 1 ] || fail "$name: not one 'steps:' line (rank 0 alone prints): $out"
  [ -f "$work/$name.safetensors" ] || fail "$name: no checkpoint"
  echo "ok: $name on 2 processes"
}
for_each_family family

# 2. and 3. The loss sequences, from the CSV logs (step and loss columns).
losses() { awk -F, 'NR > 1 && $2 != "nan" { print $1 "," $2 }' "$1"; }
lm=(--model transformer "${base[@]}" --context 32)
"${mpi2[@]}" "$train" "${lm[@]}" --steps 8 --csv two.csv --out two.safetensors > two.log 2>&1 || fail "2 processes: $(cat two.log)"
"$train" "${lm[@]}" --steps 8 --accum 2 --csv one.csv > one.log 2>&1 || fail "1 process, --accum 2: $(cat one.log)"
[ "$(losses two.csv | wc -l)" -eq 8 ] || fail "the 2-process log has not 8 steps: $(cat two.csv)"
[ "$(losses two.csv)" = "$(losses one.csv)" ] || fail "2 processes vs 1 process with --accum 2:
$(paste -d' ' <(losses two.csv) <(losses one.csv))"
echo "ok: 2 processes x batch 2 = 1 process x batch 2 x --accum 2, step for step"
# A 2-process checkpoint after 4 steps, continued to 8 by 2 processes and by 1 process with --accum 2.
"${mpi2[@]}" "$train" "${lm[@]}" --steps 4 --out half.safetensors > half.log 2>&1 || fail "4 steps: $(cat half.log)"
"${mpi2[@]}" "$train" "${lm[@]}" --steps 8 --resume half.safetensors --csv r2.csv > r2.log 2>&1 || fail "resumed by 2: $(cat r2.log)"
"$train" "${lm[@]}" --steps 8 --accum 2 --resume half.safetensors --csv r1.csv > r1.log 2>&1 || fail "resumed by 1: $(cat r1.log)"
[[ "$(cat r1.log)" == *"resuming at step 4"* ]] || fail "not resumed at step 4: $(cat r1.log)"
[ "$(losses r2.csv | wc -l)" -eq 4 ] || fail "the resumed log has not 4 steps: $(cat r2.csv)"
[ "$(losses r1.csv)" = "$(losses r2.csv)" ] || fail "resumed by 1 process vs by 2:
$(paste -d' ' <(losses r1.csv) <(losses r2.csv))"
echo "ok: a 2-process checkpoint continues alike under 1 process (--accum 2) and 2"

# 4. Ranks that disagree: rank 1 is given another learning rate.
set +e
out="$("${mpi2[@]}" bash -c 'r=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}; exec "$0" "$@" --lr "$([ "$r" = 1 ] && echo 0.01 || echo 0.001)"' \
       "$train" "${lm[@]}" --steps 8 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "processes with different --lr trained: $out"
[[ "$out" == *"the processes disagree on the training configuration"*"rank 1's differs from rank 0's"* ]] \
  || fail "no disagreement message: $out"
[[ "$out" != *"steps: "* ]] || fail "trained before refusing: $out"
echo "ok: different flags on the processes are refused"
