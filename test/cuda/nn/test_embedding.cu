// SPDX-License-Identifier: MIT
// CUDA nn/embedding.hpp: Embedding on the GPU against the CPU in float and GPU finite differences in double, workspace
// plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/embedding.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

struct EmbeddingCase : MmCase {
  std::int64_t vocab, dim;
  EmbeddingCase(std::int64_t b, std::int64_t t, std::int64_t v, std::int64_t d) : vocab(v), dim(d) {
    name = "Embedding(" + std::to_string(v) + ", " + std::to_string(d) + ")";
    ids_shape = Shape{b, t};
    Rng rng(11);
    for (std::int64_t i = 0; i < b * t; ++i) ids.push_back(std::int32_t(rng.below(std::uint64_t(v))));
    ids[1] = ids[0];  // repeated ids: their gradients add up in the same row
    ids[std::size_t(b * t - 1)] = ids[0];
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::Embedding<B, T>>(typename nn::Embedding<B, T>::Config{.vocab = vocab, .dim = dim});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(ids_shape.numel()) + m.backward_workspace(ids_shape.numel());
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.ids, io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], a);
  }
};

}  // namespace

TEST_CASE("cuda modules: Embedding matches the CPU in float and finite differences in double (gradcheck)") {
  mm_both(EmbeddingCase(3, 13, 40, 32), EmbeddingCase(2, 4, 7, 5), 3);
}

}  // namespace HSEQ_TEST_UNIT
