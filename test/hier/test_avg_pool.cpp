// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/avg_pool.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: AvgPoolShorten (input)") {
  test::check_shorten<hier::AvgPoolShorten<cpu, double>>({.dim = 3, .factor = 3}, 2, 6);
}

TEST_CASE("avg_pool: means of consecutive groups; lengths must divide") {
  cpu::Context ctx;
  hier::AvgPoolShorten<cpu, float> m({.dim = 1, .factor = 2});
  Tensor<float, cpu> x(Shape{1, 4, 1}), y(Shape{1, 2, 1}), bad(Shape{1, 5, 1});
  for (int i = 0; i < 4; ++i) x.data()[i] = float(i);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  CHECK(y.data()[0] == 0.5f);
  CHECK(y.data()[1] == 2.5f);
  CHECK_THROWS_WITH_AS(m.forward(ctx, bad.cview(), y.view(), a), doctest::Contains("not a multiple of 2"), Error);
}

}  // namespace HSEQ_TEST_UNIT
