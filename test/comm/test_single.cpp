// SPDX-License-Identifier: MIT
// comm/single.hpp and the Communicator concept (comm/communicator.hpp): a run of one process.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "hseq/backend/cpu.hpp"
#include "hseq/comm/communicator.hpp"
#include "hseq/comm/single.hpp"
#include "support/errors.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
// A communicator without a barrier: not a Communicator.
struct NoBarrier {
  int rank() const { return 0; }
  int size() const { return 1; }
  template <class Ctx, class T>
  void all_reduce_sum(Ctx&, T*, std::size_t) {}
  template <class Ctx, class T>
  void broadcast(Ctx&, T*, std::size_t, int) {}
  void host_all_reduce_sum(double*, std::size_t) {}
  void host_broadcast(void*, std::size_t, int) {}
  void host_all_gather(std::uint64_t, std::uint64_t*) {}
};
}  // namespace

static_assert(comm::Communicator<comm::Single, cpu>);
static_assert(!comm::Communicator<NoBarrier, cpu>);

TEST_CASE("comm::Single: one process, rank 0, whose collectives leave their data as it is") {
  comm::Single c;
  cpu::Context ctx;
  CHECK(c.rank() == 0);
  CHECK(c.size() == 1);
  std::vector<float> g = {1.0f, -2.5f};
  c.all_reduce_sum(ctx, g.data(), g.size());
  c.broadcast(ctx, g.data(), g.size(), 0);
  CHECK(g == std::vector<float>{1.0f, -2.5f});
  double h[2] = {3.0, 4.0};
  c.host_all_reduce_sum(h, 2);
  CHECK(h[0] == 3.0);
  CHECK(h[1] == 4.0);
  std::uint64_t out = 0;
  c.host_all_gather(9, &out);
  CHECK(out == 9);
  c.barrier();
  CHECK(test::contains(test::error_of([&] { c.broadcast(ctx, g.data(), 2, 1); }), "broadcast from rank 1"));
  std::vector<double> many(comm::kMaxHostValues + 1);
  CHECK(test::contains(test::error_of([&] { c.host_all_reduce_sum(many.data(), many.size()); }), "at most 64"));
}

}  // namespace HSEQ_TEST_UNIT
