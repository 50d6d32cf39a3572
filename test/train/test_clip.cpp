// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "hseq/nn/linear.hpp"
#include "hseq/train/clip.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("clip: global norm over all parameters, scaled only above the threshold") {
  cpu::Context ctx;
  nn::Linear<cpu, double> m({.in = 2, .out = 2});  // 4 weights + 2 biases
  nn::ParamStore<cpu, double> ps(m);
  auto w = ps.find("weight").grad, b = ps.find("bias").grad;
  for (int i = 0; i < 4; ++i) w[i] = 1.0;
  b[0] = 2.0, b[1] = 2.0;  // norm = sqrt(4 + 8) = sqrt(12)
  CHECK(train::grad_norm(ctx, ps) == doctest::Approx(std::sqrt(12.0)));
  double before = train::clip_grad_norm(ctx, ps, 10.0);
  CHECK(before == doctest::Approx(std::sqrt(12.0)));
  CHECK(w[0] == 1.0);  // below the threshold: untouched
  train::clip_grad_norm(ctx, ps, 1.0);
  CHECK(train::grad_norm(ctx, ps) == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(b[0] / w[0] == doctest::Approx(2.0));
  w[1] = std::numeric_limits<double>::quiet_NaN();
  CHECK(std::isnan(train::clip_grad_norm(ctx, ps, 1.0)));
  CHECK_THROWS_AS(train::clip_grad_norm(ctx, ps, 0.0), Error);
}

}  // namespace HSEQ_TEST_UNIT
