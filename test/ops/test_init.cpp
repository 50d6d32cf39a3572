// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "hseq/ops/init.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Shape;
using hseq::Tensor;
using hseq::ops::InitSpec;

TEST_CASE_TEMPLATE("init: zeros and ones are exact", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t n : {std::int64_t(7), std::int64_t(40000)}) {
    Tensor<T, hseq::cpu> v(Shape{n});
    std::fill(v.data(), v.data() + n, T(-123));
    hseq::ops::init_param<T>(ctx, v.view(), InitSpec::zeros(), 1, 2);
    std::int64_t bad = 0;
    for (T x : v.view()) bad += x != T(0);
    CHECK(bad == 0);
    hseq::ops::init_param<T>(ctx, v.view(), InitSpec::ones(), 1, 2);
    bad = 0;
    for (T x : v.view()) bad += x != T(1);
    CHECK(bad == 0);
  }
  CHECK(InitSpec{}.kind == InitSpec::Kind::kZeros);
}

TEST_CASE("init: normal has the requested standard deviation") {
  hseq::cpu::Context ctx;
  std::int64_t const n = 100000;
  double const std_dev = 0.02;
  Tensor<double, hseq::cpu> v(Shape{n});
  hseq::ops::init_param<double>(ctx, v.view(), InitSpec::normal(std_dev), 42, 3);
  double s = 0, s2 = 0;
  for (double x : v.view()) {
    s += x;
    s2 += x * x;
  }
  double mean = s / n, var = s2 / n - mean * mean;
  // 5 standard errors: sd(mean) = std / sqrt(N); sd(var) = std^2 sqrt(2 / N).
  CHECK(std::abs(mean) < 5 * std_dev / std::sqrt(double(n)));
  CHECK(std::abs(var - std_dev * std_dev) < 5 * std_dev * std_dev * std::sqrt(2.0 / n));
}

TEST_CASE("init: uniform lies in [-a, a) with variance a^2 / 3") {
  hseq::cpu::Context ctx;
  std::int64_t const n = 100000;
  double const a = 0.5;
  Tensor<double, hseq::cpu> v(Shape{n});
  hseq::ops::init_param<double>(ctx, v.view(), InitSpec::uniform(a), 7, 1);
  double s = 0, s2 = 0;
  bool in_range = true;
  for (double x : v.view()) {
    in_range = in_range && x >= -a && x < a;
    s += x;
    s2 += x * x;
  }
  CHECK(in_range);
  double mean = s / n, var = s2 / n - mean * mean;
  // sd(mean) = a / sqrt(3 N); Var(x^2) for U(-a, a) is 4 a^4 / 45, so sd(var) ~ a^2 sqrt(4 / (45 N)).
  CHECK(std::abs(mean) < 5 * a / std::sqrt(3.0 * n));
  CHECK(std::abs(var - a * a / 3) < 5 * a * a * std::sqrt(4.0 / (45.0 * n)));
}

TEST_CASE("init: values are a function of (seed, stream, index) only") {
  hseq::cpu::Context ctx;
  std::int64_t const n = 500;
  Tensor<double, hseq::cpu> a(Shape{n}), b(Shape{n}), other_stream(Shape{n}), other_seed(Shape{n}), prefix(Shape{10, 3});
  auto spec = InitSpec::normal(1.5);
  hseq::ops::init_param<double>(ctx, a.view(), spec, 11, 4);
  hseq::ops::init_param<double>(ctx, b.view(), spec, 11, 4);
  hseq::ops::init_param<double>(ctx, other_stream.view(), spec, 11, 5);
  hseq::ops::init_param<double>(ctx, other_seed.view(), spec, 12, 4);
  hseq::ops::init_param<double>(ctx, prefix.view(), spec, 11, 4);  // a different shape, same (seed, stream)
  std::int64_t same_diff = 0, stream_same = 0, seed_same = 0, prefix_diff = 0, formula_diff = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    same_diff += a.data()[i] != b.data()[i];
    stream_same += a.data()[i] == other_stream.data()[i];
    seed_same += a.data()[i] == other_seed.data()[i];
    if (i < prefix.numel()) prefix_diff += a.data()[i] != prefix.data()[i];
    formula_diff += a.data()[i] != 1.5 * hseq::philox_normal(11, 4, std::uint64_t(i));
  }
  CHECK(same_diff == 0);
  CHECK(stream_same == 0);
  CHECK(seed_same == 0);
  CHECK(prefix_diff == 0);
  CHECK(formula_diff == 0);
  // float gets the same draws, rounded.
  Tensor<float, hseq::cpu> f(Shape{n});
  hseq::ops::init_param<float>(ctx, f.view(), spec, 11, 4);
  std::int64_t float_diff = 0;
  for (std::int64_t i = 0; i < n; ++i) float_diff += f.data()[i] != float(a.data()[i]);
  CHECK(float_diff == 0);
  // Parallel and serial sizes draw the same values for the same indices.
  Tensor<double, hseq::cpu> big(Shape{40000});
  hseq::ops::init_param<double>(ctx, big.view(), spec, 11, 4);
  std::int64_t big_diff = 0;
  for (std::int64_t i = 0; i < n; ++i) big_diff += big.data()[i] != a.data()[i];
  CHECK(big_diff == 0);
  CHECK(big.data()[39999] == 1.5 * hseq::philox_normal(11, 4, 39999));
}

}  // namespace HSEQ_TEST_UNIT
