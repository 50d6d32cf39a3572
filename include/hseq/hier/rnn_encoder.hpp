// SPDX-License-Identifier: MIT
/// @file
/// @brief `RnnEncoder`: HRED's sub-sequence encoder (spec models.md §1.1): a GRU or LSTM over each
/// segment's byte embeddings, started from zeros at every segment (reset at each boundary), whose
/// last state is the segment's vector. No interaction across segments.
///
///   h_{i,r} = Cell(h_{i,r-1}, x_{iK+r}),  h_{i,-1} = 0        e_i = h_{i,K-1}      [B, N, d]
///
/// The segments run as one batch of B N sequences of length K (a reshape of x: no copy).
///
/// Variable segments (a `VariableSegmenter`, e.g. `Delimited`; `forward(ctx, x, lengths, e, ws)`):
/// x is a padded grid of K = MaxLen rows per segment; the cell runs over all K rows and e_i is its
/// state after the segment's last real byte, e_i = y_i[len_i - 1], gathered by row
/// (ops::embedding_forward with `lengths.last`). Later (padding) rows cannot reach it (the
/// recurrence is causal) and receive no gradient; running them costs K - len_i wasted steps but
/// keeps one batched recurrence (per-row ragged steps would cost a copy per row and step). A
/// padding segment (length 0) reads row 0 of its grid (the model never uses it for a real byte).
///
/// Reads PartConfig's dim, segment and cell (one layer, hidden width d).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/part_config.hpp"
#include "hseq/hier/segmenter_policy.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/rnn.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"

namespace hseq::hier {

template <Backend B, class T>
class RnnEncoderModule {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = PartConfig;
  using Rnn = nn::Rnn<B, T>;
  struct Saved {
    typename Rnn::Saved rnn;
    MView y;  // [B N, K, d] every step's state (the cell writes it; only the last is used)
    View<std::int32_t const, Space> last;  // [B N] variable segments: the row of y read per segment
  };

  explicit RnnEncoderModule(Config c)
      : cfg_(check_part(c, "RnnEncoder")), rnn_({cfg_.cell, cfg_.dim, cfg_.dim, true}) {}
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    rnn_.visit_params(f, prefix + "rnn.");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t rows = batch * (len / cfg_.segment);
    return aligned_bytes<T>(rows * cfg_.segment * cfg_.dim) + rnn_.forward_workspace(rows, cfg_.segment);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    return rnn_.backward_workspace(batch * (len / cfg_.segment), cfg_.segment);
  }

  /// e [B, N, d] from x [B, N K, d].
  Saved forward(Ctx& ctx, CView x, MView e, Arena<Space>& ws) const {
    std::int64_t k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == d && x.size(1) % k == 0,
               "RnnEncoder(dim " << d << ", segment " << k << "): x " << x.shape << " is not [B, N " << k << ", " << d
                                 << "]");
    std::int64_t bsz = x.size(0), n = x.size(1) / k, rows = bsz * n;
    check_shape(e, Shape{bsz, n, d}, "RnnEncoder: e");
    Saved s;
    s.y = ws.template take<T>(Shape{rows, k, d}, "rnn_enc.y");
    // B N sequences of K bytes from zero states; e_i = the last state          [B N, d]
    s.rnn = rnn_.forward(ctx, x.reshape(Shape{rows, k, d}), {}, s.y, {e.reshape(Shape{rows, d}), {}}, ws);
    return s;
  }

  /// Variable segments: e [B, S, d] from the padded grid x [B, S K, d]; e_i = y_i[len_i - 1].
  Saved forward(Ctx& ctx, CView x, SegmentLengths<Space> lengths, MView e, Arena<Space>& ws) const {
    std::int64_t k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == d && x.size(1) % k == 0,
               "RnnEncoder(dim " << d << ", segment " << k << "): x " << x.shape << " is not [B, N " << k << ", " << d
                                 << "]");
    std::int64_t bsz = x.size(0), n = x.size(1) / k, rows = bsz * n;
    check_shape(e, Shape{bsz, n, d}, "RnnEncoder: e");
    HSEQ_CHECK(lengths.last.numel() == rows && std::int64_t(lengths.host.size()) == rows,
               "RnnEncoder: " << lengths.host.size() << " lengths and " << lengths.last.numel() << " last rows for "
                              << rows << " segments");
    Saved s;
    s.y = ws.template take<T>(Shape{rows, k, d}, "rnn_enc.y");
    s.last = lengths.last;
    s.rnn = rnn_.forward(ctx, x.reshape(Shape{rows, k, d}), {}, s.y, {}, ws);  // every step  [B N, K, d]
    ops::embedding_forward<T>(ctx, CView(s.y).reshape(Shape{rows * k, d}), lengths.last,
                              e.reshape(Shape{rows, d}));                      // e_i = y_i[len_i - 1]
    return s;
  }

  /// dx [B, N K, d] (overwritten; may be empty) from de [B, N, d]; parameter gradients accumulate.
  /// After a variable-segment forward this overwrites the Saved's y with dy.
  void backward(Ctx& ctx, Saved const& s, CView de, MView dx, Arena<Space>& ws) const {
    std::int64_t rows = s.y.size(0), k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(de.numel() == rows * d, "RnnEncoder::backward: de " << de.shape << " for " << rows << " segments");
    if (!s.last.empty()) {  // dy = de scattered to each segment's last real row, zero elsewhere    [B N, K, d]
      ops::fill<T>(ctx, s.y, T(0));
      ops::embedding_backward<T>(ctx, s.last, de.reshape(Shape{rows, d}), s.y.reshape(Shape{rows * k, d}));
      rnn_.backward(ctx, s.rnn, s.y, {}, dx.empty() ? MView{} : dx.reshape(Shape{rows, k, d}), {}, ws);
      return;
    }
    // Only the final state is an output: no gradient enters through the per-step outputs.
    rnn_.backward(ctx, s.rnn, {}, {de.reshape(Shape{rows, d}), {}}, dx.empty() ? MView{} : dx.reshape(Shape{rows, k, d}),
                  {}, ws);
  }

 private:
  Config cfg_;
  Rnn rnn_;
};

/// Policy tag: the recurrent segment encoder (HRED); the cell is PartConfig::cell.
struct RnnEncoder {
  static constexpr char const* kName = "rnn";
  template <Backend B, class T>
  using Module = RnnEncoderModule<B, T>;
};

}  // namespace hseq::hier
