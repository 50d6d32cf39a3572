// SPDX-License-Identifier: MIT
/// @file
/// @brief `Trainer`: the training loop for byte-level language models on a `TextDataset`.
///
/// One step = `grad_accum` micro-batches of random crops, mean loss, global-norm clipping, AdamW
/// with linear warm-up then cosine decay. A step whose loss or gradient norm is not finite is
/// skipped (nothing is updated) and counted; `max_bad_steps` of them in a row stop training with
/// an error. Validation reports bits per character. Checkpoints hold the parameters, the optimizer
/// moments and the trainer's position (step, data seed and data stream position), so a resumed run
/// continues the exact loss sequence of an uninterrupted one (all reductions are bit-reproducible);
/// resuming under another data seed is refused.
///
/// The model must satisfy `models::Model<M, B, T>` (models/model.hpp); a type that does not
/// is refused with a concept error naming the missing member.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/io/csv_log.hpp"
#include "hseq/io/progress.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/model.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/train/adamw.hpp"
#include "hseq/train/clip.hpp"
#include "hseq/train/schedule.hpp"

namespace hseq::train {

struct TrainerConfig {
  std::int64_t batch = 16, seq_len = 256;
  std::int64_t steps = 1000;      ///< total optimizer steps (the schedule's length); 0: until the time budget
  std::int64_t grad_accum = 1;    ///< micro-batches per step
  double lr = 1e-3, min_lr_ratio = 0.1;
  std::int64_t warmup = 100;
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double clip = 1.0;              ///< global gradient-norm limit (<= 0: no clipping)
  std::int64_t eval_every = 100;  ///< steps between validations (0: only at the end)
  std::int64_t eval_windows = 64; ///< validation windows per evaluation (0: the whole split)
  std::int64_t ckpt_every = 0;    ///< steps between checkpoints (0: only at the end, if a path is set)
  std::string ckpt_path;          ///< where checkpoints go (empty: none)
  std::int64_t max_bad_steps = 5; ///< consecutive non-finite steps tolerated before stopping
  std::uint64_t seed = 1234;      ///< data-sampling stream
  double time_budget_s = 0;       ///< stop after this much training time (0: no limit). With steps = 0
                                  ///< the cosine decay follows the fraction of the budget used
                                  ///< (wall-clock dependent, so not bit-reproducible).
};

/// Where a run is: enough to continue it exactly.
struct TrainerState {
  std::int64_t step = 0;         ///< optimizer steps taken (including skipped ones)
  std::uint64_t data_pos = 0;    ///< position of the data-sampling stream
  std::int64_t skipped = 0;      ///< steps skipped for a non-finite loss or gradient
  std::int64_t bad_in_row = 0;
  std::int64_t tokens = 0;       ///< training tokens consumed
  double elapsed_s = 0;          ///< training time so far (excluding validation)
  double last_val_bpc = std::numeric_limits<double>::quiet_NaN();
  /// Seed of the data-sampling stream (`TrainerConfig::seed`) that `data_pos` is a position in.
  /// Empty only in states read from checkpoints written before the seed was recorded.
  std::optional<std::uint64_t> data_seed;

  std::string to_json() const {
    nlohmann::json j{{"step", step},       {"data_pos", data_pos}, {"skipped", skipped}, {"bad_in_row", bad_in_row},
                     {"tokens", tokens},   {"elapsed_s", elapsed_s}};
    if (std::isfinite(last_val_bpc)) j["last_val_bpc"] = last_val_bpc;
    if (data_seed) j["data_seed"] = *data_seed;
    return j.dump();
  }
  static TrainerState from_json(std::string const& text) {
    TrainerState s;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
      s.step = j.at("step").get<std::int64_t>();
      s.data_pos = j.at("data_pos").get<std::uint64_t>();
      s.skipped = j.at("skipped").get<std::int64_t>();
      s.bad_in_row = j.at("bad_in_row").get<std::int64_t>();
      s.tokens = j.at("tokens").get<std::int64_t>();
      s.elapsed_s = j.at("elapsed_s").get<double>();
      if (j.contains("last_val_bpc")) s.last_val_bpc = j.at("last_val_bpc").get<double>();
      if (j.contains("data_seed")) s.data_seed = j.at("data_seed").get<std::uint64_t>();
    } catch (nlohmann::json::exception const& e) {
      HSEQ_FAIL("TrainerState: invalid trainer state '" << text << "': " << e.what());
    }
    return s;
  }
};

template <Backend B, class T, class M>
  requires models::Model<M, B, T>
class Trainer {
 public:
  using Ctx = typename B::Context;
  using Space = typename B::Space;

  /// `ctx` is used only to zero the optimizer's moments; every later call takes its own context.
  Trainer(Ctx& ctx, M& model, nn::ParamStore<B, T>& params, io::TextDataset const& data, TrainerConfig cfg)
      : model_(model),
        params_(params),
        data_(data),
        cfg_(check(cfg)),
        opt_(ctx, params, {cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay}),
        schedule_(cfg.lr, cfg.warmup, std::max<std::int64_t>(cfg.steps, 1), cfg.min_lr_ratio),
        rng_(cfg.seed, 0xDA7A),
        ws_(model.forward_workspace(cfg.batch, cfg.seq_len) + model.backward_workspace(cfg.batch, cfg.seq_len)),
        ids_(Shape{cfg.batch, cfg.seq_len}),
        targets_(Shape{cfg.batch, cfg.seq_len}),
        host_ids_(std::size_t(cfg.batch * cfg.seq_len)),
        host_targets_(std::size_t(cfg.batch * cfg.seq_len)) {
    // The loss history is the only growing container; reserve it so steps do not allocate
    // (time-budgeted runs longer than this reserve grow it geometrically, rarely).
    losses_.reserve(std::size_t(std::max<std::int64_t>(cfg.steps, 1 << 14)));
    state_.data_seed = cfg.seed;
  }

  TrainerState const& state() const { return state_; }
  TrainerConfig const& config() const { return cfg_; }
  AdamW<B, T>& optimizer() { return opt_; }
  /// Loss of every step taken by this object (NaN for skipped steps).
  std::vector<double> const& losses() const { return losses_; }

  /// One optimizer step; returns its mean training loss in nats (NaN when skipped).
  double step(Ctx& ctx) {
    auto t0 = std::chrono::steady_clock::now();
    params_.zero_grad(ctx);
    double loss_sum = 0;
    for (std::int64_t micro = 0; micro < cfg_.grad_accum; ++micro) {
      data_.sample(io::TextDataset::Split::kTrain, rng_, cfg_.batch, cfg_.seq_len, host_ids_.data(),
                   host_targets_.data());
      upload_batch(ctx);
      auto arena = ws_.arena();
      loss_sum += model_.forward(ctx, ids_.cview(), targets_.cview(), arena, trace_);
      model_.backward(ctx, trace_, arena);
    }
    if (cfg_.grad_accum > 1) ops::scale<T>(ctx, params_.grads(), T(1.0 / double(cfg_.grad_accum)));
    double loss = loss_sum / double(cfg_.grad_accum);
    double norm = cfg_.clip > 0 ? clip_grad_norm(ctx, params_, cfg_.clip) : grad_norm(ctx, params_);
    state_.tokens += cfg_.batch * cfg_.seq_len * cfg_.grad_accum;
    state_.data_pos = rng_.position();
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++state_.skipped;
      ++state_.bad_in_row;
      ++state_.step;
      losses_.push_back(std::numeric_limits<double>::quiet_NaN());
      HSEQ_CHECK(state_.bad_in_row < cfg_.max_bad_steps,
                 "Trainer: " << state_.bad_in_row << " consecutive steps had a non-finite loss or gradient (step "
                             << state_.step << ", loss " << loss << ", gradient norm " << norm
                             << "); stopping. Lower the learning rate or check the data.");
      state_.elapsed_s += seconds_since(t0);
      return losses_.back();
    }
    state_.bad_in_row = 0;
    opt_.step(ctx, learning_rate());
    ++state_.step;
    losses_.push_back(loss);
    state_.elapsed_s += seconds_since(t0);
    return loss;
  }

  /// Validation bits per character over `windows` evenly spread windows (0: all of them).
  double evaluate(Ctx& ctx, std::int64_t windows = -1) {
    if (windows < 0) windows = cfg_.eval_windows;
    auto split = io::TextDataset::Split::kValidation;
    std::int64_t total = data_.num_windows(split, cfg_.seq_len);
    HSEQ_CHECK(total > 0, "Trainer::evaluate: the validation split is too short for sequences of " << cfg_.seq_len);
    std::int64_t count = windows == 0 ? total : std::min(windows, total);
    std::int64_t const t = cfg_.seq_len, per = t;
    double nll = 0;
    std::int64_t counted = 0;
    for (std::int64_t first = 0; first < count; first += cfg_.batch) {
      for (std::int64_t r = 0; r < cfg_.batch; ++r) {
        std::int32_t* ids = host_ids_.data() + r * per;
        std::int32_t* tg = host_targets_.data() + r * per;
        if (first + r < count) {
          data_.window(split, (first + r) * total / count, t, ids, tg);
        } else {  // padding rows of the last batch: ignored targets
          std::fill(ids, ids + t, 0);
          std::fill(tg, tg + t, -1);
        }
      }
      upload_batch(ctx);
      auto arena = ws_.arena();
      double loss = model_.forward(ctx, ids_.cview(), targets_.cview(), arena, trace_);
      nll += loss * double(trace_.counted);
      counted += trace_.counted;
    }
    state_.last_val_bpc = nll / double(counted) / std::log(2.0);
    return state_.last_val_bpc;
  }

  /// Trains until `steps` or the time budget, validating and checkpointing on schedule.
  /// `progress` and `csv` may be null. Returns the final validation bpc.
  double run(Ctx& ctx, io::Progress* progress = nullptr, io::CsvLog* csv = nullptr) {
    double bpc = std::numeric_limits<double>::quiet_NaN();
    while (cfg_.steps == 0 || state_.step < cfg_.steps) {
      if (cfg_.time_budget_s > 0 && state_.elapsed_s >= cfg_.time_budget_s) {
        if (progress) {
          std::ostringstream os;
          os << "time budget of " << cfg_.time_budget_s << " s reached after " << state_.step << " steps";
          progress->message(os.str());
        }
        break;
      }
      double loss = step(ctx);
      bool last = cfg_.steps > 0 && state_.step >= cfg_.steps;
      bool eval_now = cfg_.eval_every > 0 && state_.step % cfg_.eval_every == 0;
      if (eval_now) bpc = evaluate(ctx);
      if (progress)
        progress->update(state_.step, loss, loss / std::log(2.0),
                         double(state_.tokens) / std::max(state_.elapsed_s, 1e-9));
      if (csv) csv->row({double(state_.step), loss, loss / std::log(2.0), eval_now ? bpc : std::nan(""),
                         state_.elapsed_s, double(state_.tokens)});
      if (!cfg_.ckpt_path.empty() && cfg_.ckpt_every > 0 && state_.step % cfg_.ckpt_every == 0 && !last)
        save(ctx, cfg_.ckpt_path);
    }
    bool evaluated_last = cfg_.eval_every > 0 && state_.step % cfg_.eval_every == 0 && std::isfinite(state_.last_val_bpc);
    if (evaluated_last) {
      bpc = state_.last_val_bpc;
    } else {
      bpc = evaluate(ctx);
      // The final validation gets a row of its own, so logs end with the reported figure.
      if (csv) csv->row({double(state_.step), std::nan(""), std::nan(""), bpc, state_.elapsed_s, double(state_.tokens)});
    }
    if (progress) progress->finish();
    if (!cfg_.ckpt_path.empty()) save(ctx, cfg_.ckpt_path);
    return bpc;
  }

  /// The learning rate the next step uses.
  double learning_rate() const {
    if (cfg_.steps > 0) return schedule_(state_.step);
    return schedule_.at_fraction(state_.step, state_.elapsed_s / cfg_.time_budget_s);
  }

  /// Writes a checkpoint (atomically) with the parameters, the optimizer (state group "optim") and
  /// this trainer's state, downloading device memory on `ctx`.
  void save(Ctx& ctx, std::string const& path) {
    io::CheckpointInfo info{M::kKind, model_.config_json(), state_.to_json()};
    io::save_checkpoint(ctx, path, info, params_, {{"optim", opt_}});
  }

  /// Restores parameters, optimizer and position from a checkpoint of the same model structure,
  /// uploading on `ctx`.
  /// The trainer state is parsed first, so a malformed one changes nothing. The saved data position
  /// is a position in the stream of the seed that wrote it, so a checkpoint of another data seed is
  /// refused (before anything is loaded). Checkpoints written before the seed was recorded load
  /// with this trainer's seed.
  void load(Ctx& ctx, std::string const& path) {
    // The state is parsed and checked inside load_checkpoint's validation (check_info runs after
    // every other check and before anything is written), so state and tensors come from one read of
    // one file, and a bad state or seed leaves the model and optimizer untouched.
    TrainerState s;
    auto check_state = [&](io::CheckpointInfo const& info) {
      s = TrainerState::from_json(info.trainer_state);
      HSEQ_CHECK(!s.data_seed || *s.data_seed == cfg_.seed,
                 "Trainer::load: checkpoint " << path << " was trained with data seed " << *s.data_seed
                                              << " but this trainer's data seed is " << cfg_.seed
                                              << "; resuming would continue another data stream. Set "
                                                 "TrainerConfig::seed = "
                                              << *s.data_seed << " (hseq-train: --seed " << *s.data_seed << ")");
    };
    io::load_checkpoint(ctx, path, M::kKind, model_.config_json(), params_, {{"optim", opt_}}, check_state);
    state_ = s;
    state_.data_seed = cfg_.seed;  // the stream continues under this seed (also for seedless checkpoints)
    rng_.set_position(state_.data_pos);
  }

 private:
  static TrainerConfig check(TrainerConfig c) {
    HSEQ_CHECK(c.steps > 0 || c.time_budget_s > 0,
               "Trainer: give a number of steps or a time budget (steps " << c.steps << ", time budget "
                                                                         << c.time_budget_s << " s)");
    HSEQ_CHECK(c.batch > 0 && c.seq_len > 0 && c.steps >= 0 && c.grad_accum > 0 && c.max_bad_steps > 0,
               "Trainer: batch " << c.batch << ", seq_len " << c.seq_len << ", steps " << c.steps << ", grad_accum "
                                 << c.grad_accum << ", max_bad_steps " << c.max_bad_steps << " must be positive");
    return c;
  }
  void upload_batch(Ctx& ctx) {
    B::template upload<std::int32_t>(ctx, ids_.data(), host_ids_.data(), host_ids_.size());
    B::template upload<std::int32_t>(ctx, targets_.data(), host_targets_.data(), host_targets_.size());
  }
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  M& model_;
  nn::ParamStore<B, T>& params_;
  io::TextDataset const& data_;
  TrainerConfig cfg_;
  AdamW<B, T> opt_;
  WarmupCosine schedule_;
  Rng rng_;
  Workspace<B> ws_;
  Tensor<std::int32_t, B> ids_, targets_;
  std::vector<std::int32_t> host_ids_, host_targets_;
  typename M::Trace trace_;
  TrainerState state_;
  std::vector<double> losses_;
};

}  // namespace hseq::train
