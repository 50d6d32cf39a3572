// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "hseq/ops/layer_norm.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::Shape;
using hseq::Tensor;
using hseq::View;
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

/// Central-difference gradient of loss() with respect to every element of v.
std::vector<double> numeric_grad(std::function<double()> const& loss, View<double, HostSpace> v, double h = 1e-6) {
  std::vector<double> g(std::size_t(v.numel()));
  for (std::int64_t i = 0; i < v.numel(); ++i) {
    double keep = v[i];
    v[i] = keep + h;
    double lp = loss();
    v[i] = keep - h;
    double lm = loss();
    v[i] = keep;
    g[std::size_t(i)] = (lp - lm) / (2 * h);
  }
  return g;
}

/// Number of elements where |a - n| > rel * max(|a|, |n|) + abs.
std::int64_t mismatches(View<double const, HostSpace> a, std::vector<double> const& n, double rel, double abs) {
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    double x = a[i], y = n[std::size_t(i)];
    bad += !(std::abs(x - y) <= rel * std::max(std::abs(x), std::abs(y)) + abs);
  }
  return bad;
}

/// Naive LayerNorm of one row in long double (two-pass, biased variance).
void ln_ref(double const* x, double const* g, double const* b, double eps, std::int64_t c, double* y) {
  long double m = 0, v = 0;
  for (std::int64_t j = 0; j < c; ++j) m += x[j];
  m /= c;
  for (std::int64_t j = 0; j < c; ++j) v += (x[j] - m) * (x[j] - m);
  v /= c;
  long double r = 1.0L / std::sqrt(v + eps);
  for (std::int64_t j = 0; j < c; ++j) y[j] = double((x[j] - m) * r * g[j] + b[j]);
}
}  // namespace

TEST_CASE("layer_norm: hand-computed row") {
  hseq::cpu::Context ctx;
  // x = [1, 2, 3, 4]: mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
  DT x(Shape{2, 4}), g(Shape{4}), b(Shape{4}), y(Shape{2, 4}), mean(Shape{2}), rstd(Shape{2});
  double xs[8] = {1, 2, 3, 4, 5, 5, 5, 5};
  std::copy(xs, xs + 8, x.data());
  std::fill(g.data(), g.data() + 4, 1.0);
  std::fill(b.data(), b.data() + 4, 0.0);
  hseq::ops::layer_norm_forward<double>(ctx, x.cview(), g.cview(), b.cview(), 0.0, y.view(), mean.view(), rstd.view());
  double const s = std::sqrt(1.25);
  CHECK(mean.data()[0] == 2.5);
  CHECK(rstd.data()[0] == doctest::Approx(1.0 / s).epsilon(1e-15));
  CHECK(y.data()[0] == doctest::Approx(-1.5 / s).epsilon(1e-15));
  CHECK(y.data()[1] == doctest::Approx(-0.5 / s).epsilon(1e-15));
  CHECK(y.data()[2] == doctest::Approx(0.5 / s).epsilon(1e-15));
  CHECK(y.data()[3] == doctest::Approx(1.5 / s).epsilon(1e-15));
  CHECK(y.data()[0] == doctest::Approx(-1.3416407864998738).epsilon(1e-14));

  // gamma and beta; eps inside the square root; a constant row gives exactly beta.
  double gs[4] = {1, 2, -1, 0.5}, bs[4] = {0.1, 0.2, 0.3, 0.4};
  std::copy(gs, gs + 4, g.data());
  std::copy(bs, bs + 4, b.data());
  double const eps = 0.25;
  hseq::ops::layer_norm_forward<double>(ctx, x.cview(), g.cview(), b.cview(), eps, y.view(), mean.view(), rstd.view());
  double const r = 1.0 / std::sqrt(1.25 + eps);
  CHECK(rstd.data()[0] == doctest::Approx(r).epsilon(1e-15));
  for (int j = 0; j < 4; ++j) CHECK(y.data()[j] == doctest::Approx((xs[j] - 2.5) * r * gs[j] + bs[j]).epsilon(1e-15));
  CHECK(mean.data()[1] == 5.0);
  CHECK(rstd.data()[1] == doctest::Approx(1.0 / std::sqrt(eps)).epsilon(1e-15));
  for (int j = 0; j < 4; ++j) CHECK(y.data()[4 + j] == bs[j]);

  // float gives the same to float precision.
  Tensor<float, hseq::cpu> xf(Shape{1, 4}), gf(Shape{4}), bf(Shape{4}), yf(Shape{1, 4}), mf(Shape{1}), rf(Shape{1});
  for (int j = 0; j < 4; ++j) {
    xf.data()[j] = float(xs[j]);
    gf.data()[j] = 1.0f;
    bf.data()[j] = 0.0f;
  }
  hseq::ops::layer_norm_forward<float>(ctx, xf.cview(), gf.cview(), bf.cview(), 0.0f, yf.view(), mf.view(), rf.view());
  for (int j = 0; j < 4; ++j) CHECK(yf.data()[j] == doctest::Approx((xs[j] - 2.5) / s).epsilon(1e-6));
}

TEST_CASE_TEMPLATE("layer_norm: forward matches a naive reference on wide rows", T, float, double) {
  hseq::cpu::Context ctx;
  struct Dims {
    std::int64_t n, c;
  };
  for (Dims d : {Dims{3, 7}, Dims{130, 130}}) {  // the second crosses the OpenMP threshold
    auto x = random_tensor<double>(Shape{d.n, d.c}, 1, 3.0), g = random_tensor<double>(Shape{d.c}, 2),
         b = random_tensor<double>(Shape{d.c}, 3);
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] += 5.0;  // non-zero mean
    Tensor<T, hseq::cpu> xt(x.shape()), gt(g.shape()), bt(b.shape()), y(x.shape()), mean(Shape{d.n}), rstd(Shape{d.n});
    for (std::int64_t i = 0; i < x.numel(); ++i) xt.data()[i] = T(x.data()[i]);
    for (std::int64_t i = 0; i < d.c; ++i) {
      gt.data()[i] = T(g.data()[i]);
      bt.data()[i] = T(b.data()[i]);
    }
    // The reference sees the same (rounded) inputs.
    std::vector<double> xd(xt.data(), xt.data() + x.numel()), gd(gt.data(), gt.data() + d.c), bd(bt.data(), bt.data() + d.c);
    hseq::ops::layer_norm_forward<T>(ctx, xt.cview(), gt.cview(), bt.cview(), T(1e-5), y.view(), mean.view(), rstd.view());
    std::vector<double> want(std::size_t(d.c));
    std::int64_t bad = 0;
    double const tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    for (std::int64_t i = 0; i < d.n; ++i) {
      ln_ref(xd.data() + i * d.c, gd.data(), bd.data(), 1e-5, d.c, want.data());
      for (std::int64_t j = 0; j < d.c; ++j) bad += !(std::abs(double(y.data()[i * d.c + j]) - want[std::size_t(j)]) <= tol * 10);
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("layer_norm: backward matches finite differences") {
  hseq::cpu::Context ctx;
  std::int64_t const n = 5, c = 9;
  double const eps = 1e-5;
  auto x = random_tensor<double>(Shape{n, c}, 11, 2.0), gamma = random_tensor<double>(Shape{c}, 12),
       beta = random_tensor<double>(Shape{c}, 13), r = random_tensor<double>(Shape{n, c}, 14);
  DT y(x.shape()), mean(Shape{n}), rstd(Shape{n}), dx(x.shape()), dg(Shape{c}), db(Shape{c});
  auto forward = [&] {
    hseq::ops::layer_norm_forward<double>(ctx, x.cview(), gamma.cview(), beta.cview(), eps, y.view(), mean.view(),
                                          rstd.view());
  };
  auto loss = [&] {
    forward();
    return hseq::test::dot<double>(y.cview(), r.cview());
  };
  forward();
  std::fill(dg.data(), dg.data() + c, 0.0);
  std::fill(db.data(), db.data() + c, 0.0);
  hseq::ops::layer_norm_backward<double>(ctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), r.cview(), dx.view(),
                                         dg.view(), db.view());
  CHECK(mismatches(dx.cview(), numeric_grad(loss, x.view()), 1e-6, 1e-8) == 0);
  CHECK(mismatches(dg.cview(), numeric_grad(loss, gamma.view()), 1e-6, 1e-8) == 0);
  CHECK(mismatches(db.cview(), numeric_grad(loss, beta.view()), 1e-6, 1e-8) == 0);
  // dbeta is the column sum of dy, exactly what the formula says.
  for (std::int64_t j = 0; j < c; ++j) {
    double s = 0;
    for (std::int64_t i = 0; i < n; ++i) s += r.data()[i * c + j];
    CHECK(db.data()[j] == doctest::Approx(s).epsilon(1e-14));
  }
  // Each row of dx sums to zero (the output is invariant to shifting a row).
  for (std::int64_t i = 0; i < n; ++i) {
    double s = 0, mag = 0;
    for (std::int64_t j = 0; j < c; ++j) {
      s += dx.data()[i * c + j];
      mag += std::abs(dx.data()[i * c + j]);
    }
    CHECK(std::abs(s) <= 1e-13 * mag);
  }
}

TEST_CASE("layer_norm: dx is overwritten, dgamma and dbeta accumulate") {
  hseq::cpu::Context ctx;
  // c = 150 spans three 64-column blocks; n * c crosses the OpenMP threshold.
  for (std::int64_t n : {std::int64_t(3), std::int64_t(120)}) {
    std::int64_t const c = 150;
    auto x = random_tensor<double>(Shape{n, c}, 21), gamma = random_tensor<double>(Shape{c}, 22),
         beta = random_tensor<double>(Shape{c}, 23), dy = random_tensor<double>(Shape{n, c}, 24);
    DT y(x.shape()), mean(Shape{n}), rstd(Shape{n}), dx(x.shape()), dg(Shape{c}), db(Shape{c});
    hseq::ops::layer_norm_forward<double>(ctx, x.cview(), gamma.cview(), beta.cview(), 1e-5, y.view(), mean.view(),
                                          rstd.view());
    std::fill(dg.data(), dg.data() + c, 0.0);
    std::fill(db.data(), db.data() + c, 0.0);
    hseq::ops::layer_norm_backward<double>(ctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(),
                                           dx.view(), dg.view(), db.view());
    std::vector<double> dx1(dx.data(), dx.data() + dx.numel()), dg1(dg.data(), dg.data() + c), db1(db.data(), db.data() + c);
    // Independent check of dgamma: sum_rows dy * xhat.
    std::int64_t bad = 0;
    for (std::int64_t j = 0; j < c; ++j) {
      double s = 0;
      for (std::int64_t i = 0; i < n; ++i)
        s += dy.data()[i * c + j] * (x.data()[i * c + j] - mean.data()[i]) * rstd.data()[i];
      bad += !(std::abs(dg1[std::size_t(j)] - s) <= 1e-12 * (1 + std::abs(s)));
    }
    CHECK(bad == 0);

    std::fill(dx.data(), dx.data() + dx.numel(), std::numeric_limits<double>::quiet_NaN());
    for (std::int64_t j = 0; j < c; ++j) {
      dg.data()[j] = 1.0 + double(j);
      db.data()[j] = -2.0 * double(j);
    }
    hseq::ops::layer_norm_backward<double>(ctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(),
                                           dx.view(), dg.view(), db.view());
    bad = 0;
    for (std::int64_t i = 0; i < dx.numel(); ++i) bad += dx.data()[i] != dx1[std::size_t(i)];
    CHECK(bad == 0);
    bad = 0;
    for (std::int64_t j = 0; j < c; ++j) {
      bad += !(std::abs(dg.data()[j] - (1.0 + double(j) + dg1[std::size_t(j)])) <= 1e-12 * (1 + double(j)));
      bad += !(std::abs(db.data()[j] - (-2.0 * double(j) + db1[std::size_t(j)])) <= 1e-12 * (1 + double(j)));
    }
    CHECK(bad == 0);

    // An empty dx skips the input gradient but still accumulates the parameter gradients.
    std::fill(dg.data(), dg.data() + c, 0.0);
    std::fill(db.data(), db.data() + c, 0.0);
    hseq::ops::layer_norm_backward<double>(ctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(),
                                           View<double, HostSpace>{}, dg.view(), db.view());
    bad = 0;
    for (std::int64_t j = 0; j < c; ++j) bad += dg.data()[j] != dg1[std::size_t(j)] || db.data()[j] != db1[std::size_t(j)];
    CHECK(bad == 0);
  }
}

TEST_CASE("layer_norm: bad shapes throw naming them") {
  hseq::cpu::Context ctx;
  DT x(Shape{2, 4}), y(Shape{2, 4}), y_bad(Shape{4, 2}), g(Shape{4}), g_bad(Shape{3}), m(Shape{2}), m_bad(Shape{3});
  std::string msg = error_of([&] {
    hseq::ops::layer_norm_forward<double>(ctx, x.cview(), g.cview(), g.cview(), 1e-5, y_bad.view(), m.view(), m.view());
  });
  CHECK(msg.find("[2, 4]") != std::string::npos);
  CHECK(msg.find("[4, 2]") != std::string::npos);
  msg = error_of([&] {
    hseq::ops::layer_norm_forward<double>(ctx, x.cview(), g_bad.cview(), g.cview(), 1e-5, y.view(), m.view(), m.view());
  });
  CHECK(msg.find("[3]") != std::string::npos);
  CHECK_THROWS_AS(
      hseq::ops::layer_norm_forward<double>(ctx, x.cview(), g.cview(), g.cview(), 1e-5, y.view(), m_bad.view(), m.view()),
      hseq::Error);
  CHECK_THROWS_AS(hseq::ops::layer_norm_backward<double>(ctx, x.cview(), g.cview(), m.cview(), m.cview(), y.cview(),
                                                         y_bad.view(), g.view(), g.view()),
                  hseq::Error);
  CHECK_THROWS_AS(hseq::ops::layer_norm_backward<double>(ctx, x.cview(), g.cview(), m.cview(), m.cview(), y.cview(),
                                                         y.view(), g_bad.view(), g.view()),
                  hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
