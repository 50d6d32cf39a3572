// SPDX-License-Identifier: MIT
/// @file
/// @brief `GemmMath`: how a backend's float GEMMs compute (fp32, TF32 or bf16 operands with fp32
/// accumulation), shared by the CPU and CUDA contexts, and its parsing from a name. Host-only.
#pragma once

#include <string_view>

#include "hseq/core/error.hpp"

namespace hseq {

/// How float GEMMs compute. kFp32 is IEEE fp32 (the default, what parity tests use). kTf32 (CUDA
/// only, an explicit opt-in) and kBf16 round the operands to TF32 / bf16 and accumulate in fp32.
/// Storage, master weights, optimizer state and everything outside the GEMMs stay fp32. Double
/// GEMMs are always fp64, whatever the math.
enum class GemmMath { kFp32, kTf32, kBf16 };

/// "fp32", "tf32" or "bf16".
inline char const* gemm_math_name(GemmMath m) {
  switch (m) {
    case GemmMath::kFp32: return "fp32";
    case GemmMath::kTf32: return "tf32";
    case GemmMath::kBf16: return "bf16";
  }
  return "unknown";
}

/// The math a name selects ("fp32", "tf32", "bf16"). Throws hseq::Error naming `source` (where the
/// name came from) and the accepted names for anything else: a misspelt precision must not
/// silently train in fp32.
inline GemmMath parse_gemm_math(std::string_view name, char const* source = "GEMM math") {
  if (name == "fp32") return GemmMath::kFp32;
  if (name == "tf32") return GemmMath::kTf32;
  if (name == "bf16") return GemmMath::kBf16;
  HSEQ_FAIL(source << ": unknown precision '" << name << "' (known: fp32, tf32, bf16)");
}

}  // namespace hseq
