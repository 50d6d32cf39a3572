// SPDX-License-Identifier: MIT
// CUDA nn/relative_attention.hpp: Transformer-XL relative attention (with and without a memory, clamped and
// unclamped distances) on the GPU against the CPU in float and GPU finite differences in double, workspace
// plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/relative_attention.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_harness;

namespace {

/// y = RelAttn(x, mem): segment x [B, T, d] over [mem; x], mem [B, M, d] (M may be 0).
struct RelativeAttentionCase : MmCase {
  std::int64_t bsz, t, m, dim, heads, clamp;
  RelativeAttentionCase(std::int64_t b, std::int64_t tt, std::int64_t mm, std::int64_t d, std::int64_t h,
                        std::int64_t clamp_len)
      : bsz(b), t(tt), m(mm), dim(d), heads(h), clamp(clamp_len) {
    // attn_head stays 0: a dense score bias takes the core's materialising path on the GPU, not
    // one of the flash kernel families the harness would count.
    name = "RelativeAttention, T " + std::to_string(tt) + ", memory " + std::to_string(mm) + ", heads " +
           std::to_string(h) + ", clamp_len " + std::to_string(clamp_len);
    add_in("x", Shape{b, tt, d});
    if (mm > 0) add_in("mem", Shape{b, mm, d});
    add_out(Shape{b, tt, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::RelativeAttention<B, T>;
    return std::make_unique<M>(typename M::Config{.dim = dim, .heads = heads, .clamp_len = clamp});
  }
  template <class M>
  std::size_t plan(M const& mod) const {
    typename M::Dims dims{bsz, t, m};
    return mod.forward_workspace(dims) + mod.backward_workspace(dims);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& mod, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    View<T const, S> mem = m > 0 ? io.in[1] : View<T const, S>{};
    auto s = mod.forward(ctx, io.in[0], mem, io.out[0], a);
    if (bw) mod.backward(ctx, s, io.dout[0], io.din[0], m > 0 ? io.din[1] : View<T, S>{}, a);
  }
};

}  // namespace

TEST_CASE("cuda modules: RelativeAttention without a memory, unclamped and clamped (gradcheck)") {
  mm_both(RelativeAttentionCase(2, 37, 0, 32, 4, 0), RelativeAttentionCase(2, 6, 0, 8, 2, 0), 60);
  mm_both(RelativeAttentionCase(2, 37, 0, 32, 4, 9), RelativeAttentionCase(2, 7, 0, 8, 2, 3), 61);
}

TEST_CASE("cuda modules: RelativeAttention over a memory, unclamped and clamped (input, memory, parameters)") {
  mm_both(RelativeAttentionCase(2, 13, 21, 32, 4, 0), RelativeAttentionCase(2, 4, 5, 8, 2, 0), 62);
  mm_both(RelativeAttentionCase(2, 13, 21, 32, 4, 11), RelativeAttentionCase(2, 4, 5, 8, 2, 4), 63);
  // Head size 32 (the float sizes the tensor-core kernels would take without a bias) over 70 keys.
  mm_compare(RelativeAttentionCase(1, 40, 30, 64, 2, 0), 64);
}

}  // namespace HSEQ_TEST_UNIT
