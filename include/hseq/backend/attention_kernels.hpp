// SPDX-License-Identifier: MIT
/// @file
/// @brief `AttentionKernels`: which kernel family the CUDA backend's float attention core uses,
/// and its default from the environment variable HSEQ_CUDA_ATTENTION. Host-only (no CUDA headers),
/// so the parsing is tested on every machine; the CUDA context (backend/cuda.hpp) uses it.
#pragma once

#include <cstdlib>
#include <string_view>

#include "hseq/core/error.hpp"

namespace hseq {

/// Which kernels the float attention core uses for head sizes 17..64 (see ops/cuda/attention.cuh):
/// kAuto and kMma are the tensor-core kernels (3xTF32 in fp32 mode, one TF32 product when the GEMMs
/// run in TF32 or bf16); kTiled (register-tiled SIMT) and kSimple (one thread per row) are kept for
/// comparison. The default comes from the environment variable HSEQ_CUDA_ATTENTION (see
/// attention_kernels_from_env), else kAuto.
enum class AttentionKernels { kAuto, kMma, kTiled, kSimple };

/// The family a name selects: "auto", "mma", "tiled" or "simple". Throws hseq::Error naming
/// `source` (where the name came from), the name and the accepted ones for anything else: a
/// misspelt choice must not silently run the default kernels.
inline AttentionKernels parse_attention_kernels(std::string_view name, char const* source = "attention kernels") {
  if (name == "auto") return AttentionKernels::kAuto;
  if (name == "mma") return AttentionKernels::kMma;
  if (name == "tiled") return AttentionKernels::kTiled;
  if (name == "simple") return AttentionKernels::kSimple;
  HSEQ_FAIL(source << ": unknown attention kernels '" << name << "' (known: auto, mma, tiled, simple)");
}

/// The default family of a new cuda::Context: HSEQ_CUDA_ATTENTION when it is set and not empty
/// (parsed by parse_attention_kernels, so an unknown value throws), else kAuto.
inline AttentionKernels attention_kernels_from_env() {
  char const* e = std::getenv("HSEQ_CUDA_ATTENTION");
  if (e == nullptr || *e == '\0') return AttentionKernels::kAuto;
  return parse_attention_kernels(e, "environment variable HSEQ_CUDA_ATTENTION");
}

}  // namespace hseq
