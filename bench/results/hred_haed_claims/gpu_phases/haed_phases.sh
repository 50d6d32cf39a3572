#!/usr/bin/env bash
# HAED's two-phase schedules against end-to-end training at equal training time, on the GPU
# (issue 10's last claim at a larger scale than the CPU machine reaches). Run from the repository
# root on the GPU machine: BUDGET=90 bash .gpu/haed_phases.sh; writes $OUT/*.log and $OUT/summary.txt.
set -u
B=${BUDGET:-90}
T=.gpu/examples/hseq-train-cuda
export LD_LIBRARY_PATH=".gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
H=(--model hierarchical --segment fixed8 --encoder mlp --backbone transformer --decoder rnn --cell gru --dim 256 --heads 4
   --layers 4 --decoder-layers 2 --context 1024)
C=(--data .gpu/kjv.txt --batch 32 --seq-len 1024 --lr 2e-3 --sample-bytes 0 --seed 1234 --warmup 30 --steps 0)
E=(--eval-every 0 --eval-windows 256)
run() { local name=$1; shift; echo "== $name: $T $*" >> "$OUT/commands.txt"; "$T" "$@" > "$OUT/$name.log" 2>&1; echo "$name rc=$?"; }
phases() {  # NAME FRACTION SECOND
  local name=$1 f=$2 second=$3 s
  s=$(awk -v b="$B" -v f="$f" 'BEGIN { printf "%.1f", b * f }')
  run "${name}_iem" "${H[@]}" --iem-negatives 256 "${C[@]}" --time-budget "$s" --phases iem --eval-every 0 --eval-windows 1 \
      --out "$OUT/$name.safetensors" --csv "$OUT/$name.csv"
  local n; n=$(sed -n 's/^steps: \([0-9]*\).*/\1/p' "$OUT/${name}_iem.log")
  run "$name" --resume "$OUT/$name.safetensors" "${C[@]}" --time-budget "$B" --phases "iem:$n,$second" "${E[@]}" --csv "$OUT/$name.csv"
  rm -f "$OUT/$name.safetensors"
}
nvidia-smi -L > "$OUT/env.txt"
run full "${H[@]}" "${C[@]}" --time-budget "$B" "${E[@]}" --csv "$OUT/full.csv"
phases iem75_decoder 0.75 decoder
phases iem50_full 0.5 full
{
  echo "budget $B s of training per schedule, batch 32 x 1024, KJV, validation over 256 windows of 1024"
  for n in full iem75_decoder iem50_full; do
    printf '%-16s %s | %s\n' "$n" "$(grep -h '^steps:' "$OUT/$n.log")" "$(grep -h '^validation bpc' "$OUT/$n.log")"
  done
} | tee "$OUT/summary.txt"
