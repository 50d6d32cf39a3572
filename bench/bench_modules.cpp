// SPDX-License-Identifier: MIT
// Forward + backward throughput of Linear, the attention module and the Transformer block on the
// CPU, in the same binary as the raw GEMM benchmark so ratios are measured side by side.
//
// FLOPs are counted analytically (multiply-adds x 2):
//   Linear in -> out over N rows: forward 2 N in out, backward 4 N in out (dW and dX).
//   Attention core per batch element: forward 4 T^2 d, backward 8 T^2 d, causal counts half.
//   Attention module: core + projections q (d x d), kv (d x 2d), out (d x d).
//   Block: attention module + MLP fc1 (d x 4d) and fc2 (4d x d). Element-wise work is not counted.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "hseq/hseq.hpp"

namespace {

using hseq::cpu;
using hseq::Shape;
using hseq::Tensor;
using hseq::Workspace;

double linear_flops(double n, double in, double out) { return 6.0 * n * in * out; }
double attention_core_flops(double b, double t, double d, bool causal) { return (causal ? 0.5 : 1.0) * 12.0 * b * t * t * d; }

template <class T>
void fill_random(Tensor<T, cpu>& t, std::uint64_t seed) {
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = T(0.5 * hseq::philox_normal(seed, 7, std::uint64_t(i)));
}

// Args: rows N, in, out.
void BM_linear_fwd_bwd(benchmark::State& state) {
  std::int64_t n = state.range(0), in = state.range(1), out = state.range(2);
  cpu::Context ctx;
  hseq::nn::Linear<cpu, float> m({.in = in, .out = out});
  hseq::nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  Tensor<float, cpu> x(Shape{n, in}), y(Shape{n, out}), dy(Shape{n, out}), dx(Shape{n, in});
  fill_random(x, 1);
  fill_random(dy, 2);
  Workspace<cpu> ws(m.forward_workspace(n) + m.backward_workspace(n));
  for (auto _ : state) {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, dy.cview(), dx.view(), a);
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = benchmark::Counter(linear_flops(double(n), double(in), double(out)),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

// Args: B, T, d, heads (causal self-attention with its projections).
void BM_attention_fwd_bwd(benchmark::State& state) {
  std::int64_t b = state.range(0), t = state.range(1), d = state.range(2), h = state.range(3);
  cpu::Context ctx;
  hseq::nn::MultiHeadAttention<cpu, float> m({.dim = d, .heads = h});
  hseq::nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  Tensor<float, cpu> x(Shape{b, t, d}), y(Shape{b, t, d}), dy(Shape{b, t, d}), dx(Shape{b, t, d});
  fill_random(x, 1);
  fill_random(dy, 2);
  decltype(m)::Dims dims{b, t, t, 0};
  Workspace<cpu> ws(m.forward_workspace(dims) + m.backward_workspace(dims));
  for (auto _ : state) {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, dy.cview(), dx.view(), a);
    benchmark::ClobberMemory();
  }
  double n = double(b * t), dd = double(d);
  double flops = linear_flops(n, dd, 4 * dd) + attention_core_flops(double(b), double(t), dd, true);
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(n, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: B, T, d, heads (pre-LN causal block, MLP hidden 4d).
void BM_block_fwd_bwd(benchmark::State& state) {
  std::int64_t b = state.range(0), t = state.range(1), d = state.range(2), h = state.range(3);
  cpu::Context ctx;
  hseq::nn::TransformerBlock<cpu, float> m({.dim = d, .heads = h});
  hseq::nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  Tensor<float, cpu> x(Shape{b, t, d}), y(Shape{b, t, d}), dy(Shape{b, t, d}), dx(Shape{b, t, d});
  fill_random(x, 1);
  fill_random(dy, 2);
  Workspace<cpu> ws(m.forward_workspace(b, t) + m.backward_workspace(b, t));
  for (auto _ : state) {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, dy.cview(), dx.view(), a);
    benchmark::ClobberMemory();
  }
  double n = double(b * t), dd = double(d);
  double flops = linear_flops(n, dd, 12 * dd) + attention_core_flops(double(b), double(t), dd, true);
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(n, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_linear_fwd_bwd)->Args({2048, 256, 1024})->Args({2048, 1024, 256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_attention_fwd_bwd)->Args({8, 256, 256, 4})->Args({8, 1024, 256, 4})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_block_fwd_bwd)->Args({8, 256, 256, 4})->Args({8, 1024, 256, 4})->Unit(benchmark::kMillisecond)->UseRealTime();

// Tiny shapes for the ctest smoke run (names contain "small").
void BM_small_block_fwd_bwd(benchmark::State& state) { BM_block_fwd_bwd(state); }
BENCHMARK(BM_small_block_fwd_bwd)->Args({2, 32, 64, 4})->Unit(benchmark::kMicrosecond);
void BM_small_attention_fwd_bwd(benchmark::State& state) { BM_attention_fwd_bwd(state); }
BENCHMARK(BM_small_attention_fwd_bwd)->Args({2, 32, 64, 4})->Unit(benchmark::kMicrosecond);

}  // namespace
