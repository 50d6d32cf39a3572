// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>

#include "hseq/nn/lstm.hpp"
#include "support/gradcheck.hpp"

using namespace hseq;
using test::random_tensor;
using LstmD = nn::Lstm<cpu, double>;
using LstmF = nn::Lstm<cpu, float>;

TEST_CASE("gradcheck: Lstm (input, h0, c0, parameters; outputs and final h, c)") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, in = 3, h = 4;
  LstmD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 6);
  auto x = random_tensor(Shape{bsz, t, in}, 1), dx = random_tensor(Shape{bsz, t, in}, 0);
  auto h0 = random_tensor(Shape{bsz, h}, 3), dh0 = random_tensor(Shape{bsz, h}, 0);
  auto c0 = random_tensor(Shape{bsz, h}, 4), dc0 = random_tensor(Shape{bsz, h}, 0);
  auto r = random_tensor(Shape{bsz, t, h}, 2), rh = random_tensor(Shape{bsz, h}, 5), rc = random_tensor(Shape{bsz, h}, 7);
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), cf(Shape{bsz, h});
  std::size_t plan = m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a);
    return test::dot(y.cview(), r.cview()) + test::dot(hf.cview(), rh.cview()) + test::dot(cf.cview(), rc.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a);
    m.backward(ctx, s, r.cview(), {rh.cview(), rc.cview()}, dx.view(), {dh0.view(), dc0.view()}, a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck(ps)
      .input("x", x.view(), dx.view())
      .input("h0", h0.view(), dh0.view())
      .input("c0", c0.view(), dc0.view())
      .run(loss, grads);
}

TEST_CASE("lstm: one step matches the PyTorch equations") {
  cpu::Context ctx;
  LstmD m({.input = 2, .hidden = 2});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 8);
  auto x = random_tensor(Shape{1, 1, 2}, 1);
  auto h0 = random_tensor(Shape{1, 2}, 2), c0 = random_tensor(Shape{1, 2}, 3);
  Tensor<double, cpu> y(Shape{1, 1, 2}), cf(Shape{1, 2});
  Workspace<cpu> ws(m.forward_workspace(1, 1));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {{}, cf.view()}, a);
  auto wih = ps.find("weight_ih").value, whh = ps.find("weight_hh").value;
  auto bih = ps.find("bias_ih").value, bhh = ps.find("bias_hh").value;
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (int j = 0; j < 2; ++j) {
    auto pre = [&](int g) {
      int row = g * 2 + j;
      return bih[row] + bhh[row] + wih[row * 2] * x.data()[0] + wih[row * 2 + 1] * x.data()[1] +
             whh[row * 2] * h0.data()[0] + whh[row * 2 + 1] * h0.data()[1];
    };
    double i = sig(pre(0)), f = sig(pre(1)), g = std::tanh(pre(2)), o = sig(pre(3));
    double c = f * c0.data()[j] + i * g;
    CHECK(cf.data()[j] == doctest::Approx(c).epsilon(1e-12));
    CHECK(y.data()[j] == doctest::Approx(o * std::tanh(c)).epsilon(1e-12));
  }
}

TEST_CASE("lstm: bad shapes are reported") {
  cpu::Context ctx;
  LstmF m({.input = 2, .hidden = 3});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{2, 3, 2}), y(Shape{2, 3, 3}), h0(Shape{2, 4});
  Workspace<cpu> ws(m.forward_workspace(2, 3));
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), {h0.cview(), {}}, y.view(), {}, a), doctest::Contains("[2, 4]"), Error);
  CHECK_THROWS_AS(LstmF({.input = 2, .hidden = -1}), Error);
}
