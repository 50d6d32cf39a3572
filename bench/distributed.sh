#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Data-parallel scaling on one machine (docs/distributed.md): hseq-train with one process on every
# core against `mpirun -n 2` with the cores split between the processes, at the same global batch
# (2 x 8 = 16 sequences of 256), for the reference configuration (d 256, 6 layers, T 256) and the
# default hseq-train configuration (d 256, 4 layers, T 128); and the gradient all-reduce alone
# (hseq_bench_allreduce: comm::Mpi against MPI_Allreduce) on buffers of both models' sizes.
# The processes share the machine's two cores, so this measures the cost of the parallel
# machinery (sharding, the all-reduce, the synchronisation), not a speed-up.
#   usage: bench/distributed.sh BUILD_DIR OUT_DIR [steps=30]
set -euo pipefail
build="$1" out="$2" steps="${3:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/bench/common.sh"
train="$build/examples/hseq-train"
data="$root/../shared/data/tinyshakespeare.txt"
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cores="$(getconf _NPROCESSORS_ONLN)"
{
  bench_env_lines "$root" "$train" "$cores"
  echo "mpi: $(mpirun --version 2>/dev/null | head -1)"
  echo "command: bench/distributed.sh $build $out $steps"
} > "$out/environment.txt"

run() {  # run NAME PROCESSES BATCH THREADS MODEL_FLAGS...
  local name="$1" procs="$2" batch="$3" threads="$4"; shift 4
  local launch=()
  [ "$procs" -gt 1 ] && launch=(mpirun -n "$procs" --bind-to none)
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" \
    "${launch[@]}" "$train" --data "$data" "$@" --batch "$batch" --steps "$steps" --warmup 5 --eval-every 0 \
    --eval-windows 4 --sample-bytes 0 --threads "$threads" > "$out/$name.log" 2>&1
  local tps rss
  tps="$(awk '/throughput:/ { for (i = 1; i <= NF; ++i) if ($i == "throughput:") print $(i + 1) }' "$out/$name.log")"
  echo "$name processes=$procs batch_per_process=$batch threads_per_process=$threads tokens_per_s=$tps"
}
reference=(--model transformer --dim 256 --layers 6 --heads 4 --context 256)
default=(--model transformer)
{
  run reference_1x16 1 16 "$cores" "${reference[@]}"
  run reference_2x8 2 8 $((cores / 2)) "${reference[@]}"
  run default_1x16 1 16 "$cores" "${default[@]}"
  run default_2x8 2 8 $((cores / 2)) "${default[@]}"
  echo "parameters: reference $(awk '/^parameters:/ { print $2 }' "$out/reference_1x16.log"), default $(awk '/^parameters:/ { print $2 }' "$out/default_1x16.log")"
} | tee "$out/scaling.txt"
for name in reference default; do
  n="$(awk '/^parameters:/ { print $2 }' "$out/${name}_1x16.log")"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 mpirun -n 2 --bind-to none \
    "$build/bench/hseq_bench_allreduce" "$n" 20 | tee "$out/allreduce_$name.txt"
done
