// SPDX-License-Identifier: MIT
/// @file
/// @brief `comm::Nccl`: data-parallel collectives over NCCL for the CUDA backends, one GPU per
/// process.
///
/// Needs NCCL (<nccl.h>, libnccl; the CUDA toolkit's or the `libnccl-dev` package) and a way to
/// hand every process the clique's id: `Nccl::over(host)` takes it from rank 0 through a host
/// communicator (`comm::Mpi`), so an `mpirun -np N` program with one GPU per process needs no other
/// setup. Choose each process's device (`cudaSetDevice`) before constructing it.
///
/// ORDER. `all_reduce_sum` is `ncclAllReduce`: its summation order is NCCL's (ring or tree by
/// topology and size), fixed for a given machine, NCCL version and process count, but not the rank
/// order of `comm::Mpi`; so a run of P GPUs agrees with a run of one GPU with grad_accum P to
/// rounding (for two processes exactly: a + b = b + a), not bit for bit. Host values (losses) go
/// through a small device buffer on a stream of the communicator's own, after the device has
/// finished all earlier work (so no two collectives of the communicator ever run at once).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "hseq/backend/cuda.hpp"
#include "hseq/comm/communicator.hpp"
#include "hseq/core/error.hpp"

namespace hseq::comm {

namespace detail {
inline void nccl_check(ncclResult_t r, char const* what) {
  HSEQ_CHECK(r == ncclSuccess, "comm::Nccl: " << what << " failed: " << ncclGetErrorString(r));
}
inline void nccl_cuda_check(cudaError_t e, char const* what) {
  HSEQ_CHECK(e == cudaSuccess, "comm::Nccl: " << what << " failed: " << cudaGetErrorString(e));
}
template <class T>
ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>) return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>) return ncclFloat64;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return ncclUint64;
  else static_assert(sizeof(T) == 0, "comm::Nccl: float, double or std::uint64_t");
}
}  // namespace detail

class Nccl {
 public:
  /// Bytes of the device buffer for host values and broadcasts (chunked through it).
  static constexpr std::size_t kStagingBytes = std::size_t(1) << 20;

  /// Process `rank` of a clique of `size` whose id rank 0 made (`ncclGetUniqueId`) and every
  /// process was given.
  Nccl(ncclUniqueId const& id, int rank, int size) : rank_(rank), size_(size) {
    HSEQ_CHECK(size > 0 && rank >= 0 && rank < size, "comm::Nccl: rank " << rank << " of " << size);
    HSEQ_CHECK(std::size_t(size) * kMaxHostValues * sizeof(double) <= kStagingBytes,
               "comm::Nccl: " << size << " processes are more than its staging buffer serves");
    detail::nccl_cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    detail::nccl_cuda_check(cudaMalloc(&staging_, kStagingBytes), "cudaMalloc (staging)");
    detail::nccl_check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
  }
  /// Rank `host.rank()` of `host.size()`, the id made by rank 0 and broadcast through `host` (a
  /// host communicator: `comm::Mpi`).
  template <class HostComm>
  static Nccl over(HostComm& host) {
    ncclUniqueId id{};
    if (host.rank() == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host.host_broadcast(&id, sizeof id, 0);
    return Nccl(id, host.rank(), host.size());
  }
  Nccl(Nccl&& o) noexcept { *this = std::move(o); }
  Nccl& operator=(Nccl&& o) noexcept {
    if (this != &o) {
      release();
      comm_ = std::exchange(o.comm_, nullptr);
      stream_ = std::exchange(o.stream_, nullptr);
      staging_ = std::exchange(o.staging_, nullptr);
      rank_ = o.rank_, size_ = o.size_;
    }
    return *this;
  }
  Nccl(Nccl const&) = delete;
  Nccl& operator=(Nccl const&) = delete;
  ~Nccl() { release(); }

  int rank() const { return rank_; }
  int size() const { return size_; }

  /// Sum over the processes of device memory, on the context's stream.
  template <class T>
  void all_reduce_sum(cuda::Context& ctx, T* data, std::size_t n) {
    if (size_ == 1 || n == 0) return;
    detail::nccl_check(ncclAllReduce(data, data, n, detail::nccl_type<T>(), ncclSum, comm_, ctx.stream()),
                       "ncclAllReduce");
  }
  /// Root's device memory to every process, on the context's stream.
  template <class T>
  void broadcast(cuda::Context& ctx, T* data, std::size_t n, int root) {
    check_root(root);
    if (size_ == 1 || n == 0) return;
    detail::nccl_check(ncclBroadcast(data, data, n, detail::nccl_type<T>(), root, comm_, ctx.stream()),
                       "ncclBroadcast");
  }
  void host_all_reduce_sum(double* data, std::size_t n) {
    HSEQ_CHECK(n <= kMaxHostValues, "comm::Nccl::host_all_reduce_sum: " << n << " values, at most " << kMaxHostValues);
    if (size_ == 1 || n == 0) return;
    drain();
    auto* d = static_cast<double*>(staging_);
    copy(d, data, n * sizeof(double), cudaMemcpyHostToDevice);
    detail::nccl_check(ncclAllReduce(d, d, n, ncclFloat64, ncclSum, comm_, stream_), "ncclAllReduce (host values)");
    copy(data, d, n * sizeof(double), cudaMemcpyDeviceToHost);
    sync();
  }
  void host_broadcast(void* bytes, std::size_t n, int root) {
    check_root(root);
    if (size_ == 1) return;
    drain();
    auto* p = static_cast<unsigned char*>(bytes);
    for (std::size_t off = 0; off < n; off += kStagingBytes) {
      std::size_t const m = std::min(kStagingBytes, n - off);
      if (rank_ == root) copy(staging_, p + off, m, cudaMemcpyHostToDevice);
      detail::nccl_check(ncclBroadcast(staging_, staging_, m, ncclUint8, root, comm_, stream_), "ncclBroadcast");
      copy(p + off, staging_, m, cudaMemcpyDeviceToHost);
      sync();
    }
  }
  void host_all_gather(std::uint64_t value, std::uint64_t* out) {
    if (size_ == 1) {
      out[0] = value;
      return;
    }
    drain();
    auto* d = static_cast<std::uint64_t*>(staging_);
    copy(d, &value, sizeof value, cudaMemcpyHostToDevice);
    detail::nccl_check(ncclAllGather(d, d + 1, 1, ncclUint64, comm_, stream_), "ncclAllGather");
    copy(out, d + 1, std::size_t(size_) * sizeof value, cudaMemcpyDeviceToHost);
    sync();
  }
  void barrier() {
    double zero = 0;
    host_all_reduce_sum(&zero, 1);
  }

 private:
  void check_root(int root) const {
    HSEQ_CHECK(root >= 0 && root < size_, "comm::Nccl: broadcast from rank " << root << " of " << size_);
  }
  /// Before a host collective: every earlier collective (on a context's stream) has finished.
  static void drain() { detail::nccl_cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }
  void copy(void* dst, void const* src, std::size_t bytes, cudaMemcpyKind kind) {
    detail::nccl_cuda_check(cudaMemcpyAsync(dst, src, bytes, kind, stream_), "cudaMemcpyAsync");
  }
  void sync() { detail::nccl_cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }
  void release() {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    if (staging_ != nullptr) cudaFree(staging_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    comm_ = nullptr, staging_ = nullptr, stream_ = nullptr;
  }

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* staging_ = nullptr;
  int rank_ = 0, size_ = 1;
};

}  // namespace hseq::comm
