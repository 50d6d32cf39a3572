// SPDX-License-Identifier: MIT
/// @file
/// @brief `IemLoss`: HAED's implicit-embedding-matrix objective (spec models.md §2.4), a sampled
/// softmax over segment encodings. Row m scores its prediction p_m against candidates whose
/// embeddings come from the segment encoder (the "implicit embedding matrix"):
///
///   column 0            the positive      e+_m                     bias 0
///   columns 1 .. Kn     sampled negatives en_k (shared by all rows) bias -log Q_k   (log-Q correction)
///   columns Kn+1 .. Kn+M (in_batch only) the other rows' positives  bias 0          (no correction)
///
///   S = [<p_m, e+_m> | p en^T | p e+^T]           [M, C]    C = 1 + Kn (+ M)
///   z = S / tau + bias                            [M, C]    bias: -log Q, or -inf where masked
///   L = mean_m ( logsumexp(z_m) - z_m0 )                    (cross-entropy, positive at column 0)
///
/// The caller builds `bias` (`build_bias` below, on the host): -log Q_k for the sampled negatives,
/// -inf for accidental hits (a candidate byte-identical to the row's positive segment; in the
/// in-batch block this includes the row's own positive), 0 elsewhere. The temperature is fixed
/// (tau = tau0) or learned as tau = tau0 exp(theta) with the parameter theta = "log_tau_ratio"
/// (zero-initialised, no weight decay), so tau starts at tau0 whatever the initialiser.
///
/// Gradients: p, e+ and en (all overwritten) and theta (accumulated), so the encoder is trained as
/// an output embedding through the positives and the negatives. Built from existing ops only (GEMM,
/// strided-batched GEMM, copy/scale/add, cross-entropy), so it runs on every backend; the current
/// tau is read on the host (one scalar download per forward: a GEMM's alpha is a host scalar).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/cross_entropy.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::hier {

struct IemLossConfig {
  double tau = 0.07;      ///< the temperature; when learned, its initial value tau0 (spec §2.6)
  bool learn_tau = true;  ///< learn theta = log(tau / tau0) ("log_tau_ratio")
};

template <Backend B, class T>
class IemLoss {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using MIds = View<std::int32_t, Space>;
  using Config = IemLossConfig;

  struct Saved {
    CView p, pos, neg;  // [M, d], [M, d], [Kn, d] the caller's inputs (kept until backward)
    MView s;            // [M, C] raw scores
    MView z;            // [M, C] logits (overwritten by dz in backward)
    MView losses;       // [M]
    MIds targets;       // [M] all 0: the positive is column 0
    std::int64_t rows = 0, negs = 0, cols = 0;
    bool in_batch = false;
    double tau = 0;
    double loss = std::numeric_limits<double>::quiet_NaN();
  };

  explicit IemLoss(Config c) : cfg_(c) {
    HSEQ_CHECK(std::isfinite(c.tau) && c.tau > 0, "IemLoss: the temperature must be positive, got " << c.tau);
    if (c.learn_tau) theta_ = nn::Param<T, Space>(Shape{1}, nn::InitSpec::zeros(), false);
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    if (cfg_.learn_tau) f(prefix + "log_tau_ratio", theta_);
  }

  /// Candidate columns C for M rows and Kn sampled negatives.
  static std::int64_t columns(std::int64_t rows, std::int64_t negs, bool in_batch) {
    return 1 + negs + (in_batch ? rows : 0);
  }

  std::size_t forward_workspace(std::int64_t rows, std::int64_t negs, bool in_batch) const {
    return nn::measure_workspace<Space>([&](Arena<Space>& a) { carve(a, rows, columns(rows, negs, in_batch)); });
  }
  std::size_t backward_workspace(std::int64_t /*rows*/, std::int64_t /*negs*/, bool /*in_batch*/) const { return 0; }

  /// The current temperature (reads the learned parameter: a host download on a device backend).
  double tau(Ctx& ctx) const {
    if (!cfg_.learn_tau) return cfg_.tau;
    T theta{};
    B::template download<T>(ctx, &theta, theta_.value.data, 1);
    return cfg_.tau * std::exp(double(theta));
  }

  /// Mean loss over the M rows of p [M, d] against the positives pos [M, d] and the sampled
  /// negatives neg [Kn, d] (Kn may be 0 when in_batch), with bias [M, C] (see the file comment;
  /// `build_bias` fills it). Everything is saved by reference: keep it unchanged until backward.
  double forward(Ctx& ctx, CView p, CView pos, CView neg, CView bias, bool in_batch, Saved& sv,
                 Arena<Space>& ws) const {
    HSEQ_CHECK(p.rank() == 2 && p.size(0) > 0 && pos.shape == p.shape,
               "IemLoss: predictions " << p.shape << " and positives " << pos.shape << " must both be [M, d]");
    std::int64_t m = p.size(0), d = p.size(1), kn = neg.empty() ? 0 : neg.size(0);
    HSEQ_CHECK(kn == 0 || (neg.rank() == 2 && neg.size(1) == d),
               "IemLoss: negatives " << neg.shape << " are not [Kn, " << d << "]");
    HSEQ_CHECK(kn > 0 || (in_batch && m > 1), "IemLoss: no negatives (" << kn << " sampled, in-batch "
                                                                         << (in_batch ? "on" : "off") << ", " << m
                                                                         << " rows)");
    std::int64_t c = columns(m, kn, in_batch);
    check_shape(bias, Shape{m, c}, "IemLoss: bias");
    Carved cv = carve(ws, m, c);
    sv.s = cv.s;
    sv.z = cv.z;
    sv.losses = cv.losses;
    sv.targets = cv.targets;
    sv.p = p;
    sv.pos = pos;
    sv.neg = neg;
    sv.rows = m;
    sv.negs = kn;
    sv.cols = c;
    sv.in_batch = in_batch;
    sv.tau = tau(ctx);
    using ops::Trans;
    // S[:, 0] = <p_m, e+_m>: M products [1, d] x [d, 1]                               [M, 1]
    ops::row_dots<T>(ctx, ops::Mat<T const, Space>(p.data, m, d), ops::Mat<T const, Space>(pos.data, m, d),
                     ops::Mat<T, Space>(sv.s.data, m, 1, c));
    if (kn > 0)  // S[:, 1 : 1 + Kn] = p en^T                                               [M, Kn]
      ops::gemm<T>(ctx, Trans::kNo, ops::as_mat(p), Trans::kYes, ops::as_mat(neg), {sv.s.data + 1, m, kn, c});
    if (in_batch)  // S[:, 1 + Kn :] = p e+^T                                              [M, M]
      ops::gemm<T>(ctx, Trans::kNo, ops::as_mat(p), Trans::kYes, ops::as_mat(pos), {sv.s.data + 1 + kn, m, m, c});
    ops::copy<T>(ctx, CView(sv.s), sv.z);  // z = S / tau + bias                            [M, C]
    ops::scale<T>(ctx, sv.z, T(1.0 / sv.tau));
    ops::add<T>(ctx, CView(sv.z), bias, sv.z);
    ops::fill<std::int32_t>(ctx, sv.targets, 0);
    std::int64_t counted = ops::cross_entropy_forward<T>(ctx, CView(sv.z), View<std::int32_t const, Space>(sv.targets),
                                                         sv.losses);
    HSEQ_CHECK(counted == m, "IemLoss: counted " << counted << " of " << m << " rows");
    sv.loss = ops::sum<T>(ctx, CView(sv.losses)) / double(m);
    return sv.loss;
  }

  /// Gradients of sv.loss: dp, dpos [M, d] and dneg [Kn, d] (overwritten; dneg empty when Kn = 0),
  /// theta's gradient accumulated. Overwrites sv.z with dz.
  void backward(Ctx& ctx, Saved const& sv, MView dp, MView dpos, MView dneg, Arena<Space>& /*ws*/) const {
    std::int64_t m = sv.rows, d = sv.p.size(1), kn = sv.negs, c = sv.cols;
    HSEQ_CHECK(m > 0 && dp.shape == sv.p.shape && dpos.shape == sv.p.shape && (kn == 0 || dneg.shape == sv.neg.shape),
               "IemLoss::backward: dp " << dp.shape << ", dpos " << dpos.shape << ", dneg " << dneg.shape
                                        << " for predictions " << sv.p.shape << " and negatives " << sv.neg.shape);
    using ops::Trans;
    ops::cross_entropy_backward<T>(ctx, CView(sv.z), View<std::int32_t const, Space>(sv.targets), T(1.0 / double(m)),
                                   sv.z);  // dz (0 where masked)                          [M, C]
    if (cfg_.learn_tau && !theta_.frozen)  // dtheta += -(1/tau) <dz, S>: a [1, MC] x [MC, 1] GEMM
      ops::gemm<T>(ctx, Trans::kNo, {sv.z.data, 1, m * c, m * c}, Trans::kYes, {sv.s.data, 1, m * c, m * c},
                   {theta_.grad.data, 1, 1, 1}, T(-1.0 / sv.tau), T(1));
    ops::scale<T>(ctx, sv.z, T(1.0 / sv.tau));  // dS = dz / tau                             [M, C]
    T const* ds = sv.z.data;
    // Column 0: dp_m = dS_m0 e+_m, de+_m = dS_m0 p_m (M products [1, 1] x [1, d])         [M, d]
    ops::gemm_strided_batched<T>(ctx, m, Trans::kNo, {ds, 1, 1, c}, c, Trans::kNo, {sv.pos.data, 1, d, d}, d,
                                 {dp.data, 1, d, d}, d);
    ops::gemm_strided_batched<T>(ctx, m, Trans::kNo, {ds, 1, 1, c}, c, Trans::kNo, {sv.p.data, 1, d, d}, d,
                                 {dpos.data, 1, d, d}, d);
    if (kn > 0) {
      ops::Mat<T const, Space> dsn{ds + 1, m, kn, c};                     // dS of the negatives  [M, Kn]
      ops::gemm<T>(ctx, Trans::kNo, dsn, Trans::kNo, ops::as_mat(sv.neg), ops::as_mat(dp), T(1), T(1));
      ops::gemm<T>(ctx, Trans::kYes, dsn, Trans::kNo, ops::as_mat(sv.p), ops::as_mat(dneg));  // [Kn, d]
    }
    if (sv.in_batch) {
      ops::Mat<T const, Space> dsb{ds + 1 + kn, m, m, c};                 // dS of the in-batch block [M, M]
      ops::gemm<T>(ctx, Trans::kNo, dsb, Trans::kNo, ops::as_mat(sv.pos), ops::as_mat(dp), T(1), T(1));
      ops::gemm<T>(ctx, Trans::kYes, dsb, Trans::kNo, ops::as_mat(sv.p), ops::as_mat(dpos), T(1), T(1));
    }
  }

  /// Fills the host matrix `bias` [M, C] (row-major) for M rows whose positive segments are
  /// pos_bytes [M, k] and Kn sampled negatives neg_bytes [Kn, k] with log-proposals log_q [Kn]:
  /// column 0 gets 0, column 1 + j gets -log_q[j], or -inf when negative j is byte-identical to the
  /// row's positive (an accidental hit); with in_batch, column 1 + Kn + i gets 0, or -inf when
  /// positive i is byte-identical to the row's positive (always so for i = the row itself).
  /// Returns the number of masked entries. Exact byte comparison; allocates nothing.
  static std::int64_t build_bias(std::span<std::int32_t const> pos_bytes, std::span<std::int32_t const> neg_bytes,
                                 std::int64_t k, std::span<double const> log_q, bool in_batch, std::span<T> bias) {
    HSEQ_CHECK(k > 0 && pos_bytes.size() % std::size_t(k) == 0 && neg_bytes.size() == log_q.size() * std::size_t(k),
               "IemLoss::build_bias: " << pos_bytes.size() << " positive and " << neg_bytes.size()
                                       << " negative bytes for segments of " << k << " and " << log_q.size()
                                       << " log-proposals");
    std::int64_t m = std::int64_t(pos_bytes.size()) / k, kn = std::int64_t(log_q.size()), c = columns(m, kn, in_batch);
    HSEQ_CHECK(std::int64_t(bias.size()) == m * c,
               "IemLoss::build_bias: bias holds " << bias.size() << " values, [" << m << ", " << c << "] needed");
    auto same = [k](std::int32_t const* a, std::int32_t const* b) {
      for (std::int64_t r = 0; r < k; ++r)
        if (a[r] != b[r]) return false;
      return true;
    };
    T const masked = -std::numeric_limits<T>::infinity();
    std::int64_t hits = 0;
    for (std::int64_t i = 0; i < m; ++i) {
      std::int32_t const* pi = pos_bytes.data() + i * k;
      T* row = bias.data() + i * c;
      row[0] = T(0);
      for (std::int64_t j = 0; j < kn; ++j) {
        bool hit = same(pi, neg_bytes.data() + j * k);
        row[1 + j] = hit ? masked : T(-log_q[std::size_t(j)]);
        hits += hit;
      }
      if (in_batch)
        for (std::int64_t j = 0; j < m; ++j) {
          bool hit = same(pi, pos_bytes.data() + j * k);
          row[1 + kn + j] = hit ? masked : T(0);
          hits += hit;
        }
    }
    return hits;
  }

  /// The same for variable-length segments (a `Delimited` model): positive i is
  /// pos_bytes[pos_off[i] .. pos_off[i + 1]), negative j is neg_bytes[neg_off[j] .. neg_off[j + 1]);
  /// a hit is an equal length and equal bytes. Allocates nothing.
  static std::int64_t build_bias(std::span<std::int32_t const> pos_bytes, std::span<std::int64_t const> pos_off,
                                 std::span<std::int32_t const> neg_bytes, std::span<std::int64_t const> neg_off,
                                 std::span<double const> log_q, bool in_batch, std::span<T> bias) {
    HSEQ_CHECK(!pos_off.empty() && !neg_off.empty() && neg_off.size() == log_q.size() + 1 &&
                   std::size_t(pos_off.back()) == pos_bytes.size() && std::size_t(neg_off.back()) == neg_bytes.size(),
               "IemLoss::build_bias: " << pos_off.size() << " positive and " << neg_off.size()
                                       << " negative offsets (one more than the segments) for " << log_q.size()
                                       << " log-proposals and " << pos_bytes.size() << " + " << neg_bytes.size()
                                       << " bytes");
    std::int64_t m = std::int64_t(pos_off.size()) - 1, kn = std::int64_t(log_q.size()), c = columns(m, kn, in_batch);
    HSEQ_CHECK(std::int64_t(bias.size()) == m * c,
               "IemLoss::build_bias: bias holds " << bias.size() << " values, [" << m << ", " << c << "] needed");
    auto same = [](std::int32_t const* a, std::int64_t na, std::int32_t const* b, std::int64_t nb) {
      if (na != nb) return false;
      for (std::int64_t r = 0; r < na; ++r)
        if (a[r] != b[r]) return false;
      return true;
    };
    T const masked = -std::numeric_limits<T>::infinity();
    std::int64_t hits = 0;
    for (std::int64_t i = 0; i < m; ++i) {
      std::int32_t const* pi = pos_bytes.data() + pos_off[std::size_t(i)];
      std::int64_t ni = pos_off[std::size_t(i) + 1] - pos_off[std::size_t(i)];
      T* row = bias.data() + i * c;
      row[0] = T(0);
      for (std::int64_t j = 0; j < kn; ++j) {
        bool hit = same(pi, ni, neg_bytes.data() + neg_off[std::size_t(j)],
                        neg_off[std::size_t(j) + 1] - neg_off[std::size_t(j)]);
        row[1 + j] = hit ? masked : T(-log_q[std::size_t(j)]);
        hits += hit;
      }
      if (in_batch)
        for (std::int64_t j = 0; j < m; ++j) {
          bool hit = same(pi, ni, pos_bytes.data() + pos_off[std::size_t(j)],
                          pos_off[std::size_t(j) + 1] - pos_off[std::size_t(j)]);
          row[1 + kn + j] = hit ? masked : T(0);
          hits += hit;
        }
    }
    return hits;
  }

 private:
  struct Carved {
    MView s, z, losses;
    MIds targets;
  };
  /// The buffers forward carves; forward and forward_workspace share this function.
  static Carved carve(Arena<Space>& a, std::int64_t m, std::int64_t c) {
    Carved r;
    r.s = a.template take<T>(Shape{m, c}, "iem.s");
    r.z = a.template take<T>(Shape{m, c}, "iem.z");
    r.losses = a.template take<T>(Shape{m}, "iem.losses");
    r.targets = a.template take<std::int32_t>(Shape{m}, "iem.targets");
    return r;
  }

  Config cfg_;
  nn::Param<T, Space> theta_;  // [1] log(tau / tau0), only when learned
};

}  // namespace hseq::hier
