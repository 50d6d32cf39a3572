// SPDX-License-Identifier: MIT
// CUDA ops/resample.hpp: shift_right, avg_pool, max_pool, repeat_rows and their backwards match the CPU.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/resample.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: shift_right, avg_pool, repeat_rows and their backwards", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 3, l = 36, c = 70;
  Shape const s{bsz, l, c};
  auto x = random_normal<T>(s, 100);
  auto gxx = to_device(gctx, x);

  for (std::int64_t sh : {std::int64_t(0), std::int64_t(1), std::int64_t(5), std::int64_t(40)}) {
    INFO("shift ", sh);
    auto y = filled<T>(s, nan_v<T>());
    auto gy = to_device(gctx, y);
    ops::shift_right<T>(cctx, x.cview(), y.view(), sh);
    ops::shift_right<T>(gctx, gxx.cview(), gy.view(), sh);
    CHECK(bit_mismatches(to_host(gctx, gy), y) == 0);  // copies and zeros
    auto dx = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, dx);
    ops::shift_right_backward<T>(cctx, x.cview(), dx.view(), sh);
    ops::shift_right_backward<T>(gctx, gxx.cview(), gdx.view(), sh);
    CHECK(bit_mismatches(to_host(gctx, gdx), dx) == 0);
  }
  for (std::int64_t k : {std::int64_t(1), std::int64_t(4), std::int64_t(36)}) {
    INFO("factor ", k);
    Shape const ss{bsz, l / k, c};
    // avg_pool and its backward
    auto y = filled<T>(ss, nan_v<T>());
    auto gy = to_device(gctx, y);
    ops::avg_pool<T>(cctx, x.cview(), y.view(), k);
    ops::avg_pool<T>(gctx, gxx.cview(), gy.view(), k);
    CHECK_NMSE(to_host(gctx, gy), y, kTol<T>);
    auto dy = random_normal<T>(ss, 101);
    auto gdy = to_device(gctx, dy);
    auto dx = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, dx);
    ops::avg_pool_backward<T>(cctx, dy.cview(), dx.view(), k);
    ops::avg_pool_backward<T>(gctx, gdy.cview(), gdx.view(), k);
    CHECK_NMSE(to_host(gctx, gdx), dx, kTol<T>);
    // repeat_rows and its backward
    auto u = filled<T>(s, nan_v<T>());
    auto gu = to_device(gctx, u);
    ops::repeat_rows<T>(cctx, dy.cview(), u.view(), k);
    ops::repeat_rows<T>(gctx, gdy.cview(), gu.view(), k);
    CHECK(bit_mismatches(to_host(gctx, gu), u) == 0);  // copies
    auto dys = filled<T>(ss, nan_v<T>());
    auto gdys = to_device(gctx, dys);
    ops::repeat_rows_backward<T>(cctx, x.cview(), dys.view(), k);
    ops::repeat_rows_backward<T>(gctx, gxx.cview(), gdys.view(), k);
    CHECK_NMSE(to_host(gctx, gdys), dys, kTol<T>);
  }
}

TEST_CASE_TEMPLATE("cuda parity: max_pool (values, which row, backward)", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 3, l = 36, c = 70;
  auto x = random_normal<T>(Shape{bsz, l, c}, 102);
  auto gx = to_device(gctx, x);
  for (std::int64_t k : {std::int64_t(1), std::int64_t(3), std::int64_t(4)}) {
    INFO("factor ", k);
    Shape const ss{bsz, l / k, c};
    auto y = filled<T>(ss, nan_v<T>());
    auto gy = to_device(gctx, y);
    HostTensor<std::int32_t> arg(ss);
    auto garg = to_device(gctx, arg);
    ops::max_pool<T>(cctx, x.cview(), y.view(), arg.view(), k);
    ops::max_pool<T>(gctx, gx.cview(), gy.view(), garg.view(), k);
    CHECK(bit_mismatches(to_host(gctx, gy), y) == 0);  // comparisons only
    CHECK(bit_mismatches(to_host(gctx, garg), arg) == 0);
    auto dy = random_normal<T>(ss, 103);
    auto gdy = to_device(gctx, dy);
    auto dx = filled<T>(Shape{bsz, l, c}, nan_v<T>());
    auto gdx = to_device(gctx, dx);
    ops::max_pool_backward<T>(cctx, dy.cview(), arg.cview(), dx.view(), k);
    ops::max_pool_backward<T>(gctx, gdy.cview(), garg.cview(), gdx.view(), k);
    CHECK(bit_mismatches(to_host(gctx, gdx), dx) == 0);
  }
}

}  // namespace HSEQ_TEST_UNIT
