// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/linear.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using LinearF = nn::Linear<cpu, float>;
using test::random_tensor;

TEST_CASE("gradcheck: Linear (input, weight, bias)") {
  cpu::Context ctx;
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    nn::Linear<cpu, double> m({.in = 5, .out = 4, .bias = bias});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 3);
    auto x = random_tensor(Shape{3, 2, 5}, 1), dx = random_tensor(Shape{3, 2, 5}, 0);
    auto r = random_tensor(Shape{3, 2, 4}, 2);
    Tensor<double, cpu> y(Shape{3, 2, 4});
    Workspace<cpu> ws(m.forward_workspace(6) + m.backward_workspace(6) + 256);
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
    test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
  }
}

TEST_CASE("linear: identity weights copy the input plus the bias") {
  cpu::Context ctx;
  nn::Linear<cpu, float> m({.in = 3, .out = 3});
  nn::ParamStore<cpu, float> ps(m);
  auto w = ps.find("weight").value;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) w[i * 3 + j] = i == j ? 1.f : 0.f;
  auto b = ps.find("bias").value;
  b[0] = 1, b[1] = 2, b[2] = 3;
  Tensor<float, cpu> x(Shape{2, 3}), y(Shape{2, 3});
  for (int i = 0; i < 6; ++i) x.data()[i] = float(i);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) CHECK(y.data()[i * 3 + j] == float(i * 3 + j) + float(j + 1));
}

TEST_CASE("linear: parameters are named like PyTorch and counted") {
  nn::Linear<cpu, float> m({.in = 7, .out = 2});
  nn::ParamStore<cpu, float> ps(m, "proj.");
  REQUIRE(ps.entries().size() == 2);
  CHECK(ps.entries()[0].name == "proj.weight");
  CHECK(ps.entries()[1].name == "proj.bias");
  CHECK(ps.find("proj.weight").shape == Shape{2, 7});
  CHECK(ps.count() == 16);
}

TEST_CASE("linear: bad input names the shapes") {
  cpu::Context ctx;
  CHECK_THROWS_AS(LinearF({.in = 0, .out = 3}), Error);
  nn::Linear<cpu, float> m({.in = 3, .out = 2});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{4, 5}), y(Shape{4, 2});
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  try {
    m.forward(ctx, x.cview(), y.view(), a);
    FAIL("no exception");
  } catch (Error const& e) {
    std::string msg = e.what();
    CHECK(msg.find("[4, 5]") != std::string::npos);
    CHECK(msg.find("[4, 2]") != std::string::npos);
  }
}

TEST_CASE("linear: a frozen weight or bias gets no gradient; dx and the other gradient are unchanged") {
  cpu::Context ctx;
  nn::Linear<cpu, double> m({.in = 5, .out = 4});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 3);
  auto x = random_tensor(Shape{6, 5}, 1), dy = random_tensor(Shape{6, 4}, 2);
  Tensor<double, cpu> y(Shape{6, 4}), dx(Shape{6, 5});
  Workspace<cpu> ws(m.forward_workspace(6) + m.backward_workspace(6) + 256);
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, dy.cview(), dx.view(), a);
    return frozen_check::values_of(dx.view());
  };
  frozen_check::check(ps, run, {"weight", "bias"});
}

}  // namespace HSEQ_TEST_UNIT
