// SPDX-License-Identifier: MIT
/// @file
/// @brief `Communicator`: what a trainer needs from the processes it trains with (data-parallel
/// training), chosen at compile time like a backend: `comm::Single` (one process, no MPI),
/// `comm::Mpi` (comm/mpi.hpp, host memory) and `comm::Nccl` (comm/cuda_nccl.hpp, device memory).
///
/// A communicator of `size()` processes, this one being `rank()` (0-based), offers:
///   - `all_reduce_sum(ctx, data, n)`: every process's `data[0, n)` (in the backend's memory, float
///     or double) is replaced by the sum over the processes. `comm::Mpi` sums in rank order,
///     ((x_0 + x_1) + x_2) + ..., on every element, so the result does not depend on the transport
///     and a one-process run that accumulates micro-batches in that order gets the same bits;
///   - `broadcast(ctx, data, n, root)`: root's `data[0, n)` to every process (backend memory);
///   - `host_all_reduce_sum(data, n)`: the same rank-ordered sum over host doubles (losses, at most
///     `kMaxHostValues` of them);
///   - `host_broadcast(bytes, n, root)`: root's host bytes to every process;
///   - `host_all_gather(value, out)`: every process's one 64-bit value, `out[r]` from rank r
///     (`out` holds `size()` values);
///   - `barrier()`.
/// Every call is collective: all processes make the same calls in the same order. A communicator of
/// one process makes none of them cost anything.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "hseq/core/backend.hpp"

namespace hseq::comm {

/// At most this many host doubles per `host_all_reduce_sum`.
inline constexpr std::size_t kMaxHostValues = 64;

// clang-format off
template <class C, class B>
concept Communicator =
    Backend<B> &&
    requires(C const& c) {
      { c.rank() } -> std::convertible_to<int>;
      { c.size() } -> std::convertible_to<int>;
    } &&
    requires(C& c, typename B::Context& ctx, float* f, double* d, std::size_t n, int root) {
      c.all_reduce_sum(ctx, f, n);
      c.all_reduce_sum(ctx, d, n);
      c.broadcast(ctx, f, n, root);
      c.broadcast(ctx, d, n, root);
    } &&
    requires(C& c, double* d, void* bytes, std::size_t n, int root, std::uint64_t v, std::uint64_t* out) {
      c.host_all_reduce_sum(d, n);
      c.host_broadcast(bytes, n, root);
      c.host_all_gather(v, out);
      c.barrier();
    };
// clang-format on

}  // namespace hseq::comm
