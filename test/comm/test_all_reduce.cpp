// SPDX-License-Identifier: MIT
// comm/all_reduce.hpp in a run of one process (over several: test/mpi/test_mpi.cpp).
#include <doctest/doctest.h>

#include <vector>

#include "hseq/backend/cpu.hpp"
#include "hseq/comm/all_reduce.hpp"
#include "hseq/comm/single.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("comm::all_reduce_mean over comm::Single: the data as it is") {
  comm::Single c;
  cpu::Context ctx;
  std::vector<double> g = {0.1, -7.0, 3.0};
  comm::all_reduce_mean<cpu>(c, ctx, View<double, HostSpace>(g.data(), Shape{3}));
  CHECK(g == std::vector<double>{0.1, -7.0, 3.0});
}

}  // namespace HSEQ_TEST_UNIT
