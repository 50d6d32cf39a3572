// SPDX-License-Identifier: MIT
// CUDA nn/attention.hpp: MultiHeadAttention (self- and cross-attention, a memory prefix, rate-aware masks) on the GPU
// against the CPU in float and GPU finite differences in double, workspace plan == use (the case harness of
// test/cuda/harness.cuh); cached attention equals the full forward.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/attention.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using nn::AttentionMask;

namespace {

/// Self-attention: y = Attn(x, x); backward sums the query and key/value paths into dx.
struct SelfAttentionCase : MmCase {
  std::int64_t bsz, t, dim, heads;
  AttentionMask mask;
  SelfAttentionCase(std::int64_t b, std::int64_t tt, std::int64_t d, std::int64_t h, AttentionMask m)
      : bsz(b), t(tt), dim(d), heads(h), mask(m) {
    attn_head = d / h;
    name = "MultiHeadAttention self, " + mm_str(m) + ", T " + std::to_string(tt) + ", heads " + std::to_string(h);
    add_in("x", Shape{b, tt, d});
    add_out(Shape{b, tt, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::MultiHeadAttention<B, T>;
    return std::make_unique<M>(typename M::Config{.dim = dim, .heads = heads, .mask = mask});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    typename M::Dims dims{bsz, t, t, 0};
    return m.forward_workspace(dims) + m.backward_workspace(dims);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

/// Cross-attention: queries xq [B, Tq, d], keys/values [mem; xkv] with Tk != Tq, optional memory.
struct CrossAttentionCase : MmCase {
  std::int64_t bsz, tq, tk, tm, dim, heads;
  AttentionMask mask;
  CrossAttentionCase(std::int64_t b, std::int64_t q, std::int64_t k, std::int64_t m_, std::int64_t d, std::int64_t h,
                     AttentionMask m)
      : bsz(b), tq(q), tk(k), tm(m_), dim(d), heads(h), mask(m) {
    attn_head = d / h;
    name = "MultiHeadAttention cross, " + mm_str(m) + ", Tq " + std::to_string(q) + ", Tk " + std::to_string(k) +
           ", memory " + std::to_string(m_);
    add_in("xq", Shape{b, q, d});
    add_in("xkv", Shape{b, k, d});
    if (m_ > 0) add_in("mem", Shape{b, m_, d});
    add_out(Shape{b, q, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::MultiHeadAttention<B, T>;
    return std::make_unique<M>(typename M::Config{.dim = dim, .heads = heads, .mask = mask});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    typename M::Dims dims{bsz, tq, tk, tm};
    return m.forward_workspace(dims) + m.backward_workspace(dims, /*shared_dx=*/false);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    View<T const, S> mem = tm > 0 ? io.in[2] : View<T const, S>{};
    auto s = m.forward(ctx, io.in[0], io.in[1], mem, io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], io.din[1], tm > 0 ? io.din[2] : View<T, S>{}, a);
  }
};

/// Full causal self-attention of x [B, T, d], and the same rows from forward_step over a key/value
/// cache with spare capacity: a prefill of 5 positions, then single positions and one chunk of 3.
/// On the GPU, float head sizes 17..64 take the tensor-core kernels, others the simple ones.
template <class B, class T>
std::pair<std::vector<T>, std::vector<T>> mm_attention_steps(std::uint64_t seed, std::int64_t t, std::int64_t d,
                                                             std::int64_t heads) {
  using M = nn::MultiHeadAttention<B, T>;
  typename B::Context ctx;
  std::int64_t const bsz = 2, cap = t + 3;
  M m({.dim = d, .heads = heads});
  nn::ParamStore<B, T> ps(ctx, m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.4);
  auto xh = mm_random<T>(bsz * t * d, seed + 1);
  auto x = mm_to_backend<B>(ctx, xh, Shape{bsz, t, d});
  Tensor<T, B> y(Shape{bsz, t, d});
  typename M::Dims dims{bsz, t, t, 0};
  Workspace<B> ws(m.forward_workspace(dims));
  {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
  }
  auto full = mm_to_host<B, T>(ctx, y.cview());
  auto stepped = mm_forward_steps<B, T>(ctx, m, xh, bsz, t, d, cap, 5,
                                        [](std::int64_t pos) { return pos == 8 ? std::int64_t(3) : std::int64_t(1); });
  if constexpr (std::is_same_v<B, Gpu>) mm_check_attention_family<T>(ctx, d / heads, 2);
  return {full, stepped};
}

/// Unmasked cross-attention of xq [B, 5, d] over xkv [B, 11, d] by forward, and by append_kv (two
/// appends, the second at row 6) into a cache of capacity 15 followed by attend_cached.
template <class B, class T>
std::pair<std::vector<T>, std::vector<T>> mm_attend_cached(std::uint64_t seed, std::int64_t d, std::int64_t heads) {
  using M = nn::MultiHeadAttention<B, T>;
  typename B::Context ctx;
  std::int64_t const bsz = 2, nq = 5, tk = 11, split = 6, cap = tk + 4;
  M m({.dim = d, .heads = heads, .mask = AttentionMask::none()});
  nn::ParamStore<B, T> ps(ctx, m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.4);
  auto qh = mm_random<T>(bsz * nq * d, seed + 1), kh = mm_random<T>(bsz * tk * d, seed + 2);
  auto xq = mm_to_backend<B>(ctx, qh, Shape{bsz, nq, d});
  auto xkv = mm_to_backend<B>(ctx, kh, Shape{bsz, tk, d});
  Tensor<T, B> y(Shape{bsz, nq, d});
  typename M::Dims dims{bsz, nq, tk, 0};
  Workspace<B> ws(m.forward_workspace(dims));
  {
    auto a = ws.arena();
    m.forward(ctx, xq.cview(), xkv.cview(), View<T const, typename B::Space>{}, y.view(), a);
  }
  auto full = mm_to_host<B, T>(ctx, y.cview());
  auto rows = [&](std::int64_t from, std::int64_t to) {
    std::vector<T> v;
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = from * d; i < to * d; ++i) v.push_back(kh[std::size_t(b * tk * d + i)]);
    return mm_to_backend<B>(ctx, v, Shape{bsz, to - from, d});
  };
  auto part1 = rows(0, split), part2 = rows(split, tk);
  Tensor<T, B> cache(Shape{bsz, cap, 2 * d});
  std::size_t plan = std::max(m.cached_workspace(bsz, split, tk), m.cached_workspace(bsz, nq, tk));
  Workspace<B> cws(plan);
  {
    auto a = cws.arena();
    m.append_kv(ctx, part1.cview(), cache.view(), 0, a);
    m.append_kv(ctx, part2.cview(), cache.view(), split, a);
    CHECK(a.high_water() <= m.cached_workspace(bsz, split, tk));
  }
  Tensor<T, B> yc(Shape{bsz, nq, d});
  {
    auto a = cws.arena();
    m.attend_cached(ctx, xq.cview(), cache.view(), tk, yc.view(), a);
    CHECK(a.high_water() <= m.cached_workspace(bsz, nq, tk));
  }
  if constexpr (std::is_same_v<B, Gpu>) mm_check_attention_family<T>(ctx, d / heads, 2);
  return {full, mm_to_host<B, T>(ctx, yc.cview())};
}

}  // namespace

TEST_CASE("cuda modules: MultiHeadAttention self-attention, causal and unmasked (gradcheck)") {
  for (auto mask : {AttentionMask::causal(), AttentionMask::none()}) {
    // Head size 8 (the simple one-thread-per-row kernels) ...
    mm_both(SelfAttentionCase(2, 37, 32, 4, mask), SelfAttentionCase(2, 5, 8, 2, mask), 5);
    // ... and the float head sizes of the tensor-core kernels (17..64): 32 over 70 positions
    // (two 64-row tiles), 64, and 24 (padded inside the kernel). Double runs the simple kernels
    // compiled for head size 32.
    mm_compare(SelfAttentionCase(2, 70, 64, 2, mask), 30);
    mm_compare(SelfAttentionCase(2, 45, 64, 1, mask), 31);
    mm_compare(SelfAttentionCase(1, 33, 48, 2, mask), 32);
    mm_gradcheck(SelfAttentionCase(2, 5, 32, 1, mask), 33, 16);
  }
}

TEST_CASE("cuda modules: MultiHeadAttention cross-attention with Tk != Tq and rate-aware masks (gradcheck)") {
  // Upsampling-style: full-rate queries see short keys j <= floor(p / 4).
  mm_both(CrossAttentionCase(2, 24, 6, 0, 32, 4, AttentionMask::rates(1, 0, 4, 0)),
          CrossAttentionCase(2, 8, 2, 0, 6, 2, AttentionMask::rates(1, 0, 4, 0)), 6);
  // Pooling-style: short queries see shifted full-rate keys p <= 3 i + 2.
  mm_both(CrossAttentionCase(2, 7, 21, 0, 32, 4, AttentionMask::rates(3, 2, 1, 0)),
          CrossAttentionCase(2, 3, 9, 0, 6, 2, AttentionMask::rates(3, 2, 1, 0)), 7);
  // Unmasked.
  mm_both(CrossAttentionCase(2, 10, 14, 0, 32, 4, AttentionMask::none()),
          CrossAttentionCase(2, 4, 6, 0, 6, 2, AttentionMask::none()), 8);
  // Head size 32 (the tensor-core float kernels), with 70 full-rate rows on one side.
  mm_compare(CrossAttentionCase(2, 70, 18, 0, 64, 2, AttentionMask::rates(1, 0, 4, 0)), 34);
  mm_compare(CrossAttentionCase(2, 18, 70, 0, 64, 2, AttentionMask::rates(4, 3, 1, 0)), 35);
  mm_compare(CrossAttentionCase(2, 9, 23, 0, 64, 2, AttentionMask::none()), 36);
}

TEST_CASE("cuda modules: MultiHeadAttention with a memory prefix (input, memory and parameters, gradcheck)") {
  mm_both(CrossAttentionCase(2, 12, 12, 5, 32, 4, AttentionMask::causal()),
          CrossAttentionCase(2, 4, 4, 3, 6, 2, AttentionMask::causal()), 9);
  mm_both(CrossAttentionCase(2, 7, 9, 4, 32, 4, AttentionMask::none()),
          CrossAttentionCase(2, 3, 5, 2, 6, 2, AttentionMask::none()), 10);
  mm_compare(CrossAttentionCase(2, 12, 12, 5, 64, 2, AttentionMask::causal()), 37);  // head size 32
}

TEST_CASE("cuda modules: MultiHeadAttention forward_step with a key/value cache equals the full causal forward") {
  // head size 4 (simple kernels); head size 32 over 70 positions (tensor-core float kernels, two 64-row tiles)
  struct Size {
    std::int64_t t, d, heads;
  };
  for (Size z : {Size{19, 16, 4}, Size{70, 64, 2}}) {
    CAPTURE(z.t);
    CAPTURE(z.d);
    CAPTURE(z.heads);
    mm_check_cached([&] { return mm_attention_steps<Gpu, double>(12, z.t, z.d, z.heads); },
                    [&] { return mm_attention_steps<Gpu, float>(12, z.t, z.d, z.heads); },
                    [&] { return mm_attention_steps<cpu, float>(12, z.t, z.d, z.heads); });
  }
}

TEST_CASE("cuda modules: MultiHeadAttention append_kv + attend_cached equals the unmasked cross-attention forward") {
  for (std::int64_t heads : {4, 1}) {  // head sizes 4 and 16 (simple kernels) ...
    CAPTURE(heads);
    mm_check_cached([&] { return mm_attend_cached<Gpu, double>(13, 16, heads); },
                    [&] { return mm_attend_cached<Gpu, float>(13, 16, heads); },
                    [&] { return mm_attend_cached<cpu, float>(13, 16, heads); });
  }
  for (std::int64_t heads : {2, 1}) {  // ... and 32 and 64 (tensor-core float kernels)
    CAPTURE(heads);
    mm_check_cached([&] { return mm_attend_cached<Gpu, double>(13, 64, heads); },
                    [&] { return mm_attend_cached<Gpu, float>(13, 64, heads); },
                    [&] { return mm_attend_cached<cpu, float>(13, 64, heads); });
  }
}

}  // namespace HSEQ_TEST_UNIT
