// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>

#include "hseq/nn/gru.hpp"
#include "support/gradcheck.hpp"

using namespace hseq;
using test::random_tensor;
using GruD = nn::Gru<cpu, double>;
using GruF = nn::Gru<cpu, float>;

TEST_CASE("gradcheck: Gru (input, initial state, parameters; outputs and final state)") {
  cpu::Context ctx;
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    std::int64_t const bsz = 2, t = 4, in = 3, h = 5;
    GruD m({.input = in, .hidden = h, .bias = bias});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 4);
    auto x = random_tensor(Shape{bsz, t, in}, 1), dx = random_tensor(Shape{bsz, t, in}, 0);
    auto h0 = random_tensor(Shape{bsz, h}, 3), dh0 = random_tensor(Shape{bsz, h}, 0);
    auto r = random_tensor(Shape{bsz, t, h}, 2), rf = random_tensor(Shape{bsz, h}, 5);
    Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h});
    std::size_t plan = m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
    Workspace<cpu> ws(plan);
    // L = <y, r> + <h_final, rf>: checks both the output and the final-state gradient paths.
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a);
      return test::dot(y.cview(), r.cview()) + test::dot(hf.cview(), rf.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a);
      m.backward(ctx, s, r.cview(), rf.cview(), dx.view(), dh0.view(), a);
      CHECK(a.high_water() == plan);
    };
    test::GradCheck(ps).input("x", x.view(), dx.view()).input("h0", h0.view(), dh0.view()).run(loss, grads);
  }
}

TEST_CASE("gru: one step matches the PyTorch equations") {
  cpu::Context ctx;
  GruD m({.input = 2, .hidden = 3});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 8);
  auto x = random_tensor(Shape{1, 1, 2}, 1);
  auto h0 = random_tensor(Shape{1, 3}, 2);
  Tensor<double, cpu> y(Shape{1, 1, 3});
  Workspace<cpu> ws(m.forward_workspace(1, 1));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), h0.cview(), y.view(), {}, a);
  auto wih = ps.find("weight_ih").value, whh = ps.find("weight_hh").value;
  auto bih = ps.find("bias_ih").value, bhh = ps.find("bias_hh").value;
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (int j = 0; j < 3; ++j) {
    auto gi = [&](int g) { return bih[g * 3 + j] + wih[(g * 3 + j) * 2] * x.data()[0] + wih[(g * 3 + j) * 2 + 1] * x.data()[1]; };
    auto gh = [&](int g) {
      double s = bhh[g * 3 + j];
      for (int k = 0; k < 3; ++k) s += whh[(g * 3 + j) * 3 + k] * h0.data()[k];
      return s;
    };
    double r = sig(gi(0) + gh(0)), z = sig(gi(1) + gh(1)), n = std::tanh(gi(2) + r * gh(2));
    CHECK(y.data()[j] == doctest::Approx((1 - z) * n + z * h0.data()[j]).epsilon(1e-12));
  }
}

TEST_CASE("gru: empty initial state means zeros; bad shapes are reported") {
  cpu::Context ctx;
  GruF m({.input = 2, .hidden = 3});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  auto x = random_tensor<float>(Shape{2, 3, 2}, 1);
  Tensor<float, cpu> y1(Shape{2, 3, 3}), y2(Shape{2, 3, 3});
  auto zeros = test::filled_tensor<float>(Shape{2, 3}, 0.f);
  Workspace<cpu> ws(m.forward_workspace(2, 3));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), {}, y1.view(), {}, a);
  a.reset();
  m.forward(ctx, x.cview(), zeros.cview(), y2.view(), {}, a);
  for (std::int64_t i = 0; i < y1.numel(); ++i) CHECK(y1.data()[i] == y2.data()[i]);
  Tensor<float, cpu> bad(Shape{2, 3, 4});
  a.reset();
  CHECK_THROWS_WITH_AS(m.forward(ctx, bad.cview(), {}, y1.view(), {}, a), doctest::Contains("[2, 3, 4]"), Error);
  CHECK_THROWS_AS(GruF({.input = 0, .hidden = 3}), Error);
}
