// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>

#include "hseq/hier/linear_pool.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: LinearPoolShorten (input, projection)") {
  test::check_shorten<hier::LinearPoolShorten<cpu, double>>({.dim = 3, .factor = 2}, 2, 6);
}

namespace {

/// The definition (trax / the paper: reshape [B, L, d] -> [B, L / k, k d], then Dense(k d -> d)),
/// written out with explicit indices: group i of batch b concatenates the k full-rate vectors
/// i k .. i k + k - 1 in order, so entry r d + j of the concatenation is x[b, i k + r, j]. With
/// W [d, k d] (PyTorch's [out, in]) and bias [d]:
///   y[b, i, c] = bias[c] + sum_{r < k} sum_{j < d} W[c, r d + j] x[b, i k + r, j].
double reference(double const* w, double const* bias, double const* x, std::int64_t b, std::int64_t i, std::int64_t c,
                 std::int64_t len, std::int64_t d, std::int64_t k) {
  double acc = bias[c];
  for (std::int64_t r = 0; r < k; ++r)
    for (std::int64_t j = 0; j < d; ++j) acc += w[c * (k * d) + r * d + j] * x[(b * len + i * k + r) * d + j];
  return acc;
}

}  // namespace

// d = 3 and k = 2 differ, batch 2 and 3 groups: a concatenation read as [d, k] (x entry j k + r),
// a wrong group or batch stride, or a weight read as [in, out] all give different numbers here.
// The gradient check above cannot see a consistent layout error (the backward mirrors the forward).
TEST_CASE("linear_pool: values match the definition (k vectors concatenated, then Linear), forward and step") {
  constexpr std::int64_t kB = 2, kLs = 3, kD = 3, kK = 2, kL = kLs * kK;
  cpu::Context ctx;
  hier::LinearPoolShorten<cpu, double> m({.dim = kD, .factor = kK});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 29, 0.5);  // non-zero bias too
  auto& w = ps.find("proj.weight");
  auto& bias = ps.find("proj.bias");
  REQUIRE(w.shape == (Shape{kD, kK * kD}));
  REQUIRE(bias.shape == (Shape{kD}));
  auto x = test::random_tensor(Shape{kB, kL, kD}, 7);
  Tensor<double, cpu> y(Shape{kB, kLs, kD});
  Workspace<cpu> ws(m.forward_workspace(kB, kL) + m.step_workspace(kB, kL));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  double worst = 0;
  for (std::int64_t b = 0; b < kB; ++b)
    for (std::int64_t i = 0; i < kLs; ++i)
      for (std::int64_t c = 0; c < kD; ++c) {
        double ref = reference(w.value.data, bias.value.data, x.data(), b, i, c, kL, kD, kK);
        worst = std::max(worst, std::abs(y.data()[(b * kLs + i) * kD + c] - ref));
      }
  CHECK(worst <= 1e-12);

  // Cached generation: step_pool over the window [B, k, d] of group i gives short vector i.
  auto st = m.make_step_state(kB, kL);
  Tensor<double, cpu> window(Shape{kB, kK, kD}), y1(Shape{kB, 1, kD});
  double worst_step = 0;
  for (std::int64_t i = 0; i < kLs; ++i) {
    for (std::int64_t b = 0; b < kB; ++b)
      for (std::int64_t r = 0; r < kK; ++r)
        for (std::int64_t j = 0; j < kD; ++j)
          window.data()[(b * kK + r) * kD + j] = x.data()[(b * kL + i * kK + r) * kD + j];
    m.step_pool(ctx, st, window.cview(), i * kK, y1.view(), a);  // position unused by linear pooling
    for (std::int64_t b = 0; b < kB; ++b)
      for (std::int64_t c = 0; c < kD; ++c) {
        double ref = reference(w.value.data, bias.value.data, x.data(), b, i, c, kL, kD, kK);
        worst_step = std::max(worst_step, std::abs(y1.data()[b * kD + c] - ref));
      }
  }
  CHECK(worst_step <= 1e-12);
}

TEST_CASE("linear_pool: one Linear over each group of k concatenated vectors") {
  cpu::Context ctx;
  hier::LinearPoolShorten<cpu, double> m({.dim = 2, .factor = 2});
  nn::ParamStore<cpu, double> ps(m);
  auto w = ps.find("proj.weight").value;  // [2, 4]
  for (int i = 0; i < 8; ++i) w[i] = i % 5 == 0 ? 1.0 : 0.0;  // rows pick input 0 and input 1 (of 4)
  Tensor<double, cpu> x(Shape{1, 2, 2}), y(Shape{1, 1, 2});
  for (int i = 0; i < 4; ++i) x.data()[i] = double(i + 1);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  CHECK(y.data()[0] == 1.0);
  CHECK(y.data()[1] == 2.0);
}

}  // namespace HSEQ_TEST_UNIT
