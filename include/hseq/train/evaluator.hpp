// SPDX-License-Identifier: MIT
/// @file
/// @brief `Evaluator`: validation of a `models::Model` on a `TextDataset` (bits per character, and
/// the mean loss and loss terms of the model's current objective), forward only (no optimizer, no
/// gradients, no backward workspace).
///
/// `measure(ctx, windows)` scores `windows` evenly spread windows of the validation split (window
/// `k * total / count` for k < count, `TextDataset::window`), `batch` at a time, in whatever
/// objective the model is in (a trainer's phase sets it: `set_phase`), and returns an `EvalResult`:
///   - `bpc`: the mean NLL per predicted byte, in bits. The rows of the last batch past the count
///     are padding with ignored targets (-1), and each batch's mean is weighted by the targets it
///     counted (`trace.counted`). For a model with loss terms (`trace.terms`, train/trainer.hpp) it
///     is the byte cross-entropy term "ce" only (another term, a regulariser say, is no byte
///     likelihood). NaN when the objective has no byte likelihood: no target counted (HAED's IEM
///     phase) or, with terms, no "ce" term.
///   - `loss` and `terms`: the mean total loss and the mean of every loss term the forward reported,
///     in nats, so that a phase without byte likelihood still shows its own objective (HAED's IEM
///     phase: `term("iem")`). Batches are weighted by their counted targets, or, in an objective
///     that counts none, by their real (non-padding) windows; such an objective reads its targets
///     from the ids (IEM: the next segments), so padding rows would be scored as windows (and serve
///     as in-batch negatives): the last batch, when it has padding, is run again over its real rows
///     alone ([r, seq_len]).
/// Memory models (Transformer-XL): by default each window is scored in one forward without a memory
/// (the training stream's memory is unbound meanwhile, `models::UnboundMemory`); with
/// `EvalConfig::segment` each window is scored segment by segment over the evaluator's own memory
/// (`memory_rows` rows per layer), which starts empty at every window: with a memory covering the
/// window, that equals one pass over it.
/// The evaluator only runs the model's forward: in HAED's IEM objective that is the encoder,
/// backbone and IEM head, never the decoder. `evaluate(ctx, windows)` is `measure(...).bpc`;
/// `Trainer::evaluate` is this class.
///
/// Task scoring: `EvalConfig::score_after` scores only the targets that follow one byte (a task's
/// answers: the long-range recall task's '?', bench/long_range.sh): `bpc` is then their NLL in bits,
/// computed in double from the logits (`trace.logits` [B, T, V]) at those positions; the model's
/// forward still runs on every target (so `loss` and `terms` stay its objective, and a segment
/// without an answer still moves the memory). `EvalConfig::accuracy` also counts the scored targets
/// that the model's most likely byte (the argmax of the logits, the first on ties) gets right
/// (`EvalResult::accuracy`). Either downloads the logits after every forward.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/memory_model.hpp"
#include "hseq/models/model.hpp"

namespace hseq::train {

/// One loss term of a step or an evaluation (see train/trainer.hpp, "Loss terms"): the model's name
/// for it (a string with static storage, as the model's trace holds it) and its value in nats.
struct LossTerm {
  char const* name = "";
  double value = 0;
};
/// Loss terms a model reports per forward at most (fixed arrays, so recording never allocates).
inline constexpr std::size_t kMaxLossTerms = 16;

/// What `Evaluator::measure` returns (see the file comment).
struct EvalResult {
  /// Bits per predicted byte; NaN in an objective without byte likelihood.
  double bpc = std::numeric_limits<double>::quiet_NaN();
  /// Mean total loss of the model's current objective, in nats.
  double loss = std::numeric_limits<double>::quiet_NaN();
  std::int64_t windows = 0;  ///< validation windows scored
  std::int64_t targets = 0;  ///< targets scored (the byte objective's counted ones, or score_after's)
  /// With `EvalConfig::accuracy`: the fraction of the scored targets that the argmax of the logits
  /// predicts; NaN otherwise (or when no target was scored).
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  std::array<LossTerm, kMaxLossTerms> terms{};
  std::size_t n_terms = 0;

  /// The mean of every term the forward reported, in the model's order (empty for a model without
  /// terms).
  std::span<LossTerm const> loss_terms() const { return {terms.data(), n_terms}; }
  /// The mean of term `name` in nats, NaN when the evaluation had no such term.
  double term(std::string_view name) const {
    for (LossTerm const& t : loss_terms())
      if (name == t.name) return t.value;
    return std::numeric_limits<double>::quiet_NaN();
  }
};

struct EvalConfig {
  std::int64_t batch = 16, seq_len = 256;
  std::int64_t windows = 64;  ///< windows per evaluation by default (0: the whole validation split)
  /// Memory models only (`models::MemoryModel`): > 0 scores each window in consecutive segments of
  /// this many bytes (it must divide seq_len) over the evaluator's own memory, which starts empty at
  /// every window (Transformer-XL's evaluation); 0 scores each window in one forward, without a
  /// memory.
  std::int64_t segment = 0;
  /// With `segment`: the evaluation memory's rows per layer (0: the model's own memory length).
  /// Longer than in training is Transformer-XL's evaluation setting.
  std::int64_t memory_rows = 0;
  /// A byte value (0-255): score only the targets whose input byte is this one (the byte that
  /// follows it: a task's answer); -1 scores every target.
  std::int32_t score_after = -1;
  /// Report `EvalResult::accuracy` (argmax of the logits against the scored targets).
  bool accuracy = false;
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
    if (cfg_.segment > 0) {
      if constexpr (models::MemoryModel<M>) {
        std::int64_t const rows = cfg_.memory_rows > 0 ? cfg_.memory_rows : model.config().mem_len;
        memory_ = model.make_memory(cfg_.batch, rows);
        seg_ids_ = Tensor<std::int32_t, B>(Shape{cfg_.batch, cfg_.segment});
        seg_targets_ = Tensor<std::int32_t, B>(Shape{cfg_.batch, cfg_.segment});
        seg_host_ids_.resize(std::size_t(cfg_.batch * cfg_.segment));
        seg_host_targets_.resize(std::size_t(cfg_.batch * cfg_.segment));
        // A forward over a segment plans for the model's own memory; the evaluation memory may be longer.
        ws_->reserve(model.forward_workspace(cfg_.batch, cfg_.segment, rows));
      } else {
        HSEQ_FAIL("Evaluator: EvalConfig::segment " << cfg_.segment << " is for models with a memory (Transformer-XL); "
                                                    << "this model has none");
      }
    } else {
      ws_->reserve(model.forward_workspace(cfg.batch, cfg.seq_len));
    }
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
  /// 0: all of them): `measure(ctx, windows).bpc`, NaN in an objective without byte likelihood.
  double evaluate(Ctx& ctx, std::int64_t windows = -1) { return measure(ctx, windows).bpc; }

  /// Bits per character, mean loss and mean loss terms over `windows` evenly spread windows (-1:
  /// the config's count, 0: all of them), in the model's current objective (see the file comment).
  /// Throws when the validation split has no window of seq_len + 1 bytes.
  EvalResult measure(Ctx& ctx, std::int64_t windows = -1) {
    auto split = io::TextDataset::Split::kValidation;
    std::int64_t total = data_.num_windows(split, cfg_.seq_len);
    HSEQ_CHECK(total > 0, "Evaluator: the validation split of " << data_.name() << " (" << data_.size(split)
                                                        << " bytes) is too short for sequences of " << cfg_.seq_len << " + 1");
    std::int64_t const count = num_windows(windows), t = cfg_.seq_len;
    // Independent windows: a memory model scores each without a memory, and the training
    // stream's memory (bound by a trainer) is neither read nor moved.
    models::UnboundMemory<M> unbound(model_);
    EvalResult out;
    out.windows = count;
    double nll = 0;  // byte objective: sum of batch mean x counted targets
    std::int64_t counted = 0;
    LogitScores scores;  // score_after / accuracy
    double loss_sum = 0, weight_sum = 0;  // any objective: see the file comment for the weights
    std::array<double, kMaxLossTerms> term_sum{}, term_weight{};
    for (std::int64_t first = 0; first < count; first += cfg_.batch) {
      for (std::int64_t r = 0; r < cfg_.batch; ++r) {
        std::int32_t* ids = host_ids_.data() + r * t;
        std::int32_t* tg = host_targets_.data() + r * t;
        if (first + r < count) {
          data_.window(split, (first + r) * total / count, t, ids, tg);
          if constexpr (models::kReconstructsInput<M>) std::copy(ids, ids + t, tg);  // an autoencoder's targets
        } else {  // padding rows of the last batch: ignored targets
          std::fill(ids, ids + t, 0);
          std::fill(tg, tg + t, -1);
        }
      }
      std::int64_t const real = std::min(cfg_.batch, count - first);
      std::int64_t const pieces = cfg_.segment > 0 ? t / cfg_.segment : 1;
      if (cfg_.segment == 0) {
        B::template upload<std::int32_t>(ctx, ids_.data(), host_ids_.data(), host_ids_.size());
        B::template upload<std::int32_t>(ctx, targets_.data(), host_targets_.data(), host_targets_.size());
      } else {
        reset_memory(ctx);  // every window starts with an empty memory
      }
      for (std::int64_t piece = 0; piece < pieces; ++piece) {
      double loss = 0;
      if (cfg_.segment == 0) {
        loss = forward(ctx, cfg_.batch);
        // No target counted: an objective that scores the ids themselves, padding rows included;
        // score the real rows alone (the first rows of the uploaded batch).
        if (trace_.counted == 0 && real < cfg_.batch) loss = forward(ctx, real);
        if (logits_scored()) score_logits(ctx, host_ids_.data(), host_targets_.data(), scores);
      } else {
        loss = forward_segment(ctx, piece);
        if (logits_scored()) score_logits(ctx, seg_host_ids_.data(), seg_host_targets_.data(), scores);
      }
      nll += loss * double(trace_.counted);
      counted += trace_.counted;
      double const w = trace_.counted > 0 ? double(trace_.counted) : double(real);
      loss_sum += loss * w;
      weight_sum += w;
      if constexpr (requires(typename M::Trace const& tr) { tr.terms; }) {
        for (auto const& term : trace_.terms) {
          static_assert(std::convertible_to<decltype(term.name), char const*> &&
                            std::convertible_to<decltype(term.value), double>,
                        "Evaluator: M::Trace::terms must hold {char const* name; double value;}");
          std::size_t k = 0;
          while (k < out.n_terms && std::string_view(out.terms[k].name) != std::string_view(term.name)) ++k;
          if (k == out.n_terms) {
            HSEQ_CHECK(k < kMaxLossTerms, "Evaluator: the model reports more than " << kMaxLossTerms << " loss terms");
            out.terms[k].name = term.name;
            ++out.n_terms;
          }
          term_sum[k] += double(term.value) * w;
          term_weight[k] += w;
        }
      }
      }  // segments
    }
    out.loss = loss_sum / weight_sum;
    out.targets = logits_scored() ? scores.n : counted;
    if (cfg_.accuracy && scores.n > 0) out.accuracy = double(scores.hits) / double(scores.n);
    for (std::size_t k = 0; k < out.n_terms; ++k) out.terms[k].value = term_sum[k] / term_weight[k];
    if (counted == 0) {
      out.bpc = std::numeric_limits<double>::quiet_NaN();
    } else if (cfg_.score_after >= 0) {
      out.bpc = scores.n > 0 ? scores.nll / double(scores.n) / std::log(2.0) : std::numeric_limits<double>::quiet_NaN();
    } else if constexpr (requires(typename M::Trace const& tr) { tr.terms; }) {
      // The byte cross-entropy term, weighted by the counted targets exactly as the loss (so for a
      // model whose loss is its "ce" term the figure is the same to the bit).
      out.bpc = out.term("ce") / std::log(2.0);
    } else {
      out.bpc = nll / double(counted) / std::log(2.0);
    }
    return out;
  }

 private:
  /// Segment `piece` of every row of the host batch, uploaded and run over the evaluation memory.
  double forward_segment(Ctx& ctx, std::int64_t piece) {
    if constexpr (models::MemoryModel<M>) {
      std::int64_t const t = cfg_.seq_len, n = cfg_.segment;
      for (std::int64_t r = 0; r < cfg_.batch; ++r) {
        std::copy_n(host_ids_.data() + r * t + piece * n, n, seg_host_ids_.data() + r * n);
        std::copy_n(host_targets_.data() + r * t + piece * n, n, seg_host_targets_.data() + r * n);
      }
      B::template upload<std::int32_t>(ctx, seg_ids_.data(), seg_host_ids_.data(), seg_host_ids_.size());
      B::template upload<std::int32_t>(ctx, seg_targets_.data(), seg_host_targets_.data(), seg_host_targets_.size());
      using Ids = View<std::int32_t const, typename B::Space>;
      model_.bind_memory(&memory_);
      auto arena = ws_->arena();
      return model_.forward(ctx, Ids(seg_ids_.data(), Shape{cfg_.batch, n}), Ids(seg_targets_.data(), Shape{cfg_.batch, n}),
                            arena, trace_);
    } else {
      (void)ctx, (void)piece;
      HSEQ_FAIL("Evaluator: segments need a memory model");
    }
  }
  /// Sums over the positions the logits score (see the file comment).
  struct LogitScores {
    double nll = 0;  ///< nats
    std::int64_t hits = 0, n = 0;
  };
  bool logits_scored() const { return cfg_.score_after >= 0 || cfg_.accuracy; }
  /// Adds the last forward's scored positions to `s`: `ids`, `targets` [rows, t] on the host (-1:
  /// ignored), the logits [rows, t, V] on the device; with score_after only the positions whose id
  /// is that byte.
  void score_logits(Ctx& ctx, std::int32_t const* ids, std::int32_t const* targets, LogitScores& s) {
    if constexpr (!kHasLogits) {
      (void)ctx, (void)ids, (void)targets, (void)s;  // refused by check()
    } else {
      auto const& lg = trace_.logits;
      if (lg.data == nullptr || trace_.counted == 0) return;  // an objective without byte logits
      std::int64_t const v = lg.size(2), n = lg.size(0) * lg.size(1);
      host_logits_.resize(std::size_t(n * v));  // grows once: the same shape every forward
      B::template download<T>(ctx, host_logits_.data(), lg.data, host_logits_.size());
      for (std::int64_t i = 0; i < n; ++i) {
        if (targets[i] < 0 || (cfg_.score_after >= 0 && ids[i] != cfg_.score_after)) continue;
        T const* row = host_logits_.data() + i * v;
        T const* top = std::max_element(row, row + v);
        double z = 0;
        for (std::int64_t k = 0; k < v; ++k) z += std::exp(double(row[k]) - double(*top));
        s.nll += std::log(z) + double(*top) - double(row[targets[i]]);
        s.hits += std::int64_t(top - row) == targets[i];
        ++s.n;
      }
    }
  }
  void reset_memory(Ctx& ctx) {
    if constexpr (models::MemoryModel<M>) {
      model_.bind_memory(&memory_);
      model_.reset_state(ctx);
    } else {
      (void)ctx;
    }
  }
  /// The model's forward over the first `rows` rows of the uploaded batch.
  double forward(Ctx& ctx, std::int64_t rows) {
    using Ids = View<std::int32_t const, typename B::Space>;
    auto arena = ws_->arena();
    return model_.forward(ctx, Ids(ids_.data(), Shape{rows, cfg_.seq_len}),
                          Ids(targets_.data(), Shape{rows, cfg_.seq_len}), arena, trace_);
  }
  static EvalConfig check(EvalConfig c) {
    HSEQ_CHECK((!c.accuracy && c.score_after < 0) || kHasLogits,
               "Evaluator: EvalConfig::accuracy and score_after need a model whose trace holds its logits "
               "(trace.logits [B, T, V])");
    HSEQ_CHECK(c.batch > 0 && c.seq_len > 0 && c.windows >= 0,
               "Evaluator: batch " << c.batch << " and seq_len " << c.seq_len << " must be positive, windows "
                                   << c.windows << " >= 0");
    HSEQ_CHECK(c.score_after >= -1 && c.score_after <= 255,
               "Evaluator: score_after " << c.score_after << " must be a byte value (0-255) or -1 (every target)");
    HSEQ_CHECK(c.segment >= 0 && c.memory_rows >= 0 && (c.segment == 0 || c.seq_len % c.segment == 0),
               "Evaluator: segments of " << c.segment << " bytes must divide the windows of " << c.seq_len
                                         << " (and memory_rows " << c.memory_rows << " be >= 0)");
    return c;
  }

  static constexpr bool kHasLogits = requires(typename M::Trace const& tr) { tr.logits.data; };

  M& model_;
  io::TextDataset const& data_;
  EvalConfig cfg_;
  Workspace<B> own_ws_;
  Workspace<B>* ws_;
  Tensor<std::int32_t, B> ids_, targets_;
  std::vector<std::int32_t> host_ids_, host_targets_;
  std::vector<T> host_logits_;  // score_after / accuracy: the last forward's logits
  typename M::Trace trace_;
  // Segment-by-segment evaluation of a memory model (EvalConfig::segment > 0).
  [[no_unique_address]] typename models::detail::MemoryOrNone<M>::type memory_{};
  Tensor<std::int32_t, B> seg_ids_, seg_targets_;
  std::vector<std::int32_t> seg_host_ids_, seg_host_targets_;
};

}  // namespace hseq::train
