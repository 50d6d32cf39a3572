// SPDX-License-Identifier: MIT
/// @file
/// @brief `RnnDecoder`: HRED's decoder (spec models.md §1.1) at byte rate: `layers` stacked GRU or
/// LSTM layers run over each segment separately, every layer's state initialised from the
/// segment's condition, and the condition also fed to the first layer at every step (Serban's
/// `decoder_bias_type='all'`, as an input concatenation):
///
///   u_{i,r}   = [x_{iK+r}; c_i]                              [B, N, K, 2d]
///   h^l_{i,-1} = W^l_0 c_i + b^l_0     (LSTM: cell state 0)  [B N, d]
///   y^0 = Cell_0(u) ... y^l = Cell_l(y^{l-1})                 [B N, K, d]      y = y^L  [B, N K, d]
///
/// Row iK + r reads c_i and bytes iK .. iK + r only. HRED applies tanh to the initial state;
/// hseq has no tanh op yet, so the initial state is linear (documented in docs/hred_haed.md).
/// Reads PartConfig's dim, segment, layers, cell and init_std (the initial-state projections).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/part_config.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/rnn.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::hier {

template <Backend B, class T>
class RnnDecoderModule {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = PartConfig;
  using Rnn = nn::Rnn<B, T>;
  using Linear = nn::Linear<B, T>;
  struct Saved {
    MView u;                  // [B N, K, 2d] first layer's input
    std::vector<MView> h0;    // per layer [B N, d] initial states
    std::vector<MView> outs;  // per layer [B N, K, d] (the last is the caller's y)
    std::vector<typename Linear::Saved> init;
    std::vector<typename Rnn::Saved> layers;
  };
  /// The current segment's condition [B, d] and every layer's state h (and LSTM c), each [B, d].
  struct StepState {
    Tensor<T, B> cond;
    std::vector<Tensor<T, B>> h, c;
  };

  explicit RnnDecoderModule(Config c) : cfg_(check_part(c, "RnnDecoder")) {
    for (std::int64_t l = 0; l < cfg_.layers; ++l) {
      init_.emplace_back(typename Linear::Config{cfg_.dim, cfg_.dim, true, cfg_.init_std});
      rnns_.emplace_back(typename Rnn::Config{cfg_.cell, l == 0 ? 2 * cfg_.dim : cfg_.dim, cfg_.dim, true});
    }
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    for (std::size_t l = 0; l < rnns_.size(); ++l) {
      std::string p = prefix + std::to_string(l) + ".";
      init_[l].visit_params(f, p + "init.");
      rnns_[l].visit_params(f, p + "rnn.");
    }
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t rows = batch * (len / cfg_.segment), k = cfg_.segment, d = cfg_.dim;
    std::size_t b = aligned_bytes<T>(rows * k * 2 * d) + std::size_t(cfg_.layers) * aligned_bytes<T>(rows * d) +
                    std::size_t(cfg_.layers - 1) * aligned_bytes<T>(rows * k * d);
    for (auto const& r : rnns_) b += r.forward_workspace(rows, k);
    return b;
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t rows = batch * (len / cfg_.segment), k = cfg_.segment, d = cfg_.dim;
    std::size_t inner = 0;
    for (auto const& r : rnns_) inner = std::max(inner, r.backward_workspace(rows, k));
    std::size_t tmp = cfg_.layers > 1 ? 2 * aligned_bytes<T>(rows * k * d) : 0;
    return aligned_bytes<T>(rows * k * 2 * d) + 2 * aligned_bytes<T>(rows * d) + tmp + inner;
  }

  /// y [B, N K, d] from the conditions cond [B, N, d] and the byte embeddings x [B, N K, d], into
  /// the caller's `s` (reuse one across steps: its vectors allocate only on the first call).
  void forward(Ctx& ctx, CView cond, CView x, MView y, Saved& s, Arena<Space>& ws) const {
    std::int64_t k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == d && x.size(1) % k == 0,
               "RnnDecoder(dim " << d << ", segment " << k << "): x " << x.shape << " is not [B, N " << k << ", " << d
                                 << "]");
    std::int64_t bsz = x.size(0), n = x.size(1) / k, rows = bsz * n;
    check_shape(cond, Shape{bsz, n, d}, "RnnDecoder: cond");
    check_shape(y, x.shape, "RnnDecoder: y");
    s.u = ws.template take<T>(Shape{rows, k, 2 * d}, "rnn_dec.u");
    CView c2 = cond.reshape(Shape{rows, d});
    // u[:, r] = [x_{iK+r}; c_i]                                                  [B N, K, 2d]
    ops::copy_mat<T>(ctx, ops::as_mat(x.reshape(Shape{rows * k, d})), {s.u.data, rows * k, d, 2 * d});
    for (std::int64_t r = 0; r < k; ++r)
      ops::copy_mat<T>(ctx, ops::as_mat(c2), {s.u.data + r * 2 * d + d, rows, d, k * 2 * d});
    s.h0.resize(rnns_.size());
    s.outs.resize(rnns_.size());
    s.init.resize(rnns_.size());
    s.layers.resize(rnns_.size());
    CView cur = s.u;
    for (std::size_t l = 0; l < rnns_.size(); ++l) {
      s.h0[l] = ws.template take<T>(Shape{rows, d}, "rnn_dec.h0");
      s.init[l] = init_[l].forward(ctx, c2, s.h0[l], ws);  // h^l_{-1} = W0 c + b0    [B N, d]
      s.outs[l] = l + 1 == rnns_.size() ? y.reshape(Shape{rows, k, d}) : ws.template take<T>(Shape{rows, k, d}, "rnn_dec.out");
      s.layers[l] = rnns_[l].forward(ctx, cur, {s.h0[l], {}}, s.outs[l], {}, ws);  // [B N, K, d]
      cur = s.outs[l];
    }
  }
  /// The same with a fresh Saved (allocates: for one-off calls and tests).
  Saved forward(Ctx& ctx, CView cond, CView x, MView y, Arena<Space>& ws) const {
    Saved s;
    forward(ctx, cond, x, y, s, ws);
    return s;
  }

  /// dcond [B, N, d] and dx [B, N K, d] (overwritten; dx may be empty) from dy; parameter gradients
  /// accumulate.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dcond, MView dx, Arena<Space>& ws) const {
    std::int64_t rows = s.u.size(0), k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(dy.numel() == rows * k * d && dcond.numel() == rows * d,
               "RnnDecoder::backward: dy " << dy.shape << ", dcond " << dcond.shape << " for " << rows << " segments");
    ArenaScope<Space> scope(ws);
    MView du = ws.template take<T>(s.u.shape, "rnn_dec.du");
    MView dh0 = ws.template take<T>(Shape{rows, d}, "rnn_dec.dh0");
    MView dc = ws.template take<T>(Shape{rows, d}, "rnn_dec.dc");
    MView a, b;
    if (rnns_.size() > 1) {
      a = ws.template take<T>(Shape{rows, k, d}, "rnn_dec.da");
      b = ws.template take<T>(Shape{rows, k, d}, "rnn_dec.db");
    }
    MView dcond2 = dcond.reshape(Shape{rows, d});
    ops::fill<T>(ctx, dcond2, T(0));
    CView dcur = dy.reshape(Shape{rows, k, d});
    for (std::size_t l = rnns_.size(); l-- > 0;) {
      MView dxl = l == 0 ? du : (dcur.data == a.data ? b : a);
      rnns_[l].backward(ctx, s.layers[l], dcur, {}, dxl, {dh0, {}}, ws);
      init_[l].backward(ctx, s.init[l], dh0, dc, ws);   // through h^l_{-1} = W0 c + b0
      ops::axpy<T>(ctx, T(1), CView(dc), dcond2);
      dcur = dxl;
    }
    // u = [x; c]: split du                                                      [B N, K, 2d]
    for (std::int64_t r = 0; r < k; ++r)
      ops::add_mat<T>(ctx, {du.data + r * 2 * d + d, rows, d, k * 2 * d}, ops::as_mat(dcond2));
    if (!dx.empty()) {
      check_shape(dx, Shape{dx.size(0), dx.size(1), d}, "RnnDecoder::backward: dx");
      ops::copy_mat<T>(ctx, {du.data, rows * k, d, 2 * d}, ops::as_mat(dx.reshape(Shape{rows * k, d})));
    }
  }

  StepState make_step_state(std::int64_t batch) const {
    StepState st;
    st.cond = Tensor<T, B>(Shape{batch, cfg_.dim});
    for (auto const& r : rnns_) {
      st.h.emplace_back(Shape{batch, cfg_.dim});
      st.c.emplace_back();  // a GRU has no cell state
      if (r.is_lstm()) st.c.back() = Tensor<T, B>(Shape{batch, cfg_.dim});
    }
    return st;
  }
  std::size_t step_workspace(std::int64_t batch) const {
    std::size_t inner = 0;
    for (auto const& r : rnns_) inner = std::max(inner, r.forward_workspace(batch, 1));
    return aligned_bytes<T>(batch * 2 * cfg_.dim) + 2 * aligned_bytes<T>(batch * cfg_.dim) + inner;
  }

  /// Starts a segment: keeps cond [B, 1, d] and sets every layer's state to W0 c + b0 (c = 0).
  void step_begin(Ctx& ctx, StepState& st, CView cond, Arena<Space>& ws) const {
    std::int64_t bsz = st.cond.shape()[0], d = cfg_.dim;
    check_shape(cond, Shape{bsz, 1, d}, "RnnDecoder::step_begin: cond");
    CView c2 = cond.reshape(Shape{bsz, d});
    ops::copy<T>(ctx, c2, st.cond.view());
    for (std::size_t l = 0; l < rnns_.size(); ++l) {
      init_[l].forward(ctx, c2, st.h[l].view(), ws);
      if (rnns_[l].is_lstm()) ops::fill<T>(ctx, st.c[l].view(), T(0));
    }
  }

  /// Byte r of the current segment: x [B, 1, d] -> y [B, 1, d].
  void step(Ctx& ctx, StepState& st, CView x, std::int64_t /*r*/, MView y, Arena<Space>& ws) const {
    std::int64_t bsz = st.cond.shape()[0], d = cfg_.dim;
    check_shape(x, Shape{bsz, 1, d}, "RnnDecoder::step: x");
    check_shape(y, Shape{bsz, 1, d}, "RnnDecoder::step: y");
    ArenaScope<Space> scope(ws);
    MView u = ws.template take<T>(Shape{bsz, 1, 2 * d}, "rnn_dec_step.u");
    ops::copy_mat<T>(ctx, ops::as_mat(x.reshape(Shape{bsz, d})), {u.data, bsz, d, 2 * d});
    ops::copy_mat<T>(ctx, ops::as_mat(st.cond.cview()), {u.data + d, bsz, d, 2 * d});
    MView a = ws.template take<T>(Shape{bsz, 1, d}, "rnn_dec_step.a"), b = ws.template take<T>(Shape{bsz, 1, d}, "rnn_dec_step.b");
    CView cur = u;
    for (std::size_t l = 0; l < rnns_.size(); ++l) {
      MView out = l + 1 == rnns_.size() ? y : (l % 2 == 0 ? a : b);
      MView h = st.h[l].view(), c = rnns_[l].is_lstm() ? st.c[l].view() : MView{};
      ArenaScope<Space> inner(ws);
      rnns_[l].forward(ctx, cur, {h, c}, out, {h, c}, ws);  // the state is carried in place
      cur = out;
    }
  }

 private:
  Config cfg_;
  std::vector<Linear> init_;
  std::vector<Rnn> rnns_;
};

/// Policy tag: the recurrent decoder (HRED); the cell is PartConfig::cell.
struct RnnDecoder {
  static constexpr char const* kName = "rnn";
  template <Backend B, class T>
  using Module = RnnDecoderModule<B, T>;
};

}  // namespace hseq::hier
