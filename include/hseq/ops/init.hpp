// SPDX-License-Identifier: MIT
/// @file
/// @brief Deterministic parameter initialisation from Philox: element i of a parameter with stream s
/// is a function of (seed, s, i) only, so CPU and GPU initialise identically.
#pragma once

#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

/// How a parameter is initialised.
struct InitSpec {
  enum class Kind { kZeros, kOnes, kNormal, kUniform };
  Kind kind = Kind::kZeros;
  double scale = 0;  ///< standard deviation (normal) or bound a of U(-a, a)
  static InitSpec zeros() { return {Kind::kZeros, 0}; }
  static InitSpec ones() { return {Kind::kOnes, 0}; }
  static InitSpec normal(double std) { return {Kind::kNormal, std}; }
  static InitSpec uniform(double bound) { return {Kind::kUniform, bound}; }
};

template <class T>
void init_param(cpu::Context&, View<T, HostSpace> v, InitSpec spec, std::uint64_t seed, std::uint64_t stream) {
  std::int64_t n = v.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) {
    switch (spec.kind) {
      case InitSpec::Kind::kZeros: v[i] = T(0); break;
      case InitSpec::Kind::kOnes: v[i] = T(1); break;
      case InitSpec::Kind::kNormal: v[i] = T(spec.scale * philox_normal(seed, stream, std::uint64_t(i))); break;
      case InitSpec::Kind::kUniform:
        v[i] = T(spec.scale * (2.0 * philox_uniform(seed, stream, std::uint64_t(i)) - 1.0));
        break;
    }
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/init.cuh"
#endif
