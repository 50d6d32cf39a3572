// SPDX-License-Identifier: MIT
// The batch-invariant GEMM (ops/gemm_invariant.hpp) and `cpu::Context::set_batch_invariant`:
// products against a double reference for every transpose, alpha/beta, k == 0 and strided operands;
// a row's bits independent of the row count, its position, the column count and the threads; the
// ops (gemm, gemm_strided_batched, attention) dispatching to it when the context asks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <array>
#include <cstring>
#include <type_traits>
#include <vector>

#include "hseq/backend/cpu_bf16.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/ops/attention.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/gemm_invariant.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::ops::Mat;
using hseq::ops::Trans;

namespace {

template <class T>
std::vector<T> random_vec(std::int64_t n, std::uint64_t seed) {
  hseq::Rng rng(seed);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = T(2 * rng.uniform() - 1);
  return v;
}

/// op(X) element (i, j) of a row-major buffer with leading dimension ld.
template <class T>
T op_at(std::vector<T> const& x, bool trans, std::int64_t ld, std::int64_t i, std::int64_t j) {
  return trans ? x[std::size_t(j * ld + i)] : x[std::size_t(i * ld + j)];
}

/// C [m, n] (ld n) = op(A) op(B) for A, B stored with the rows op needs and a padded leading dimension.
template <class T>
std::vector<T> invariant_product(bool ta, std::vector<T> const& a, std::int64_t lda, bool tb, std::vector<T> const& b,
                                 std::int64_t ldb, std::int64_t m, std::int64_t n, std::int64_t k) {
  std::vector<T> c(std::size_t(m * n), T(-7));
  hseq::ops::detail::gemm_invariant_host<T>(ta, {a.data(), ta ? k : m, ta ? m : k, lda}, tb,
                                            {b.data(), tb ? n : k, tb ? k : n, ldb}, {c.data(), m, n, n}, T(1), T(0));
  return c;
}

}  // namespace

TEST_CASE_TEMPLATE("gemm_invariant: matches a double reference for every transpose, alpha, beta and stride", T, float,
                   double) {
  double const tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (auto [m, n, k] : {std::array<std::int64_t, 3>{1, 1, 1}, {7, 5, 3}, {6, 16, 9}, {13, 37, 70}, {100, 3, 1}}) {
        CAPTURE(ta);
        CAPTURE(tb);
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        std::int64_t const lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
        auto a = random_vec<T>((ta ? k : m) * lda, 1), b = random_vec<T>((tb ? n : k) * ldb, 2);
        auto c = random_vec<T>(m * ldc, 3);
        auto const c0 = c;
        T const alpha = T(0.75), beta = T(-0.5);
        hseq::ops::detail::gemm_invariant_host<T>(ta, {a.data(), ta ? k : m, ta ? m : k, lda}, tb,
                                                  {b.data(), tb ? n : k, tb ? k : n, ldb}, {c.data(), m, n, ldc}, alpha,
                                                  beta);
        double worst = 0;
        for (std::int64_t i = 0; i < m; ++i) {
          for (std::int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (std::int64_t p = 0; p < k; ++p) s += double(op_at(a, ta, lda, i, p)) * double(op_at(b, tb, ldb, p, j));
            double const want = double(alpha) * s + double(beta) * double(c0[std::size_t(i * ldc + j)]);
            worst = std::max(worst, std::abs(want - double(c[std::size_t(i * ldc + j)])));
          }
          for (std::int64_t j = n; j < ldc; ++j)  // the padding columns of C are not written
            CHECK(c[std::size_t(i * ldc + j)] == c0[std::size_t(i * ldc + j)]);
        }
        CHECK(worst < tol * double(k + 1));
      }
  // k == 0: an empty sum, C = beta C; beta == 0 does not read C (NaN there stays out).
  std::vector<T> c{T(2), std::nan(""), T(-4)};
  hseq::ops::detail::gemm_invariant_host<T>(false, {nullptr, 3, 0, 0}, false, {nullptr, 0, 1, 1}, {c.data(), 3, 1, 1},
                                            T(1), T(0));
  CHECK(c == std::vector<T>{T(0), T(0), T(0)});
  c = {T(2), T(3), T(-4)};
  hseq::ops::detail::gemm_invariant_host<T>(false, {nullptr, 3, 0, 0}, false, {nullptr, 0, 1, 1}, {c.data(), 3, 1, 1},
                                            T(1), T(0.5));
  CHECK(c == std::vector<T>{T(1), T(1.5), T(-2)});
}

TEST_CASE("gemm_invariant: a row's bits depend on neither the row count, its position, the column count nor the threads") {
  // Rows 0..m-1 of A are rows (shift + i) of a pool; each output row must equal the product of that
  // pool row computed alone ([1, k] x [k, n]), for row counts that cross every register tile, panel
  // and thread split (300 x 40 x 100 runs the parallel path), with and without transposes.
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (std::int64_t k : {1, 8, 33, 100})
        for (std::int64_t n : {1, 5, 17, 40}) {
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(k);
          CAPTURE(n);
          auto pool = random_vec<float>(320 * k, std::uint64_t(k * 100 + n));
          auto bb = random_vec<float>(k * n, 9);
          auto b = bb;  // op(B) = bb [k, n]
          if (tb)
            for (std::int64_t p = 0; p < k; ++p)
              for (std::int64_t j = 0; j < n; ++j) b[std::size_t(j * k + p)] = bb[std::size_t(p * n + j)];
          auto rows_of = [&](std::int64_t shift, std::int64_t m) {  // op(A) = pool rows shift..shift+m-1
            std::vector<float> a(std::size_t(m * k));
            for (std::int64_t i = 0; i < m; ++i)
              for (std::int64_t p = 0; p < k; ++p)
                a[std::size_t(ta ? p * m + i : i * k + p)] = pool[std::size_t((shift + i) * k + p)];
            return invariant_product<float>(ta, a, ta ? m : k, tb, b, tb ? k : n, m, n, k);
          };
          std::vector<std::vector<float>> alone(20);
          for (std::int64_t r = 0; r < 20; ++r) alone[std::size_t(r)] = rows_of(r, 1);
          int differs = 0;
          for (std::int64_t m : {2, 5, 6, 7, 13, 64, 97, 300})
            for (std::int64_t shift : {0, 3, 11}) {
              auto c = rows_of(shift, m);
              for (std::int64_t i = 0; i < m; ++i)
                if (shift + i < 20)
                  differs += std::memcmp(c.data() + i * n, alone[std::size_t(shift + i)].data(), sizeof(float) * n) != 0;
            }
          CHECK(differs == 0);
          // The column count: the first n' columns of a product with fewer columns are the same bits.
          if (n > 1) {
            auto full = rows_of(0, 13);
            std::vector<float> bn(std::size_t(k * (n - 1)));
            for (std::int64_t p = 0; p < k; ++p)
              for (std::int64_t j = 0; j + 1 < n; ++j)
                bn[std::size_t(tb ? j * k + p : p * (n - 1) + j)] = bb[std::size_t(p * n + j)];
            std::vector<float> a(std::size_t(13 * k));
            for (std::int64_t i = 0; i < 13; ++i)
              for (std::int64_t p = 0; p < k; ++p) a[std::size_t(ta ? p * 13 + i : i * k + p)] = pool[std::size_t(i * k + p)];
            auto narrow = invariant_product<float>(ta, a, ta ? 13 : k, tb, bn, tb ? k : n - 1, 13, n - 1, k);
            for (std::int64_t i = 0; i < 13; ++i)
              CHECK(std::memcmp(narrow.data() + i * (n - 1), full.data() + i * n, sizeof(float) * (n - 1)) == 0);
          }
        }
}

TEST_CASE("batch_invariant: the context setting routes ops::gemm and gemm_strided_batched to the invariant kernel") {
  hseq::cpu::Context ctx;
  CHECK_FALSE(ctx.batch_invariant());
  ctx.set_batch_invariant(true);
  hseq::cpu::Context copy = ctx;  // a copy takes the setting
  CHECK(copy.batch_invariant());
  std::int64_t const m = 9, n = 21, k = 70;
  auto a = random_vec<float>(m * k, 4), b = random_vec<float>(k * n, 5);
  std::vector<float> c(std::size_t(m * n)), want(std::size_t(m * n), 0.f);
  hseq::ops::gemm<float>(ctx, Trans::kNo, {a.data(), m, k}, Trans::kNo, {b.data(), k, n}, {c.data(), m, n});
  hseq::ops::detail::gemm_invariant_host<float>(false, {a.data(), m, k, k}, false, {b.data(), k, n, n},
                                                {want.data(), m, n, n}, 1.f, 0.f);
  CHECK(c == want);
  CHECK(ctx.kernel_counts().gemm_invariant == 1);
  CHECK(ctx.kernel_counts().gemm_fp32 == 0);
  // Strided-batched: three [3, 70] x [70, 21] products equal the invariant kernel's per batch.
  std::vector<float> cb(std::size_t(m * n));
  hseq::ops::gemm_strided_batched<float>(ctx, 3, Trans::kNo, {a.data(), 3, k}, 3 * k, Trans::kNo, {b.data(), k, n}, 0,
                                         {cb.data(), 3, n}, 3 * n);
  CHECK(cb == want);  // row i of a batch is row i of the whole product, bit for bit
  // Under bf16 math the operands are rounded (the emulated path), then the invariant kernel runs.
  hseq::cpu_bf16::Context bctx;
  bctx.set_batch_invariant(true);
  std::int64_t const big = 128;
  auto a2 = random_vec<float>(big * big, 6), b2 = random_vec<float>(big * big, 7);
  std::vector<float> c2(std::size_t(big * big)), w2(std::size_t(big * big));
  hseq::ops::gemm<float>(bctx, Trans::kNo, {a2.data(), big, big}, Trans::kNo, {b2.data(), big, big},
                         {c2.data(), big, big});
  CHECK(bctx.kernel_counts().gemm_invariant == 1);
  auto ra = a2, rb = b2;
  for (auto& x : ra) x = hseq::round_to_bf16(x);
  for (auto& x : rb) x = hseq::round_to_bf16(x);
  hseq::ops::detail::gemm_invariant_host<float>(false, {ra.data(), big, big, big}, false, {rb.data(), big, big, big},
                                                {w2.data(), big, big, big}, 1.f, 0.f);
  CHECK(c2 == w2);
}

TEST_CASE("batch_invariant: causal attention rows do not depend on how many queries and keys follow them") {
  // The attention blocks' GEMM shapes follow Tq and Tk (the last query block is partial). With the
  // setting on, the first 70 query rows of a 70-row and of a 133-row causal attention are the same
  // bits (the extra rows only add later queries and keys).
  hseq::cpu::Context ctx;
  ctx.set_batch_invariant(true);
  std::int64_t const h = 2, dh = 24, w = h * dh;
  auto qall = random_vec<float>(133 * w, 11), kvall = random_vec<float>(133 * 2 * w, 12);
  auto run = [&](std::int64_t t) {
    hseq::ops::AttentionDims d{.batch = 1, .heads = h, .tq = t, .tk = t, .head_dim = dh};
    hseq::Tensor<float, hseq::cpu> out(hseq::Shape{1, t, w}), probs(hseq::Shape{1, h, t, t});
    hseq::View<float const, HostSpace> q(qall.data(), hseq::Shape{1, t, w}), kv(kvall.data(), hseq::Shape{1, t, 2 * w});
    hseq::ops::attention_forward<float>(ctx, d, hseq::ops::AttentionMask::causal(), 0.5f, q, kv, out.view(),
                                        probs.view());
    return std::vector<float>(out.data(), out.data() + out.numel());
  };
  auto short_out = run(70), long_out = run(133);
  CHECK(std::memcmp(short_out.data(), long_out.data(), sizeof(float) * 70 * w) == 0);
}

}  // namespace HSEQ_TEST_UNIT
