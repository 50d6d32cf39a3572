// SPDX-License-Identifier: MIT
/// @file
/// @brief Softmax cross-entropy with logits (PyTorch `F.cross_entropy`, ignore_index < 0).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

namespace detail {
template <class T, class S1, class S2>
void check_cross_entropy(View<T const, S1> logits, View<std::int32_t const, S2> targets, char const* who) {
  HSEQ_CHECK(logits.rank() >= 1 && targets.numel() == logits.rows(),
             who << ": logits " << logits.shape << " hold " << logits.rows() << " rows but targets " << targets.shape
                 << " hold " << targets.numel());
}
}  // namespace detail

/// losses[n] = logsumexp(logits[n]) - logits[n, target[n]] (nats); rows with target < 0 are
/// ignored (loss 0). Returns the number of counted rows. Throws when a target is >= the vocabulary.
template <class T>
std::int64_t cross_entropy_forward(cpu::Context&, View<T const, HostSpace> logits,
                                   View<std::int32_t const, HostSpace> targets, View<T, HostSpace> losses) {
  detail::check_cross_entropy(logits, targets, "cross_entropy_forward");
  std::int64_t n = logits.rows(), v = logits.cols();
  HSEQ_CHECK(losses.numel() == n, "cross_entropy_forward: losses " << losses.shape << " must have " << n << " elements");
  for (std::int64_t i = 0; i < n; ++i)
    HSEQ_CHECK(targets[i] < v, "cross_entropy_forward: target " << targets[i] << " at row " << i
                                                                << " is outside the vocabulary of " << v);
  std::int64_t counted = 0;
#pragma omp parallel for schedule(static) reduction(+ : counted) if (n * v > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) {
    if (targets[i] < 0) {
      losses[i] = T(0);
      continue;
    }
    T const* row = logits.data + i * v;
    T mx = *std::max_element(row, row + v);
    T sum = 0;
    for (std::int64_t j = 0; j < v; ++j) sum += std::exp(row[j] - mx);
    losses[i] = std::log(sum) + mx - row[targets[i]];
    ++counted;
  }
  return counted;
}

/// dlogits = dloss * (softmax(logits) - onehot(target)) per row, zero for ignored rows (overwrites).
/// For the mean loss over `counted` rows, pass dloss = 1 / counted. `dlogits` may alias `logits`.
template <class T>
void cross_entropy_backward(cpu::Context&, View<T const, HostSpace> logits, View<std::int32_t const, HostSpace> targets,
                            T dloss, View<T, HostSpace> dlogits) {
  detail::check_cross_entropy(logits, targets, "cross_entropy_backward");
  HSEQ_CHECK(dlogits.shape == logits.shape,
             "cross_entropy_backward: dlogits " << dlogits.shape << " differs from logits " << logits.shape);
  std::int64_t n = logits.rows(), v = logits.cols();
  for (std::int64_t i = 0; i < n; ++i)
    HSEQ_CHECK(targets[i] < v, "cross_entropy_backward: target " << targets[i] << " at row " << i
                                                                 << " is outside the vocabulary of " << v);
#pragma omp parallel for schedule(static) if (n * v > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) {
    T const* row = logits.data + i * v;
    T* drow = dlogits.data + i * v;
    std::int32_t t = targets[i];
    if (t < 0) {
      std::fill(drow, drow + v, T(0));
      continue;
    }
    T mx = *std::max_element(row, row + v);
    T sum = 0;
    for (std::int64_t j = 0; j < v; ++j) {
      drow[j] = std::exp(row[j] - mx);
      sum += drow[j];
    }
    T inv = dloss / sum;
    for (std::int64_t j = 0; j < v; ++j) drow[j] *= inv;
    drow[t] -= dloss;
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/cross_entropy.cuh"
#endif
