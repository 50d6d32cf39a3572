// SPDX-License-Identifier: MIT
/// @file
/// @brief `comm::all_reduce_mean`: the mean over the processes of a buffer in the backend's memory,
/// for callers that average (the trainer itself sums, then divides by the step's micro-batch count:
/// train/trainer.hpp).
#pragma once

#include <cstddef>

#include "hseq/comm/communicator.hpp"
#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::comm {

/// Replaces `data` on every process by the mean over the processes: the sum (`all_reduce_sum`, in
/// the communicator's order), times 1 / size() rounded to T. For the CUDA backends include
/// hseq/cuda.hpp first (the device `ops::scale`).
template <Backend B, class C, class T>
  requires Communicator<C, B>
void all_reduce_mean(C& c, typename B::Context& ctx, View<T, typename B::Space> data) {
  c.all_reduce_sum(ctx, data.data, std::size_t(data.numel()));
  if (c.size() > 1) ops::scale<T>(ctx, data, T(1.0 / double(c.size())));
}

}  // namespace hseq::comm
