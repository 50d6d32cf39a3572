// SPDX-License-Identifier: MIT
/// @file
/// @brief `hseq::cpu`: the host backend policy (Eigen or BLAS GEMM, OpenMP element-wise loops).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"

namespace hseq {

/// Host backend policy. Lower-case like `thrust::host`: it is used as a tag, `Model<hseq::cpu, float>`.
struct cpu {
  using Space = HostSpace;
  static constexpr char const* kName = "cpu";
  static constexpr std::size_t kAlignment = 256;

  /// Run-time resources of the CPU backend. Threads come from OpenMP (OMP_NUM_THREADS).
  struct Context {
    /// 0 keeps OpenMP's default.
    int num_threads = 0;
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
