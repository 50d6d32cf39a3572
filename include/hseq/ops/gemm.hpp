// SPDX-License-Identifier: MIT
/// @file
/// @brief GEMM on the CPU: C = alpha * op(A) * op(B) + beta * C, single and strided-batched.
///
/// Matrices are row-major with a leading dimension (`Mat`), so heads inside a [B, T, H*dh] buffer
/// and rows of a strided sequence are addressed without copies. With `HSEQ_USE_CBLAS` the product
/// goes to the system CBLAS (OpenBLAS on Debian), otherwise to Eigen's own kernels. Under
/// `GemmMath::kBf16` (`hseq::cpu_bf16`) a float `gemm` large enough to pay for the conversion runs
/// with bf16 operands and fp32 accumulation (backend/cpu_bf16_gemm.hpp); `gemm_strided_batched`
/// (attention products, pooling weights, row dots) always runs in fp32.
#pragma once

#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

#if defined(HSEQ_USE_CBLAS)
#include <cblas.h>
#endif

#include "hseq/backend/cpu.hpp"
#include "hseq/backend/cpu_bf16_gemm.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/gemm_invariant.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::ops {

/// Whether a GEMM operand is used as stored or transposed.
enum class Trans { kNo, kYes };

namespace detail {
template <class T, class Space>
void check_gemm(Trans ta, Mat<T const, Space> a, Trans tb, Mat<T const, Space> b, Mat<T, Space> c) {
  std::int64_t m = ta == Trans::kNo ? a.rows : a.cols, k = ta == Trans::kNo ? a.cols : a.rows;
  std::int64_t k2 = tb == Trans::kNo ? b.rows : b.cols, n = tb == Trans::kNo ? b.cols : b.rows;
  HSEQ_CHECK(k == k2 && c.rows == m && c.cols == n,
             "gemm: op(A) is [" << m << ", " << k << "], op(B) is [" << k2 << ", " << n << "], C is [" << c.rows
                                << ", " << c.cols << "]");
  constexpr std::int64_t kIntMax = 2147483647;  // CBLAS takes int dimensions
  HSEQ_CHECK(m <= kIntMax && n <= kIntMax && k <= kIntMax && a.ld <= kIntMax && b.ld <= kIntMax && c.ld <= kIntMax,
             "gemm: dimensions [" << m << ", " << k << "] x [" << k << ", " << n << "] exceed the 32-bit BLAS interface");
  HSEQ_CHECK(a.ld >= a.cols && b.ld >= b.cols && c.ld >= c.cols,
             "gemm: leading dimensions (" << a.ld << ", " << b.ld << ", " << c.ld << ") smaller than the columns");
}

template <class T>
using RowMajorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                               Eigen::OuterStride<>>;
template <class T>
using ConstRowMajorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> const,
                                    Eigen::Unaligned, Eigen::OuterStride<>>;

/// The host GEMM: the system CBLAS, else Eigen; `invariant` (a context's batch_invariant()) runs
/// hseq's batch-invariant kernel instead (ops/gemm_invariant.hpp).
template <class T>
void gemm_host(Trans ta, Mat<T const, HostSpace> a, Trans tb, Mat<T const, HostSpace> b, Mat<T, HostSpace> c,
               T alpha, T beta, bool invariant = false) {
  std::int64_t m = c.rows, n = c.cols, k = ta == Trans::kNo ? a.cols : a.rows;
  if (m == 0 || n == 0) return;
  if (invariant) {  // (k == 0 too: an empty chain is 0, then C = beta * C)
    gemm_invariant_host<T>(ta == Trans::kYes, a, tb == Trans::kYes, b, c, alpha, beta);
    return;
  }
  if (k == 0) {  // empty sum: C = beta * C
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c.data[i * c.ld + j] = beta == T(0) ? T(0) : beta * c.data[i * c.ld + j];
    return;
  }
#if defined(HSEQ_USE_CBLAS)
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    auto tA = ta == Trans::kNo ? CblasNoTrans : CblasTrans;
    auto tB = tb == Trans::kNo ? CblasNoTrans : CblasTrans;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, tA, tB, int(m), int(n), int(k), alpha, a.data, int(a.ld), b.data, int(b.ld), beta,
                  c.data, int(c.ld));
    else
      cblas_dgemm(CblasRowMajor, tA, tB, int(m), int(n), int(k), alpha, a.data, int(a.ld), b.data, int(b.ld), beta,
                  c.data, int(c.ld));
    return;
  }
#endif
  ConstRowMajorMap<T> A(a.data, a.rows, a.cols, Eigen::OuterStride<>(a.ld));
  ConstRowMajorMap<T> B(b.data, b.rows, b.cols, Eigen::OuterStride<>(b.ld));
  RowMajorMap<T> C(c.data, c.rows, c.cols, Eigen::OuterStride<>(c.ld));
  if (beta == T(0)) {
    if (ta == Trans::kNo && tb == Trans::kNo) C.noalias() = alpha * (A * B);
    else if (ta == Trans::kNo) C.noalias() = alpha * (A * B.transpose());
    else if (tb == Trans::kNo) C.noalias() = alpha * (A.transpose() * B);
    else C.noalias() = alpha * (A.transpose() * B.transpose());
  } else {
    if (beta != T(1)) C *= beta;
    if (ta == Trans::kNo && tb == Trans::kNo) C.noalias() += alpha * (A * B);
    else if (ta == Trans::kNo) C.noalias() += alpha * (A * B.transpose());
    else if (tb == Trans::kNo) C.noalias() += alpha * (A.transpose() * B);
    else C.noalias() += alpha * (A.transpose() * B.transpose());
  }
}
}  // namespace detail

/// Under bf16 math a float GEMM C[m, n] runs in bf16 only when its product has at least this many
/// flops per operand element converted. The conversion reads each element of A [m, k] and B [k, n]
/// once; the product is 2 m n k flops, so the ratio is 2 m n / (m + n), whatever k. Below it (the
/// per-step GEMMs of an RNN with a batch of 16: 2*16*768 / 784 = 31) converting the weights would
/// cost more than bf16 saves, and the GEMM runs in fp32. Both bf16 paths apply the same rule, so
/// cpu_bf16's numerics do not depend on the machine.
inline constexpr std::int64_t kCpuBf16MinIntensity = 64;

/// Whether a float GEMM with C [m, n] runs in bf16 under GemmMath::kBf16 (see kCpuBf16MinIntensity).
inline bool cpu_bf16_pays(std::int64_t m, std::int64_t n) { return 2 * m * n >= kCpuBf16MinIntensity * (m + n); }

namespace detail {
/// The bf16 GEMM of `gemm` under GemmMath::kBf16: oneDNN's kernels or the emulation (same arithmetic).
inline void gemm_bf16(cpu::Context& ctx, Trans ta, Mat<float const, HostSpace> a, Trans tb,
                      Mat<float const, HostSpace> b, Mat<float, HostSpace> c, float alpha, float beta) {
  hseq::detail::CpuBf16Gemm& g = hseq::detail::bf16_gemm_of(ctx);
  if (g.path() == CpuBf16Path::kOneDnn && !ctx.batch_invariant()) {
    std::int64_t k = ta == Trans::kNo ? a.cols : a.rows;
    g.matmul(true, ta == Trans::kYes, tb == Trans::kYes, c.rows, c.cols, k, a.data, a.ld, b.data, b.ld, c.data, c.ld,
             alpha, beta);
    ++ctx.kernel_counts_mut().gemm_bf16_onednn;
    return;
  }
  float const* ar = g.rounded(0, a.data, a.rows, a.cols, a.ld);
  float const* br = g.rounded(1, b.data, b.rows, b.cols, b.ld);
  gemm_host<float>(ta, {ar, a.rows, a.cols, a.cols}, tb, {br, b.rows, b.cols, b.cols}, c, alpha, beta,
                   ctx.batch_invariant());
  ++(ctx.batch_invariant() ? ctx.kernel_counts_mut().gemm_invariant : ctx.kernel_counts_mut().gemm_bf16_emulated);
}
}  // namespace detail

/// C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C. With beta == 0, C is not read.
/// Float GEMMs follow the context's math (see kCpuBf16MinIntensity); double GEMMs are fp64.
template <class T>
void gemm(cpu::Context& ctx, Trans ta, Mat<T const, HostSpace> a, Trans tb, Mat<T const, HostSpace> b,
          Mat<T, HostSpace> c, T alpha = T(1), T beta = T(0)) {
  detail::check_gemm(ta, a, tb, b, c);
  if constexpr (std::is_same_v<T, float>) {
    std::int64_t k = ta == Trans::kNo ? a.cols : a.rows;
    if (ctx.gemm_math() == GemmMath::kBf16 && c.rows > 0 && c.cols > 0 && k > 0 && cpu_bf16_pays(c.rows, c.cols)) {
      detail::gemm_bf16(ctx, ta, a, tb, b, c, alpha, beta);
      return;
    }
    ++(ctx.batch_invariant() ? ctx.kernel_counts_mut().gemm_invariant : ctx.kernel_counts_mut().gemm_fp32);
  }
  detail::gemm_host(ta, a, tb, b, c, alpha, beta, ctx.batch_invariant());
}

/// `batch` independent GEMMs; operand i starts at data + i * stride. Batches run in parallel, each
/// GEMM single-threaded inside the parallel region (Eigen and OpenBLAS-openmp detect the nesting).
template <class T>
void gemm_strided_batched(cpu::Context& ctx, std::int64_t batch, Trans ta, Mat<T const, HostSpace> a,
                          std::int64_t stride_a, Trans tb, Mat<T const, HostSpace> b, std::int64_t stride_b,
                          Mat<T, HostSpace> c, std::int64_t stride_c, T alpha = T(1), T beta = T(0)) {
  detail::check_gemm(ta, a, tb, b, c);
  HSEQ_CHECK(batch >= 0, "gemm_strided_batched: negative batch " << batch);
  bool const invariant = ctx.batch_invariant();
#pragma omp parallel for schedule(static) if (batch > 1)
  for (std::int64_t i = 0; i < batch; ++i) {
    Mat<T const, HostSpace> ai(a.data + i * stride_a, a.rows, a.cols, a.ld);
    Mat<T const, HostSpace> bi(b.data + i * stride_b, b.rows, b.cols, b.ld);
    Mat<T, HostSpace> ci(c.data + i * stride_c, c.rows, c.cols, c.ld);
    detail::gemm_host(ta, ai, tb, bi, ci, alpha, beta, invariant);
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/gemm.cuh"
#endif

namespace hseq::ops {

/// out[r] = <a_r, b_r> for the n rows r of a and b [n, d] (row r at data + r * ld; out's row r at
/// out.data + r * out.ld, one column): n products [1, d] x [d, 1] as one strided-batched GEMM, on
/// either backend. The dot products of the routers' and EMA's backward and of the IEM scores.
template <class T, class S, class Ctx>
void row_dots(Ctx& ctx, Mat<T const, S> a, Mat<T const, S> b, Mat<T, S> out) {
  HSEQ_CHECK(a.rows == b.rows && a.cols == b.cols && out.rows == a.rows && out.cols == 1,
             "row_dots: a [" << a.rows << ", " << a.cols << "], b [" << b.rows << ", " << b.cols << "], out ["
                             << out.rows << ", " << out.cols << "] (expected [n, d], [n, d], [n, 1])");
  std::int64_t d = a.cols;
  gemm_strided_batched<T>(ctx, a.rows, Trans::kNo, Mat<T const, S>(a.data, 1, d, d), a.ld, Trans::kYes,
                          Mat<T const, S>(b.data, 1, d, d), b.ld, Mat<T, S>(out.data, 1, 1, 1), out.ld);
}

}  // namespace hseq::ops
