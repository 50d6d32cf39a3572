// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "hseq/hier/avg_pool.hpp"
#include "support/gradcheck.hpp"
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

TEST_CASE("avg_pool: over data-dependent segments it is the segment mean; backward, gradients and steps") {
  cpu::Context ctx;
  hier::AvgPoolShorten<cpu, double> m({.dim = 2, .factor = 1});
  // Row 0 (5 positions) closes segments at 0, 3; its positions 4 are not closed yet (read by no
  // segment). Row 1 closes one at 0 and 4; its third segment is padding (repeats its last end).
  Tensor<double, cpu> x(Shape{2, 5, 2}), y(Shape{2, 3, 2}), dx(Shape{2, 5, 2});
  for (int i = 0; i < 20; ++i) x.data()[i] = double(i);
  Tensor<std::int32_t, cpu> pool(Shape{6});
  std::int32_t idx[] = {0, 3, 3, 5, 9, 9};
  std::copy(idx, idx + 6, pool.data());
  Workspace<cpu> ws(m.ragged_forward_workspace(2, 5, 3));
  auto a = ws.arena();
  auto saved = m.ragged_forward(ctx, x.cview(), pool.cview(), y.view(), a);
  CHECK(a.used() <= m.ragged_forward_workspace(2, 5, 3));
  // Row 0: {x0}, mean(x1..x3), padding 0; row 1: {x5}, mean(x6..x9), padding 0.
  std::vector<double> got(y.data(), y.data() + 12), expect{0, 1, 4, 5, 0, 0, 10, 11, 15, 16, 0, 0};
  CHECK(got == expect);
  for (int i = 0; i < 12; ++i) y.data()[i] = double(i + 1);
  for (int i = 0; i < 20; ++i) dx.data()[i] = -7;  // overwritten
  m.ragged_backward(ctx, saved, pool.cview(), y.cview(), dx.view(), a);
  double third = 1.0 / 3.0;
  std::vector<double> g(dx.data(), dx.data() + 20),
      e{1, 2, 3 * third, 4 * third, 3 * third, 4 * third, 3 * third, 4 * third, 0, 0,
        7, 8, 9 * 0.25, 10 * 0.25, 9 * 0.25, 10 * 0.25, 9 * 0.25, 10 * 0.25, 9 * 0.25, 10 * 0.25};
  for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == doctest::Approx(e[i]).epsilon(1e-15));
  // Finite differences through the segment path (input).
  Workspace<cpu> gws(m.ragged_forward_workspace(2, 5, 3));
  auto r = test::random_tensor<double>(Shape{2, 3, 2}, 3);
  auto loss = [&] {
    auto ga = gws.arena();
    m.ragged_forward(ctx, x.cview(), pool.cview(), y.view(), ga);
    return test::dot<double>(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto ga = gws.arena();
    auto sv = m.ragged_forward(ctx, x.cview(), pool.cview(), y.view(), ga);
    m.ragged_backward(ctx, sv, pool.cview(), r.cview(), dx.view(), ga);
  };
  test::GradCheck().input("x", x.view(), dx.view()).run(loss, grads);
  // Cached steps, per row at its own emits, give the forward's means.
  {
    auto fa = gws.arena();
    m.ragged_forward(ctx, x.cview(), pool.cview(), y.view(), fa);
  }
  auto st = m.make_step_state(2, 5);
  std::vector<std::vector<std::int64_t>> emits{{0, 3}, {0, 4}};
  for (std::int64_t b = 0; b < 2; ++b) {
    std::size_t k = 0;
    for (std::int64_t t = 0; t < 5; ++t) {
      View<double const, HostSpace> xt(x.data() + (b * 5 + t) * 2, Shape{1, 1, 2});
      m.ragged_step_input(ctx, st, b, xt, t, a);
      if (k < emits[std::size_t(b)].size() && emits[std::size_t(b)][k] == t) {
        Tensor<double, cpu> out(Shape{1, 1, 2});
        m.ragged_step_emit(ctx, st, b, xt, out.view(), a);
        CHECK(out.data()[0] == doctest::Approx(y.data()[(b * 3 + std::int64_t(k)) * 2]).epsilon(1e-15));
        CHECK(out.data()[1] == doctest::Approx(y.data()[(b * 3 + std::int64_t(k)) * 2 + 1]).epsilon(1e-15));
        ++k;
      }
    }
  }
  // An end outside its row is refused by name.
  pool.data()[1] = 7;
  auto ba = gws.arena();
  CHECK_THROWS_WITH_AS(m.ragged_forward(ctx, x.cview(), pool.cview(), y.view(), ba),
                       doctest::Contains("outside its 5 positions"), Error);
}

}  // namespace HSEQ_TEST_UNIT
