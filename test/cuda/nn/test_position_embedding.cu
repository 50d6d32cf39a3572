// SPDX-License-Identifier: MIT
// CUDA nn/position_embedding.hpp: PositionEmbedding (learned, sinusoidal) on the GPU against the CPU in float and GPU
// finite differences in double, workspace plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

struct PositionCase : MmCase {
  nn::PositionKind kind;
  std::int64_t max_len, dim, offset;
  PositionCase(std::int64_t b, std::int64_t t, std::int64_t d, nn::PositionKind k, std::int64_t max_len_,
               std::int64_t off)
      : kind(k), max_len(max_len_), dim(d), offset(off) {
    name = std::string("PositionEmbedding ") + (k == nn::PositionKind::kLearned ? "learned" : "sinusoidal") +
           ", offset " + std::to_string(off);
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::PositionEmbedding<B, T>;
    return std::make_unique<M>(typename M::Config{.kind = kind, .max_len = max_len, .dim = dim});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(in[0][0], in[0][1]) + m.backward_workspace(in[0][0], in[0][1]);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], offset, a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

}  // namespace

TEST_CASE("cuda modules: PositionEmbedding learned (with an offset) and sinusoidal (gradcheck)") {
  mm_both(PositionCase(2, 20, 32, nn::PositionKind::kLearned, 40, 7),
          PositionCase(2, 5, 4, nn::PositionKind::kLearned, 9, 3), 19);
  mm_both(PositionCase(2, 20, 32, nn::PositionKind::kSinusoidal, 0, 0),
          PositionCase(2, 3, 6, nn::PositionKind::kSinusoidal, 0, 0), 20);
  mm_both(PositionCase(2, 20, 32, nn::PositionKind::kSinusoidal, 0, 13),
          PositionCase(2, 3, 6, nn::PositionKind::kSinusoidal, 0, 5), 21);
}

}  // namespace HSEQ_TEST_UNIT
