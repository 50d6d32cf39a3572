// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "hseq/ops/elementwise.hpp"
#include "support/gradcheck.hpp"

#if defined(_OPENMP)
#include <omp.h>
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

#endif

using hseq::HostSpace;
using hseq::Shape;
using hseq::Tensor;
using hseq::View;
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

/// The tanh approximation written out from its definition.
double gelu_ref(double x) {
  double const pi = std::acos(-1.0);
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / pi) * (x + 0.044715 * x * x * x)));
}

// Sizes on both sides of the OpenMP threshold.
constexpr std::int64_t kSmall = 37;
constexpr std::int64_t kLarge = hseq::ops::kParallelGrain * 2 + 13;
}  // namespace

TEST_CASE_TEMPLATE("elementwise: fill and copy", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t n : {std::int64_t(0), kSmall, kLarge}) {
    Tensor<T, hseq::cpu> x(Shape{n}), y(Shape{n});
    hseq::ops::fill<T>(ctx, x.view(), T(2.5));
    bool all = true;
    for (T v : x.view()) all = all && v == T(2.5);
    CHECK(all);
    for (std::int64_t i = 0; i < n; ++i) x.data()[i] = T(i);
    hseq::ops::copy<T>(ctx, x.cview(), y.view());
    bool same = true;
    for (std::int64_t i = 0; i < n; ++i) same = same && y.data()[i] == T(i);
    CHECK(same);
  }
  // copy only needs equal element counts.
  Tensor<T, hseq::cpu> a(Shape{2, 3}), b(Shape{6}), c(Shape{5});
  for (std::int64_t i = 0; i < 6; ++i) a.data()[i] = T(i + 1);
  hseq::ops::copy<T>(ctx, a.cview(), b.view());
  CHECK(b.data()[5] == T(6));
  std::string msg = error_of([&] { hseq::ops::copy<T>(ctx, a.cview(), c.view()); });
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK(msg.find("[5]") != std::string::npos);
}

TEST_CASE_TEMPLATE("elementwise: add, axpy and scale against naive loops", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t n : {kSmall, kLarge}) {
    auto a = random_tensor<T>(Shape{n}, 1), b = random_tensor<T>(Shape{n}, 2);
    Tensor<T, hseq::cpu> out(Shape{n});
    hseq::ops::add<T>(ctx, a.cview(), b.cview(), out.view());
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < n; ++i) bad += out.data()[i] != a.data()[i] + b.data()[i];
    CHECK(bad == 0);

    // out aliases a.
    std::vector<T> a0(a.data(), a.data() + n);
    hseq::ops::add<T>(ctx, a.cview(), b.cview(), a.view());
    bad = 0;
    for (std::int64_t i = 0; i < n; ++i) bad += a.data()[i] != T(a0[std::size_t(i)] + b.data()[i]);
    CHECK(bad == 0);

    std::vector<T> b0(b.data(), b.data() + n);
    hseq::ops::axpy<T>(ctx, T(-0.5), a.cview(), b.view());
    bad = 0;
    for (std::int64_t i = 0; i < n; ++i) bad += b.data()[i] != T(b0[std::size_t(i)] + T(-0.5) * a.data()[i]);
    CHECK(bad == 0);

    std::vector<T> c0(b.data(), b.data() + n);
    hseq::ops::scale<T>(ctx, b.view(), T(3));
    bad = 0;
    for (std::int64_t i = 0; i < n; ++i) bad += b.data()[i] != T(c0[std::size_t(i)] * T(3));
    CHECK(bad == 0);
  }
  Tensor<T, hseq::cpu> x(Shape{2, 3}), y(Shape{3, 2}), z(Shape{2, 3}), w(Shape{7});
  std::string msg = error_of([&] { hseq::ops::add<T>(ctx, x.cview(), y.cview(), z.view()); });
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK(msg.find("[3, 2]") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::add<T>(ctx, x.cview(), x.cview(), y.view()), hseq::Error);
  CHECK_THROWS_AS(hseq::ops::axpy<T>(ctx, T(1), x.cview(), w.view()), hseq::Error);
}

TEST_CASE_TEMPLATE("elementwise: add_bias and bias_grad against naive loops", T, float, double) {
  hseq::cpu::Context ctx;
  struct Dims {
    std::int64_t b, t, c;
  };
  for (Dims d : {Dims{2, 3, 5}, Dims{3, 7, 150}, Dims{4, 60, 130}}) {  // c > 64 spans several column blocks
    INFO("shape [", d.b, ", ", d.t, ", ", d.c, "]");
    auto y = random_tensor<T>(Shape{d.b, d.t, d.c}, 3);
    auto bias = random_tensor<T>(Shape{d.c}, 4);
    std::vector<T> y0(y.data(), y.data() + y.numel());
    hseq::ops::add_bias<T>(ctx, y.view(), bias.cview());
    std::int64_t bad = 0;
    for (std::int64_t r = 0; r < d.b * d.t; ++r)
      for (std::int64_t j = 0; j < d.c; ++j)
        bad += y.data()[r * d.c + j] != T(y0[std::size_t(r * d.c + j)] + bias.data()[j]);
    CHECK(bad == 0);

    // bias_grad accumulates the column sums into what is already there.
    auto dbias = random_tensor<T>(Shape{d.c}, 5);
    std::vector<T> db0(dbias.data(), dbias.data() + d.c);
    hseq::ops::bias_grad<T>(ctx, y.cview(), dbias.view());
    bad = 0;
    for (std::int64_t j = 0; j < d.c; ++j) {
      double s = 0, mag = 0;
      for (std::int64_t r = 0; r < d.b * d.t; ++r) {
        s += double(y.data()[r * d.c + j]);
        mag += std::abs(double(y.data()[r * d.c + j]));
      }
      double want = double(db0[std::size_t(j)]) + s;
      double tol = (std::is_same_v<T, float> ? 1e-6 : 1e-14) * (mag + std::abs(want) + 1);
      bad += !(std::abs(double(dbias.data()[j]) - want) <= tol);
    }
    CHECK(bad == 0);
  }
  Tensor<T, hseq::cpu> y(Shape{4, 3}), bad_bias(Shape{4});
  std::string msg = error_of([&] { hseq::ops::add_bias<T>(ctx, y.view(), bad_bias.cview()); });
  CHECK(msg.find("[4]") != std::string::npos);
  CHECK(msg.find("[4, 3]") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::bias_grad<T>(ctx, y.cview(), bad_bias.view()), hseq::Error);
}

TEST_CASE("elementwise: gelu values from the tanh formula") {
  hseq::cpu::Context ctx;
  std::vector<double> xs{-6.0, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 2.0, 3.0, 6.0};
  Tensor<double, hseq::cpu> x(Shape{std::int64_t(xs.size())}), y(x.shape());
  std::copy(xs.begin(), xs.end(), x.data());
  hseq::ops::gelu_forward<double>(ctx, x.cview(), y.view());
  for (std::size_t i = 0; i < xs.size(); ++i) {
    INFO("x = ", xs[i]);
    CHECK(y.data()[i] == doctest::Approx(gelu_ref(xs[i])).epsilon(1e-14).scale(1e-300));
  }
  // Hand values: gelu(0) = 0; gelu(x) - gelu(-x) = x for every x (tanh is odd).
  CHECK(y.data()[5] == 0.0);
  CHECK(y.data()[8] - y.data()[2] == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(y.data()[10] - y.data()[1] == doctest::Approx(3.0).epsilon(1e-15));
  // gelu(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.841191990... (tanh(0.833554...) = 0.682383...).
  CHECK(y.data()[8] == doctest::Approx(0.8411919906082768).epsilon(1e-12));
  // The approximation stays within 1e-3 of the exact x Phi(x).
  for (std::size_t i = 0; i < xs.size(); ++i) {
    double exact = 0.5 * xs[i] * std::erfc(-xs[i] / std::sqrt(2.0));
    CHECK(std::abs(y.data()[i] - exact) < 1e-3);
  }

  // float agrees with the double formula to float precision; in place (y aliases x) works.
  Tensor<float, hseq::cpu> xf(Shape{std::int64_t(xs.size())});
  for (std::size_t i = 0; i < xs.size(); ++i) xf.data()[i] = float(xs[i]);
  hseq::ops::gelu_forward<float>(ctx, xf.cview(), xf.view());
  for (std::size_t i = 0; i < xs.size(); ++i) CHECK(std::abs(xf.data()[i] - gelu_ref(xs[i])) <= 1e-6 * (1 + std::abs(xs[i])));
}

TEST_CASE("elementwise: gelu_backward matches central differences") {
  hseq::cpu::Context ctx;
  auto x = random_tensor<double>(Shape{4, 50}, 6, 2.0);
  auto dy = random_tensor<double>(Shape{4, 50}, 7);
  Tensor<double, hseq::cpu> dx(x.shape());
  hseq::ops::gelu_backward<double>(ctx, x.cview(), dy.cview(), dx.view());
  double const h = 1e-5;
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    double xi = x.data()[i];
    double num = (gelu_ref(xi + h) - gelu_ref(xi - h)) / (2 * h) * dy.data()[i];
    bad += !(std::abs(dx.data()[i] - num) <= 1e-8 * (1 + std::abs(num)));
  }
  CHECK(bad == 0);
  // Known slopes: gelu'(0) = 1/2; far out the slope tends to 1 (right) and 0 (left).
  Tensor<double, hseq::cpu> p(Shape{3}), ones(Shape{3}), g(Shape{3});
  p.data()[0] = 0;
  p.data()[1] = 10;
  p.data()[2] = -10;
  std::fill(ones.data(), ones.data() + 3, 1.0);
  hseq::ops::gelu_backward<double>(ctx, p.cview(), ones.cview(), g.view());
  CHECK(g.data()[0] == doctest::Approx(0.5).epsilon(1e-15));
  CHECK(g.data()[1] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(std::abs(g.data()[2]) < 1e-12);
  // dx may alias dy.
  auto dy2 = random_tensor<double>(Shape{4, 50}, 7);
  hseq::ops::gelu_backward<double>(ctx, x.cview(), dy2.cview(), dy2.view());
  bad = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) bad += dy2.data()[i] != dx.data()[i];
  CHECK(bad == 0);
  Tensor<double, hseq::cpu> wrong(Shape{3});
  CHECK_THROWS_AS(hseq::ops::gelu_backward<double>(ctx, x.cview(), dy.cview(), wrong.view()), hseq::Error);
  CHECK_THROWS_AS(hseq::ops::gelu_forward<double>(ctx, x.cview(), wrong.view()), hseq::Error);
}

TEST_CASE("elementwise: float gelu forward and backward agree with the double formula on long arrays") {
  // Long enough for several chunks (and the OpenMP path), not a multiple of any chunk size.
  hseq::cpu::Context ctx;
  std::int64_t const n = kLarge;
  auto x = random_tensor<float>(Shape{n}, 10, 3.0), dy = random_tensor<float>(Shape{n}, 11);
  Tensor<float, hseq::cpu> y(x.shape()), dx(x.shape());
  hseq::ops::gelu_forward<float>(ctx, x.cview(), y.view());
  hseq::ops::gelu_backward<float>(ctx, x.cview(), dy.cview(), dx.view());
  std::int64_t bad_y = 0, bad_dx = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    double xi = x.data()[i], h = 1e-5;
    double gy = gelu_ref(xi), gd = double(dy.data()[i]) * (gelu_ref(xi + h) - gelu_ref(xi - h)) / (2 * h);
    bad_y += !(std::abs(double(y.data()[i]) - gy) <= 1e-6 * (1 + std::abs(xi)));
    bad_dx += !(std::abs(double(dx.data()[i]) - gd) <= 1e-5 * (1 + std::abs(double(dy.data()[i]))));
  }
  CHECK(bad_y == 0);
  CHECK(bad_dx == 0);
}

TEST_CASE_TEMPLATE("elementwise: sum_squares accumulates in double", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t n : {std::int64_t(0), kSmall, kLarge}) {
    auto x = random_tensor<T>(Shape{n}, 8);
    double want = 0;
    for (std::int64_t i = 0; i < n; ++i) want += double(x.data()[i]) * double(x.data()[i]);
    CHECK(hseq::ops::sum_squares<T>(ctx, x.cview()) == doctest::Approx(want).epsilon(1e-12));
  }
  Tensor<T, hseq::cpu> v(Shape{3});
  v.data()[0] = T(3);
  v.data()[1] = T(-4);
  v.data()[2] = T(12);
  CHECK(hseq::ops::sum_squares<T>(ctx, v.cview()) == 169.0);
  // float inputs whose squares overflow float still give the right double sum.
  if constexpr (std::is_same_v<T, float>) {
    v.data()[0] = 1e30f;
    v.data()[1] = 1e30f;
    v.data()[2] = 0.0f;
    CHECK(hseq::ops::sum_squares<T>(ctx, v.cview()) == doctest::Approx(2e60).epsilon(1e-6));
  }
}

TEST_CASE_TEMPLATE("elementwise: sum accumulates in double", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t n : {std::int64_t(0), std::int64_t(1), kSmall, kLarge}) {
    auto x = random_tensor<T>(Shape{n}, 12);
    long double want = 0, mag = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      want += x.data()[i];
      mag += std::abs((long double)x.data()[i]);
    }
    INFO("n = ", n);
    CHECK(std::abs(hseq::ops::sum<T>(ctx, x.cview()) - double(want)) <= 1e-14 * double(mag));
  }
  // 2^24 + 1 + 1 ... is exact in double, not in float.
  Tensor<T, hseq::cpu> v(Shape{3});
  v.data()[0] = T(16777216);
  v.data()[1] = T(1);
  v.data()[2] = T(1);
  CHECK(hseq::ops::sum<T>(ctx, v.cview()) == 16777218.0);
}

#if defined(_OPENMP)
TEST_CASE("elementwise: sum and sum_squares are bit-identical for any thread count") {
  hseq::cpu::Context ctx;
  auto x = random_tensor<float>(Shape{kLarge * 3 + 7}, 13, 5.0);
  int const saved = omp_get_max_threads();
  std::vector<double> sums, squares;
  for (int threads : {1, 2, 3, 7}) {
    omp_set_num_threads(threads);
    sums.push_back(hseq::ops::sum<float>(ctx, x.cview()));
    squares.push_back(hseq::ops::sum_squares<float>(ctx, x.cview()));
  }
  omp_set_num_threads(saved);
  for (std::size_t k = 1; k < sums.size(); ++k) {
    INFO("thread configuration ", k);
    CHECK(sums[k] == sums[0]);
    CHECK(squares[k] == squares[0]);
  }
}
#endif

TEST_CASE_TEMPLATE("elementwise: all_finite detects NaN and Inf anywhere", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t n : {kSmall, kLarge}) {
    auto x = random_tensor<T>(Shape{n}, 9);
    CHECK(hseq::ops::all_finite<T>(ctx, x.cview()));
    for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                  -std::numeric_limits<T>::infinity()})
      for (std::int64_t at : {std::int64_t(0), n / 2, n - 1}) {
        T keep = x.data()[at];
        x.data()[at] = bad;
        INFO("n = ", n, ", bad value at ", at);
        CHECK_FALSE(hseq::ops::all_finite<T>(ctx, x.cview()));
        x.data()[at] = keep;
      }
    CHECK(hseq::ops::all_finite<T>(ctx, x.cview()));
  }
  Tensor<T, hseq::cpu> big(Shape{2});
  big.data()[0] = std::numeric_limits<T>::max();
  big.data()[1] = -std::numeric_limits<T>::denorm_min();
  CHECK(hseq::ops::all_finite<T>(ctx, big.cview()));
  Tensor<T, hseq::cpu> empty(Shape{0});
  CHECK(hseq::ops::all_finite<T>(ctx, empty.cview()));
}

}  // namespace HSEQ_TEST_UNIT
