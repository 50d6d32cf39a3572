// SPDX-License-Identifier: MIT
// Shared checks for shortening and upsampling modules (test support, not a test file): gradients
// against finite differences, and cached generation (the step_* functions) against the forward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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

/// A batch of data-dependent segments for the ragged checks (hier/ragged_policy.hpp): row b of
/// `len` positions closes segments at emits[b] (within the row, increasing, the first at 0); the
/// batch runs over C = the largest count, a row's padding segments repeating its last end.
struct RaggedLayout {
  std::int64_t bsz = 0, len = 0, c = 0;
  std::vector<std::vector<std::int64_t>> emits;
  Tensor<std::int32_t, cpu> pool, up;  // [B * C] global rows b L + e_{b, j}; [B * L] rows b C + J(b, t)
  std::int64_t segment_of(std::int64_t b, std::int64_t t) const {  // J(b, t)
    std::int64_t j = 0;
    while (j + 1 < std::int64_t(emits[std::size_t(b)].size()) && emits[std::size_t(b)][std::size_t(j + 1)] <= t) ++j;
    return j;
  }
};
inline RaggedLayout ragged_layout(std::vector<std::vector<std::int64_t>> emits, std::int64_t len) {
  RaggedLayout l;
  l.bsz = std::int64_t(emits.size());
  l.len = len;
  for (auto const& e : emits) l.c = std::max(l.c, std::int64_t(e.size()));
  l.emits = std::move(emits);
  l.pool = Tensor<std::int32_t, cpu>(Shape{l.bsz * l.c});
  l.up = Tensor<std::int32_t, cpu>(Shape{l.bsz * len});
  for (std::int64_t b = 0; b < l.bsz; ++b) {
    auto const& e = l.emits[std::size_t(b)];
    for (std::int64_t j = 0; j < l.c; ++j)
      l.pool.data()[b * l.c + j] = std::int32_t(b * len + e[std::size_t(std::min<std::int64_t>(j, std::int64_t(e.size()) - 1))]);
    for (std::int64_t t = 0; t < len; ++t) l.up.data()[b * len + t] = std::int32_t(b * l.c + l.segment_of(b, t));
  }
  return l;
}

/// Over segments: a shortening module's gradients (input and every parameter) through
/// ragged_forward / ragged_backward with their workspace plans, and its cached steps
/// (ragged_step_input at every position of a row, ragged_step_emit at its emits) against the
/// forward's real segments. Returns the steps' largest |difference|.
template <class M>
double check_ragged_shorten(hier::ResampleConfig cfg, RaggedLayout const& l, std::uint64_t seed) {
  cpu::Context ctx;
  M m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, seed, 0.4);
  std::int64_t const d = cfg.dim, bsz = l.bsz, len = l.len, c = l.c;
  auto x = random_tensor(Shape{bsz, len, d}, seed + 1), dx = random_tensor(Shape{bsz, len, d}, 0);
  auto r = random_tensor(Shape{bsz, c, d}, seed + 2);
  Tensor<double, cpu> y(Shape{bsz, c, d});
  std::size_t plan = m.ragged_forward_workspace(bsz, len, c) + m.ragged_backward_workspace(bsz, len, c);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.ragged_forward(ctx, x.cview(), l.pool.cview(), y.view(), a);
    return dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.ragged_forward(ctx, x.cview(), l.pool.cview(), y.view(), a);
    CHECK(a.used() <= m.ragged_forward_workspace(bsz, len, c));
    m.ragged_backward(ctx, s, l.pool.cview(), r.cview(), dx.view(), a);
    CHECK(a.high_water() <= plan);
  };
  GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
  loss();
  auto st = m.make_step_state(bsz, len);
  Workspace<cpu> sws(m.step_workspace(bsz, len));
  Tensor<double, cpu> yj(Shape{1, 1, d});
  double worst = 0;
  for (int round = 0; round < 2; ++round)  // (round 1: the same state again, from position 0)
    for (std::int64_t b = bsz - 1; b >= 0; --b) {
      std::size_t j = 0;
      for (std::int64_t t = 0; t < len; ++t) {
        auto a = sws.arena();
        View<double const, HostSpace> xt(x.data() + (b * len + t) * d, Shape{1, 1, d});
        m.ragged_step_input(ctx, st, b, xt, t, a);
        auto const& e = l.emits[std::size_t(b)];
        if (j < e.size() && e[j] == t) {
          m.ragged_step_emit(ctx, st, b, xt, yj.view(), a);
          for (std::int64_t k = 0; k < d; ++k)
            worst = std::max(worst, std::abs(yj.data()[k] - y.data()[(b * c + std::int64_t(j)) * d + k]));
          ++j;
        }
      }
    }
  return worst;
}

/// Over segments: an upsampling module's gradients (y, the residual when it reads one, every
/// parameter) through ragged_forward / ragged_backward, and its cached steps (ragged_step_short at
/// a row's emits, then ragged_step_up at every position) against the forward. Returns the steps'
/// largest |difference|.
template <class M, bool kUsesResidual>
double check_ragged_upsample(hier::ResampleConfig cfg, RaggedLayout const& l, std::uint64_t seed) {
  cpu::Context ctx;
  M m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, seed, 0.4);
  std::int64_t const d = cfg.dim, bsz = l.bsz, len = l.len, c = l.c;
  auto y = random_tensor(Shape{bsz, c, d}, seed + 1), dy = random_tensor(Shape{bsz, c, d}, 0);
  auto res = random_tensor(Shape{bsz, len, d}, seed + 2), dres = random_tensor(Shape{bsz, len, d}, 0);
  auto r = random_tensor(Shape{bsz, len, d}, seed + 3);
  Tensor<double, cpu> u(Shape{bsz, len, d});
  std::size_t plan = m.ragged_forward_workspace(bsz, len, c) + m.ragged_backward_workspace(bsz, len, c);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.ragged_forward(ctx, y.cview(), res.cview(), l.up.cview(), u.view(), a);
    return dot(u.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.ragged_forward(ctx, y.cview(), res.cview(), l.up.cview(), u.view(), a);
    CHECK(a.used() <= m.ragged_forward_workspace(bsz, len, c));
    m.ragged_backward(ctx, s, l.up.cview(), r.cview(), dy.view(), dres.view(), a);
    CHECK(a.high_water() <= plan);
  };
  GradCheck gc(ps);
  gc.input("y", y.view(), dy.view());
  if (kUsesResidual) gc.input("res", res.view(), dres.view());
  gc.run(loss, grads);
  loss();
  auto st = m.make_step_state(bsz, len);
  Workspace<cpu> sws(m.step_workspace(bsz, len));
  Tensor<double, cpu> ut(Shape{1, 1, d});
  double worst = 0;
  for (int round = 0; round < 2; ++round)
    for (std::int64_t b = bsz - 1; b >= 0; --b) {
      std::size_t j = 0;
      for (std::int64_t t = 0; t < len; ++t) {
        auto a = sws.arena();
        auto const& e = l.emits[std::size_t(b)];
        if (j < e.size() && e[j] == t) {
          m.ragged_step_short(ctx, st, b, View<double const, HostSpace>(y.data() + (b * c + std::int64_t(j)) * d, Shape{1, 1, d}),
                              std::int64_t(j), a);
          ++j;
        }
        m.ragged_step_up(ctx, st, b, View<double const, HostSpace>(res.data() + (b * len + t) * d, Shape{1, 1, d}),
                         ut.view(), a);
        for (std::int64_t k = 0; k < d; ++k)
          worst = std::max(worst, std::abs(ut.data()[k] - u.data()[(b * len + t) * d + k]));
      }
    }
  return worst;
}

}  // namespace hseq::test
