// SPDX-License-Identifier: MIT
// CUDA ops/position.hpp: the learned position table, its backward and the sinusoids match the CPU.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/position.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: position table, its backward, sinusoids", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 3, t = 37, c = 70, t_max = 50;
  auto table = random_normal<T>(Shape{t_max, c}, 90);
  auto gtable = to_device(gctx, table);
  for (std::int64_t offset : {std::int64_t(0), std::int64_t(9), t_max - t}) {
    INFO("offset ", offset);
    auto x = random_normal<T>(Shape{bsz, t, c}, 91);
    auto gx = to_device(gctx, x);
    ops::add_position_table<T>(cctx, x.view(), table.cview(), offset);
    ops::add_position_table<T>(gctx, gx.view(), gtable.cview(), offset);
    CHECK(bit_mismatches(to_host(gctx, gx), x) == 0);  // one addition per element

    auto dy = random_normal<T>(Shape{bsz, t, c}, 92);
    auto dtable = random_normal<T>(Shape{t_max, c}, 93);  // nonzero: accumulates
    auto gdy = to_device(gctx, dy);
    auto gdtable = to_device(gctx, dtable);
    ops::position_table_backward<T>(cctx, dy.cview(), dtable.view(), offset);
    ops::position_table_backward<T>(gctx, gdy.cview(), gdtable.view(), offset);
    CHECK_NMSE(to_host(gctx, gdtable), dtable, kTol<T>);
  }
  for (std::int64_t cc : {c, std::int64_t(71)})
    for (std::int64_t offset : {std::int64_t(0), std::int64_t(1000)}) {
      INFO("sinusoids, C ", cc, ", offset ", offset);
      auto x = random_normal<T>(Shape{bsz, t, cc}, 94);
      auto gx = to_device(gctx, x);
      ops::add_sinusoidal<T>(cctx, x.view(), offset);
      ops::add_sinusoidal<T>(gctx, gx.view(), offset);
      CHECK_NMSE(to_host(gctx, gx), x, kTol<T>);
    }
}

}  // namespace HSEQ_TEST_UNIT
