// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA parameter initialisation with thrust::tabulate: element i of stream s is the same
/// Philox draw as on the CPU (uniform draws are bit-identical; normal draws go through the device's
/// double-precision log/cos, which may differ from the host libm in the last bit of a double,
/// invisible after rounding to float in all but rare cases).
#pragma once

#include <thrust/execution_policy.h>
#include <thrust/tabulate.h>

#include "hseq/core/rng.hpp"
#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/init.hpp"

namespace hseq::ops {

namespace cuda_detail {
template <class T>
struct InitDraw {
  InitSpec::Kind kind;
  double scale;
  std::uint64_t seed, stream;
  __host__ __device__ T operator()(std::int64_t i) const {
    switch (kind) {
      case InitSpec::Kind::kZeros: return T(0);
      case InitSpec::Kind::kOnes: return T(1);
      case InitSpec::Kind::kNormal: return T(scale * philox_normal(seed, stream, std::uint64_t(i)));
      default: return T(scale * (2.0 * philox_uniform(seed, stream, std::uint64_t(i)) - 1.0));
    }
  }
};
}  // namespace cuda_detail

template <class T>
void init_param(cuda::Context& ctx, View<T, DeviceSpace> v, InitSpec spec, std::uint64_t seed, std::uint64_t stream) {
  if (v.numel() == 0) return;
  thrust::tabulate(thrust::cuda::par_nosync.on(ctx.stream()), v.data, v.data + v.numel(),
                   cuda_detail::InitDraw<T>{spec.kind, spec.scale, seed, stream});
}

}  // namespace hseq::ops
