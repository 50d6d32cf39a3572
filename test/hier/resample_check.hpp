// SPDX-License-Identifier: MIT
// Shared checks for shortening and upsampling modules (test support, not a test file): gradients
// against finite differences, and cached generation (the step_* functions) against the forward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

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

/// Cached generation of a shortening module m (parameters set) against its forward, as the
/// Hourglass drives it (Hourglass::level_step): level inputs z [B, L, d] arrive one at a time
/// (step_input at level position p); at p = j k the window of short position j (z rows
/// p - k + 1 .. p, zeros before row 0: the shifted rows j k .. j k + k - 1) goes to step_pool. Returns
/// the largest |difference| between those rows and forward over z shifted right by k - 1 [B, L / k,
/// d]; the step scratch stays within step_workspace(bsz, len) (the arena throws past it).
template <class M>
double shorten_steps_vs_forward(M const& m, std::int64_t bsz, std::int64_t len, std::uint64_t seed) {
  cpu::Context ctx;
  std::int64_t const k = m.config().factor, d = m.config().dim, ls = len / k;
  auto z = random_tensor(Shape{bsz, len, d}, seed);
  Tensor<double, cpu> x(Shape{bsz, len, d}), y(Shape{bsz, ls, d});
  auto z_row = [&](std::int64_t b, std::int64_t q) { return z.data() + (b * len + q) * d; };  // q < 0: zeros
  for (std::int64_t b = 0; b < bsz; ++b)
    for (std::int64_t q = 0; q < len; ++q)
      for (std::int64_t c = 0; c < d; ++c) x.data()[(b * len + q) * d + c] = q >= k - 1 ? z_row(b, q - k + 1)[c] : 0.0;
  {
    Workspace<cpu> ws(m.forward_workspace(bsz, len));
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
  }
  auto st = m.make_step_state(bsz, len);
  Workspace<cpu> sws(m.step_workspace(bsz, len));
  Tensor<double, cpu> xp(Shape{bsz, 1, d}), window(Shape{bsz, k, d}), yj(Shape{bsz, 1, d});
  double worst = 0;
  for (std::int64_t p = 0; p < len; ++p) {
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(z_row(b, p), d, xp.data() + b * d);
    auto a = sws.arena();
    m.step_input(ctx, st, xp.cview(), p, a);
    if (p % k != 0 || p / k >= ls) continue;
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t s = 0; s < k; ++s)
        for (std::int64_t c = 0; c < d; ++c)
          window.data()[(b * k + s) * d + c] = p - k + 1 + s >= 0 ? z_row(b, p - k + 1 + s)[c] : 0.0;
    m.step_pool(ctx, st, window.cview(), p, yj.view(), a);
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t c = 0; c < d; ++c)
        worst = std::max(worst, std::abs(yj.data()[b * d + c] - y.data()[(b * ls + p / k) * d + c]));
  }
  return worst;
}

/// Cached generation of an upsampling module m (parameters set) against its forward, as the
/// Hourglass drives it: for each full-rate position p, step_short(y_j, j) first when p = j k, then
/// step_up(res_p, p). Returns the largest |difference| from forward(y [B, Ls, d], res [B, Ls k, d]);
/// the step scratch stays within step_workspace(bsz, L).
template <class M>
double upsample_steps_vs_forward(M const& m, std::int64_t bsz, std::int64_t ls, std::uint64_t seed) {
  cpu::Context ctx;
  std::int64_t const k = m.config().factor, d = m.config().dim, len = ls * k;
  auto y = random_tensor(Shape{bsz, ls, d}, seed), res = random_tensor(Shape{bsz, len, d}, seed + 1);
  Tensor<double, cpu> u(Shape{bsz, len, d});
  {
    Workspace<cpu> ws(m.forward_workspace(bsz, len));
    auto a = ws.arena();
    m.forward(ctx, y.cview(), res.cview(), u.view(), a);
  }
  auto st = m.make_step_state(bsz, len);
  Workspace<cpu> sws(m.step_workspace(bsz, len));
  Tensor<double, cpu> yj(Shape{bsz, 1, d}), rp(Shape{bsz, 1, d}), up(Shape{bsz, 1, d});
  double worst = 0;
  for (std::int64_t p = 0; p < len; ++p) {
    auto a = sws.arena();
    if (p % k == 0) {
      for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(y.data() + (b * ls + p / k) * d, d, yj.data() + b * d);
      m.step_short(ctx, st, yj.cview(), p / k, a);
    }
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(res.data() + (b * len + p) * d, d, rp.data() + b * d);
    m.step_up(ctx, st, rp.cview(), p, up.view(), a);
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t c = 0; c < d; ++c)
        worst = std::max(worst, std::abs(up.data()[b * d + c] - u.data()[(b * len + p) * d + c]));
  }
  return worst;
}

}  // namespace hseq::test
