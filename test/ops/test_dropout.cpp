// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/ops/dropout.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Shape;
using hseq::Tensor;
using hseq::ops::DropoutKey;
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

/// Positive inputs so that "dropped" (exactly 0) is unambiguous.
template <class T>
Tensor<T, hseq::cpu> positive(std::int64_t n, std::uint64_t seed) {
  Tensor<T, hseq::cpu> x(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) x.data()[i] = T(0.5 + hseq::philox_uniform(seed, 3, std::uint64_t(i)));
  return x;
}

template <class T>
std::vector<bool> kept(Tensor<T, hseq::cpu> const& y) {
  std::vector<bool> k(std::size_t(y.numel()));
  for (std::int64_t i = 0; i < y.numel(); ++i) k[std::size_t(i)] = y.data()[i] != T(0);
  return k;
}
}  // namespace

TEST_CASE_TEMPLATE("dropout: p = 0 is the identity", T, float, double) {
  hseq::cpu::Context ctx;
  auto x = random_tensor<T>(Shape{3, 50}, 1);
  Tensor<T, hseq::cpu> y(x.shape());
  hseq::ops::dropout_forward<T>(ctx, x.cview(), y.view(), 0.0, DropoutKey{1, 2});
  std::int64_t diff = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) diff += y.data()[i] != x.data()[i];
  CHECK(diff == 0);
  hseq::ops::dropout_backward<T>(ctx, x.cview(), y.view(), 0.0, DropoutKey{1, 2});
  diff = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) diff += y.data()[i] != x.data()[i];
  CHECK(diff == 0);
}

TEST_CASE_TEMPLATE("dropout: kept elements are scaled by 1/(1-p), the mask is the documented Philox draw", T, float,
                   double) {
  hseq::cpu::Context ctx;
  std::int64_t const n = 1000;
  double const p = 0.25;
  DropoutKey const key{77, 5};
  auto x = positive<T>(n, 1);
  Tensor<T, hseq::cpu> y(x.shape());
  hseq::ops::dropout_forward<T>(ctx, x.cview(), y.view(), p, key);
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    bool keep = hseq::philox_uniform(key.seed, key.stream, std::uint64_t(i)) >= p;
    T want = keep ? T(x.data()[i] * T(1.0 / (1.0 - p))) : T(0);
    bad += !(std::abs(double(y.data()[i]) - double(want)) <= 1e-6 * std::abs(double(want)));
  }
  CHECK(bad == 0);
}

TEST_CASE("dropout: same key gives the same mask, different keys differ") {
  hseq::cpu::Context ctx;
  std::int64_t const n = 4000;
  double const p = 0.5;
  auto x = positive<float>(n, 2);
  Tensor<float, hseq::cpu> a(x.shape()), b(x.shape()), s(x.shape()), t(x.shape());
  hseq::ops::dropout_forward<float>(ctx, x.cview(), a.view(), p, DropoutKey{10, 1});
  hseq::ops::dropout_forward<float>(ctx, x.cview(), b.view(), p, DropoutKey{10, 1});
  hseq::ops::dropout_forward<float>(ctx, x.cview(), s.view(), p, DropoutKey{11, 1});
  hseq::ops::dropout_forward<float>(ctx, x.cview(), t.view(), p, DropoutKey{10, 2});
  auto ka = kept(a), kb = kept(b), ks = kept(s), kt = kept(t);
  CHECK(ka == kb);
  std::int64_t diff_seed = 0, diff_stream = 0;
  for (std::size_t i = 0; i < ka.size(); ++i) {
    diff_seed += ka[i] != ks[i];
    diff_stream += ka[i] != kt[i];
  }
  // Independent masks with p = 1/2 disagree on half the elements: 2000 +- 32 (sd); far from 0.
  CHECK(diff_seed > 1500);
  CHECK(diff_stream > 1500);
}

TEST_CASE("dropout: the kept fraction is 1 - p") {
  hseq::cpu::Context ctx;
  std::int64_t const n = 100000;  // above the OpenMP threshold
  for (double p : {0.1, 0.3, 0.9}) {
    auto x = positive<float>(n, 3);
    Tensor<float, hseq::cpu> y(x.shape());
    hseq::ops::dropout_forward<float>(ctx, x.cview(), y.view(), p, DropoutKey{2024, 7});
    std::int64_t k = 0;
    for (std::int64_t i = 0; i < n; ++i) k += y.data()[i] != 0.0f;
    double frac = double(k) / double(n), sd = std::sqrt(p * (1 - p) / double(n));
    INFO("p = ", p, ", kept fraction ", frac);
    CHECK(std::abs(frac - (1 - p)) < 5 * sd);  // 5 standard deviations
  }
}

TEST_CASE_TEMPLATE("dropout: backward uses the forward mask", T, float, double) {
  hseq::cpu::Context ctx;
  std::int64_t const n = 3000;
  double const p = 0.4;
  DropoutKey const key{5, 9};
  auto x = positive<T>(n, 4);
  auto dy = random_tensor<T>(Shape{n}, 5);
  Tensor<T, hseq::cpu> y(x.shape()), dx(x.shape());
  hseq::ops::dropout_forward<T>(ctx, x.cview(), y.view(), p, key);
  hseq::ops::dropout_backward<T>(ctx, dy.cview(), dx.view(), p, key);
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    // y = x * m / (1 - p) is linear in x: dy/dx = y / x, so dx = dy * y / x.
    double want = double(dy.data()[i]) * double(y.data()[i]) / double(x.data()[i]);
    bad += !(std::abs(double(dx.data()[i]) - want) <= 1e-5 * (std::abs(want) + 1e-30));
    if (y.data()[i] == T(0)) bad += dx.data()[i] != T(0);
  }
  CHECK(bad == 0);
  // In place: dx aliases dy.
  std::vector<T> expect(dx.data(), dx.data() + n);
  hseq::ops::dropout_backward<T>(ctx, dy.cview(), dy.view(), p, key);
  bad = 0;
  for (std::int64_t i = 0; i < n; ++i) bad += dy.data()[i] != expect[std::size_t(i)];
  CHECK(bad == 0);
}

TEST_CASE("dropout: dropout_kept is dropout_forward's rule; sub keys and derived streams are distinct") {
  hseq::cpu::Context ctx;
  std::int64_t const n = 2000;
  double const p = 0.35;
  DropoutKey const key{99, 12};
  auto x = positive<double>(n, 6);
  Tensor<double, hseq::cpu> y(x.shape());
  hseq::ops::dropout_forward<double>(ctx, x.cview(), y.view(), p, key);
  std::int64_t disagree = 0;
  for (std::int64_t i = 0; i < n; ++i)
    disagree += hseq::ops::dropout_kept(key, std::uint64_t(i), p) != (y.data()[i] != 0);
  CHECK(disagree == 0);
  CHECK(hseq::ops::dropout_kept(key, 5, 0.0));  // p = 0 keeps everything
  // sub(i): the same seed, a stream that depends on i and on the parent stream, reproducibly.
  CHECK(key.sub(3).seed == key.seed);
  CHECK(key.sub(3).stream == key.sub(3).stream);
  std::vector<std::uint64_t> streams;
  for (std::uint64_t i = 0; i < 64; ++i) {
    streams.push_back(key.sub(i).stream);
    streams.push_back(DropoutKey{99, 13}.sub(i).stream);
    streams.push_back(hseq::ops::derive_stream(12, 7, i));  // another tag
  }
  streams.push_back(key.stream);
  std::sort(streams.begin(), streams.end());
  CHECK(std::adjacent_find(streams.begin(), streams.end()) == streams.end());
  // Neighbouring inputs give unrelated streams: about half of the 64 bits differ.
  int const flipped = std::popcount(hseq::ops::derive_stream(0, 1, 0) ^ hseq::ops::derive_stream(0, 1, 1));
  CHECK(flipped > 16);
  CHECK(flipped < 48);
}

TEST_CASE("dropout: p outside [0, 1) and size mismatches throw") {
  hseq::cpu::Context ctx;
  Tensor<float, hseq::cpu> x(Shape{4}), y(Shape{4}), z(Shape{5});
  std::fill(x.data(), x.data() + 4, 1.0f);
  CHECK_THROWS_AS(hseq::ops::dropout_forward<float>(ctx, x.cview(), y.view(), 1.0, {}), hseq::Error);
  CHECK_THROWS_AS(hseq::ops::dropout_forward<float>(ctx, x.cview(), y.view(), -0.1, {}), hseq::Error);
  CHECK_THROWS_AS(hseq::ops::dropout_forward<float>(ctx, x.cview(), y.view(), std::nan(""), {}), hseq::Error);
  CHECK_THROWS_AS(hseq::ops::dropout_backward<float>(ctx, x.cview(), y.view(), 1.5, {}), hseq::Error);
  std::string msg = error_of([&] { hseq::ops::dropout_forward<float>(ctx, x.cview(), y.view(), 1.0, {}); });
  CHECK(msg.find("probability 1") != std::string::npos);
  msg = error_of([&] { hseq::ops::dropout_forward<float>(ctx, x.cview(), z.view(), 0.5, {}); });
  CHECK(msg.find("[4]") != std::string::npos);
  CHECK(msg.find("[5]") != std::string::npos);
  CHECK_NOTHROW(hseq::ops::dropout_forward<float>(ctx, x.cview(), y.view(), 0.999, {}));
}

}  // namespace HSEQ_TEST_UNIT
