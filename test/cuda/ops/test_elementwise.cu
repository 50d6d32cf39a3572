// SPDX-License-Identifier: MIT
// CUDA ops/elementwise.hpp: fill, copy, add, axpy, scale, the bias ops, gelu, the reductions and all_finite match the
// CPU.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/elementwise.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: fill, copy, add, axpy, scale", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 1);
    auto y = random_normal<T>(s, 2);
    // Each block works on fresh device copies of x and y.
    {  // fill
      auto dy = to_device(gctx, y);
      auto want = clone(y);
      ops::fill<T>(cctx, want.view(), T(2.5));
      ops::fill<T>(gctx, dy.view(), T(2.5));
      CHECK(bit_mismatches(to_host(gctx, dy), want) == 0);
    }
    {  // copy into another shape of the same size
      auto dx = to_device(gctx, x);
      DeviceTensor<T> dz(Shape{s.numel()});
      ops::fill<T>(gctx, dz.view(), nan_v<T>());
      ops::copy<T>(gctx, dx.cview(), dz.view());
      auto got = to_host(gctx, dz);
      CHECK(bit_mismatches(got.data(), x.data(), x.numel()) == 0);
    }
    {  // add, and add in place (out aliases a)
      auto dx = to_device(gctx, x);
      auto dy = to_device(gctx, y);
      HostTensor<T> want(s);
      DeviceTensor<T> dout(s);
      ops::add<T>(cctx, x.cview(), y.cview(), want.view());
      ops::add<T>(gctx, dx.cview(), dy.cview(), dout.view());
      // One IEEE addition per element.
      CHECK(bit_mismatches(to_host(gctx, dout), want) == 0);
      ops::add<T>(gctx, dx.cview(), dy.cview(), dx.view());
      CHECK(bit_mismatches(to_host(gctx, dx), want) == 0);
    }
    {  // axpy
      auto dx = to_device(gctx, x);
      auto dy = to_device(gctx, y);
      auto want = clone(y);
      ops::axpy<T>(cctx, T(-0.375), x.cview(), want.view());
      ops::axpy<T>(gctx, T(-0.375), dx.cview(), dy.view());
      CHECK_NMSE(to_host(gctx, dy), want, kTol<T>);
    }
    {  // scale
      auto dy = to_device(gctx, y);
      auto want = clone(y);
      ops::scale<T>(cctx, want.view(), T(1.7));
      ops::scale<T>(gctx, dy.view(), T(1.7));
      CHECK_NMSE(to_host(gctx, dy), want, kTol<T>);
    }
  }
}

TEST_CASE_TEMPLATE("cuda parity: add_bias and bias_grad (accumulating into a nonzero dbias)", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{3, 347, 130}}) {
    INFO("shape ", s);
    std::int64_t c = s[-1];
    auto y = random_normal<T>(s, 3);
    auto bias = random_normal<T>(Shape{c}, 4);
    {
      auto want = clone(y);
      auto dy = to_device(gctx, y);
      auto dbias = to_device(gctx, bias);
      ops::add_bias<T>(cctx, want.view(), bias.cview());
      ops::add_bias<T>(gctx, dy.view(), dbias.cview());
      CHECK(bit_mismatches(to_host(gctx, dy), want) == 0);  // one addition per element
    }
    {
      auto g = random_normal<T>(s, 5);
      auto acc = random_normal<T>(Shape{c}, 6, 30.0);  // nonzero, comparable to the sums: bias_grad accumulates
      auto want = clone(acc);
      auto dg = to_device(gctx, g);
      auto dacc = to_device(gctx, acc);
      ops::bias_grad<T>(cctx, g.cview(), want.view());
      ops::bias_grad<T>(gctx, dg.cview(), dacc.view());
      auto got = to_host(gctx, dacc);
      CHECK_NMSE(got, want, kTol<T>);
      // The accumulation really happened: the result is not just the column sums.
      auto fresh = filled<T>(Shape{c}, T(0));
      ops::bias_grad<T>(cctx, g.cview(), fresh.view());
      CHECK(nmse(got, fresh) > 1e-2);
    }
  }
}

TEST_CASE_TEMPLATE("cuda parity: gelu forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 7, 2.5);  // covers the saturated tails
    auto g = random_normal<T>(s, 8);
    auto dx = to_device(gctx, x);
    auto dg = to_device(gctx, g);
    HostTensor<T> y(s), dxin(s);
    DeviceTensor<T> dy(s), ddxin(s);
    ops::gelu_forward<T>(cctx, x.cview(), y.view());
    ops::gelu_forward<T>(gctx, dx.cview(), dy.view());
    CHECK_NMSE(to_host(gctx, dy), y, kTol<T>);
    ops::gelu_backward<T>(cctx, x.cview(), g.cview(), dxin.view());
    ops::gelu_backward<T>(gctx, dx.cview(), dg.cview(), ddxin.view());
    CHECK_NMSE(to_host(gctx, ddxin), dxin, kTol<T>);
    // Documented aliasing: y may alias x, dx may alias dy.
    ops::gelu_backward<T>(gctx, dx.cview(), dg.cview(), dg.view());
    CHECK_NMSE(to_host(gctx, dg), dxin, kTol<T>);
    ops::gelu_forward<T>(gctx, dx.cview(), dx.view());
    CHECK_NMSE(to_host(gctx, dx), y, kTol<T>);
  }
}

TEST_CASE_TEMPLATE("cuda parity: sum and sum_squares (double accumulation)", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}, Shape{1}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 9, 1.0, 0.1);
    auto dx = to_device(gctx, x);
    double const want_sum = ops::sum<T>(cctx, x.cview());
    double const want_sq = ops::sum_squares<T>(cctx, x.cview());
    double const got_sum = ops::sum<T>(gctx, dx.cview());
    double const got_sq = ops::sum_squares<T>(gctx, dx.cview());
    // Both accumulate the (exact) element values in double; only the summation order differs.
    // sum has cancellation (condition ~ sqrt(n)), sum_squares none.
    CHECK(rel_diff(got_sum, want_sum) <= 1e-11);
    CHECK(rel_diff(got_sq, want_sq) <= 1e-13);
  }
  {  // The accumulation is in double: with every x = 1 + 2^-20 (exact in float), every partial sum
     // of up to 2^32 terms is exact in double, so the sum is exact in any order; a float
     // accumulator drops the 2^-20 bits past ~16 terms (relative error ~1e-6).
    std::int64_t const n = 100003;
    T const v = T(1.0 + std::ldexp(1.0, -20));
    auto x = filled<T>(Shape{n}, v);
    auto dx = to_device(gctx, x);
    double const exact = double(n) * double(v);
    CHECK(ops::sum<T>(cctx, x.cview()) == exact);
    CHECK(ops::sum<T>(gctx, dx.cview()) == exact);
    CHECK(rel_diff(ops::sum_squares<T>(gctx, dx.cview()), double(n) * double(v) * double(v)) <= 1e-13);
  }
  {  // empty input
    View<T const, DeviceSpace> empty(nullptr, Shape{0});
    CHECK(ops::sum<T>(gctx, empty) == 0.0);
    CHECK(ops::sum_squares<T>(gctx, empty) == 0.0);
    CHECK(ops::all_finite<T>(gctx, empty));
  }
}

TEST_CASE_TEMPLATE("cuda parity: all_finite with NaN, +Inf and -Inf", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    std::int64_t const n = s.numel();
    auto x = random_normal<T>(s, 10, 1e3);
    {
      auto dx = to_device(gctx, x);
      CHECK(ops::all_finite<T>(cctx, x.cview()));
      CHECK(ops::all_finite<T>(gctx, dx.cview()));
    }
    T const bad_values[] = {nan_v<T>(), std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity()};
    for (T bad : bad_values)
      for (std::int64_t where : {std::int64_t(0), n / 2 + 1, n - 1}) {
        INFO("value ", double(bad), " at ", where);
        auto y = clone(x);
        y.data()[where] = bad;
        auto dy = to_device(gctx, y);
        CHECK_FALSE(ops::all_finite<T>(cctx, y.cview()));
        CHECK_FALSE(ops::all_finite<T>(gctx, dy.cview()));
      }
    // The largest finite value is finite.
    auto z = clone(x);
    z.data()[n - 1] = std::numeric_limits<T>::max();
    auto dz = to_device(gctx, z);
    CHECK(ops::all_finite<T>(gctx, dz.cview()));
  }
}

}  // namespace HSEQ_TEST_UNIT
