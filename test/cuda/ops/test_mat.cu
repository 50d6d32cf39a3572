// SPDX-License-Identifier: MIT
// CUDA ops/mat.hpp: copy_mat and add_mat on strided matrices (ld > cols) match the CPU bit for bit and leave the
// padding untouched.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/mat.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: copy_mat and add_mat with ld > cols", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const rows = 37, cols = 70;
  auto src = random_mat<T>(rows, cols, cols + 5, 11);
  auto dst = random_mat<T>(rows, cols, cols + 9, 12);  // NaN padding that must survive
  auto dsrc = to_device(gctx, src);

  SUBCASE("copy_mat") {
    auto want = clone(dst);
    auto ddst = to_device(gctx, dst);
    ops::copy_mat<T>(cctx, src.cmat(), want.mat());
    ops::copy_mat<T>(gctx, dsrc.cmat(), ddst.mat());
    auto got = to_host(gctx, ddst);
    CHECK(bit_mismatches(window(got), window(want)) == 0);
    CHECK(bit_mismatches(window(got), window(src)) == 0);
    CHECK(outside_bit_mismatches(got, dst) == 0);
  }
  SUBCASE("add_mat") {
    auto want = clone(dst);
    auto ddst = to_device(gctx, dst);
    ops::add_mat<T>(cctx, src.cmat(), want.mat());
    ops::add_mat<T>(gctx, dsrc.cmat(), ddst.mat());
    auto got = to_host(gctx, ddst);
    // One IEEE addition per element: correctly rounded on both sides.
    CHECK(bit_mismatches(window(got), window(want)) == 0);
    CHECK(outside_bit_mismatches(got, dst) == 0);
  }
}

}  // namespace HSEQ_TEST_UNIT
