// SPDX-License-Identifier: MIT
/// @file
/// @brief `CosineRouter`: H-Net's learned boundary router (Hwang, Wang and Gu 2025, the routing
/// module of hnet/modules/dc.py; spec segmentation.md §2.2), and its ratio loss.
///
///   q_t = x_t W_q^T,  k_t = x_t W_k^T                    x: [B, L, d] the level's input
///   p_t = clamp((1 - cos(q_{t-1}, k_t)) / 2, 0, 1),  p_0 = 1 in every row
///   b_t = p_t > 1/2 (hier::ByteRule "router:N"): t emits, so a segment starts where adjacent
///         hidden states disagree
/// The decision at t reads x_{t-1} and x_t only, so it is causal, and rows never mix.
/// W = I + A with A a parameter that starts at zero: H-Net initialises W_q and W_k to the identity;
/// writing them as I + A keeps the library's zero initialisation (no identity init kernel) and makes
/// weight decay pull them towards the identity. Parameters: `qk.weight` [2 d, d] = [A_q; A_k]
/// (H-Net weights load as A = W - I).
///
/// Computation: q and k by one GEMM on the backend ([N, d] x [d, 2 d]); the cosines and p, and in
/// backward their derivatives, on the host in double after a download of [N, 2 d] (then one upload
/// of dq, dk and GEMMs): composed from verified ops, no new kernel. Norms below 1e-12 are clamped
/// (F.normalize's eps) and not differentiated.
///
/// The ratio loss (hnet/utils/train.py's load balancing loss), F = mean b_t and G = mean p_t over the
/// real positions of the level:
///   L = N / (N - 1) ((N - 1) F G + (1 - F)(1 - G))       (= 1 at F = G = 1/N)
/// F is a count (no gradient); dL/dG = N / (N - 1) ((N - 1) F - (1 - F)).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::hier {

/// The ratio loss L(F, G) for N target positions per segment, and dL/dG.
struct RatioLoss {
  double value = 0, d_g = 0;
};
inline RatioLoss ratio_loss(double n, double f, double g) {
  HSEQ_CHECK(n > 1.0, "ratio_loss: the target positions per segment " << n << " must exceed 1");
  double s = n / (n - 1.0);
  return {s * ((n - 1.0) * f * g + (1.0 - f) * (1.0 - g)), s * ((n - 1.0) * f - (1.0 - f))};
}

template <Backend B, class T>
class CosineRouter {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t dim = 0;
  };
  /// What backward reads, and the host buffers both use (kept for their capacity: no allocation
  /// once warm).
  struct Saved {
    CView x;                       // [B, L, d] the caller's input
    std::int64_t batch = 0, len = 0;
    std::vector<std::int32_t> row_len;  // [B] real positions per row
    std::vector<T> qk;             // [B * L, 2 d] host copy of [q, k]
    std::vector<double> p;         // [B * L] p_t (0 past a row's length)
    std::vector<T> dqk;            // backward's [B * L, 2 d] staging
  };
  /// Cached generation: each row's q_{t-1} and position.
  struct StepState {
    std::vector<T> q;               // [B, d]
    std::vector<std::int64_t> pos;  // [B]
    std::vector<T> qk;              // [2 d] staging
  };

  static constexpr double kEps = 1e-12;

  explicit CosineRouter(Config c) : cfg_(c), qk_({c.dim, 2 * c.dim, false, 0.0}) {
    HSEQ_CHECK(c.dim > 0, "CosineRouter: the width " << c.dim << " must be positive");
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    qk_.visit_params(f, prefix + "qk.");
  }
  /// The [A_q; A_k] projection (W = I + A).
  nn::Linear<B, T> const& qk() const { return qk_; }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    return aligned_bytes<T>(batch * len * 2 * cfg_.dim);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const { return forward_workspace(batch, len); }

  /// p for x [B, L, d] into s.p (host, [B * L]); row b has row_len[b] real positions (all L when
  /// row_len is empty; positions past it get p = 0 and no gradient).
  void forward(Ctx& ctx, CView x, std::span<std::int32_t const> row_len, Saved& s, Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == d, "CosineRouter: x " << x.shape << " must be [B, L, " << d << "]");
    std::int64_t bsz = x.size(0), len = x.size(1), n = bsz * len;
    HSEQ_CHECK(row_len.empty() || std::int64_t(row_len.size()) == bsz,
               "CosineRouter: " << row_len.size() << " row lengths for a batch of " << bsz);
    s.x = x;
    s.batch = bsz;
    s.len = len;
    s.row_len.assign(std::size_t(bsz), std::int32_t(len));
    if (!row_len.empty()) std::copy(row_len.begin(), row_len.end(), s.row_len.begin());
    ArenaScope<Space> scope(ws);
    MView qk = ws.template take<T>(Shape{n, 2 * d}, "router.qk");
    project(ctx, x.reshape(Shape{n, d}), qk, ws);
    s.qk.resize(std::size_t(n * 2 * d));
    B::download(ctx, s.qk.data(), qk.data, s.qk.size());
    s.p.assign(std::size_t(n), 0.0);
    for (std::int64_t b = 0; b < bsz; ++b) {
      std::int64_t rl = s.row_len[std::size_t(b)];
      HSEQ_CHECK(rl >= 0 && rl <= len, "CosineRouter: row " << b << " has length " << rl << " of " << len);
      if (rl > 0) s.p[std::size_t(b * len)] = 1.0;
      for (std::int64_t t = 1; t < rl; ++t) {
        T const* prev = s.qk.data() + (b * len + t - 1) * 2 * d;
        T const* cur = s.qk.data() + (b * len + t) * 2 * d;
        s.p[std::size_t(b * len + t)] = probability(prev, cur + d, d);
      }
    }
  }

  /// dx [B, L, d] (overwritten) and the parameters' gradients (accumulated) from dp [B * L] (host,
  /// the loss's derivative with respect to p_t; positions 0 and past a row's length are ignored).
  void backward(Ctx& ctx, Saved& s, std::span<double const> dp, MView dx, Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim, bsz = s.batch, len = s.len, n = bsz * len;
    HSEQ_CHECK(std::int64_t(dp.size()) == n && dx.shape == s.x.shape,
               "CosineRouter::backward: " << dp.size() << " gradients and dx " << dx.shape << " for x " << s.x.shape);
    s.dqk.assign(std::size_t(n * 2 * d), T(0));
    for (std::int64_t b = 0; b < bsz; ++b) {
      for (std::int64_t t = 1; t < s.row_len[std::size_t(b)]; ++t) {
        double g = dp[std::size_t(b * len + t)];
        if (g == 0.0) continue;
        std::int64_t r0 = (b * len + t - 1) * 2 * d, r1 = (b * len + t) * 2 * d;
        T const* q = s.qk.data() + r0;      // q_{t-1}
        T const* k = s.qk.data() + r1 + d;  // k_t
        Cosine const cs = cosine(q, k, d);
        double const nq = cs.nq, nk = cs.nk, c = cs.cos, raw = (1.0 - c) / 2.0;
        if (raw <= 0.0 || raw >= 1.0) continue;  // clamped: no gradient
        double dc = -g / 2.0;
        bool dq_on = cs.q_norm > kEps, dk_on = cs.k_norm > kEps;
        // d cos / dq = k / (|q| |k|) - cos q / |q|^2, and symmetrically for k.
        for (std::int64_t i = 0; i < d; ++i) {
          if (dq_on) s.dqk[std::size_t(r0 + i)] += T(dc * (double(k[i]) / (nq * nk) - c * double(q[i]) / (nq * nq)));
          if (dk_on) s.dqk[std::size_t(r1 + d + i)] += T(dc * (double(q[i]) / (nq * nk) - c * double(k[i]) / (nk * nk)));
        }
      }
    }
    ArenaScope<Space> scope(ws);
    MView dqk = ws.template take<T>(Shape{n, 2 * d}, "router.dqk");
    B::upload(ctx, dqk.data, s.dqk.data(), s.dqk.size());
    // [q, k] = x [I, I] + x A^T: dx = dqk A + dq + dk.
    MView dx2 = dx.reshape(Shape{n, d});
    qk_.backward(ctx, typename nn::Linear<B, T>::Saved{s.x.reshape(Shape{n, d})}, CView(dqk), dx2, ws);
    ops::add_mat<T>(ctx, {dqk.data, n, d, 2 * d}, ops::as_mat(dx2));
    ops::add_mat<T>(ctx, {dqk.data + d, n, d, 2 * d}, ops::as_mat(dx2));
  }

  // Cached generation.
  StepState make_step_state(std::int64_t batch) const {
    return {std::vector<T>(std::size_t(batch * cfg_.dim)), std::vector<std::int64_t>(std::size_t(batch), 0),
            std::vector<T>(std::size_t(2 * cfg_.dim))};
  }
  void reset(StepState& st) const { std::fill(st.pos.begin(), st.pos.end(), 0); }
  std::size_t step_workspace() const { return aligned_bytes<T>(2 * cfg_.dim); }
  /// p_t of row `row` for its next input x [1, 1, d] (equal to the forward's, up to the GEMM's
  /// rounding for one row against many).
  double step(Ctx& ctx, StepState& st, std::int64_t row, CView x, Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim;
    ArenaScope<Space> scope(ws);
    MView qk = ws.template take<T>(Shape{1, 2 * d}, "router_step.qk");
    project(ctx, x.reshape(Shape{1, d}), qk, ws);
    B::download(ctx, st.qk.data(), qk.data, st.qk.size());
    T* prev = st.q.data() + row * d;
    double p = st.pos[std::size_t(row)] == 0 ? 1.0 : probability(prev, st.qk.data() + d, d);
    std::copy(st.qk.data(), st.qk.data() + d, prev);
    ++st.pos[std::size_t(row)];
    return p;
  }

 private:
  /// [q, k] [N, 2 d] = x [N, d] (I + A)^T for both halves.
  void project(Ctx& ctx, CView x, MView qk, Arena<Space>& ws) const {
    std::int64_t n = x.size(0), d = cfg_.dim;
    qk_.forward(ctx, x, qk, ws);
    ops::add_mat<T>(ctx, ops::as_mat(x), {qk.data, n, d, 2 * d});
    ops::add_mat<T>(ctx, ops::as_mat(x), {qk.data + d, n, d, 2 * d});
  }
  /// cos(q, k) in double with the norms clamped below at kEps (nq, nk), and the raw norms.
  struct Cosine {
    double cos, nq, nk, q_norm, k_norm;
  };
  static Cosine cosine(T const* q, T const* k, std::int64_t d) {
    double qq = 0, kk = 0, qk = 0;
    for (std::int64_t i = 0; i < d; ++i) {
      qq += double(q[i]) * double(q[i]);
      kk += double(k[i]) * double(k[i]);
      qk += double(q[i]) * double(k[i]);
    }
    double const qn = std::sqrt(qq), kn = std::sqrt(kk), nq = std::max(qn, kEps), nk = std::max(kn, kEps);
    return {qk / (nq * nk), nq, nk, qn, kn};
  }
  /// clamp((1 - cos(q, k)) / 2, 0, 1) in double.
  static double probability(T const* q, T const* k, std::int64_t d) {
    return std::clamp((1.0 - cosine(q, k, d).cos) / 2.0, 0.0, 1.0);
  }

  Config cfg_;
  nn::Linear<B, T> qk_;
};

}  // namespace hseq::hier
