// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "hseq/backend/cpu_bf16.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/ops/gemm.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::ops::Mat;
using hseq::ops::Trans;

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

template <class T>
T nan_v() {
  return std::numeric_limits<T>::quiet_NaN();
}

/// A row-major matrix [rows, cols] with leading dimension ld inside a buffer; the padding columns
/// hold `pad` (NaN by default: reading them poisons the product).
template <class T>
struct Stored {
  std::vector<T> buf;
  std::int64_t rows, cols, ld;
  Stored(std::int64_t r, std::int64_t c, std::int64_t l, std::uint64_t seed, T pad = nan_v<T>())
      : buf(std::size_t(std::max<std::int64_t>(r * l, 1)), pad), rows(r), cols(c), ld(l) {
    for (std::int64_t i = 0; i < r; ++i)
      for (std::int64_t j = 0; j < c; ++j) at(i, j) = T(hseq::philox_uniform(seed, 5, std::uint64_t(i * c + j)) * 2 - 1);
  }
  T& at(std::int64_t i, std::int64_t j) { return buf[std::size_t(i * ld + j)]; }
  T at(std::int64_t i, std::int64_t j) const { return buf[std::size_t(i * ld + j)]; }
  Mat<T const, HostSpace> cmat() const { return {buf.data(), rows, cols, ld}; }
  Mat<T, HostSpace> mat() { return {buf.data(), rows, cols, ld}; }
};

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-14;
}

/// Checks C (after) == alpha op(A) op(B) + beta C0 against a naive triple loop in long double; the
/// error bound scales with sum |alpha a b| + |beta c0|. Padding of C must be left as it was.
template <class T>
void check_product(Trans ta, Stored<T> const& a, Trans tb, Stored<T> const& b, Stored<T> const& c0,
                   Stored<T> const& c, T alpha, T beta, double rel_tol = tol<T>()) {
  std::int64_t m = c.rows, n = c.cols, k = ta == Trans::kNo ? a.cols : a.rows;
  auto opa = [&](std::int64_t i, std::int64_t l) { return ta == Trans::kNo ? a.at(i, l) : a.at(l, i); };
  auto opb = [&](std::int64_t l, std::int64_t j) { return tb == Trans::kNo ? b.at(l, j) : b.at(j, l); };
  std::int64_t bad = 0;
  double worst = 0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      long double s = 0, mag = 0;
      for (std::int64_t l = 0; l < k; ++l) {
        s += (long double)opa(i, l) * opb(l, j);
        mag += std::abs((long double)opa(i, l) * opb(l, j));
      }
      long double want = (long double)alpha * s, bound = std::abs((long double)alpha) * mag;
      if (beta != T(0)) {
        want += (long double)beta * c0.at(i, j);
        bound += std::abs((long double)beta * c0.at(i, j));
      }
      double err = double(std::abs((long double)c.at(i, j) - want));
      if (!(err <= rel_tol * (double(bound) + 1e-30))) {
        ++bad;
        worst = std::max(worst, std::isnan(err) ? 1e300 : err);
      }
    }
  INFO("m ", m, " n ", n, " k ", k, " ta ", int(ta), " tb ", int(tb), " alpha ", alpha, " beta ", beta, ": ", bad,
       " wrong elements, worst error ", worst);
  CHECK(bad == 0);
  // Padding columns of C are untouched (bitwise).
  std::int64_t pad_changed = 0;
  for (std::int64_t i = 0; i < c.rows; ++i)
    for (std::int64_t j = c.cols; j < c.ld; ++j)
      pad_changed += std::memcmp(&c.buf[std::size_t(i * c.ld + j)], &c0.buf[std::size_t(i * c0.ld + j)], sizeof(T)) != 0;
  CHECK(pad_changed == 0);
}

template <class T, class Ctx = hseq::cpu::Context>
void run_case(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t pad, T alpha, T beta,
              bool nan_c = false, double rel_tol = tol<T>()) {
  Ctx ctx;
  std::int64_t ar = ta == Trans::kNo ? m : k, ac = ta == Trans::kNo ? k : m;
  std::int64_t br = tb == Trans::kNo ? k : n, bc = tb == Trans::kNo ? n : k;
  Stored<T> a(ar, ac, ac + pad, 1), b(br, bc, bc + pad, 2), c(m, n, n + pad, 3, T(12345));
  if (nan_c)
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c.at(i, j) = nan_v<T>();
  Stored<T> c0 = c;
  hseq::ops::gemm<T>(ctx, ta, a.cmat(), tb, b.cmat(), c.mat(), alpha, beta);
  check_product(ta, a, tb, b, c0, c, alpha, beta, rel_tol);
}

constexpr Trans kBoth[] = {Trans::kNo, Trans::kYes};

}  // namespace

TEST_CASE_TEMPLATE("gemm: all four transpose combinations match a naive triple loop", T, float, double) {
  struct Dims {
    std::int64_t m, n, k;
  };
  for (Trans ta : kBoth)
    for (Trans tb : kBoth)
      for (Dims d : {Dims{1, 1, 1}, Dims{5, 7, 3}, Dims{17, 13, 33}, Dims{64, 1, 9}, Dims{1, 40, 20}, Dims{96, 80, 72}})
        run_case<T>(ta, tb, d.m, d.n, d.k, 0, T(1), T(0));
}

TEST_CASE_TEMPLATE("gemm: alpha and beta", T, float, double) {
  for (Trans ta : kBoth)
    for (Trans tb : kBoth) {
      run_case<T>(ta, tb, 6, 5, 4, 0, T(-0.75), T(0.5));
      run_case<T>(ta, tb, 6, 5, 4, 0, T(2), T(1));
      run_case<T>(ta, tb, 9, 3, 11, 0, T(0.5), T(-1.5));
      run_case<T>(ta, tb, 70, 65, 33, 0, T(1), T(1));  // accumulate, big enough for blocked kernels
    }
}

TEST_CASE_TEMPLATE("gemm: leading dimensions larger than cols address submatrices", T, float, double) {
  for (Trans ta : kBoth)
    for (Trans tb : kBoth) {
      run_case<T>(ta, tb, 4, 6, 5, 3, T(1), T(0));
      run_case<T>(ta, tb, 7, 2, 9, 11, T(-1), T(0.25));
      run_case<T>(ta, tb, 33, 35, 37, 5, T(1.5), T(1));
    }
  // A block in the middle of a larger buffer: rows 1..3, columns 2..5 of a [6, 10] buffer.
  hseq::cpu::Context ctx;
  Stored<T> big_a(6, 10, 10, 7), big_b(8, 8, 8, 8), big_c(5, 9, 9, 9, T(0));
  Stored<T> const c_before = big_c;
  Mat<T const, HostSpace> a(big_a.buf.data() + 1 * 10 + 2, 3, 4, 10);  // [3, 4]
  Mat<T const, HostSpace> b(big_b.buf.data() + 2 * 8 + 1, 4, 5, 8);    // [4, 5]
  Mat<T, HostSpace> c(big_c.buf.data() + 1 * 9 + 3, 3, 5, 9);          // [3, 5] at (1, 3)
  hseq::ops::gemm<T>(ctx, Trans::kNo, a, Trans::kNo, b, c, T(1), T(1));
  for (std::int64_t i = 0; i < 5; ++i)
    for (std::int64_t j = 0; j < 9; ++j) {
      INFO("C(", i, ", ", j, ")");
      bool inside = i >= 1 && i < 4 && j >= 3 && j < 8;
      if (!inside) {
        CHECK(big_c.at(i, j) == c_before.at(i, j));
        continue;
      }
      double want = c_before.at(i, j);
      for (std::int64_t l = 0; l < 4; ++l) want += double(big_a.at(1 + i - 1, 2 + l)) * big_b.at(2 + l, 1 + j - 3);
      CHECK(std::abs(big_c.at(i, j) - want) <= 10 * tol<T>());
    }
}

TEST_CASE_TEMPLATE("gemm: beta = 0 does not read C", T, float, double) {
  for (Trans ta : kBoth)
    for (Trans tb : kBoth) {
      run_case<T>(ta, tb, 5, 6, 7, 0, T(1), T(0), true);
      run_case<T>(ta, tb, 65, 70, 40, 2, T(0.5), T(0), true);
      run_case<T>(ta, tb, 3, 4, 0, 1, T(1), T(0), true);  // k = 0 as well
    }
}

TEST_CASE_TEMPLATE("gemm: k = 0 is an empty sum (C = beta C)", T, float, double) {
  hseq::cpu::Context ctx;
  for (Trans ta : kBoth)
    for (Trans tb : kBoth) {
      std::int64_t m = 3, n = 4;
      Stored<T> a(ta == Trans::kNo ? m : 0, ta == Trans::kNo ? 0 : m, ta == Trans::kNo ? 1 : m, 1);
      Stored<T> b(tb == Trans::kNo ? 0 : n, tb == Trans::kNo ? n : 0, tb == Trans::kNo ? n : 1, 2);
      Stored<T> c(m, n, n, 3);
      Stored<T> const c0 = c;
      hseq::ops::gemm<T>(ctx, ta, a.cmat(), tb, b.cmat(), c.mat(), T(7), T(-2));
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) CHECK(c.at(i, j) == T(-2) * c0.at(i, j));
      hseq::ops::gemm<T>(ctx, ta, a.cmat(), tb, b.cmat(), c.mat(), T(7), T(0));
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) CHECK(c.at(i, j) == T(0));
    }
}

TEST_CASE_TEMPLATE("gemm: empty outputs touch nothing", T, float, double) {
  hseq::cpu::Context ctx;
  std::vector<T> a(20, T(1)), b(20, T(1)), c(20, T(5));
  CHECK_NOTHROW(hseq::ops::gemm<T>(ctx, Trans::kNo, {a.data(), 0, 4, 4}, Trans::kNo, {b.data(), 4, 3, 3},
                                   {c.data(), 0, 3, 3}, T(1), T(0)));
  CHECK_NOTHROW(hseq::ops::gemm<T>(ctx, Trans::kNo, {a.data(), 2, 4, 4}, Trans::kNo, {b.data(), 4, 0, 1},
                                   {c.data(), 2, 0, 1}, T(1), T(0)));
  for (T x : c) CHECK(x == T(5));
}

TEST_CASE("gemm: bad shapes name the shapes") {
  hseq::cpu::Context ctx;
  std::vector<float> a(100), b(100), c(100);
  // op(A) [2, 3] times op(B) [4, 5]: inner dimensions differ.
  std::string msg = error_of([&] {
    hseq::ops::gemm<float>(ctx, Trans::kNo, {a.data(), 2, 3}, Trans::kNo, {b.data(), 4, 5}, {c.data(), 2, 5});
  });
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK(msg.find("[4, 5]") != std::string::npos);
  CHECK(msg.find("[2, 5]") != std::string::npos);
  // The transposed shapes are reported: A stored [3, 2] used transposed is [2, 3].
  msg = error_of([&] {
    hseq::ops::gemm<float>(ctx, Trans::kYes, {a.data(), 3, 2}, Trans::kYes, {b.data(), 6, 3}, {c.data(), 2, 7});
  });
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK(msg.find("[3, 6]") != std::string::npos);
  CHECK(msg.find("[2, 7]") != std::string::npos);
  // Right inner dimension but wrong C.
  CHECK_THROWS_AS(
      hseq::ops::gemm<float>(ctx, Trans::kNo, {a.data(), 2, 3}, Trans::kNo, {b.data(), 3, 4}, {c.data(), 4, 2}),
      hseq::Error);
  CHECK_THROWS_AS(
      hseq::ops::gemm<float>(ctx, Trans::kNo, {a.data(), 2, 3}, Trans::kNo, {b.data(), 3, 4}, {c.data(), 3, 4}),
      hseq::Error);
}

TEST_CASE("gemm: leading dimension smaller than the columns throws naming it") {
  hseq::cpu::Context ctx;
  std::vector<double> a(100), b(100), c(100);
  std::string msg = error_of([&] {
    hseq::ops::gemm<double>(ctx, Trans::kNo, {a.data(), 2, 3, 2}, Trans::kNo, {b.data(), 3, 4}, {c.data(), 2, 4});
  });
  CHECK(msg.find("leading dimension") != std::string::npos);
  CHECK_THROWS_AS(
      hseq::ops::gemm<double>(ctx, Trans::kNo, {a.data(), 2, 3}, Trans::kNo, {b.data(), 3, 4}, {c.data(), 2, 4, 3}),
      hseq::Error);
}

TEST_CASE_TEMPLATE("gemm: strided batched matches per-batch products", T, float, double) {
  hseq::cpu::Context ctx;
  for (Trans ta : kBoth)
    for (Trans tb : kBoth) {
      std::int64_t const batch = 3, m = 5, n = 4, k = 6;
      std::int64_t ar = ta == Trans::kNo ? m : k, ac = ta == Trans::kNo ? k : m;
      std::int64_t br = tb == Trans::kNo ? k : n, bc = tb == Trans::kNo ? n : k;
      // Batches separated by gaps (stride > matrix size) that are filled with NaN.
      std::int64_t sa = ar * ac + 5, sb = br * bc + 3, sc = m * n + 7;
      Stored<T> a(1, batch * sa, batch * sa, 11), b(1, batch * sb, batch * sb, 12), c(1, batch * sc, batch * sc, 13);
      for (std::int64_t q = 0; q < batch; ++q) {
        for (std::int64_t i = ar * ac; i < sa; ++i) a.buf[std::size_t(q * sa + i)] = nan_v<T>();
        for (std::int64_t i = br * bc; i < sb; ++i) b.buf[std::size_t(q * sb + i)] = nan_v<T>();
        for (std::int64_t i = m * n; i < sc; ++i) c.buf[std::size_t(q * sc + i)] = T(-99);
      }
      Stored<T> const c0 = c;
      hseq::ops::gemm_strided_batched<T>(ctx, batch, ta, {a.buf.data(), ar, ac}, sa, tb, {b.buf.data(), br, bc}, sb,
                                         {c.buf.data(), m, n}, sc, T(0.5), T(2));
      for (std::int64_t q = 0; q < batch; ++q) {
        Stored<T> aq(ar, ac, ac, 0), bq(br, bc, bc, 0), cq(m, n, n, 0), cq0(m, n, n, 0);
        std::copy_n(a.buf.begin() + q * sa, ar * ac, aq.buf.begin());
        std::copy_n(b.buf.begin() + q * sb, br * bc, bq.buf.begin());
        std::copy_n(c.buf.begin() + q * sc, m * n, cq.buf.begin());
        std::copy_n(c0.buf.begin() + q * sc, m * n, cq0.buf.begin());
        INFO("batch ", q);
        check_product(ta, aq, tb, bq, cq0, cq, T(0.5), T(2));
        for (std::int64_t i = m * n; i < sc; ++i) CHECK(c.buf[std::size_t(q * sc + i)] == T(-99));
      }
    }
}

TEST_CASE_TEMPLATE("gemm: strided batched over heads interleaved in columns", T, float, double) {
  // Q [T, H*dh] and K [T, H*dh]; head h is the column block h*dh: scores_h = Q_h K_h^T with
  // batch stride dh and leading dimension H*dh.
  hseq::cpu::Context ctx;
  std::int64_t const t = 7, h = 3, dh = 4, w = h * dh;
  Stored<T> q(t, w, w, 21), k(t, w, w, 22);
  std::vector<T> s(std::size_t(h * t * t), nan_v<T>());
  hseq::ops::gemm_strided_batched<T>(ctx, h, Trans::kNo, {q.buf.data(), t, dh, w}, dh, Trans::kYes,
                                     {k.buf.data(), t, dh, w}, dh, {s.data(), t, t}, t * t);
  std::int64_t bad = 0;
  for (std::int64_t hh = 0; hh < h; ++hh)
    for (std::int64_t i = 0; i < t; ++i)
      for (std::int64_t j = 0; j < t; ++j) {
        double want = 0, mag = 0;
        for (std::int64_t d = 0; d < dh; ++d) {
          want += double(q.at(i, hh * dh + d)) * k.at(j, hh * dh + d);
          mag += std::abs(double(q.at(i, hh * dh + d)) * k.at(j, hh * dh + d));
        }
        bad += !(std::abs(s[std::size_t((hh * t + i) * t + j)] - want) <= tol<T>() * mag + 1e-30);
      }
  CHECK(bad == 0);
}

TEST_CASE("gemm: strided batched with zero batches touches nothing, negative batch throws") {
  hseq::cpu::Context ctx;
  std::vector<float> a(16, 1.0f), b(16, 1.0f), c(16, 3.0f);
  hseq::ops::gemm_strided_batched<float>(ctx, 0, Trans::kNo, {a.data(), 2, 2}, 4, Trans::kNo, {b.data(), 2, 2}, 4,
                                         {c.data(), 2, 2}, 4);
  for (float x : c) CHECK(x == 3.0f);
  std::string msg = error_of([&] {
    hseq::ops::gemm_strided_batched<float>(ctx, -2, Trans::kNo, {a.data(), 2, 2}, 4, Trans::kNo, {b.data(), 2, 2}, 4,
                                           {c.data(), 2, 2}, 4);
  });
  CHECK(msg.find("-2") != std::string::npos);
  msg = error_of([&] {
    hseq::ops::gemm_strided_batched<float>(ctx, 2, Trans::kNo, {a.data(), 2, 3}, 6, Trans::kNo, {b.data(), 2, 2}, 4,
                                           {c.data(), 2, 2}, 4);
  });
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK(msg.find("[2, 2]") != std::string::npos);
}

TEST_CASE_TEMPLATE("gemm: row_dots are the rows' dot products, with row strides and a strided output", T, float, double) {
  hseq::cpu::Context ctx;
  std::int64_t const n = 4, d = 3, lda = 5, ldb = 4, ldo = 2;  // gaps between rows hold NaN (unread)
  std::vector<T> a(std::size_t(n * lda), nan_v<T>()), b(std::size_t(n * ldb), nan_v<T>()), out(std::size_t(n * ldo), T(-7));
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t k = 0; k < d; ++k) {
      a[std::size_t(r * lda + k)] = T(r + 1) * T(k - 1);
      b[std::size_t(r * ldb + k)] = T(2 * k + r);
    }
  hseq::ops::row_dots<T>(ctx, hseq::ops::Mat<T const, hseq::HostSpace>(a.data(), n, d, lda),
                         hseq::ops::Mat<T const, hseq::HostSpace>(b.data(), n, d, ldb),
                         hseq::ops::Mat<T, hseq::HostSpace>(out.data(), n, 1, ldo));
  for (std::int64_t r = 0; r < n; ++r) {
    T expect = 0;
    for (std::int64_t k = 0; k < d; ++k) expect += T(r + 1) * T(k - 1) * T(2 * k + r);
    CHECK(out[std::size_t(r * ldo)] == expect);
    CHECK(out[std::size_t(r * ldo + 1)] == T(-7));  // between the outputs: untouched
  }
  CHECK_THROWS_WITH_AS(hseq::ops::row_dots<T>(ctx, hseq::ops::Mat<T const, hseq::HostSpace>(a.data(), n, d, lda),
                                              hseq::ops::Mat<T const, hseq::HostSpace>(b.data(), n, d - 1, ldb),
                                              hseq::ops::Mat<T, hseq::HostSpace>(out.data(), n, 1, ldo)),
                       doctest::Contains("row_dots: a [4, 3], b [4, 2]"), hseq::Error);
}

// ---------------------------------------------------------------------------------------------
// bf16 math (hseq::cpu_bf16)

namespace {
/// The error bound of a bf16 GEMM relative to sum |alpha a b| (+ |beta c|): each operand is rounded
/// to bf16 with relative error at most u = 2^-8 (8 significant bits, nearest-even), so each product
/// is off by at most (2u + u^2) |a b|; products of bf16 values are exact in fp32, and the fp32 sums
/// over k <= 128 terms add at most 128 * 2^-24 < 1e-5 relative. Hence 2^-7 + 2^-16 + 1e-5.
constexpr double kBf16Tol = 0x1p-7 + 0x1p-16 + 1e-5;
}  // namespace

TEST_CASE("gemm: bf16 math multiplies bf16-rounded operands with fp32 accumulation, within the bf16 bound") {
  hseq::cpu_bf16::Context probe;
  CHECK(probe.gemm_math() == hseq::GemmMath::kBf16);
  INFO("bf16 path on this machine: ", hseq::cpu_bf16_path_name(hseq::cpu_bf16_path_from_env()));
  for (Trans ta : kBoth)
    for (Trans tb : kBoth) {
      run_case<float, hseq::cpu_bf16::Context>(ta, tb, 96, 80, 72, 0, 1.0f, 0.0f, false, kBf16Tol);
      run_case<float, hseq::cpu_bf16::Context>(ta, tb, 100, 70, 128, 3, 0.5f, 1.0f, false, kBf16Tol);
      run_case<float, hseq::cpu_bf16::Context>(ta, tb, 65, 130, 33, 2, -1.25f, 0.5f, false, kBf16Tol);
      run_case<float, hseq::cpu_bf16::Context>(ta, tb, 96, 96, 40, 1, 1.0f, 0.0f, true, kBf16Tol);  // C unread
    }
}

TEST_CASE("gemm: bf16 math really rounds: the result differs from fp32 by more than fp32's error") {
  // Without the rounding (a GEMM that ignored the math) the bf16 bound above would pass too; this
  // checks that the operands were rounded: the result is the fp32 product of the rounded operands.
  std::int64_t const m = 96, n = 80, k = 72;
  Stored<float> a(m, k, k, 31), b(k, n, n, 32), c(m, n, n, 33, 0.0f), c32(m, n, n, 33, 0.0f), cr(m, n, n, 33, 0.0f);
  Stored<float> ar = a, br = b;
  for (float& x : ar.buf) x = hseq::round_to_bf16(x);
  for (float& x : br.buf) x = hseq::round_to_bf16(x);
  hseq::cpu_bf16::Context bctx;
  hseq::cpu::Context fctx;
  hseq::ops::gemm<float>(bctx, Trans::kNo, a.cmat(), Trans::kNo, b.cmat(), c.mat());
  hseq::ops::gemm<float>(fctx, Trans::kNo, a.cmat(), Trans::kNo, b.cmat(), c32.mat());
  hseq::ops::gemm<float>(fctx, Trans::kNo, ar.cmat(), Trans::kNo, br.cmat(), cr.mat());
  double d32 = 0, dr = 0;
  for (std::size_t i = 0; i < c.buf.size(); ++i) {
    d32 = std::max(d32, double(std::abs(c.buf[i] - c32.buf[i])));
    dr = std::max(dr, double(std::abs(c.buf[i] - cr.buf[i])));
  }
  CHECK(d32 > 1e-3);  // bf16 rounding of entries in [-1, 1] over k = 72 terms: errors ~1e-2
  CHECK(dr <= 1e-5);  // the fp32 product of the rounded operands, up to summation order
  auto const& counts = bctx.kernel_counts();
  CHECK(counts.gemm_bf16_onednn + counts.gemm_bf16_emulated == 1);
  CHECK(counts.gemm_fp32 == 0);
  CHECK(fctx.kernel_counts().gemm_fp32 == 2);
  CHECK(fctx.kernel_counts().gemm_bf16_onednn + fctx.kernel_counts().gemm_bf16_emulated == 0);
}

TEST_CASE("gemm: under bf16 math small GEMMs and double GEMMs stay exact fp32 / fp64") {
  // 2 m n / (m + n) < kCpuBf16MinIntensity: fp32, bit for bit what the fp32 context computes.
  CHECK(!hseq::ops::cpu_bf16_pays(16, 768));
  CHECK(hseq::ops::cpu_bf16_pays(4096, 256));
  CHECK(hseq::ops::cpu_bf16_pays(64, 64));
  CHECK(!hseq::ops::cpu_bf16_pays(63, 64));
  for (Trans ta : kBoth)
    for (Trans tb : kBoth) {
      run_case<float, hseq::cpu_bf16::Context>(ta, tb, 16, 768, 40, 1, 1.0f, 0.5f);  // fp32 tolerance
      run_case<double, hseq::cpu_bf16::Context>(ta, tb, 96, 80, 72, 0, 1.0, 0.0);     // fp64 tolerance
    }
  hseq::cpu_bf16::Context ctx;
  Stored<float> a(16, 40, 40, 41), b(40, 768, 768, 42), c(16, 768, 768, 43, 0.0f);
  hseq::ops::gemm<float>(ctx, Trans::kNo, a.cmat(), Trans::kNo, b.cmat(), c.mat());
  CHECK(ctx.kernel_counts().gemm_fp32 == 1);
  CHECK(ctx.kernel_counts().gemm_bf16_onednn + ctx.kernel_counts().gemm_bf16_emulated == 0);
}

TEST_CASE("gemm: the two bf16 paths agree where both run, and the emulation is the fp32 GEMM of rounded operands") {
  std::int64_t const m = 128, n = 96, k = 100;
  Stored<float> a(m, k, k, 51), b(n, k, k, 52), c_emu(m, n, n, 53, 0.0f), c_ref(m, n, n, 53, 0.0f);
  hseq::cpu_bf16::Context ctx;
  hseq::detail::bf16_gemm_of(ctx).set_path(hseq::CpuBf16Path::kEmulated);
  hseq::ops::gemm<float>(ctx, Trans::kNo, a.cmat(), Trans::kYes, b.cmat(), c_emu.mat());
  CHECK(ctx.kernel_counts().gemm_bf16_emulated == 1);
  Stored<float> ar = a, br = b;
  for (float& x : ar.buf) x = hseq::round_to_bf16(x);
  for (float& x : br.buf) x = hseq::round_to_bf16(x);
  hseq::cpu::Context fctx;
  hseq::ops::gemm<float>(fctx, Trans::kNo, ar.cmat(), Trans::kYes, br.cmat(), c_ref.mat());
  CHECK(c_emu.buf == c_ref.buf);  // bit for bit: the same fp32 GEMM on the same rounded values
  if (!hseq::cpu_bf16_onednn_available()) {
    MESSAGE("oneDNN's bf16 matmul is not available here (build or CPU): only the emulation was checked");
    return;
  }
  Stored<float> c_dnnl(m, n, n, 53, 0.0f);
  hseq::detail::bf16_gemm_of(ctx).set_path(hseq::CpuBf16Path::kOneDnn);
  hseq::ops::gemm<float>(ctx, Trans::kNo, a.cmat(), Trans::kYes, b.cmat(), c_dnnl.mat());
  CHECK(ctx.kernel_counts().gemm_bf16_onednn == 1);
  double worst = 0;
  for (std::size_t i = 0; i < c_emu.buf.size(); ++i) worst = std::max(worst, double(std::abs(c_emu.buf[i] - c_dnnl.buf[i])));
  CHECK(worst <= 1e-4);  // same products; only the fp32 summation order differs (|sum| <= k = 100)
}

TEST_CASE("gemm: a CPU context refuses TF32 math, naming the backends that have it") {
  hseq::cpu::Context ctx;
  CHECK_THROWS_WITH_AS(ctx.set_gemm_math(hseq::GemmMath::kTf32), doctest::Contains("TF32 GEMMs exist only on the CUDA"),
                       hseq::Error);
  CHECK(ctx.gemm_math() == hseq::GemmMath::kFp32);
}

}  // namespace HSEQ_TEST_UNIT
