// SPDX-License-Identifier: MIT
/// @file
/// @brief `LayerNorm` over the last dimension with learned gain and bias (PyTorch `nn.LayerNorm`).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/layer_norm.hpp"

namespace hseq::nn {

template <Backend B, class T>
class LayerNorm {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t dim = 0;
    double eps = 1e-5;
  };
  struct Saved {
    CView x;     // [N, C]
    MView mean;  // [N]
    MView rstd;  // [N]
  };

  explicit LayerNorm(Config c) : cfg_(c) {
    HSEQ_CHECK(c.dim > 0, "LayerNorm: dim must be positive, got " << c.dim);
    HSEQ_CHECK(c.eps > 0, "LayerNorm: eps must be positive, got " << c.eps);
    gamma_ = Param<T, Space>(Shape{c.dim}, InitSpec::ones(), false);
    beta_ = Param<T, Space>(Shape{c.dim}, InitSpec::zeros(), false);
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    f(prefix + "weight", gamma_);
    f(prefix + "bias", beta_);
  }

  std::size_t forward_workspace(std::int64_t rows) const {
    return measure_workspace<Space>([&](Arena<Space>& a) { carve(a, rows); });
  }
  std::size_t backward_workspace(std::int64_t /*rows*/) const { return 0; }

  /// y = LayerNorm(x); x, y: [N, C].
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(x.cols() == cfg_.dim && y.shape == x.shape,
               "LayerNorm(" << cfg_.dim << "): x " << x.shape << ", y " << y.shape);
    Saved s = carve(ws, x.rows());
    s.x = x;
    ops::layer_norm_forward<T>(ctx, x, gamma_.value, beta_.value, T(cfg_.eps), y, s.mean, s.rstd);
    return s;
  }

  /// dx = d/dx (overwritten; skipped when empty); the gain's and bias's gradients accumulate.
  /// A frozen gain or bias keeps a zero gradient: the fused kernel always writes both, so a frozen
  /// one's gradient is reset to zero afterwards (it is zero before: `zero_grad` and no writer), which
  /// needs no workspace; with both frozen and no dx wanted the kernel is skipped.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& /*ws*/) const {
    HSEQ_CHECK(dy.shape == s.x.shape, "LayerNorm::backward: dy " << dy.shape << " differs from x " << s.x.shape);
    if (gamma_.frozen && beta_.frozen && dx.empty()) return;
    ops::layer_norm_backward<T>(ctx, s.x, gamma_.value, s.mean, s.rstd, dy, dx, gamma_.grad, beta_.grad);
    if (gamma_.frozen) B::zero_bytes(ctx, gamma_.grad.data, sizeof(T) * std::size_t(cfg_.dim));
    if (beta_.frozen) B::zero_bytes(ctx, beta_.grad.data, sizeof(T) * std::size_t(cfg_.dim));
  }

  /// dx only (overwritten), the parameters held fixed: their gradients go to scratch carved from
  /// `ws` (2 * dim elements, released on return; `input_backward_workspace`), for losses that
  /// train something upstream through a fixed LayerNorm (the Compressive Transformer's attention
  /// reconstruction).
  std::size_t input_backward_workspace() const { return 2 * aligned_bytes<T>(cfg_.dim); }
  void backward_input(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    HSEQ_CHECK(dy.shape == s.x.shape && dx.shape == s.x.shape,
               "LayerNorm::backward_input: dy " << dy.shape << ", dx " << dx.shape << ", x " << s.x.shape);
    ArenaScope<Space> scope(ws);
    MView dg = ws.template take<T>(Shape{cfg_.dim}, "LayerNorm.dgamma_discarded");
    MView db = ws.template take<T>(Shape{cfg_.dim}, "LayerNorm.dbeta_discarded");
    ops::layer_norm_backward<T>(ctx, s.x, gamma_.value, s.mean, s.rstd, dy, dx, dg, db);
  }

 private:
  Saved carve(Arena<Space>& a, std::int64_t rows) const {
    Saved s;
    s.mean = a.template take<T>(Shape{rows}, "LayerNorm.mean");
    s.rstd = a.template take<T>(Shape{rows}, "LayerNorm.rstd");
    return s;
  }
  Config cfg_;
  Param<T, Space> gamma_, beta_;
};

}  // namespace hseq::nn
