// SPDX-License-Identifier: MIT
// Shared gradient check for shortening and upsampling modules (test support, not a test file).
#pragma once

#include "hseq/hier/resample_config.hpp"
#include "support/gradcheck.hpp"

namespace hseq::test {

/// Gradient check of a shortening module: x [B, L, d] -> y [B, L / k, d].
template <class M>
void check_shorten(hier::ResampleConfig cfg, std::int64_t bsz, std::int64_t len) {
  cpu::Context ctx;
  M m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, 17, 0.4);
  std::int64_t ls = len / cfg.factor, d = cfg.dim;
  auto x = random_tensor(Shape{bsz, len, d}, 1), dx = random_tensor(Shape{bsz, len, d}, 0);
  auto r = random_tensor(Shape{bsz, ls, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, ls, d});
  std::size_t plan = m.forward_workspace(bsz, len) + m.backward_workspace(bsz, len);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    CHECK(a.used() == m.forward_workspace(bsz, len));
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() == plan);
  };
  GradCheck gc(ps);
  gc.input("x", x.view(), dx.view()).run(loss, grads);
}

/// Gradient check of an upsampling module: y [B, Ls, d], res [B, Ls k, d] -> u [B, Ls k, d].
template <class M, bool kUsesResidual>
void check_upsample(hier::ResampleConfig cfg, std::int64_t bsz, std::int64_t ls) {
  cpu::Context ctx;
  M m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, 19, 0.4);
  std::int64_t len = ls * cfg.factor, d = cfg.dim;
  auto y = random_tensor(Shape{bsz, ls, d}, 1), dy = random_tensor(Shape{bsz, ls, d}, 0);
  auto res = random_tensor(Shape{bsz, len, d}, 3), dres = random_tensor(Shape{bsz, len, d}, 0);
  auto r = random_tensor(Shape{bsz, len, d}, 2);
  Tensor<double, cpu> u(Shape{bsz, len, d});
  std::size_t plan = m.forward_workspace(bsz, len) + m.backward_workspace(bsz, len);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, y.cview(), res.cview(), u.view(), a);
    return dot(u.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, y.cview(), res.cview(), u.view(), a);
    CHECK(a.used() == m.forward_workspace(bsz, len));
    m.backward(ctx, s, r.cview(), dy.view(), dres.view(), a);
    CHECK(a.high_water() == plan);
  };
  GradCheck gc(ps);
  gc.input("y", y.view(), dy.view());
  if (kUsesResidual) gc.input("res", res.view(), dres.view());
  gc.run(loss, grads);
}

}  // namespace hseq::test
