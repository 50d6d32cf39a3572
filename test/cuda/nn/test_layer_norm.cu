// SPDX-License-Identifier: MIT
// CUDA nn/layer_norm.hpp: LayerNorm on the GPU against the CPU in float and GPU finite differences in double, workspace
// plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

struct LayerNormCase : RowwiseCase {
  std::int64_t dim;
  LayerNormCase(std::int64_t b, std::int64_t t, std::int64_t d) : dim(d) {
    name = "LayerNorm(" + std::to_string(d) + ")";
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::LayerNorm<B, T>>(typename nn::LayerNorm<B, T>::Config{.dim = dim});
  }
};

}  // namespace

TEST_CASE("cuda modules: LayerNorm matches the CPU in float and finite differences in double (gradcheck)") {
  mm_both(LayerNormCase(3, 11, 64), LayerNormCase(2, 3, 6), 2);
}

}  // namespace HSEQ_TEST_UNIT
