// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/ops/adamw.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Shape;
using hseq::Tensor;
using hseq::ops::AdamWStep;
using hseq::test::random_tensor;

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

/// torch.optim.AdamW, one step, written out as in its documentation (amsgrad off, maximize off):
///   p <- p - lr * wd * p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
///   m_hat = m / (1 - b1^t);  v_hat = v / (1 - b2^t);  p <- p - lr * m_hat / (sqrt(v_hat) + eps).
void adamw_ref(std::vector<double>& p, std::vector<double> const& g, std::vector<double>& m, std::vector<double>& v,
               AdamWStep const& s) {
  for (std::size_t i = 0; i < p.size(); ++i) {
    p[i] = p[i] - s.lr * s.weight_decay * p[i];
    m[i] = s.beta1 * m[i] + (1 - s.beta1) * g[i];
    v[i] = s.beta2 * v[i] + (1 - s.beta2) * g[i] * g[i];
    double m_hat = m[i] / (1 - std::pow(s.beta1, double(s.step)));
    double v_hat = v[i] / (1 - std::pow(s.beta2, double(s.step)));
    p[i] = p[i] - s.lr * m_hat / (std::sqrt(v_hat) + s.eps);
  }
}

template <class T>
std::vector<double> to_vec(Tensor<T, hseq::cpu> const& t) {
  return std::vector<double>(t.data(), t.data() + t.numel());
}

template <class T>
void run_steps(std::int64_t n, double wd) {
  hseq::cpu::Context ctx;
  auto p = random_tensor<T>(Shape{n}, 1), g1 = random_tensor<T>(Shape{n}, 2, 0.1), g2 = random_tensor<T>(Shape{n}, 3, 0.1);
  Tensor<T, hseq::cpu> m(Shape{n}), v(Shape{n});
  std::fill(m.data(), m.data() + n, T(0));
  std::fill(v.data(), v.data() + n, T(0));
  auto rp = to_vec(p), rm = to_vec(m), rv = to_vec(v);
  std::vector<double> m_mag(std::size_t(n), 0.0);  // the same recursion on |g|: the scale of m's rounding error
  AdamWStep s;
  s.lr = 0.01;
  s.beta1 = 0.9;
  s.beta2 = 0.99;
  s.eps = 1e-8;
  s.weight_decay = wd;
  double const tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  for (int t = 1; t <= 2; ++t) {
    s.step = t;
    auto const& g = t == 1 ? g1 : g2;
    hseq::ops::adamw_update<T>(ctx, p.view(), g.cview(), m.view(), v.view(), s);
    adamw_ref(rp, to_vec(g), rm, rv, s);
    for (std::int64_t i = 0; i < n; ++i)
      m_mag[std::size_t(i)] = s.beta1 * m_mag[std::size_t(i)] + (1 - s.beta1) * std::abs(double(g.data()[i]));
    std::int64_t bad_p = 0, bad_m = 0, bad_v = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      std::size_t k = std::size_t(i);
      bad_p += !(std::abs(double(p.data()[i]) - rp[k]) <= tol * (1 + std::abs(rp[k])));
      bad_m += !(std::abs(double(m.data()[i]) - rm[k]) <= tol * m_mag[k] + 1e-30);
      bad_v += !(std::abs(double(v.data()[i]) - rv[k]) <= tol * std::abs(rv[k]) + 1e-30);
    }
    INFO("step ", t, ", n ", n, ", weight decay ", wd);
    CHECK(bad_p == 0);
    CHECK(bad_m == 0);
    CHECK(bad_v == 0);
  }
}
}  // namespace

TEST_CASE_TEMPLATE("adamw: one and two steps match the PyTorch formula", T, float, double) {
  for (double wd : {0.0, 0.1}) {
    run_steps<T>(17, wd);
    run_steps<T>(40000, wd);  // above the OpenMP threshold
  }
}

TEST_CASE("adamw: the first step moves every parameter by lr against the gradient's sign") {
  // With m = v = 0, step 1: m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps).
  hseq::cpu::Context ctx;
  Tensor<double, hseq::cpu> p(Shape{4}), g(Shape{4}), m(Shape{4}), v(Shape{4});
  double const gs[4] = {3.0, -0.5, 1e-3, -200.0};
  for (int i = 0; i < 4; ++i) {
    p.data()[i] = 1.0;
    g.data()[i] = gs[i];
    m.data()[i] = v.data()[i] = 0.0;
  }
  AdamWStep s;
  s.lr = 0.1;
  s.eps = 1e-12;
  hseq::ops::adamw_update<double>(ctx, p.view(), g.cview(), m.view(), v.view(), s);
  for (int i = 0; i < 4; ++i) {
    CHECK(p.data()[i] == doctest::Approx(gs[i] > 0 ? 0.9 : 1.1).epsilon(1e-9));
    CHECK(m.data()[i] == doctest::Approx(0.1 * gs[i]).epsilon(1e-15));
    CHECK(v.data()[i] == doctest::Approx(0.001 * gs[i] * gs[i]).epsilon(1e-12));
  }
  // Decoupled weight decay with a zero gradient: p <- p (1 - lr wd) exactly, moments stay 0.
  std::fill(g.data(), g.data() + 4, 0.0);
  std::fill(m.data(), m.data() + 4, 0.0);
  std::fill(v.data(), v.data() + 4, 0.0);
  std::fill(p.data(), p.data() + 4, 2.0);
  s.weight_decay = 0.5;
  s.step = 3;
  hseq::ops::adamw_update<double>(ctx, p.view(), g.cview(), m.view(), v.view(), s);
  for (int i = 0; i < 4; ++i) CHECK(p.data()[i] == doctest::Approx(2.0 * (1 - 0.1 * 0.5)).epsilon(1e-15));
}

TEST_CASE("adamw: size mismatches throw naming the shapes") {
  hseq::cpu::Context ctx;
  Tensor<float, hseq::cpu> p(Shape{4}), g(Shape{5}), m(Shape{4}), v(Shape{4});
  std::string msg = error_of([&] { hseq::ops::adamw_update<float>(ctx, p.view(), g.cview(), m.view(), v.view(), {}); });
  CHECK(msg.find("[5]") != std::string::npos);
  CHECK(msg.find("[4]") != std::string::npos);
  Tensor<float, hseq::cpu> g4(Shape{4}), v3(Shape{3});
  CHECK_THROWS_AS(hseq::ops::adamw_update<float>(ctx, p.view(), g4.cview(), m.view(), v3.view(), {}), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
