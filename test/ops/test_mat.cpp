// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>
#include <type_traits>
#include <vector>

#include "hseq/ops/mat.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::Shape;
using hseq::View;
using hseq::ops::Mat;

static_assert(std::is_convertible_v<Mat<float, HostSpace>, Mat<float const, HostSpace>>);
static_assert(!std::is_convertible_v<Mat<float const, HostSpace>, Mat<float, HostSpace>>);
static_assert(!std::is_convertible_v<Mat<float, HostSpace>, Mat<float const, hseq::DeviceSpace>>);
static_assert(!std::is_convertible_v<Mat<float, HostSpace>, Mat<double const, HostSpace>>);

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
}  // namespace

TEST_CASE("mat: constructors and as_mat") {
  std::vector<float> buf(24);
  Mat<float, HostSpace> a(buf.data(), 3, 4);
  CHECK(a.ld == 4);
  Mat<float, HostSpace> b(buf.data(), 3, 4, 8);
  CHECK(b.rows == 3);
  CHECK(b.cols == 4);
  CHECK(b.ld == 8);
  Mat<float const, HostSpace> c = b;
  CHECK(c.data == buf.data());
  CHECK(c.ld == 8);
  View<float, HostSpace> v(buf.data(), Shape{2, 3, 4});
  auto m = hseq::ops::as_mat(v);
  CHECK(m.rows == 6);
  CHECK(m.cols == 4);
  CHECK(m.ld == 4);
  CHECK(m.data == buf.data());
}

TEST_CASE("mat: copy_mat and add_mat touch exactly the strided window") {
  hseq::cpu::Context ctx;
  // A time step of a [B=3, T=4, C=5] buffer is the matrix [3, 5] with ld 20.
  constexpr int B = 3, T = 4, C = 5;
  std::vector<double> seq(B * T * C), dst(B * 7, -1.0);
  for (std::size_t i = 0; i < seq.size(); ++i) seq[i] = double(i) * 0.5;
  int const t = 2;
  Mat<double const, HostSpace> step(seq.data() + t * C, B, C, T * C);
  Mat<double, HostSpace> out(dst.data() + 1, B, C, 7);  // window at column 1 of a [3, 7] buffer
  hseq::ops::copy_mat(ctx, step, out);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < 7; ++j) {
      INFO("b = ", b, ", j = ", j);
      if (j >= 1 && j <= C) CHECK(dst[b * 7 + j] == seq[(b * T + t) * C + (j - 1)]);
      else CHECK(dst[b * 7 + j] == -1.0);
    }
  hseq::ops::add_mat(ctx, step, out);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < 7; ++j) {
      INFO("b = ", b, ", j = ", j);
      if (j >= 1 && j <= C) CHECK(dst[b * 7 + j] == 2 * seq[(b * T + t) * C + (j - 1)]);
      else CHECK(dst[b * 7 + j] == -1.0);
    }
  // Writing back into the strided sequence: only time step 3 changes.
  std::vector<double> before = seq;
  Mat<double, HostSpace> step3(seq.data() + 3 * C, B, C, T * C);
  hseq::ops::add_mat(ctx, Mat<double const, HostSpace>(dst.data() + 1, B, C, 7), step3);
  for (int b = 0; b < B; ++b)
    for (int tt = 0; tt < T; ++tt)
      for (int j = 0; j < C; ++j) {
        std::size_t k = std::size_t((b * T + tt) * C + j);
        double want = tt == 3 ? before[k] + dst[std::size_t(b * 7 + 1 + j)] : before[k];
        CHECK(seq[k] == want);
      }
}

TEST_CASE("mat: mismatched windows throw naming both") {
  hseq::cpu::Context ctx;
  std::vector<float> a(12), b(12);
  Mat<float const, HostSpace> src(a.data(), 3, 4);
  Mat<float, HostSpace> dst(b.data(), 4, 3);
  CHECK_THROWS_AS(hseq::ops::copy_mat(ctx, src, dst), hseq::Error);
  std::string msg = error_of([&] { hseq::ops::add_mat(ctx, src, dst); });
  CHECK(msg.find("[3, 4]") != std::string::npos);
  CHECK(msg.find("[4, 3]") != std::string::npos);
  CHECK(msg.find("add_mat") != std::string::npos);
}

}  // namespace HSEQ_TEST_UNIT
