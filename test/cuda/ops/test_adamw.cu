// SPDX-License-Identifier: MIT
// CUDA ops/adamw.hpp: adamw_update matches the CPU over three steps.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/adamw.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: adamw_update over 3 steps", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  Shape const s{37, 70};
  auto p = random_normal<T>(s, 80);
  auto m = filled<T>(s, T(0));
  auto v = filled<T>(s, T(0));
  auto gp = to_device(gctx, p);
  auto gm = to_device(gctx, m);
  auto gv = to_device(gctx, v);
  for (std::int64_t step = 1; step <= 3; ++step) {
    INFO("step ", step);
    auto g = random_normal<T>(s, 81 + std::uint64_t(step), 0.1 * double(step));
    auto gg = to_device(gctx, g);
    ops::AdamWStep hp;
    hp.lr = 1e-2;
    hp.beta1 = 0.9;
    hp.beta2 = 0.95;
    hp.eps = 1e-8;
    hp.weight_decay = 0.1;
    hp.step = step;
    ops::adamw_update<T>(cctx, p.view(), g.cview(), m.view(), v.view(), hp);
    ops::adamw_update<T>(gctx, gp.view(), gg.cview(), gm.view(), gv.view(), hp);
    CHECK_NMSE(to_host(gctx, gp), p, kTol<T>);
    CHECK_NMSE(to_host(gctx, gm), m, kTol<T>);
    CHECK_NMSE(to_host(gctx, gv), v, kTol<T>);
  }
}

}  // namespace HSEQ_TEST_UNIT
