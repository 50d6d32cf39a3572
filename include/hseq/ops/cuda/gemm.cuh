// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA GEMM through cuBLAS: C = alpha op(A) op(B) + beta C, single and strided-batched.
///
/// cuBLAS is column-major; a row-major C[M, N] is the column-major C^T[N, M], so
/// C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the operands swap, the flags stay.
/// Float GEMMs follow the context's `GemmMath`: IEEE fp32 by default; TF32 or bf16 tensor cores
/// (fp32 accumulation) only when asked for.
#pragma once

#include <cublas_v2.h>

#include <type_traits>

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/gemm.hpp"

namespace hseq::ops {

namespace cuda_detail {
inline cublasOperation_t to_cublas(Trans t) { return t == Trans::kNo ? CUBLAS_OP_N : CUBLAS_OP_T; }
inline cublasComputeType_t compute_type(GemmMath m) {
  switch (m) {
    case GemmMath::kTf32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case GemmMath::kBf16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    default: return CUBLAS_COMPUTE_32F;
  }
}
/// Scales C by beta (the k == 0 case, where cuBLAS would not be called with a zero-size operand).
template <class T>
__global__ void scale_mat_kernel(T* c, std::int64_t ldc, std::int64_t rows, std::int64_t cols, T beta) {
  std::int64_t n = rows * cols;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t i = e / cols, j = e % cols;
    c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
  }
}
template <class T>
void gemm_device(cuda::Context& ctx, std::int64_t batch, Trans ta, Mat<T const, DeviceSpace> a, std::int64_t sa,
                 Trans tb, Mat<T const, DeviceSpace> b, std::int64_t sb, Mat<T, DeviceSpace> c, std::int64_t sc, T alpha,
                 T beta) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "CUDA gemm: float or double");
  std::int64_t m = c.rows, n = c.cols, k = ta == Trans::kNo ? a.cols : a.rows;
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < batch; ++i) {
      scale_mat_kernel<T><<<grid_for(m * n), kThreads, 0, ctx.stream()>>>(c.data + i * sc, c.ld, m, n, beta);
      HSEQ_CUDA_LAUNCH_CHECK("gemm (k = 0)");
    }
    return;
  }
  cublasHandle_t h = ctx.blas();
  {  // observability only (KernelCounts): what this call asks of cuBLAS
    KernelCounts& kc = ctx.kernel_counts_mut();
    if constexpr (std::is_same_v<T, double>) ++kc.gemm_fp64;
    else if (ctx.gemm_math() == GemmMath::kTf32) ++kc.gemm_tf32;
    else if (ctx.gemm_math() == GemmMath::kBf16) ++kc.gemm_bf16;
    else ++kc.gemm_fp32;
  }
  // Column-major view: C^T [n, m] = op(B)^T [n, k] * op(A)^T [k, m].
  cublasOperation_t opb = to_cublas(tb), opa = to_cublas(ta);
  int in = int(n), im = int(m), ik = int(k), ldb = int(b.ld), lda = int(a.ld), ldc = int(c.ld);
  if constexpr (std::is_same_v<T, double>) {
    if (batch == 1)
      HSEQ_CUBLAS_CHECK(cublasDgemm(h, opb, opa, in, im, ik, &alpha, b.data, ldb, a.data, lda, &beta, c.data, ldc));
    else
      HSEQ_CUBLAS_CHECK(cublasDgemmStridedBatched(h, opb, opa, in, im, ik, &alpha, b.data, ldb, sb, a.data, lda, sa,
                                                  &beta, c.data, ldc, sc, int(batch)));
  } else {
    cublasComputeType_t ct = compute_type(ctx.gemm_math());
    if (batch == 1)
      HSEQ_CUBLAS_CHECK(cublasGemmEx(h, opb, opa, in, im, ik, &alpha, b.data, CUDA_R_32F, ldb, a.data, CUDA_R_32F, lda,
                                     &beta, c.data, CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT));
    else
      HSEQ_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opb, opa, in, im, ik, &alpha, b.data, CUDA_R_32F, ldb, sb, a.data,
                                                   CUDA_R_32F, lda, sa, &beta, c.data, CUDA_R_32F, ldc, sc, int(batch),
                                                   ct, CUBLAS_GEMM_DEFAULT));
  }
}
}  // namespace cuda_detail

/// C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C. With beta == 0, C is not read.
template <class T>
void gemm(cuda::Context& ctx, Trans ta, Mat<T const, DeviceSpace> a, Trans tb, Mat<T const, DeviceSpace> b,
          Mat<T, DeviceSpace> c, T alpha = T(1), T beta = T(0)) {
  detail::check_gemm(ta, a, tb, b, c);
  cuda_detail::gemm_device<T>(ctx, 1, ta, a, 0, tb, b, 0, c, 0, alpha, beta);
}

/// `batch` independent GEMMs; operand i starts at data + i * stride (one cuBLAS strided-batched call).
template <class T>
void gemm_strided_batched(cuda::Context& ctx, std::int64_t batch, Trans ta, Mat<T const, DeviceSpace> a,
                          std::int64_t stride_a, Trans tb, Mat<T const, DeviceSpace> b, std::int64_t stride_b,
                          Mat<T, DeviceSpace> c, std::int64_t stride_c, T alpha = T(1), T beta = T(0)) {
  detail::check_gemm(ta, a, tb, b, c);
  HSEQ_CHECK(batch >= 0, "gemm_strided_batched: negative batch " << batch);
  cuda_detail::gemm_device<T>(ctx, batch, ta, a, stride_a, tb, b, stride_b, c, stride_c, alpha, beta);
}

}  // namespace hseq::ops
