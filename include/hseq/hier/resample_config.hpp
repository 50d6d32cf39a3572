// SPDX-License-Identifier: MIT
/// @file
/// @brief The configuration shared by every shortening and upsampling module, and the policy
/// contract they follow.
///
/// A shortening policy is a tag type `S` with `S::kName` and `S::Module<B, T>`, a module with
///   `Saved forward(ctx, x [B, L, d] (already shifted right by k - 1), y [B, L / k, d], ws)`
///   `void backward(ctx, saved, dy, dx, ws)` (dx overwritten).
/// An upsampling policy `U` has `U::kName`, `U::kUsesResidual` and `U::Module<B, T>` with
///   `Saved forward(ctx, y [B, L / k, d], res [B, L, d], u [B, L, d], ws)`
///   `void backward(ctx, saved, du, dy, dres, ws)` (dy overwritten; dres overwritten when
///   kUsesResidual, untouched otherwise).
/// Both also offer `forward_workspace(batch, L)` / `backward_workspace(batch, L)` (L = full rate).
#pragma once

#include <cstdint>

#include "hseq/core/error.hpp"

namespace hseq::hier {

struct ResampleConfig {
  std::int64_t dim = 0;
  std::int64_t factor = 2;      ///< k: L full-rate positions become L / k
  std::int64_t heads = 1;       ///< attention resampling only
  std::int64_t mlp_hidden = 0;  ///< attention resampling only; 0 means 4 * dim
  double eps = 1e-5;
  double init_std = 0.02;
};

inline ResampleConfig check_resample(ResampleConfig c, char const* who) {
  HSEQ_CHECK(c.dim > 0 && c.factor >= 1, who << ": dim " << c.dim << " and factor " << c.factor
                                             << " must be positive");
  return c;
}

}  // namespace hseq::hier
