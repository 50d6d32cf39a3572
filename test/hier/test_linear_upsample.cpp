// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>

#include "hseq/hier/linear_upsample.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: LinearUpsample (input, projection)") {
  test::check_upsample<hier::LinearUpsample<cpu, double>, false>({.dim = 3, .factor = 2}, 2, 3);
}

namespace {

/// The definition (trax / the paper: Dense(d -> k d), then reshape [B, Ls, k d] -> [B, Ls k, d]),
/// written out with explicit indices: full-rate position i k + r of batch b takes the r-th block
/// of d entries of the projected short vector i, i.e. the projection read as [k, d] (row r, column c
/// at r d + c). With W [k d, d] (PyTorch's [out, in]) and bias [k d]:
///   u[b, i k + r, c] = bias[r d + c] + sum_j W[r d + c, j] y[b, i, j].
double reference(double const* w, double const* bias, double const* y, std::int64_t b, std::int64_t p, std::int64_t c,
                 std::int64_t ls, std::int64_t d, std::int64_t k) {
  std::int64_t i = p / k, r = p % k, o = r * d + c;
  double acc = bias[o];
  for (std::int64_t j = 0; j < d; ++j) acc += w[o * d + j] * y[(b * ls + i) * d + j];
  return acc;
}

}  // namespace

// d = 3 and k = 2 differ, so reading the k d projection as [d, k] (entry c k + r) instead of
// [k, d] (entry r d + c) puts different numbers in different places; batch 2 and 3 short vectors
// check the batch and group strides. The gradient check above cannot see such a layout error (the
// backward mirrors whatever layout the forward uses); this test can.
TEST_CASE("linear_upsample: values match the definition (k d projection read as [k, d]), forward and step") {
  constexpr std::int64_t kB = 2, kLs = 3, kD = 3, kK = 2, kL = kLs * kK;
  cpu::Context ctx;
  hier::LinearUpsample<cpu, double> m({.dim = kD, .factor = kK});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 23, 0.5);  // non-zero bias too
  auto& w = ps.find("proj.weight");
  auto& bias = ps.find("proj.bias");
  REQUIRE(w.shape == (Shape{kK * kD, kD}));
  REQUIRE(bias.shape == (Shape{kK * kD}));
  auto y = test::random_tensor(Shape{kB, kLs, kD}, 5);
  auto res = test::random_tensor(Shape{kB, kL, kD}, 6);  // unused by linear upsampling
  Tensor<double, cpu> u(Shape{kB, kL, kD});
  Workspace<cpu> ws(m.forward_workspace(kB, kL) + m.step_workspace(kB, kL));
  auto a = ws.arena();
  m.forward(ctx, y.cview(), res.cview(), u.view(), a);
  double worst = 0;
  for (std::int64_t b = 0; b < kB; ++b)
    for (std::int64_t p = 0; p < kL; ++p)
      for (std::int64_t c = 0; c < kD; ++c) {
        double ref = reference(w.value.data, bias.value.data, y.data(), b, p, c, kLs, kD, kK);
        worst = std::max(worst, std::abs(u.data()[(b * kL + p) * kD + c] - ref));
      }
  CHECK(worst <= 1e-12);

  // Cached generation: step_short with short vector i, then step_up for positions i k .. i k + k - 1.
  auto st = m.make_step_state(kB, kL);
  Tensor<double, cpu> y1(Shape{kB, 1, kD}), u1(Shape{kB, 1, kD}), x1(Shape{kB, 1, kD});
  double worst_step = 0;
  for (std::int64_t i = 0; i < kLs; ++i) {
    for (std::int64_t b = 0; b < kB; ++b)
      for (std::int64_t c = 0; c < kD; ++c) y1.data()[b * kD + c] = y.data()[(b * kLs + i) * kD + c];
    m.step_short(ctx, st, y1.cview(), i, a);
    for (std::int64_t r = 0; r < kK; ++r) {
      std::int64_t p = i * kK + r;
      m.step_up(ctx, st, x1.cview(), p, u1.view(), a);
      for (std::int64_t b = 0; b < kB; ++b)
        for (std::int64_t c = 0; c < kD; ++c) {
          double ref = reference(w.value.data, bias.value.data, y.data(), b, p, c, kLs, kD, kK);
          worst_step = std::max(worst_step, std::abs(u1.data()[b * kD + c] - ref));
        }
    }
  }
  CHECK(worst_step <= 1e-12);
}

TEST_CASE("linear_upsample: the k d outputs of one short vector become k full-rate vectors") {
  cpu::Context ctx;
  hier::LinearUpsample<cpu, double> m({.dim = 1, .factor = 2});
  nn::ParamStore<cpu, double> ps(m);
  auto w = ps.find("proj.weight").value;  // [2, 1]
  w[0] = 2.0, w[1] = -1.0;
  Tensor<double, cpu> y(Shape{1, 1, 1}), u(Shape{1, 2, 1});
  y.data()[0] = 3.0;
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, y.cview(), {}, u.view(), a);
  CHECK(u.data()[0] == 6.0);
  CHECK(u.data()[1] == -3.0);
}

// Over data-dependent segments (AU-Net's position-indexed unpooling): position t of segment J reads
// slice (t - e_J) mod k of segment J's projection. Rows with segments of different lengths, one
// longer than k (its offsets wrap), a padding segment; the values against the definition, the
// gradients (y and the projection) by finite differences, and cached steps row by row.
TEST_CASE("linear_upsample: over segments, one matrix per offset into a segment (mod k), forward, gradients, steps") {
  constexpr std::int64_t kB = 2, kC = 3, kD = 3, kK = 2, kL = 7;
  cpu::Context ctx;
  using M = hier::LinearUpsample<cpu, double>;
  M m({.dim = kD, .factor = kK});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 29, 0.5);
  // Row 0: segments at 0, 1, 4 (lengths 1, 3, 3); row 1: at 0, 5 (lengths 5, 2) and a padding segment.
  std::vector<std::int64_t> seg{0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 1, 1};
  std::vector<std::int64_t> off{0, 0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4, 0, 1};
  Tensor<std::int32_t, cpu> up(Shape{kB * kL});
  for (std::int64_t i = 0; i < kB * kL; ++i) up.data()[i] = std::int32_t((i / kL) * kC + seg[std::size_t(i)]);
  auto y = test::random_tensor(Shape{kB, kC, kD}, 31);
  Tensor<double, cpu> u(Shape{kB, kL, kD}), dy(Shape{kB, kC, kD});
  Workspace<cpu> ws(m.ragged_forward_workspace(kB, kL, kC) + m.ragged_backward_workspace(kB, kL, kC));
  auto a = ws.arena();
  m.ragged_forward(ctx, y.cview(), {}, up.cview(), u.view(), a);
  auto& w = ps.find("proj.weight");
  auto& bias = ps.find("proj.bias");
  double worst = 0;
  for (std::int64_t i = 0; i < kB * kL; ++i) {
    std::int64_t b = i / kL, j = seg[std::size_t(i)], r = off[std::size_t(i)] % kK;
    for (std::int64_t c = 0; c < kD; ++c)  // position r of the numeric definition's window j
      worst = std::max(worst, std::abs(u.data()[i * kD + c] -
                                       reference(w.value.data, bias.value.data, y.data(), b, j * kK + r, c, kC, kD, kK)));
  }
  CHECK(worst <= 1e-12);
  // Gradients of <u, r> with respect to y and the projection.
  auto r = test::random_tensor(Shape{kB, kL, kD}, 37);
  auto loss = [&] {
    auto al = ws.arena();
    m.ragged_forward(ctx, y.cview(), {}, up.cview(), u.view(), al);
    double l = 0;
    for (std::int64_t i = 0; i < u.numel(); ++i) l += u.data()[i] * r.data()[i];
    return l;
  };
  auto grads = [&] {
    auto ag = ws.arena();
    auto saved = m.ragged_forward(ctx, y.cview(), {}, up.cview(), u.view(), ag);
    m.ragged_backward(ctx, saved, up.cview(), r.cview(), dy.view(), {}, ag);
    CHECK(ag.high_water() <= m.ragged_forward_workspace(kB, kL, kC) + m.ragged_backward_workspace(kB, kL, kC));
  };
  test::GradCheck(ps).input("y", y.view(), dy.view()).run(loss, grads);
  // Cached steps: each row closes its segments at its own positions.
  auto st = m.make_step_state(kB, kL);
  Tensor<double, cpu> y1(Shape{1, 1, kD}), u1(Shape{1, 1, kD});
  auto as = ws.arena();
  m.ragged_forward(ctx, y.cview(), {}, up.cview(), u.view(), as);
  double worst_step = 0;
  for (std::int64_t t = 0; t < kL; ++t)
    for (std::int64_t b = kB - 1; b >= 0; --b) {
      std::int64_t i = b * kL + t;
      if (off[std::size_t(i)] == 0) {
        std::copy_n(y.data() + (b * kC + seg[std::size_t(i)]) * kD, kD, y1.data());
        m.ragged_step_short(ctx, st, b, y1.cview(), seg[std::size_t(i)], as);
      }
      m.ragged_step_up(ctx, st, b, {}, u1.view(), as);
      for (std::int64_t c = 0; c < kD; ++c) worst_step = std::max(worst_step, std::abs(u1.data()[c] - u.data()[i * kD + c]));
    }
  CHECK(worst_step <= 1e-12);
  // A segment index outside the row is named.
  up.data()[3] = std::int32_t(kC);
  auto ab = ws.arena();
  CHECK_THROWS_WITH_AS(m.ragged_forward(ctx, y.cview(), {}, up.cview(), u.view(), ab),
                       doctest::Contains("position 3 of row 0 reads segment row 3"), Error);
}

}  // namespace HSEQ_TEST_UNIT
