// SPDX-License-Identifier: MIT
// hier/memory_compressors.hpp: the five compression functions of the Compressive Transformer: values
// against their definitions (loops), gradients of the input and parameters (away from ties for max),
// the most-used selection and its ties, shapes and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hseq/hier/memory_compressors.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using CViewD = View<double const, HostSpace>;

static_assert(hier::CompressionPolicy<hier::MeanPool<2>, cpu, double>);
static_assert(hier::CompressionPolicy<hier::MaxPool<3>, cpu, double>);
static_assert(hier::CompressionPolicy<hier::Conv<4>, cpu, float>);
static_assert(hier::CompressionPolicy<hier::DilatedConv<3>, cpu, double>);
static_assert(hier::CompressionPolicy<hier::MostUsed<2>, cpu, double>);
static_assert(hier::Conv<4>::kLearned && hier::DilatedConv<2>::kLearned && !hier::MaxPool<2>::kLearned);
static_assert(hier::MostUsed<2>::kUsesUsage && !hier::MeanPool<2>::kUsesUsage);

namespace {

template <class P>
using Mod = hier::CompressionModule<P, cpu, double>;

/// Gradient check of compressed = f(old) against old and every parameter.
template <class P>
void gradcheck_compressor(std::int64_t bsz, std::int64_t n, std::int64_t d) {
  cpu::Context ctx;
  Mod<P> m({.dim = d, .factor = P::kRate, .init_std = 0.5});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 31, 0.5);
  auto old = random_tensor(Shape{bsz, n, d}, 1), dold = random_tensor(Shape{bsz, n, d}, 0);
  auto r = random_tensor(Shape{bsz, n / P::kRate, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, n / P::kRate, d});
  std::size_t const plan = m.forward_workspace(bsz, n) + m.backward_workspace(bsz, n);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, old.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, old.cview(), y.view(), a);
    CHECK(a.used() <= m.forward_workspace(bsz, n));
    m.backward(ctx, s, r.cview(), dold.view(), a);
    CHECK(a.high_water() <= plan);
  };
  test::GradCheck gc(ps);
  gc.input("old", old.view(), dold.view());
  gc.run(loss, grads);
}

template <class P>
std::vector<double> compress(Mod<P>& m, Tensor<double, cpu> const& old) {
  cpu::Context ctx;
  std::int64_t const bsz = old.shape()[0], n = old.shape()[1], d = old.shape()[2];
  Workspace<cpu> ws(m.forward_workspace(bsz, n));
  auto a = ws.arena();
  Tensor<double, cpu> y(Shape{bsz, n / P::kRate, d});
  m.forward(ctx, old.cview(), y.view(), a);
  return std::vector<double>(y.data(), y.data() + y.numel());
}

}  // namespace

TEST_CASE("memory compressors: gradients of the input and every parameter (random inputs: no ties for max)") {
  gradcheck_compressor<hier::MeanPool<3>>(2, 6, 4);
  gradcheck_compressor<hier::MaxPool<2>>(2, 6, 4);
  gradcheck_compressor<hier::MaxPool<4>>(1, 8, 3);
  gradcheck_compressor<hier::Conv<3>>(2, 6, 4);
  gradcheck_compressor<hier::DilatedConv<2>>(2, 6, 4);
  gradcheck_compressor<hier::DilatedConv<3>>(2, 6, 4);
  gradcheck_compressor<hier::DilatedConv<4>>(1, 8, 3);
}

TEST_CASE("memory compressors: mean, max and conv values are their definitions") {
  std::int64_t const bsz = 2, n = 6, d = 3, c = 3;
  auto old = random_tensor(Shape{bsz, n, d}, 5);
  auto at = [&](std::int64_t b, std::int64_t t, std::int64_t j) { return old.data()[(b * n + t) * d + j]; };
  Mod<hier::MeanPool<3>> mean({.dim = d, .factor = c});
  Mod<hier::MaxPool<3>> mx({.dim = d, .factor = c});
  auto ym = compress<hier::MeanPool<3>>(mean, old), yx = compress<hier::MaxPool<3>>(mx, old);
  std::int64_t bad = 0;
  for (std::int64_t b = 0; b < bsz; ++b)
    for (std::int64_t i = 0; i < n / c; ++i)
      for (std::int64_t j = 0; j < d; ++j) {
        double s = 0, m = -1e300;
        for (std::int64_t q = 0; q < c; ++q) s += at(b, i * c + q, j), m = std::max(m, at(b, i * c + q, j));
        bad += std::abs(ym[std::size_t((b * (n / c) + i) * d + j)] - s / double(c)) > 1e-15;
        bad += yx[std::size_t((b * (n / c) + i) * d + j)] != m;
      }
  CHECK(bad == 0);
  // Conv: proj(concatenation of the group's c rows), kernel = stride = c.
  Mod<hier::Conv<3>> conv({.dim = d, .factor = c});
  nn::ParamStore<cpu, double> ps(conv);
  test::randomize_params(ps, 6, 0.5);
  auto yc = compress<hier::Conv<3>>(conv, old);
  double const* w = ps.find("proj.weight").value.data;  // [d, c d]
  double const* bias = ps.find("proj.bias").value.data;
  double worst = 0;
  for (std::int64_t b = 0; b < bsz; ++b)
    for (std::int64_t i = 0; i < n / c; ++i)
      for (std::int64_t o = 0; o < d; ++o) {
        double acc = bias[o];
        for (std::int64_t q = 0; q < c; ++q)
          for (std::int64_t j = 0; j < d; ++j) acc += w[o * c * d + q * d + j] * at(b, i * c + q, j);
        worst = std::max(worst, std::abs(acc - yc[std::size_t((b * (n / c) + i) * d + o)]));
      }
  CHECK(worst < 1e-13);
}

TEST_CASE("memory compressors: the dilated convolution stack is its definition, and sees every row of its group") {
  for (std::int64_t c : {std::int64_t(2), std::int64_t(3), std::int64_t(4)}) {
    CAPTURE(c);
    std::int64_t const bsz = 2, n = 2 * c, d = 3;
    hier::DilatedConvCompress<cpu, double> m({.dim = d, .factor = c});
    CHECK(m.depth() == (c == 2 ? 1 : 2));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 7, 0.5);
    auto old = random_tensor(Shape{bsz, n, d}, 8);
    cpu::Context ctx;
    Workspace<cpu> ws(m.forward_workspace(bsz, n));
    auto a = ws.arena();
    Tensor<double, cpu> y(Shape{bsz, 2, d});
    m.forward(ctx, old.cview(), y.view(), a);
    // Loop reference: z_k[t] = Ws z[t - 2^k] + Wh z[t] + bh inside each group; GELU between layers.
    auto gelu = [](double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); };
    double worst = 0;
    for (std::int64_t g = 0; g < bsz * 2; ++g) {
      std::vector<std::vector<double>> z(static_cast<std::size_t>(c), std::vector<double>(static_cast<std::size_t>(d)));
      for (std::int64_t t = 0; t < c; ++t)
        for (std::int64_t j = 0; j < d; ++j) z[std::size_t(t)][std::size_t(j)] = old.data()[(g * c + t) * d + j];
      for (std::int64_t k = 0; k < m.depth(); ++k) {
        std::string const p = "layer" + std::to_string(k) + ".";
        double const* ws_ = ps.find(p + "shift.weight").value.data;
        double const* wh = ps.find(p + "here.weight").value.data;
        double const* bh = ps.find(p + "here.bias").value.data;
        auto next = z;
        for (std::int64_t t = 0; t < c; ++t)
          for (std::int64_t o = 0; o < d; ++o) {
            double acc = bh[o];
            for (std::int64_t j = 0; j < d; ++j) {
              acc += wh[o * d + j] * z[std::size_t(t)][std::size_t(j)];
              if (t - (std::int64_t(1) << k) >= 0) acc += ws_[o * d + j] * z[std::size_t(t - (std::int64_t(1) << k))][std::size_t(j)];
            }
            next[std::size_t(t)][std::size_t(o)] = k + 1 < m.depth() ? gelu(acc) : acc;
          }
        z = next;
      }
      for (std::int64_t o = 0; o < d; ++o) worst = std::max(worst, std::abs(z[std::size_t(c - 1)][std::size_t(o)] - y.data()[g * d + o]));
    }
    CHECK(worst < 1e-12);
    // Every row of a group reaches its compressed memory (and no row of another group does).
    for (std::int64_t t = 0; t < n; ++t) {
      auto moved = random_tensor(Shape{bsz, n, d}, 8);
      moved.data()[(1 * n + t) * d + 1] += 0.5;  // batch row 1, row t (group t / c)
      Workspace<cpu> w2(m.forward_workspace(bsz, n));
      auto a2 = w2.arena();
      Tensor<double, cpu> y2(Shape{bsz, 2, d});
      m.forward(ctx, moved.cview(), y2.view(), a2);
      for (std::int64_t g = 0; g < bsz * 2; ++g) {
        bool same = true;
        for (std::int64_t o = 0; o < d; ++o) same &= y2.data()[g * d + o] == y.data()[g * d + o];
        CHECK(same == (g != 2 + t / c));
      }
    }
  }
}

TEST_CASE("memory compressors: most-used keeps the most attended rows in their order; ties keep the earlier row") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, n = 6, d = 2;
  Mod<hier::MostUsed<3>> m({.dim = d, .factor = 3});
  Tensor<double, cpu> old(Shape{bsz, n, d});
  for (std::int64_t i = 0; i < old.numel(); ++i) old.data()[i] = double(i);  // row r of batch b: 2 (b n + r) + {0, 1}
  // Row 0: usages pick rows 4 and 1 -> kept in order 1, 4. Row 1: a tie between rows 2 and 5 keeps 2.
  std::vector<double> usage{0.1, 0.5, 0.2, 0.0, 0.9, 0.3, /**/ 0.0, 0.1, 0.7, 0.2, 0.3, 0.7};
  Workspace<cpu> ws(m.forward_workspace(bsz, n));
  auto a = ws.arena();
  Tensor<double, cpu> y(Shape{bsz, 2, d});
  auto s = m.forward(ctx, old.cview(), std::span<double const>(usage), y.view(), a);
  CHECK(std::vector<double>(y.data(), y.data() + y.numel()) == std::vector<double>{2, 3, 8, 9, /**/ 16, 17, 22, 23});
  // Backward: the gradient of a kept row is its compressed row's; the others get zero.
  Tensor<double, cpu> dy(Shape{bsz, 2, d}), dold(Shape{bsz, n, d});
  for (std::int64_t i = 0; i < dy.numel(); ++i) dy.data()[i] = double(i + 1);
  m.backward(ctx, s, dy.cview(), dold.view(), a);
  std::vector<double> want(std::size_t(bsz * n * d), 0.0);
  want[2] = 1, want[3] = 2, want[8] = 3, want[9] = 4, want[16] = 5, want[17] = 6, want[22] = 7, want[23] = 8;
  CHECK(std::vector<double>(dold.data(), dold.data() + dold.numel()) == want);
  // Without a usage: a clear error.
  CHECK_THROWS_WITH_AS(m.forward(ctx, old.cview(), y.view(), a), doctest::Contains("needs the memories' usage"), Error);
  CHECK_THROWS_WITH_AS(m.forward(ctx, old.cview(), std::span<double const>(usage.data(), 5), y.view(), a),
                       doctest::Contains("5 usages"), Error);
}

TEST_CASE("memory compressors: shapes that the rate does not divide are named") {
  cpu::Context ctx;
  auto old = random_tensor(Shape{1, 5, 3}, 1);
  Tensor<double, cpu> y(Shape{1, 2, 3});
  Workspace<cpu> ws(1 << 16);
  auto a = ws.arena();
  Mod<hier::MaxPool<2>> mx({.dim = 3, .factor = 2});
  CHECK_THROWS_WITH_AS(mx.forward(ctx, old.cview(), y.view(), a), doctest::Contains("not a multiple of 2"), Error);
  Mod<hier::DilatedConv<2>> dc({.dim = 3, .factor = 2});
  CHECK_THROWS_WITH_AS(dc.forward(ctx, old.cview(), y.view(), a), doctest::Contains("DilatedConvCompress: old [1, 5, 3]"),
                       Error);
  using Dilated = hier::DilatedConvCompress<cpu, double>;
  CHECK_THROWS_WITH_AS(Dilated({.dim = 3, .factor = 1}), doctest::Contains("at least 2"), Error);
}

}  // namespace HSEQ_TEST_UNIT
