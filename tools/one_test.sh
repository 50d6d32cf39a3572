#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds ONE test file (plus doctest's main) into a standalone binary outside the CMake build and
# runs it: a quick loop while editing one header, and the way tools/mutation_check.sh tests scratch
# copies. Flags mirror the CMake build (Release, -march=native, OpenBLAS CBLAS, OpenMP).
#   usage (from a source tree's root): tools/one_test.sh test/models/test_hourglass.cpp [doctest args]
set -euo pipefail
src="$1"; shift
root=$(pwd)
bins=${HSEQ_ONE_TEST_DIR:-/tmp/hseq_one_test}
out="$bins/$(echo "$root" | tr / _)_$(basename "$src" .cpp)"
mkdir -p "$bins"
# oneDNN (the bf16 GEMMs of hseq::cpu_bf16) when installed, as the CMake build finds it.
dnnl=()
[ -f /usr/include/oneapi/dnnl/dnnl.hpp ] && dnnl=(-DHSEQ_USE_DNNL=1 -ldnnl)
[ -f "$bins/doctest_main.o" ] || g++ -std=c++20 -O2 -c "$root/test/support/doctest_main.cpp" -o "$bins/doctest_main.o"
g++ -std=c++20 -O2 -march=native -Wall -Wextra -Wpedantic -Wno-maybe-uninitialized -fopenmp \
  -DHSEQ_USE_CBLAS=1 -DHSEQ_SOURCE_DIR="\"$root\"" \
  -I"$root/include" -I"$root/test" -I"$root/examples" -I/usr/include/eigen3 \
  -I/usr/include/x86_64-linux-gnu/openblas-openmp \
  "$root/$src" "$bins/doctest_main.o" -o "$out" -lopenblas "${dnnl[@]}"
OMP_WAIT_POLICY=PASSIVE "$out" "$@"
