// SPDX-License-Identifier: MIT
/// @file
/// @brief Global-norm gradient clipping (PyTorch `clip_grad_norm_`).
#pragma once

#include <cmath>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::train {

/// The L2 norm of all gradients of the store, taken together.
template <Backend B, class T>
double grad_norm(typename B::Context& ctx, nn::ParamStore<B, T> const& store) {
  return std::sqrt(ops::sum_squares<T>(ctx, store.grads()));
}

/// Scales all gradients by max_norm / (norm + 1e-6) when their global norm exceeds max_norm.
/// Returns the norm before clipping (NaN or Inf when a gradient is not finite; then nothing is scaled).
template <Backend B, class T>
double clip_grad_norm(typename B::Context& ctx, nn::ParamStore<B, T>& store, double max_norm) {
  HSEQ_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got " << max_norm);
  double norm = grad_norm(ctx, store);
  if (std::isfinite(norm) && norm > max_norm) ops::scale<T>(ctx, store.grads(), T(max_norm / (norm + 1e-6)));
  return norm;
}

}  // namespace hseq::train
