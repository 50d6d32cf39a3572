// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/shift_right.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: ShiftRight (input)") {
  cpu::Context ctx;
  hier::ShiftRight<cpu, double> m({.shift = 2});
  auto x = test::random_tensor(Shape{2, 5, 3}, 1), dx = test::random_tensor(Shape{2, 5, 3}, 0);
  auto r = test::random_tensor(Shape{2, 5, 3}, 2);
  Tensor<double, cpu> y(Shape{2, 5, 3});
  Workspace<cpu> ws(0);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, r.cview(), dx.view(), a);
  };
  test::GradCheck().input("x", x.view(), dx.view()).run(loss, grads);
}

TEST_CASE("shift_right: prepends zeros and drops the tail") {
  cpu::Context ctx;
  hier::ShiftRight<cpu, float> m({.shift = 3});
  Tensor<float, cpu> x(Shape{1, 5, 1}), y(Shape{1, 5, 1});
  for (int i = 0; i < 5; ++i) x.data()[i] = float(i + 1);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  float expect[] = {0, 0, 0, 1, 2};
  for (int i = 0; i < 5; ++i) CHECK(y.data()[i] == expect[i]);
  using Shift = hier::ShiftRight<cpu, float>;
  CHECK_THROWS_AS(Shift({.shift = -1}), Error);
}

}  // namespace HSEQ_TEST_UNIT
