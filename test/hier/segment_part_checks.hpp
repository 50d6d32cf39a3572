// SPDX-License-Identifier: MIT
/// @file
/// @brief Shared checks of the segment-model parts (hier/ encoders, backbones, decoders of
/// models::Hierarchical): finite-difference gradients, which output rows an input row reaches, and
/// cached steps against the full forward. Each part's test file calls them for its module.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/hier/part_config.hpp"
#include "support/gradcheck.hpp"

namespace hseq::test {

/// Gradcheck of a one-input module (encoder: x [B, N K, d] -> e [B, N, d]; backbone: e -> s):
/// L = <out, r>; the input and every parameter; the workspace plans hold.
template <class M>
void gradcheck_unary(hier::PartConfig c, Shape in, Shape out) {
  cpu::Context ctx;
  M m(c);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, 4, 0.4);
  auto x = random_tensor(in, 1), dx = random_tensor(in, 0), r = random_tensor(out, 2);
  Tensor<double, cpu> y(out);
  std::int64_t len = in[1];
  std::size_t plan = m.forward_workspace(in[0], len) + m.backward_workspace(in[0], len);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    CHECK(a.used() == m.forward_workspace(in[0], len));
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() <= plan);
  };
  GradcheckOptions opt;
  opt.max_per_tensor = 24;
  GradCheck(ps, opt).input("x", x.view(), dx.view()).run(loss, grads);
}

/// Gradcheck of a decoder: cond [B, N, d], x [B, N K, d] -> y [B, N K, d]; both inputs.
template <class M>
void gradcheck_decoder(hier::PartConfig c, std::int64_t bsz, std::int64_t n) {
  cpu::Context ctx;
  M m(c);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, 4, 0.4);
  std::int64_t len = n * c.segment;
  Shape cs{bsz, n, c.dim}, xs{bsz, len, c.dim};
  auto cond = random_tensor(cs, 1), dcond = random_tensor(cs, 0), x = random_tensor(xs, 3), dx = random_tensor(xs, 0);
  auto r = random_tensor(xs, 2);
  Tensor<double, cpu> y(xs);
  std::size_t plan = m.forward_workspace(bsz, len) + m.backward_workspace(bsz, len);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, cond.cview(), x.cview(), y.view(), a);
    return dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, cond.cview(), x.cview(), y.view(), a);
    CHECK(a.used() == m.forward_workspace(bsz, len));
    m.backward(ctx, s, r.cview(), dcond.view(), dx.view(), a);
    CHECK(a.high_water() <= plan);
  };
  GradcheckOptions opt;
  opt.max_per_tensor = 24;
  GradCheck(ps, opt).input("cond", cond.view(), dcond.view()).input("x", x.view(), dx.view()).run(loss, grads);
}

/// 'x' for each row of [B, rows, d] (batch 0) that differs between a and b, '.' where bit-identical.
inline std::string moved_rows(Tensor<float, cpu> const& a, Tensor<float, cpu> const& b) {
  std::int64_t rows = a.shape()[1], d = a.shape()[2];
  std::string s;
  for (std::int64_t i = 0; i < rows; ++i) {
    bool moved = false;
    for (std::int64_t c = 0; c < d; ++c) moved = moved || a.data()[i * d + c] != b.data()[i * d + c];
    s += moved ? 'x' : '.';
  }
  return s;
}

/// Runs a one-input module on x and on x with row p of batch 0 changed: the moved output rows.
template <class M>
std::string unary_moved(M const& m, Shape in, Shape out, std::int64_t p) {
  cpu::Context ctx;
  Workspace<cpu> ws(m.forward_workspace(in[0], in[1]));
  auto x = random_tensor<float>(in, 1);
  Tensor<float, cpu> y0(out), y1(out);
  {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y0.view(), a);
  }
  // Not a constant shift of the row: a LayerNorm would remove that.
  for (std::int64_t c = 0; c < in[2]; ++c) x.data()[p * in[2] + c] += c % 2 == 0 ? 0.5f : -0.3f;
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y1.view(), a);
  return moved_rows(y0, y1);
}

/// Backbone: the cached steps equal the full forward (twice: step 0 restarts the state).
template <class M>
void backbone_steps_match(hier::PartConfig c, std::int64_t bsz, std::int64_t n) {
  cpu::Context ctx;
  M m(c);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, 6, 0.4);
  Shape sh{bsz, n, c.dim};
  auto e = random_tensor(sh, 1);
  Tensor<double, cpu> s(sh);
  Workspace<cpu> ws(m.forward_workspace(bsz, n));
  auto a = ws.arena();
  m.forward(ctx, e.cview(), s.view(), a);
  auto st = m.make_step_state(bsz, n);
  std::size_t plan = m.step_workspace(bsz, n);
  Workspace<cpu> sws(plan);
  for (int round = 0; round < 2; ++round) {
    double worst = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      Tensor<double, cpu> ej(Shape{bsz, 1, c.dim}), sj(Shape{bsz, 1, c.dim});
      for (std::int64_t b = 0; b < bsz; ++b)
        std::copy_n(e.data() + (b * n + j) * c.dim, c.dim, ej.data() + b * c.dim);
      auto sa = sws.arena();
      m.step(ctx, st, ej.cview(), j, sj.view(), sa);
      CHECK(sa.high_water() <= plan);
      for (std::int64_t b = 0; b < bsz; ++b)
        for (std::int64_t k = 0; k < c.dim; ++k)
          worst = std::max(worst, std::abs(sj.data()[b * c.dim + k] - s.data()[(b * n + j) * c.dim + k]));
    }
    CHECK(worst < 1e-12);
  }
}

/// Decoder: which rows of y [1, N K, d] move when x row p (or cond row i, when `cond_row`) changes.
template <class M>
std::string decoder_moved(M const& m, hier::PartConfig c, std::int64_t n, std::int64_t row, bool cond_row) {
  cpu::Context ctx;
  std::int64_t len = n * c.segment, d = c.dim;
  Workspace<cpu> ws(m.forward_workspace(1, len));
  auto cond = random_tensor<float>(Shape{1, n, d}, 1), x = random_tensor<float>(Shape{1, len, d}, 2);
  Tensor<float, cpu> y0(Shape{1, len, d}), y1(Shape{1, len, d});
  {
    auto a = ws.arena();
    m.forward(ctx, cond.cview(), x.cview(), y0.view(), a);
  }
  auto& t = cond_row ? cond : x;
  for (std::int64_t k = 0; k < d; ++k) t.data()[row * d + k] += k % 2 == 0 ? 0.5f : -0.3f;  // not a constant shift
  auto a = ws.arena();
  m.forward(ctx, cond.cview(), x.cview(), y1.view(), a);
  return moved_rows(y0, y1);
}

/// Decoder: step_begin + step per byte equal the full forward, over several segments.
template <class M>
void decoder_steps_match(hier::PartConfig c, std::int64_t bsz, std::int64_t n) {
  cpu::Context ctx;
  M m(c);
  nn::ParamStore<cpu, double> ps(m);
  randomize_params(ps, 6, 0.4);
  std::int64_t k = c.segment, len = n * k, d = c.dim;
  auto cond = random_tensor(Shape{bsz, n, d}, 1), x = random_tensor(Shape{bsz, len, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, len, d});
  Workspace<cpu> ws(m.forward_workspace(bsz, len));
  auto a = ws.arena();
  m.forward(ctx, cond.cview(), x.cview(), y.view(), a);
  auto st = m.make_step_state(bsz);
  std::size_t plan = m.step_workspace(bsz);
  Workspace<cpu> sws(plan);
  double worst = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    Tensor<double, cpu> ci(Shape{bsz, 1, d});
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(cond.data() + (b * n + i) * d, d, ci.data() + b * d);
    auto sa = sws.arena();
    m.step_begin(ctx, st, ci.cview(), sa);
    for (std::int64_t r = 0; r < k; ++r) {
      std::int64_t p = i * k + r;
      Tensor<double, cpu> xp(Shape{bsz, 1, d}), yp(Shape{bsz, 1, d});
      for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(x.data() + (b * len + p) * d, d, xp.data() + b * d);
      auto sb = sws.arena();
      m.step(ctx, st, xp.cview(), r, yp.view(), sb);
      CHECK(sb.high_water() <= plan);
      for (std::int64_t b = 0; b < bsz; ++b)
        for (std::int64_t q = 0; q < d; ++q)
          worst = std::max(worst, std::abs(yp.data()[b * d + q] - y.data()[(b * len + p) * d + q]));
    }
  }
  CHECK(worst < 1e-12);
}

/// The expected pattern of a decoder: segment i's rows from row p on (x row p), or all of segment i.
inline std::string segment_pattern(std::int64_t len, std::int64_t k, std::int64_t first, std::int64_t seg) {
  std::string s;
  for (std::int64_t q = 0; q < len; ++q) s += q / k == seg && q >= first ? 'x' : '.';
  return s;
}

}  // namespace hseq::test
