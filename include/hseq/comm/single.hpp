// SPDX-License-Identifier: MIT
/// @file
/// @brief `comm::Single`: the communicator of a run of one process (the trainer's default). Every
/// collective leaves its data as it is; nothing is linked.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hseq/comm/communicator.hpp"
#include "hseq/core/error.hpp"

namespace hseq::comm {

struct Single {
  int rank() const { return 0; }
  int size() const { return 1; }
  template <class Ctx, class T>
  void all_reduce_sum(Ctx&, T*, std::size_t) {}
  template <class Ctx, class T>
  void broadcast(Ctx&, T*, std::size_t, int root) {
    check_root(root);
  }
  void host_all_reduce_sum(double*, std::size_t n) {
    HSEQ_CHECK(n <= kMaxHostValues, "comm::Single::host_all_reduce_sum: " << n << " values, at most " << kMaxHostValues);
  }
  void host_broadcast(void*, std::size_t, int root) { check_root(root); }
  void host_all_gather(std::uint64_t value, std::uint64_t* out) { out[0] = value; }
  void barrier() {}

 private:
  static void check_root(int root) {
    HSEQ_CHECK(root == 0, "comm::Single: broadcast from rank " << root << " in a run of one process (rank 0)");
  }
};

}  // namespace hseq::comm
