// SPDX-License-Identifier: MIT
// CUDA ops/layer_norm.hpp: the layer-norm forward and backward match the CPU.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/layer_norm.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: layer_norm forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 70}, Shape{5, 1030}, Shape{2, 3, 7}}) {
    INFO("shape ", s);
    std::int64_t const n = s.rows(), c = s.cols();
    auto x = random_normal<T>(s, 20, 2.0, 3.0);  // mean far from 0: tests the variance computation
    auto gamma = random_normal<T>(Shape{c}, 21, 0.3, 1.0);
    auto beta = random_normal<T>(Shape{c}, 22, 0.3);
    T const eps = T(1e-5);
    auto dxx = to_device(gctx, x);
    auto dgamma_in = to_device(gctx, gamma);
    auto dbeta_in = to_device(gctx, beta);

    HostTensor<T> y(s), mean(Shape{n}), rstd(Shape{n});
    DeviceTensor<T> gy(s), gmean(Shape{n}), grstd(Shape{n});
    ops::layer_norm_forward<T>(cctx, x.cview(), gamma.cview(), beta.cview(), eps, y.view(), mean.view(), rstd.view());
    ops::layer_norm_forward<T>(gctx, dxx.cview(), dgamma_in.cview(), dbeta_in.cview(), eps, gy.view(), gmean.view(),
                               grstd.view());
    CHECK_NMSE(to_host(gctx, gy), y, kTol<T>);
    CHECK_NMSE(to_host(gctx, gmean), mean, kTol<T>);
    CHECK_NMSE(to_host(gctx, grstd), rstd, kTol<T>);

    // Backward from identical inputs (the CPU's mean and rstd on both sides).
    auto dyv = random_normal<T>(s, 23);
    auto dgam0 = random_normal<T>(Shape{c}, 24);  // nonzero: parameter gradients accumulate
    auto dbet0 = random_normal<T>(Shape{c}, 25);
    auto ddy = to_device(gctx, dyv);
    auto dmean = to_device(gctx, mean);
    auto drstd = to_device(gctx, rstd);
    auto want_dgam = clone(dgam0), want_dbet = clone(dbet0);
    auto gdgam = to_device(gctx, dgam0), gdbet = to_device(gctx, dbet0);
    auto want_dx = filled<T>(s, nan_v<T>());  // dx is overwritten
    auto gdx = to_device(gctx, want_dx);
    ops::layer_norm_backward<T>(cctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dyv.cview(), want_dx.view(),
                                want_dgam.view(), want_dbet.view());
    ops::layer_norm_backward<T>(gctx, dxx.cview(), dgamma_in.cview(), dmean.cview(), drstd.cview(), ddy.cview(),
                                gdx.view(), gdgam.view(), gdbet.view());
    CHECK_NMSE(to_host(gctx, gdx), want_dx, kTol<T>);
    CHECK_NMSE(to_host(gctx, gdgam), want_dgam, kTol<T>);
    CHECK_NMSE(to_host(gctx, gdbet), want_dbet, kTol<T>);

    // dx empty: only the parameter gradients, accumulated a second time.
    ops::layer_norm_backward<T>(cctx, x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dyv.cview(),
                                View<T, HostSpace>{}, want_dgam.view(), want_dbet.view());
    ops::layer_norm_backward<T>(gctx, dxx.cview(), dgamma_in.cview(), dmean.cview(), drstd.cview(), ddy.cview(),
                                View<T, DeviceSpace>{}, gdgam.view(), gdbet.view());
    CHECK_NMSE(to_host(gctx, gdgam), want_dgam, kTol<T>);
    CHECK_NMSE(to_host(gctx, gdbet), want_dbet, kTol<T>);
  }
}

}  // namespace HSEQ_TEST_UNIT
