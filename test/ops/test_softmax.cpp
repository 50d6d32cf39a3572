// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/ops/softmax.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::Shape;
using hseq::Tensor;
using hseq::View;
using hseq::ops::AttentionMask;
using hseq::test::random_tensor;
using DT = Tensor<double, hseq::cpu>;

namespace {
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "<no exception>";
}

/// Naive masked softmax of x [R, Tq, Tk] in long double: row (r, i) normalises exp(scale x) over the
/// keys j with mask.allowed(i, j); other entries 0; a row that allows nothing is all 0.
std::vector<double> masked_ref(View<double const, HostSpace> x, AttentionMask mask, double scale, std::int64_t prefix) {
  std::int64_t tk = x.size(-1), tq = x.size(-2), rows = x.rows();
  std::vector<double> y(std::size_t(x.numel()), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t i = r % tq;
    long double mx = -1e300L, s = 0;
    bool any = false;
    for (std::int64_t j = 0; j < tk; ++j)
      if (mask.allowed(i, j, tk, prefix)) {
        mx = std::max<long double>(mx, scale * x[r * tk + j]);
        any = true;
      }
    if (!any) continue;
    for (std::int64_t j = 0; j < tk; ++j)
      if (mask.allowed(i, j, tk, prefix)) s += std::exp((long double)scale * x[r * tk + j] - mx);
    for (std::int64_t j = 0; j < tk; ++j)
      if (mask.allowed(i, j, tk, prefix))
        y[std::size_t(r * tk + j)] = double(std::exp((long double)scale * x[r * tk + j] - mx) / s);
  }
  return y;
}
}  // namespace

TEST_CASE("softmax: known values") {
  hseq::cpu::Context ctx;
  // softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6; adding a constant to a row changes nothing.
  DT x(Shape{3, 3}), y(Shape{3, 3});
  double xs[9] = {0, std::log(2.0), std::log(3.0), 1000, 1000 + std::log(2.0), 1000 + std::log(3.0), -5, -5, -5};
  std::copy(xs, xs + 9, x.data());
  hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view());
  for (int r = 0; r < 2; ++r) {
    CHECK(y.data()[r * 3 + 0] == doctest::Approx(1.0 / 6).epsilon(1e-13));
    CHECK(y.data()[r * 3 + 1] == doctest::Approx(2.0 / 6).epsilon(1e-13));
    CHECK(y.data()[r * 3 + 2] == doctest::Approx(3.0 / 6).epsilon(1e-13));
  }
  for (int j = 0; j < 3; ++j) CHECK(y.data()[6 + j] == doctest::Approx(1.0 / 3).epsilon(1e-15));
  // In place (y aliases x), float.
  Tensor<float, hseq::cpu> xf(Shape{1, 2});
  xf.data()[0] = 0.0f;
  xf.data()[1] = std::log(3.0f);
  hseq::ops::softmax_forward<float>(ctx, xf.cview(), xf.view());
  CHECK(xf.data()[0] == doctest::Approx(0.25).epsilon(1e-6));
  CHECK(xf.data()[1] == doctest::Approx(0.75).epsilon(1e-6));
  DT bad(Shape{3, 2});
  std::string msg = error_of([&] { hseq::ops::softmax_forward<double>(ctx, x.cview(), bad.view()); });
  CHECK(msg.find("[3, 3]") != std::string::npos);
  CHECK(msg.find("[3, 2]") != std::string::npos);
}

TEST_CASE("softmax: plain softmax matches the unmasked reference on random rows") {
  hseq::cpu::Context ctx;
  for (std::int64_t rows : {std::int64_t(4), std::int64_t(300)}) {  // the second crosses the OpenMP threshold
    auto x = random_tensor<double>(Shape{rows, 70}, 1, 4.0);
    DT y(x.shape());
    hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view());
    auto want = masked_ref(x.cview(), AttentionMask::none(), 1.0, 0);
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) bad += !(std::abs(y.data()[i] - want[std::size_t(i)]) <= 1e-14);
    CHECK(bad == 0);
  }
}

TEST_CASE("softmax: causal mask zeroes entries above the diagonal exactly") {
  hseq::cpu::Context ctx;
  std::int64_t const b = 3, t = 6;
  auto x = random_tensor<double>(Shape{b, t, t}, 2, 3.0);
  DT y(x.shape());
  hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view(), AttentionMask::causal());
  auto want = masked_ref(x.cview(), AttentionMask::causal(), 1.0, 0);
  for (std::int64_t r = 0; r < b; ++r)
    for (std::int64_t i = 0; i < t; ++i) {
      double sum = 0;
      for (std::int64_t j = 0; j < t; ++j) {
        double v = y.data()[(r * t + i) * t + j];
        sum += v;
        if (j > i) CHECK(v == 0.0);
        else CHECK(v > 0.0);
        CHECK(std::abs(v - want[std::size_t((r * t + i) * t + j)]) <= 1e-15);
      }
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-14));
    }
  CHECK(y.data()[0] == 1.0);  // the first query sees only itself
}

TEST_CASE("softmax: rate masks match AttentionMask::allowed, blind rows are all zero") {
  hseq::cpu::Context ctx;
  struct Case {
    AttentionMask mask;
    std::int64_t tq, tk, prefix;
    double scale;
  };
  std::vector<Case> cases = {
      {AttentionMask::rates(1, 0, 3, 0), 9, 3, 0, 1.0},    // upsampling: p sees j <= p / 3
      {AttentionMask::rates(3, 2, 1, 0), 3, 9, 0, 0.5},    // pooling: j sees keys <= 3 j + 2
      {AttentionMask::rates(1, 0, 1, 2), 5, 5, 0, 1.0},    // rows 0, 1 see nothing
      {AttentionMask::rates(1, 0, 1, 2), 5, 7, 2, 2.0},    // ... unless there is a prefix
      {AttentionMask::causal(), 4, 7, 3, 0.25},            // causal with a 3-key memory
      {AttentionMask::rates(2, -5, 2, 0), 6, 6, 0, 1.0},  // negative offset
  };
  for (auto const& c : cases) {
    INFO("mask ", c.mask, ", Tq ", c.tq, ", Tk ", c.tk, ", prefix ", c.prefix, ", scale ", c.scale);
    auto x = random_tensor<double>(Shape{2, c.tq, c.tk}, 3, 2.0);
    DT y(x.shape());
    std::fill(y.data(), y.data() + y.numel(), std::nan(""));
    hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view(), c.mask, c.scale, c.prefix);
    auto want = masked_ref(x.cview(), c.mask, c.scale, c.prefix);
    std::int64_t wrong_zero = 0, wrong_value = 0, blind_rows = 0;
    for (std::int64_t r = 0; r < 2 * c.tq; ++r) {
      std::int64_t i = r % c.tq;
      bool any = false;
      for (std::int64_t j = 0; j < c.tk; ++j) {
        double v = y.data()[r * c.tk + j];
        bool allowed = c.mask.allowed(i, j, c.tk, c.prefix);
        any = any || allowed;
        if (!allowed) wrong_zero += v != 0.0;
        wrong_value += !(std::abs(v - want[std::size_t(r * c.tk + j)]) <= 1e-14);
      }
      blind_rows += !any;
    }
    CHECK(wrong_zero == 0);
    CHECK(wrong_value == 0);
    if (c.mask.q_offset == 0 && c.mask.k_offset == 2 && c.prefix == 0) CHECK(blind_rows == 4);
  }
}

TEST_CASE("softmax: backward matches finite differences") {
  hseq::cpu::Context ctx;
  struct Case {
    AttentionMask mask;
    std::int64_t tq, tk, prefix;
    double scale;
  };
  for (Case c : {Case{AttentionMask::none(), 3, 5, 0, 1.0}, Case{AttentionMask::causal(), 5, 5, 0, 0.7},
                 Case{AttentionMask::rates(1, 0, 2, 1), 6, 5, 1, 1.3}}) {
    INFO("mask ", c.mask);
    auto x = random_tensor<double>(Shape{2, c.tq, c.tk}, 4), r = random_tensor<double>(x.shape(), 5);
    DT y(x.shape()), dx(x.shape());
    auto loss = [&] {
      hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view(), c.mask, c.scale, c.prefix);
      return hseq::test::dot<double>(y.cview(), r.cview());
    };
    auto grads = [&] {
      hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view(), c.mask, c.scale, c.prefix);
      hseq::ops::softmax_backward<double>(ctx, y.cview(), r.cview(), dx.view(), c.mask, c.scale, c.prefix);
    };
    hseq::test::GradCheck gc;
    gc.input("x", x.view(), dx.view()).run(loss, grads);
    CHECK(gc.elements_checked() == x.numel());
  }
  // Unmasked 2-D form with the default arguments.
  auto x = random_tensor<double>(Shape{4, 6}, 6), r = random_tensor<double>(x.shape(), 7);
  DT y(x.shape()), dx(x.shape());
  hseq::test::GradCheck gc;
  gc.input("x", x.view(), dx.view())
      .run(
          [&] {
            hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view());
            return hseq::test::dot<double>(y.cview(), r.cview());
          },
          [&] {
            hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view());
            hseq::ops::softmax_backward<double>(ctx, y.cview(), r.cview(), dx.view());
          });
}

TEST_CASE("softmax: backward of masked entries is exactly zero, shapes are checked") {
  hseq::cpu::Context ctx;
  auto x = random_tensor<double>(Shape{4, 4}, 8), dy = random_tensor<double>(x.shape(), 9);
  DT y(x.shape()), dx(x.shape());
  hseq::ops::softmax_forward<double>(ctx, x.cview(), y.view(), AttentionMask::causal());
  hseq::ops::softmax_backward<double>(ctx, y.cview(), dy.cview(), dx.view(), AttentionMask::causal());
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = i + 1; j < 4; ++j) CHECK(dx.data()[i * 4 + j] == 0.0);
  CHECK(dx.data()[0] == 0.0);  // a single visible key has zero gradient
  DT bad(Shape{2, 8});
  std::string msg = error_of([&] { hseq::ops::softmax_backward<double>(ctx, y.cview(), dy.cview(), bad.view()); });
  CHECK(msg.find("[2, 8]") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::softmax_forward<double>(ctx, x.cview(), bad.view(), AttentionMask::causal()), hseq::Error);
  DT v1(Shape{4});
  CHECK_THROWS_AS(hseq::ops::softmax_forward<double>(ctx, v1.cview(), v1.view(), AttentionMask::causal()), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
