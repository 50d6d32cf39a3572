// SPDX-License-Identifier: MIT
// CUDA nn/mlp.hpp: Mlp on the GPU against the CPU in float and GPU finite differences in double, workspace plan == use
// (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/mlp.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

struct MlpCase : RowwiseCase {
  std::int64_t dim, hidden;
  MlpCase(std::int64_t b, std::int64_t t, std::int64_t d, std::int64_t h) : dim(d), hidden(h) {
    name = "Mlp(" + std::to_string(d) + ", hidden " + std::to_string(h) + ")";
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::Mlp<B, T>>(typename nn::Mlp<B, T>::Config{.dim = dim, .hidden = hidden});
  }
};

}  // namespace

TEST_CASE("cuda modules: Mlp matches the CPU in float and finite differences in double (gradcheck)") {
  mm_both(MlpCase(2, 9, 32, 64), MlpCase(2, 3, 4, 6), 4);
}

}  // namespace HSEQ_TEST_UNIT
