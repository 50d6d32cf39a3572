// SPDX-License-Identifier: MIT
// Raw CPU GEMM throughput, C[M, N] = A[M, K] * B[K, N], through hseq::ops::gemm.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/ops/gemm.hpp"

namespace {

void BM_gemm(benchmark::State& state) {
  std::int64_t const m = state.range(0), k = state.range(1), n = state.range(2);
  std::vector<float> a(std::size_t(m * k)), b(std::size_t(k * n)), c(std::size_t(m * n));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 17) - 8) * 0.01f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = float(int(i % 13) - 6) * 0.01f;

  using HostMat = hseq::ops::Mat<float, hseq::HostSpace>;
  using HostCMat = hseq::ops::Mat<float const, hseq::HostSpace>;
  HostCMat A(a.data(), m, k), B(b.data(), k, n);
  HostMat C(c.data(), m, n);
  hseq::cpu::Context ctx;
  for (auto _ : state) {
    hseq::ops::gemm<float>(ctx, hseq::ops::Trans::kNo, A, hseq::ops::Trans::kNo, B, C);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// Args: M, K, N. Shapes of the projections in a d_model 256..1024 stack with 2048..8192 tokens.
BENCHMARK(BM_gemm)
    ->Args({2048, 256, 1024})
    ->Args({2048, 256, 768})
    ->Args({2048, 1024, 256})
    ->Args({8192, 256, 1024})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
