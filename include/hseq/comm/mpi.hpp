// SPDX-License-Identifier: MIT
/// @file
/// @brief `comm::Mpi`: data-parallel collectives over MPI for backends whose memory the host can
/// read (the CPU backend), and `comm::MpiRuntime`, which initializes and finalizes MPI.
///
/// Needs <mpi.h> and an MPI library (Open MPI: `libopenmpi-dev`; CMake: `find_package(MPI)` and
/// `MPI::MPI_CXX`), so it is not part of the umbrella header hseq/hseq.hpp: include it where a
/// program trains on several processes.
///
/// DETERMINISM. `all_reduce_sum` does not call MPI_Allreduce, whose summation order is the
/// library's choice (and changes with the process count and the message size). It reduces
/// buckets of at most `Options::bucket_bytes`: each bucket is cut into `size()` slices; slice k of
/// every process goes to process k (MPI_Alltoallv), which sums the `size()` copies in rank order,
/// ((x_0 + x_1) + x_2) + ..., then every process gathers every slice back (MPI_Allgatherv). The
/// traffic is that of a ring all-reduce, 2 (P - 1) / P of the data per process, and the result is
/// the same bits for any transport, bucket size or network.
///
/// A WORLD OF ONE. `Mpi::world()` when MPI was not initialized (a program started without mpirun;
/// see `MpiRuntime`) is a communicator of one process that never calls MPI: a program built with
/// MPI runs on its own as before.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/comm/communicator.hpp"
#include "hseq/core/error.hpp"
#include "hseq/backend/cpu.hpp"

namespace hseq::comm {

namespace detail {
/// Throws with MPI's own description of `code` when it is not MPI_SUCCESS.
inline void mpi_check(int code, char const* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  HSEQ_FAIL("comm::Mpi: " << what << " failed: " << std::string(text, std::size_t(std::max(len, 0))));
}
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else static_assert(sizeof(T) == 0, "comm::Mpi: float, double or std::uint64_t");
}
inline bool mpi_initialized() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init != 0 && fin == 0;
}
}  // namespace detail

/// Whether this process was started by an MPI launcher (mpirun / mpiexec of Open MPI, MPICH or
/// Intel MPI, or srun with PMI/PMIx): the variables they set.
inline bool launched_by_mpi() {
  for (char const* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

/// Initializes MPI for its lifetime (MPI_Init_thread, MPI_THREAD_FUNNELED: only the thread that
/// called it makes MPI calls; OpenMP threads inside the ops make none) and finalizes it at the end,
/// when it was the one to initialize it. `kIfLaunched` initializes only under an MPI launcher
/// (`launched_by_mpi()`), so that a program started on its own does not start MPI at all.
class MpiRuntime {
 public:
  enum class When { kAlways, kIfLaunched };
  MpiRuntime(int* argc, char*** argv, When when = When::kIfLaunched) {
    int init = 0;
    MPI_Initialized(&init);
    if (init != 0 || (when == When::kIfLaunched && !launched_by_mpi())) return;
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  MpiRuntime(MpiRuntime const&) = delete;
  MpiRuntime& operator=(MpiRuntime const&) = delete;
  ~MpiRuntime() {
    if (owner_ && detail::mpi_initialized()) MPI_Finalize();
  }
  /// Whether MPI is initialized (by this object or before it).
  static bool active() { return detail::mpi_initialized(); }
  /// Ends every process of MPI_COMM_WORLD with `code` (after an error on one of them, which the
  /// others would otherwise wait for in their next collective); returns when MPI is not active.
  static void abort(int code) {
    if (active()) MPI_Abort(MPI_COMM_WORLD, code);
  }

 private:
  bool owner_ = false;
};

/// `comm::Mpi`'s options.
struct MpiOptions {
  /// Bytes reduced per bucket (see the file comment); scratch of about this size is allocated
  /// once, at construction.
  std::size_t bucket_bytes = std::size_t(8) << 20;
};

class Mpi {
 public:
  using Options = MpiOptions;

  /// A communicator over a duplicate of `comm` (MPI must be initialized), so hseq's messages never
  /// mix with the caller's.
  explicit Mpi(MPI_Comm comm, Options opt = {}) : opt_(opt) {
    HSEQ_CHECK(detail::mpi_initialized(), "comm::Mpi: MPI is not initialized (see comm::MpiRuntime)");
    HSEQ_CHECK(opt.bucket_bytes >= 64, "comm::Mpi: bucket_bytes " << opt.bucket_bytes << " is below 64");
    detail::mpi_check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);  // errors become exceptions, not aborts
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    allocate();
  }
  /// MPI_COMM_WORLD when MPI is initialized, else a world of one process that never calls MPI.
  static Mpi world(Options opt = {}) {
    if (detail::mpi_initialized()) return Mpi(MPI_COMM_WORLD, opt);
    return Mpi(opt);
  }
  Mpi(Mpi&& o) noexcept { *this = std::move(o); }
  Mpi& operator=(Mpi&& o) noexcept {
    if (this != &o) {
      release();
      comm_ = o.comm_, rank_ = o.rank_, size_ = o.size_, opt_ = o.opt_;
      scratch_ = std::move(o.scratch_), counts_ = std::move(o.counts_), displs_ = std::move(o.displs_);
      own_counts_ = std::move(o.own_counts_), own_displs_ = std::move(o.own_displs_);
      o.comm_ = MPI_COMM_NULL;
    }
    return *this;
  }
  Mpi(Mpi const&) = delete;
  Mpi& operator=(Mpi const&) = delete;
  ~Mpi() { release(); }

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Whether this communicator calls MPI (false for `world()`'s world of one).
  bool uses_mpi() const { return comm_ != MPI_COMM_NULL; }

  /// Rank-ordered sum over the processes, in buckets (see the file comment). Host memory only.
  template <class Ctx, class T>
  void all_reduce_sum(Ctx&, T* data, std::size_t n) {
    static_assert(std::is_same_v<Ctx, cpu::Context>,
                  "comm::Mpi reduces host memory: the CPU backend's (on GPUs, comm::Nccl)");
    if (size_ == 1 || n == 0) return;
    std::size_t const bucket = std::max<std::size_t>(opt_.bucket_bytes / sizeof(T), std::size_t(size_));
    T* recv = reinterpret_cast<T*>(scratch_.data());
    for (std::size_t off = 0; off < n; off += bucket) {
      std::size_t const m = std::min(bucket, n - off);
      // Slice k of this bucket: [lo(k), lo(k + 1)).
      for (int k = 0; k < size_; ++k) {
        std::size_t const lo = m * std::size_t(k) / std::size_t(size_), hi = m * std::size_t(k + 1) / std::size_t(size_);
        counts_[std::size_t(k)] = int(hi - lo);
        displs_[std::size_t(k)] = int(lo);
      }
      int const own = counts_[std::size_t(rank_)];
      for (int k = 0; k < size_; ++k) {
        own_counts_[std::size_t(k)] = own;
        own_displs_[std::size_t(k)] = k * own;
      }
      T* b = data + off;
      detail::mpi_check(MPI_Alltoallv(b, counts_.data(), displs_.data(), detail::mpi_type<T>(), recv,
                                      own_counts_.data(), own_displs_.data(), detail::mpi_type<T>(), comm_),
                        "MPI_Alltoallv (all_reduce_sum)");
      T* mine = b + displs_[std::size_t(rank_)];
      for (int i = 0; i < own; ++i) {
        T acc = recv[i];  // rank 0's copy, then ranks 1, 2, ... in order
        for (int k = 1; k < size_; ++k) acc += recv[std::size_t(k) * std::size_t(own) + std::size_t(i)];
        mine[i] = acc;
      }
      detail::mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b, counts_.data(), displs_.data(),
                                       detail::mpi_type<T>(), comm_),
                        "MPI_Allgatherv (all_reduce_sum)");
    }
  }
  /// Root's data to every process (host memory).
  template <class Ctx, class T>
  void broadcast(Ctx&, T* data, std::size_t n, int root) {
    static_assert(std::is_same_v<Ctx, cpu::Context>,
                  "comm::Mpi broadcasts host memory: the CPU backend's (on GPUs, comm::Nccl)");
    host_broadcast(data, n * sizeof(T), root);
  }
  void host_all_reduce_sum(double* data, std::size_t n) {
    HSEQ_CHECK(n <= kMaxHostValues, "comm::Mpi::host_all_reduce_sum: " << n << " values, at most " << kMaxHostValues);
    if (size_ == 1 || n == 0) return;
    double* all = reinterpret_cast<double*>(scratch_.data());
    detail::mpi_check(MPI_Allgather(data, int(n), MPI_DOUBLE, all, int(n), MPI_DOUBLE, comm_),
                      "MPI_Allgather (host_all_reduce_sum)");
    for (std::size_t i = 0; i < n; ++i) {
      double acc = all[i];
      for (int k = 1; k < size_; ++k) acc += all[std::size_t(k) * n + i];
      data[i] = acc;
    }
  }
  void host_broadcast(void* bytes, std::size_t n, int root) {
    HSEQ_CHECK(root >= 0 && root < size_, "comm::Mpi: broadcast from rank " << root << " of " << size_);
    if (size_ == 1) return;
    auto* p = static_cast<unsigned char*>(bytes);
    std::size_t constexpr kChunk = std::size_t(1) << 30;  // MPI counts are int
    for (std::size_t off = 0; off < n; off += kChunk)
      detail::mpi_check(MPI_Bcast(p + off, int(std::min(kChunk, n - off)), MPI_BYTE, root, comm_), "MPI_Bcast");
  }
  void host_all_gather(std::uint64_t value, std::uint64_t* out) {
    if (size_ == 1) {
      out[0] = value;
      return;
    }
    detail::mpi_check(MPI_Allgather(&value, 1, MPI_UINT64_T, out, 1, MPI_UINT64_T, comm_), "MPI_Allgather");
  }
  void barrier() {
    if (size_ > 1) detail::mpi_check(MPI_Barrier(comm_), "MPI_Barrier");
  }

 private:
  explicit Mpi(Options opt) : opt_(opt) { allocate(); }  // the world of one
  void allocate() {
    // A bucket's P slices of ceil(bucket / P) elements, and P * kMaxHostValues doubles.
    std::size_t const p = std::size_t(size_);
    std::size_t const bucket = std::max(opt_.bucket_bytes, p * sizeof(double));
    scratch_.assign(std::max(bucket + p * sizeof(double), p * kMaxHostValues * sizeof(double)), 0);
    counts_.assign(p, 0), displs_.assign(p, 0), own_counts_.assign(p, 0), own_displs_.assign(p, 0);
  }
  void release() {
    if (comm_ != MPI_COMM_NULL && detail::mpi_initialized()) MPI_Comm_free(&comm_);
    comm_ = MPI_COMM_NULL;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  Options opt_;
  std::vector<unsigned char> scratch_;
  std::vector<int> counts_, displs_, own_counts_, own_displs_;
};

}  // namespace hseq::comm
