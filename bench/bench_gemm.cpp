// SPDX-License-Identifier: MIT
// Raw CPU GEMM throughput, C[M, N] = A[M, K] * B[K, N], through hseq::ops::gemm: fp32 (BM_gemm,
// OpenBLAS or Eigen) and bf16 math (BM_gemm_bf16, hseq::cpu_bf16: oneDNN or the emulation, named
// in the label with the oneDNN implementation that ran), and the batch-invariant kernel of
// cpu::Context::set_batch_invariant (BM_gemm_invariant, ops/gemm_invariant.hpp).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include <string>

#include "hseq/backend/cpu.hpp"
#include "hseq/backend/cpu_bf16.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/ops/gemm.hpp"

namespace {

template <class Ctx>
void gemm_case(benchmark::State& state, bool invariant = false) {
  std::int64_t const m = state.range(0), k = state.range(1), n = state.range(2);
  std::vector<float> a(std::size_t(m * k)), b(std::size_t(k * n)), c(std::size_t(m * n));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 17) - 8) * 0.01f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = float(int(i % 13) - 6) * 0.01f;

  using HostMat = hseq::ops::Mat<float, hseq::HostSpace>;
  using HostCMat = hseq::ops::Mat<float const, hseq::HostSpace>;
  HostCMat A(a.data(), m, k), B(b.data(), k, n);
  HostMat C(c.data(), m, n);
  Ctx ctx;
  ctx.set_batch_invariant(invariant);
  for (auto _ : state) {
    hseq::ops::gemm<float>(ctx, hseq::ops::Trans::kNo, A, hseq::ops::Trans::kNo, B, C);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k),
                                                benchmark::Counter::kIsIterationInvariantRate);
  if (ctx.gemm_math() == hseq::GemmMath::kBf16) {
    std::string label = hseq::cpu_bf16_path_name(hseq::detail::bf16_gemm_of(ctx).path());
#if defined(HSEQ_USE_DNNL)
    if (*hseq::detail::bf16_gemm_of(ctx).last_impl() != '\0') label += std::string(" ") + hseq::detail::bf16_gemm_of(ctx).last_impl();
#endif
    state.SetLabel(label);
  }
}

void BM_gemm(benchmark::State& state) { gemm_case<hseq::cpu::Context>(state); }
void BM_gemm_bf16(benchmark::State& state) { gemm_case<hseq::cpu_bf16::Context>(state); }
void BM_gemm_invariant(benchmark::State& state) { gemm_case<hseq::cpu::Context>(state, true); }

// Args: M, K, N. Shapes of the projections in a d_model 256..1024 stack with 2048..8192 tokens;
// 4096 rows are the reference model's batch (16 x 256): its q/out, kv, MLP up and down.
#define HSEQ_GEMM_SHAPES(bm)        \
  BENCHMARK(bm)                     \
      ->Args({2048, 256, 1024})     \
      ->Args({2048, 256, 768})      \
      ->Args({2048, 1024, 256})     \
      ->Args({8192, 256, 1024})     \
      ->Args({4096, 256, 256})      \
      ->Args({4096, 256, 512})      \
      ->Args({4096, 256, 1024})     \
      ->Args({4096, 1024, 256})     \
      ->Unit(benchmark::kMillisecond) \
      ->UseRealTime()
HSEQ_GEMM_SHAPES(BM_gemm);
HSEQ_GEMM_SHAPES(BM_gemm_bf16);
HSEQ_GEMM_SHAPES(BM_gemm_invariant);
#undef HSEQ_GEMM_SHAPES

}  // namespace
