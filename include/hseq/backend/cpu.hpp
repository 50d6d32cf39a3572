// SPDX-License-Identifier: MIT
/// @file
/// @brief `hseq::cpu`: the host backend policy (Eigen or BLAS GEMM, OpenMP element-wise loops).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "hseq/backend/backend.hpp"
#include "hseq/backend/gemm_math.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"

namespace hseq {

namespace detail {
class CpuBf16Gemm;  // the bf16 GEMM resources (backend/cpu_bf16_gemm.hpp)
}  // namespace detail

/// Which GEMM paths a `cpu::Context` has dispatched float `ops::gemm` calls to (host counters, no
/// atomics: a Context belongs to one thread). Tests check with them that the math they asked for
/// is the one that ran. GEMMs the ops make internally through the single-threaded helpers (the
/// attention blocks, `gemm_strided_batched`) are not counted: they always run in fp32.
struct CpuKernelCounts {
  /// Float GEMMs run in fp32 (OpenBLAS or Eigen): the fp32 math, and under bf16 math the GEMMs too
  /// small for bf16 to pay (see ops/gemm.hpp, kCpuBf16MinIntensity).
  std::uint64_t gemm_fp32 = 0;
  /// Float GEMMs with bf16 operands and fp32 accumulation: by oneDNN (AVX512-BF16 / AMX kernels), or
  /// emulated (operands rounded to bf16, then the fp32 GEMM) where the CPU or build has none.
  std::uint64_t gemm_bf16_onednn = 0, gemm_bf16_emulated = 0;
  /// Float GEMMs run by the batch-invariant kernel (`Context::set_batch_invariant`, ops/gemm_invariant.hpp).
  std::uint64_t gemm_invariant = 0;
};

/// Host backend policy. Lower-case like `thrust::host`: it is used as a tag, `Model<hseq::cpu, float>`.
struct cpu {
  using Space = HostSpace;
  static constexpr char const* kName = "cpu";
  static constexpr std::size_t kAlignment = 256;

  /// Run-time resources of the CPU backend. Threads come from OpenMP (OMP_NUM_THREADS). A copy
  /// takes the settings (threads, GEMM math, batch invariance), not the resources: each Context owns its bf16 GEMM
  /// scratch and oneDNN primitives, so copies may be used on different threads.
  struct Context {
    /// 0 keeps OpenMP's default.
    int num_threads = 0;

    Context() = default;
    Context(Context const& o) : num_threads(o.num_threads), math_(o.math_), batch_invariant_(o.batch_invariant_) {}
    Context& operator=(Context const& o) {
      num_threads = o.num_threads;
      math_ = o.math_;
      batch_invariant_ = o.batch_invariant_;
      return *this;
    }
    Context(Context&&) noexcept = default;
    Context& operator=(Context&&) noexcept = default;
    ~Context() = default;

    /// The math of float GEMMs on this context: kFp32 (default) or kBf16 (what `cpu_bf16` sets).
    /// Double GEMMs are always fp64.
    GemmMath gemm_math() const { return math_; }
    /// Throws for kTf32: TF32 is a tensor-core format the CPU backend does not have.
    void set_gemm_math(GemmMath m) {
      HSEQ_CHECK(m != GemmMath::kTf32,
                 "cpu::Context: TF32 GEMMs exist only on the CUDA backend (the CPU computes in fp32 or bf16)");
      math_ = m;
    }

    /// Whether every GEMM on this context (`ops::gemm`, `gemm_strided_batched`, the attention
    /// blocks) runs the batch-invariant kernel of ops/gemm_invariant.hpp: each element of C is one
    /// fused multiply-add chain over k in order, so a row's bits do not depend on how many rows,
    /// columns or threads its product has. Off by default: it is slower than the BLAS. Turn it on for
    /// logits that must not depend on the batch or the data-dependent shapes they were computed in
    /// (the causality tests of data-dependent segmentation do). Under bf16 math the operands are
    /// still rounded to bf16 (the emulated path), then multiplied by the invariant kernel.
    bool batch_invariant() const { return batch_invariant_; }
    void set_batch_invariant(bool on) { batch_invariant_ = on; }

    /// The GEMM paths dispatched on this context so far (see CpuKernelCounts).
    CpuKernelCounts const& kernel_counts() const { return counts_; }
    /// For the ops: the counters to bump at dispatch.
    CpuKernelCounts& kernel_counts_mut() { return counts_; }
    void reset_kernel_counts() { counts_ = CpuKernelCounts{}; }

    /// For the ops (backend/cpu_bf16_gemm.hpp creates it on the first bf16 GEMM): the bf16 GEMM
    /// resources. A function-pointer deleter keeps this header free of oneDNN's.
    std::unique_ptr<detail::CpuBf16Gemm, void (*)(detail::CpuBf16Gemm*)> bf16_gemm_{nullptr, nullptr};

   private:
    GemmMath math_ = GemmMath::kFp32;
    bool batch_invariant_ = false;
    CpuKernelCounts counts_{};
  };

  static bool available() noexcept { return true; }

  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    HSEQ_CHECK(bytes <= SIZE_MAX - kAlignment, "cpu::allocate: " << bytes << " bytes is not a valid size");
    std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded);
    HSEQ_CHECK(p != nullptr, "cpu::allocate: out of host memory allocating " << bytes << " bytes");
    return p;
  }
  static void deallocate(void* p) noexcept { std::free(p); }
  static void copy_bytes(Context&, void* dst, void const* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void zero_bytes(Context&, void* dst, std::size_t bytes) {
    if (bytes) std::memset(dst, 0, bytes);
  }
  static void synchronize(Context&) {}

  /// Host -> backend memory copy of n elements (a plain copy here; the CUDA backend uploads).
  template <class T>
  static void upload(Context&, T* dst, T const* src, std::size_t n) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  }
  /// Backend -> host memory copy of n elements.
  template <class T>
  static void download(Context&, T* dst, T const* src, std::size_t n) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  }
};

static_assert(Backend<cpu>);

namespace detail {
/// Threads OpenMP will use for a parallel region here (1 without OpenMP).
inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}
inline int thread_id() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}
}  // namespace detail

}  // namespace hseq
