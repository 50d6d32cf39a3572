// SPDX-License-Identifier: MIT
// CPU <-> GPU parity of every op in include/hseq/ops. Each test runs the CPU overload
// (hseq::cpu::Context, HostSpace) and the CUDA overload (hseq::cuda::Context, DeviceSpace) on the same
// inputs and compares the results by NMSE (test/cuda/support.cuh) or bit for bit where the op is a
// copy, a gather or a pure function of Philox draws.
//
// Tolerances (NMSE = sum (gpu - cpu)^2 / sum cpu^2):
//   float  1e-10: fp32 rounding differs between the two (FMA contraction, summation order, tanhf /
//                 expf vs glibc/Eigen within a few ulps); a few ulps rms gives NMSE ~1e-13, a wrong
//                 element out of thousands gives >= 1e-4, so 1e-10 separates the two by far.
//   double 1e-24: the same argument with eps^2 ~ 1e-32.
//   attention float 1e-7 (as specified for the flash-style kernel, whose online softmax rescales
//                 and sums in a different order than the CPU's materialised probabilities); double 1e-20.
//   GEMM with GemmMath::kTf32 / kBf16: see the comment at that test.
// Sizes are small and deliberately not multiples of 32 or 128 (37 rows, 70 columns, vocabulary 300,
// 100003 elements) so that every tail path of the kernels runs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "support.cuh"

#include "hseq/ops/adamw.hpp"
#include "hseq/ops/attention.hpp"
#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/cross_entropy.hpp"
#include "hseq/ops/dropout.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/init.hpp"
#include "hseq/ops/layer_norm.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/position.hpp"
#include "hseq/ops/resample.hpp"
#include "hseq/ops/rnn_cell.hpp"
#include "hseq/ops/softmax.hpp"

namespace hseq::test_cuda {
namespace {

using ops::AttentionDims;
using ops::AttentionMask;
using ops::Trans;

template <class T>
constexpr double kTol = std::is_same_v<T, float> ? 1e-10 : 1e-24;
template <class T>
constexpr double kAttentionTol = std::is_same_v<T, float> ? 1e-7 : 1e-20;

char const* trans_name(Trans t) { return t == Trans::kNo ? "N" : "T"; }

// =============================================================================================
// mat
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: copy_mat and add_mat with ld > cols", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const rows = 37, cols = 70;
  auto src = random_mat<T>(rows, cols, cols + 5, 11);
  auto dst = random_mat<T>(rows, cols, cols + 9, 12);  // NaN padding that must survive
  auto dsrc = to_device(gctx, src);

  SUBCASE("copy_mat") {
    auto want = clone(dst);
    auto ddst = to_device(gctx, dst);
    ops::copy_mat<T>(cctx, src.cmat(), want.mat());
    ops::copy_mat<T>(gctx, dsrc.cmat(), ddst.mat());
    auto got = to_host(gctx, ddst);
    CHECK(bit_mismatches(window(got), window(want)) == 0);
    CHECK(bit_mismatches(window(got), window(src)) == 0);
    CHECK(outside_bit_mismatches(got, dst) == 0);
  }
  SUBCASE("add_mat") {
    auto want = clone(dst);
    auto ddst = to_device(gctx, dst);
    ops::add_mat<T>(cctx, src.cmat(), want.mat());
    ops::add_mat<T>(gctx, dsrc.cmat(), ddst.mat());
    auto got = to_host(gctx, ddst);
    // One IEEE addition per element: correctly rounded on both sides.
    CHECK(bit_mismatches(window(got), window(want)) == 0);
    CHECK(outside_bit_mismatches(got, dst) == 0);
  }
}

// =============================================================================================
// gemm
// =============================================================================================

template <class T>
struct GemmOperands {
  HostMat<T> a, b, c;
};

/// op(A) [m, k], op(B) [k, n], C [m, n], each with ld > cols; `batch` copies with gaps.
template <class T>
GemmOperands<T> gemm_operands(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t batch,
                              std::uint64_t seed) {
  std::int64_t ar = ta == Trans::kNo ? m : k, ac = ta == Trans::kNo ? k : m;
  std::int64_t br = tb == Trans::kNo ? k : n, bc = tb == Trans::kNo ? n : k;
  std::int64_t lda = ac + 3, ldb = bc + 5, ldc = n + 7;
  GemmOperands<T> o;
  o.a = random_mat<T>(ar, ac, lda, seed, 1.0, batch, ar * lda + 11);
  o.b = random_mat<T>(br, bc, ldb, seed + 1, 1.0, batch, br * ldb + 13);
  o.c = random_mat<T>(m, n, ldc, seed + 2, 1.0, batch, m * ldc + 17);
  return o;
}

TEST_CASE_TEMPLATE("cuda parity: gemm, all transposes, beta 0 and 1, ld > cols", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const m = 37, n = 70, k = 45;
  for (Trans ta : {Trans::kNo, Trans::kYes})
    for (Trans tb : {Trans::kNo, Trans::kYes})
      for (T beta : {T(0), T(1)}) {
        INFO("op(A) ", trans_name(ta), ", op(B) ", trans_name(tb), ", beta ", double(beta));
        auto o = gemm_operands<T>(ta, tb, m, n, k, 1, 100);
        if (beta == T(0)) fill_window(o.c, nan_v<T>());  // beta == 0: C must not be read
        auto da = to_device(gctx, o.a);
        auto db = to_device(gctx, o.b);
        auto dc = to_device(gctx, o.c);
        auto want = clone(o.c);
        T const alpha = T(0.75);
        ops::gemm<T>(cctx, ta, o.a.cmat(), tb, o.b.cmat(), want.mat(), alpha, beta);
        ops::gemm<T>(gctx, ta, da.cmat(), tb, db.cmat(), dc.mat(), alpha, beta);
        auto got = to_host(gctx, dc);
        CHECK_NMSE(window(got), window(want), kTol<T>);
        CHECK(outside_bit_mismatches(got, o.c) == 0);
      }
}

TEST_CASE_TEMPLATE("cuda parity: gemm with k = 0 is C = beta C", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const m = 37, n = 70;
  auto a = random_mat<T>(m, 0, 1, 1);
  auto b = random_mat<T>(0, n, n, 2);
  for (T beta : {T(0), T(0.5)}) {
    INFO("beta ", double(beta));
    auto c = random_mat<T>(m, n, n + 3, 3);
    if (beta == T(0)) fill_window(c, nan_v<T>());
    auto want = clone(c);
    auto da = to_device(gctx, a);
    auto db = to_device(gctx, b);
    auto dc = to_device(gctx, c);
    ops::gemm<T>(cctx, Trans::kNo, a.cmat(), Trans::kNo, b.cmat(), want.mat(), T(1), beta);
    ops::gemm<T>(gctx, Trans::kNo, da.cmat(), Trans::kNo, db.cmat(), dc.mat(), T(1), beta);
    auto got = to_host(gctx, dc);
    CHECK(bit_mismatches(window(got), window(want)) == 0);
    CHECK(outside_bit_mismatches(got, c) == 0);
  }
}

TEST_CASE_TEMPLATE("cuda parity: gemm_strided_batched, all transposes, beta 0 and 1", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const m = 37, n = 70, k = 45, batch = 3;
  for (Trans ta : {Trans::kNo, Trans::kYes})
    for (Trans tb : {Trans::kNo, Trans::kYes})
      for (T beta : {T(0), T(1)}) {
        INFO("op(A) ", trans_name(ta), ", op(B) ", trans_name(tb), ", beta ", double(beta));
        auto o = gemm_operands<T>(ta, tb, m, n, k, batch, 200);
        if (beta == T(0)) fill_window(o.c, nan_v<T>());
        auto da = to_device(gctx, o.a);
        auto db = to_device(gctx, o.b);
        auto dc = to_device(gctx, o.c);
        auto want = clone(o.c);
        T const alpha = T(-1.25);
        ops::gemm_strided_batched<T>(cctx, batch, ta, o.a.cmat(), o.a.stride, tb, o.b.cmat(), o.b.stride, want.mat(),
                                     o.c.stride, alpha, beta);
        ops::gemm_strided_batched<T>(gctx, batch, ta, da.cmat(), da.stride, tb, db.cmat(), db.stride, dc.mat(),
                                     dc.stride, alpha, beta);
        auto got = to_host(gctx, dc);
        CHECK_NMSE(window(got), window(want), kTol<T>);
        CHECK(outside_bit_mismatches(got, o.c) == 0);
      }
  {  // stride 0 shares one B across the batch
    INFO("stride_b 0");
    auto o = gemm_operands<T>(Trans::kNo, Trans::kYes, m, n, k, batch, 300);
    auto b1 = random_mat<T>(n, k, k + 2, 301);
    auto da = to_device(gctx, o.a);
    auto db = to_device(gctx, b1);
    auto dc = to_device(gctx, o.c);
    auto want = clone(o.c);
    ops::gemm_strided_batched<T>(cctx, batch, Trans::kNo, o.a.cmat(), o.a.stride, Trans::kYes, b1.cmat(), 0,
                                 want.mat(), o.c.stride, T(1), T(1));
    ops::gemm_strided_batched<T>(gctx, batch, Trans::kNo, da.cmat(), da.stride, Trans::kYes, db.cmat(), 0, dc.mat(),
                                 dc.stride, T(1), T(1));
    auto got = to_host(gctx, dc);
    CHECK_NMSE(window(got), window(want), kTol<T>);
    CHECK(outside_bit_mismatches(got, o.c) == 0);
  }
}

// Reduced-precision GEMMs. Rounding an operand to p significant bits gives a relative error with
// E[d^2] ~ 2^(-2p) / 6 (uniform rounding error, mantissa spread over [1, 2)); a product of two rounded
// operands doubles it, and with independent signs the sum over k keeps the ratio, so
// NMSE(reduced, fp32) ~ 2^(-2p) / 3:
//   TF32 (p = 11): ~8e-8   -> tolerance 1e-5 (> 100x margin)
//   BF16 (p = 8):  ~5e-6   -> tolerance 1e-4 (20x margin)
// A wrong product (transposed operand, wrong ld, missing beta) gives NMSE ~ 1. Whether the mode is
// in effect at all (NMSE > 0) is only reported (WARN): cuBLAS may pick an fp32 kernel for small sizes.
TEST_CASE("cuda parity: float gemm with GemmMath kTf32 and kBf16") {
  cpu::Context cctx;
  std::int64_t const m = 37, n = 70, k = 300, batch = 2;
  struct Mode {
    GemmMath math;
    char const* name;
    double tol;
  };
  for (Mode mode : {Mode{GemmMath::kTf32, "tf32", 1e-5}, Mode{GemmMath::kBf16, "bf16", 1e-4}}) {
    for (Trans ta : {Trans::kNo, Trans::kYes})
      for (Trans tb : {Trans::kNo, Trans::kYes}) {
        INFO("math ", mode.name, ", op(A) ", trans_name(ta), ", op(B) ", trans_name(tb));
        cuda::Context gctx;
        gctx.set_gemm_math(mode.math);
        CHECK((gctx.gemm_math() == mode.math));
        // The float GEMM calls of this context, by the math they asked cuBLAS for: only `mode`.
        auto calls = [&] {
          KernelCounts const& kc = gctx.kernel_counts();
          return std::vector<std::uint64_t>{kc.gemm_fp32, kc.gemm_tf32, kc.gemm_bf16, kc.gemm_fp64};
        };
        auto expect_calls = [&](std::uint64_t n) {
          return mode.math == GemmMath::kTf32 ? std::vector<std::uint64_t>{0, n, 0, 0}
                                              : std::vector<std::uint64_t>{0, 0, n, 0};
        };
        CHECK(calls() == expect_calls(0));
        auto o = gemm_operands<float>(ta, tb, m, n, k, batch, 400);
        auto da = to_device(gctx, o.a);
        auto db = to_device(gctx, o.b);
        {  // single GEMM, beta 1
          auto dc = to_device(gctx, o.c);
          auto want = clone(o.c);
          ops::gemm<float>(cctx, ta, o.a.cmat(), tb, o.b.cmat(), want.mat(), 1.0f, 1.0f);
          ops::gemm<float>(gctx, ta, da.cmat(), tb, db.cmat(), dc.mat(), 1.0f, 1.0f);
          auto got = to_host(gctx, dc);
          auto gw = window(got), ww = window(want);
          // Only the first batch item was computed: compare that one.
          HostTensor<float> g0(Shape{m, n}), w0(Shape{m, n});
          std::copy_n(gw.data(), m * n, g0.data());
          std::copy_n(ww.data(), m * n, w0.data());
          double e = nmse(g0, w0);
          CHECK_NMSE(g0, w0, mode.tol);
          // Whether cuBLAS honoured the mode at these small, odd sizes is only reported here; the
          // test "TF32 and bf16 GEMM modes take effect" below requires it on a 256^3 GEMM.
          WARN_MESSAGE(e > 0.0, "reduced-precision math seems not in effect (result identical to fp32)");
          CHECK(outside_bit_mismatches(got, o.c) == 0);
          CHECK(calls() == expect_calls(1));
        }
        {  // strided batched, beta 0
          auto dc = to_device(gctx, o.c);
          auto want = clone(o.c);
          ops::gemm_strided_batched<float>(cctx, batch, ta, o.a.cmat(), o.a.stride, tb, o.b.cmat(), o.b.stride,
                                           want.mat(), o.c.stride, 1.0f, 0.0f);
          ops::gemm_strided_batched<float>(gctx, batch, ta, da.cmat(), da.stride, tb, db.cmat(), db.stride, dc.mat(),
                                           dc.stride, 1.0f, 0.0f);
          auto got = to_host(gctx, dc);
          CHECK_NMSE(window(got), window(want), mode.tol);
          CHECK(calls() == expect_calls(2));  // one strided-batched call, whatever the batch
        }
      }
  }
  {  // double GEMMs stay fp64 whatever the float math
    INFO("double under kBf16");
    cuda::Context gctx;
    gctx.set_gemm_math(GemmMath::kBf16);
    auto o = gemm_operands<double>(Trans::kNo, Trans::kYes, m, n, k, 1, 500);
    auto da = to_device(gctx, o.a);
    auto db = to_device(gctx, o.b);
    auto dc = to_device(gctx, o.c);
    auto want = clone(o.c);
    ops::gemm<double>(cctx, Trans::kNo, o.a.cmat(), Trans::kYes, o.b.cmat(), want.mat(), 1.0, 0.5);
    ops::gemm<double>(gctx, Trans::kNo, da.cmat(), Trans::kYes, db.cmat(), dc.mat(), 1.0, 0.5);
    auto got = to_host(gctx, dc);
    CHECK_NMSE(window(got), window(want), kTol<double>);
    KernelCounts const& kc = gctx.kernel_counts();
    CHECK(kc.gemm_fp64 == 1);
    CHECK(kc.gemm_fp32 + kc.gemm_tf32 + kc.gemm_bf16 == 0);
  }
}

/// Elements of x whose float bits below the `keep` leading mantissa bits are not all zero, i.e.
/// that rounding to a format with `keep` stored mantissa bits (TF32: 10, bf16: 7) must change.
std::int64_t not_representable(HostTensor<float> const& x, int keep) {
  std::uint32_t const low = (std::uint32_t(1) << (23 - keep)) - 1;
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    std::uint32_t b;
    std::memcpy(&b, x.data() + i, sizeof b);
    n += (b & low) != 0;
  }
  return n;
}

// The TF32 / bf16 modes must actually change the arithmetic, not only pass a loose tolerance (a
// silently fp32 path would pass any upper bound). On a 256^3 GEMM of N(0, 1) operands (nearly every
// element has mantissa bits beyond TF32's 10 and bf16's 7, checked below), the estimate at the test
// above gives NMSE(reduced, CPU fp32) ~ 2^(-2p) / 3 with p significant bits, 4x that if the operands
// are truncated rather than rounded:
//   fp32            ~1e-14 (summation order only)   -> must be <= 1e-10
//   TF32 (p = 11)   8e-8 (rounded) .. 3e-7 (truncated) -> must lie in [1e-9, 1e-6]
//   bf16 (p = 8)    5e-6 (rounded) .. 2e-5 (truncated) -> must lie in [5e-7, 1e-4]
// The windows are disjoint, so fp32 posing as TF32, or TF32 posing as bf16 (or the reverse), fails;
// each bound keeps a margin of >= 3x over the extreme estimate (65536 outputs: the NMSE itself
// fluctuates by ~1%). The per-context counters must show the requested math and no other.
TEST_CASE("cuda gemm: TF32 and bf16 GEMM modes take effect (results differ from fp32 by the expected amount)") {
  cpu::Context cctx;
  std::int64_t const n = 256;
  auto a = random_normal<float>(Shape{n, n}, 700), b = random_normal<float>(Shape{n, n}, 701);
  CHECK(not_representable(a, 10) >= n * n * 99 / 100);
  CHECK(not_representable(b, 7) >= n * n * 99 / 100);
  HostTensor<float> want(Shape{n, n});
  ops::gemm<float>(cctx, Trans::kNo, ops::as_mat(a.cview()), Trans::kNo, ops::as_mat(b.cview()), ops::as_mat(want.view()));
  struct Mode {
    char const* name;
    GemmMath math;
    bool bf16_backend;  // through hseq::cuda_bf16::Context instead of set_gemm_math
    double lo, hi;
  };
  for (Mode mode : {Mode{"fp32", GemmMath::kFp32, false, 0.0, 1e-10}, Mode{"tf32", GemmMath::kTf32, false, 1e-9, 1e-6},
                    Mode{"bf16", GemmMath::kBf16, false, 5e-7, 1e-4}, Mode{"cuda_bf16", GemmMath::kBf16, true, 5e-7, 1e-4}}) {
    INFO("math ", mode.name);
    cuda_bf16::Context bctx;
    cuda::Context fctx;
    fctx.set_gemm_math(mode.math);
    cuda::Context& gctx = mode.bf16_backend ? static_cast<cuda::Context&>(bctx) : fctx;
    CHECK((gctx.gemm_math() == mode.math));
    auto da = to_device(gctx, a), db = to_device(gctx, b);
    DeviceTensor<float> dc(Shape{n, n});
    ops::gemm<float>(gctx, Trans::kNo, ops::as_mat(da.cview()), Trans::kNo, ops::as_mat(db.cview()),
                     ops::as_mat(dc.view()));
    auto got = to_host(gctx, dc);
    double const e = nmse(got, want);
    INFO("nmse(GPU ", mode.name, ", CPU fp32) = ", e, ", required in [", mode.lo, ", ", mode.hi, "]");
    CHECK(e <= mode.hi);
    CHECK(e >= mode.lo);
    KernelCounts const& kc = gctx.kernel_counts();
    CHECK(kc.gemm_fp32 == (mode.math == GemmMath::kFp32 ? 1u : 0u));
    CHECK(kc.gemm_tf32 == (mode.math == GemmMath::kTf32 ? 1u : 0u));
    CHECK(kc.gemm_bf16 == (mode.math == GemmMath::kBf16 ? 1u : 0u));
    CHECK(kc.gemm_fp64 == 0u);
  }
}

// =============================================================================================
// elementwise
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: fill, copy, add, axpy, scale", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 1);
    auto y = random_normal<T>(s, 2);
    // Each block works on fresh device copies of x and y.
    {  // fill
      auto dy = to_device(gctx, y);
      auto want = clone(y);
      ops::fill<T>(cctx, want.view(), T(2.5));
      ops::fill<T>(gctx, dy.view(), T(2.5));
      CHECK(bit_mismatches(to_host(gctx, dy), want) == 0);
    }
    {  // copy into another shape of the same size
      auto dx = to_device(gctx, x);
      DeviceTensor<T> dz(Shape{s.numel()});
      ops::fill<T>(gctx, dz.view(), nan_v<T>());
      ops::copy<T>(gctx, dx.cview(), dz.view());
      auto got = to_host(gctx, dz);
      CHECK(bit_mismatches(got.data(), x.data(), x.numel()) == 0);
    }
    {  // add, and add in place (out aliases a)
      auto dx = to_device(gctx, x);
      auto dy = to_device(gctx, y);
      HostTensor<T> want(s);
      DeviceTensor<T> dout(s);
      ops::add<T>(cctx, x.cview(), y.cview(), want.view());
      ops::add<T>(gctx, dx.cview(), dy.cview(), dout.view());
      // One IEEE addition per element.
      CHECK(bit_mismatches(to_host(gctx, dout), want) == 0);
      ops::add<T>(gctx, dx.cview(), dy.cview(), dx.view());
      CHECK(bit_mismatches(to_host(gctx, dx), want) == 0);
    }
    {  // axpy
      auto dx = to_device(gctx, x);
      auto dy = to_device(gctx, y);
      auto want = clone(y);
      ops::axpy<T>(cctx, T(-0.375), x.cview(), want.view());
      ops::axpy<T>(gctx, T(-0.375), dx.cview(), dy.view());
      CHECK_NMSE(to_host(gctx, dy), want, kTol<T>);
    }
    {  // scale
      auto dy = to_device(gctx, y);
      auto want = clone(y);
      ops::scale<T>(cctx, want.view(), T(1.7));
      ops::scale<T>(gctx, dy.view(), T(1.7));
      CHECK_NMSE(to_host(gctx, dy), want, kTol<T>);
    }
  }
}

TEST_CASE_TEMPLATE("cuda parity: add_bias and bias_grad (accumulating into a nonzero dbias)", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{3, 347, 130}}) {
    INFO("shape ", s);
    std::int64_t c = s[-1];
    auto y = random_normal<T>(s, 3);
    auto bias = random_normal<T>(Shape{c}, 4);
    {
      auto want = clone(y);
      auto dy = to_device(gctx, y);
      auto dbias = to_device(gctx, bias);
      ops::add_bias<T>(cctx, want.view(), bias.cview());
      ops::add_bias<T>(gctx, dy.view(), dbias.cview());
      CHECK(bit_mismatches(to_host(gctx, dy), want) == 0);  // one addition per element
    }
    {
      auto g = random_normal<T>(s, 5);
      auto acc = random_normal<T>(Shape{c}, 6, 30.0);  // nonzero, comparable to the sums: bias_grad accumulates
      auto want = clone(acc);
      auto dg = to_device(gctx, g);
      auto dacc = to_device(gctx, acc);
      ops::bias_grad<T>(cctx, g.cview(), want.view());
      ops::bias_grad<T>(gctx, dg.cview(), dacc.view());
      auto got = to_host(gctx, dacc);
      CHECK_NMSE(got, want, kTol<T>);
      // The accumulation really happened: the result is not just the column sums.
      auto fresh = filled<T>(Shape{c}, T(0));
      ops::bias_grad<T>(cctx, g.cview(), fresh.view());
      CHECK(nmse(got, fresh) > 1e-2);
    }
  }
}

TEST_CASE_TEMPLATE("cuda parity: gelu forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 7, 2.5);  // covers the saturated tails
    auto g = random_normal<T>(s, 8);
    auto dx = to_device(gctx, x);
    auto dg = to_device(gctx, g);
    HostTensor<T> y(s), dxin(s);
    DeviceTensor<T> dy(s), ddxin(s);
    ops::gelu_forward<T>(cctx, x.cview(), y.view());
    ops::gelu_forward<T>(gctx, dx.cview(), dy.view());
    CHECK_NMSE(to_host(gctx, dy), y, kTol<T>);
    ops::gelu_backward<T>(cctx, x.cview(), g.cview(), dxin.view());
    ops::gelu_backward<T>(gctx, dx.cview(), dg.cview(), ddxin.view());
    CHECK_NMSE(to_host(gctx, ddxin), dxin, kTol<T>);
    // Documented aliasing: y may alias x, dx may alias dy.
    ops::gelu_backward<T>(gctx, dx.cview(), dg.cview(), dg.view());
    CHECK_NMSE(to_host(gctx, dg), dxin, kTol<T>);
    ops::gelu_forward<T>(gctx, dx.cview(), dx.view());
    CHECK_NMSE(to_host(gctx, dx), y, kTol<T>);
  }
}

TEST_CASE_TEMPLATE("cuda parity: sum and sum_squares (double accumulation)", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}, Shape{1}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 9, 1.0, 0.1);
    auto dx = to_device(gctx, x);
    double const want_sum = ops::sum<T>(cctx, x.cview());
    double const want_sq = ops::sum_squares<T>(cctx, x.cview());
    double const got_sum = ops::sum<T>(gctx, dx.cview());
    double const got_sq = ops::sum_squares<T>(gctx, dx.cview());
    // Both accumulate the (exact) element values in double; only the summation order differs.
    // sum has cancellation (condition ~ sqrt(n)), sum_squares none.
    CHECK(rel_diff(got_sum, want_sum) <= 1e-11);
    CHECK(rel_diff(got_sq, want_sq) <= 1e-13);
  }
  {  // The accumulation is in double: with every x = 1 + 2^-20 (exact in float), every partial sum
     // of up to 2^32 terms is exact in double, so the sum is exact in any order; a float
     // accumulator drops the 2^-20 bits past ~16 terms (relative error ~1e-6).
    std::int64_t const n = 100003;
    T const v = T(1.0 + std::ldexp(1.0, -20));
    auto x = filled<T>(Shape{n}, v);
    auto dx = to_device(gctx, x);
    double const exact = double(n) * double(v);
    CHECK(ops::sum<T>(cctx, x.cview()) == exact);
    CHECK(ops::sum<T>(gctx, dx.cview()) == exact);
    CHECK(rel_diff(ops::sum_squares<T>(gctx, dx.cview()), double(n) * double(v) * double(v)) <= 1e-13);
  }
  {  // empty input
    View<T const, DeviceSpace> empty(nullptr, Shape{0});
    CHECK(ops::sum<T>(gctx, empty) == 0.0);
    CHECK(ops::sum_squares<T>(gctx, empty) == 0.0);
    CHECK(ops::all_finite<T>(gctx, empty));
  }
}

TEST_CASE_TEMPLATE("cuda parity: all_finite with NaN, +Inf and -Inf", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    std::int64_t const n = s.numel();
    auto x = random_normal<T>(s, 10, 1e3);
    {
      auto dx = to_device(gctx, x);
      CHECK(ops::all_finite<T>(cctx, x.cview()));
      CHECK(ops::all_finite<T>(gctx, dx.cview()));
    }
    T const bad_values[] = {nan_v<T>(), std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity()};
    for (T bad : bad_values)
      for (std::int64_t where : {std::int64_t(0), n / 2 + 1, n - 1}) {
        INFO("value ", double(bad), " at ", where);
        auto y = clone(x);
        y.data()[where] = bad;
        auto dy = to_device(gctx, y);
        CHECK_FALSE(ops::all_finite<T>(cctx, y.cview()));
        CHECK_FALSE(ops::all_finite<T>(gctx, dy.cview()));
      }
    // The largest finite value is finite.
    auto z = clone(x);
    z.data()[n - 1] = std::numeric_limits<T>::max();
    auto dz = to_device(gctx, z);
    CHECK(ops::all_finite<T>(gctx, dz.cview()));
  }
}

// =============================================================================================
// layer_norm
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: layer_norm forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{5, 1030}, Shape{2, 3, 7}}) {
    INFO("shape ", s);
    std::int64_t const n = s.rows(), c = s.cols();
    auto x = random_normal<T>(s, 20, 2.0, 3.0);  // mean far from 0: tests the variance computation
    auto gamma = random_normal<T>(Shape{c}, 21, 0.3, 1.0);
    auto beta = random_normal<T>(Shape{c}, 22, 0.3);
    T const eps = T(1e-5);
    auto dxx = to_device(gctx, x);
    auto dgamma_in = to_device(gctx, gamma);
    auto dbeta_in = to_device(gctx, beta);

    HostTensor<T> y(s), mean(Shape{n}), rstd(Shape{n});
    DeviceTensor<T> gy(s), gmean(Shape{n}), grstd(Shape{n});
    ops::layer_norm_forward<T>(cctx, x.cview(), gamma.cview(), beta.cview(), eps, y.view(), mean.view(), rstd.view());
    ops::layer_norm_forward<T>(gctx, dxx.cview(), dgamma_in.cview(), dbeta_in.cview(), eps, gy.view(), gmean.view(),
                               grstd.view());
    CHECK_NMSE(to_host(gctx, gy), y, kTol<T>);
    CHECK_NMSE(to_host(gctx, gmean), mean, kTol<T>);
    CHECK_NMSE(to_host(gctx, grstd), rstd, kTol<T>);

    // Backward from identical inputs (the CPU's mean and rstd on both sides).
    auto dyv = random_normal<T>(s, 23);
    auto dgam0 = random_normal<T>(Shape{c}, 24);  // nonzero: parameter gradients accumulate
    auto dbet0 = random_normal<T>(Shape{c}, 25);
    auto ddy = to_device(gctx, dyv);
    auto dmean = to_device(gctx, mean);
    auto drstd = to_device(gctx, rstd);
    auto want_dgam = clone(dgam0), want_dbet = clone(dbet0);
    auto gdgam = to_device(gctx, dgam0), gdbet = to_device(gctx, dbet0);
    auto want_dx = filled<T>(s, nan_v<T>());  // dx is overwritten
    auto gdx = to_device(gctx, want_dx);
    ops::layer_norm_backward<T>(cctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dyv.cview(), want_dx.view(),
                                want_dgam.view(), want_dbet.view());
    ops::layer_norm_backward<T>(gctx, dxx.cview(), dgamma_in.cview(), dmean.cview(), drstd.cview(), ddy.cview(),
                                gdx.view(), gdgam.view(), gdbet.view());
    CHECK_NMSE(to_host(gctx, gdx), want_dx, kTol<T>);
    CHECK_NMSE(to_host(gctx, gdgam), want_dgam, kTol<T>);
    CHECK_NMSE(to_host(gctx, gdbet), want_dbet, kTol<T>);

    // dx empty: only the parameter gradients, accumulated a second time.
    ops::layer_norm_backward<T>(cctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dyv.cview(),
                                View<T, HostSpace>{}, want_dgam.view(), want_dbet.view());
    ops::layer_norm_backward<T>(gctx, dxx.cview(), dgamma_in.cview(), dmean.cview(), drstd.cview(), ddy.cview(),
                                View<T, DeviceSpace>{}, gdgam.view(), gdbet.view());
    CHECK_NMSE(to_host(gctx, gdgam), want_dgam, kTol<T>);
    CHECK_NMSE(to_host(gctx, gdbet), want_dbet, kTol<T>);
  }
}

// =============================================================================================
// softmax
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: plain softmax forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 300}, Shape{3, 2051}, Shape{4, 5, 1}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 30, 4.0);
    auto dx = to_device(gctx, x);
    HostTensor<T> y(s);
    DeviceTensor<T> gy(s);
    ops::softmax_forward<T>(cctx, x.cview(), y.view());
    ops::softmax_forward<T>(gctx, dx.cview(), gy.view());
    CHECK_NMSE(to_host(gctx, gy), y, kTol<T>);
    // In place (y aliases x).
    ops::softmax_forward<T>(gctx, dx.cview(), dx.view());
    CHECK_NMSE(to_host(gctx, dx), y, kTol<T>);

    auto dyv = random_normal<T>(s, 31);
    auto want = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, want);
    auto gyy = to_device(gctx, y);  // identical y on both sides
    auto gdy = to_device(gctx, dyv);
    ops::softmax_backward<T>(cctx, y.cview(), dyv.cview(), want.view());
    ops::softmax_backward<T>(gctx, gyy.cview(), gdy.cview(), gdx.view());
    CHECK_NMSE(to_host(gctx, gdx), want, kTol<T>);
  }
}

struct SoftmaxCase {
  char const* name;
  AttentionMask mask;
  std::int64_t tq, tk, prefix;
};

TEST_CASE_TEMPLATE("cuda parity: masked softmax forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  SoftmaxCase const cases[] = {
      {"none", AttentionMask::none(), 37, 45, 0},
      {"causal, prefix 8", AttentionMask::causal(), 37, 50, 8},
      {"rates(1, 0, 3, 0), prefix 4", AttentionMask::rates(1, 0, 3, 0), 37, 17, 4},
      {"rates(3, 2, 1, 0), prefix 6", AttentionMask::rates(3, 2, 1, 0), 13, 45, 6},
      {"rates(1, -3, 1, 0): rows that see nothing", AttentionMask::rates(1, -3, 1, 0), 37, 37, 0},
      {"causal, Tk 300", AttentionMask::causal(), 300, 300, 0},
  };
  for (auto const& c : cases) {
    INFO("case ", c.name);
    Shape const s{2, 3, c.tq, c.tk};
    T const scale = T(0.3);
    auto x = random_normal<T>(s, 32, 3.0);
    auto dxx = to_device(gctx, x);
    auto y = filled<T>(s, nan_v<T>());
    auto gy = to_device(gctx, y);
    ops::softmax_forward<T>(cctx, x.cview(), y.view(), c.mask, scale, c.prefix);
    ops::softmax_forward<T>(gctx, dxx.cview(), gy.view(), c.mask, scale, c.prefix);
    auto got = to_host(gctx, gy);
    CHECK_NMSE(got, y, kTol<T>);

    auto dyv = random_normal<T>(s, 33);
    auto want_dx = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, want_dx);
    auto gyy = to_device(gctx, y);
    auto gdy = to_device(gctx, dyv);
    ops::softmax_backward<T>(cctx, y.cview(), dyv.cview(), want_dx.view(), c.mask, scale, c.prefix);
    ops::softmax_backward<T>(gctx, gyy.cview(), gdy.cview(), gdx.view(), c.mask, scale, c.prefix);
    auto got_dx = to_host(gctx, gdx);
    CHECK_NMSE(got_dx, want_dx, kTol<T>);

    // Masked entries are exactly zero in y and dx on the GPU; a row that sees nothing is all zero.
    std::int64_t masked_nonzero = 0, blind_rows = 0;
    for (std::int64_t r = 0; r < s.rows(); ++r) {
      std::int64_t vis = c.mask.visible(r % c.tq, c.tk, c.prefix);
      blind_rows += vis == 0;
      masked_nonzero += nonzeros(got.data() + r * c.tk + vis, c.tk - vis);
      masked_nonzero += nonzeros(got_dx.data() + r * c.tk + vis, c.tk - vis);
    }
    CHECK(masked_nonzero == 0);
    if (c.mask.kind == AttentionMask::Kind::kRate && c.mask.q_offset < 0) CHECK(blind_rows == 2 * 3 * 3);
  }
}

// =============================================================================================
// attention
// =============================================================================================

struct AttentionCase {
  char const* name;
  AttentionMask mask;
  std::int64_t batch, heads, tq, tk, prefix, kv_rows;
};

std::vector<AttentionCase> attention_cases() {
  return {
      {"none, prefix 5", AttentionMask::none(), 2, 3, 37, 53, 5, 60},
      // Keys 45..49 are seen by no query: their dK, dV must be exactly zero.
      {"causal, prefix 8, unseen keys", AttentionMask::causal(), 2, 2, 37, 50, 8, 53},
      {"upsampling rates(1, 0, 3, 0), prefix 4", AttentionMask::rates(1, 0, 3, 0), 2, 2, 37, 17, 4, 20},
      {"pooling rates(3, 2, 1, 0), prefix 6", AttentionMask::rates(3, 2, 1, 0), 2, 2, 13, 45, 6, 47},
      {"rates(1, -3, 1, 0): first rows see nothing", AttentionMask::rates(1, -3, 1, 0), 2, 2, 37, 37, 0, 40},
      {"rates(1, -64, 1, 0): a blind block, Tq 130", AttentionMask::rates(1, -64, 1, 0), 1, 2, 130, 70, 0, 71},
      {"causal, Tq 130, Tk 200, prefix 70", AttentionMask::causal(), 1, 2, 130, 200, 70, 203},
  };
}

/// The attention kernels the CUDA ops must dispatch to (ops/cuda/attention.cuh): the tensor-core
/// kernels (3xTF32 in fp32 math, one TF32 product otherwise) or the tiled ones for float head sizes
/// 17..64 when selected (kAuto = kMma), the one-thread-per-row kernels otherwise.
enum class AttentionFamily { kMma3xTf32, kMmaTf32, kTiled, kSimple };
char const* family_name(AttentionFamily f) {
  switch (f) {
    case AttentionFamily::kMma3xTf32: return "mma 3xTF32";
    case AttentionFamily::kMmaTf32: return "mma TF32";
    case AttentionFamily::kTiled: return "tiled";
    default: return "simple";
  }
}
template <class T>
AttentionFamily expected_attention_family(std::int64_t head_dim, hseq::AttentionKernels kernels, hseq::GemmMath math) {
  if (!std::is_same_v<T, float> || head_dim <= 16 || head_dim > 64) return AttentionFamily::kSimple;
  switch (kernels) {
    case hseq::AttentionKernels::kTiled: return AttentionFamily::kTiled;
    case hseq::AttentionKernels::kSimple: return AttentionFamily::kSimple;
    default: return math == hseq::GemmMath::kFp32 ? AttentionFamily::kMma3xTf32 : AttentionFamily::kMmaTf32;
  }
}
/// The attention counters of a context, in AttentionFamily order.
std::vector<std::uint64_t> attention_counts(cuda::Context const& ctx) {
  KernelCounts const& kc = ctx.kernel_counts();
  return {kc.attention_mma_3xtf32, kc.attention_mma_tf32, kc.attention_tiled, kc.attention_simple};
}
/// `n` calls of family `f` and none of the others.
std::vector<std::uint64_t> family_counts(AttentionFamily f, std::uint64_t n) {
  std::vector<std::uint64_t> v(4, 0);
  v[std::size_t(f)] = n;
  return v;
}
/// NMSE against the CPU (fp32) that separates the one-TF32-product attention kernels (~1e-7 .. 1e-6)
/// from the fp32-accurate ones (~1e-13): 100x below the former, 1e4x above the latter.
constexpr double kTf32AttentionFloor = 1e-9;

template <class T>
void check_attention_case(AttentionCase const& c, std::int64_t head_dim,
                          hseq::AttentionKernels kernels = hseq::AttentionKernels::kAuto,
                          hseq::GemmMath math = hseq::GemmMath::kFp32, double tol = kAttentionTol<T>) {
  cpu::Context cctx;
  cuda::Context gctx;
  gctx.set_attention_kernels(kernels);
  gctx.set_gemm_math(math);
  INFO("case ", c.name, ", head_dim ", head_dim, ", kernels ", int(kernels), ", math ", int(math));
  AttentionDims d;
  d.batch = c.batch;
  d.heads = c.heads;
  d.tq = c.tq;
  d.tk = c.tk;
  d.head_dim = head_dim;
  d.prefix = c.prefix;
  d.kv_rows = c.kv_rows;
  std::int64_t const w = d.width(), kvr = d.kv_stride_rows();
  T const scale = T(1.0 / std::sqrt(double(head_dim)));

  auto q = random_normal<T>(Shape{d.batch, d.tq, w}, 40);
  auto kv = random_normal<T>(Shape{d.batch, kvr, 2 * w}, 41);
  // Rows [tk, kv_rows) of each batch element are outside the cache's live part: NaN, never read.
  for (std::int64_t b = 0; b < d.batch; ++b)
    std::fill(kv.data() + (b * kvr + d.tk) * 2 * w, kv.data() + (b + 1) * kvr * 2 * w, nan_v<T>());
  auto dout = random_normal<T>(Shape{d.batch, d.tq, w}, 42);

  // CPU
  auto out = filled<T>(q.shape(), nan_v<T>());
  HostTensor<T> probs(ops::attention_stats_shape(HostSpace{}, d));
  auto dq = filled<T>(q.shape(), nan_v<T>());
  auto dkv = filled<T>(kv.shape(), nan_v<T>());
  HostTensor<T> scratch(Shape{std::max<std::int64_t>(ops::attention_backward_scratch(HostSpace{}, d), 1)});
  ops::attention_forward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view());
  ops::attention_backward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.cview(), probs.cview(), dout.cview(),
                             dq.view(), dkv.view(), scratch.view());

  // GPU (its own forward: the saved statistics differ by design)
  auto gq = to_device(gctx, q);
  auto gkv = to_device(gctx, kv);
  auto gdout = to_device(gctx, dout);
  auto gout = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  DeviceTensor<T> gstats(ops::attention_stats_shape(DeviceSpace{}, d));
  auto gdq = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  auto gdkv = to_device(gctx, filled<T>(kv.shape(), nan_v<T>()));
  DeviceTensor<T> gscratch(Shape{ops::attention_backward_scratch(DeviceSpace{}, d)});
  ops::attention_forward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.view(), gstats.view());
  ops::attention_backward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.cview(), gstats.cview(),
                             gdout.cview(), gdq.view(), gdkv.view(), gscratch.view());
  auto hout = to_host(gctx, gout);
  auto hdq = to_host(gctx, gdq);
  auto hdkv = to_host(gctx, gdkv);

  // The family that ran (forward and backward: one count each) is the one requested.
  AttentionFamily const fam = expected_attention_family<T>(head_dim, kernels, math);
  INFO("expected family ", family_name(fam));
  CHECK(attention_counts(gctx) == family_counts(fam, 2));

  CHECK_NMSE(hout, out, tol);
  CHECK_NMSE(hdq, dq, tol);
  // Precision actually in effect, from the forward output (no cancellation there): the fp32
  // families (3xTF32 split, SIMT) stay at rounding noise (~1e-13), the one-TF32-product kernels
  // must not (operands rounded to 10 mantissa bits: ~1e-7 .. 1e-6, see the kernel-family test).
  if constexpr (std::is_same_v<T, float>) {
    double const e_out = nmse(hout, out), e_dq = nmse(hdq, dq);
    INFO("nmse(out) ", e_out, ", nmse(dq) ", e_dq);
    if (fam == AttentionFamily::kMmaTf32) {
      CHECK(e_out >= kTf32AttentionFloor);
      CHECK(e_dq >= kTf32AttentionFloor);
    } else {
      CHECK(e_out < kTf32AttentionFloor);
    }
  }
  // dkv: only the live rows [0, tk) of each batch element are defined.
  HostTensor<T> live_got(Shape{d.batch, d.tk, 2 * w}), live_want(Shape{d.batch, d.tk, 2 * w});
  for (std::int64_t b = 0; b < d.batch; ++b) {
    std::copy_n(hdkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_got.data() + b * d.tk * 2 * w);
    std::copy_n(dkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_want.data() + b * d.tk * 2 * w);
  }
  CHECK_NMSE(live_got, live_want, tol);

  // Rows that see nothing: zero output and zero dq on both sides.
  std::int64_t blind = 0, blind_nonzero_cpu = 0, blind_nonzero_gpu = 0;
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t i = 0; i < d.tq; ++i) {
      if (c.mask.visible(i, d.tk, d.prefix) != 0) continue;
      ++blind;
      std::int64_t off = (b * d.tq + i) * w;
      blind_nonzero_cpu += nonzeros(out.data() + off, w) + nonzeros(dq.data() + off, w);
      blind_nonzero_gpu += nonzeros(hout.data() + off, w) + nonzeros(hdq.data() + off, w);
    }
  CHECK(blind_nonzero_cpu == 0);
  CHECK(blind_nonzero_gpu == 0);
  if (c.mask.kind == AttentionMask::Kind::kRate && c.mask.q_offset < 0) CHECK(blind == d.batch * -c.mask.q_offset);
  // Keys no query sees: zero dK and dV on the GPU.
  std::int64_t const seen = c.mask.visible(d.tq - 1, d.tk, d.prefix);
  std::int64_t unseen_nonzero = 0;
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t j = seen; j < d.tk; ++j) unseen_nonzero += nonzeros(hdkv.data() + (b * kvr + j) * 2 * w, 2 * w);
  CHECK(unseen_nonzero == 0);
}

TEST_CASE_TEMPLATE("cuda parity: attention forward and backward", T, float, double) {
  for (std::int64_t head_dim : {4, 16, 64, 100})
    for (auto const& c : attention_cases()) check_attention_case<T>(c, head_dim);
}

// Every float kernel family the context can select, on the head sizes they serve (17..64).
// fp32 mode: the tiled SIMT kernels, the 3xTF32 tensor-core kernels and the one-thread-per-row
// kernels all meet the fp32 tolerance. TF32 mode (one TF32 product: operands rounded to 10 mantissa
// bits, relative error 2^-11 ~ 4.9e-4 per operand, partly averaging out over the dot products):
// nmse <= 1e-5 leaves a margin of about 10x over the ~1e-6 expected, and still fails for any
// layout or masking error (those give nmse of order 1). Every call also checks, through the
// context's KernelCounts, that the requested family is the one dispatched, and that the TF32
// kernels' results differ from fp32 (nmse >= kTf32AttentionFloor) while the fp32 families' do not.
TEST_CASE("cuda parity: attention kernel families (tiled, 3xTF32 mma, simple; TF32 mma)") {
  using hseq::AttentionKernels;
  using hseq::GemmMath;
  for (std::int64_t head_dim : {24, 32, 64})
    for (auto const& c : attention_cases()) {
      for (auto k : {AttentionKernels::kTiled, AttentionKernels::kMma, AttentionKernels::kSimple})
        check_attention_case<float>(c, head_dim, k, GemmMath::kFp32, kAttentionTol<float>);
      check_attention_case<float>(c, head_dim, AttentionKernels::kMma, GemmMath::kTf32, 1e-5);
      check_attention_case<float>(c, head_dim, AttentionKernels::kAuto, GemmMath::kBf16, 1e-5);
    }
}

// Score biases and the key mass (ops::AttentionScores) on CUDA: the materialising path of
// ops/cuda/attention.cuh (cuBLAS scores, the masked softmax kernels, the embedding gather/scatter
// for the distance table), against the CPU reference on the same inputs. Every mask case of
// attention_cases() (full and causal with a prefix, rates, blind rows, kv_rows > Tk, batch 1 and 2),
// head sizes 5 and 64, and these score setups. The table gradient accumulates into a nonzero
// buffer (+=, like a parameter gradient); the dense gradient starts as NaN (overwritten, zero where
// masked). Tolerances: kAttentionTol (the path materialises the probabilities like the CPU does).
struct ScoreSetup {
  char const* name;
  std::int64_t table_d;  ///< D of the [H, D] distance table; 0: none
  bool table_grad;       ///< AttentionScoreGrads::table requested (accumulated onto a nonzero buffer)
  bool dense;            ///< a dense [B, H, Tq, Tk] bias
  bool mass;             ///< the key mass output
  bool dense_grad;       ///< AttentionScoreGrads::dense requested
  std::int64_t q_pos0;   ///< -1: the prefix
};
std::vector<ScoreSetup> score_setups() {
  return {
      {"table D 7 and its gradient", 7, true, false, false, false, -1},
      {"frozen table D 5 (no gradient) + key mass", 5, false, false, true, false, -1},
      {"dense bias and its gradient", 0, false, true, false, true, -1},
      {"table D 80 + dense + key mass, both gradients, q_pos0 3", 80, true, true, true, true, 3},
      {"key mass only (flash forward and backward)", 0, false, false, true, false, -1},
      {"key mass + dense gradient without a dense bias", 0, false, false, true, true, -1},
  };
}

template <class T>
void check_scored_attention_case(AttentionCase const& c, std::int64_t head_dim, ScoreSetup const& st) {
  cpu::Context cctx;
  cuda::Context gctx;
  INFO("case ", c.name, ", head_dim ", head_dim, ", scores ", st.name);
  AttentionDims d;
  d.batch = c.batch;
  d.heads = c.heads;
  d.tq = c.tq;
  d.tk = c.tk;
  d.head_dim = head_dim;
  d.prefix = c.prefix;
  d.kv_rows = c.kv_rows;
  std::int64_t const w = d.width(), kvr = d.kv_stride_rows();
  T const scale = T(1.0 / std::sqrt(double(head_dim)));
  Shape const dense_shape{d.batch, d.heads, d.tq, d.tk}, mass_shape{d.batch, d.heads, d.tk};

  auto q = random_normal<T>(Shape{d.batch, d.tq, w}, 50);
  auto kv = random_normal<T>(Shape{d.batch, kvr, 2 * w}, 51);
  for (std::int64_t b = 0; b < d.batch; ++b)  // rows [tk, kv_rows): outside the live cache, never read
    std::fill(kv.data() + (b * kvr + d.tk) * 2 * w, kv.data() + (b + 1) * kvr * 2 * w, nan_v<T>());
  auto dout = random_normal<T>(Shape{d.batch, d.tq, w}, 52);
  std::int64_t const dmax = std::max<std::int64_t>(st.table_d, 1);
  auto table = random_normal<T>(Shape{d.heads, dmax}, 53, 0.7);
  auto dense = random_normal<T>(dense_shape, 54, 0.7);
  auto dtable0 = random_normal<T>(Shape{d.heads, dmax}, 55, 0.1);

  // CPU reference
  ops::AttentionScores<T, HostSpace> sc;
  sc.q_pos0 = st.q_pos0;
  auto mass = filled<T>(mass_shape, nan_v<T>());
  if (st.table_d > 0) sc.table = table.cview();
  if (st.dense) sc.dense = dense.cview();
  if (st.mass) sc.key_mass = mass.view();
  auto dtable = clone(dtable0);
  auto ddense = filled<T>(dense_shape, nan_v<T>());
  ops::AttentionScoreGrads<T, HostSpace> dsc;
  if (st.table_grad) dsc.table = dtable.view();
  if (st.dense_grad) dsc.dense = ddense.view();
  auto out = filled<T>(q.shape(), nan_v<T>());
  HostTensor<T> probs(ops::attention_stats_shape(HostSpace{}, d));
  auto dq = filled<T>(q.shape(), nan_v<T>());
  auto dkv = filled<T>(kv.shape(), nan_v<T>());
  HostTensor<T> scratch(Shape{std::max<std::int64_t>(ops::attention_backward_scratch(HostSpace{}, d), 1)});
  ops::attention_forward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view(), sc);
  ops::attention_backward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.cview(), probs.cview(), dout.cview(),
                             dq.view(), dkv.view(), scratch.view(), sc, dsc);

  // GPU
  auto gq = to_device(gctx, q);
  auto gkv = to_device(gctx, kv);
  auto gdout = to_device(gctx, dout);
  auto gtable = to_device(gctx, table);
  auto gdense = to_device(gctx, dense);
  auto gmass = to_device(gctx, filled<T>(mass_shape, nan_v<T>()));
  auto gdtable = to_device(gctx, dtable0);
  auto gddense = to_device(gctx, filled<T>(dense_shape, nan_v<T>()));
  ops::AttentionScores<T, DeviceSpace> gsc;
  gsc.q_pos0 = st.q_pos0;
  if (st.table_d > 0) gsc.table = gtable.cview();
  if (st.dense) gsc.dense = gdense.cview();
  if (st.mass) gsc.key_mass = gmass.view();
  ops::AttentionScoreGrads<T, DeviceSpace> gdsc;
  if (st.table_grad) gdsc.table = gdtable.view();
  if (st.dense_grad) gdsc.dense = gddense.view();
  auto gout = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  DeviceTensor<T> gstats(ops::attention_stats_shape(DeviceSpace{}, d));
  auto gdq = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  auto gdkv = to_device(gctx, filled<T>(kv.shape(), nan_v<T>()));
  DeviceTensor<T> gscratch(Shape{ops::attention_backward_scratch(DeviceSpace{}, d)});
  ops::attention_forward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.view(), gstats.view(), gsc);
  ops::attention_backward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.cview(), gstats.cview(),
                             gdout.cview(), gdq.view(), gdkv.view(), gscratch.view(), gsc, gdsc);
  auto hout = to_host(gctx, gout);
  auto hdq = to_host(gctx, gdq);
  auto hdkv = to_host(gctx, gdkv);

  // Which path ran: the flash kernels (one attention count per call) only without a bias in forward
  // and without a bias or score gradient in backward; the materialising path counts no attention.
  bool const biased = st.table_d > 0 || st.dense;
  std::uint64_t const flash_calls = (biased ? 0 : 1) + (biased || st.table_grad || st.dense_grad ? 0 : 1);
  std::uint64_t counted = 0;
  for (std::uint64_t k : attention_counts(gctx)) counted += k;
  CHECK(counted == flash_calls);

  CHECK_NMSE(hout, out, kAttentionTol<T>);
  CHECK_NMSE(hdq, dq, kAttentionTol<T>);
  HostTensor<T> live_got(Shape{d.batch, d.tk, 2 * w}), live_want(Shape{d.batch, d.tk, 2 * w});
  for (std::int64_t b = 0; b < d.batch; ++b) {
    std::copy_n(hdkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_got.data() + b * d.tk * 2 * w);
    std::copy_n(dkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_want.data() + b * d.tk * 2 * w);
  }
  CHECK_NMSE(live_got, live_want, kAttentionTol<T>);
  if (st.mass) {
    auto hmass = to_host(gctx, gmass);
    CHECK_NMSE(hmass, mass, kAttentionTol<T>);
  }
  if (st.table_grad) {  // accumulated onto dtable0 on both sides
    auto hdtable = to_host(gctx, gdtable);
    CHECK_NMSE(hdtable, dtable, kAttentionTol<T>);
  }
  if (st.dense_grad) {
    auto hddense = to_host(gctx, gddense);
    CHECK_NMSE(hddense, ddense, kAttentionTol<T>);
    std::int64_t masked_nonzero = 0;  // dL/dlogits is exactly zero at masked keys
    for (std::int64_t r = 0; r < d.batch * d.heads * d.tq; ++r) {
      std::int64_t vis = c.mask.visible(r % d.tq, d.tk, d.prefix);
      masked_nonzero += nonzeros(hddense.data() + r * d.tk + vis, d.tk - vis);
    }
    CHECK(masked_nonzero == 0);
  }
  // Rows that see nothing: zero output and zero dq; keys no query sees: zero dK and dV.
  std::int64_t blind_nonzero = 0, unseen_nonzero = 0;
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t i = 0; i < d.tq; ++i)
      if (c.mask.visible(i, d.tk, d.prefix) == 0)
        blind_nonzero += nonzeros(hout.data() + (b * d.tq + i) * w, w) + nonzeros(hdq.data() + (b * d.tq + i) * w, w);
  CHECK(blind_nonzero == 0);
  std::int64_t const seen = c.mask.visible(d.tq - 1, d.tk, d.prefix);
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t j = seen; j < d.tk; ++j) unseen_nonzero += nonzeros(hdkv.data() + (b * kvr + j) * 2 * w, 2 * w);
  CHECK(unseen_nonzero == 0);
}

TEST_CASE_TEMPLATE("cuda parity: attention with score biases, their gradients and the key mass", T, float, double) {
  for (auto const& st : score_setups())
    for (std::int64_t head_dim : {5, 64})
      for (auto const& c : attention_cases()) check_scored_attention_case<T>(c, head_dim, st);
}

// A biased call is repeatable: the second call reuses the grown context scratch and gives the same
// bits (the table gradient accumulates twice, deterministically); bad score shapes throw as on the CPU.
TEST_CASE("cuda attention scores: repeated calls are bit-identical; bad shapes throw naming them") {
  cuda::Context gctx;
  AttentionDims d{2, 3, 19, 23, 8, 4};
  std::int64_t const w = d.width();
  auto gq = to_device(gctx, random_normal<float>(Shape{2, 19, w}, 60));
  auto gkv = to_device(gctx, random_normal<float>(Shape{2, 23, 2 * w}, 61));
  auto gdout = to_device(gctx, random_normal<float>(Shape{2, 19, w}, 62));
  auto gtable = to_device(gctx, random_normal<float>(Shape{3, 6}, 63));
  auto gdense = to_device(gctx, random_normal<float>(Shape{2, 3, 19, 23}, 64));
  DeviceTensor<float> gout(Shape{2, 19, w}), gstats(ops::attention_stats_shape(DeviceSpace{}, d)),
      gmass(Shape{2, 3, 23}), gdq(Shape{2, 19, w}), gdkv(Shape{2, 23, 2 * w}), gddense(Shape{2, 3, 19, 23}),
      gscratch(Shape{ops::attention_backward_scratch(DeviceSpace{}, d)});
  auto gdtable = to_device(gctx, filled<float>(Shape{3, 6}, 0.0f));
  ops::AttentionScores<float, DeviceSpace> sc;
  sc.table = gtable.cview();
  sc.dense = gdense.cview();
  sc.key_mass = gmass.view();
  ops::AttentionScoreGrads<float, DeviceSpace> dsc{gdtable.view(), gddense.view()};
  auto run = [&] {
    ops::attention_forward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(), gout.view(),
                                  gstats.view(), sc);
    ops::attention_backward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(), gout.cview(),
                                   gstats.cview(), gdout.cview(), gdq.view(), gdkv.view(), gscratch.view(), sc, dsc);
    std::vector<HostTensor<float>> r;  // move-only tensors: no initializer list
    r.push_back(to_host(gctx, gout));
    r.push_back(to_host(gctx, gmass));
    r.push_back(to_host(gctx, gdq));
    r.push_back(to_host(gctx, gdkv));
    r.push_back(to_host(gctx, gddense));
    r.push_back(to_host(gctx, gdtable));
    return r;
  };
  auto first = run();
  auto second = run();
  for (std::size_t k = 0; k + 1 < first.size(); ++k) CHECK(bit_mismatches(first[k], second[k]) == 0);
  // The table gradient was accumulated twice: 2 * g, exactly (g + g is exact).
  HostTensor<float> twice(first.back().shape());
  for (std::int64_t k = 0; k < twice.numel(); ++k) twice.data()[k] = 2.0f * first.back().data()[k];
  CHECK(bit_mismatches(second.back(), twice) == 0);
  // The stats of a biased forward are NaN (backward recomputes the probabilities).
  auto hstats = to_host(gctx, gstats);
  std::int64_t finite = 0;
  for (std::int64_t k = 0; k < hstats.numel(); ++k) finite += std::isfinite(hstats.data()[k]) ? 1 : 0;
  CHECK(finite == 0);

  auto bad_table = to_device(gctx, random_normal<float>(Shape{2, 6}, 65));
  ops::AttentionScores<float, DeviceSpace> bad;
  bad.table = bad_table.cview();
  CHECK_THROWS_WITH_AS(ops::attention_forward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(),
                                                     gout.view(), gstats.view(), bad),
                       doctest::Contains("score bias table"), hseq::Error);
  ops::AttentionScores<float, DeviceSpace> bad_mass;
  bad_mass.key_mass = gdq.view();
  CHECK_THROWS_WITH_AS(ops::attention_forward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(),
                                                     gout.view(), gstats.view(), bad_mass),
                       doctest::Contains("key mass"), hseq::Error);
}

// =============================================================================================
// cross_entropy
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: cross_entropy forward and backward with ignored rows", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  struct Size {
    std::int64_t rows, vocab;
  };
  for (Size sz : {Size{37, 300}, Size{7, 5003}}) {
    INFO("rows ", sz.rows, ", vocab ", sz.vocab);
    auto logits = random_normal<T>(Shape{sz.rows, sz.vocab}, 50, 3.0);
    HostTensor<std::int32_t> targets(Shape{sz.rows});
    for (std::int64_t i = 0; i < sz.rows; ++i)
      targets.data()[i] = std::int32_t(philox_uniform(51, 0, std::uint64_t(i)) * double(sz.vocab));
    targets.data()[0] = std::int32_t(sz.vocab - 1);  // the last class
    targets.data()[1] = -1;                          // ignored
    targets.data()[sz.rows - 1] = -7;                // any negative target is ignored
    if (sz.rows > 10) targets.data()[5] = -1;
    auto glogits = to_device(gctx, logits);
    auto gtargets = to_device(gctx, targets);

    auto losses = filled<T>(Shape{sz.rows}, nan_v<T>());
    auto glosses = to_device(gctx, losses);
    std::int64_t const counted = ops::cross_entropy_forward<T>(cctx, logits.cview(), targets.cview(), losses.view());
    std::int64_t const gcounted = ops::cross_entropy_forward<T>(gctx, glogits.cview(), gtargets.cview(), glosses.view());
    CHECK(gcounted == counted);
    CHECK(counted == sz.rows - (sz.rows > 10 ? 3 : 2));
    auto hl = to_host(gctx, glosses);
    CHECK_NMSE(hl, losses, kTol<T>);
    CHECK(hl.data()[1] == T(0));
    CHECK(hl.data()[sz.rows - 1] == T(0));

    T const dloss = T(1.0 / double(counted));
    auto want = filled<T>(logits.shape(), nan_v<T>());
    auto gd = to_device(gctx, want);
    ops::cross_entropy_backward<T>(cctx, logits.cview(), targets.cview(), dloss, want.view());
    ops::cross_entropy_backward<T>(gctx, glogits.cview(), gtargets.cview(), dloss, gd.view());
    auto hd = to_host(gctx, gd);
    CHECK_NMSE(hd, want, kTol<T>);
    CHECK(nonzeros(hd.data() + 1 * sz.vocab, sz.vocab) == 0);  // ignored row
    // Documented aliasing: dlogits may alias logits.
    ops::cross_entropy_backward<T>(gctx, glogits.cview(), gtargets.cview(), dloss, glogits.view());
    CHECK_NMSE(to_host(gctx, glogits), want, kTol<T>);
  }
}

TEST_CASE_TEMPLATE("cuda parity: cross_entropy throws on a target >= vocabulary, then works again", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const rows = 37, vocab = 300;
  auto logits = random_normal<T>(Shape{rows, vocab}, 52);
  HostTensor<std::int32_t> bad(Shape{rows}), good(Shape{rows});
  for (std::int64_t i = 0; i < rows; ++i) good.data()[i] = bad.data()[i] = std::int32_t((i * 7) % vocab);
  bad.data()[20] = std::int32_t(vocab);
  auto glogits = to_device(gctx, logits);
  auto gbad = to_device(gctx, bad);
  auto ggood = to_device(gctx, good);
  HostTensor<T> losses(Shape{rows});
  DeviceTensor<T> glosses(Shape{rows}), gd(logits.shape());
  CHECK_THROWS_AS(ops::cross_entropy_forward<T>(cctx, logits.cview(), bad.cview(), losses.view()), hseq::Error);
  CHECK_THROWS_AS(ops::cross_entropy_forward<T>(gctx, glogits.cview(), gbad.cview(), glosses.view()), hseq::Error);
  CHECK_THROWS_AS(ops::cross_entropy_backward<T>(gctx, glogits.cview(), gbad.cview(), T(1), gd.view()), hseq::Error);
  // The error state does not stick: valid targets work afterwards.
  std::int64_t counted = ops::cross_entropy_forward<T>(cctx, logits.cview(), good.cview(), losses.view());
  std::int64_t gcounted = 0;
  CHECK_NOTHROW(gcounted = ops::cross_entropy_forward<T>(gctx, glogits.cview(), ggood.cview(), glosses.view()));
  CHECK(gcounted == counted);
  CHECK_NMSE(to_host(gctx, glosses), losses, kTol<T>);
  CHECK_NOTHROW(ops::cross_entropy_backward<T>(gctx, glogits.cview(), ggood.cview(), T(1), gd.view()));
}

// =============================================================================================
// embedding
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: embedding forward and backward with repeated ids (deterministic)", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const vocab = 300, c = 70, n = 37 * 5;
  auto table = random_normal<T>(Shape{vocab, c}, 60);
  HostTensor<std::int32_t> ids(Shape{5, 37});
  for (std::int64_t i = 0; i < n; ++i) {
    // Half the ids come from {0, .., 4}: many rows scatter into the same table row.
    double u = philox_uniform(61, 0, std::uint64_t(i));
    ids.data()[i] = i % 2 == 0 ? std::int32_t(u * 5) : std::int32_t(u * double(vocab));
  }
  ids.data()[n - 1] = std::int32_t(vocab - 1);
  auto gtable = to_device(gctx, table);
  auto gids = to_device(gctx, ids);

  // Forward: a gather, bit-exact.
  auto out = filled<T>(Shape{5, 37, c}, nan_v<T>());
  auto gout = to_device(gctx, out);
  ops::embedding_forward<T>(cctx, table.cview(), ids.cview(), out.view());
  ops::embedding_forward<T>(gctx, gtable.cview(), gids.cview(), gout.view());
  CHECK(bit_mismatches(to_host(gctx, gout), out) == 0);

  // Backward: accumulates into a nonzero dtable.
  auto dout = random_normal<T>(Shape{5, 37, c}, 62);
  auto dtable0 = random_normal<T>(Shape{vocab, c}, 63);
  auto want = clone(dtable0);
  ops::embedding_backward<T>(cctx, ids.cview(), dout.cview(), want.view());
  auto gdout = to_device(gctx, dout);
  auto gdt1 = to_device(gctx, dtable0);
  auto gdt2 = to_device(gctx, dtable0);
  ops::embedding_backward<T>(gctx, gids.cview(), gdout.cview(), gdt1.view());
  ops::embedding_backward<T>(gctx, gids.cview(), gdout.cview(), gdt2.view());
  auto h1 = to_host(gctx, gdt1), h2 = to_host(gctx, gdt2);
  CHECK_NMSE(h1, want, kTol<T>);
  CHECK(bit_mismatches(h1, h2) == 0);  // same bits on every run despite repeated ids
  // Rows of ids never used keep their initial values exactly.
  std::vector<char> used(std::size_t(vocab), 0);
  for (std::int64_t i = 0; i < n; ++i) used[std::size_t(ids.data()[i])] = 1;
  std::int64_t touched_unused = 0;
  for (std::int64_t r = 0; r < vocab; ++r)
    if (!used[std::size_t(r)]) touched_unused += bit_mismatches(h1.data() + r * c, dtable0.data() + r * c, c);
  CHECK(touched_unused == 0);
}

TEST_CASE_TEMPLATE("cuda parity: embedding throws on an out-of-range id, then works again", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const vocab = 300, c = 70, n = 37;
  auto table = random_normal<T>(Shape{vocab, c}, 64);
  auto gtable = to_device(gctx, table);
  HostTensor<std::int32_t> good(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) good.data()[i] = std::int32_t((i * 13) % vocab);
  auto ggood = to_device(gctx, good);
  DeviceTensor<T> gout(Shape{n, c}), gdt(Shape{vocab, c});
  auto dout = random_normal<T>(Shape{n, c}, 65);
  auto gdout = to_device(gctx, dout);
  for (std::int32_t bad_id : {std::int32_t(vocab), std::int32_t(-1), std::int32_t(1 << 30)}) {
    INFO("bad id ", bad_id);
    auto bad = clone(good);
    bad.data()[n / 2] = bad_id;
    auto gbad = to_device(gctx, bad);
    HostTensor<T> out(Shape{n, c});
    CHECK_THROWS_AS(ops::embedding_forward<T>(cctx, table.cview(), bad.cview(), out.view()), hseq::Error);
    CHECK_THROWS_AS(ops::embedding_forward<T>(gctx, gtable.cview(), gbad.cview(), gout.view()), hseq::Error);
    CHECK_THROWS_AS(ops::embedding_backward<T>(gctx, gbad.cview(), gdout.cview(), gdt.view()), hseq::Error);
  }
  // The error state does not stick.
  HostTensor<T> out(Shape{n, c});
  ops::embedding_forward<T>(cctx, table.cview(), good.cview(), out.view());
  CHECK_NOTHROW(ops::embedding_forward<T>(gctx, gtable.cview(), ggood.cview(), gout.view()));
  CHECK(bit_mismatches(to_host(gctx, gout), out) == 0);
}

// =============================================================================================
// dropout
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: dropout keeps the same elements forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  double const p = 0.3;
  ops::DropoutKey const key{0x0123456789abcdefull, 0x5000000003ull};  // both words of seed and stream used
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    std::int64_t const n = s.numel();
    auto x = random_uniform<T>(s, 70, 0.5, 1.5);  // never zero: a zero in y means "dropped"
    auto gx = to_device(gctx, x);
    HostTensor<T> y(s);
    DeviceTensor<T> gy(s);
    ops::dropout_forward<T>(cctx, x.cview(), y.view(), p, key);
    ops::dropout_forward<T>(gctx, gx.cview(), gy.view(), p, key);
    auto hy = to_host(gctx, gy);
    std::int64_t pattern_diff = 0, dropped = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      pattern_diff += (hy.data()[i] == T(0)) != (y.data()[i] == T(0));
      dropped += y.data()[i] == T(0);
    }
    CHECK(pattern_diff == 0);
    CHECK(double(dropped) / double(n) == doctest::Approx(p).epsilon(0.5));  // sanity: the CPU drops ~p
    CHECK_NMSE(hy, y, kTol<T>);

    // Backward regenerates the same mask.
    auto dy = random_uniform<T>(s, 71, 0.5, 1.5);
    auto gdy = to_device(gctx, dy);
    HostTensor<T> dx(s);
    DeviceTensor<T> gdx(s);
    ops::dropout_backward<T>(cctx, dy.cview(), dx.view(), p, key);
    ops::dropout_backward<T>(gctx, gdy.cview(), gdx.view(), p, key);
    auto hdx = to_host(gctx, gdx);
    std::int64_t back_diff = 0;
    for (std::int64_t i = 0; i < n; ++i) back_diff += (hdx.data()[i] == T(0)) != (y.data()[i] == T(0));
    CHECK(back_diff == 0);
    CHECK_NMSE(hdx, dx, kTol<T>);

    // In place (y aliases x), and p = 0 copies exactly.
    ops::dropout_forward<T>(gctx, gx.cview(), gx.view(), p, key);
    CHECK_NMSE(to_host(gctx, gx), y, kTol<T>);
    ops::dropout_forward<T>(gctx, gdy.cview(), gdx.view(), 0.0, key);
    CHECK(bit_mismatches(to_host(gctx, gdx), dy) == 0);
  }
}

// =============================================================================================
// init
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: init_param zeros, ones, uniform and normal", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::uint64_t const seed = 0x1234'5678'9abc'def0ull, stream = 0x1'0000'0007ull;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    std::int64_t const n = s.numel();
    HostTensor<T> want(s);
    auto got_dev = to_device(gctx, filled<T>(s, nan_v<T>()));

    {  // zeros and ones
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::zeros(), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::zeros(), seed, stream);
      CHECK(bit_mismatches(to_host(gctx, got_dev), want) == 0);
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::ones(), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::ones(), seed, stream);
      CHECK(bit_mismatches(to_host(gctx, got_dev), want) == 0);
      CHECK(want.data()[n - 1] == T(1));
    }
    {  // uniform: bit-exact
      // The draw is exact in double and the affine map is one IEEE multiply of exact values, so
      // both sides round the same double: identical bits.
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::uniform(0.05), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::uniform(0.05), seed, stream);
      CHECK(bit_mismatches(to_host(gctx, got_dev), want) == 0);
    }
    {  // normal: within one float ulp (double: 1e-14 relative)
      // Box-Muller uses log and cos: CUDA's double log/cos are within 1-2 ulp of glibc's, so the
      // double values differ in the last bits; rounding to float then agrees except where the double
      // lies next to a float rounding boundary, which moves the result by exactly one float ulp.
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::normal(0.02), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::normal(0.02), seed, stream);
      auto got = to_host(gctx, got_dev);
      std::int64_t bad = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        T g = got.data()[i], w = want.data()[i];
        if constexpr (std::is_same_v<T, float>) {
          bool ok = g == w || g == std::nextafter(w, std::numeric_limits<float>::infinity()) ||
                    g == std::nextafter(w, -std::numeric_limits<float>::infinity());
          bad += !ok;
        } else {
          bad += !(rel_diff(g, w) <= 1e-14);
        }
      }
      CHECK(bad == 0);
      // Sanity: the draws are normal with std 0.02 (not all equal, not zero).
      double sq = 0;
      for (std::int64_t i = 0; i < n; ++i) sq += double(got.data()[i]) * double(got.data()[i]);
      CHECK(std::sqrt(sq / double(n)) == doctest::Approx(0.02).epsilon(0.2));
    }
  }
}

// =============================================================================================
// adamw
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: adamw_update over 3 steps", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  Shape const s{37, 70};
  auto p = random_normal<T>(s, 80);
  auto m = filled<T>(s, T(0));
  auto v = filled<T>(s, T(0));
  auto gp = to_device(gctx, p);
  auto gm = to_device(gctx, m);
  auto gv = to_device(gctx, v);
  for (std::int64_t step = 1; step <= 3; ++step) {
    INFO("step ", step);
    auto g = random_normal<T>(s, 81 + std::uint64_t(step), 0.1 * double(step));
    auto gg = to_device(gctx, g);
    ops::AdamWStep hp;
    hp.lr = 1e-2;
    hp.beta1 = 0.9;
    hp.beta2 = 0.95;
    hp.eps = 1e-8;
    hp.weight_decay = 0.1;
    hp.step = step;
    ops::adamw_update<T>(cctx, p.view(), g.cview(), m.view(), v.view(), hp);
    ops::adamw_update<T>(gctx, gp.view(), gg.cview(), gm.view(), gv.view(), hp);
    CHECK_NMSE(to_host(gctx, gp), p, kTol<T>);
    CHECK_NMSE(to_host(gctx, gm), m, kTol<T>);
    CHECK_NMSE(to_host(gctx, gv), v, kTol<T>);
  }
}

// =============================================================================================
// position
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: position table, its backward, sinusoids", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 3, t = 37, c = 70, t_max = 50;
  auto table = random_normal<T>(Shape{t_max, c}, 90);
  auto gtable = to_device(gctx, table);
  for (std::int64_t offset : {std::int64_t(0), std::int64_t(9), t_max - t}) {
    INFO("offset ", offset);
    auto x = random_normal<T>(Shape{bsz, t, c}, 91);
    auto gx = to_device(gctx, x);
    ops::add_position_table<T>(cctx, x.view(), table.cview(), offset);
    ops::add_position_table<T>(gctx, gx.view(), gtable.cview(), offset);
    CHECK(bit_mismatches(to_host(gctx, gx), x) == 0);  // one addition per element

    auto dy = random_normal<T>(Shape{bsz, t, c}, 92);
    auto dtable = random_normal<T>(Shape{t_max, c}, 93);  // nonzero: accumulates
    auto gdy = to_device(gctx, dy);
    auto gdtable = to_device(gctx, dtable);
    ops::position_table_backward<T>(cctx, dy.cview(), dtable.view(), offset);
    ops::position_table_backward<T>(gctx, gdy.cview(), gdtable.view(), offset);
    CHECK_NMSE(to_host(gctx, gdtable), dtable, kTol<T>);
  }
  for (std::int64_t cc : {c, std::int64_t(71)})
    for (std::int64_t offset : {std::int64_t(0), std::int64_t(1000)}) {
      INFO("sinusoids, C ", cc, ", offset ", offset);
      auto x = random_normal<T>(Shape{bsz, t, cc}, 94);
      auto gx = to_device(gctx, x);
      ops::add_sinusoidal<T>(cctx, x.view(), offset);
      ops::add_sinusoidal<T>(gctx, gx.view(), offset);
      CHECK_NMSE(to_host(gctx, gx), x, kTol<T>);
    }
}

// =============================================================================================
// resample
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: shift_right, avg_pool, repeat_rows and their backwards", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 3, l = 36, c = 70;
  Shape const s{bsz, l, c};
  auto x = random_normal<T>(s, 100);
  auto gxx = to_device(gctx, x);

  for (std::int64_t sh : {std::int64_t(0), std::int64_t(1), std::int64_t(5), std::int64_t(40)}) {
    INFO("shift ", sh);
    auto y = filled<T>(s, nan_v<T>());
    auto gy = to_device(gctx, y);
    ops::shift_right<T>(cctx, x.cview(), y.view(), sh);
    ops::shift_right<T>(gctx, gxx.cview(), gy.view(), sh);
    CHECK(bit_mismatches(to_host(gctx, gy), y) == 0);  // copies and zeros
    auto dx = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, dx);
    ops::shift_right_backward<T>(cctx, x.cview(), dx.view(), sh);
    ops::shift_right_backward<T>(gctx, gxx.cview(), gdx.view(), sh);
    CHECK(bit_mismatches(to_host(gctx, gdx), dx) == 0);
  }
  for (std::int64_t k : {std::int64_t(1), std::int64_t(4), std::int64_t(36)}) {
    INFO("factor ", k);
    Shape const ss{bsz, l / k, c};
    // avg_pool and its backward
    auto y = filled<T>(ss, nan_v<T>());
    auto gy = to_device(gctx, y);
    ops::avg_pool<T>(cctx, x.cview(), y.view(), k);
    ops::avg_pool<T>(gctx, gxx.cview(), gy.view(), k);
    CHECK_NMSE(to_host(gctx, gy), y, kTol<T>);
    auto dy = random_normal<T>(ss, 101);
    auto gdy = to_device(gctx, dy);
    auto dx = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, dx);
    ops::avg_pool_backward<T>(cctx, dy.cview(), dx.view(), k);
    ops::avg_pool_backward<T>(gctx, gdy.cview(), gdx.view(), k);
    CHECK_NMSE(to_host(gctx, gdx), dx, kTol<T>);
    // repeat_rows and its backward
    auto u = filled<T>(s, nan_v<T>());
    auto gu = to_device(gctx, u);
    ops::repeat_rows<T>(cctx, dy.cview(), u.view(), k);
    ops::repeat_rows<T>(gctx, gdy.cview(), gu.view(), k);
    CHECK(bit_mismatches(to_host(gctx, gu), u) == 0);  // copies
    auto dys = filled<T>(ss, nan_v<T>());
    auto gdys = to_device(gctx, dys);
    ops::repeat_rows_backward<T>(cctx, x.cview(), dys.view(), k);
    ops::repeat_rows_backward<T>(gctx, gxx.cview(), gdys.view(), k);
    CHECK_NMSE(to_host(gctx, gdys), dys, kTol<T>);
  }
}

// =============================================================================================
// rnn_cell
// =============================================================================================

TEST_CASE_TEMPLATE("cuda parity: gru cell forward and backward on strided Mats", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 13, hd = 70;
  // xp is one time step of a batch-first [B, 5, 3H] buffer (ld 5 * 3H); the rest have small pads.
  auto xp = random_mat<T>(bsz, 3 * hd, 5 * 3 * hd, 110);
  auto gh = random_mat<T>(bsz, 3 * hd, 3 * hd + 4, 111);
  auto hprev = random_mat<T>(bsz, hd, hd + 3, 112);
  auto gates0 = random_mat<T>(bsz, 4 * hd, 4 * hd + 2, 113);
  fill_window(gates0, nan_v<T>());
  auto h0 = random_mat<T>(bsz, hd, hd + 1, 114);
  fill_window(h0, nan_v<T>());

  auto gates = clone(gates0);
  auto h = clone(h0);
  auto gxp = to_device(gctx, xp), ggh = to_device(gctx, gh), ghprev = to_device(gctx, hprev);
  auto ggates = to_device(gctx, gates0), gh_out = to_device(gctx, h0);
  ops::gru_cell_forward<T>(cctx, xp.cmat(), gh.cmat(), hprev.cmat(), gates.mat(), h.mat());
  ops::gru_cell_forward<T>(gctx, gxp.cmat(), ggh.cmat(), ghprev.cmat(), ggates.mat(), gh_out.mat());
  auto hg = to_host(gctx, ggates), hh = to_host(gctx, gh_out);
  CHECK_NMSE(window(hg), window(gates), kTol<T>);
  CHECK_NMSE(window(hh), window(h), kTol<T>);
  CHECK(outside_bit_mismatches(hg, gates0) == 0);
  CHECK(outside_bit_mismatches(hh, h0) == 0);

  // Backward from identical inputs (the CPU's gates on both sides).
  auto dh = random_mat<T>(bsz, hd, hd + 6, 115);
  auto dxp0 = random_mat<T>(bsz, 3 * hd, 3 * hd + 1, 116);
  auto dgh0 = random_mat<T>(bsz, 3 * hd, 2 * 3 * hd, 117);
  auto dhp0 = random_mat<T>(bsz, hd, hd + 5, 118);
  fill_window(dxp0, nan_v<T>());
  fill_window(dgh0, nan_v<T>());
  fill_window(dhp0, nan_v<T>());
  auto dxp = clone(dxp0), dgh = clone(dgh0), dhp = clone(dhp0);
  auto gdh = to_device(gctx, dh), ggates_in = to_device(gctx, gates);
  auto gdxp = to_device(gctx, dxp0), gdgh = to_device(gctx, dgh0), gdhp = to_device(gctx, dhp0);
  ops::gru_cell_backward<T>(cctx, dh.cmat(), hprev.cmat(), gates.cmat(), dxp.mat(), dgh.mat(), dhp.mat());
  ops::gru_cell_backward<T>(gctx, gdh.cmat(), ghprev.cmat(), ggates_in.cmat(), gdxp.mat(), gdgh.mat(), gdhp.mat());
  auto r_dxp = to_host(gctx, gdxp), r_dgh = to_host(gctx, gdgh), r_dhp = to_host(gctx, gdhp);
  CHECK_NMSE(window(r_dxp), window(dxp), kTol<T>);
  CHECK_NMSE(window(r_dgh), window(dgh), kTol<T>);
  CHECK_NMSE(window(r_dhp), window(dhp), kTol<T>);
  CHECK(outside_bit_mismatches(r_dxp, dxp0) == 0);
  CHECK(outside_bit_mismatches(r_dgh, dgh0) == 0);
  CHECK(outside_bit_mismatches(r_dhp, dhp0) == 0);
}

TEST_CASE_TEMPLATE("cuda parity: lstm cell forward and backward on strided Mats", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 13, hd = 70;
  auto xp = random_mat<T>(bsz, 4 * hd, 3 * 4 * hd, 120);  // a time step of [B, 3, 4H]
  auto gh = random_mat<T>(bsz, 4 * hd, 4 * hd + 4, 121);
  auto cprev = random_mat<T>(bsz, hd, hd + 3, 122);
  auto acts0 = random_mat<T>(bsz, 4 * hd, 4 * hd + 2, 123);
  auto c0 = random_mat<T>(bsz, hd, hd + 1, 124);
  auto h0 = random_mat<T>(bsz, hd, hd + 7, 125);
  fill_window(acts0, nan_v<T>());
  fill_window(c0, nan_v<T>());
  fill_window(h0, nan_v<T>());

  auto acts = clone(acts0), cc = clone(c0), h = clone(h0);
  auto gxp = to_device(gctx, xp), ggh = to_device(gctx, gh), gcprev = to_device(gctx, cprev);
  auto gacts = to_device(gctx, acts0), gc = to_device(gctx, c0), ghh = to_device(gctx, h0);
  ops::lstm_cell_forward<T>(cctx, xp.cmat(), gh.cmat(), cprev.cmat(), acts.mat(), cc.mat(), h.mat());
  ops::lstm_cell_forward<T>(gctx, gxp.cmat(), ggh.cmat(), gcprev.cmat(), gacts.mat(), gc.mat(), ghh.mat());
  auto r_acts = to_host(gctx, gacts), r_c = to_host(gctx, gc), r_h = to_host(gctx, ghh);
  CHECK_NMSE(window(r_acts), window(acts), kTol<T>);
  CHECK_NMSE(window(r_c), window(cc), kTol<T>);
  CHECK_NMSE(window(r_h), window(h), kTol<T>);
  CHECK(outside_bit_mismatches(r_acts, acts0) == 0);
  CHECK(outside_bit_mismatches(r_c, c0) == 0);
  CHECK(outside_bit_mismatches(r_h, h0) == 0);

  // Backward from identical inputs (the CPU's c and acts on both sides).
  auto dh = random_mat<T>(bsz, hd, hd + 2, 126);
  auto dc = random_mat<T>(bsz, hd, hd + 9, 127);
  auto dg0 = random_mat<T>(bsz, 4 * hd, 4 * hd + 3, 128);
  auto dcp0 = random_mat<T>(bsz, hd, hd + 4, 129);
  fill_window(dg0, nan_v<T>());
  fill_window(dcp0, nan_v<T>());
  auto dg = clone(dg0), dcp = clone(dcp0);
  auto gdh = to_device(gctx, dh), gdc = to_device(gctx, dc), gc_in = to_device(gctx, cc),
       gacts_in = to_device(gctx, acts);
  auto gdg = to_device(gctx, dg0), gdcp = to_device(gctx, dcp0);
  ops::lstm_cell_backward<T>(cctx, dh.cmat(), dc.cmat(), cprev.cmat(), cc.cmat(), acts.cmat(), dg.mat(), dcp.mat());
  ops::lstm_cell_backward<T>(gctx, gdh.cmat(), gdc.cmat(), gcprev.cmat(), gc_in.cmat(), gacts_in.cmat(), gdg.mat(),
                             gdcp.mat());
  auto r_dg = to_host(gctx, gdg), r_dcp = to_host(gctx, gdcp);
  CHECK_NMSE(window(r_dg), window(dg), kTol<T>);
  CHECK_NMSE(window(r_dcp), window(dcp), kTol<T>);
  CHECK(outside_bit_mismatches(r_dg, dg0) == 0);
  CHECK(outside_bit_mismatches(r_dcp, dcp0) == 0);
}

}  // namespace
}  // namespace hseq::test_cuda
