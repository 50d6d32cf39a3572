// SPDX-License-Identifier: MIT
// What the CUDA op tests (test/cuda/ops/test_*.cu) share: the NMSE tolerance of a CPU <-> GPU
// parity check, on top of the copies, fills and comparisons of test/cuda/support.cuh.
//
// Each op test runs the CPU overload (hseq::cpu::Context, HostSpace) and the CUDA overload
// (hseq::cuda::Context, DeviceSpace) of an op in include/hseq/ops on the same inputs and compares the
// results by NMSE (support.cuh) or bit for bit where the op is a copy, a gather or a pure function of
// Philox draws.
//
// Tolerances (NMSE = sum (gpu - cpu)^2 / sum cpu^2):
//   float  1e-10: fp32 rounding differs between the two (FMA contraction, summation order, tanhf /
//                 expf vs glibc/Eigen within a few ulps); a few ulps rms gives NMSE ~1e-13, a wrong
//                 element out of thousands gives >= 1e-4, so 1e-10 separates the two by far.
//   double 1e-24: the same argument with eps^2 ~ 1e-32.
//   attention and reduced-precision GEMMs: see ops/test_attention.cu and ops/test_gemm.cu.
// Sizes are small and deliberately not multiples of 32 or 128 (37 rows, 70 columns, vocabulary 300,
// 100003 elements) so that every tail path of the kernels runs.
#pragma once

#include <type_traits>

#include "cuda/support.cuh"

namespace hseq::test_cuda {

/// The NMSE tolerance of an op's CPU <-> GPU parity in scalar type T (see the top of this file).
template <class T>
inline constexpr double kTol = std::is_same_v<T, float> ? 1e-10 : 1e-24;

}  // namespace hseq::test_cuda
