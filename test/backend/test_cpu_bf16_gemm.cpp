// SPDX-License-Identifier: MIT
// The resources behind cpu_bf16's GEMMs (backend/cpu_bf16_gemm.hpp): the fp32 -> bf16 rounding,
// the rounded scratch copies, the path choice from HSEQ_CPU_BF16, and the oneDNN matmul wrapper's
// strides, transposes and epilogue. The wrapper is checked with fp32 operands, which oneDNN runs on
// any x86 CPU, so that its plumbing is tested on machines without bf16 instructions; its bf16
// arithmetic is checked where the CPU has them (test/ops/test_gemm.cpp).
#include <doctest/doctest.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "hseq/backend/cpu_bf16_gemm.hpp"
#include "hseq/core/rng.hpp"
#include "support/scoped_env.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::bf16_to_float;
using hseq::float_to_bf16;
using hseq::round_to_bf16;

namespace {
float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }

using hseq::test::ScopedEnv;
}  // namespace

TEST_CASE("cpu_bf16: fp32 -> bf16 rounds to nearest even, keeps NaN and overflows to infinity") {
  // Values with at most 8 significant bits keep their bits.
  for (float x : {0.0f, 1.0f, -2.0f, 0.5f, 1.0078125f /* 1 + 2^-7 */, -384.0f, 0x1p-100f})
    CHECK(std::bit_cast<std::uint32_t>(round_to_bf16(x)) == std::bit_cast<std::uint32_t>(x));
  CHECK(std::signbit(round_to_bf16(-0.0f)));
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: the tie goes to the even significand (1).
  CHECK(round_to_bf16(1.0f + 0x1p-8f) == 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
  CHECK(round_to_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);
  // Just above the tie rounds up, just below rounds down.
  CHECK(round_to_bf16(from_bits(0x3f808001u)) == 1.0f + 0x1p-7f);
  CHECK(round_to_bf16(from_bits(0x3f807fffu)) == 1.0f);
  // Negative values round symmetrically.
  CHECK(round_to_bf16(-(1.0f + 3 * 0x1p-8f)) == -(1.0f + 0x1p-6f));
  // Relative error at most 2^-8 (bf16 keeps 8 significant bits) over many values.
  hseq::Rng rng(3);
  double worst = 0;
  for (int i = 0; i < 100000; ++i) {
    float x = float((rng.uniform() * 2 - 1) * std::ldexp(1.0, int(rng.below(60)) - 30));
    if (x == 0) continue;
    worst = std::max(worst, std::abs(double(round_to_bf16(x)) - x) / std::abs(double(x)));
  }
  CHECK(worst <= 0x1p-8);
  CHECK(worst > 0x1p-10);  // and the rounding does happen
  // Infinities stay, NaN stays NaN (also a NaN whose payload sits only in the low bits).
  CHECK(round_to_bf16(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(round_to_bf16(from_bits(0x7f800001u))));
  CHECK(std::isnan(round_to_bf16(from_bits(0xff800001u))));
  // The largest finite float rounds past bf16's largest finite: infinity, as the hardware does.
  CHECK(std::isinf(round_to_bf16(std::numeric_limits<float>::max())));
  // A subnormal keeps its leading bits.
  CHECK(round_to_bf16(from_bits(0x00010000u)) == from_bits(0x00010000u));
}

TEST_CASE("cpu_bf16: rounded copies are compact, read only the matrix, and grow without losing data") {
  hseq::detail::CpuBf16Gemm g;
  std::int64_t const rows = 3, cols = 4, ld = 6;
  std::vector<float> src(std::size_t(rows * ld), std::numeric_limits<float>::quiet_NaN());
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) src[std::size_t(i * ld + j)] = 1.0f + float(i * cols + j) * 0x1p-9f;
  float const* r = g.rounded(0, src.data(), rows, cols, ld);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) CHECK(r[i * cols + j] == round_to_bf16(src[std::size_t(i * ld + j)]));
  // The other slot is separate: a second operand does not overwrite the first.
  std::vector<float> other(100, 2.5f);
  float const* r1 = g.rounded(1, other.data(), 10, 10, 10);
  CHECK(r1 != r);
  CHECK(r[0] == 1.0f);
  CHECK(r1[99] == 2.5f);
  // Large enough for the parallel loop.
  std::vector<float> big(std::size_t(300 * 200));
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = float(i) * 1.0001f;
  float const* rb = g.rounded(0, big.data(), 300, 200, 200);
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < big.size(); ++i) bad += rb[i] != round_to_bf16(big[i]);
  CHECK(bad == 0);
}

TEST_CASE("cpu_bf16: HSEQ_CPU_BF16 chooses the path, and a misspelt or unavailable choice throws") {
  {
    ScopedEnv e("HSEQ_CPU_BF16", "emulate");
    CHECK(hseq::cpu_bf16_path_from_env() == hseq::CpuBf16Path::kEmulated);
    CHECK(hseq::detail::CpuBf16Gemm().path() == hseq::CpuBf16Path::kEmulated);
  }
  {
    ScopedEnv e("HSEQ_CPU_BF16", "auto");
    CHECK(hseq::cpu_bf16_path_from_env() ==
          (hseq::cpu_bf16_onednn_available() ? hseq::CpuBf16Path::kOneDnn : hseq::CpuBf16Path::kEmulated));
  }
  {
    ScopedEnv e("HSEQ_CPU_BF16", "onednn");
    if (hseq::cpu_bf16_onednn_available()) {
      CHECK(hseq::cpu_bf16_path_from_env() == hseq::CpuBf16Path::kOneDnn);
    } else {
      CHECK_THROWS_WITH_AS(hseq::cpu_bf16_path_from_env(), doctest::Contains("HSEQ_CPU_BF16=onednn"), hseq::Error);
      CHECK_THROWS_AS(hseq::detail::CpuBf16Gemm(), hseq::Error);  // a new context's resources refuse too
    }
  }
  {
    ScopedEnv e("HSEQ_CPU_BF16", "fast");
    CHECK_THROWS_WITH_AS(hseq::cpu_bf16_path_from_env(), doctest::Contains("unknown value 'fast'"), hseq::Error);
  }
  hseq::detail::CpuBf16Gemm g;
  g.set_path(hseq::CpuBf16Path::kEmulated);
  CHECK(g.path() == hseq::CpuBf16Path::kEmulated);
  if (!hseq::cpu_bf16_onednn_available())
    CHECK_THROWS_AS(g.set_path(hseq::CpuBf16Path::kOneDnn), hseq::Error);
  CHECK(std::string(hseq::cpu_bf16_path_name(hseq::CpuBf16Path::kOneDnn)) == "onednn");
  CHECK(std::string(hseq::cpu_bf16_path_name(hseq::CpuBf16Path::kEmulated)) == "emulated");
}

TEST_CASE("cpu_bf16: the context creates its resources once and a copy does not share them") {
  hseq::cpu::Context ctx;
  CHECK(ctx.bf16_gemm_ == nullptr);
  hseq::detail::CpuBf16Gemm& g = hseq::detail::bf16_gemm_of(ctx);
  CHECK(&hseq::detail::bf16_gemm_of(ctx) == &g);
  ctx.set_gemm_math(hseq::GemmMath::kBf16);
  hseq::cpu::Context copy = ctx;
  CHECK(copy.gemm_math() == hseq::GemmMath::kBf16);
  CHECK(copy.bf16_gemm_ == nullptr);
  hseq::cpu::Context moved = std::move(ctx);
  CHECK(&hseq::detail::bf16_gemm_of(moved) == &g);
}

#if defined(HSEQ_USE_DNNL)
namespace {
/// C = alpha op(A) op(B) + beta C through the oneDNN wrapper with fp32 operands, against a double
/// triple loop (fp32 accumulation: relative to sum |alpha a b| + |beta c|, 1e-5 covers k <= 200).
void check_onednn_f32(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t pad, float alpha,
                      float beta, hseq::detail::CpuBf16Gemm& g) {
  std::int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  std::int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
  float const nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a(std::size_t(ar * lda), nan), b(std::size_t(br * ldb), nan), c(std::size_t(m * ldc), -77.0f);
  std::uint64_t s = std::uint64_t(m * 1000 + n * 10 + k);
  for (std::int64_t i = 0; i < ar; ++i)
    for (std::int64_t j = 0; j < ac; ++j) a[std::size_t(i * lda + j)] = float(hseq::philox_uniform(s, 1, std::uint64_t(i * ac + j)) * 2 - 1);
  for (std::int64_t i = 0; i < br; ++i)
    for (std::int64_t j = 0; j < bc; ++j) b[std::size_t(i * ldb + j)] = float(hseq::philox_uniform(s, 2, std::uint64_t(i * bc + j)) * 2 - 1);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      c[std::size_t(i * ldc + j)] = beta == 0.0f ? nan : float(hseq::philox_uniform(s, 3, std::uint64_t(i * n + j)));
  std::vector<float> const c0 = c;
  g.matmul(false, ta, tb, m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, alpha, beta);
  std::int64_t bad = 0, pad_changed = 0;
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double want = 0, mag = 0;
      for (std::int64_t l = 0; l < k; ++l) {
        double p = double(ta ? a[std::size_t(l * lda + i)] : a[std::size_t(i * lda + l)]) *
                   double(tb ? b[std::size_t(j * ldb + l)] : b[std::size_t(l * ldb + j)]);
        want += p;
        mag += std::abs(p);
      }
      want *= alpha;
      mag *= std::abs(alpha);
      if (beta != 0.0f) {
        want += double(beta) * c0[std::size_t(i * ldc + j)];
        mag += std::abs(double(beta) * c0[std::size_t(i * ldc + j)]);
      }
      bad += !(std::abs(double(c[std::size_t(i * ldc + j)]) - want) <= 1e-5 * mag + 1e-30);
    }
    for (std::int64_t j = n; j < ldc; ++j) pad_changed += c[std::size_t(i * ldc + j)] != -77.0f;
  }
  INFO("ta ", ta, " tb ", tb, " m ", m, " n ", n, " k ", k, " pad ", pad, " alpha ", alpha, " beta ", beta);
  CHECK(bad == 0);
  CHECK(pad_changed == 0);
}
}  // namespace

#endif

TEST_CASE("cpu_bf16: the bf16 copies for oneDNN: compact, and transposed in tiles for a transposed A") {
  hseq::detail::CpuBf16Gemm g;
  for (auto [rows, cols, ld] : {std::array<std::int64_t, 3>{3, 5, 7}, {70, 45, 45}, {33, 200, 201}, {300, 150, 160}}) {
    std::vector<float> src(std::size_t(rows * ld), std::numeric_limits<float>::quiet_NaN());
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) src[std::size_t(i * ld + j)] = float(i) - 0.37f * float(j) + 1e-3f * float(i * j);
    std::uint16_t const* c = g.to_bf16(0, src.data(), rows, cols, ld);
    std::uint16_t const* t = g.to_bf16_transposed(1, src.data(), rows, cols, ld);
    std::int64_t bad_c = 0, bad_t = 0;
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) {
        std::uint16_t want = float_to_bf16(src[std::size_t(i * ld + j)]);
        bad_c += c[i * cols + j] != want;
        bad_t += t[j * rows + i] != want;
      }
    INFO("rows ", rows, " cols ", cols, " ld ", ld);
    CHECK(bad_c == 0);
    CHECK(bad_t == 0);
  }
}

#if defined(HSEQ_USE_DNNL)
TEST_CASE("cpu_bf16: the oneDNN matmul wrapper handles transposes, leading dimensions, alpha and beta") {
  REQUIRE(hseq::cpu_onednn_linked());  // this translation unit registered oneDNN's hooks
  hseq::detail::CpuBf16Gemm g;
  CHECK(std::string(g.last_impl()).empty());
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_onednn_f32(ta, tb, 37, 29, 41, 0, 1.0f, 0.0f, g);
      check_onednn_f32(ta, tb, 37, 29, 41, 3, 1.0f, 0.0f, g);     // padded rows: strided views
      check_onednn_f32(ta, tb, 64, 48, 80, 5, 0.125f, 1.0f, g);   // scaled, accumulated into C
      check_onednn_f32(ta, tb, 20, 70, 9, 2, -1.5f, 0.5f, g);     // beta neither 0 nor 1
      check_onednn_f32(ta, tb, 1, 33, 17, 1, 1.0f, 0.0f, g);      // one row
      check_onednn_f32(ta, tb, 37, 29, 41, 0, 1.0f, 0.0f, g);     // the cached primitive again
    }
  CHECK(std::string(g.last_impl()).size() > 0);  // oneDNN named the implementation that ran
  MESSAGE("oneDNN f32 matmul implementation here: ", std::string(g.last_impl()));
}
#endif

}  // namespace HSEQ_TEST_UNIT
