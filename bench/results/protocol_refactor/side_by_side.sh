#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The model-protocol issue's speed check: BM_train_step of the Transformer LM and the two Hourglass
# reference configurations, 'before' and 'after' binaries alternating in one run (ROUNDS rounds),
# with the OpenBLAS kernels a user's machine picks (this machine's environment forces Haswell).
#   usage: side_by_side.sh <before hseq_bench_cpu> <after hseq_bench_cpu> [rounds, default 2]
set -euo pipefail
before=$1 after=$2 rounds=${3:-2}
filter='BM_train_step<(Lm|Hg|HgAvg)>/4/1024'
date -u
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 -c 'import ctypes, ctypes.util; b = ctypes.CDLL(ctypes.util.find_library("openblas")); b.openblas_get_corename.restype = ctypes.c_char_p; print("openblas_get_corename (no env override):", b.openblas_get_corename().decode())'
for r in $(seq 1 "$rounds"); do
  for which in before after; do
    bin=$before; [ "$which" = after ] && bin=$after
    echo "## round $r: $which ($bin)"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=2 "$bin" --benchmark_filter="$filter" \
      --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>&1
  done
done
