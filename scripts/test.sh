#!/usr/bin/env bash
# Configure, build and run hseq's tests. Used by CI (.ci/run) without arguments, which runs all
# three stages below in order and stops at the first failure.
#   release   build/ (Release): everything, then `ctest -LE slow`: the test suite, the CUDA
#             code compiled (its tests skip without a GPU, and are then compiled at -O0), the fuzz
#             harnesses' replays.
#   sanitize  build-sanitize/ (GCC, -O0, AddressSanitizer + UndefinedBehaviorSanitizer, no CUDA,
#             no benchmarks, no MPI: Open MPI's own allocations would be reported as leaks; no
#             example programs and no model families in the programs' registry: the toy programs
#             run the same program code with the toy family): the CPU test suite but the tests of
#             that registry (test/examples/) and the finite-difference gradient checks (the double
#             twins of code the other entries run); every sanitizer report fails its entry.
#   fuzz      build-fuzz/ (Clang, libFuzzer + ASan + UBSan): each harness of test/fuzz/ fuzzes
#             for HSEQ_FUZZ_SECONDS (default 20) seconds, starting from its committed seeds.
# usage: scripts/test.sh [--sanitize | --fuzz | --release]   (one stage only)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stages=(release sanitize fuzz)
case "${1:-}" in
  "") ;;
  --release) stages=(release) ;;
  --sanitize) stages=(sanitize) ;;
  --fuzz) stages=(fuzz) ;;
  *) echo "usage: scripts/test.sh [--sanitize | --fuzz | --release]" >&2; exit 2 ;;
esac

bash scripts/setup.sh
jobs="$(nproc)"

# Ninja for a new build tree (scripts/setup.sh installs it); an existing tree keeps the generator
# it was configured with.
generator_for() {
  if [ ! -f "$1/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then echo "-GNinja"; fi
}

for stage in "${stages[@]}"; do
  echo "=== scripts/test.sh: stage $stage ($(date -u +%H:%M:%S))"
  case "$stage" in
    release)
      # hseq_tests_cuda runs only where there is a GPU (elsewhere it exits 77 and is only compiled):
      # without one it is compiled at -O0, the same code checked with less code generation.
      cuda_test_opt=0
      if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then cuda_test_opt=1; fi
      cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "-DHSEQ_CUDA_TEST_OPTIMIZATION=$cuda_test_opt" \
        $(generator_for build)
      cmake --build build -j"$jobs"
      ctest --test-dir build --output-on-failure -LE slow -j"$jobs"
      ;;
    sanitize)
      # -O0: instrumented template code compiles 2.2x faster than at -O1 and runs 1.6x slower
      # (measured on test/nn/test_block_stack.cpp: 17 vs 39 s to compile a test batch, 4.9 vs 3.2 s
      # to run), and the build is most of this stage. The 'slow' sweeps, the CUDA entry (not
      # built), the install test (it builds a consumer without the sanitizer runtime), the
      # compile-time checks (headers, compile_fail: nothing runs) and the benchmarks stay out.
      cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O0 -DNDEBUG" \
        -DHSEQ_TEST_OPTIMIZATION=0 -DHSEQ_SANITIZE=ON -DHSEQ_ENABLE_CUDA=OFF -DHSEQ_BUILD_BENCHMARKS=OFF \
        -DHSEQ_MPI=OFF -DHSEQ_BUILD_EXAMPLES=OFF \
        $(generator_for build-sanitize)
      cmake --build build-sanitize -j"$jobs"
      # detect_leaks: hseq owns every allocation through RAII, so a leak is a finding too.
      ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:check_initialization_order=1" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        ctest --test-dir build-sanitize --output-on-failure -LE "slow|install|headers|compile_fail|gradcheck" -j"$jobs"
      ;;
    fuzz)
      cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DHSEQ_FUZZ=ON \
        -DHSEQ_ENABLE_CUDA=OFF -DHSEQ_BUILD_BENCHMARKS=OFF -DHSEQ_BUILD_EXAMPLES=OFF \
        "-DHSEQ_FUZZ_SECONDS=${HSEQ_FUZZ_SECONDS:-20}" $(generator_for build-fuzz)
      cmake --build build-fuzz -j"$jobs" --target hseq_fuzz
      ctest --test-dir build-fuzz --output-on-failure -L fuzz -j"$jobs"
      ;;
  esac
done
echo "=== scripts/test.sh: all stages passed ($(date -u +%H:%M:%S))"
