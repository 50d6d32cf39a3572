// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/ops/cross_entropy.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::Shape;
using hseq::Tensor;
using hseq::View;
using hseq::test::random_tensor;
using DT = Tensor<double, hseq::cpu>;
using IT = Tensor<std::int32_t, hseq::cpu>;

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

IT targets_of(std::vector<std::int32_t> const& t) {
  IT out(Shape{std::int64_t(t.size())});
  std::copy(t.begin(), t.end(), out.data());
  return out;
}
}  // namespace

TEST_CASE_TEMPLATE("cross_entropy: uniform logits cost ln V", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t v : {2, 10, 1000}) {
    Tensor<T, hseq::cpu> logits(Shape{2, 3, v}), losses(Shape{2, 3});
    for (std::int64_t i = 0; i < logits.numel(); ++i) logits.data()[i] = T(i / v) * T(0.5) - T(7);  // constant per row
    auto targets = targets_of({0, std::int32_t(v - 1), 1, 0, std::int32_t(v / 2), 1});
    std::int64_t counted = hseq::ops::cross_entropy_forward<T>(ctx, logits.cview(), targets.cview(), losses.view());
    CHECK(counted == 6);
    for (std::int64_t i = 0; i < 6; ++i) CHECK(double(losses.data()[i]) == doctest::Approx(std::log(double(v))).epsilon(1e-6));
  }
}

TEST_CASE("cross_entropy: known value and numerical stability") {
  hseq::cpu::Context ctx;
  // logits [0, ln 2, ln 3]: softmax = [1, 2, 3] / 6, so the loss of target 2 is ln 2, of target 0 is ln 6.
  DT logits(Shape{3, 3}), losses(Shape{3});
  double xs[9] = {0, std::log(2.0), std::log(3.0), 0, std::log(2.0), std::log(3.0), 5000, 5000 + std::log(2.0),
                  5000 + std::log(3.0)};
  std::copy(xs, xs + 9, logits.data());
  auto targets = targets_of({2, 0, 1});
  CHECK(hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), targets.cview(), losses.view()) == 3);
  CHECK(losses.data()[0] == doctest::Approx(std::log(2.0)).epsilon(1e-14));
  CHECK(losses.data()[1] == doctest::Approx(std::log(6.0)).epsilon(1e-14));
  CHECK(losses.data()[2] == doctest::Approx(std::log(3.0)).epsilon(1e-12));  // huge logits do not overflow
}

TEST_CASE("cross_entropy: ignored targets give 0 and are not counted") {
  hseq::cpu::Context ctx;
  auto logits = random_tensor<double>(Shape{5, 4}, 1);
  DT losses(Shape{5});
  std::fill(losses.data(), losses.data() + 5, std::nan(""));
  auto targets = targets_of({-1, 2, -1, -7, 3});
  CHECK(hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), targets.cview(), losses.view()) == 2);
  CHECK(losses.data()[0] == 0.0);
  CHECK(losses.data()[2] == 0.0);
  CHECK(losses.data()[3] == 0.0);
  for (std::int64_t i : {1, 4}) {
    double lse = 0;
    for (std::int64_t j = 0; j < 4; ++j) lse += std::exp(logits.data()[i * 4 + j]);
    CHECK(losses.data()[i] == doctest::Approx(std::log(lse) - logits.data()[i * 4 + targets.data()[i]]).epsilon(1e-13));
  }
  auto all_ignored = targets_of({-1, -1, -1, -1, -1});
  CHECK(hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), all_ignored.cview(), losses.view()) == 0);
}

TEST_CASE("cross_entropy: a target outside the vocabulary throws naming it") {
  hseq::cpu::Context ctx;
  auto logits = random_tensor<double>(Shape{3, 4}, 2);
  DT losses(Shape{3});
  auto targets = targets_of({1, 7, 0});
  std::string msg = error_of([&] { hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), targets.cview(), losses.view()); });
  CHECK(msg.find("target 7") != std::string::npos);
  CHECK(msg.find("row 1") != std::string::npos);
  auto edge = targets_of({4, 0, 0});  // == V is already outside
  CHECK_THROWS_AS(hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), edge.cview(), losses.view()), hseq::Error);
  // Row-count mismatches name the shapes.
  auto two = targets_of({0, 1});
  msg = error_of([&] { hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), two.cview(), losses.view()); });
  CHECK(msg.find("[3, 4]") != std::string::npos);
  CHECK(msg.find("[2]") != std::string::npos);
  DT losses_bad(Shape{4});
  auto ok = targets_of({0, 1, 2});
  CHECK_THROWS_AS(hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), ok.cview(), losses_bad.view()), hseq::Error);
  DT dl_bad(Shape{4, 3});
  CHECK_THROWS_AS(hseq::ops::cross_entropy_backward<double>(ctx, logits.cview(), ok.cview(), 1.0, dl_bad.view()), hseq::Error);
}

TEST_CASE_TEMPLATE("cross_entropy: backward equals dloss * (softmax - onehot)", T, float, double) {
  hseq::cpu::Context ctx;
  for (std::int64_t n : {std::int64_t(6), std::int64_t(400)}) {  // the second crosses the OpenMP threshold
    std::int64_t const v = 50;
    auto logits = random_tensor<T>(Shape{n, v}, 3, 3.0);
    IT targets(Shape{n});
    for (std::int64_t i = 0; i < n; ++i) targets.data()[i] = i % 5 == 4 ? -1 : std::int32_t((i * 7) % v);
    Tensor<T, hseq::cpu> dl(logits.shape());
    T const dloss = T(0.125);
    hseq::ops::cross_entropy_backward<T>(ctx, logits.cview(), targets.cview(), dloss, dl.view());
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (std::int64_t j = 0; j < v; ++j) s += std::exp(double(logits.data()[i * v + j]));
      for (std::int64_t j = 0; j < v; ++j) {
        double want = targets.data()[i] < 0
                          ? 0.0
                          : double(dloss) * (std::exp(double(logits.data()[i * v + j])) / s - (j == targets.data()[i]));
        double got = double(dl.data()[i * v + j]);
        if (targets.data()[i] < 0) bad += got != 0.0;
        else bad += !(std::abs(got - want) <= (std::is_same_v<T, float> ? 1e-7 : 1e-16) + 1e-6 * std::abs(want));
      }
    }
    CHECK(bad == 0);
    // dlogits may alias logits.
    std::vector<T> first(dl.data(), dl.data() + dl.numel());
    hseq::ops::cross_entropy_backward<T>(ctx, logits.cview(), targets.cview(), dloss, logits.view());
    bad = 0;
    for (std::int64_t i = 0; i < dl.numel(); ++i) bad += logits.data()[i] != first[std::size_t(i)];
    CHECK(bad == 0);
  }
}

TEST_CASE("cross_entropy: backward matches finite differences of the summed loss") {
  hseq::cpu::Context ctx;
  auto logits = random_tensor<double>(Shape{4, 7}, 4, 2.0);
  auto targets = targets_of({3, -1, 0, 6});
  DT losses(Shape{4}), dl(logits.shape());
  double const dloss = 0.5;  // d(0.5 * sum of losses)
  auto loss = [&] {
    hseq::ops::cross_entropy_forward<double>(ctx, logits.cview(), targets.cview(), losses.view());
    double s = 0;
    for (int i = 0; i < 4; ++i) s += dloss * losses.data()[i];
    return s;
  };
  auto grads = [&] { hseq::ops::cross_entropy_backward<double>(ctx, logits.cview(), targets.cview(), dloss, dl.view()); };
  hseq::test::GradCheck gc;
  gc.input("logits", logits.view(), dl.view()).run(loss, grads);
  // Every counted row of the gradient sums to zero.
  for (int i = 0; i < 4; ++i) {
    double s = 0;
    for (int j = 0; j < 7; ++j) s += dl.data()[i * 7 + j];
    CHECK(std::abs(s) < 1e-15);
  }
}

TEST_CASE("cross_entropy: backward also rejects a target outside the vocabulary") {
  hseq::cpu::Context ctx;
  std::vector<float> logits(3, 0.f), dlogits(3);
  std::vector<std::int32_t> targets{100};
  hseq::View<float const, hseq::HostSpace> l(logits.data(), hseq::Shape{1, 3});
  hseq::View<std::int32_t const, hseq::HostSpace> t(targets.data(), hseq::Shape{1});
  hseq::View<float, hseq::HostSpace> d(dlogits.data(), hseq::Shape{1, 3});
  CHECK_THROWS_WITH_AS(hseq::ops::cross_entropy_backward<float>(ctx, l, t, 1.f, d), doctest::Contains("target 100"),
                       hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
