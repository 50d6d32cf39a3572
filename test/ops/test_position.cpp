// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/ops/position.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Shape;
using hseq::Tensor;
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

/// PE(p, 2i) = sin(p / 10000^(2i / C)), PE(p, 2i + 1) = cos(p / 10000^(2i / C)).
double pe(std::int64_t p, std::int64_t j, std::int64_t c) {
  std::int64_t i2 = j / 2 * 2;
  double angle = double(p) / std::pow(10000.0, double(i2) / double(c));
  return j % 2 == 0 ? std::sin(angle) : std::cos(angle);
}
}  // namespace

TEST_CASE_TEMPLATE("position: learned table add at an offset", T, float, double) {
  hseq::cpu::Context ctx;
  std::int64_t const b = 2, t = 3, c = 4, tmax = 8, offset = 5;
  auto x = random_tensor<T>(Shape{b, t, c}, 1), table = random_tensor<T>(Shape{tmax, c}, 2);
  std::vector<T> x0(x.data(), x.data() + x.numel());
  hseq::ops::add_position_table<T>(ctx, x.view(), table.cview(), offset);
  std::int64_t bad = 0;
  for (std::int64_t bb = 0; bb < b; ++bb)
    for (std::int64_t s = 0; s < t; ++s)
      for (std::int64_t j = 0; j < c; ++j) {
        std::int64_t k = (bb * t + s) * c + j;
        bad += x.data()[k] != T(x0[std::size_t(k)] + table.data()[(offset + s) * c + j]);
      }
  CHECK(bad == 0);
}

TEST_CASE("position: learned table backward sums over the batch and accumulates") {
  hseq::cpu::Context ctx;
  for (std::int64_t b : {std::int64_t(2), std::int64_t(40)}) {  // 40 * 30 * 20 crosses the OpenMP threshold
    std::int64_t const t = 30, c = 20, tmax = 40, offset = 7;
    auto dy = random_tensor<double>(Shape{b, t, c}, 3), dtable = random_tensor<double>(Shape{tmax, c}, 4);
    std::vector<double> want(dtable.data(), dtable.data() + dtable.numel());
    for (std::int64_t bb = 0; bb < b; ++bb)
      for (std::int64_t s = 0; s < t; ++s)
        for (std::int64_t j = 0; j < c; ++j) want[std::size_t((offset + s) * c + j)] += dy.data()[(bb * t + s) * c + j];
    hseq::ops::position_table_backward<double>(ctx, dy.cview(), dtable.view(), offset);
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < dtable.numel(); ++i) bad += !(std::abs(dtable.data()[i] - want[std::size_t(i)]) <= 1e-13);
    CHECK(bad == 0);
  }
}

TEST_CASE("position: positions beyond the table throw naming the range") {
  hseq::cpu::Context ctx;
  DT x(Shape{1, 4, 3}), table(Shape{6, 3});
  std::fill(x.data(), x.data() + x.numel(), 0.0);
  std::fill(table.data(), table.data() + table.numel(), 1.0);
  CHECK_NOTHROW(hseq::ops::add_position_table<double>(ctx, x.view(), table.cview(), 2));  // [2, 6) fits exactly
  std::string msg = error_of([&] { hseq::ops::add_position_table<double>(ctx, x.view(), table.cview(), 3); });
  CHECK(msg.find("[3, 7)") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::add_position_table<double>(ctx, x.view(), table.cview(), -1), hseq::Error);
  CHECK_THROWS_AS(hseq::ops::position_table_backward<double>(ctx, x.cview(), table.view(), 3), hseq::Error);
  DT wrong(Shape{6, 4});
  msg = error_of([&] { hseq::ops::add_position_table<double>(ctx, x.view(), wrong.cview(), 0); });
  CHECK(msg.find("[1, 4, 3]") != std::string::npos);
  CHECK(msg.find("[6, 4]") != std::string::npos);
  DT flat(Shape{4, 3});
  CHECK_THROWS_AS(hseq::ops::add_position_table<double>(ctx, flat.view(), table.cview(), 0), hseq::Error);
  CHECK_THROWS_AS(hseq::ops::add_sinusoidal<double>(ctx, flat.view(), 0), hseq::Error);
}

TEST_CASE("position: sinusoid values") {
  hseq::cpu::Context ctx;
  std::int64_t const b = 2, t = 9, c = 10;
  for (std::int64_t offset : {std::int64_t(0), std::int64_t(1000)}) {
    DT x(Shape{b, t, c});
    std::fill(x.data(), x.data() + x.numel(), 0.0);
    hseq::ops::add_sinusoidal<double>(ctx, x.view(), offset);
    std::int64_t bad = 0;
    for (std::int64_t bb = 0; bb < b; ++bb)
      for (std::int64_t s = 0; s < t; ++s)
        for (std::int64_t j = 0; j < c; ++j)
          bad += !(std::abs(x.data()[(bb * t + s) * c + j] - pe(offset + s, j, c)) <= 1e-12);
    CHECK(bad == 0);
    if (offset == 0) {
      for (std::int64_t j = 0; j < c; ++j) CHECK(x.data()[j] == (j % 2 == 0 ? 0.0 : 1.0));  // PE(0) = [0, 1, 0, 1, ...]
      CHECK(x.data()[1 * c + 0] == doctest::Approx(std::sin(1.0)).epsilon(1e-15));           // PE(1, 0) = sin(1)
      CHECK(x.data()[1 * c + 1] == doctest::Approx(std::cos(1.0)).epsilon(1e-15));           // PE(1, 1) = cos(1)
      CHECK(x.data()[2 * c + 2] == doctest::Approx(std::sin(2.0 / std::pow(10000.0, 0.2))).epsilon(1e-14));
    }
  }
  // It adds (does not overwrite), and float matches double.
  Tensor<float, hseq::cpu> xf(Shape{1, 3, 4});
  std::fill(xf.data(), xf.data() + xf.numel(), 2.0f);
  hseq::ops::add_sinusoidal<float>(ctx, xf.view(), 3);
  for (std::int64_t s = 0; s < 3; ++s)
    for (std::int64_t j = 0; j < 4; ++j) CHECK(double(xf.data()[s * 4 + j]) == doctest::Approx(2.0 + pe(3 + s, j, 4)).epsilon(1e-6));
}

TEST_CASE("position: relative distance rows spread by direct indexing, clamped and over a memory") {
  hseq::cpu::Context ctx;
  // Every row r (query i = r % T, n = M + i + 1 visible keys) against the definition
  // row[j] = P[min(n - 1 - j, Dr - 1)] for j < n, 0 after; P[δ] = 100 r + δ marks where a value came from.
  struct Case {
    std::int64_t rows, m, t, dr;
  };
  for (Case c : {Case{4, 0, 4, 4}, Case{6, 3, 3, 6}, Case{6, 3, 3, 2}, Case{10, 2, 5, 1}, Case{7, 0, 7, 3}}) {
    INFO("rows ", c.rows, ", M ", c.m, ", T ", c.t, ", Dr ", c.dr);
    std::int64_t const l = c.m + c.t;
    DT buf(Shape{c.rows, l});
    for (std::int64_t r = 0; r < c.rows; ++r)
      for (std::int64_t j = 0; j < l; ++j) buf.data()[r * l + j] = j < c.dr ? 100.0 * double(r) + double(j) : -1.0;
    hseq::ops::spread_relative_rows<double>(ctx, buf.view(), c.m, c.t, c.dr);
    std::int64_t bad = 0;
    for (std::int64_t r = 0; r < c.rows; ++r) {
      std::int64_t const n = c.m + r % c.t + 1;
      for (std::int64_t j = 0; j < l; ++j) {
        double want = j < n ? 100.0 * double(r) + double(std::min(n - 1 - j, c.dr - 1)) : 0.0;
        bad += buf.data()[r * l + j] != want;
      }
    }
    CHECK(bad == 0);
  }
  // A worked row: M = 2, T = 3, Dr = 3, the last query (n = 5): P = [a, b, c] -> [c, c, c, b, a].
  DT one(Shape{3, 5});
  std::fill(one.data(), one.data() + 15, 0.0);
  one.data()[10] = 1, one.data()[11] = 2, one.data()[12] = 3;
  hseq::ops::spread_relative_rows<double>(ctx, one.view(), 2, 3, 3);
  CHECK(std::vector<double>(one.data() + 10, one.data() + 15) == std::vector<double>{3, 3, 3, 2, 1});
}

TEST_CASE("position: the relative-row gather is the adjoint of the spread (<spread P, G> = <P, gather G>)") {
  hseq::cpu::Context ctx;
  struct Case {
    std::int64_t rows, m, t, dr;
  };
  for (Case c : {Case{8, 0, 8, 8}, Case{12, 5, 6, 11}, Case{12, 5, 6, 4}, Case{9, 7, 3, 1}}) {
    INFO("rows ", c.rows, ", M ", c.m, ", T ", c.t, ", Dr ", c.dr);
    std::int64_t const l = c.m + c.t;
    DT p = random_tensor(Shape{c.rows, l}, 11), g = random_tensor(Shape{c.rows, l}, 12);
    for (std::int64_t r = 0; r < c.rows; ++r) {  // P lives in [0, Dr); G is zero at masked keys
      for (std::int64_t j = c.dr; j < l; ++j) p.data()[r * l + j] = 0.0;
      for (std::int64_t j = c.m + r % c.t + 1; j < l; ++j) g.data()[r * l + j] = 0.0;
    }
    DT sp(Shape{c.rows, l}), gg(Shape{c.rows, l});
    std::copy(p.data(), p.data() + p.numel(), sp.data());
    std::copy(g.data(), g.data() + g.numel(), gg.data());
    hseq::ops::spread_relative_rows<double>(ctx, sp.view(), c.m, c.t, c.dr);
    hseq::ops::gather_relative_rows<double>(ctx, gg.view(), c.m, c.t, c.dr);
    double lhs = 0, rhs = 0;
    for (std::int64_t r = 0; r < c.rows; ++r) {
      for (std::int64_t j = 0; j < l; ++j) lhs += sp.data()[r * l + j] * g.data()[r * l + j];
      for (std::int64_t k = 0; k < c.dr; ++k) rhs += p.data()[r * l + k] * gg.data()[r * l + k];
    }
    CHECK(std::abs(lhs) > 1e-3);  // not trivially zero
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
  }
}

TEST_CASE("position: relative-row spread and gather name a wrong buffer shape or distance count") {
  hseq::cpu::Context ctx;
  DT buf(Shape{6, 5});
  CHECK(error_of([&] { hseq::ops::spread_relative_rows<double>(ctx, buf.view(), 2, 4, 3); }).find("[rows, M + T]") !=
        std::string::npos);  // L = 6 != 5
  CHECK(error_of([&] { hseq::ops::gather_relative_rows<double>(ctx, buf.view(), 1, 4, 3); }).find("k * 4") !=
        std::string::npos);  // 6 rows, not a multiple of T = 4
  CHECK(error_of([&] { hseq::ops::spread_relative_rows<double>(ctx, buf.view(), 2, 3, 6); }).find("expected 1..5") !=
        std::string::npos);
  CHECK(error_of([&] { hseq::ops::gather_relative_rows<double>(ctx, buf.view(), 2, 3, 0); }).find("0 distance columns") !=
        std::string::npos);
}

}  // namespace HSEQ_TEST_UNIT
