// SPDX-License-Identifier: MIT
// CUDA ops/dropout.hpp: dropout drops the same elements as the CPU, forward and backward.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/dropout.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: dropout keeps the same elements forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  double const p = 0.3;
  ops::DropoutKey const key{0x0123456789abcdefull, 0x5000000003ull};  // both words of seed and stream used
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    std::int64_t const n = s.numel();
    auto x = random_uniform<T>(s, 70, 0.5, 1.5);  // never zero: a zero in y means "dropped"
    auto gx = to_device(gctx, x);
    HostTensor<T> y(s);
    DeviceTensor<T> gy(s);
    ops::dropout_forward<T>(cctx, x.cview(), y.view(), p, key);
    ops::dropout_forward<T>(gctx, gx.cview(), gy.view(), p, key);
    auto hy = to_host(gctx, gy);
    std::int64_t pattern_diff = 0, dropped = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      pattern_diff += (hy.data()[i] == T(0)) != (y.data()[i] == T(0));
      dropped += y.data()[i] == T(0);
    }
    CHECK(pattern_diff == 0);
    CHECK(double(dropped) / double(n) == doctest::Approx(p).epsilon(0.5));  // sanity: the CPU drops ~p
    CHECK_NMSE(hy, y, kTol<T>);

    // Backward regenerates the same mask.
    auto dy = random_uniform<T>(s, 71, 0.5, 1.5);
    auto gdy = to_device(gctx, dy);
    HostTensor<T> dx(s);
    DeviceTensor<T> gdx(s);
    ops::dropout_backward<T>(cctx, dy.cview(), dx.view(), p, key);
    ops::dropout_backward<T>(gctx, gdy.cview(), gdx.view(), p, key);
    auto hdx = to_host(gctx, gdx);
    std::int64_t back_diff = 0;
    for (std::int64_t i = 0; i < n; ++i) back_diff += (hdx.data()[i] == T(0)) != (y.data()[i] == T(0));
    CHECK(back_diff == 0);
    CHECK_NMSE(hdx, dx, kTol<T>);

    // In place (y aliases x), and p = 0 copies exactly.
    ops::dropout_forward<T>(gctx, gx.cview(), gx.view(), p, key);
    CHECK_NMSE(to_host(gctx, gx), y, kTol<T>);
    ops::dropout_forward<T>(gctx, gdy.cview(), gdx.view(), 0.0, key);
    CHECK(bit_mismatches(to_host(gctx, gdx), dy) == 0);
  }
}

}  // namespace HSEQ_TEST_UNIT
