// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA softmax cross-entropy: one block per row (cub::BlockReduce for max and sum), and a
/// one-block pass over the targets that counts the counted rows and the invalid targets, read back
/// synchronously so a bad target throws like on the CPU.
#pragma once

#include <cmath>

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/cross_entropy.hpp"

namespace hseq::ops {

namespace cuda_detail {
inline constexpr int kCeThreads = 256;

/// out[0] = rows with 0 <= target; out[1] = first row with target >= v (or -1).
template <class I>
__global__ void target_stats_kernel(I const* targets, std::int64_t n, std::int64_t v,
                                           long long* out) {
  long long counted = 0, first_bad = n;
  for (std::int64_t i = threadIdx.x; i < n; i += kCeThreads) {
    counted += targets[i] >= 0;
    if (targets[i] >= v && i < first_bad) first_bad = i;
  }
  using Reduce = cub::BlockReduce<long long, kCeThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  long long c = Reduce(tmp).Sum(counted);
  __syncthreads();
  long long b = Reduce(tmp).Reduce(first_bad, [](long long a, long long bb) { return a < bb ? a : bb; });
  if (threadIdx.x == 0) {
    out[0] = c;
    out[1] = b < n ? b : -1;
  }
}

/// Counts the rows with a target and throws naming the first target outside the vocabulary.
inline std::int64_t check_targets(cuda::Context& ctx, View<std::int32_t const, DeviceSpace> targets, std::int64_t v,
                                  char const* who) {
  std::int64_t n = targets.numel();
  long long* dev = static_cast<long long*>(ctx.scratch(2 * sizeof(long long)));
  target_stats_kernel<std::int32_t><<<1, kCeThreads, 0, ctx.stream()>>>(targets.data, n, v, dev);
  HSEQ_CUDA_LAUNCH_CHECK(who);
  long long host[2] = {0, -1};
  read_back(ctx, host, dev, 2);
  if (host[1] >= 0) {
    std::int32_t bad = 0;
    read_back(ctx, &bad, targets.data + host[1], 1);
    HSEQ_FAIL(who << ": target " << bad << " at row " << host[1] << " is outside the vocabulary of " << v);
  }
  return std::int64_t(host[0]);
}

template <class T>
__global__ void cross_entropy_forward_kernel(T const* logits, std::int32_t const* targets, std::int64_t v, T* losses) {
  std::int64_t i = blockIdx.x;
  std::int32_t t = targets[i];
  if (t < 0) {
    if (threadIdx.x == 0) losses[i] = T(0);
    return;
  }
  T const* row = logits + i * v;
  T mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < v; j += kCeThreads) mx = fmax(mx, row[j]);
  mx = block_max_all<T, kCeThreads>(mx);
  T s = T(0);
  for (std::int64_t j = threadIdx.x; j < v; j += kCeThreads) s += exp(row[j] - mx);
  s = block_sum<T, kCeThreads>(s);
  if (threadIdx.x == 0) losses[i] = log(s) + mx - row[t];
}

template <class T>
__global__ void cross_entropy_backward_kernel(T const* logits, std::int32_t const* targets, std::int64_t v, T dloss,
                                              T* dlogits) {
  std::int64_t i = blockIdx.x;
  std::int32_t t = targets[i];
  T const* row = logits + i * v;
  T* drow = dlogits + i * v;
  if (t < 0) {
    for (std::int64_t j = threadIdx.x; j < v; j += kCeThreads) drow[j] = T(0);
    return;
  }
  T mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < v; j += kCeThreads) mx = fmax(mx, row[j]);
  mx = block_max_all<T, kCeThreads>(mx);
  T s = T(0);
  for (std::int64_t j = threadIdx.x; j < v; j += kCeThreads) s += exp(row[j] - mx);
  s = block_sum_all<T, kCeThreads>(s);
  T inv = dloss / s;
  // dlogits may alias logits: every element is read before it is written, by the same thread.
  for (std::int64_t j = threadIdx.x; j < v; j += kCeThreads) {
    T p = exp(row[j] - mx) * inv;
    drow[j] = j == t ? p - dloss : p;
  }
}
}  // namespace cuda_detail

/// losses[n] = logsumexp(logits[n]) - logits[n, target[n]]; rows with target < 0 give 0. Returns the
/// number of counted rows (synchronizes). Throws when a target is >= the vocabulary.
template <class T>
std::int64_t cross_entropy_forward(cuda::Context& ctx, View<T const, DeviceSpace> logits,
                                   View<std::int32_t const, DeviceSpace> targets, View<T, DeviceSpace> losses) {
  detail::check_cross_entropy(logits, targets, "cross_entropy_forward");
  std::int64_t n = logits.rows(), v = logits.cols();
  HSEQ_CHECK(losses.numel() == n, "cross_entropy_forward: losses " << losses.shape << " must have " << n << " elements");
  if (n == 0) return 0;
  std::int64_t counted = cuda_detail::check_targets(ctx, targets, v, "cross_entropy_forward");
  cuda_detail::cross_entropy_forward_kernel<T><<<unsigned(n), cuda_detail::kCeThreads, 0, ctx.stream()>>>(
      logits.data, targets.data, v, losses.data);
  HSEQ_CUDA_LAUNCH_CHECK("cross_entropy_forward");
  return counted;
}

/// dlogits = dloss * (softmax(logits) - onehot(target)), zero for ignored rows. May alias logits.
template <class T>
void cross_entropy_backward(cuda::Context& ctx, View<T const, DeviceSpace> logits,
                            View<std::int32_t const, DeviceSpace> targets, T dloss, View<T, DeviceSpace> dlogits) {
  detail::check_cross_entropy(logits, targets, "cross_entropy_backward");
  HSEQ_CHECK(dlogits.shape == logits.shape,
             "cross_entropy_backward: dlogits " << dlogits.shape << " differs from logits " << logits.shape);
  std::int64_t n = logits.rows(), v = logits.cols();
  if (n == 0) return;
  cuda_detail::check_targets(ctx, targets, v, "cross_entropy_backward");
  cuda_detail::cross_entropy_backward_kernel<T><<<unsigned(n), cuda_detail::kCeThreads, 0, ctx.stream()>>>(
      logits.data, targets.data, v, dloss, dlogits.data);
  HSEQ_CUDA_LAUNCH_CHECK("cross_entropy_backward");
}

}  // namespace hseq::ops
