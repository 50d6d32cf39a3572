// SPDX-License-Identifier: MIT
/// @file
/// @brief `LengthResampler`: the length-changing attention of the length-reduction autoencoder
/// (issue 12). `LengthReducer<B, T, R, Query>` maps x [B, n, d] to y [B, n / R, d];
/// `LengthExpander<B, T, R, Query>` maps a latent x [B, m, d] back to y [B, n, d] (m = ceil(n / R)). One
/// bidirectional multi-head cross-attention (no mask: every query sees every row of x), whose
/// queries come from the compile-time query source `Query`:
///
///   z = Query(x)                                    [B, n_out, d]  the query input
///   Q = z Wq + bq,  [K V] = x Wkv + bkv             [B, n_out, d], [B, n_in, 2 d]
///   y = concat_h( softmax(Q_h K_h^T / sqrt(d_h)) V_h ) Wo + bo     [B, n_out, d]
///   y += z                     with `Config::residual` (the query stream's residual)
///
/// with H = `Config::heads` heads of width d_h = d / H (nn::MultiHeadAttention with mask none;
/// the biases only with `Config::bias`). Reduce: n_in = n, n_out = m = ceil(n / R); expand: n_in = m,
/// n_out = n. Keys and values always come from the module's input x (X for reduce, the
/// latent for expand), so the expander's output is a function of the latent alone. No feed-forward
/// on the query stream (the caller composes one around it). `Config::residual` adds the query
/// input z to the output (Funnel/Perceiver style): without it, an attention that starts near
/// uniform maps every output row to nearly the same mean of the values, so stacked resamplers
/// start with almost no information about positions (and almost no gradient for their queries);
/// with it, pooled or mixed queries carry the input through from the first step.
///
/// Query sources (the policy tags `QueryBank`, `LengthMix`, `PooledQueries`; z for one sequence b,
/// with N = `Config::window`, the longest full-rate length):
///   - QueryBank: z[b] = P[0 : n_out], a learned bank P [ceil(N / R), d] (reduce) or [N, d]
///     (expand), the same for every b (parameter "query.bank"; n <= N, the first n_out rows are used).
///   - LengthMix: z[b] = A x[b], a learned mix along the length axis, A [ceil(N / R), N] (reduce)
///     or [N, ceil(N / R)] (expand) (parameter "query.mix"; the length is fixed: n == N).
///   - PooledQueries: z = AvgPool_R(x) (reduce: z[b, i] = mean of x[b, j] over the valid j of
///     group i, i R <= j < min(i R + R, n)) or z = Repeat_R(x) (expand: z[b, t] = x[b, floor(t / R)]);
///     no parameters, any n.
/// No position information is added here (the attention is permutation-equivariant in the keys):
/// callers add position embeddings to x before. With PooledQueries the expander's R queries of a
/// block are equal, so its output rows i R .. i R + R - 1 are equal too.
///
/// Lengths: n is a run-time size (up to N for the bank, exactly N for the mix). When R does not
/// divide n, the sequence is padded to m R rows with a mask: the last group has r = n - (m - 1) R
/// valid rows, the pooled query of the reducer averages those r rows only (the padding rows are
/// zeros that the mean does not count: its weight is 1 / r, not 1 / R), the reducer's keys are the
/// n real rows (no padding key exists, so no attention mask is needed), and the expander computes
/// queries and outputs for the n real rows only (the repeated rows past n are cut). The expander
/// takes n from its output's shape (m = ceil(n / R) must be x's length).
///
/// The module contract is nn/module.hpp's: forward carves what backward needs from the arena,
/// backward overwrites dx and accumulates parameter gradients; forward_workspace(batch, n) and
/// backward_workspace(batch, n) are the bytes they carve, n being the full-rate length in both
/// directions (x's length for the reducer, y's for the expander). Only ops with CUDA overloads are
/// used (gemm, strided-batched gemm, fill, add_bias, bias_grad, axpy, avg_pool, repeat_rows and
/// their backwards, the attention core).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/attention.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::hier {

/// Reduce: [B, n, d] -> [B, ceil(n / R), d]. Expand: [B, ceil(n / R), d] -> [B, n, d].
enum class LengthDirection { kReduce, kExpand };

/// How a query source uses `LengthResamplerConfig::window` (N).
enum class WindowUse {
  kNone,     ///< ignored: any length
  kMaximum,  ///< full-rate length n <= N (learned per-position queries)
  kExact,    ///< n == N (a learned matrix along the length axis)
};

struct LengthResamplerConfig {
  std::int64_t dim = 0;
  std::int64_t heads = 1;
  /// N, the longest full-rate length (the n of [B, n, d]); positive for QueryBank (its bank sizes)
  /// and LengthMix (the one length it accepts); PooledQueries ignores it.
  std::int64_t window = 0;
  bool bias = true;        ///< biases of the attention's projections
  bool residual = false;   ///< y = z + attention: the query input added to the output
  double init_std = 0.02;  ///< std of the projections, the query bank and the mixing matrix
};

/// The reduced length of a full-rate length n: ceil(n / R) (a partial last group is padded).
template <std::int64_t R>
constexpr std::int64_t reduced_length(std::int64_t n) {
  return (n + R - 1) / R;
}
/// Lengths of one call: n_in rows of x, n_out rows of y, from the full-rate length n.
template <std::int64_t R, LengthDirection D>
constexpr std::int64_t length_in(std::int64_t n) {
  return D == LengthDirection::kReduce ? n : reduced_length<R>(n);
}
template <std::int64_t R, LengthDirection D>
constexpr std::int64_t length_out(std::int64_t n) {
  return D == LengthDirection::kReduce ? reduced_length<R>(n) : n;
}

// ---------------------------------------------------------------------------------------------
// Query sources: z [B, n_out, d] from x [B, n_in, d]. forward overwrites z; backward ACCUMULATES
// into dx (the attention's key/value path has already written it; dx empty: not needed) and into
// the source's parameter gradients.
// ---------------------------------------------------------------------------------------------

/// z[b] = P[0 : n_out] for every b; P [N / R, d] (reduce) or [N, d] (expand).
template <Backend B, class T, std::int64_t R, LengthDirection D>
class QueryBankSource {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  struct Saved {};

  explicit QueryBankSource(LengthResamplerConfig const& c)
      : rows_(length_out<R, D>(c.window)),
        // Per-position vectors, like a position table: no weight decay.
        bank_(Shape{length_out<R, D>(c.window), c.dim}, nn::InitSpec::normal(c.init_std), false) {}

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    f(prefix + "bank", bank_);
  }
  nn::Param<T, Space> const& bank() const { return bank_; }

  std::size_t forward_workspace(std::int64_t /*batch*/, std::int64_t /*n*/) const { return 0; }
  std::size_t backward_workspace(std::int64_t /*batch*/, std::int64_t /*n*/) const { return 0; }

  Saved forward(Ctx& ctx, CView /*x*/, MView z, Arena<Space>& /*ws*/) const {
    std::int64_t bsz = z.size(0), rows = z.size(1), d = z.size(2);
    HSEQ_CHECK(rows <= rows_, "QueryBankSource: " << rows << " queries asked of a bank of " << rows_);
    // Broadcast over the batch as a bias over [B, n_out d]: zero, then add P[0 : n_out] to each row.
    ops::fill<T>(ctx, z, T(0));
    ops::add_bias<T>(ctx, z.reshape(Shape{bsz, rows * d}), CView(bank_.value.slice(0, rows)).reshape(Shape{rows * d}));
    return {};
  }
  /// P.grad[0 : n_out] += sum_b dz[b]; the queries do not depend on x (dx unchanged).
  void backward(Ctx& ctx, Saved const& /*s*/, CView dz, MView /*dx*/, Arena<Space>& /*ws*/) const {
    if (bank_.frozen) return;
    std::int64_t bsz = dz.size(0), rows = dz.size(1), d = dz.size(2);
    ops::bias_grad<T>(ctx, dz.reshape(Shape{bsz, rows * d}), bank_.grad.slice(0, rows).reshape(Shape{rows * d}));
  }

 private:
  std::int64_t rows_;
  nn::Param<T, Space> bank_;
};

/// z[b] = A x[b]; A [N / R, N] (reduce) or [N, N / R] (expand), so n_in and n_out are fixed.
template <Backend B, class T, std::int64_t R, LengthDirection D>
class LengthMixSource {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  struct Saved {
    CView x;  // [B, n_in, d], the caller's input
  };

  explicit LengthMixSource(LengthResamplerConfig const& c)
      // A weight matrix like a Linear's: weight decay applies. At init_std 0.02 the queries start
      // near the query bias, so the attention starts close to uniform (a mean over x).
      : mix_(Shape{length_out<R, D>(c.window), length_in<R, D>(c.window)}, nn::InitSpec::normal(c.init_std)) {}

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    f(prefix + "mix", mix_);
  }
  nn::Param<T, Space> const& mix() const { return mix_; }

  std::size_t forward_workspace(std::int64_t /*batch*/, std::int64_t /*n*/) const { return 0; }
  std::size_t backward_workspace(std::int64_t /*batch*/, std::int64_t /*n*/) const { return 0; }

  Saved forward(Ctx& ctx, CView x, MView z, Arena<Space>& /*ws*/) const {
    std::int64_t bsz = x.size(0), n_in = x.size(1), n_out = z.size(1), d = x.size(2);
    HSEQ_CHECK(mix_.shape == (Shape{n_out, n_in}),
               "LengthMixSource: the mix " << mix_.shape << " does not map " << n_in << " rows to " << n_out);
    // One strided-batched GEMM; A is shared by every sequence (stride 0).
    ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kNo, ops::Mat<T const, Space>(mix_.value.data, n_out, n_in), 0,
                                 ops::Trans::kNo, ops::Mat<T const, Space>(x.data, n_in, d), n_in * d,
                                 ops::Mat<T, Space>(z.data, n_out, d), n_out * d);
    return {x};
  }
  /// A.grad += sum_b dz[b] x[b]^T (one GEMM per sequence, accumulated in place: no scratch, no
  /// race); dx[b] += A^T dz[b].
  void backward(Ctx& ctx, Saved const& s, CView dz, MView dx, Arena<Space>& /*ws*/) const {
    std::int64_t bsz = s.x.size(0), n_in = s.x.size(1), n_out = dz.size(1), d = s.x.size(2);
    if (!mix_.frozen)
      for (std::int64_t b = 0; b < bsz; ++b)
        ops::gemm<T>(ctx, ops::Trans::kNo, ops::Mat<T const, Space>(dz.data + b * n_out * d, n_out, d),
                     ops::Trans::kYes, ops::Mat<T const, Space>(s.x.data + b * n_in * d, n_in, d),
                     ops::Mat<T, Space>(mix_.grad.data, n_out, n_in), T(1), T(1));
    if (!dx.empty())
      ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kYes, ops::Mat<T const, Space>(mix_.value.data, n_out, n_in),
                                   0, ops::Trans::kNo, ops::Mat<T const, Space>(dz.data, n_out, d), n_out * d,
                                   ops::Mat<T, Space>(dx.data, n_in, d), n_in * d, T(1), T(1));
  }

 private:
  nn::Param<T, Space> mix_;
};

/// z = AvgPool_R(x) (reduce) or Repeat_R(x) (expand); no parameters. A length n that R does not
/// divide goes through a padded copy [B, m R, d] (zeros past n) and the pooling ops; the partial
/// group's mean is then rewritten over its r valid rows by a strided-batched GEMM with a ones
/// vector (1 / r times their sum), so only ops with CUDA overloads are composed.
template <Backend B, class T, std::int64_t R, LengthDirection D>
class PooledQuerySource {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using CMat = ops::Mat<T const, Space>;
  using MMat = ops::Mat<T, Space>;
  struct Saved {};

  explicit PooledQuerySource(LengthResamplerConfig const& c) : dim_(c.dim) {}

  template <class F>
  void visit_params(F&& /*f*/, std::string const& /*prefix*/ = "") {}

  /// The padded copy (and for the reducer the ones vector) when R does not divide n.
  std::size_t forward_workspace(std::int64_t batch, std::int64_t n) const {
    if (n % R == 0) return 0;
    return padded_bytes(batch, n) + (D == LengthDirection::kReduce ? aligned_bytes<T>(R) : 0);
  }
  /// The [B, n_in, d] buffer that holds the query path's gradient before it is added to dx; when R
  /// does not divide n, the padded gradient and the ones vector (reduce) or the padded gradient
  /// and that buffer (expand).
  std::size_t backward_workspace(std::int64_t batch, std::int64_t n) const {
    std::size_t const in = aligned_bytes<T>(batch * length_in<R, D>(n) * dim_);
    if (n % R == 0) return in;
    return padded_bytes(batch, n) + (D == LengthDirection::kReduce ? aligned_bytes<T>(R) : in);
  }

  Saved forward(Ctx& ctx, CView x, MView z, Arena<Space>& ws) const {
    std::int64_t const bsz = x.size(0), d = x.size(2);
    std::int64_t const n = D == LengthDirection::kReduce ? x.size(1) : z.size(1), m = reduced_length<R>(n);
    if (n % R == 0) {
      if constexpr (D == LengthDirection::kReduce)
        ops::avg_pool<T>(ctx, x, z, R);
      else
        ops::repeat_rows<T>(ctx, x, z, R);
      return {};
    }
    // Carved for the forward's lifetime (not scoped), so a forward carves exactly its plan.
    MView pad = ws.template take<T>(Shape{bsz, m * R, d}, "lres.pool.pad");  // [B, m R, d]
    if constexpr (D == LengthDirection::kReduce) {
      // pad[b, 0:n] = x[b], pad[b, n:mR] = 0; z = AvgPool_R(pad); then the last group's mean over
      // its r valid rows: z[b, m-1] = (1 / r) 1_r^T x[b, (m-1)R : n].
      ops::fill<T>(ctx, pad, T(0));
      ops::copy_mat<T>(ctx, CMat(x.data, bsz, n * d, n * d), MMat(pad.data, bsz, n * d, m * R * d));
      ops::avg_pool<T>(ctx, CView(pad), z, R);
      std::int64_t const r = n - (m - 1) * R;
      MView ones = ws.template take<T>(Shape{R}, "lres.pool.ones");
      ops::fill<T>(ctx, ones, T(1));
      ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kNo, CMat(ones.data, 1, r), 0, ops::Trans::kNo,
                                   CMat(x.data + (m - 1) * R * d, r, d), n * d, MMat(z.data + (m - 1) * d, 1, d),
                                   m * d, T(1) / T(r), T(0));
    } else {
      // pad = Repeat_R(x); z[b] = pad[b, 0:n] (the repeated rows past n are cut).
      ops::repeat_rows<T>(ctx, x, pad, R);
      ops::copy_mat<T>(ctx, CMat(pad.data, bsz, n * d, m * R * d), MMat(z.data, bsz, n * d, n * d));
    }
    return {};
  }
  void backward(Ctx& ctx, Saved const& /*s*/, CView dz, MView dx, Arena<Space>& ws) const {
    if (dx.empty()) return;
    std::int64_t const bsz = dx.size(0), d = dx.size(2);
    std::int64_t const n = D == LengthDirection::kReduce ? dx.size(1) : dz.size(1), m = reduced_length<R>(n);
    ArenaScope<Space> scope(ws);
    if (n % R == 0) {
      MView dq = ws.template take<T>(dx.shape, "lres.pool.dx");
      if constexpr (D == LengthDirection::kReduce)
        ops::avg_pool_backward<T>(ctx, dz, dq, R);
      else
        ops::repeat_rows_backward<T>(ctx, dz, dq, R);
      ops::axpy<T>(ctx, T(1), CView(dq), dx);
      return;
    }
    MView pad = ws.template take<T>(Shape{bsz, m * R, d}, "lres.pool.dpad");  // [B, m R, d]
    if constexpr (D == LengthDirection::kReduce) {
      // dx[b, j] += dz[b, j / R] / R for the valid rows, then the partial group's rows get
      // (1 / r - 1 / R) dz[b, m-1] more (their weight in the forward was 1 / r).
      ops::avg_pool_backward<T>(ctx, dz, pad, R);
      ops::add_mat<T>(ctx, CMat(pad.data, bsz, n * d, m * R * d), MMat(dx.data, bsz, n * d, n * d));
      std::int64_t const r = n - (m - 1) * R;
      MView ones = ws.template take<T>(Shape{R}, "lres.pool.ones");
      ops::fill<T>(ctx, ones, T(1));
      ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kNo, CMat(ones.data, r, 1), 0, ops::Trans::kNo,
                                   CMat(dz.data + (m - 1) * d, 1, d), m * d,
                                   MMat(dx.data + (m - 1) * R * d, r, d), n * d, T(1) / T(r) - T(1) / T(R), T(1));
    } else {
      // The cut rows had no gradient: pad[b] = [dz[b]; 0], dq = RepeatBackward_R(pad), dx += dq.
      ops::fill<T>(ctx, pad, T(0));
      ops::copy_mat<T>(ctx, CMat(dz.data, bsz, n * d, n * d), MMat(pad.data, bsz, n * d, m * R * d));
      MView dq = ws.template take<T>(dx.shape, "lres.pool.dx");
      ops::repeat_rows_backward<T>(ctx, CView(pad), dq, R);
      ops::axpy<T>(ctx, T(1), CView(dq), dx);
    }
  }

 private:
  std::size_t padded_bytes(std::int64_t batch, std::int64_t n) const {
    return aligned_bytes<T>(batch * reduced_length<R>(n) * R * dim_);
  }
  std::int64_t dim_;
};

// ---------------------------------------------------------------------------------------------
// Policy tags and their concept.
// ---------------------------------------------------------------------------------------------

/// Learned queries, one per output position (n <= window).
struct QueryBank {
  static constexpr char const* kName = "bank";
  static constexpr WindowUse kWindow = WindowUse::kMaximum;
  template <Backend B, class T, std::int64_t R, LengthDirection D>
  using Source = QueryBankSource<B, T, R, D>;
};
/// Queries mixed from the input along the length axis by a learned matrix (n == window).
struct LengthMix {
  static constexpr char const* kName = "mix";
  static constexpr WindowUse kWindow = WindowUse::kExact;
  template <Backend B, class T, std::int64_t R, LengthDirection D>
  using Source = LengthMixSource<B, T, R, D>;
};
/// Queries from the input itself: average-pooled (reduce, a partial last group averaged over its
/// valid rows) or repeated (expand); any n.
struct PooledQueries {
  static constexpr char const* kName = "pool";
  static constexpr WindowUse kWindow = WindowUse::kNone;
  template <Backend B, class T, std::int64_t R, LengthDirection D>
  using Source = PooledQuerySource<B, T, R, D>;
};

/// The query-source module a policy names.
template <class Q, class B, class T, std::int64_t R, LengthDirection D>
using QuerySourceOf = typename Q::template Source<B, T, R, D>;

// Staged like ShortenPolicy (hier/shorten_policy.hpp): a later stage is only checked when the
// earlier ones hold, so a policy missing a member gets one error naming it.
// clang-format off
template <class S, class B, class T>
concept QuerySource =
    Backend<B> &&
    requires { typename S::Saved; } &&
    std::constructible_from<S, LengthResamplerConfig const&> &&
    std::default_initializable<typename S::Saved> &&
    requires(S& mod, S const& s, typename B::Context& ctx, View<T const, typename B::Space> x,
             View<T, typename B::Space> z, Arena<typename B::Space>& ws, typename S::Saved const& saved,
             std::int64_t n, void (*visit)(std::string const&, nn::Param<T, typename B::Space>&),
             std::string const& prefix) {
      mod.visit_params(visit, prefix);
      { s.forward_workspace(n, n) } -> std::convertible_to<std::size_t>;
      { s.backward_workspace(n, n) } -> std::convertible_to<std::size_t>;
      { s.forward(ctx, x, z, ws) } -> std::same_as<typename S::Saved>;
      s.backward(ctx, saved, x, z, ws);
    };

template <class Q, class B, class T, std::int64_t R, LengthDirection D>
concept QueryPolicy =
    Backend<B> &&
    requires {
      { Q::kName } -> std::convertible_to<char const*>;
      { Q::kWindow } -> std::convertible_to<WindowUse>;
      typename QuerySourceOf<Q, B, T, R, D>;
    } &&
    QuerySource<QuerySourceOf<Q, B, T, R, D>, B, T>;
// clang-format on

// ---------------------------------------------------------------------------------------------
// The resampler.
// ---------------------------------------------------------------------------------------------

template <Backend B, class T, std::int64_t R, class Query, LengthDirection D>
requires QueryPolicy<Query, B, T, R, D>
class LengthResampler {
  static_assert(R >= 2, "LengthResampler: the reduction factor R must be at least 2");

 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = LengthResamplerConfig;
  using Attention = nn::MultiHeadAttention<B, T>;
  using Source = QuerySourceOf<Query, B, T, R, D>;
  static constexpr std::int64_t kFactor = R;
  static constexpr LengthDirection kDirection = D;

  struct Saved {
    typename Source::Saved src;
    typename Attention::Saved attn;
    MView z;  // [B, n_out, d] the query input
  };

  explicit LengthResampler(Config c)
      : cfg_(check_config(c)), src_(c), attn_({c.dim, c.heads, nn::AttentionMask::none(), c.bias, c.init_std}) {}
  Config const& config() const { return cfg_; }
  Attention const& attention() const { return attn_; }
  Source const& source() const { return src_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    src_.visit_params(f, prefix + "query.");
    attn_.visit_params(f, prefix + "attn.");
  }

  /// n: the full-rate length (x's for the reducer, y's for the expander).
  std::size_t forward_workspace(std::int64_t batch, std::int64_t n) const {
    return aligned_bytes<T>(batch * length_out<R, D>(n) * cfg_.dim) + src_.forward_workspace(batch, n) +
           attn_.forward_workspace(dims(batch, n));
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t n) const {
    return aligned_bytes<T>(batch * length_out<R, D>(n) * cfg_.dim) +
           std::max(attn_.backward_workspace(dims(batch, n), false), src_.backward_workspace(batch, n));
  }

  /// Reduce: x [B, n, d] -> y [B, ceil(n / R), d]. Expand: x [B, m, d] -> y [B, n, d] with
  /// ceil(n / R) = m (n is y's length).
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const {
    std::int64_t n = check_input(x, y);
    Shape out{x.size(0), length_out<R, D>(n), cfg_.dim};
    HSEQ_CHECK(y.shape == out, who() << ": y " << y.shape << " for x " << x.shape << ", expected " << out);
    Saved s;
    s.z = ws.template take<T>(out, "lres.z");
    s.src = src_.forward(ctx, x, s.z, ws);
    s.attn = attn_.forward(ctx, s.z, x, CView{}, y, ws);
    if (cfg_.residual) ops::axpy<T>(ctx, T(1), CView(s.z), y);
    return s;
  }

  /// Overwrites dx [B, n_in, d] (empty: not needed) with both paths: keys/values and queries.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView dz = ws.template take<T>(s.z.shape, "lres.dz");
    attn_.backward(ctx, s.attn, dy, dz, dx, MView{}, ws);  // dz: query path; dx: key/value path
    if (cfg_.residual) ops::axpy<T>(ctx, T(1), dy, dz);      // the residual's share of dz
    src_.backward(ctx, s.src, dz, dx, ws);                 // dx += the query source's path
  }

 private:
  static std::string who() {
    return std::string(D == LengthDirection::kReduce ? "LengthReducer" : "LengthExpander") +
           "<R = " + std::to_string(R) + ", " + Query::kName + ">";
  }
  static Config check_config(Config c) {
    HSEQ_CHECK(c.dim > 0 && c.heads > 0, who() << ": dim " << c.dim << " and heads " << c.heads << " must be positive");
    if constexpr (Query::kWindow != WindowUse::kNone)
      HSEQ_CHECK(c.window > 0, who() << ": window " << c.window
                                     << " must be positive (the query source's sizes are window and ceil(window / R))");
    return c;
  }
  /// Checks x (and for the expander y, whose length is n) and returns the full-rate length n.
  std::int64_t check_input(CView x, MView y) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(0) > 0 && x.size(1) > 0,
               who() << ": x " << x.shape << " must be a non-empty [B, length, dim]");
    HSEQ_CHECK(x.size(2) == cfg_.dim,
               who() << ": x " << x.shape << " has width " << x.size(2) << ", expected dim " << cfg_.dim);
    std::int64_t n = x.size(1);
    if constexpr (D == LengthDirection::kExpand) {
      HSEQ_CHECK(y.rank() == 3 && y.size(0) == x.size(0) && y.size(2) == cfg_.dim &&
                     reduced_length<R>(y.size(1)) == x.size(1),
                 who() << ": y " << y.shape << " for x " << x.shape << ": expected [" << x.size(0) << ", n, "
                       << cfg_.dim << "] with ceil(n / " << R << ") = " << x.size(1) << ", i.e. n in ["
                       << (x.size(1) - 1) * R + 1 << ", " << x.size(1) * R << "]");
      n = y.size(1);
    }
    if constexpr (Query::kWindow == WindowUse::kMaximum)
      HSEQ_CHECK(n <= cfg_.window, who() << ": length n = " << n << " (x " << x.shape << ") exceeds the window "
                                         << cfg_.window << " that sizes the query bank");
    if constexpr (Query::kWindow == WindowUse::kExact)
      HSEQ_CHECK(n == cfg_.window, who() << ": length n = " << n << " (x " << x.shape << ") differs from the window "
                                         << cfg_.window << " that the mixing matrix is fixed to");
    return n;
  }
  typename Attention::Dims dims(std::int64_t batch, std::int64_t n) const {
    return {batch, length_out<R, D>(n), length_in<R, D>(n), 0};
  }

  Config cfg_;
  Source src_;
  Attention attn_;
};

/// x [B, n, d] -> y [B, n / R, d].
template <Backend B, class T, std::int64_t R, class Query>
using LengthReducer = LengthResampler<B, T, R, Query, LengthDirection::kReduce>;
/// x [B, m, d] -> y [B, m R, d].
template <Backend B, class T, std::int64_t R, class Query>
using LengthExpander = LengthResampler<B, T, R, Query, LengthDirection::kExpand>;

}  // namespace hseq::hier
