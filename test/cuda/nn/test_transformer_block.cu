// SPDX-License-Identifier: MIT
// CUDA nn/transformer_block.hpp: TransformerBlock (with and without a memory prefix) on the GPU against the CPU in
// float and GPU finite differences in double, workspace plan == use (the case harness of test/cuda/harness.cuh); cached
// attention equals the full forward.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using nn::AttentionMask;

namespace {

struct BlockCase : MmCase {
  std::int64_t bsz, t, tm, dim, heads, hidden;
  AttentionMask mask;
  double attn_dropout = 0, resid_dropout = 0, ff_dropout = 0;  // the Config's rates
  nn::DropoutStream drop;                                      // forward's stream (inactive: none)
  BlockCase(std::int64_t b, std::int64_t tt, std::int64_t m_, std::int64_t d, std::int64_t h, std::int64_t hid,
            AttentionMask m)
      : bsz(b), t(tt), tm(m_), dim(d), heads(h), hidden(hid), mask(m) {
    attn_head = d / h;
    name = "TransformerBlock, " + mm_str(m) + ", T " + std::to_string(tt) + ", memory " + std::to_string(m_);
    add_in("x", Shape{b, tt, d});
    if (m_ > 0) add_in("mem", Shape{b, m_, d});
    add_out(Shape{b, tt, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::TransformerBlock<B, T>;
    return std::make_unique<M>(typename M::Config{.dim = dim,
                                                  .heads = heads,
                                                  .mlp_hidden = hidden,
                                                  .mask = mask,
                                                  .attn_dropout = attn_dropout,
                                                  .resid_dropout = resid_dropout,
                                                  .ff_dropout = ff_dropout});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, t, tm) + m.backward_workspace(bsz, t, tm);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    View<T const, S> mem = tm > 0 ? io.in[1] : View<T const, S>{};
    auto s = m.forward(ctx, io.in[0], io.out[0], a, mem, drop);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a, tm > 0 ? io.din[1] : View<T, S>{});
  }
};

/// A block case with every dropout active on a fixed stream: the GPU must drop what the CPU drops
/// (same masks, from the same keys) in forward and backward. Attention dropout runs on the
/// materialising attention path, so no flash kernel may be dispatched (attn_head 0).
BlockCase dropout_case(BlockCase c) {
  c.name += ", dropout 0.2 / 0.1 / 0.3 (attention / residual / feed-forward)";
  c.attn_dropout = 0.2;
  c.resid_dropout = 0.1;
  c.ff_dropout = 0.3;
  c.drop = nn::DropoutStream{0xABCDEF0123ull, 0x77ull, true};
  c.attn_head = 0;
  return c;
}

/// A causal TransformerBlock: full forward, and forward_step (prefill of 4, then one at a time).
template <class B, class T>
std::pair<std::vector<T>, std::vector<T>> mm_block_steps(std::uint64_t seed) {
  using M = nn::TransformerBlock<B, T>;
  typename B::Context ctx;
  std::int64_t const bsz = 2, t = 13, d = 16, cap = t + 2;
  M m({.dim = d, .heads = 2, .mlp_hidden = 24});
  nn::ParamStore<B, T> ps(ctx, m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.3);
  auto xh = mm_random<T>(bsz * t * d, seed + 1);
  auto x = mm_to_backend<B>(ctx, xh, Shape{bsz, t, d});
  Tensor<T, B> y(Shape{bsz, t, d});
  Workspace<B> ws(m.forward_workspace(bsz, t));
  {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
  }
  auto full = mm_to_host<B, T>(ctx, y.cview());
  auto stepped = mm_forward_steps<B, T>(ctx, m, xh, bsz, t, d, cap, 4, [](std::int64_t) { return std::int64_t(1); });
  if constexpr (std::is_same_v<B, Gpu>) mm_check_attention_family<T>(ctx, d / 2, 2);
  return {full, stepped};
}

}  // namespace

TEST_CASE("cuda modules: TransformerBlock causal and unmasked, and with a memory prefix (gradcheck)") {
  for (auto mask : {AttentionMask::causal(), AttentionMask::none()}) {
    mm_both(BlockCase(2, 21, 0, 32, 4, 64, mask), BlockCase(2, 5, 0, 8, 2, 12, mask), 14);
  }
  mm_both(BlockCase(2, 12, 6, 32, 4, 64, AttentionMask::causal()), BlockCase(2, 4, 3, 6, 3, 8, AttentionMask::causal()),
          15);
  mm_compare(BlockCase(2, 21, 0, 64, 2, 128, AttentionMask::causal()), 38);  // head size 32
}

TEST_CASE("cuda modules: TransformerBlock with dropout active drops the CPU's elements (compare, gradcheck)") {
  mm_both(dropout_case(BlockCase(2, 21, 0, 32, 4, 64, AttentionMask::causal())),
          dropout_case(BlockCase(2, 5, 0, 8, 2, 12, AttentionMask::causal())), 24);
  mm_both(dropout_case(BlockCase(2, 12, 6, 32, 4, 64, AttentionMask::none())),
          dropout_case(BlockCase(2, 4, 3, 6, 3, 8, AttentionMask::causal())), 25);
}

TEST_CASE("cuda modules: TransformerBlock forward_step equals the full forward") {
  mm_check_cached([] { return mm_block_steps<Gpu, double>(16); }, [] { return mm_block_steps<Gpu, float>(16); },
                  [] { return mm_block_steps<cpu, float>(16); });
}

}  // namespace HSEQ_TEST_UNIT
