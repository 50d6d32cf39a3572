// SPDX-License-Identifier: MIT
/// @file
/// @brief `MlpRouter`: Dynamic Token Pooling's boundary predictor (Nawrot et al. 2023,
/// hourglass.py's BoundaryPredictor; spec segmentation.md §2.3) as a learned router:
///
///   p_t = σ(w_2 · gelu(W_1 x_t + b_1) + b_2),  p_0 = 1 in every row        x: [B, L, d]
///   b_t = p_t > 1/2 (hier::ByteRule "mlp:N")
///
/// The decision at t reads x_t only (a position's own hidden state, which the blocks before the level
/// computed from x_{<=t}), so it is causal and rows never mix. Nothing is sampled: DTP's Gumbel
/// variant samples its boundaries also in evaluation (spec §2.3), so this router decides by the
/// threshold in training and evaluation alike, and learns as H-Net's router does, through the
/// straight-through confidence and the ratio loss (models/hourglass.hpp); with EMA de-chunking, also
/// through P_j.
/// Parameters: `fc1.weight` [h, d], `fc1.bias` [h], `fc2.weight` [1, h], `fc2.bias` [1] (h = d). At
/// the start p_t ≈ 1/2 ± small, so about half the positions emit until the ratio loss and the
/// STE move it.
///
/// Computation: the two layers and GELU on the backend (GEMMs and the verified element-wise
/// kernels); the logits [N] are downloaded and σ and its derivative computed on the host in double
/// (one upload of the logits' gradient in backward): no new kernel.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::hier {

template <Backend B, class T>
class MlpRouter {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t dim = 0;
    std::int64_t hidden = 0;  ///< 0 means dim
    double init_std = 0.02;
  };
  /// What backward reads, and host staging (kept for its capacity: no allocation once warm).
  struct Saved {
    CView x;  // [B, L, d] the caller's input
    std::int64_t batch = 0, len = 0;
    std::vector<std::int32_t> row_len;  // [B] real positions per row
    MView h, a;                         // [B * L, h] fc1's output and its GELU (workspace)
    std::vector<T> logits;              // [B * L] host copy of the logits
    std::vector<double> p;              // [B * L] p_t (0 past a row's length)
    std::vector<T> dlogits;             // backward's staging
  };
  /// Cached generation: each row's position (whether its next input is t = 0, where p = 1).
  struct StepState {
    std::vector<std::int64_t> pos;  // [B]
  };

  explicit MlpRouter(Config c)
      : cfg_(normalise(c)),
        fc1_({cfg_.dim, cfg_.hidden, true, cfg_.init_std}),
        fc2_({cfg_.hidden, 1, true, cfg_.init_std}) {}
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    fc1_.visit_params(f, prefix + "fc1.");
    fc2_.visit_params(f, prefix + "fc2.");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    return 2 * aligned_bytes<T>(batch * len * cfg_.hidden) + aligned_bytes<T>(batch * len);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    return aligned_bytes<T>(batch * len) + aligned_bytes<T>(batch * len * cfg_.hidden);
  }

  /// p for x [B, L, d] into s.p (host, [B * L]); row b has row_len[b] real positions (all L when
  /// row_len is empty; positions past it get p = 0 and no gradient). s.h and s.a are carved from ws
  /// and must live until backward.
  void forward(Ctx& ctx, CView x, std::span<std::int32_t const> row_len, Saved& s, Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == d, "MlpRouter: x " << x.shape << " must be [B, L, " << d << "]");
    std::int64_t bsz = x.size(0), len = x.size(1), n = bsz * len;
    HSEQ_CHECK(row_len.empty() || std::int64_t(row_len.size()) == bsz,
               "MlpRouter: " << row_len.size() << " row lengths for a batch of " << bsz);
    s.x = x;
    s.batch = bsz;
    s.len = len;
    s.row_len.assign(std::size_t(bsz), std::int32_t(len));
    if (!row_len.empty()) std::copy(row_len.begin(), row_len.end(), s.row_len.begin());
    s.h = ws.template take<T>(Shape{n, cfg_.hidden}, "mlp_router.h");
    s.a = ws.template take<T>(Shape{n, cfg_.hidden}, "mlp_router.a");
    MView z = ws.template take<T>(Shape{n, 1}, "mlp_router.logits");
    logits(ctx, x.reshape(Shape{n, d}), s.h, s.a, z, ws);
    s.logits.resize(std::size_t(n));
    B::download(ctx, s.logits.data(), z.data, s.logits.size());
    s.p.assign(std::size_t(n), 0.0);
    for (std::int64_t b = 0; b < bsz; ++b) {
      std::int64_t rl = s.row_len[std::size_t(b)];
      HSEQ_CHECK(rl >= 0 && rl <= len, "MlpRouter: row " << b << " has length " << rl << " of " << len);
      if (rl > 0) s.p[std::size_t(b * len)] = 1.0;
      for (std::int64_t t = 1; t < rl; ++t) s.p[std::size_t(b * len + t)] = sigmoid(s.logits[std::size_t(b * len + t)]);
    }
  }

  /// dx [B, L, d] (overwritten) and the parameters' gradients (accumulated) from dp [B * L] (host,
  /// the loss's derivative with respect to p_t; positions 0 and past a row's length are ignored).
  void backward(Ctx& ctx, Saved& s, std::span<double const> dp, MView dx, Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim, bsz = s.batch, len = s.len, n = bsz * len;
    HSEQ_CHECK(std::int64_t(dp.size()) == n && dx.shape == s.x.shape,
               "MlpRouter::backward: " << dp.size() << " gradients and dx " << dx.shape << " for x " << s.x.shape);
    s.dlogits.assign(std::size_t(n), T(0));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t t = 1; t < s.row_len[std::size_t(b)]; ++t) {
        std::size_t r = std::size_t(b * len + t);
        s.dlogits[r] = T(dp[r] * s.p[r] * (1.0 - s.p[r]));  // dσ/dz = σ (1 - σ)
      }
    ArenaScope<Space> scope(ws);
    MView dz = ws.template take<T>(Shape{n, 1}, "mlp_router.dlogits");
    B::upload(ctx, dz.data, s.dlogits.data(), s.dlogits.size());
    MView da = ws.template take<T>(Shape{n, cfg_.hidden}, "mlp_router.da");
    fc2_.backward(ctx, typename nn::Linear<B, T>::Saved{CView(s.a)}, CView(dz), da, ws);
    ops::gelu_backward<T>(ctx, CView(s.h), CView(da), da);  // da becomes dh in place
    MView dx2 = dx.reshape(Shape{n, d});
    fc1_.backward(ctx, typename nn::Linear<B, T>::Saved{s.x.reshape(Shape{n, d})}, CView(da), dx2, ws);
  }

  // Cached generation.
  StepState make_step_state(std::int64_t batch) const { return {std::vector<std::int64_t>(std::size_t(batch), 0)}; }
  void reset(StepState& st) const { std::fill(st.pos.begin(), st.pos.end(), 0); }
  std::size_t step_workspace() const { return 2 * aligned_bytes<T>(cfg_.hidden) + aligned_bytes<T>(1); }
  /// p_t of row `row` for its next input x [1, 1, d] (equal to the forward's, up to the GEMM's
  /// rounding for one row against many).
  double step(Ctx& ctx, StepState& st, std::int64_t row, CView x, Arena<Space>& ws) const {
    if (st.pos[std::size_t(row)]++ == 0) return 1.0;
    ArenaScope<Space> scope(ws);
    MView h = ws.template take<T>(Shape{1, cfg_.hidden}, "mlp_router_step.h");
    MView a = ws.template take<T>(Shape{1, cfg_.hidden}, "mlp_router_step.a");
    MView z = ws.template take<T>(Shape{1, 1}, "mlp_router_step.logit");
    logits(ctx, x.reshape(Shape{1, cfg_.dim}), h, a, z, ws);
    T host = T(0);
    B::download(ctx, &host, z.data, 1);
    return sigmoid(host);
  }

 private:
  static Config normalise(Config c) {
    HSEQ_CHECK(c.dim > 0 && c.hidden >= 0, "MlpRouter: the width " << c.dim << " must be positive, hidden " << c.hidden
                                                                   << " not negative");
    if (c.hidden == 0) c.hidden = c.dim;
    return c;
  }
  /// z [N, 1] = fc2(gelu(fc1(x [N, d]))), with h = fc1(x) and a = gelu(h) [N, hidden].
  void logits(Ctx& ctx, CView x, MView h, MView a, MView z, Arena<Space>& ws) const {
    fc1_.forward(ctx, x, h, ws);
    ops::gelu_forward<T>(ctx, CView(h), a);
    fc2_.forward(ctx, CView(a), z, ws);
  }
  static double sigmoid(T z) { return 1.0 / (1.0 + std::exp(-double(z))); }

  Config cfg_;
  nn::Linear<B, T> fc1_, fc2_;
};

}  // namespace hseq::hier
