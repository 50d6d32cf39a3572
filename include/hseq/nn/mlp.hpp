// SPDX-License-Identifier: MIT
/// @file
/// @brief `Mlp`: the Transformer feed-forward block, fc2(drop(gelu(fc1(x)))).
///
/// `drop`: inverted dropout of the hidden activation at rate `Config::dropout`, applied only with an
/// active `DropoutStream` (nn/dropout.hpp) given to `forward`; its mask (key drop.key(kHiddenSite))
/// is regenerated in backward. Inactive (the default) or rate 0: exactly fc2(gelu(fc1(x))).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/dropout.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/dropout.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::nn {

template <Backend B, class T>
class Mlp {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t dim = 0;
    std::int64_t hidden = 0;  ///< 0 means 4 * dim
    bool bias = true;
    double init_std = 0.02;
    double out_init_std = 0.0;  ///< std of fc2's weights; 0 means init_std
    double dropout = 0.0;       ///< hidden-activation dropout rate in [0, 1) (applied with an active stream)
  };
  /// Dropout site of the hidden activation: its mask key is drop.key(kHiddenSite).
  static constexpr std::uint64_t kHiddenSite = 0;
  struct Saved {
    typename Linear<B, T>::Saved fc1, fc2;
    MView h;  // [N, hidden] pre-activation
    MView a;  // [N, hidden] gelu(h), dropped in place when dropout is on (fc2's input)
    DropoutStream drop;  // forward's stream: backward regenerates the mask from it
  };

  explicit Mlp(Config c)
      : cfg_(normalise(c)),
        fc1_({cfg_.dim, cfg_.hidden, cfg_.bias, cfg_.init_std}),
        fc2_({cfg_.hidden, cfg_.dim, cfg_.bias, cfg_.out_init_std > 0 ? cfg_.out_init_std : cfg_.init_std}) {}
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    fc1_.visit_params(f, prefix + "fc1.");
    fc2_.visit_params(f, prefix + "fc2.");
  }

  std::size_t forward_workspace(std::int64_t rows) const {
    return measure_workspace<Space>([&](Arena<Space>& a) { carve(a, rows); });
  }
  std::size_t backward_workspace(std::int64_t rows) const { return aligned_bytes<T>(rows * cfg_.hidden); }

  /// y[N, dim] = fc2(drop(gelu(fc1(x[N, dim])))); `drop` inactive (the default): no dropout.
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws, DropoutStream drop = {}) const {
    HSEQ_CHECK(x.cols() == cfg_.dim && y.shape == x.shape, "Mlp(" << cfg_.dim << "): x " << x.shape << ", y " << y.shape);
    Saved s = carve(ws, x.rows());
    s.drop = drop;
    s.fc1 = fc1_.forward(ctx, x, s.h, ws);
    ops::gelu_forward<T>(ctx, s.h, s.a);
    if (double p = drop.rate(cfg_.dropout); p > 0) ops::dropout_forward<T>(ctx, s.a, s.a, p, drop.key(kHiddenSite));
    s.fc2 = fc2_.forward(ctx, s.a, y, ws);
    return s;
  }

  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView da = ws.template take<T>(s.a.shape, "Mlp.da");  // [N, hidden]
    fc2_.backward(ctx, s.fc2, dy, da, ws);  // d(dropped a); fc2's weight gradient used the dropped a
    if (double p = s.drop.rate(cfg_.dropout); p > 0) ops::dropout_backward<T>(ctx, da, da, p, s.drop.key(kHiddenSite));
    ops::gelu_backward<T>(ctx, s.h, da, da);  // da becomes dh in place
    fc1_.backward(ctx, s.fc1, da, dx, ws);
  }

 private:
  static Config normalise(Config c) {
    HSEQ_CHECK(c.dim > 0 && c.hidden >= 0, "Mlp: dim must be positive, got dim " << c.dim << ", hidden " << c.hidden);
    checked_dropout_rate(c.dropout, "Mlp: dropout");
    if (c.hidden == 0) c.hidden = 4 * c.dim;
    return c;
  }
  Saved carve(Arena<Space>& a, std::int64_t rows) const {
    Saved s;
    s.h = a.template take<T>(Shape{rows, cfg_.hidden}, "Mlp.h");
    s.a = a.template take<T>(Shape{rows, cfg_.hidden}, "Mlp.a");
    return s;
  }
  Config cfg_;
  Linear<B, T> fc1_, fc2_;
};

}  // namespace hseq::nn
