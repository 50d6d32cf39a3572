// SPDX-License-Identifier: MIT
// Training-step throughput (forward + backward + AdamW) of Hourglass "2@1 4@4 2@1" against the
// plain Transformer LM of the same width and the same 8 layers, at long sequences, in one binary
// so the ratio is measured side by side. Also cached generation speed of both. The same three
// models, built from hseq-train's flags and with their FLOP counts, are rows of the family table
// (bench_families.cpp: transformer/d256_L8, hourglass/d256_attn, hourglass/d256_avg); these
// compile-time-typed benchmarks stay because the committed results compare against them.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "hseq/hseq.hpp"
#include "hseq/models/hourglass.hpp"

namespace {

using hseq::cpu;
using hseq::Shape;
using hseq::Tensor;
using Lm = hseq::models::TransformerLm<cpu, float>;
using Hg = hseq::models::Hourglass<cpu, float, hseq::hier::Hierarchy<2, 2, hseq::hier::Level<4, 4>>,
                                   hseq::hier::AttentionPool, hseq::hier::AttentionUp>;
using HgAvg = hseq::models::Hourglass<cpu, float, hseq::hier::Hierarchy<2, 2, hseq::hier::Level<4, 4>>,
                                      hseq::hier::AvgPool, hseq::hier::Repeat>;

template <class M>
typename M::Config config(std::int64_t d, std::int64_t t);
template <>
Lm::Config config<Lm>(std::int64_t d, std::int64_t t) {
  return {.vocab = 256, .dim = d, .heads = 4, .layers = 8, .context = t};
}
template <>
Hg::Config config<Hg>(std::int64_t d, std::int64_t t) {
  return {.vocab = 256, .dim = d, .heads = 4, .context = t};
}
template <>
HgAvg::Config config<HgAvg>(std::int64_t d, std::int64_t t) {
  return {.vocab = 256, .dim = d, .heads = 4, .context = t};
}

// Args: batch, T, d.
template <class M>
void BM_train_step(benchmark::State& state) {
  std::int64_t b = state.range(0), t = state.range(1), d = state.range(2);
  cpu::Context ctx;
  M model(config<M>(d, t));
  hseq::nn::ParamStore<cpu, float> ps(model);
  ps.init(ctx, 1);
  hseq::train::AdamW<cpu, float> opt(ctx, ps, {});
  Tensor<std::int32_t, cpu> ids(Shape{b, t}), targets(Shape{b, t});
  hseq::Rng rng(3);
  for (std::int64_t i = 0; i < ids.numel(); ++i) {
    ids.data()[i] = std::int32_t(rng.below(256));
    targets.data()[i] = std::int32_t(rng.below(256));
  }
  hseq::Workspace<cpu> ws(model.forward_workspace(b, t) + model.backward_workspace(b, t));
  typename M::Trace tr;
  for (auto _ : state) {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    model.forward(ctx, ids.cview(), targets.cview(), a, tr);
    model.backward(ctx, tr, a);
    opt.step(ctx);
  }
  state.counters["tokens/s"] = benchmark::Counter(double(b * t), benchmark::Counter::kIsIterationInvariantRate);
}

// Cached generation of `bytes` bytes from a one-byte prompt (greedy). Args: bytes, d.
template <class M>
void BM_generate(benchmark::State& state) {
  std::int64_t n = state.range(0), d = state.range(1);
  cpu::Context ctx;
  M model(config<M>(d, 2048));
  hseq::nn::ParamStore<cpu, float> ps(model);
  ps.init(ctx, 1);
  hseq::models::GenerateConfig g;
  g.max_bytes = n;
  g.sampler.temperature = 0;
  for (auto _ : state) benchmark::DoNotOptimize(hseq::models::generate<cpu, float>(ctx, model, "\n", g));
  state.counters["tokens/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_TEMPLATE(BM_train_step, Lm)->Args({4, 1024, 256})->Args({2, 2048, 256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_train_step, Hg)->Args({4, 1024, 256})->Args({2, 2048, 256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_train_step, HgAvg)->Args({4, 1024, 256})->Args({2, 2048, 256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_generate, Lm)->Args({2000, 256})->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_TEMPLATE(BM_generate, Hg)->Args({2000, 256})->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

// Tiny shapes for the ctest smoke run.
void BM_small_hourglass_train_step(benchmark::State& state) { BM_train_step<Hg>(state); }
BENCHMARK(BM_small_hourglass_train_step)->Args({1, 64, 32})->Unit(benchmark::kMillisecond);

}  // namespace
