// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hseq/hier/repeat_upsample.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: RepeatUpsample (input)") {
  test::check_upsample<hier::RepeatUpsample<cpu, double>, false>({.dim = 3, .factor = 3}, 2, 2);
}

TEST_CASE("repeat_upsample: each short vector repeated k times") {
  cpu::Context ctx;
  hier::RepeatUpsample<cpu, float> m({.dim = 1, .factor = 3});
  Tensor<float, cpu> y(Shape{1, 2, 1}), u(Shape{1, 6, 1});
  y.data()[0] = 4, y.data()[1] = 7;
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, y.cview(), {}, u.view(), a);
  float expect[] = {4, 4, 4, 7, 7, 7};
  for (int i = 0; i < 6; ++i) CHECK(u.data()[i] == expect[i]);
}

TEST_CASE("repeat_upsample: over data-dependent segments u[t] = y[J(t)], backward sums, per-row steps") {
  cpu::Context ctx;
  hier::RepeatUpsample<cpu, double> m({.dim = 1, .factor = 1});
  // Two rows of 4 positions over C = 2 segments: row 0 J = 0 0 1 1, row 1 J = 0 0 0 0.
  Tensor<double, cpu> y(Shape{2, 2, 1}), u(Shape{2, 4, 1}), dy(Shape{2, 2, 1});
  double yv[] = {4, 7, 9, 5};
  std::copy(yv, yv + 4, y.data());
  Tensor<std::int32_t, cpu> up(Shape{8});
  std::int32_t idx[] = {0, 0, 1, 1, 2, 2, 2, 2};
  std::copy(idx, idx + 8, up.data());
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  auto saved = m.ragged_forward(ctx, y.cview(), {}, up.cview(), u.view(), a);
  std::vector<double> got(u.data(), u.data() + 8), expect{4, 4, 7, 7, 9, 9, 9, 9};
  CHECK(got == expect);
  for (int i = 0; i < 8; ++i) u.data()[i] = double(i + 1);
  dy.data()[3] = -7;  // overwritten (row 1's padding segment: 0)
  m.ragged_backward(ctx, saved, up.cview(), u.cview(), dy.view(), {}, a);
  std::vector<double> g(dy.data(), dy.data() + 4), e{3, 7, 26, 0};
  CHECK(g == e);
  // Steps: each row keeps its own newest summary.
  auto st = m.make_step_state(2, 4);
  Tensor<double, cpu> one(Shape{1, 1, 1}), out(Shape{1, 1, 1});
  one.data()[0] = 3;
  m.ragged_step_short(ctx, st, 0, one.cview(), 0, a);
  one.data()[0] = 8;
  m.ragged_step_short(ctx, st, 1, one.cview(), 0, a);
  m.ragged_step_up(ctx, st, 0, {}, out.view(), a);
  CHECK(out.data()[0] == 3);
  m.ragged_step_up(ctx, st, 1, {}, out.view(), a);
  CHECK(out.data()[0] == 8);
}

}  // namespace HSEQ_TEST_UNIT
