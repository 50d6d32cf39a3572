// SPDX-License-Identifier: MIT
/// @file
/// @brief `hseq::cuda`: the CUDA backend policy (device memory, stream, cuBLAS handle) and device
/// detection that treats any CUDA error as "no device". The CUDA ops arrive in `ops/cuda/`; this
/// header only needs the CUDA runtime and cuBLAS headers, so host compilers can include it too.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "hseq/backend/attention_kernels.hpp"
#include "hseq/backend/backend.hpp"
#include "hseq/backend/gemm_math.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"

/// Throws hseq::Error naming the failed CUDA call and the CUDA error string.
#define HSEQ_CUDA_CHECK(call)                                                                 \
  do {                                                                                        \
    cudaError_t hseq_cuda_err_ = (call);                                                      \
    HSEQ_CHECK(hseq_cuda_err_ == cudaSuccess, #call << " failed: " << cudaGetErrorName(hseq_cuda_err_) << " (" \
                                                    << cudaGetErrorString(hseq_cuda_err_) << ")");              \
  } while (0)

/// Throws hseq::Error naming the failed cuBLAS call and its status.
#define HSEQ_CUBLAS_CHECK(call)                                                               \
  do {                                                                                        \
    cublasStatus_t hseq_cublas_st_ = (call);                                                  \
    HSEQ_CHECK(hseq_cublas_st_ == CUBLAS_STATUS_SUCCESS, #call << " failed: cuBLAS status " \
                                                              << int(hseq_cublas_st_));                        \
  } while (0)

namespace hseq {

// GemmMath (how the float GEMMs compute) is in backend/gemm_math.hpp, shared with the CPU context.


/// Which kernel families a `cuda::Context` has dispatched to: host-side counters, bumped by the
/// ops when they pick their kernels (no device synchronisation, no atomics: a Context belongs to
/// one host thread). They say what was *requested* of the device, so tests can check that a mode
/// they asked for (TF32 GEMMs, the tensor-core attention...) was the one dispatched; whether cuBLAS
/// then used tensor cores is a separate question (the tests compare results for that).
struct KernelCounts {
  /// Float GEMM calls handed to cuBLAS with CUBLAS_COMPUTE_32F / _FAST_TF32 / _FAST_16BF.
  /// A GEMM with k == 0 (only scales C, no cuBLAS call) is not counted.
  std::uint64_t gemm_fp32 = 0, gemm_tf32 = 0, gemm_bf16 = 0;
  /// Double GEMM calls handed to cuBLAS (always fp64, whatever the float math).
  std::uint64_t gemm_fp64 = 0;
  /// attention_forward / attention_backward calls (one per call, whatever the number of launches)
  /// by the family that ran: the tensor-core kernels with the 3xTF32 split (fp32 math) or with one
  /// TF32 product (TF32/bf16 math), the register-tiled SIMT kernels, or the one-thread-per-row
  /// kernels (every double call, and float head sizes outside 17..64, whatever was selected).
  std::uint64_t attention_mma_3xtf32 = 0, attention_mma_tf32 = 0, attention_tiled = 0, attention_simple = 0;
};

/// CUDA backend policy, used as a tag: `Model<hseq::cuda, float>`.
struct cuda {
  using Space = DeviceSpace;
  static constexpr char const* kName = "cuda";

  /// Run-time resources: a stream (default: the legacy default stream) and a cuBLAS handle bound
  /// to it, created on first use. Move-only; destroys what it created.
  class Context {
   public:
    Context() : attention_(default_attention_kernels()) {}
    explicit Context(cudaStream_t s) : stream_(s), attention_(default_attention_kernels()) {}
    Context(Context const&) = delete;
    Context& operator=(Context const&) = delete;
    Context(Context&& o) noexcept
        : stream_(std::exchange(o.stream_, nullptr)),
          blas_(std::exchange(o.blas_, nullptr)),
          scratch_(std::exchange(o.scratch_, nullptr)),
          scratch_bytes_(std::exchange(o.scratch_bytes_, 0)),
          math_(o.math_),
          attention_(o.attention_),
          counts_(o.counts_) {}
    Context& operator=(Context&& o) noexcept {
      if (this != &o) {
        release();
        stream_ = std::exchange(o.stream_, nullptr);
        blas_ = std::exchange(o.blas_, nullptr);
        scratch_ = std::exchange(o.scratch_, nullptr);
        scratch_bytes_ = std::exchange(o.scratch_bytes_, 0);
        math_ = o.math_;
        attention_ = o.attention_;
        counts_ = o.counts_;
      }
      return *this;
    }
    ~Context() { release(); }

    cudaStream_t stream() const { return stream_; }
    /// The cuBLAS handle on this context's stream (created on first call).
    cublasHandle_t blas() {
      if (blas_ == nullptr) {
        HSEQ_CUBLAS_CHECK(cublasCreate(&blas_));
        HSEQ_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
      }
      return blas_;
    }

    /// The math of float GEMMs on this context (see GemmMath). Double GEMMs are always fp64.
    GemmMath gemm_math() const { return math_; }
    void set_gemm_math(GemmMath m) { math_ = m; }
    /// The attention kernels of this context (see AttentionKernels).
    AttentionKernels attention_kernels() const { return attention_; }
    void set_attention_kernels(AttentionKernels k) { attention_ = k; }

    /// The kernel families dispatched on this context so far (see KernelCounts; host-side, cheap).
    KernelCounts const& kernel_counts() const { return counts_; }
    /// For the ops: the counters to bump at dispatch.
    KernelCounts& kernel_counts_mut() { return counts_; }
    void reset_kernel_counts() { counts_ = KernelCounts{}; }

    /// Device scratch of at least `bytes` for the ops' internal two-phase reductions (CUB
    /// temporary storage, per-block partials, status words). Grows, never shrinks: after the
    /// first training step it no longer allocates. Valid until the next call with more bytes;
    /// ops use it only within one call, in stream order.
    void* scratch(std::size_t bytes) {
      if (bytes > scratch_bytes_) {
        if (scratch_ != nullptr) {
          HSEQ_CUDA_CHECK(cudaStreamSynchronize(stream_));  // earlier users of the old buffer
          cudaFree(scratch_);
          scratch_ = nullptr;
          scratch_bytes_ = 0;
        }
        std::size_t want = bytes < (std::size_t(1) << 20) ? (std::size_t(1) << 20) : bytes;
        HSEQ_CUDA_CHECK(cudaMalloc(&scratch_, want));
        scratch_bytes_ = want;
      }
      return scratch_;
    }

   private:
    void release() noexcept {
      if (blas_ != nullptr) cublasDestroy(blas_);
      blas_ = nullptr;
      if (scratch_ != nullptr) cudaFree(scratch_);
      scratch_ = nullptr;
      scratch_bytes_ = 0;
    }
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    void* scratch_ = nullptr;
    std::size_t scratch_bytes_ = 0;
    GemmMath math_ = GemmMath::kFp32;
    AttentionKernels attention_ = AttentionKernels::kAuto;
    KernelCounts counts_{};

    // HSEQ_CUDA_ATTENTION, or kAuto; an unknown value throws (backend/attention_kernels.hpp).
    static AttentionKernels default_attention_kernels() { return attention_kernels_from_env(); }
  };

  /// Whether a usable CUDA device exists. Any CUDA error (no driver, no device, insufficient
  /// driver) means "no"; the error is cleared. `HSEQ_DISABLE_CUDA=1` forces "no". Cached.
  /// (A query for programs choosing a backend; the test binary decides "skip" vs "fail" itself,
  /// telling a machine without a GPU from a broken driver: test/cuda/test_main.cu.)
  static bool available() noexcept {
    static bool const result = [] {
      char const* off = std::getenv("HSEQ_DISABLE_CUDA");
      if (off != nullptr && std::strcmp(off, "1") == 0) return false;
      int count = 0;
      cudaError_t err = cudaGetDeviceCount(&count);
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
      }
      return count > 0;
    }();
    return result;
  }

  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) (void)cudaGetLastError();
    HSEQ_CHECK(err == cudaSuccess, "cuda::allocate: cudaMalloc of " << bytes << " bytes failed: " << cudaGetErrorString(err));
    return p;
  }
  static void deallocate(void* p) noexcept {
    if (p != nullptr) cudaFree(p);
  }
  static void copy_bytes(Context& ctx, void* dst, void const* src, std::size_t bytes) {
    if (bytes) HSEQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
  }
  static void zero_bytes(Context& ctx, void* dst, std::size_t bytes) {
    if (bytes) HSEQ_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx.stream()));
  }
  static void synchronize(Context& ctx) { HSEQ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream())); }

  /// Host -> device copy of n elements (blocking with respect to the host buffer).
  template <class T>
  static void upload(Context& ctx, T* dst, T const* src, std::size_t n) {
    if (n) {
      HSEQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyHostToDevice, ctx.stream()));
      synchronize(ctx);
    }
  }
  /// Device -> host copy of n elements (waits for the stream).
  template <class T>
  static void download(Context& ctx, T* dst, T const* src, std::size_t n) {
    if (n) {
      HSEQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()));
      synchronize(ctx);
    }
  }
};

static_assert(Backend<cuda>);

/// The CUDA backend with bf16 tensor-core GEMMs: `Model<hseq::cuda_bf16, float>` keeps fp32
/// parameters (the master weights), fp32 activations, gradients and optimizer state, and runs every
/// float GEMM with bf16 operands and fp32 accumulation (cuBLAS CUBLAS_COMPUTE_32F_FAST_16BF).
/// Its Context is a `cuda::Context`, so every CUDA op accepts it unchanged.
struct cuda_bf16 : cuda {
  static constexpr char const* kName = "cuda_bf16";
  class Context : public cuda::Context {
   public:
    Context() { set_gemm_math(GemmMath::kBf16); }
    explicit Context(cudaStream_t s) : cuda::Context(s) { set_gemm_math(GemmMath::kBf16); }
  };
};

static_assert(Backend<cuda_bf16>);

}  // namespace hseq
