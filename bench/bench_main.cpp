// SPDX-License-Identifier: MIT
// main of hseq_bench_cpu: reports the CPU configuration, then runs Google Benchmark.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>

#include "hseq/backend/cpu.hpp"

int main(int argc, char** argv) {
  int const threads = hseq::detail::max_threads();
#if defined(HSEQ_USE_CBLAS)
  char const* gemm = "OpenBLAS CBLAS";
#else
  char const* gemm = "Eigen";
#endif
  std::printf("hseq_bench_cpu: OpenMP threads %d, GEMM %s\n", threads, gemm);
  std::fflush(stdout);
  benchmark::AddCustomContext("hseq_omp_threads", std::to_string(threads));
  benchmark::AddCustomContext("hseq_gemm", gemm);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
