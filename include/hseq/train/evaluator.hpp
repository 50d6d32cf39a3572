// SPDX-License-Identifier: MIT
/// @file
/// @brief `Evaluator`: validation bits per character of a `models::Model` on a `TextDataset`,
/// forward only (no optimizer, no gradients, no backward workspace).
///
/// `evaluate(ctx, windows)` scores `windows` evenly spread windows of the validation split (window
/// `k * total / count` for k < count, `TextDataset::window`), `batch` at a time; the rows of the last
/// batch past the count are padding with ignored targets (-1). Each batch's mean loss is weighted by
/// the targets it counted (`trace.counted`), so the result is the mean NLL per predicted byte, in
/// bits. `Trainer::evaluate` is this class.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/model.hpp"

namespace hseq::train {

struct EvalConfig {
  std::int64_t batch = 16, seq_len = 256;
  std::int64_t windows = 64;  ///< windows per evaluation by default (0: the whole validation split)
};

template <Backend B, class T, class M>
  requires models::Model<M, B, T>
class Evaluator {
 public:
  using Ctx = typename B::Context;

  /// Owns its workspace (forward only) unless `shared` is given: then it uses that one, grown to fit
  /// if needed (a trainer passes its own, so validation costs no extra activation memory). A dataset
  /// without a usable validation split is accepted here and refused by `evaluate`.
  Evaluator(M& model, io::TextDataset const& data, EvalConfig cfg, Workspace<B>* shared = nullptr)
      : model_(model),
        data_(data),
        cfg_(check(cfg)),
        ws_(shared ? shared : &own_ws_),
        ids_(Shape{cfg.batch, cfg.seq_len}),
        targets_(Shape{cfg.batch, cfg.seq_len}),
        host_ids_(std::size_t(cfg.batch * cfg.seq_len)),
        host_targets_(std::size_t(cfg.batch * cfg.seq_len)) {
    ws_->reserve(model.forward_workspace(cfg.batch, cfg.seq_len));
  }
  Evaluator(Evaluator const&) = delete;
  Evaluator& operator=(Evaluator const&) = delete;

  EvalConfig const& config() const { return cfg_; }

  /// Windows a call with `windows` scores (-1: the config's count; 0: all): at most the number of
  /// validation windows of seq_len + 1 bytes.
  std::int64_t num_windows(std::int64_t windows = -1) const {
    if (windows < 0) windows = cfg_.windows;
    std::int64_t total = data_.num_windows(io::TextDataset::Split::kValidation, cfg_.seq_len);
    return windows == 0 ? total : std::min(windows, total);
  }

  /// Validation bits per character over `windows` evenly spread windows (-1: the config's count,
  /// 0: all of them). Throws when the validation split has no window of seq_len + 1 bytes.
  double evaluate(Ctx& ctx, std::int64_t windows = -1) {
    auto split = io::TextDataset::Split::kValidation;
    std::int64_t total = data_.num_windows(split, cfg_.seq_len);
    HSEQ_CHECK(total > 0, "Evaluator: the validation split of " << data_.name() << " (" << data_.size(split)
                                                        << " bytes) is too short for sequences of " << cfg_.seq_len << " + 1");
    std::int64_t const count = num_windows(windows), t = cfg_.seq_len;
    double nll = 0;
    std::int64_t counted = 0;
    for (std::int64_t first = 0; first < count; first += cfg_.batch) {
      for (std::int64_t r = 0; r < cfg_.batch; ++r) {
        std::int32_t* ids = host_ids_.data() + r * t;
        std::int32_t* tg = host_targets_.data() + r * t;
        if (first + r < count) {
          data_.window(split, (first + r) * total / count, t, ids, tg);
        } else {  // padding rows of the last batch: ignored targets
          std::fill(ids, ids + t, 0);
          std::fill(tg, tg + t, -1);
        }
      }
      B::template upload<std::int32_t>(ctx, ids_.data(), host_ids_.data(), host_ids_.size());
      B::template upload<std::int32_t>(ctx, targets_.data(), host_targets_.data(), host_targets_.size());
      auto arena = ws_->arena();
      double loss = model_.forward(ctx, ids_.cview(), targets_.cview(), arena, trace_);
      nll += loss * double(trace_.counted);
      counted += trace_.counted;
    }
    return nll / double(counted) / std::log(2.0);
  }

 private:
  static EvalConfig check(EvalConfig c) {
    HSEQ_CHECK(c.batch > 0 && c.seq_len > 0 && c.windows >= 0,
               "Evaluator: batch " << c.batch << " and seq_len " << c.seq_len << " must be positive, windows "
                                   << c.windows << " >= 0");
    return c;
  }

  M& model_;
  io::TextDataset const& data_;
  EvalConfig cfg_;
  Workspace<B> own_ws_;
  Workspace<B>* ws_;
  Tensor<std::int32_t, B> ids_, targets_;
  std::vector<std::int32_t> host_ids_, host_targets_;
  typename M::Trace trace_;
};

}  // namespace hseq::train
