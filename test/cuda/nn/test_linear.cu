// SPDX-License-Identifier: MIT
// CUDA nn/linear.hpp: Linear on the GPU against the CPU in float and GPU finite differences in double, workspace plan
// == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/linear.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

struct LinearCase : RowwiseCase {
  std::int64_t nin, nout;
  bool bias;
  LinearCase(std::int64_t b, std::int64_t t, std::int64_t i, std::int64_t o, bool with_bias)
      : nin(i), nout(o), bias(with_bias) {
    name = std::string("Linear(") + std::to_string(i) + " -> " + std::to_string(o) + (bias ? ", bias)" : ", no bias)");
    add_in("x", Shape{b, t, i});
    add_out(Shape{b, t, o});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::Linear<B, T>>(typename nn::Linear<B, T>::Config{.in = nin, .out = nout, .bias = bias});
  }
};

}  // namespace

TEST_CASE("cuda modules: Linear matches the CPU in float and finite differences in double (gradcheck)") {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    mm_both(LinearCase(3, 7, 32, 48, bias), LinearCase(3, 2, 5, 4, bias), 1);
  }
}

}  // namespace HSEQ_TEST_UNIT
