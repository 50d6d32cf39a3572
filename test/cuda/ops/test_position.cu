// SPDX-License-Identifier: MIT
// CUDA ops/position.hpp: the learned position table, its backward, the sinusoids and the relative-attention
// distance-row spread and gather match the CPU.
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

TEST_CASE_TEMPLATE("cuda parity: relative distance rows, spread and gather (clamped, unclamped, memory, > 48 KiB rows)", T,
                   float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  struct Shape4 {
    std::int64_t heads, m, t, dr;
  };
  // Unclamped (Dr = L), clamped (Dr < L, with a memory and without), one row of distances per
  // query, and rows whose Dr elements need more than the default 48 KiB of shared memory.
  std::int64_t const big = 49 * 1024 / std::int64_t(sizeof(T)) + 7;
  for (Shape4 s : {Shape4{3, 0, 37, 37}, Shape4{2, 5, 11, 16}, Shape4{2, 9, 13, 4}, Shape4{1, 0, 300, 1},
                   Shape4{2, 40, 260, 257}, Shape4{1, big - 3, 3, big}}) {
    INFO("rows ", s.heads, " x ", s.t, ", M ", s.m, ", Dr ", s.dr);
    std::int64_t const l = s.m + s.t;
    auto buf = random_normal<T>(Shape{s.heads * s.t, l}, 95);
    auto gbuf = to_device(gctx, buf);
    ops::spread_relative_rows<T>(cctx, buf.view(), s.m, s.t, s.dr);
    ops::spread_relative_rows<T>(gctx, gbuf.view(), s.m, s.t, s.dr);
    CHECK(bit_mismatches(to_host(gctx, gbuf), buf) == 0);  // copies only
    auto g = random_normal<T>(Shape{s.heads * s.t, l}, 96);
    // The gather's input is zero at the masked keys (the attention core's dL/dlogits is).
    for (std::int64_t r = 0; r < s.heads * s.t; ++r)
      for (std::int64_t j = s.m + r % s.t + 1; j < l; ++j) g.data()[r * l + j] = T(0);
    auto gg = to_device(gctx, g);
    ops::gather_relative_rows<T>(cctx, g.view(), s.m, s.t, s.dr);
    ops::gather_relative_rows<T>(gctx, gg.view(), s.m, s.t, s.dr);
    // Columns >= Dr are scratch after a gather: compare [0, Dr) of each row.
    auto gh = to_host(gctx, gg);
    auto first = [&](auto const& x) {
      auto out = random_normal<T>(Shape{s.heads * s.t, s.dr}, 0);
      for (std::int64_t r = 0; r < s.heads * s.t; ++r)
        for (std::int64_t k = 0; k < s.dr; ++k) out.data()[r * s.dr + k] = x.data()[r * l + k];
      return out;
    };
    CHECK_NMSE(first(gh), first(g), kTol<T>);
  }
}

}  // namespace HSEQ_TEST_UNIT
