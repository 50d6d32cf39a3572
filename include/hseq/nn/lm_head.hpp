// SPDX-License-Identifier: MIT
/// @file
/// @brief `LmHead`: the output end of a language model, from the last hidden states to the loss,
///   hf = LN_f(h)          logits = hf W^T          loss = mean over targets >= 0 of CE(logits, target)
/// with W the token embedding's table when the head is tied (GPT-2) or an own [vocab, dim] weight.
///
/// The final LayerNorm belongs here because every model so far applies it right before the
/// projection and nothing else reads its output. The head owns no name segment of its own: it
/// visits "ln_f.weight", "ln_f.bias" and (untied) "head.weight" under the caller's prefix, the
/// names the models have always used, so checkpoints stay loadable.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/cross_entropy.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::nn {

template <Backend B, class T>
class LmHead {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;

  struct Config {
    std::int64_t dim = 0, vocab = 0;
    bool tied = true;  ///< project with the embedding table given to the constructor
    double eps = 1e-5;
    double init_std = 0.02;  ///< the untied weight ~ N(0, init_std^2)
  };
  /// What forward saved for backward (and its results: logits, loss, counted).
  struct Saved {
    typename LayerNorm<B, T>::Saved ln;
    Ids targets;        // [B, T] or empty (no loss)
    MView hf;           // [B, T, dim]   LN_f(h)
    MView logits;       // [B, T, vocab] (overwritten by dlogits in backward)
    MView losses;       // [B * T]       per position, 0 where the target is ignored
    std::int64_t counted = 0;  ///< targets >= 0
    double loss = std::numeric_limits<double>::quiet_NaN();  ///< mean over the counted targets (nats)
  };

  /// `table`: the [vocab, dim] embedding table a tied head projects with (and accumulates the
  /// gradient of); null for an untied head. The head keeps the pointer, so it is neither copied
  /// nor moved (the owning model is not either).
  explicit LmHead(Config c, Param<T, Space> const* table = nullptr) : cfg_(c), ln_({c.dim, c.eps}), table_(table) {
    HSEQ_CHECK(c.dim > 0 && c.vocab > 0, "LmHead: dim " << c.dim << " and vocab " << c.vocab << " must be positive");
    HSEQ_CHECK(c.tied == (table != nullptr), "LmHead: a tied head needs the embedding table, an untied head none (tied "
                                                 << c.tied << ", table " << (table ? "given" : "null") << ")");
    if (table)
      HSEQ_CHECK(table->shape == (Shape{c.vocab, c.dim}),
                 "LmHead: the tied table " << table->shape << " is not [vocab " << c.vocab << ", dim " << c.dim << "]");
    // Same declaration as Linear's weight (decay on), so an untied head initialises as before.
    if (!c.tied) weight_ = Param<T, Space>(Shape{c.vocab, c.dim}, InitSpec::normal(c.init_std));
  }
  LmHead(LmHead const&) = delete;
  LmHead& operator=(LmHead const&) = delete;

  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    ln_.visit_params(f, prefix + "ln_f.");
    if (!cfg_.tied) f(prefix + "head.weight", weight_);
  }
  /// The projection W [vocab, dim]: the tied table or the own weight.
  Param<T, Space> const& weight() const { return cfg_.tied ? *table_ : weight_; }

  /// Bytes forward carves for h: [batch, t, dim].
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    return measure_workspace<Space>([&](Arena<Space>& a) { carve(a, batch, t); }) + ln_.forward_workspace(batch * t);
  }
  /// Backward carves nothing: its one [B, T, dim] intermediate is the caller's `scratch`.
  std::size_t backward_workspace(std::int64_t /*batch*/, std::int64_t /*t*/) const { return 0; }
  /// Bytes `predict` carves (and releases) for `rows` positions.
  std::size_t predict_workspace(std::int64_t rows) const {
    return aligned_bytes<T>(rows * cfg_.dim) + ln_.forward_workspace(rows);
  }

  /// Logits of h [B, T, dim] into s.logits [B, T, vocab]; with targets [B, T] (entries < 0
  /// ignored) also the mean cross-entropy s.loss over the s.counted targets >= 0 (NaN and 0
  /// without targets). Throws when targets are given but all ignored. h and targets are saved
  /// by reference: keep them unchanged until backward.
  Saved forward(Ctx& ctx, CView h, Ids targets, Arena<Space>& ws) const {
    HSEQ_CHECK(h.rank() == 3 && h.size(2) == cfg_.dim,
               "LmHead(dim " << cfg_.dim << "): h " << h.shape << " (expected [B, T, dim])");
    std::int64_t bsz = h.size(0), t = h.size(1);
    HSEQ_CHECK(targets.empty() || targets.shape == (Shape{bsz, t}),
               "LmHead: targets " << targets.shape << " for h " << h.shape << " (expected [B, T])");
    Saved s = carve(ws, bsz, t);
    s.targets = targets;
    s.ln = ln_.forward(ctx, h, s.hf, ws);
    project(ctx, s.hf, ops::as_mat(s.logits));  // [B, T, V]
    if (!targets.empty()) {
      s.counted = ops::cross_entropy_forward<T>(ctx, s.logits, targets, s.losses);
      HSEQ_CHECK(s.counted > 0, "LmHead: every target is ignored (< 0); nothing to train on");
      s.loss = ops::sum<T>(ctx, s.losses) / double(s.counted);
    }
    return s;
  }

  /// Gradients of s.loss: dh [B, T, dim] (overwritten), and the LayerNorm's and projection's
  /// parameter gradients (accumulated; a tied head's go into the embedding table's gradient).
  /// Overwrites s.logits with dlogits. `scratch` [B, T, dim] holds d hf and is clobbered; it is the
  /// caller's buffer because the models have one free at this point (no extra workspace).
  void backward(Ctx& ctx, Saved const& s, MView dh, MView scratch, Arena<Space>& ws) const {
    HSEQ_CHECK(!s.targets.empty() && s.counted > 0, "LmHead::backward: the forward had no targets");
    HSEQ_CHECK(dh.shape == s.hf.shape && scratch.shape == s.hf.shape,
               "LmHead::backward: dh " << dh.shape << ", scratch " << scratch.shape << " for h " << s.hf.shape);
    ops::cross_entropy_backward<T>(ctx, s.logits, s.targets, T(1.0 / double(s.counted)), s.logits);
    CView dlogits = s.logits;
    Param<T, Space> const& w = weight();
    // dW += dlogits^T hf, then d hf = dlogits W (the order nn::Linear uses). A frozen projection
    // (the own weight, or the tied table when the embedding is frozen) gets no gradient.
    if (!w.frozen)
      ops::gemm<T>(ctx, ops::Trans::kYes, ops::as_mat(dlogits), ops::Trans::kNo, ops::as_mat(CView(s.hf)),
                   ops::as_mat(w.grad), T(1), T(1));
    ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(dlogits), ops::Trans::kNo, ops::as_mat(CView(w.value)),
                 ops::as_mat(scratch));
    ln_.backward(ctx, s.ln, scratch, dh, ws);
  }

  /// Logits for generation, saving nothing: out = LN_f(h) W^T for h [..., dim] (leading dimensions
  /// folded into rows). `out` is a [rows, vocab] matrix that may be strided (a column of a
  /// [B, n, vocab] tensor). Its scratch (predict_workspace) is released before returning.
  void predict(Ctx& ctx, CView h, ops::Mat<T, Space> out, Arena<Space>& ws) const {
    HSEQ_CHECK(h.cols() == cfg_.dim && out.rows == h.rows() && out.cols == cfg_.vocab,
               "LmHead::predict: h " << h.shape << ", out [" << out.rows << ", " << out.cols << "] (expected [rows, "
                                     << cfg_.vocab << "])");
    ArenaScope<Space> scope(ws);
    MView hf = ws.template take<T>(h.shape, "lm_head.hf");
    ln_.forward(ctx, h, hf, ws);
    project(ctx, hf, out);
  }

 private:
  /// The buffers forward keeps; forward and forward_workspace share this code.
  Saved carve(Arena<Space>& a, std::int64_t batch, std::int64_t t) const {
    Saved s;
    s.hf = a.template take<T>(Shape{batch, t, cfg_.dim}, "lm_head.hf");
    s.logits = a.template take<T>(Shape{batch, t, cfg_.vocab}, "lm_head.logits");
    s.losses = a.template take<T>(Shape{batch * t}, "lm_head.losses");
    return s;
  }
  /// out = hf W^T.
  void project(Ctx& ctx, CView hf, ops::Mat<T, Space> out) const {
    ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(hf), ops::Trans::kYes, ops::as_mat(CView(weight().value)), out);
  }

  Config cfg_;
  LayerNorm<B, T> ln_;
  Param<T, Space> const* table_;
  Param<T, Space> weight_;
};

}  // namespace hseq::nn
