// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "hseq/hier/select_pool.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: SelectShorten (input)") {
  test::check_shorten<hier::SelectShorten<cpu, double>>({.dim = 3, .factor = 3}, 2, 6);
}

TEST_CASE("select_pool: the last row of each shifted window (x[j k]), forward, backward and step") {
  cpu::Context ctx;
  hier::SelectShorten<cpu, double> m({.dim = 1, .factor = 3});
  Tensor<double, cpu> x(Shape{1, 6, 1}), y(Shape{1, 2, 1}), dx(Shape{1, 6, 1});
  for (int i = 0; i < 6; ++i) x.data()[i] = double(10 + i);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  auto saved = m.forward(ctx, x.cview(), y.view(), a);
  CHECK(y.data()[0] == 12);  // the shifted window 0..2 ends at row 2 = x[0] before the shift
  CHECK(y.data()[1] == 15);
  y.data()[0] = 1, y.data()[1] = 2;
  for (int i = 0; i < 6; ++i) dx.data()[i] = -7;  // overwritten
  m.backward(ctx, saved, y.cview(), dx.view(), a);
  std::vector<double> got(dx.data(), dx.data() + 6), expect{0, 0, 1, 0, 0, 2};
  CHECK(got == expect);
  CHECK(test::shorten_steps_vs_forward(m, 2, 9, 4) == 0.0);
}

TEST_CASE("select_pool: over data-dependent segments it gathers the emit rows and scatters back") {
  cpu::Context ctx;
  hier::SelectShorten<cpu, double> m({.dim = 2, .factor = 1});
  // Two rows of 4 positions; row 0 emits at 0, 2; row 1 at 0 (its padding segment repeats row 1's
  // last position 3, whose gradient is then the padding segment's).
  Tensor<double, cpu> x(Shape{2, 4, 2}), y(Shape{2, 2, 2}), dx(Shape{2, 4, 2});
  for (int i = 0; i < 16; ++i) x.data()[i] = double(i);
  Tensor<std::int32_t, cpu> pool(Shape{4});
  std::int32_t idx[] = {0, 2, 4, 7};
  std::copy(idx, idx + 4, pool.data());
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  auto saved = m.ragged_forward(ctx, x.cview(), pool.cview(), y.view(), a);
  std::vector<double> got(y.data(), y.data() + 8), expect{0, 1, 4, 5, 8, 9, 14, 15};
  CHECK(got == expect);
  for (int i = 0; i < 8; ++i) y.data()[i] = double(i + 1);
  for (int i = 0; i < 16; ++i) dx.data()[i] = -7;
  m.ragged_backward(ctx, saved, pool.cview(), y.cview(), dx.view(), a);
  std::vector<double> g(dx.data(), dx.data() + 16), e{1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0, 0, 0, 0, 7, 8};
  CHECK(g == e);
  // An index outside x is refused by name.
  pool.data()[3] = 8;
  CHECK_THROWS_WITH_AS(m.ragged_forward(ctx, x.cview(), pool.cview(), y.view(), a), doctest::Contains("id 8"), Error);
  // The step: the emitting row's input is its summary.
  Tensor<double, cpu> one(Shape{1, 1, 2}), out(Shape{1, 1, 2});
  one.data()[0] = 3, one.data()[1] = -1;
  hier::SelectShorten<cpu, double>::StepState st;
  m.ragged_step_emit(ctx, st, 1, one.cview(), out.view(), a);
  CHECK(out.data()[0] == 3);
  CHECK(out.data()[1] == -1);
}

}  // namespace HSEQ_TEST_UNIT
