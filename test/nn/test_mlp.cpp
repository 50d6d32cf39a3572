// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "hseq/nn/mlp.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using MlpF = nn::Mlp<cpu, float>;
using test::random_tensor;

TEST_CASE("gradcheck: Mlp (input, fc1, fc2)") {
  cpu::Context ctx;
  nn::Mlp<cpu, double> m({.dim = 4, .hidden = 6});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9);
  auto x = random_tensor(Shape{2, 3, 4}, 1), dx = random_tensor(Shape{2, 3, 4}, 0);
  auto r = random_tensor(Shape{2, 3, 4}, 2);
  Tensor<double, cpu> y(Shape{2, 3, 4});
  std::size_t plan = m.forward_workspace(6) + m.backward_workspace(6);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
  CHECK(ps.entries().size() == 4);
  CHECK(ps.entries()[0].name == "fc1.weight");
  CHECK(ps.entries()[3].name == "fc2.bias");
}

TEST_CASE("mlp: hidden defaults to 4 * dim and sizes are validated") {
  nn::Mlp<cpu, float> m({.dim = 8});
  CHECK(m.config().hidden == 32);
  CHECK_THROWS_AS(MlpF({.dim = 0}), Error);
  CHECK_THROWS_WITH_AS(MlpF({.dim = 8, .dropout = 1.0}), doctest::Contains("Mlp: dropout 1"), Error);
  CHECK_THROWS_AS(MlpF({.dim = 8, .dropout = -0.2}), Error);
}

TEST_CASE("gradcheck: Mlp with hidden dropout active (input, fc1, fc2)") {
  cpu::Context ctx;
  nn::Mlp<cpu, double> m({.dim = 4, .hidden = 6, .dropout = 0.4});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9);
  auto x = random_tensor(Shape{2, 3, 4}, 1), dx = random_tensor(Shape{2, 3, 4}, 0);
  auto r = random_tensor(Shape{2, 3, 4}, 2);
  Tensor<double, cpu> y(Shape{2, 3, 4});
  std::size_t plan = m.forward_workspace(6) + m.backward_workspace(6);
  Workspace<cpu> ws(plan);
  nn::DropoutStream const drop{17, 3, true};
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a, drop);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a, drop);
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() == plan);  // no extra workspace
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
}

TEST_CASE("mlp dropout: inactive or rate 0 is bit-identical; the hidden mask keeps 1 - p, per stream") {
  cpu::Context ctx;
  std::int64_t const rows = 64, dim = 16, hidden = 64;
  auto x = random_tensor<float>(Shape{rows, dim}, 5);
  auto r = random_tensor<float>(Shape{rows, dim}, 6);
  struct Result {
    std::vector<float> y, dx, grads, a;
  };
  auto run = [&](double rate, nn::DropoutStream drop) {
    MlpF m({.dim = dim, .hidden = hidden, .dropout = rate});
    nn::ParamStore<cpu, float> ps(m);
    ps.init(ctx, 4);
    ps.zero_grad(ctx);
    Workspace<cpu> ws(m.forward_workspace(rows) + m.backward_workspace(rows));
    auto a = ws.arena();
    Tensor<float, cpu> y(x.shape()), dx(x.shape());
    auto s = m.forward(ctx, x.cview(), y.view(), a, drop);
    m.backward(ctx, s, r.cview(), dx.view(), a);
    auto g = ps.grads();
    return Result{{y.data(), y.data() + y.numel()},
                  {dx.data(), dx.data() + dx.numel()},
                  {g.data, g.data + g.numel()},
                  {s.a.data, s.a.data + s.a.numel()}};
  };
  Result const plain = run(0.0, {});
  for (auto [rate, drop] : {std::pair{0.3, nn::DropoutStream{}}, std::pair{0.3, nn::DropoutStream{1, 2, false}},
                            std::pair{0.0, nn::DropoutStream{1, 2, true}}}) {
    Result const o = run(rate, drop);
    CHECK(o.y == plain.y);
    CHECK(o.dx == plain.dx);
    CHECK(o.grads == plain.grads);
  }
  double const p = 0.3;
  Result const a = run(p, {1, 2, true}), b = run(p, {1, 3, true});
  CHECK(a.y != plain.y);
  // The saved hidden activation is the dropped one: zero where dropped, gelu / (1 - p) where kept.
  std::int64_t kept = 0, wrong = 0, differ = 0;
  for (std::size_t i = 0; i < a.a.size(); ++i) {
    bool k = a.a[i] != 0.0f;
    kept += k;
    if (k) wrong += !(std::abs(a.a[i] - plain.a[i] / float(1 - p)) <= 1e-6f * std::abs(a.a[i]));
    differ += k != (b.a[i] != 0.0f);
  }
  double const n = double(a.a.size()), frac = double(kept) / n, sd = std::sqrt(p * (1 - p) / n);
  INFO("kept fraction ", frac);
  CHECK(std::abs(frac - (1 - p)) < 5 * sd);
  CHECK(wrong == 0);
  CHECK(double(differ) / n > p * (1 - p));  // another stream: an independent mask (2 p (1 - p) expected)
}

}  // namespace HSEQ_TEST_UNIT
