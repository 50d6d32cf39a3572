// SPDX-License-Identifier: MIT
/// @file
/// @brief The configuration shared by every shortening and upsampling module. The contracts those
/// modules follow are the concepts `ShortenPolicy` (hier/shorten_policy.hpp) and `UpsamplePolicy`
/// (hier/upsample_policy.hpp).
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
  /// Attention resampling only. true (the default): the rate-aware causal masks of the
  /// autoregressive models. false: every query attends to every key of its own sequence (mask
  /// none; the bidirectional encoder of an autoencoder); cached generation (the step_* functions)
  /// then throws, since later positions would change earlier outputs.
  bool causal = true;
};

inline ResampleConfig check_resample(ResampleConfig c, char const* who) {
  HSEQ_CHECK(c.dim > 0 && c.factor >= 1, who << ": dim " << c.dim << " and factor " << c.factor
                                             << " must be positive");
  return c;
}

}  // namespace hseq::hier
