#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The CPU precision measurements of docs/performance.md ("fp32 and bf16 on the CPU", issue 13), in
# one run, with the kernels a user's machine picks (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset):
#   1. the raw GEMM rate (hseq_bench_cpu BM_gemm) at the shapes of the reference model;
#   2. hseq_step_breakdown of the reference configuration in fp32 and in bf16;
#   3. bench/peer_pytorch_lm.py variants (hseq fp32 and bf16; PyTorch eager, torch.compile and bf16
#      autocast) at the reference configuration (d 256, 4 heads, 6 layers, T 256, batch 16) and at
#      hseq-train's default one (4 layers, T 128).
# Everything goes to stdout and to OUT/output.txt.
#   usage: bench/cpu_precision.sh [BUILD_DIR] [OUT_DIR] [THREADS]    (needs: pip install torch)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}" out="${2:-$root/bench/results/cpu_precision}" threads="${3:-2}"
data="${HSEQ_BENCH_DATA:-$root/../shared/data/tinyshakespeare.txt}"
steps="${HSEQ_BENCH_STEPS:-30}"
mkdir -p "$out"
source "$root/bench/common.sh"
native=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads")
{
  bench_env_lines "$root" "$build/bench/hseq_bench_cpu" "$threads"
  echo "data: $data"
  echo
  echo "== 1. raw GEMM through ops::gemm: fp32 (BM_gemm) and bf16 math (BM_gemm_bf16)"
  echo "\$ hseq_bench_cpu --benchmark_filter='BM_gemm' --benchmark_min_time=1"
  "${native[@]}" "$build/bench/hseq_bench_cpu" --benchmark_filter='BM_gemm' --benchmark_min_time=1 2>&1
  for p in fp32 bf16; do
    echo
    echo "== 2. step breakdown, $p"
    echo "\$ hseq_step_breakdown --precision $p"
    "${native[@]}" "$build/bench/hseq_step_breakdown" --precision "$p" 2>&1
  done
  echo
  echo "== 3a. peers, reference configuration"
  "${native[@]}" python3 "$root/bench/peer_pytorch_lm.py" variants --hseq-train "$build/examples/hseq-train" \
    --data "$data" --threads "$threads" --steps "$steps" 2>&1
  echo
  echo "== 3b. peers, hseq-train's default configuration (4 layers, T 128)"
  "${native[@]}" python3 "$root/bench/peer_pytorch_lm.py" variants --hseq-train "$build/examples/hseq-train" \
    --data "$data" --threads "$threads" --steps "$((2 * steps))" --layers 4 --seq-len 128 2>&1
} | tee "$out/output.txt"
