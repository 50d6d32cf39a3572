// SPDX-License-Identifier: MIT
/// @file
/// @brief `Gru`: a single-layer GRU over a batch-first sequence (PyTorch `nn.GRU(batch_first=True)`
/// parameter names and gate order r, z, n), with the initial state in and the final state out,
/// and gradients for both. Optional per-sequence lengths [B] (int32, host memory) for ragged
/// batches: for t >= len[b] sequence b's state is carried unchanged (h_final[b] = h_len[b]) and its
/// output rows y[b, t] are zero; backward matches (no gradient reaches or leaves padded steps, dx
/// rows there are zero). Padded inputs must be finite (they still pass through the gates).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/rnn_cell.hpp"

namespace hseq::nn {

template <Backend B, class T>
class Gru {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using CMat = ops::Mat<T const, Space>;
  using MMat = ops::Mat<T, Space>;

  struct Config {
    std::int64_t input = 0, hidden = 0;
    bool bias = true;
  };
  struct Saved {
    CView x;      // [B, T, input]
    MView xp;     // [B, T, 3H]   x W_ih^T + b_ih
    MView hs;     // [T + 1, B, H] states, time-major; hs[0] = h0
    MView gates;  // [T, B, 4H]   r, z, n, gh_n per step
    MView gh;     // [B, 3H]      per-step hidden projection (scratch kept with the saved block)
    std::vector<std::int32_t> lengths;  // [B] valid steps per sequence; empty: all T
  };

  explicit Gru(Config c) : cfg_(c) {
    HSEQ_CHECK(c.input > 0 && c.hidden > 0, "Gru: sizes must be positive, got input " << c.input << ", hidden " << c.hidden);
    double k = 1.0 / std::sqrt(double(c.hidden));  // PyTorch's U(-1/sqrt(H), 1/sqrt(H))
    w_ih_ = Param<T, Space>(Shape{3 * c.hidden, c.input}, InitSpec::uniform(k));
    w_hh_ = Param<T, Space>(Shape{3 * c.hidden, c.hidden}, InitSpec::uniform(k));
    if (c.bias) {
      b_ih_ = Param<T, Space>(Shape{3 * c.hidden}, InitSpec::uniform(k), false);
      b_hh_ = Param<T, Space>(Shape{3 * c.hidden}, InitSpec::uniform(k), false);
    }
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    f(prefix + "weight_ih", w_ih_);
    f(prefix + "weight_hh", w_hh_);
    if (cfg_.bias) {
      f(prefix + "bias_ih", b_ih_);
      f(prefix + "bias_hh", b_hh_);
    }
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    return measure_workspace<Space>([&](Arena<Space>& a) { carve(a, batch, t); });
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t h = cfg_.hidden;
    return aligned_bytes<T>(batch * t * 3 * h) * 2 + aligned_bytes<T>(batch * h) * 3;
  }

  /// y[B, T, H] = GRU(x[B, T, input]) from h0[B, H] (empty: zeros); h_final[B, H] (may be empty).
  /// `lengths` [B] (host, each in [0, T]; empty: all T): ragged sequences, see the file comment.
  Saved forward(Ctx& ctx, CView x, CView h0, MView y, MView h_final, Arena<Space>& ws,
                std::span<std::int32_t const> lengths = {}) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.input, "Gru(input " << cfg_.input << "): x " << x.shape
                                                                      << " is not [B, T, input]");
    std::int64_t bsz = x.size(0), t = x.size(1), h = cfg_.hidden;
    check_shape(y, Shape{bsz, t, h}, "Gru: y");
    if (!h0.empty()) check_shape(h0, Shape{bsz, h}, "Gru: h0");
    if (!h_final.empty()) check_shape(h_final, Shape{bsz, h}, "Gru: h_final");
    ops::check_lengths(lengths, bsz, t, "Gru");
    Saved s = carve(ws, bsz, t);
    s.x = x;
    s.lengths.assign(lengths.begin(), lengths.end());
    // All input projections in one GEMM: xp = x W_ih^T + b_ih.
    ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(x), ops::Trans::kYes, ops::as_mat(CView(w_ih_.value)),
                 ops::as_mat(s.xp));
    if (cfg_.bias) ops::add_bias<T>(ctx, s.xp, b_ih_.value);
    if (h0.empty()) ops::fill<T>(ctx, s.hs(0), T(0));
    else ops::copy<T>(ctx, h0, s.hs(0));
    for (std::int64_t i = 0; i < t; ++i) {
      CMat h_prev = ops::as_mat(CView(s.hs(i)));
      ops::gemm<T>(ctx, ops::Trans::kNo, h_prev, ops::Trans::kYes, ops::as_mat(CView(w_hh_.value)), ops::as_mat(s.gh));
      if (cfg_.bias) ops::add_bias<T>(ctx, s.gh, b_hh_.value);
      ops::gru_cell_forward<T>(ctx, step(s.xp, i), ops::as_mat(CView(s.gh)), h_prev, ops::as_mat(s.gates(i)),
                               ops::as_mat(s.hs(i + 1)));
      ops::copy_mat<T>(ctx, ops::as_mat(CView(s.hs(i + 1))), step(y, i));
      if (ops::any_finished(lengths, i)) {  // finished sequences: state carried, output zero
        ops::copy_finished_rows<T>(ctx, lengths, i, h_prev, ops::as_mat(s.hs(i + 1)));
        ops::zero_finished_rows<T>(ctx, lengths, i, step(y, i));
      }
    }
    if (!h_final.empty()) ops::copy<T>(ctx, s.hs(t), h_final);
    return s;
  }

  /// dy[B, T, H] (may be empty: only the final state matters), dh_final[B, H] (may be empty).
  /// Overwrites dx[B, T, input] and dh0[B, H] (either may be empty); accumulates parameter grads.
  void backward(Ctx& ctx, Saved const& s, CView dy, CView dh_final, MView dx, MView dh0, Arena<Space>& ws) const {
    std::int64_t bsz = s.x.size(0), t = s.x.size(1), h = cfg_.hidden;
    if (!dy.empty()) check_shape(dy, Shape{bsz, t, h}, "Gru::backward: dy");
    if (!dh_final.empty()) check_shape(dh_final, Shape{bsz, h}, "Gru::backward: dh_final");
    ArenaScope<Space> scope(ws);
    MView dxp = ws.template take<T>(Shape{bsz, t, 3 * h}, "gru.dxp");   // batch-first, like xp
    MView dgh = ws.template take<T>(Shape{t, bsz, 3 * h}, "gru.dgh");   // time-major, like hs
    MView dh = ws.template take<T>(Shape{bsz, h}, "gru.dh");
    MView dcarry = ws.template take<T>(Shape{bsz, h}, "gru.dcarry");
    MView dprev = ws.template take<T>(Shape{bsz, h}, "gru.dprev");
    if (dh_final.empty()) ops::fill<T>(ctx, dcarry, T(0));
    else ops::copy<T>(ctx, dh_final, dcarry);
    for (std::int64_t i = t - 1; i >= 0; --i) {
      // dh = dy[:, i] + gradient carried from step i + 1
      ops::copy<T>(ctx, dcarry, dh);
      if (!dy.empty()) ops::add_mat<T>(ctx, step(dy, i), ops::as_mat(dh));
      bool const ragged = ops::any_finished(s.lengths, i);
      if (ragged) ops::zero_finished_rows<T>(ctx, s.lengths, i, ops::as_mat(dh));  // no gradient enters the step
      ops::gru_cell_backward<T>(ctx, ops::as_mat(CView(dh)), ops::as_mat(CView(s.hs(i))), ops::as_mat(CView(s.gates(i))),
                                step(dxp, i), ops::as_mat(dgh(i)), ops::as_mat(dprev));
      // dh_prev = dh ⊙ z + dgh W_hh
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(CView(dgh(i))), ops::Trans::kNo, ops::as_mat(CView(w_hh_.value)),
                   ops::as_mat(dprev), T(1), T(1));
      // finished sequences: h_{i+1} = h_i, so the carried gradient passes through unchanged
      if (ragged) ops::copy_finished_rows<T>(ctx, s.lengths, i, ops::as_mat(CView(dcarry)), ops::as_mat(dprev));
      std::swap(dcarry, dprev);
    }
    if (!dh0.empty()) {
      check_shape(dh0, Shape{bsz, h}, "Gru::backward: dh0");
      ops::copy<T>(ctx, dcarry, dh0);
    }
    // Parameter gradients with one GEMM each over all steps (frozen parameters get none; the input
    // and state gradients above do not depend on them).
    CView hs_prev = CView(s.hs.slice(0, t));  // [T, B, H]
    if (!w_hh_.frozen)
      ops::gemm<T>(ctx, ops::Trans::kYes, ops::as_mat(CView(dgh)), ops::Trans::kNo, ops::as_mat(hs_prev),
                   ops::as_mat(w_hh_.grad), T(1), T(1));
    if (!w_ih_.frozen)
      ops::gemm<T>(ctx, ops::Trans::kYes, ops::as_mat(CView(dxp)), ops::Trans::kNo, ops::as_mat(s.x),
                   ops::as_mat(w_ih_.grad), T(1), T(1));
    if (cfg_.bias) {
      if (!b_hh_.frozen) ops::bias_grad<T>(ctx, dgh, b_hh_.grad);
      if (!b_ih_.frozen) ops::bias_grad<T>(ctx, dxp, b_ih_.grad);
    }
    if (!dx.empty()) {
      check_shape(dx, s.x.shape, "Gru::backward: dx");
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(CView(dxp)), ops::Trans::kNo, ops::as_mat(CView(w_ih_.value)),
                   ops::as_mat(dx));
    }
  }

 private:
  /// Time step i of a batch-first [B, T, C] buffer as a [B, C] matrix with row stride T*C.
  template <class U>
  static ops::Mat<U, Space> step(View<U, Space> v, std::int64_t i) {
    std::int64_t tt = v.size(1), c = v.size(2);
    return ops::Mat<U, Space>(v.data + i * c, v.size(0), c, tt * c);
  }
  Saved carve(Arena<Space>& a, std::int64_t bsz, std::int64_t t) const {
    std::int64_t h = cfg_.hidden;
    Saved s;
    s.xp = a.template take<T>(Shape{bsz, t, 3 * h}, "gru.xp");
    s.hs = a.template take<T>(Shape{t + 1, bsz, h}, "gru.hs");
    s.gates = a.template take<T>(Shape{t, bsz, 4 * h}, "gru.gates");
    s.gh = a.template take<T>(Shape{bsz, 3 * h}, "gru.gh");
    return s;
  }

  Config cfg_;
  Param<T, Space> w_ih_, w_hh_, b_ih_, b_hh_;
};

}  // namespace hseq::nn
