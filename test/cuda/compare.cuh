// SPDX-License-Identifier: MIT
// What the CUDA module and model tests share: the CPU-vs-GPU tolerances, host <-> backend copies,
// parameter randomisation, and the normalised comparisons of outputs and parameter gradients.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/cuda.hpp"

namespace hseq::test_cuda_cmp {

// Always spelled through these aliases: an unqualified `cuda` would be ambiguous with libcu++'s
// namespace ::cuda once CUB / Thrust headers are included.
using Gpu = hseq::cuda;
using GpuCtx = Gpu::Context;

// Float CPU vs GPU: both compute in IEEE fp32 (a default cuda::Context uses GemmMath::kFp32) and
// differ only in summation order (cuBLAS vs OpenBLAS/Eigen blocking, the GPU's flash-style online
// softmax vs the CPU's stored probabilities, tree vs sequential reductions). Errors of a few ulps
// per element give a normalised MSE around 1e-13; 1e-7 leaves a wide margin yet catches any real
// error (a wrong mask, a missing term, a wrong row), which shows up as nmse >= 1e-4.
constexpr double kNmse = 1e-7;
// Parameter-gradient tensors are compared against max(their own squared norm, kGradFloor times the
// squared norm of all parameter gradients together). The floor only matters for a tensor whose
// reference is (nearly) zero by cancellation (a key bias, which softmax cancels exactly, is
// the example): there the error is the rounding noise of the cancelled terms, not a fraction of the
// tensor's own (tiny) norm.
constexpr double kGradFloor = 1e-6;
// Initialisation: the same Philox stream on both backends; only the transcendental functions of
// the Box-Muller transform (device vs host libm) may round differently, by an ulp or two.
constexpr double kInitNmse = 1e-10;

template <class B, class T>
Tensor<T, B> mm_to_backend(typename B::Context& ctx, std::vector<T> const& host, Shape s) {
  REQUIRE(std::int64_t(host.size()) == s.numel());
  Tensor<T, B> t(s);
  B::template upload<T>(ctx, t.data(), host.data(), host.size());
  return t;
}

template <class B, class T>
std::vector<T> mm_to_host(typename B::Context& ctx, View<T const, typename B::Space> v) {
  std::vector<T> h(std::size_t(v.numel()));
  B::template download<T>(ctx, h.data(), v.data, h.size());
  return h;
}

/// n draws of N(0, scale^2) from Philox stream `seed` (test::random_tensor's values).
/// Overwrites every parameter with what test::randomize_params writes, on any backend (so that unit
/// LayerNorm gains and zero biases hide nothing).
template <class B, class T>
void mm_randomize(typename B::Context& ctx, nn::ParamStore<B, T>& ps, std::uint64_t seed, double scale) {
  for (std::size_t k = 0; k < ps.entries().size(); ++k) {
    auto v = ps.entries()[k].param->value;
    std::vector<T> h(std::size_t(v.numel()));
    for (std::int64_t i = 0; i < v.numel(); ++i)
      h[std::size_t(i)] = T(scale * philox_normal(seed, 1000 + k, std::uint64_t(i)));
    B::template upload<T>(ctx, v.data, h.data(), h.size());
  }
}

/// Passes when sum (got - ref)^2 <= tol * max(sum ref^2, floor_sq) and everything is finite.
template <class A, class R>
void mm_check_close(std::string const& what, std::vector<A> const& got, std::vector<R> const& ref, double tol,
                    double floor_sq = 0) {
  REQUIRE(got.size() == ref.size());
  double err = 0, norm = 0;
  bool finite = true;
  for (std::size_t i = 0; i < got.size(); ++i) {
    double g = double(got[i]), r = double(ref[i]);
    finite &= std::isfinite(g) && std::isfinite(r);
    err += (g - r) * (g - r);
    norm += r * r;
  }
  INFO(what, ": normalised MSE ", err / std::max(norm, 1e-300), " (squared error ", err, ", squared norm ", norm,
       ", floor ", floor_sq, ", tolerance ", tol, ", ", got.size(), " elements)");
  CHECK(finite);
  CHECK(err <= tol * std::max(norm, floor_sq));
}

/// Every parameter gradient of the GPU store against the CPU store (same module tree, same layout).
template <class T>
void mm_check_param_grads(cpu::Context& hctx, nn::ParamStore<cpu, T>& hps, GpuCtx& dctx, nn::ParamStore<Gpu, T>& dps,
                          double tol) {
  REQUIRE(hps.entries().size() == dps.entries().size());
  auto hg = mm_to_host<cpu, T>(hctx, hps.grads());
  auto dg = mm_to_host<Gpu, T>(dctx, dps.grads());
  REQUIRE(hg.size() == dg.size());
  double global = 0;
  for (T g : hg) global += double(g) * double(g);
  for (std::size_t k = 0; k < hps.entries().size(); ++k) {
    auto const& he = hps.entries()[k];
    auto const& de = dps.entries()[k];
    REQUIRE(he.name == de.name);
    REQUIRE(he.offset == de.offset);
    auto first = std::size_t(he.offset), last = first + std::size_t(he.param->shape.numel());
    std::vector<T> h(hg.begin() + std::ptrdiff_t(first), hg.begin() + std::ptrdiff_t(last));
    std::vector<T> d(dg.begin() + std::ptrdiff_t(first), dg.begin() + std::ptrdiff_t(last));
    mm_check_close("gradient of parameter '" + he.name + "'", d, h, tol, kGradFloor * global);
  }
  if (!hps.entries().empty()) CHECK(global > 0);
}

/// Checks, through the context's KernelCounts, which attention kernels a run on `ctx` dispatched,
/// when every attention of the run has head size `head` in scalar type T (`head` 0: the run has no
/// attention, and none may have been dispatched). Float head sizes 17..64 must have gone to the
/// family the context selects (set_attention_kernels / HSEQ_CUDA_ATTENTION; kAuto and kMma are the
/// tensor-core kernels, 3xTF32 in fp32 math and one TF32 product otherwise); every other head size,
/// and double, to the one-thread-per-row kernels. So a test commented "tensor-core kernels" fails
/// if they silently did not run.
template <class T>
void mm_check_attention_family(GpuCtx const& ctx, std::int64_t head, std::uint64_t calls_at_least = 1) {
  KernelCounts const& kc = ctx.kernel_counts();
  std::uint64_t const total = kc.attention_mma_3xtf32 + kc.attention_mma_tf32 + kc.attention_tiled + kc.attention_simple;
  INFO("attention dispatches: mma 3xTF32 ", kc.attention_mma_3xtf32, ", mma TF32 ", kc.attention_mma_tf32, ", tiled ",
       kc.attention_tiled, ", simple ", kc.attention_simple, " (head size ", head, ", ",
       std::is_same_v<T, float> ? "float" : "double", ")");
  if (head == 0) {
    CHECK(total == 0);
    return;
  }
  std::uint64_t expected = kc.attention_simple;
  char const* family = "simple (one thread per row)";
  if (std::is_same_v<T, float> && head > 16 && head <= 64) {
    AttentionKernels const k = ctx.attention_kernels();
    if (k == AttentionKernels::kTiled) {
      expected = kc.attention_tiled;
      family = "tiled";
    } else if (k != AttentionKernels::kSimple) {
      bool const fp32 = ctx.gemm_math() == GemmMath::kFp32;
      expected = fp32 ? kc.attention_mma_3xtf32 : kc.attention_mma_tf32;
      family = fp32 ? "tensor-core 3xTF32" : "tensor-core TF32";
    }
  }
  INFO("expected family: ", family);
  CHECK(total >= calls_at_least);
  CHECK(expected == total);
}

}  // namespace hseq::test_cuda_cmp
