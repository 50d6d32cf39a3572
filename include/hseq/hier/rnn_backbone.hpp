// SPDX-License-Identifier: MIT
/// @file
/// @brief `RnnBackbone`: HRED's context encoder (spec models.md §1.1): `layers` stacked GRU or LSTM
/// layers over the segment vectors, from zero states,
///
///   s^0 = e      s^l_j = Cell_l(s^l_{j-1}, s^{l-1}_j)      s = s^L           [B, N, d]
///
/// causal by construction. Cached generation carries every layer's state and runs one step per
/// completed segment. Reads PartConfig's dim, layers and cell.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/part_config.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/rnn.hpp"

namespace hseq::hier {

template <Backend B, class T>
class RnnBackboneModule {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = PartConfig;
  using Rnn = nn::Rnn<B, T>;
  struct Saved {
    std::vector<typename Rnn::Saved> layers;
    std::vector<MView> outs;  // outs[l]: layer l's output [B, N, d] (the last is the caller's s)
  };
  /// Per layer: the state after the last consumed segment, h and (LSTM) c, each [B, d].
  struct StepState {
    std::vector<Tensor<T, B>> h, c;
  };

  explicit RnnBackboneModule(Config c) : cfg_(check_part(c, "RnnBackbone")) {
    rnns_.reserve(std::size_t(cfg_.layers));
    for (std::int64_t l = 0; l < cfg_.layers; ++l) rnns_.emplace_back(typename Rnn::Config{cfg_.cell, cfg_.dim, cfg_.dim, true});
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    for (std::size_t l = 0; l < rnns_.size(); ++l) rnns_[l].visit_params(f, prefix + std::to_string(l) + ".");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t n) const {
    std::size_t b = std::size_t(cfg_.layers - 1) * aligned_bytes<T>(batch * n * cfg_.dim);
    for (auto const& r : rnns_) b += r.forward_workspace(batch, n);
    return b;
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t n) const {
    std::size_t inner = 0;
    for (auto const& r : rnns_) inner = std::max(inner, r.backward_workspace(batch, n));
    std::size_t tmp = cfg_.layers > 1 ? 2 * aligned_bytes<T>(batch * n * cfg_.dim) : 0;
    return tmp + inner;
  }

  /// s [B, N, d] from e [B, N, d], into the caller's `sv` (reuse one across steps: its vectors
  /// allocate only on the first call, so training does not allocate).
  void forward(Ctx& ctx, CView e, MView s, Saved& sv, Arena<Space>& ws) const {
    HSEQ_CHECK(e.rank() == 3 && e.size(2) == cfg_.dim && s.shape == e.shape,
               "RnnBackbone(dim " << cfg_.dim << "): e " << e.shape << ", s " << s.shape);
    sv.layers.resize(rnns_.size());
    sv.outs.resize(rnns_.size());
    CView cur = e;
    for (std::size_t l = 0; l < rnns_.size(); ++l) {
      sv.outs[l] = l + 1 == rnns_.size() ? s : ws.template take<T>(e.shape, "rnn_bb.out");
      sv.layers[l] = rnns_[l].forward(ctx, cur, {}, sv.outs[l], {}, ws);  // s^l   [B, N, d]
      cur = sv.outs[l];
    }
  }
  /// The same with a fresh Saved (allocates: for one-off calls and tests).
  Saved forward(Ctx& ctx, CView e, MView s, Arena<Space>& ws) const {
    Saved sv;
    forward(ctx, e, s, sv, ws);
    return sv;
  }

  /// de [B, N, d] (overwritten) from ds; parameter gradients accumulate.
  void backward(Ctx& ctx, Saved const& sv, CView ds, MView de, Arena<Space>& ws) const {
    HSEQ_CHECK(sv.layers.size() == rnns_.size() && de.shape == ds.shape,
               "RnnBackbone::backward: ds " << ds.shape << ", de " << de.shape);
    ArenaScope<Space> scope(ws);
    MView a, b;
    if (rnns_.size() > 1) {
      a = ws.template take<T>(ds.shape, "rnn_bb.da");
      b = ws.template take<T>(ds.shape, "rnn_bb.db");
    }
    CView d = ds;
    for (std::size_t l = rnns_.size(); l-- > 0;) {
      MView dx = l == 0 ? de : (d.data == a.data ? b : a);
      rnns_[l].backward(ctx, sv.layers[l], d, {}, dx, {}, ws);
      d = dx;
    }
  }

  StepState make_step_state(std::int64_t batch, std::int64_t /*capacity*/) const {
    StepState st;
    for (auto const& r : rnns_) {
      st.h.emplace_back(Shape{batch, cfg_.dim});
      st.c.emplace_back();  // a GRU has no cell state
      if (r.is_lstm()) st.c.back() = Tensor<T, B>(Shape{batch, cfg_.dim});
    }
    return st;
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t /*capacity*/) const {
    std::size_t inner = 0;
    for (auto const& r : rnns_) inner = std::max(inner, r.forward_workspace(batch, 1));
    return 2 * aligned_bytes<T>(batch * cfg_.dim) + inner;
  }

  /// Consumes segment j's vector e [B, 1, d] and writes s[j] [B, 1, d]; j = 0 starts from zeros.
  void step(Ctx& ctx, StepState& st, CView e, std::int64_t j, MView s, Arena<Space>& ws) const {
    HSEQ_CHECK(e.rank() == 3 && e.size(1) == 1 && e.size(2) == cfg_.dim && s.shape == e.shape &&
                   st.h.size() == rnns_.size() && st.h[0].shape()[0] == e.size(0),
               "RnnBackbone::step: e " << e.shape << ", s " << s.shape);
    ArenaScope<Space> scope(ws);
    MView a = ws.template take<T>(e.shape, "rnn_bb_step.a"), b = ws.template take<T>(e.shape, "rnn_bb_step.b");
    CView cur = e;
    for (std::size_t l = 0; l < rnns_.size(); ++l) {
      MView out = l + 1 == rnns_.size() ? s : (l % 2 == 0 ? a : b);
      MView h = st.h[l].view(), c = rnns_[l].is_lstm() ? st.c[l].view() : MView{};
      typename Rnn::State init{j == 0 ? CView{} : CView(h), j == 0 ? CView{} : CView(c)};
      ArenaScope<Space> inner(ws);
      rnns_[l].forward(ctx, cur, init, out, {h, c}, ws);  // the state is carried in place
      cur = out;
    }
  }

 private:
  Config cfg_;
  std::vector<Rnn> rnns_;
};

/// Policy tag: the recurrent backbone (HRED's context RNN); the cell is PartConfig::cell.
struct RnnBackbone {
  static constexpr char const* kName = "rnn";
  template <Backend B, class T>
  using Module = RnnBackboneModule<B, T>;
};

}  // namespace hseq::hier
