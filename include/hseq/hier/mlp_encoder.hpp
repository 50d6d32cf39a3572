// SPDX-License-Identifier: MIT
/// @file
/// @brief `MlpEncoder`: HAED's segment encoder (spec models.md §2.3): the K byte embeddings of a
/// segment concatenated in order (a position-aware flatten), then a two-layer GELU MLP and a
/// LayerNorm. No interaction across segments.
///
///   z_i = [x_{iK}; x_{iK+1}; ...; x_{iK+K-1}]        [B, N, K d]   (a reshape: no copy)
///   e_i = LN(W_2 gelu(W_1 z_i + b_1) + b_2)           [B, N, d]
///
/// Variable segments (a `VariableSegmenter`, e.g. `Delimited`): the model pads each segment to K
/// = MaxLen rows with zeros (its gather reads a zero row there), so the flatten is
/// [x_{s}; ...; x_{s+len-1}; 0; ...; 0] and a padding row contributes W_1 0 = 0: padding never
/// reaches e. The vector of a segment of len bytes is therefore the same whatever the grid's
/// width beyond it holds, and the layer sees each byte's position within its segment (the column
/// block of W_1 it meets). `forward(ctx, x, lengths, e, ws)` is that case: the same computation.
///
/// Reads PartConfig's dim, segment, mlp_hidden (0: 4 dim), eps, init_std.
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/part_config.hpp"
#include "hseq/hier/segmenter_policy.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::hier {

template <Backend B, class T>
class MlpEncoderModule {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = PartConfig;
  struct Saved {
    typename nn::Linear<B, T>::Saved fc1, fc2;
    typename nn::LayerNorm<B, T>::Saved ln;
    MView h;  // [B N, hidden] W_1 z + b_1
    MView a;  // [B N, hidden] gelu(h)
    MView z;  // [B N, d]      before the LayerNorm
  };

  explicit MlpEncoderModule(Config c)
      : cfg_(normalise(c)),
        fc1_({cfg_.segment * cfg_.dim, cfg_.mlp_hidden, true, cfg_.init_std}),
        fc2_({cfg_.mlp_hidden, cfg_.dim, true, cfg_.init_std}),
        ln_({cfg_.dim, cfg_.eps}) {}
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    fc1_.visit_params(f, prefix + "fc1.");
    fc2_.visit_params(f, prefix + "fc2.");
    ln_.visit_params(f, prefix + "ln.");
  }

  /// len = N K bytes per sequence.
  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t rows = batch * (len / cfg_.segment);
    return nn::measure_workspace<Space>([&](Arena<Space>& a) { carve(a, rows); }) + ln_.forward_workspace(rows);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t rows = batch * (len / cfg_.segment);
    return aligned_bytes<T>(rows * cfg_.dim) + aligned_bytes<T>(rows * cfg_.mlp_hidden);
  }

  /// e [B, N, d] from x [B, N K, d].
  Saved forward(Ctx& ctx, CView x, MView e, Arena<Space>& ws) const {
    std::int64_t k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == d && x.size(1) % k == 0,
               "MlpEncoder(dim " << d << ", segment " << k << "): x " << x.shape << " is not [B, N " << k << ", " << d
                                 << "]");
    std::int64_t bsz = x.size(0), n = x.size(1) / k, rows = bsz * n;
    check_shape(e, Shape{bsz, n, d}, "MlpEncoder: e");
    Saved s = carve(ws, rows);
    CView z = x.reshape(Shape{rows, k * d});           // [B N, K d]  the segment's bytes side by side
    s.fc1 = fc1_.forward(ctx, z, s.h, ws);             // [B N, hid]
    ops::gelu_forward<T>(ctx, s.h, s.a);               // [B N, hid]
    s.fc2 = fc2_.forward(ctx, s.a, s.z, ws);           // [B N, d]
    s.ln = ln_.forward(ctx, s.z, e.reshape(Shape{rows, d}), ws);  // e = LN(z)  [B N, d]
    return s;
  }

  /// Variable segments: x [B, S K, d] is a padded grid whose rows past each segment's length are
  /// zero (the model's gather guarantees it), so the plain forward already ignores padding; the
  /// lengths are not needed. dx of padding rows (backward) is not used by the model's gather.
  Saved forward(Ctx& ctx, CView x, SegmentLengths<Space> /*lengths*/, MView e, Arena<Space>& ws) const {
    return forward(ctx, x, e, ws);
  }

  /// dx [B, N K, d] (overwritten; may be empty) from de [B, N, d]; parameter gradients accumulate.
  void backward(Ctx& ctx, Saved const& s, CView de, MView dx, Arena<Space>& ws) const {
    std::int64_t rows = s.z.rows(), d = cfg_.dim;
    HSEQ_CHECK(de.numel() == rows * d, "MlpEncoder::backward: de " << de.shape << " for " << rows << " segments of width " << d);
    ArenaScope<Space> scope(ws);
    MView dz = ws.template take<T>(Shape{rows, d}, "mlp_enc.dz");
    MView da = ws.template take<T>(s.h.shape, "mlp_enc.da");
    ln_.backward(ctx, s.ln, de.reshape(Shape{rows, d}), dz, ws);  // dz   [B N, d]
    fc2_.backward(ctx, s.fc2, dz, da, ws);                        // da   [B N, hid]
    ops::gelu_backward<T>(ctx, s.h, da, da);                      // dh   [B N, hid] (in place)
    fc1_.backward(ctx, s.fc1, da, dx.empty() ? MView{} : dx.reshape(Shape{rows, cfg_.segment * d}), ws);  // [B N, K d]
  }

 private:
  static Config normalise(Config c) {
    c = check_part(c, "MlpEncoder");
    if (c.mlp_hidden == 0) c.mlp_hidden = 4 * c.dim;
    return c;
  }
  Saved carve(Arena<Space>& a, std::int64_t rows) const {
    Saved s;
    s.h = a.template take<T>(Shape{rows, cfg_.mlp_hidden}, "mlp_enc.h");
    s.a = a.template take<T>(Shape{rows, cfg_.mlp_hidden}, "mlp_enc.a");
    s.z = a.template take<T>(Shape{rows, cfg_.dim}, "mlp_enc.z");
    return s;
  }

  Config cfg_;
  nn::Linear<B, T> fc1_, fc2_;
  nn::LayerNorm<B, T> ln_;
};

/// Policy tag: the MLP segment encoder (HAED).
struct MlpEncoder {
  static constexpr char const* kName = "mlp";
  template <Backend B, class T>
  using Module = MlpEncoderModule<B, T>;
};

}  // namespace hseq::hier
