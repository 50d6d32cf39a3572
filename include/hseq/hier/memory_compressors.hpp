// SPDX-License-Identifier: MIT
/// @file
/// @brief The Compressive Transformer's compression functions f_c (Rae et al. 2020, section 3.1)
/// as `CompressionPolicy` types with the rate c fixed at compile time: `MeanPool<c>`,
/// `MaxPool<c>`, `Conv<c>`, `DilatedConv<c>` and `MostUsed<c>`. Each maps n evicted memories
/// [B, n, d] (n a multiple of c) to n / c compressed memories [B, n / c, d]:
///
///   MeanPool     mean of each group of c consecutive rows (no parameters; `AvgPoolShorten`)
///   MaxPool      channel-wise max of each group (the first of equal maxima gets the gradient)
///   Conv         a 1D convolution with kernel = stride = c: Linear(c d -> d) of each group
///                (`LinearPoolShorten`; parameters "proj.")
///   DilatedConv  a stack of K = ceil(log2 c) dilated convolutions of kernel 2 inside each group,
///                z_k[t] = W_k0 z_{k-1}[t - 2^(k-1)] + W_k1 z_{k-1}[t] + b_k (zero before the
///                group's first row), GELU between layers; the group's last row of z_K, which sees
///                all c rows (receptive field 2^K >= c), is the compressed memory (parameters
///                "layer<k>.shift." and "layer<k>.here.")
///   MostUsed     keeps the n / c evicted rows that received the most attention while they were
///                memories (their usage, given by the model), in their original order; no
///                parameters, not differentiable in the usage (the paper's "most-used"; no other
///                implementation has it)
///
/// `kLearned` says whether the function has parameters (the auto-encoding and attention-
/// reconstruction losses train them; they are refused for the others), `kUsesUsage` whether the
/// model must pass the usage (`MostUsed`: `forward(ctx, old, usage [B, n], compressed, ws)`).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/compression_policy.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::hier {

/// Max pooling of groups of `factor` rows, saving which row held each maximum.
template <Backend B, class T>
class MaxPoolCompress {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  struct Saved {
    View<std::int32_t, Space> arg;  // [B, n / c, d] the row of each group that held the maximum
  };

  explicit MaxPoolCompress(Config c) : cfg_(check_resample(c, "MaxPoolCompress")) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t batch, std::int64_t n) const {
    return aligned_bytes<std::int32_t>(batch * (n / cfg_.factor) * cfg_.dim);
  }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView old, MView compressed, Arena<Space>& ws) const {
    Saved s;
    s.arg = ws.template take<std::int32_t>(compressed.shape, "maxpool.arg");
    ops::max_pool<T>(ctx, old, compressed, s.arg, cfg_.factor);
    return s;
  }
  void backward(Ctx& ctx, Saved const& s, CView dcompressed, MView dold, Arena<Space>&) const {
    ops::max_pool_backward<T>(ctx, dcompressed, View<std::int32_t const, Space>(s.arg), dold, cfg_.factor);
  }

 private:
  Config cfg_;
};

/// K = ceil(log2 c) dilated convolutions of kernel 2 inside each group of c rows (see the file
/// comment); the group's last row of the last layer is its compressed memory.
template <Backend B, class T>
class DilatedConvCompress {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  struct Layer {
    typename nn::Linear<B, T>::Saved shift, here;
    MView shifted;  // [G, c, d] z_{k-1} shifted by the dilation inside each group
    MView pre;      // [G, c, d] the layer's output before GELU (the GELU's input; last layer: none)
    MView out;      // [G, c, d] z_k
  };
  /// Layers at most: rates up to 2^kMaxDepth = 256.
  static constexpr std::size_t kMaxDepth = 8;
  /// A fixed array, not a vector: a forward in the training loop allocates nothing.
  struct Saved {
    std::int64_t groups = 0;
    std::size_t depth = 0;
    std::array<Layer, kMaxDepth> layers{};
  };

  explicit DilatedConvCompress(Config c) : cfg_(check(c)) {
    for (std::int64_t k = 0; k < depth(); ++k) {
      shift_.emplace_back(typename nn::Linear<B, T>::Config{c.dim, c.dim, false, c.init_std});
      here_.emplace_back(typename nn::Linear<B, T>::Config{c.dim, c.dim, true, c.init_std});
    }
  }
  Config const& config() const { return cfg_; }
  /// K = ceil(log2 c) layers.
  std::int64_t depth() const {
    std::int64_t k = 0;
    while ((std::int64_t(1) << k) < cfg_.factor) ++k;
    return k;
  }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    for (std::size_t k = 0; k < shift_.size(); ++k) {
      shift_[k].visit_params(f, prefix + "layer" + std::to_string(k) + ".shift.");
      here_[k].visit_params(f, prefix + "layer" + std::to_string(k) + ".here.");
    }
  }
  std::size_t forward_workspace(std::int64_t batch, std::int64_t n) const {
    return nn::measure_workspace<Space>([&](Arena<Space>& a) { carve(a, batch * n / cfg_.factor); });
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t n) const {
    return 3 * aligned_bytes<T>(batch * n * cfg_.dim);
  }

  Saved forward(Ctx& ctx, CView old, MView compressed, Arena<Space>& ws) const {
    std::int64_t const c = cfg_.factor, d = cfg_.dim;
    check_shapes(old, compressed);
    Saved s;
    s.groups = old.size(0) * old.size(1) / c;
    carve_into(ws, s);
    CView z(old.data, Shape{s.groups, c, d});  // each group a sequence of c rows
    for (std::size_t k = 0; k < s.depth; ++k) {
      Layer& L = s.layers[k];
      bool const last = k + 1 == s.depth;
      ops::shift_right<T>(ctx, z, L.shifted, std::int64_t(1) << k);  // z[t - 2^k], 0 before the group
      // pre = here(z) + shift(shifted); out = GELU(pre), or out = pre for the last layer (the
      // other buffer holds the shift term meanwhile).
      MView sum = last ? L.out : L.pre, term = last ? L.pre : L.out;
      L.here = here_[k].forward(ctx, z, sum, ws);
      L.shift = shift_[k].forward(ctx, CView(L.shifted), term, ws);
      ops::axpy<T>(ctx, T(1), CView(term), sum);
      if (!last) ops::gelu_forward<T>(ctx, CView(L.pre), L.out);
      z = CView(L.out);
    }
    // compressed[g] = the group's last row.
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(z.data + (c - 1) * d, s.groups, d, c * d),
                     ops::Mat<T, Space>(compressed.data, s.groups, d, d));
    return s;
  }
  /// dold (overwritten) from dcompressed; parameter gradients accumulate.
  void backward(Ctx& ctx, Saved const& s, CView dcompressed, MView dold, Arena<Space>& ws) const {
    std::int64_t const c = cfg_.factor, d = cfg_.dim;
    HSEQ_CHECK(dold.numel() == s.groups * c * d && dcompressed.numel() == s.groups * d,
               "DilatedConvCompress::backward: dold " << dold.shape << ", dcompressed " << dcompressed.shape
                                                      << " for " << s.groups << " groups of " << c);
    ArenaScope<Space> scope(ws);
    Shape const g{s.groups, c, d};
    MView dz = ws.template take<T>(g, "dilated.dz"), dpre = ws.template take<T>(g, "dilated.dpre"),
          dsh = ws.template take<T>(g, "dilated.dsh");
    ops::fill<T>(ctx, dz, T(0));  // only the last row of each group reaches the output
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(dcompressed.data, s.groups, d, d),
                     ops::Mat<T, Space>(dz.data + (c - 1) * d, s.groups, d, c * d));
    for (std::size_t k = s.depth; k-- > 0;) {
      Layer const& L = s.layers[k];
      bool const last = k + 1 == s.depth;
      CView dsum = CView(dz);
      if (!last) {
        ops::gelu_backward<T>(ctx, CView(L.pre), CView(dz), dpre);
        dsum = CView(dpre);
      }
      MView dzin = k == 0 ? MView(dold.data, g) : dz;  // dz is free once dsum is formed... unless dsum aliases it
      if (last) {  // dsum aliases dz: move it to dpre first
        ops::copy<T>(ctx, CView(dz), dpre);
        dsum = CView(dpre);
      }
      shift_[k].backward(ctx, L.shift, dsum, dsh, ws);   // d(shifted)
      here_[k].backward(ctx, L.here, dsum, dzin, ws);    // d z through the undilated tap
      ops::shift_right_backward<T>(ctx, CView(dsh), dpre, std::int64_t(1) << k);  // dpre: free now
      ops::axpy<T>(ctx, T(1), CView(dpre), dzin);
    }
  }

 private:
  static Config check(Config c) {
    c = check_resample(c, "DilatedConvCompress");
    HSEQ_CHECK(c.factor >= 2 && c.factor <= (std::int64_t(1) << kMaxDepth),
               "DilatedConvCompress: the rate " << c.factor << " must be at least 2 and at most "
                                                   << (std::int64_t(1) << kMaxDepth));
    return c;
  }
  template <class X, class Y>
  void check_shapes(X const& old, Y const& compressed) const {
    HSEQ_CHECK(old.rank() == 3 && old.size(2) == cfg_.dim && old.size(1) % cfg_.factor == 0 &&
                   compressed.shape == (Shape{old.size(0), old.size(1) / cfg_.factor, cfg_.dim}),
               "DilatedConvCompress: old " << old.shape << ", compressed " << compressed.shape << " (expected [B, n, "
                                           << cfg_.dim << "] with n a multiple of " << cfg_.factor
                                           << " and [B, n / " << cfg_.factor << ", " << cfg_.dim << "])");
  }
  void carve(Arena<Space>& a, std::int64_t groups) const {
    Saved s;
    s.groups = groups;
    carve_into(a, s);
  }
  void carve_into(Arena<Space>& a, Saved& s) const {
    Shape const g{s.groups, cfg_.factor, cfg_.dim};
    s.depth = std::size_t(depth());
    for (std::size_t k = 0; k < s.depth; ++k) {
      Layer& L = s.layers[k];
      L.shifted = a.template take<T>(g, "dilated.shifted");
      L.pre = a.template take<T>(g, "dilated.pre");
      L.out = a.template take<T>(g, "dilated.out");
    }
  }
  Config cfg_;
  std::vector<nn::Linear<B, T>> shift_, here_;
};

/// Keeps, in each batch row, the n / c evicted rows with the largest usage (ties: the earlier row),
/// in their original order. The selection is made on the host from the usage [B, n] (a download on
/// a GPU), then the rows are gathered on the backend (`ops::embedding_forward` over the rows of
/// old as a table). Not differentiable in the usage; backward scatters dcompressed to the kept rows.
template <Backend B, class T>
class MostUsedCompress {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  struct Saved {
    View<std::int32_t, Space> rows;  // [B n / c] kept rows of old as [B n, d] (b n + i)
  };

  explicit MostUsedCompress(Config c) : cfg_(check_resample(c, "MostUsedCompress")) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t batch, std::int64_t n) const {
    return aligned_bytes<std::int32_t>(batch * (n / cfg_.factor));
  }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  /// Without a usage there is nothing to rank by.
  Saved forward(Ctx&, CView, MView, Arena<Space>&) const {
    HSEQ_FAIL("MostUsedCompress: the most-used compression needs the memories' usage: call "
              "forward(ctx, old, usage, compressed, ws)");
  }
  /// compressed [B, n / c, d] = the rows of old [B, n, d] with the largest usage [B, n] (host
  /// memory: usage is small and ranked on the host).
  Saved forward(Ctx& ctx, CView old, std::span<double const> usage, MView compressed, Arena<Space>& ws) const {
    std::int64_t const c = cfg_.factor, d = cfg_.dim;
    HSEQ_CHECK(old.rank() == 3 && old.size(2) == d && old.size(1) % c == 0 &&
                   compressed.shape == (Shape{old.size(0), old.size(1) / c, d}) &&
                   std::int64_t(usage.size()) == old.size(0) * old.size(1),
               "MostUsedCompress: old " << old.shape << ", " << usage.size() << " usages, compressed " << compressed.shape
                                        << " (expected [B, n, " << d << "], B n usages, [B, n / " << c << ", " << d
                                        << "])");
    std::int64_t const bsz = old.size(0), n = old.size(1), keep = n / c;
    Saved s;
    s.rows = ws.template take<std::int32_t>(Shape{bsz * keep}, "mostused.rows");
    order_.resize(std::size_t(n));
    picked_.resize(std::size_t(bsz * keep));
    for (std::int64_t b = 0; b < bsz; ++b) {
      double const* u = usage.data() + b * n;
      std::iota(order_.begin(), order_.end(), 0);
      // The keep largest usages, the earlier row first among equal ones (an explicit tie-break:
      // std::stable_sort would allocate a buffer per call), then back in row order.
      std::nth_element(order_.begin(), order_.begin() + keep, order_.end(), [u](std::int32_t x, std::int32_t y) {
        return u[x] > u[y] || (u[x] == u[y] && x < y);
      });
      std::sort(order_.begin(), order_.begin() + keep);
      for (std::int64_t i = 0; i < keep; ++i) picked_[std::size_t(b * keep + i)] = std::int32_t(b * n + order_[std::size_t(i)]);
    }
    if constexpr (std::is_same_v<Space, HostSpace>) {
      std::copy(picked_.begin(), picked_.end(), s.rows.data);
    } else {
      B::template upload<std::int32_t>(ctx, s.rows.data, picked_.data(), picked_.size());
    }
    ops::embedding_forward<T>(ctx, CView(old.data, Shape{bsz * n, d}), View<std::int32_t const, Space>(s.rows),
                              MView(compressed.data, Shape{bsz * keep, d}));
    return s;
  }
  /// dold (overwritten): dcompressed at the kept rows, zero elsewhere.
  void backward(Ctx& ctx, Saved const& s, CView dcompressed, MView dold, Arena<Space>&) const {
    ops::fill<T>(ctx, dold, T(0));
    ops::embedding_backward<T>(ctx, View<std::int32_t const, Space>(s.rows),
                               CView(dcompressed.data, Shape{s.rows.numel(), cfg_.dim}),
                               MView(dold.data, Shape{dold.numel() / cfg_.dim, cfg_.dim}));
  }

 private:
  Config cfg_;
  mutable std::vector<std::int32_t> order_, picked_;  // host scratch, sized at the first call
};

// ---------------------------------------------------------------------------------------------
// Policy tags: the rate C is compile-time; the model builds `Module<B, T>` with factor = kRate.

/// What every compression tag shares: the rate, whether the function has parameters and whether it
/// ranks by usage, and the module template.
template <std::int64_t C, template <Backend, class> class M, bool Learned, bool UsesUsage>
struct RatedCompression {
  static_assert(C >= 2, "a memory compression rate must be at least 2");
  static constexpr std::int64_t kRate = C;
  static constexpr bool kLearned = Learned, kUsesUsage = UsesUsage;
  template <Backend B, class T>
  using Module = M<B, T>;
};

template <std::int64_t C>
struct MeanPool : RatedCompression<C, AvgPoolShorten, false, false> {
  static constexpr char const* kName = "mean";
};
template <std::int64_t C>
struct MaxPool : RatedCompression<C, MaxPoolCompress, false, false> {
  static constexpr char const* kName = "max";
};
template <std::int64_t C>
struct Conv : RatedCompression<C, LinearPoolShorten, true, false> {
  static constexpr char const* kName = "conv";
};
template <std::int64_t C>
struct DilatedConv : RatedCompression<C, DilatedConvCompress, true, false> {
  static constexpr char const* kName = "dilated";
};
template <std::int64_t C>
struct MostUsed : RatedCompression<C, MostUsedCompress, false, true> {
  static constexpr char const* kName = "most-used";
};

}  // namespace hseq::hier
