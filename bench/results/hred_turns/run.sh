#!/usr/bin/env bash
# HRED on tinyshakespeare speaker turns vs the Transformer LM, equal training time (issue 10, deliverable 10 bullet 4).
set -euo pipefail
B=/work/main/build/examples; D=/work/shared/data/tinyshakespeare.txt; OUT=/work/main/bench/results/hred_turns; mkdir -p $OUT
BUDGET=${BUDGET:-150}
common="--data $D --threads 2 --batch 8 --seq-len 1024 --lr 2e-3 --warmup 30 --sample-bytes 0 --seed 1234 --eval-every 0 --eval-windows 64"
hred="--model hierarchical --segment turn --encoder rnn --backbone rnn --decoder rnn --cell gru --dim 256 --layers 3 --decoder-layers 2 --context 1024"
lm="--model transformer --dim 256 --heads 4 --layers ${LM_LAYERS:-4} --context 1024"
{
echo "date: $(date -u '+%F %T') UTC; git: $(git -C /work/main rev-parse --short HEAD); cpu: $(nproc) cores"
python3 -c "import ctypes;l=ctypes.CDLL('libopenblas.so.0');l.openblas_get_corename.restype=ctypes.c_char_p;print('openblas_get_corename():',l.openblas_get_corename().decode())"
echo "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE; budget $BUDGET s per model"
for name in hred lm; do
  args=${!name}
  echo "== $name: hseq-train $args $common --steps 0 --time-budget $BUDGET"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=2 $B/hseq-train $args $common --steps 0 --time-budget $BUDGET --csv $OUT/$name.csv 2>&1 | grep -v "^step [0-9]* |" 
done
} | tee $OUT/run.txt
