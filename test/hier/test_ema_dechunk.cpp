// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "hseq/hier/ema_dechunk.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {

using Ema = hier::EmaDechunk<cpu, double>;

/// P in [0.1, 0.9] from a seeded tensor, with P_0 = first in every row (the router's is 1).
std::vector<double> probabilities(std::int64_t bsz, std::int64_t c, std::uint64_t seed, double first = 1.0) {
  auto r = test::random_tensor<double>(Shape{bsz * c}, seed, 1.0);
  std::vector<double> p(std::size_t(bsz * c));
  for (std::int64_t i = 0; i < bsz * c; ++i)
    p[std::size_t(i)] = i % c == 0 ? first : 0.5 + 0.4 * std::tanh(r.data()[i]);
  return p;
}

}  // namespace

TEST_CASE("ema_dechunk: the recurrence row by row, padding passes through, cached steps equal the forward") {
  cpu::Context ctx;
  std::int64_t const d = 3, bsz = 2, c = 4;
  Ema m({d});
  auto z = test::random_tensor<double>(Shape{bsz, c, d}, 3, 1.0);
  auto p = probabilities(bsz, c, 4);
  std::vector<std::int32_t> count{4, 2};
  Tensor<double, cpu> zs(Shape{bsz, c, d});
  Workspace<cpu> ws(m.forward_workspace(bsz, c));
  auto a = ws.arena();
  Ema::Saved s;
  m.forward(ctx, z.cview(), p, count, zs.view(), s, a);
  for (std::int64_t b = 0; b < bsz; ++b) {
    std::vector<double> prev(std::size_t(d), 0.0);
    for (std::int64_t j = 0; j < c; ++j) {
      double pj = j < count[std::size_t(b)] ? p[std::size_t(b * c + j)] : 1.0;
      for (std::int64_t i = 0; i < d; ++i) {
        std::int64_t at = (b * c + j) * d + i;
        double want = pj * z.data()[at] + (1.0 - pj) * prev[std::size_t(i)];
        CHECK(zs.data()[at] == doctest::Approx(want).epsilon(1e-14));
        prev[std::size_t(i)] = want;
      }
    }
  }
  // A row alone gives the same values (rows never mix).
  Tensor<double, cpu> z1(Shape{1, c, d}), zs1(Shape{1, c, d});
  std::copy(z.data() + c * d, z.data() + 2 * c * d, z1.data());
  Ema::Saved s1;
  a = ws.arena();
  m.forward(ctx, z1.cview(), std::vector<double>(p.begin() + c, p.end()), std::vector<std::int32_t>{2}, zs1.view(), s1,
            a);
  for (std::int64_t i = 0; i < c * d; ++i) CHECK(zs1.data()[i] == zs.data()[c * d + i]);
  // Steps, the rows interleaved at their own segment indices.
  auto st = m.make_step_state(bsz);
  Tensor<double, cpu> out(Shape{1, 1, d});
  for (std::int64_t j = 0; j < c; ++j)
    for (std::int64_t b = bsz - 1; b >= 0; --b) {
      if (j >= count[std::size_t(b)]) continue;
      m.step(ctx, st, b, j, p[std::size_t(b * c + j)],
             View<double const, HostSpace>(z.data() + (b * c + j) * d, Shape{1, 1, d}), out.view());
      for (std::int64_t i = 0; i < d; ++i)
        CHECK(out.data()[i] == doctest::Approx(zs.data()[(b * c + j) * d + i]).epsilon(1e-14));
    }
  // Bad input is named.
  auto bad = p;
  bad[1] = 1.5;
  a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, z.cview(), bad, count, zs.view(), s, a), doctest::Contains("P 1.5"), Error);
  CHECK_THROWS_WITH_AS(m.forward(ctx, z.cview(), p, std::vector<std::int32_t>{5, 1}, zs.view(), s, a),
                       doctest::Contains("row 0 has 5 segments of 4"), Error);
  CHECK_THROWS_WITH_AS(m.step(ctx, st, 0, 1, -0.5, View<double const, HostSpace>(z.data(), Shape{1, 1, d}), out.view()),
                       doctest::Contains("not a probability"), Error);
}

TEST_CASE("gradcheck: EmaDechunk (z and P, padding included) through L = <w, z~>") {
  cpu::Context ctx;
  std::int64_t const d = 4, bsz = 3, c = 5;
  Ema m({d});
  auto z = test::random_tensor<double>(Shape{bsz, c, d}, 11, 1.0);
  auto w = test::random_tensor<double>(Shape{bsz, c, d}, 12, 1.0);
  auto p0 = probabilities(bsz, c, 13, 0.95);  // (P_0 < 1: central differences step both ways)
  Tensor<double, cpu> p(Shape{bsz * c}), dp(Shape{bsz * c}), dz(Shape{bsz, c, d}), zs(Shape{bsz, c, d});
  std::copy(p0.begin(), p0.end(), p.data());
  std::vector<std::int32_t> count{5, 3, 1};
  Workspace<cpu> ws(m.forward_workspace(bsz, c) + m.backward_workspace(bsz, c));
  Ema::Saved s;
  auto run = [&](Arena<HostSpace>& a) {
    m.forward(ctx, z.cview(), std::span<double const>(p.data(), std::size_t(bsz * c)), count, zs.view(), s, a);
  };
  auto loss = [&] {
    auto a = ws.arena();
    run(a);
    double l = 0;
    for (std::int64_t i = 0; i < zs.numel(); ++i) l += w.data()[i] * zs.data()[i];
    return l;
  };
  auto grads = [&] {
    auto a = ws.arena();
    run(a);
    m.backward(ctx, s, w.cview(), dz.view(), std::span<double>(dp.data(), std::size_t(bsz * c)), a);
    CHECK(a.high_water() <= m.forward_workspace(bsz, c) + m.backward_workspace(bsz, c));
  };
  test::GradCheck().input("z", z.view(), dz.view()).input("p", p.view(), dp.view()).run(loss, grads);
  // Padding probabilities get no gradient, real ones do.
  grads();
  CHECK(dp.data()[1 * c + 3] == 0.0);
  CHECK(dp.data()[2 * c + 1] == 0.0);
  CHECK(dp.data()[1 * c + 2] != 0.0);
}

}  // namespace HSEQ_TEST_UNIT
