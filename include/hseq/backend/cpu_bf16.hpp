// SPDX-License-Identifier: MIT
/// @file
/// @brief `hseq::cpu_bf16`: the CPU backend with bf16 GEMMs. `Model<hseq::cpu_bf16, float>` keeps
/// fp32 parameters (the master weights), fp32 activations, gradients and optimizer state, and runs
/// the dense float GEMMs (`ops::gemm`: projections, MLPs, embeddings' heads) with bf16 operands
/// and fp32 accumulation: oneDNN's AVX512-BF16 / AMX kernels where the build and the CPU have
/// them, an emulation with the same arithmetic elsewhere (backend/cpu_bf16_gemm.hpp). Element-wise
/// work, reductions, the attention products and the small batched GEMMs stay fp32.
///
/// Its Context is a `cpu::Context` with `GemmMath::kBf16`, so every CPU op accepts it unchanged,
/// and a model of `hseq::cpu` runs the same way with `ctx.set_gemm_math(GemmMath::kBf16)`.
/// Checkpoints hold fp32 and load in either backend.
#pragma once

#include "hseq/backend/cpu.hpp"

namespace hseq {

struct cpu_bf16 : cpu {
  static constexpr char const* kName = "cpu_bf16";
  struct Context : cpu::Context {
    Context() { set_gemm_math(GemmMath::kBf16); }
  };
};

static_assert(Backend<cpu_bf16>);

}  // namespace hseq
