// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "hseq/hier/mlp_router.hpp"
#include "hseq/nn/module.hpp"
#include "router_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {

using Router = hier::MlpRouter<cpu, double>;

/// σ(w2 · gelu(W1 x + b1) + b2) for one d-vector, written out from the parameters (tanh GELU).
double by_hand(nn::ParamStore<cpu, double>& ps, double const* x, std::int64_t d) {
  auto w1 = ps.find("fc1.weight").value, b1 = ps.find("fc1.bias").value;
  auto w2 = ps.find("fc2.weight").value, b2 = ps.find("fc2.bias").value;
  std::int64_t h = w1.size(0);
  double z = b2.data[0];
  for (std::int64_t i = 0; i < h; ++i) {
    double u = b1.data[i];
    for (std::int64_t k = 0; k < d; ++k) u += w1.data[i * d + k] * x[k];
    double g = 0.5 * u * (1.0 + std::tanh(0.7978845608028654 * (u + 0.044715 * u * u * u)));
    z += w2.data[i] * g;
  }
  return 1.0 / (1.0 + std::exp(-z));
}

}  // namespace

TEST_CASE("mlp_router: p_t = sigmoid(MLP(x_t)), p_0 = 1 per row, rows never mix, padding gets p = 0, steps agree") {
  cpu::Context ctx;
  std::int64_t const d = 4, bsz = 2, len = 5;
  Router r({d});
  nn::ParamStore<cpu, double> ps(r);
  REQUIRE(ps.find("fc1.weight").shape == Shape{d, d});
  REQUIRE(ps.find("fc2.weight").shape == Shape{1, d});
  REQUIRE(ps.find("fc2.bias").shape == Shape{1});
  test::randomize_params(ps, 1, 0.8);
  auto x = test::random_tensor<double>(Shape{bsz, len, d}, 5, 1.0);
  Workspace<cpu> ws(r.forward_workspace(bsz, len));
  auto a = ws.arena();
  Router::Saved s;
  std::vector<std::int32_t> row_len{5, 3};
  r.forward(ctx, x.cview(), row_len, s, a);
  REQUIRE(s.p.size() == std::size_t(bsz * len));
  int above = 0, below = 0;
  for (std::int64_t b = 0; b < bsz; ++b) {
    CHECK(s.p[std::size_t(b * len)] == 1.0);
    for (std::int64_t t = 1; t < len; ++t) {
      double got = s.p[std::size_t(b * len + t)];
      if (t >= row_len[std::size_t(b)]) {
        CHECK(got == 0.0);
      } else {
        CHECK(got == doctest::Approx(by_hand(ps, x.data() + (b * len + t) * d, d)).epsilon(1e-13));
        (got > 0.5 ? above : below)++;
      }
    }
  }
  CHECK(above > 0);  // the test's parameters decide both ways
  CHECK(below > 0);
  // A row alone gives the same probabilities.
  Tensor<double, cpu> x1(Shape{1, len, d});
  std::copy(x.data() + len * d, x.data() + 2 * len * d, x1.data());
  Router::Saved s1;
  auto a1 = ws.arena();
  r.forward(ctx, x1.cview(), std::vector<std::int32_t>{3}, s1, a1);
  for (std::int64_t t = 0; t < len; ++t) CHECK(s1.p[std::size_t(t)] == s.p[std::size_t(len + t)]);
  // Cached steps, rows interleaved.
  auto a2 = ws.arena();
  r.forward(ctx, x.cview(), {}, s, a2);
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
  auto bad = test::random_tensor<double>(Shape{1, 3, d + 1}, 1, 1.0);
  auto a3 = ws.arena();
  CHECK_THROWS_WITH_AS(r.forward(ctx, bad.cview(), {}, s, a3), doctest::Contains("MlpRouter: x"), Error);
}

TEST_CASE("gradcheck: MlpRouter (input and every parameter) through L = sum_t w_t p_t") {
  Router r({5, 3});
  nn::ParamStore<cpu, double> ps(r);
  test::randomize_params(ps, 4, 0.6);
  test::check_router_gradients(r, ps, 5, 2, 6, {6, 4});
}

}  // namespace HSEQ_TEST_UNIT
