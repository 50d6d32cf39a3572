// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/position_embedding.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using Pos = nn::PositionEmbedding<cpu, double>;

TEST_CASE("gradcheck: PositionEmbedding learned (input and table, with an offset)") {
  cpu::Context ctx;
  Pos m({.kind = nn::PositionKind::kLearned, .max_len = 9, .dim = 4});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 2);
  auto x = random_tensor(Shape{2, 5, 4}, 1), dx = random_tensor(Shape{2, 5, 4}, 0);
  auto r = random_tensor(Shape{2, 5, 4}, 2);
  Tensor<double, cpu> y(Shape{2, 5, 4});
  Workspace<cpu> ws(0);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), 3, a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), 3, a);
    m.backward(ctx, s, r.cview(), dx.view(), a);
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
}

TEST_CASE("gradcheck: PositionEmbedding sinusoidal (input)") {
  cpu::Context ctx;
  Pos m({.kind = nn::PositionKind::kSinusoidal, .dim = 6});
  nn::ParamStore<cpu, double> ps(m);
  CHECK(ps.entries().empty());
  auto x = random_tensor(Shape{2, 3, 6}, 1), dx = random_tensor(Shape{2, 3, 6}, 0);
  auto r = random_tensor(Shape{2, 3, 6}, 2);
  Tensor<double, cpu> y(Shape{2, 3, 6});
  Workspace<cpu> ws(0);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), 0, a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), 0, a);
    m.backward(ctx, s, r.cview(), dx.view(), a);
  };
  test::GradCheck().input("x", x.view(), dx.view()).run(loss, grads);
}

TEST_CASE("position_embedding: sinusoid values, in-place use, and the table limit") {
  cpu::Context ctx;
  Pos m({.kind = nn::PositionKind::kSinusoidal, .dim = 4});
  auto x = test::filled_tensor<double>(Shape{1, 3, 4}, 0.0);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), x.view(), 5, a);  // in place
  for (int t = 0; t < 3; ++t)
    for (int j = 0; j < 4; ++j) {
      double angle = (t + 5) / std::pow(10000.0, double(j - j % 2) / 4.0);
      CHECK(x.data()[t * 4 + j] == doctest::Approx(j % 2 ? std::cos(angle) : std::sin(angle)).epsilon(1e-12));
    }
  Pos learned({.kind = nn::PositionKind::kLearned, .max_len = 4, .dim = 4});
  nn::ParamStore<cpu, double> ps(learned);
  CHECK_THROWS_WITH_AS(learned.forward(ctx, x.cview(), x.view(), 2, a), doctest::Contains("max_len"), Error);
  CHECK_THROWS_AS(Pos({.kind = nn::PositionKind::kSinusoidal, .dim = 5}), Error);
}

TEST_CASE("position_embedding: a frozen learned table gets no gradient; dx is unchanged") {
  cpu::Context ctx;
  nn::PositionEmbedding<cpu, double> m({.kind = nn::PositionKind::kLearned, .max_len = 8, .dim = 3});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 3);
  auto x = random_tensor(Shape{2, 4, 3}, 1), dy = random_tensor(Shape{2, 4, 3}, 2);
  Tensor<double, cpu> y(Shape{2, 4, 3}), dx(Shape{2, 4, 3});
  Workspace<cpu> ws(256);
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), 2, a);
    m.backward(ctx, s, dy.cview(), dx.view(), a);
    return std::vector<double>(dx.data(), dx.data() + dx.numel());
  };
  frozen_check::check(ps, run, {"weight"});
}

}  // namespace HSEQ_TEST_UNIT
