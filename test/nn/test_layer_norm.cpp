// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/layer_norm.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using LayerNormF = nn::LayerNorm<cpu, float>;
using test::random_tensor;

TEST_CASE("gradcheck: LayerNorm (input, weight, bias)") {
  cpu::Context ctx;
  nn::LayerNorm<cpu, double> m({.dim = 6});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5);
  auto x = random_tensor(Shape{2, 3, 6}, 1), dx = random_tensor(Shape{2, 3, 6}, 0);
  auto r = random_tensor(Shape{2, 3, 6}, 2);
  Tensor<double, cpu> y(Shape{2, 3, 6});
  Workspace<cpu> ws(m.forward_workspace(6) + m.backward_workspace(6));
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() == m.forward_workspace(6) + m.backward_workspace(6));
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
}

TEST_CASE("layer_norm module: known values with default gain and bias") {
  cpu::Context ctx;
  nn::LayerNorm<cpu, double> m({.dim = 4, .eps = 1e-5});
  nn::ParamStore<cpu, double> ps(m);
  ps.init(ctx, 0);
  Tensor<double, cpu> x(Shape{1, 4}), y(Shape{1, 4});
  for (int i = 0; i < 4; ++i) x.data()[i] = i + 1;  // mean 2.5, variance 1.25
  Workspace<cpu> ws(m.forward_workspace(1));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  for (int i = 0; i < 4; ++i) CHECK(y.data()[i] == doctest::Approx((i + 1 - 2.5) / std::sqrt(1.25 + 1e-5)).epsilon(1e-12));
}

TEST_CASE("layer_norm module: bad input") {
  cpu::Context ctx;
  CHECK_THROWS_AS(LayerNormF({.dim = 0}), Error);
  nn::LayerNorm<cpu, float> m({.dim = 4});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{2, 3}), y(Shape{2, 3});
  Workspace<cpu> ws(4096);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), y.view(), a), doctest::Contains("[2, 3]"), Error);
}

TEST_CASE("layer_norm module: a frozen gain or bias gets no gradient; dx and the other gradient are unchanged") {
  cpu::Context ctx;
  nn::LayerNorm<cpu, double> m({.dim = 5});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 3);
  auto x = random_tensor(Shape{4, 5}, 1), dy = random_tensor(Shape{4, 5}, 2);
  Tensor<double, cpu> y(Shape{4, 5}), dx(Shape{4, 5});
  Workspace<cpu> ws(m.forward_workspace(4) + m.backward_workspace(4));
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, dy.cview(), dx.view(), a);
    return frozen_check::values_of(dx.view());
  };
  frozen_check::check(ps, run, {"weight", "bias"});
  // Both frozen and no dx wanted: nothing to do, every gradient stays zero.
  ps.set_frozen("*", true);
  ps.zero_grad(ctx);
  auto a = ws.arena();
  auto s = m.forward(ctx, x.cview(), y.view(), a);
  m.backward(ctx, s, dy.cview(), View<double, HostSpace>{}, a);
  for (std::int64_t i = 0; i < ps.grads().numel(); ++i) REQUIRE(ps.grads()[i] == 0.0);
}

TEST_CASE("layer_norm module: backward_input gives backward's dx and leaves the parameter gradients alone") {
  cpu::Context ctx;
  nn::LayerNorm<cpu, double> ln({6, 1e-5});
  nn::ParamStore<cpu, double> ps(ln);
  test::randomize_params(ps, 3);
  auto x = random_tensor(Shape{4, 6}, 1), dy = random_tensor(Shape{4, 6}, 2);
  Tensor<double, cpu> y(Shape{4, 6}), dx1(Shape{4, 6}), dx2(Shape{4, 6});
  Workspace<cpu> ws(ln.forward_workspace(4) + ln.input_backward_workspace());
  auto a = ws.arena();
  auto s = ln.forward(ctx, x.cview(), y.view(), a);
  ps.zero_grad(ctx);
  ln.backward_input(ctx, s, dy.cview(), dx2.view(), a);
  CHECK(a.high_water() <= ln.forward_workspace(4) + ln.input_backward_workspace());
  for (auto const& e : ps.entries())
    for (std::int64_t i = 0; i < e.param->grad.numel(); ++i) CHECK(e.param->grad.data[i] == 0.0);
  ln.backward(ctx, s, dy.cview(), dx1.view(), a);
  for (std::int64_t i = 0; i < dx1.numel(); ++i) CHECK(dx2.data()[i] == dx1.data()[i]);
}

}  // namespace HSEQ_TEST_UNIT
