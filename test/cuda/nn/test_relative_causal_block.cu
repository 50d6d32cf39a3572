// SPDX-License-Identifier: MIT
// CUDA nn/relative_causal_block.hpp: RelativeCausalBlock (relative positions, distance scales 1 and 4,
// clamped and not) on the GPU against the CPU in float and GPU finite differences in double,
// workspace plan == use (the case harness of test/cuda/harness.cuh); cached steps (forward_step over
// the block's own cache layout) equal the full forward, on the GPU in double and float and against
// the CPU.
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
#include "hseq/nn/relative_causal_block.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

/// The block on any backend, its Config made from a TransformerBlock's (as the models make it).
template <class B, class T>
nn::RelativeCausalBlock<B, T> make_relative_block(std::int64_t dim, std::int64_t heads, std::int64_t hidden,
                                                  std::int64_t scale, std::int64_t clamp) {
  typename nn::RelativeCausalBlock<B, T>::Config c(
      typename nn::TransformerBlock<B, T>::Config{.dim = dim, .heads = heads, .mlp_hidden = hidden});
  c.distance_scale = scale;
  c.clamp_len = clamp;
  return nn::RelativeCausalBlock<B, T>(c);
}

/// y = block(x), x [B, T, d].
struct RelativeCausalBlockCase : MmCase {
  std::int64_t bsz, t, dim, heads, hidden, scale, clamp;
  RelativeCausalBlockCase(std::int64_t b, std::int64_t tt, std::int64_t d, std::int64_t h, std::int64_t hid,
                          std::int64_t s, std::int64_t clamp_len)
      : bsz(b), t(tt), dim(d), heads(h), hidden(hid), scale(s), clamp(clamp_len) {
    // attn_head stays 0: a dense score bias takes the core's materialising path on the GPU, not
    // one of the flash kernel families the harness would count.
    name = "RelativeCausalBlock, T " + std::to_string(tt) + ", heads " + std::to_string(h) + ", distance_scale " +
           std::to_string(s) + ", clamp_len " + std::to_string(clamp_len);
    add_in("x", Shape{b, tt, d});
    add_out(Shape{b, tt, d});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::RelativeCausalBlock<B, T>>(make_relative_block<B, T>(dim, heads, hidden, scale, clamp));
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

/// The block's full forward over x [B, T, d], and the same rows by forward_step over the block's
/// cache (cache_shape: keys/values and the Rk table), a prefill of 4 then one position at a time
/// with a chunk of 3 in between.
template <class B, class T>
std::pair<std::vector<T>, std::vector<T>> relative_block_steps(std::int64_t scale, std::uint64_t seed) {
  typename B::Context ctx;
  std::int64_t const bsz = 2, t = 13, d = 16, cap = t + 2;
  auto m = make_relative_block<B, T>(d, 2, 24, scale, 0);
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
  Tensor<T, B> cache(m.cache_shape(bsz, cap));
  std::vector<T> stepped(xh.size(), T(0));
  Workspace<B> sws(m.step_workspace(bsz, t, t));
  for (std::int64_t pos = 0; pos < t;) {
    std::int64_t const n = std::min<std::int64_t>(pos == 0 ? 4 : pos == 6 ? 3 : 1, t - pos);
    std::vector<T> xc(std::size_t(bsz * n * d));
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(xh.begin() + (b * t + pos) * d, n * d, xc.begin() + b * n * d);
    auto xd = mm_to_backend<B>(ctx, xc, Shape{bsz, n, d});
    Tensor<T, B> yc(Shape{bsz, n, d});
    auto a = sws.arena();
    m.forward_step(ctx, xd.cview(), cache.view(), pos, yc.view(), a);
    CHECK(a.high_water() == m.step_workspace(bsz, n, pos));
    auto yh = mm_to_host<B, T>(ctx, yc.cview());
    for (std::int64_t b = 0; b < bsz; ++b)
      std::copy_n(yh.begin() + b * n * d, n * d, stepped.begin() + (b * t + pos) * d);
    pos += n;
  }
  return {full, stepped};
}

}  // namespace

TEST_CASE("cuda modules: RelativeCausalBlock at distance scales 1 and 4, unclamped and clamped (gradcheck)") {
  mm_both(RelativeCausalBlockCase(2, 29, 32, 4, 64, 1, 0), RelativeCausalBlockCase(2, 5, 8, 2, 12, 1, 0), 70);
  mm_both(RelativeCausalBlockCase(2, 29, 32, 4, 64, 4, 0), RelativeCausalBlockCase(2, 5, 8, 2, 12, 4, 0), 71);
  mm_both(RelativeCausalBlockCase(2, 29, 32, 4, 64, 4, 7), RelativeCausalBlockCase(2, 6, 8, 2, 12, 3, 2), 72);
}

TEST_CASE("cuda modules: RelativeCausalBlock forward_step equals the full forward (distance scales 1 and 4)") {
  for (std::int64_t scale : {1, 4}) {
    CAPTURE(scale);
    mm_check_cached([&] { return relative_block_steps<Gpu, double>(scale, 17); },
                    [&] { return relative_block_steps<Gpu, float>(scale, 17); },
                    [&] { return relative_block_steps<cpu, float>(scale, 17); });
  }
}

}  // namespace HSEQ_TEST_UNIT
