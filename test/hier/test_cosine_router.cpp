// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "hseq/hier/cosine_router.hpp"
#include "hseq/nn/module.hpp"
#include "router_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {

/// (1 - cos(a, b)) / 2 of two d-vectors, written out independently of the module.
double half_one_minus_cos(double const* a, double const* b, std::int64_t d) {
  double ab = 0, aa = 0, bb = 0;
  for (std::int64_t i = 0; i < d; ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return (1.0 - ab / std::sqrt(aa * bb)) / 2.0;
}

}  // namespace

TEST_CASE("cosine_router: starts as the identity, p_0 = 1 per row, rows never mix, padding gets p = 0") {
  cpu::Context ctx;
  std::int64_t const d = 4, bsz = 2, len = 5;
  hier::CosineRouter<cpu, double> r({d});
  nn::ParamStore<cpu, double> ps(r);
  ps.init(ctx, 1);
  for (double v : ps.values()) CHECK(v == 0.0);  // A = 0: W = I
  auto x = test::random_tensor<double>(Shape{bsz, len, d}, 5, 1.0);
  Workspace<cpu> ws(r.forward_workspace(bsz, len));
  auto a = ws.arena();
  hier::CosineRouter<cpu, double>::Saved s;
  std::vector<std::int32_t> row_len{5, 3};
  r.forward(ctx, x.cview(), row_len, s, a);
  REQUIRE(s.p.size() == std::size_t(bsz * len));
  for (std::int64_t b = 0; b < bsz; ++b) {
    CHECK(s.p[std::size_t(b * len)] == 1.0);
    for (std::int64_t t = 1; t < len; ++t) {
      double got = s.p[std::size_t(b * len + t)];
      if (t >= row_len[std::size_t(b)]) {
        CHECK(got == 0.0);
      } else {
        double const* xp = x.data() + (b * len + t - 1) * d;
        CHECK(got == doctest::Approx(half_one_minus_cos(xp, xp + d, d)).epsilon(1e-14));
      }
    }
  }
  // A row's probabilities do not depend on the other rows.
  Tensor<double, cpu> x1(Shape{1, len, d});
  std::copy(x.data() + len * d, x.data() + 2 * len * d, x1.data());
  hier::CosineRouter<cpu, double>::Saved s1;
  r.forward(ctx, x1.cview(), std::vector<std::int32_t>{3}, s1, a);
  for (std::int64_t t = 0; t < len; ++t) CHECK(s1.p[std::size_t(t)] == s.p[std::size_t(len + t)]);
  // Cached steps give the forward's probabilities, row by row at their own times.
  test::randomize_params(ps, 2, 0.3);
  r.forward(ctx, x.cview(), {}, s, a);
  auto st = r.make_step_state(bsz);
  Workspace<cpu> ws_step(r.step_workspace());
  for (std::int64_t t = 0; t < len; ++t)
    for (std::int64_t b = bsz - 1; b >= 0; --b) {
      auto sa = ws_step.arena();
      double p = r.step(ctx, st, b, View<double const, HostSpace>(x.data() + (b * len + t) * d, Shape{1, 1, d}), sa);
      CHECK(p == doctest::Approx(s.p[std::size_t(b * len + t)]).epsilon(1e-14));
    }
  r.reset(st);
  auto sa = ws_step.arena();
  CHECK(r.step(ctx, st, 1, View<double const, HostSpace>(x.data() + 3 * d, Shape{1, 1, d}), sa) == 1.0);
  // A width mismatch is named.
  auto bad = test::random_tensor<double>(Shape{1, 3, d + 1}, 1, 1.0);
  CHECK_THROWS_WITH_AS(r.forward(ctx, bad.cview(), {}, s, a), doctest::Contains("CosineRouter: x"), Error);
}

TEST_CASE("gradcheck: CosineRouter (input and A) through L = sum_t w_t p_t") {
  cpu::Context ctx;
  hier::CosineRouter<cpu, double> r({5});
  nn::ParamStore<cpu, double> ps(r);
  ps.init(ctx, 1);
  test::randomize_params(ps, 4, 0.3);
  test::check_router_gradients(r, ps, 5, 2, 6, {6, 4});
}

TEST_CASE("cosine_router: the ratio loss is 1 at F = G = 1/N, and its dG matches finite differences") {
  for (double n : {2.0, 5.4, 6.0}) {
    CAPTURE(n);
    CHECK(hier::ratio_loss(n, 1.0 / n, 1.0 / n).value == doctest::Approx(1.0).epsilon(1e-15));
    for (double f : {0.1, 0.3, 0.8})
      for (double g : {0.05, 0.5, 0.9}) {
        double h = 1e-6;
        double num = (hier::ratio_loss(n, f, g + h).value - hier::ratio_loss(n, f, g - h).value) / (2 * h);
        CHECK(hier::ratio_loss(n, f, g).d_g == doctest::Approx(num).epsilon(1e-8));
      }
    // L is linear in G, and at F = 1/N its slope is 0: the loss then does not care about G.
    CHECK(hier::ratio_loss(n, 1.0 / n, 0.5).d_g == doctest::Approx(0.0).scale(1.0));
  }
  CHECK_THROWS_WITH_AS(hier::ratio_loss(1.0, 0.5, 0.5), doctest::Contains("must exceed 1"), Error);
}

}  // namespace HSEQ_TEST_UNIT
