// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA embedding gather and a deterministic scatter-add: ids are sorted (stable
/// cub::DeviceRadixSort of (id, position) pairs), then each run of equal ids is summed in position
/// order by one block, so repeated ids never race and the result is bit-reproducible.
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/embedding.hpp"

namespace hseq::ops {

namespace cuda_detail {
/// out[0] = first position whose id is outside [0, v) (or -1).
template <class I>
__global__ void id_check_kernel(I const* ids, std::int64_t n, std::int64_t v, long long* out) {
  long long first_bad = n;
  for (std::int64_t i = threadIdx.x; i < n; i += kThreads)
    if ((ids[i] < 0 || ids[i] >= v) && i < first_bad) first_bad = i;
  using Reduce = cub::BlockReduce<long long, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  long long b = Reduce(tmp).Reduce(first_bad, [](long long a, long long bb) { return a < bb ? a : bb; });
  if (threadIdx.x == 0) out[0] = b < n ? b : -1;
}
inline void check_ids(cuda::Context& ctx, View<std::int32_t const, DeviceSpace> ids, std::int64_t v, char const* who) {
  std::int64_t n = ids.numel();
  if (n == 0) return;
  long long* dev = static_cast<long long*>(ctx.scratch(sizeof(long long)));
  id_check_kernel<std::int32_t><<<1, kThreads, 0, ctx.stream()>>>(ids.data, n, v, dev);
  HSEQ_CUDA_LAUNCH_CHECK(who);
  long long bad = -1;
  read_back(ctx, &bad, dev, 1);
  if (bad >= 0) {
    std::int32_t id = 0;
    read_back(ctx, &id, ids.data + bad, 1);
    HSEQ_FAIL(who << ": id " << id << " at position " << bad << " outside the table of " << v << " rows");
  }
}

template <class T>
__global__ void embedding_forward_kernel(T const* table, std::int32_t const* ids, T* out, std::int64_t n,
                                         std::int64_t c) {
  std::int64_t total = n * c;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t i = e / c, j = e % c;
    out[e] = table[std::int64_t(ids[i]) * c + j];
  }
}
template <class I>
__global__ void iota_kernel(I* p, std::int64_t n) {
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x)
    p[e] = std::int32_t(e);
}
/// Block k handles sorted position k if it starts a run of equal ids: it sums that run's rows of
/// dout (in position order) into the id's row of dtable.
template <class T>
__global__ void embedding_segments_kernel(std::int32_t const* keys, std::int32_t const* pos, T const* dout, T* dtable,
                                          std::int64_t n, std::int64_t c) {
  std::int64_t k = blockIdx.x;
  if (k >= n || (k > 0 && keys[k] == keys[k - 1])) return;
  std::int32_t id = keys[k];
  std::int64_t end = k;
  while (end < n && keys[end] == id) ++end;
  for (std::int64_t j = threadIdx.x; j < c; j += blockDim.x) {
    T acc = T(0);
    for (std::int64_t r = k; r < end; ++r) acc += dout[std::int64_t(pos[r]) * c + j];
    dtable[std::int64_t(id) * c + j] += acc;
  }
}
}  // namespace cuda_detail

/// out[n, :] = table[ids[n], :]. Throws (after a synchronizing check) on an id outside the table.
template <class T>
void embedding_forward(cuda::Context& ctx, View<T const, DeviceSpace> table, View<std::int32_t const, DeviceSpace> ids,
                       View<T, DeviceSpace> out) {
  std::int64_t v = table.rows(), c = table.cols(), n = ids.numel();
  HSEQ_CHECK(out.rows() == n && out.cols() == c,
             "embedding_forward: out " << out.shape << " must be [" << n << ", " << c << "] for ids " << ids.shape
                                       << " and table " << table.shape);
  if (n == 0) return;
  cuda_detail::check_ids(ctx, ids, v, "embedding_forward");
  cuda_detail::embedding_forward_kernel<T><<<cuda_detail::grid_for(n * c), cuda_detail::kThreads, 0, ctx.stream()>>>(
      table.data, ids.data, out.data, n, c);
  HSEQ_CUDA_LAUNCH_CHECK("embedding_forward");
}

/// dtable[ids[n], :] += dout[n, :], deterministic.
template <class T>
void embedding_backward(cuda::Context& ctx, View<std::int32_t const, DeviceSpace> ids, View<T const, DeviceSpace> dout,
                        View<T, DeviceSpace> dtable) {
  std::int64_t c = dtable.cols(), n = ids.numel(), v = dtable.rows();
  HSEQ_CHECK(dout.rows() == n && dout.cols() == c,
             "embedding_backward: dout " << dout.shape << " must be [" << n << ", " << c << "]");
  if (n == 0) return;
  HSEQ_CHECK(n <= 2147483647, "embedding_backward: " << n << " ids exceed one grid");
  cuda_detail::check_ids(ctx, ids, v, "embedding_backward");
  int bits = 1;
  while ((std::int64_t(1) << bits) < v) ++bits;
  std::size_t temp = 0;
  HSEQ_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, static_cast<std::int32_t const*>(nullptr),
                                                  static_cast<std::int32_t*>(nullptr),
                                                  static_cast<std::int32_t const*>(nullptr),
                                                  static_cast<std::int32_t*>(nullptr), n, 0, bits, ctx.stream()));
  cuda_detail::ScratchPlan plan;
  std::size_t pos_in = plan.add<std::int32_t>(n), keys_out = plan.add<std::int32_t>(n),
              pos_out = plan.add<std::int32_t>(n), temp_at = 0;
  plan.add_bytes(temp, &temp_at);
  void* base = ctx.scratch(plan.total());
  using cuda_detail::at;
  cuda_detail::iota_kernel<std::int32_t><<<cuda_detail::grid_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      at<std::int32_t>(base, pos_in), n);
  HSEQ_CUDA_LAUNCH_CHECK("embedding_backward");
  HSEQ_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(at<void>(base, temp_at), temp, ids.data, at<std::int32_t>(base, keys_out),
                                                  at<std::int32_t const>(base, pos_in), at<std::int32_t>(base, pos_out), n,
                                                  0, bits, ctx.stream()));
  cuda_detail::embedding_segments_kernel<T><<<unsigned(n), 128, 0, ctx.stream()>>>(
      at<std::int32_t const>(base, keys_out), at<std::int32_t const>(base, pos_out), dout.data, dtable.data, n, c);
  HSEQ_CUDA_LAUNCH_CHECK("embedding_backward");
}

}  // namespace hseq::ops
