// SPDX-License-Identifier: MIT
/// @file
/// @brief `Lstm`: a single-layer LSTM over a batch-first sequence (PyTorch `nn.LSTM(batch_first=True)`
/// parameter names and gate order i, f, g, o), with initial (h0, c0) in and final (h, c) out, and
/// gradients for all of them. Optional per-sequence lengths [B] (int32, host memory) for ragged
/// batches: for t >= len[b] sequence b's (h, c) is carried unchanged (the final state is the one
/// after len[b] steps) and its output rows y[b, t] are zero; backward matches (no gradient reaches
/// or leaves padded steps, dx rows there are zero). Padded inputs must be finite.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/rnn_cell.hpp"

namespace hseq::nn {

template <Backend B, class T>
class Lstm {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t input = 0, hidden = 0;
    bool bias = true;
  };
  /// Recurrent state of a batch: h and c, each [B, H]. Empty views mean zeros / not needed.
  struct State {
    CView h, c;
  };
  struct MutState {
    MView h, c;
  };
  struct Saved {
    CView x;     // [B, T, input]
    MView xp;    // [B, T, 4H]    x W_ih^T + b_ih
    MView hs;    // [T + 1, B, H] time-major hidden states; hs[0] = h0
    MView cs;    // [T + 1, B, H] time-major cell states;   cs[0] = c0
    MView acts;  // [T, B, 4H]    activated gates i, f, g, o
    MView gh;    // [B, 4H]       per-step hidden projection
    std::vector<std::int32_t> lengths;  // [B] valid steps per sequence; empty: all T
  };

  explicit Lstm(Config c) : cfg_(c) {
    HSEQ_CHECK(c.input > 0 && c.hidden > 0, "Lstm: sizes must be positive, got input " << c.input << ", hidden " << c.hidden);
    double k = 1.0 / std::sqrt(double(c.hidden));
    w_ih_ = Param<T, Space>(Shape{4 * c.hidden, c.input}, InitSpec::uniform(k));
    w_hh_ = Param<T, Space>(Shape{4 * c.hidden, c.hidden}, InitSpec::uniform(k));
    if (c.bias) {
      b_ih_ = Param<T, Space>(Shape{4 * c.hidden}, InitSpec::uniform(k), false);
      b_hh_ = Param<T, Space>(Shape{4 * c.hidden}, InitSpec::uniform(k), false);
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
    return aligned_bytes<T>(batch * t * 4 * h) * 2 + aligned_bytes<T>(batch * h) * 5;
  }

  /// y[B, T, H] = LSTM(x[B, T, input]) from `init` (empty views: zeros); writes `final` if non-empty.
  /// `lengths` [B] (host, each in [0, T]; empty: all T): ragged sequences, see the file comment.
  Saved forward(Ctx& ctx, CView x, State init, MView y, MutState final_state, Arena<Space>& ws,
                std::span<std::int32_t const> lengths = {}) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.input, "Lstm(input " << cfg_.input << "): x " << x.shape
                                                                       << " is not [B, T, input]");
    std::int64_t bsz = x.size(0), t = x.size(1), h = cfg_.hidden;
    check_shape(y, Shape{bsz, t, h}, "Lstm: y");
    ops::check_lengths(lengths, bsz, t, "Lstm");
    Saved s = carve(ws, bsz, t);
    s.x = x;
    s.lengths.assign(lengths.begin(), lengths.end());
    ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(x), ops::Trans::kYes, ops::as_mat(CView(w_ih_.value)),
                 ops::as_mat(s.xp));
    if (cfg_.bias) ops::add_bias<T>(ctx, s.xp, b_ih_.value);
    load_state(ctx, init.h, s.hs(0), "Lstm: h0");
    load_state(ctx, init.c, s.cs(0), "Lstm: c0");
    for (std::int64_t i = 0; i < t; ++i) {
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(CView(s.hs(i))), ops::Trans::kYes, ops::as_mat(CView(w_hh_.value)),
                   ops::as_mat(s.gh));
      if (cfg_.bias) ops::add_bias<T>(ctx, s.gh, b_hh_.value);
      ops::lstm_cell_forward<T>(ctx, step(CView(s.xp), i), ops::as_mat(CView(s.gh)), ops::as_mat(CView(s.cs(i))),
                                ops::as_mat(s.acts(i)), ops::as_mat(s.cs(i + 1)), ops::as_mat(s.hs(i + 1)));
      ops::copy_mat<T>(ctx, ops::as_mat(CView(s.hs(i + 1))), step(y, i));
      if (ops::any_finished(lengths, i)) {  // finished sequences: (h, c) carried, output zero
        ops::copy_finished_rows<T>(ctx, lengths, i, ops::as_mat(CView(s.hs(i))), ops::as_mat(s.hs(i + 1)));
        ops::copy_finished_rows<T>(ctx, lengths, i, ops::as_mat(CView(s.cs(i))), ops::as_mat(s.cs(i + 1)));
        ops::zero_finished_rows<T>(ctx, lengths, i, step(y, i));
      }
    }
    store_state(ctx, s.hs(t), final_state.h, "Lstm: final h");
    store_state(ctx, s.cs(t), final_state.c, "Lstm: final c");
    return s;
  }

  /// dy[B, T, H] and the final-state gradients (any may be empty). Overwrites dx and the initial-state
  /// gradients (any may be empty); accumulates parameter gradients.
  void backward(Ctx& ctx, Saved const& s, CView dy, State dfinal, MView dx, MutState dinit, Arena<Space>& ws) const {
    std::int64_t bsz = s.x.size(0), t = s.x.size(1), h = cfg_.hidden;
    if (!dy.empty()) check_shape(dy, Shape{bsz, t, h}, "Lstm::backward: dy");
    ArenaScope<Space> scope(ws);
    MView dxp = ws.template take<T>(Shape{bsz, t, 4 * h}, "lstm.dxp");  // batch-first
    MView dg = ws.template take<T>(Shape{t, bsz, 4 * h}, "lstm.dg");    // time-major
    MView dh = ws.template take<T>(Shape{bsz, h}, "lstm.dh");
    MView dh_carry = ws.template take<T>(Shape{bsz, h}, "lstm.dh_carry");
    MView dh_prev = ws.template take<T>(Shape{bsz, h}, "lstm.dh_prev");
    MView dc_carry = ws.template take<T>(Shape{bsz, h}, "lstm.dc_carry");
    MView dc_prev = ws.template take<T>(Shape{bsz, h}, "lstm.dc_prev");
    load_state(ctx, dfinal.h, dh_carry, "Lstm::backward: dh_final");
    load_state(ctx, dfinal.c, dc_carry, "Lstm::backward: dc_final");
    for (std::int64_t i = t - 1; i >= 0; --i) {
      ops::copy<T>(ctx, dh_carry, dh);
      if (!dy.empty()) ops::add_mat<T>(ctx, step(dy, i), ops::as_mat(dh));
      bool const ragged = ops::any_finished(s.lengths, i);
      if (ragged) {  // finished sequences: no gradient enters the step; stash their carried dc in dh_prev
        ops::zero_finished_rows<T>(ctx, s.lengths, i, ops::as_mat(dh));
        ops::copy_finished_rows<T>(ctx, s.lengths, i, ops::as_mat(CView(dc_carry)), ops::as_mat(dh_prev));
        ops::zero_finished_rows<T>(ctx, s.lengths, i, ops::as_mat(dc_carry));
      }
      ops::lstm_cell_backward<T>(ctx, ops::as_mat(CView(dh)), ops::as_mat(CView(dc_carry)), ops::as_mat(CView(s.cs(i))),
                                 ops::as_mat(CView(s.cs(i + 1))), ops::as_mat(CView(s.acts(i))), ops::as_mat(dg(i)),
                                 ops::as_mat(dc_prev));
      ops::copy_mat<T>(ctx, ops::as_mat(CView(dg(i))), step(dxp, i));
      if (ragged) ops::copy_finished_rows<T>(ctx, s.lengths, i, ops::as_mat(CView(dh_prev)), ops::as_mat(dc_prev));
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(CView(dg(i))), ops::Trans::kNo, ops::as_mat(CView(w_hh_.value)),
                   ops::as_mat(dh_prev));
      // (h, c)_{i+1} = (h, c)_i there, so the carried gradients pass through unchanged
      if (ragged) ops::copy_finished_rows<T>(ctx, s.lengths, i, ops::as_mat(CView(dh_carry)), ops::as_mat(dh_prev));
      std::swap(dh_carry, dh_prev);
      std::swap(dc_carry, dc_prev);
    }
    store_state(ctx, dh_carry, dinit.h, "Lstm::backward: dh0");
    store_state(ctx, dc_carry, dinit.c, "Lstm::backward: dc0");
    // Parameter gradients (frozen parameters get none; the input and state gradients above do not
    // depend on them).
    if (!w_hh_.frozen)
      ops::gemm<T>(ctx, ops::Trans::kYes, ops::as_mat(CView(dg)), ops::Trans::kNo,
                   ops::as_mat(CView(s.hs.slice(0, t))), ops::as_mat(w_hh_.grad), T(1), T(1));
    if (!w_ih_.frozen)
      ops::gemm<T>(ctx, ops::Trans::kYes, ops::as_mat(CView(dxp)), ops::Trans::kNo, ops::as_mat(s.x),
                   ops::as_mat(w_ih_.grad), T(1), T(1));
    if (cfg_.bias) {
      if (!b_hh_.frozen) ops::bias_grad<T>(ctx, dg, b_hh_.grad);
      if (!b_ih_.frozen) ops::bias_grad<T>(ctx, dxp, b_ih_.grad);
    }
    if (!dx.empty()) {
      check_shape(dx, s.x.shape, "Lstm::backward: dx");
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(CView(dxp)), ops::Trans::kNo, ops::as_mat(CView(w_ih_.value)),
                   ops::as_mat(dx));
    }
  }

 private:
  template <class U>
  static ops::Mat<U, Space> step(View<U, Space> v, std::int64_t i) {
    std::int64_t tt = v.size(1), c = v.size(2);
    return ops::Mat<U, Space>(v.data + i * c, v.size(0), c, tt * c);
  }
  static void load_state(Ctx& ctx, CView src, MView dst, char const* what) {
    if (src.empty()) {
      ops::fill<T>(ctx, dst, T(0));
    } else {
      check_shape(src, dst.shape, what);
      ops::copy<T>(ctx, src, dst);
    }
  }
  static void store_state(Ctx& ctx, CView src, MView dst, char const* what) {
    if (dst.empty()) return;
    check_shape(dst, src.shape, what);
    ops::copy<T>(ctx, src, dst);
  }
  Saved carve(Arena<Space>& a, std::int64_t bsz, std::int64_t t) const {
    std::int64_t h = cfg_.hidden;
    Saved s;
    s.xp = a.template take<T>(Shape{bsz, t, 4 * h}, "lstm.xp");
    s.hs = a.template take<T>(Shape{t + 1, bsz, h}, "lstm.hs");
    s.cs = a.template take<T>(Shape{t + 1, bsz, h}, "lstm.cs");
    s.acts = a.template take<T>(Shape{t, bsz, 4 * h}, "lstm.acts");
    s.gh = a.template take<T>(Shape{bsz, 4 * h}, "lstm.gh");
    return s;
  }

  Config cfg_;
  Param<T, Space> w_ih_, w_hh_, b_ih_, b_hh_;
};

}  // namespace hseq::nn
