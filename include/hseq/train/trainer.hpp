// SPDX-License-Identifier: MIT
/// @file
/// @brief `Trainer`: the training loop for byte-level language models on a `TextDataset`.
///
/// One step = `grad_accum` micro-batches from the task (train/task.hpp; by default `RandomCrops`,
/// random crops of the train split), mean loss, global-norm clipping, AdamW with linear warm-up then
/// cosine decay over all steps. A step whose loss or gradient norm is not finite is
/// skipped (nothing is updated) and counted; `max_bad_steps` of them in a row stop training with
/// an error. Validation reports bits per character. Checkpoints hold the parameters, the optimizer
/// moments and the trainer's position (step, data seed and data stream position), so a resumed run
/// continues the exact loss sequence of an uninterrupted one (all reductions are bit-reproducible);
/// resuming under another data seed is refused.
///
/// Phases (`TrainerConfig::phases`): consecutive stretches of steps, each with its own frozen
/// parameters and per-parameter learning-rate scales (glob patterns over parameter names,
/// nn/parameter.hpp). When a phase starts, every parameter is first reset to unfrozen with scale 1,
/// then the phase's patterns apply, then the model's optional `set_phase(std::string_view name)`
/// runs. The phase follows from the step count, so a resumed run is in the right phase with the
/// right flags. Without phases the trainer never touches the flags. The schedule is part of the
/// trainer state of a checkpoint (`TrainerState::phases`): a resumed trainer's phases must train
/// the steps the checkpoint has taken as the checkpoint's did (same phase, frozen patterns and lr
/// scales at each of them; `phases_disagreement`), and only the phases of the steps still to come
/// may differ (extending "iem" to "iem:N,decoder" at step N, say). A caller that wants to continue
/// the stored schedule reads it first (`TrainerState::from_json(io::read_checkpoint_info(path)
/// .trainer_state).phases`), as hseq-train does when --phases is not given.
///
/// Optional model protocols, detected at compile time (none is part of `models::Model`):
///   - Loss terms: when `M::Trace` has a member `terms`, a range of objects with `char const* name`
///     and a `value` convertible to double (a fixed-size array, so reporting allocates nothing), the
///     trainer records every term of every step (mean over the micro-batches), `last_terms()`.
///     The returned loss is the model's total: how terms are weighted into it is the model's
///     business (its config holds the weights), the trainer only reports them.
///     A model whose terms change with its objective (HAED: "ce" or "iem") declares every name it
///     can report in `static constexpr ... kLossTerms` (a range of `char const*`), so that `run`'s
///     CSV log has a fixed set of columns from the first row on and across phases and resumes
///     (`loss_term_names()`); without it the names in a default-constructed `M::Trace`'s terms are
///     the declaration (empty names skipped).
///   - Dropout: when `M::Trace` has a member `dropout` (an `nn::DropoutStream`, nn/dropout.hpp),
///     the trainer sets it before every training forward to `nn::training_dropout(seed, step,
///     micro)`: active, with a stream of its own per step and micro-batch, from the data seed
///     (TrainerConfig::seed, or the task's), so a resumed run draws the masks the uninterrupted one
///     would. The model hands it to its modules (their Configs hold the rates). The evaluator's
///     own trace leaves it inactive, so validation never drops.
///   - `set_phase(std::string_view)`: see phases above.
///   - `reset_state(ctx)`: called before a micro-batch that does not continue the previous one
///     (`Task::continues()`), for models that carry a memory across batches.
///   - A memory (`models::MemoryModel`, models/memory_model.hpp: Transformer-XL): the trainer owns
///     the training stream's memory (`make_memory(batch)`), binds it before every step, and saves
///     it in checkpoints as the state group "memory" (so a resumed run continues the stream
///     exactly: train with a task whose batches continue each other, `SequentialSegments`);
///     validation unbinds it while it scores (train/evaluator.hpp).
/// Validation is an `Evaluator` (train/evaluator.hpp) sharing the trainer's workspace; in a phase
/// without byte likelihood (HAED's IEM phase) it reports NaN bpc and the phase's own loss terms
/// (`last_eval()`).
///
/// Logs (`run`): the CSV columns are `log_columns()`: step, loss, bpc, val_bpc, seconds, tokens
/// (every model), val_accuracy for a model that reconstructs its input (`models::kReconstructsInput`:
/// the fraction of validation bytes whose argmax is the byte), then one column per declared loss term (the step's mean, nats; NaN in a step
/// without it), then val_<term> for each (the validation mean, nats; NaN in rows without a
/// validation or when the validation had no such term). The progress line adds the step's terms
/// and the last validation (`val bpc`, and `val <term>` for the terms other than "ce").
///
/// Several processes (data parallelism; `Comm`, comm/communicator.hpp: `comm::Single` by default,
/// `comm::Mpi` on CPUs, `comm::Nccl` on GPUs): every process holds the whole model and trains on its
/// own part of each step's batch.
///   - Data: the task is sharded (`shard(rank, size)`, train/task.hpp) so that the P processes with
///     batch b draw together what one process with batch P * b would: the global stream, its
///     position counted globally (so a checkpoint resumes under any process count).
///   - A step: each process computes the gradient of each of its micro-batches alone and sums them
///     in order (with grad_accum > 1, in a buffer of its own; a one-process run does the same); the
///     processes' sums are added in rank order (`all_reduce_sum`), then divided by the number of
///     micro-batches of the step, grad_accum * P. The loss and loss terms likewise. Clipping sees
///     the global gradient, and the optimizers, fed the same gradient, stay identical. Hence P
///     processes with batch b and grad_accum 1 take the steps of one process with batch b and
///     grad_accum P bit for bit (the same rows, the same sums in the same order); one process with
///     batch P * b in one micro-batch sums the rows inside its GEMMs in another order and agrees
///     to rounding. Dropout masks follow the step's micro-batch index, rank * grad_accum + micro.
///   - Start: the configuration, model and data are checked to agree on all processes (a clear
///     error on all of them when not), and rank 0's parameters are broadcast.
///   - Stops: a stop flag raised on any process, and the time budget on rank 0's clock, stop all
///     of them at the same step.
///   - Checkpoints: rank 0 writes them; every process loads them. A memory model's memory holds a
///     process's own rows, so it is saved only by runs of one process, and a run of several
///     processes (or resuming one) starts from an empty memory: not exact. Everything else resumes
///     exactly under another process count as long as P * batch * grad_accum is the same (a random
///     crop task continues its global stream for any batch).
///   - Validation: every process scores the same windows (the same result everywhere).
///
/// The model must satisfy `models::Model<M, B, T>` (models/model.hpp); a type that does not
/// is refused with a concept error naming the missing member.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/comm/communicator.hpp"
#include "hseq/comm/single.hpp"
#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/io/csv_log.hpp"
#include "hseq/io/progress.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/memory_model.hpp"
#include "hseq/models/model.hpp"
#include "hseq/nn/dropout.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/train/adamw.hpp"
#include "hseq/train/clip.hpp"
#include "hseq/train/evaluator.hpp"
#include "hseq/train/schedule.hpp"
#include "hseq/train/task.hpp"

namespace hseq::train {

/// A parameter group's learning-rate scale: parameters matching the glob `pattern` train with
/// lr * scale.
struct GroupLr {
  std::string pattern;
  double scale = 1.0;
};

/// A stretch of training with its own frozen parameters and learning-rate scales (see the file
/// comment). Patterns are globs over parameter names (`nn::glob_match`: "embed.*", "*.bias"); each
/// must match some parameter.
struct Phase {
  std::string name;                 ///< passed to the model's optional `set_phase`
  std::int64_t steps = 0;           ///< length; the last phase runs to the end whatever its steps
  std::vector<std::string> frozen;  ///< patterns of the parameters frozen during this phase
  std::vector<GroupLr> lr_scale;    ///< {pattern, scale}, applied in order (a later match wins)
};

/// The index into `phases` of the phase step `step` (0-based) trains in: phases follow each other,
/// the last one to the end (0 without phases).
inline std::size_t phase_index_at(std::vector<Phase> const& phases, std::int64_t step) {
  std::int64_t end = 0;
  for (std::size_t i = 0; i + 1 < phases.size(); ++i) {
    end += phases[i].steps;
    if (step < end) return i;
  }
  return phases.empty() ? 0 : phases.size() - 1;
}

/// A schedule in hseq-train's --phases syntax, "iem:800,decoder" (the last phase runs to the end,
/// so its steps are not shown); "none" without phases. Patterns are not shown (`describe_phase`).
inline std::string phases_text(std::vector<Phase> const& phases) {
  if (phases.empty()) return "none";
  std::string s;
  for (std::size_t i = 0; i < phases.size(); ++i) {
    s += (i ? "," : "") + phases[i].name;
    if (i + 1 < phases.size()) s += ":" + std::to_string(phases[i].steps);
  }
  return s;
}

/// "phase 'iem' (frozen decoder.*, start, ln_f.*)", with the lr scales when there are any.
inline std::string describe_phase(Phase const& p) {
  std::ostringstream os;
  os << "phase '" << p.name << "' (frozen";
  if (p.frozen.empty()) os << " nothing";
  for (std::size_t i = 0; i < p.frozen.size(); ++i) os << (i ? ", " : " ") << p.frozen[i];
  for (std::size_t i = 0; i < p.lr_scale.size(); ++i)
    os << (i ? ", " : "; lr scales ") << p.lr_scale[i].pattern << " x" << p.lr_scale[i].scale;
  os << ")";
  return os.str();
}

/// Whether two schedules train the steps [0, steps) alike: at every step the same phase (name,
/// frozen patterns and lr scales; its step count only matters through where it ends), or no phase
/// under both. Returns "" when they do, else where they first differ, the schedules named by the
/// labels ("at step 801 the checkpoint's trains phase 'decoder' (...), this trainer's phase 'iem'
/// (...)", steps counted from 1 as the logs count them).
inline std::string phases_disagreement(std::vector<Phase> const& a, std::string const& a_label,
                                       std::vector<Phase> const& b, std::string const& b_label, std::int64_t steps) {
  auto same = [](Phase const& x, Phase const& y) {
    if (x.name != y.name || x.frozen != y.frozen || x.lr_scale.size() != y.lr_scale.size()) return false;
    for (std::size_t i = 0; i < x.lr_scale.size(); ++i)
      if (x.lr_scale[i].pattern != y.lr_scale[i].pattern || x.lr_scale[i].scale != y.lr_scale[i].scale) return false;
    return true;
  };
  auto describe = [](std::vector<Phase> const& ph, std::int64_t s) {
    return ph.empty() ? std::string("no phase") : describe_phase(ph[phase_index_at(ph, s)]);
  };
  // Phases are constant between boundaries, so the steps where either schedule starts a phase
  // are the only ones to compare.
  std::vector<std::int64_t> starts{0};
  for (auto const* ph : {&a, &b}) {
    std::int64_t end = 0;
    for (std::size_t i = 0; i + 1 < ph->size(); ++i) starts.push_back(end += (*ph)[i].steps);
  }
  std::sort(starts.begin(), starts.end());
  for (std::int64_t s : starts) {
    if (s >= steps) break;
    bool agree = a.empty() == b.empty() && (a.empty() || same(a[phase_index_at(a, s)], b[phase_index_at(b, s)]));
    if (!agree)
      return "at step " + std::to_string(s + 1) + " " + a_label + " trains " + describe(a, s) + ", " + b_label + " " +
             describe(b, s);
  }
  return "";
}

/// The JSON of a schedule in the trainer state: [{"name", "steps", "frozen": [...], "lr_scale":
/// [{"pattern", "scale"}]}].
inline nlohmann::json phases_to_json(std::vector<Phase> const& phases) {
  nlohmann::json j = nlohmann::json::array();
  for (Phase const& p : phases) {
    nlohmann::json scales = nlohmann::json::array();
    for (GroupLr const& g : p.lr_scale) scales.push_back({{"pattern", g.pattern}, {"scale", g.scale}});
    j.push_back({{"name", p.name}, {"steps", p.steps}, {"frozen", p.frozen}, {"lr_scale", scales}});
  }
  return j;
}
inline std::vector<Phase> phases_from_json(nlohmann::json const& j) {
  std::vector<Phase> out;
  for (auto const& e : j.at("phases")) {
    Phase p;
    p.name = e.at("name").get<std::string>();
    p.steps = e.at("steps").get<std::int64_t>();
    if (e.contains("frozen")) p.frozen = e.at("frozen").get<std::vector<std::string>>();
    if (e.contains("lr_scale"))
      for (auto const& g : e.at("lr_scale"))
        p.lr_scale.push_back({g.at("pattern").get<std::string>(), g.at("scale").get<double>()});
    out.push_back(std::move(p));
  }
  return out;
}

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
  std::vector<Phase> phases;      ///< empty: one phase, all steps, the parameters' flags left alone
};

/// Where a run is: enough to continue it exactly.
struct TrainerState {
  std::int64_t step = 0;         ///< optimizer steps taken (including skipped ones)
  std::uint64_t data_pos = 0;    ///< position of the task's data stream (`Task::position()`)
  std::int64_t skipped = 0;      ///< steps skipped for a non-finite loss or gradient
  std::int64_t bad_in_row = 0;
  std::int64_t tokens = 0;       ///< training tokens consumed
  double elapsed_s = 0;          ///< training time so far (excluding validation)
  double last_val_bpc = std::numeric_limits<double>::quiet_NaN();
  /// Seed of the data-sampling stream (`TrainerConfig::seed`) that `data_pos` is a position in.
  /// Empty only in states read from checkpoints written before the seed was recorded.
  std::optional<std::uint64_t> data_seed;
  /// The phase schedule (`TrainerConfig::phases`) the run trains under; an empty list for a run
  /// without phases. Empty optional only in states read from checkpoints written before the
  /// schedule was recorded.
  std::optional<std::vector<Phase>> phases;
  /// How many processes trained the run (`comm::Communicator::size()`) when the state was written;
  /// empty in states written before it was recorded (one process).
  std::optional<std::int64_t> processes;

  std::string to_json() const {
    nlohmann::json j{{"step", step},       {"data_pos", data_pos}, {"skipped", skipped}, {"bad_in_row", bad_in_row},
                     {"tokens", tokens},   {"elapsed_s", elapsed_s}};
    if (std::isfinite(last_val_bpc)) j["last_val_bpc"] = last_val_bpc;
    if (data_seed) j["data_seed"] = *data_seed;
    if (phases) j["phases"] = phases_to_json(*phases);
    if (processes) j["processes"] = *processes;
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
      if (j.contains("phases")) s.phases = phases_from_json(j);
      if (j.contains("processes")) s.processes = j.at("processes").get<std::int64_t>();
    } catch (nlohmann::json::exception const& e) {
      HSEQ_FAIL("TrainerState: invalid trainer state '" << text << "': " << e.what());
    }
    return s;
  }
};

/// The loss-term names model M declares (see the file comment, "Loss terms"): `M::kLossTerms`, or
/// the non-empty names of a default-constructed `M::Trace`'s terms; empty for a model without terms.
template <class M>
std::vector<std::string> loss_term_names() {
  std::vector<std::string> names;
  if constexpr (requires { M::kLossTerms; }) {
    for (auto const& n : M::kLossTerms) names.emplace_back(std::string_view(n));
  } else if constexpr (requires(typename M::Trace const& tr) { tr.terms; }) {
    typename M::Trace const tr{};
    for (auto const& t : tr.terms)
      if (t.name != nullptr && *t.name != '\0') names.emplace_back(t.name);
  }
  return names;
}

template <Backend B, class T, class M, class TaskT = RandomCrops, class Comm = comm::Single>
  requires models::Model<M, B, T> && Task<TaskT> && comm::Communicator<Comm, B>
class Trainer {
 public:
  using Ctx = typename B::Context;
  using Space = typename B::Space;
  /// Loss terms recorded per step at most (a fixed array, so recording never allocates).
  static constexpr std::size_t kMaxLossTerms = train::kMaxLossTerms;
  /// The columns `run` writes before the loss terms' (see the file comment).
  static constexpr std::array<char const*, 6> kLogColumns{"step", "loss", "bpc", "val_bpc", "seconds", "tokens"};

  /// The default task: random crops of `data`'s train split with batch, seq_len and seed of `cfg`.
  /// `ctx` is used only to zero the optimizer's moments; every later call takes its own context.
  Trainer(Ctx& ctx, M& model, nn::ParamStore<B, T>& params, io::TextDataset const& data, TrainerConfig cfg)
    requires std::constructible_from<TaskT, io::TextDataset const&, std::int64_t, std::int64_t, std::uint64_t> &&
                 std::same_as<Comm, comm::Single>
      : Trainer(ctx, model, params, data, TaskT(data, check(cfg).batch, cfg.seq_len, cfg.seed), cfg, single_comm()) {}
  /// The default task on the processes of `comm` (see "Several processes" in the file comment).
  Trainer(Ctx& ctx, M& model, nn::ParamStore<B, T>& params, io::TextDataset const& data, TrainerConfig cfg,
          Comm& comm)
    requires std::constructible_from<TaskT, io::TextDataset const&, std::int64_t, std::int64_t, std::uint64_t>
      : Trainer(ctx, model, params, data, TaskT(data, check(cfg).batch, cfg.seq_len, cfg.seed), cfg, comm) {}

  /// Batches from `task` (whose batch and seq_len must be the config's); `data`'s validation split
  /// is still what `evaluate` scores.
  Trainer(Ctx& ctx, M& model, nn::ParamStore<B, T>& params, io::TextDataset const& data, TaskT task,
          TrainerConfig cfg)
    requires std::same_as<Comm, comm::Single>
      : Trainer(ctx, model, params, data, std::move(task), cfg, single_comm()) {}

  /// Batches from `task` on the processes of `comm`: the task is sharded (`shard(rank, size)`), the
  /// configuration checked to agree on every process, and rank 0's parameters broadcast to all
  /// (see "Several processes" in the file comment).
  Trainer(Ctx& ctx, M& model, nn::ParamStore<B, T>& params, io::TextDataset const& data, TaskT task,
          TrainerConfig cfg, Comm& comm)
      : comm_(&comm),
        model_(model),
        params_(params),
        cfg_(check(cfg)),
        task_(std::move(task)),
        opt_(ctx, params, {cfg_.lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay}),
        schedule_(cfg_.lr, cfg_.warmup, std::max<std::int64_t>(cfg_.steps, 1), cfg_.min_lr_ratio),
        ws_(model.forward_workspace(cfg_.batch, cfg_.seq_len) + model.backward_workspace(cfg_.batch, cfg_.seq_len)),
        evaluator_(model, data, eval_config(cfg_), &ws_),
        ids_(Shape{cfg_.batch, cfg_.seq_len}),
        targets_(Shape{cfg_.batch, cfg_.seq_len}),
        host_ids_(std::size_t(cfg_.batch * cfg_.seq_len)),
        host_targets_(std::size_t(cfg_.batch * cfg_.seq_len)) {
    HSEQ_CHECK(task_.batch() == cfg_.batch && task_.seq_len() == cfg_.seq_len,
               "Trainer: the task's batches are [" << task_.batch() << ", " << task_.seq_len()
                                                   << "] but the config says batch " << cfg_.batch << ", seq_len "
                                                   << cfg_.seq_len);
    check_phase_patterns();
    if constexpr (requires(TaskT& t) { t.shard(0, 1); }) {
      task_.shard(comm_->rank(), comm_->size());
    } else {
      HSEQ_CHECK(comm_->size() == 1, "Trainer: " << comm_->size()
                                                 << " processes, but the task has no shard(rank, size) to give "
                                                    "each its own part of the data");
    }
    // Micro-batches are summed in a buffer of their own, in order (see the file comment).
    if (cfg_.grad_accum > 1) acc_ = Tensor<T, B>(Shape{params_.grads().numel()});
    // The loss history is the only growing container; reserve it so steps do not allocate
    // (time-budgeted runs longer than this reserve grow it geometrically, rarely).
    losses_.reserve(std::size_t(std::max<std::int64_t>(cfg_.steps, 1 << 14)));
    if constexpr (requires { { task_.seed() } -> std::convertible_to<std::uint64_t>; }) data_seed_ = task_.seed();
    else data_seed_ = cfg_.seed;
    state_.data_seed = data_seed_;
    state_.data_pos = task_.position();
    state_.phases = cfg_.phases;
    state_.processes = comm_->size();
    if constexpr (models::MemoryModel<M>) memory_ = model_.make_memory(cfg_.batch);
    if (comm_->size() > 1) {
      check_agreement(data);
      // Every process starts from rank 0's parameters (whatever seeds initialized the others).
      comm_->broadcast(ctx, params_.values().data, std::size_t(params_.values().numel()), 0);
    }
    enter_phase(phase_at(0));
  }

  TrainerState const& state() const { return state_; }
  TrainerConfig const& config() const { return cfg_; }
  /// The processes this trainer trains with.
  Comm& communicator() { return *comm_; }
  AdamW<B, T>& optimizer() { return opt_; }
  /// A memory model's training memory (what checkpoints save as the group "memory").
  auto& memory()
    requires models::MemoryModel<M>
  {
    return memory_;
  }
  TaskT& task() { return task_; }
  Evaluator<B, T, M>& evaluator() { return evaluator_; }
  /// Index into `config().phases` of the phase the next step trains in (0 without phases).
  std::size_t phase() const { return phase_at(state_.step); }
  /// The loss terms of the last step, in the model's order (empty for a model without terms).
  std::span<LossTerm const> last_terms() const { return {terms_.data(), n_terms_}; }
  /// Loss of every step taken by this object (NaN for skipped steps).
  std::vector<double> const& losses() const { return losses_; }
  /// The last validation of this object (`evaluate`): bpc, loss and loss terms; all NaN and no
  /// terms before the first.
  EvalResult const& last_eval() const { return last_eval_; }
  /// The loss terms the model declares (`train::loss_term_names<M>()`), the CSV's term columns.
  std::vector<std::string> const& loss_term_names() const { return term_names_; }
  /// The CSV columns `run` writes: kLogColumns, then each declared loss term, then val_<term> for
  /// each (see the file comment). A resumed run appending to its log gets the same columns.
  std::vector<std::string> log_columns() const {
    std::vector<std::string> c(kLogColumns.begin(), kLogColumns.end());
    if constexpr (models::kReconstructsInput<M>) c.push_back("val_accuracy");
    for (auto const& n : term_names_) c.push_back(n);
    for (auto const& n : term_names_) c.push_back("val_" + n);
    return c;
  }

  /// One optimizer step; returns its mean training loss in nats (NaN when skipped).
  double step(Ctx& ctx) {
    auto t0 = std::chrono::steady_clock::now();
    if (std::size_t p = phase_at(state_.step); p != phase_) enter_phase(p);
    params_.zero_grad(ctx);
    if constexpr (models::MemoryModel<M>) model_.bind_memory(&memory_);  // validation may have unbound it
    double loss_sum = 0;
    for (std::int64_t micro = 0; micro < cfg_.grad_accum; ++micro) {
      if (micro > 0) params_.zero_grad(ctx);  // each micro-batch's gradient alone, summed into acc_ below
      task_.next(host_ids_.data(), host_targets_.data());
      if constexpr (models::kReconstructsInput<M>)  // an autoencoder's targets are its inputs
        std::copy(host_ids_.begin(), host_ids_.end(), host_targets_.begin());
      if constexpr (requires(M& m, Ctx& c) { m.reset_state(c); })
        if (!task_.continues()) model_.reset_state(ctx);
      upload_batch(ctx);
      // Micro-batch `micro` of this process is micro-batch rank * grad_accum + micro of the step.
      set_dropout(std::int64_t(comm_->rank()) * cfg_.grad_accum + micro);
      auto arena = ws_.arena();
      loss_sum += model_.forward(ctx, ids_.cview(), targets_.cview(), arena, trace_);
      record_terms(micro);
      model_.backward(ctx, trace_, arena);
      if (cfg_.grad_accum > 1) {
        if (micro == 0) ops::copy<T>(ctx, params_.grads(), acc_.view());
        else ops::add<T>(ctx, acc_.cview(), params_.grads(), acc_.view());
      }
    }
    if (cfg_.grad_accum > 1) ops::copy<T>(ctx, acc_.cview(), params_.grads());
    // The step's sums over every micro-batch of every process, then their means.
    std::array<double, 1 + kMaxLossTerms> sums{};
    sums[0] = loss_sum;
    for (std::size_t k = 0; k < n_terms_; ++k) sums[1 + k] = terms_[k].value;
    if (comm_->size() > 1) {
      comm_->all_reduce_sum(ctx, params_.grads().data, std::size_t(params_.grads().numel()));
      comm_->host_all_reduce_sum(sums.data(), 1 + n_terms_);
    }
    std::int64_t const micro_batches = cfg_.grad_accum * comm_->size();
    if (micro_batches > 1) ops::scale<T>(ctx, params_.grads(), T(1.0 / double(micro_batches)));
    double loss = sums[0] / double(micro_batches);
    for (std::size_t k = 0; k < n_terms_; ++k) terms_[k].value = sums[1 + k] / double(micro_batches);
    double norm = cfg_.clip > 0 ? clip_grad_norm(ctx, params_, cfg_.clip) : grad_norm(ctx, params_);
    state_.tokens += cfg_.batch * cfg_.seq_len * micro_batches;
    state_.data_pos = task_.position();
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

  /// Validation bits per character over `windows` evenly spread windows (-1: the config's
  /// eval_windows, 0: all of them), in the model's current objective (that of the last step's
  /// phase; after `load`, of the next step's); see `Evaluator::measure` (NaN in a phase without
  /// byte likelihood, whose own loss is then in `last_eval()`). Does not move the training data
  /// stream.
  double evaluate(Ctx& ctx, std::int64_t windows = -1) {
    if (windows < 0) windows = cfg_.eval_windows;
    last_eval_ = evaluator_.measure(ctx, windows);
    last_eval_step_ = state_.step;
    state_.last_val_bpc = last_eval_.bpc;
    return last_eval_.bpc;
  }

  /// A flag `run` reads before every step (null: none): when it is non-zero, `run` stops before
  /// the next step (the current one finishes), skips the final validation, writes the checkpoint
  /// (`TrainerConfig::ckpt_path`, atomically) and returns NaN; `interrupted()` then says so. The
  /// programs set it from SIGINT / SIGTERM handlers (a lock-free atomic is safe to store there).
  void set_stop_flag(std::atomic<int> const* flag) { stop_ = flag; }
  /// Whether the last `run` ended on the stop flag.
  bool interrupted() const { return interrupted_; }

  /// Trains until `steps` or the time budget, validating and checkpointing on schedule.
  /// `progress` and `csv` may be null; `csv` must have the columns `log_columns()`. Returns the
  /// final validation bpc (NaN when the run ends in a phase without byte likelihood, or on the
  /// stop flag: see `set_stop_flag`).
  double run(Ctx& ctx, io::Progress* progress = nullptr, io::CsvLog* csv = nullptr) {
    if (csv) {
      std::vector<std::string> const want = log_columns();
      HSEQ_CHECK(csv->columns() == want, "Trainer::run: the CSV log " << csv->path() << " has the columns "
                                                                      << join(csv->columns())
                                                                      << ", but this trainer writes " << join(want)
                                                                      << " (Trainer::log_columns())");
    }
    double bpc = std::numeric_limits<double>::quiet_NaN();
    interrupted_ = false;
    while (cfg_.steps == 0 || state_.step < cfg_.steps) {
      bool stop_now = stop_ && stop_->load(std::memory_order_relaxed) != 0;
      if (comm_->size() > 1) {
        // The processes stop together: at any one's signal, and on rank 0's clock.
        std::array<double, 2> sync{stop_now ? 1.0 : 0.0, comm_->rank() == 0 ? state_.elapsed_s : 0.0};
        comm_->host_all_reduce_sum(sync.data(), sync.size());
        stop_now = sync[0] > 0;
        state_.elapsed_s = sync[1];
      }
      if (stop_now) {
        interrupted_ = true;
        break;
      }
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
      double const train_bpc = step_bpc(loss);
      if (progress)
        progress->update(state_.step, loss, train_bpc, double(state_.tokens) / std::max(state_.elapsed_s, 1e-9),
                         progress_detail());
      if (csv) csv->row(log_row(true, loss, train_bpc, eval_now));
      if (!cfg_.ckpt_path.empty() && cfg_.ckpt_every > 0 && state_.step % cfg_.ckpt_every == 0 && !last)
        save(ctx, cfg_.ckpt_path);
    }
    if (interrupted_) {  // no final validation: the user asked to stop
      if (progress) progress->finish();
      if (!cfg_.ckpt_path.empty()) save(ctx, cfg_.ckpt_path);
      return std::numeric_limits<double>::quiet_NaN();
    }
    // Validated at this step already: in the loop above, or (a run resumed at its last step) before
    // the checkpoint was written.
    bool evaluated_last = cfg_.eval_every > 0 && state_.step % cfg_.eval_every == 0 &&
                          (last_eval_step_ == state_.step || std::isfinite(state_.last_val_bpc));
    if (evaluated_last) {
      bpc = state_.last_val_bpc;
    } else {
      bpc = evaluate(ctx);
      // The final validation gets a row of its own, so logs end with the reported figure.
      if (csv) csv->row(log_row(false, 0, 0, true));
    }
    if (progress) progress->finish();
    if (!cfg_.ckpt_path.empty()) save(ctx, cfg_.ckpt_path);
    return bpc;
  }

  /// Bits per character of the step whose total loss is `loss`, as `run` logs it: the loss in bits
  /// for a model without loss terms; with terms, only the byte cross-entropy term "ce" (in bits),
  /// and NaN when the step has none (e.g. HAED's IEM phase, whose loss is not a byte likelihood), so
  /// logs never show another objective as bits per character.
  double step_bpc(double loss) const {
    if (n_terms_ == 0) return loss / std::log(2.0);
    for (LossTerm const& t : last_terms())
      if (std::string_view(t.name) == "ce") return t.value / std::log(2.0);
    return std::numeric_limits<double>::quiet_NaN();
  }

  /// The learning rate the next step uses.
  double learning_rate() const {
    if (cfg_.steps > 0) return schedule_(state_.step);
    return schedule_.at_fraction(state_.step, state_.elapsed_s / cfg_.time_budget_s);
  }

  /// Writes a checkpoint (atomically) with the parameters, the optimizer (state group "optim"),
  /// a memory model's training memory (group "memory") and this trainer's state, downloading
  /// device memory on `ctx`.
  ///
  /// Several processes: collective. Rank 0 writes (every process holds the same parameters,
  /// optimizer and state); all return once it is written, and all throw when it could not be.
  void save(Ctx& ctx, std::string const& path) {
    io::CheckpointInfo info{M::kKind, model_.config_json(), state_.to_json()};
    if (comm_->size() == 1) {
      io::save_checkpoint(ctx, path, info, params_, state_groups(true));
      return;
    }
    std::string error;
    if (comm_->rank() == 0) {
      try {
        io::save_checkpoint(ctx, path, info, params_, state_groups(true));
      } catch (std::exception const& e) {
        error = e.what();
      }
    }
    double failed = error.empty() ? 0.0 : 1.0;
    comm_->host_all_reduce_sum(&failed, 1);
    if (failed > 0) {
      if (comm_->rank() == 0) HSEQ_FAIL(error);
      HSEQ_FAIL("Trainer::save: rank 0 could not write the checkpoint " << path << " (its error is on its output)");
    }
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
      HSEQ_CHECK(!s.data_seed || *s.data_seed == data_seed_,
                 "Trainer::load: checkpoint " << path << " was trained with data seed " << *s.data_seed
                                              << " but this trainer's data seed is " << data_seed_
                                              << "; resuming would continue another data stream. Set "
                                                 "TrainerConfig::seed = "
                                              << *s.data_seed << " (hseq-train: --seed " << *s.data_seed << ")");
      // The phases of the steps already taken are history: they must be this trainer's phases of
      // those steps (checkpoints written before the schedule was recorded are taken on trust).
      if (s.phases) {
        std::string d = phases_disagreement(*s.phases, "the checkpoint's", cfg_.phases, "this trainer's", s.step);
        HSEQ_CHECK(d.empty(), "Trainer::load: checkpoint "
                                  << path << " trained its " << s.step << " steps under the phases '"
                                  << phases_text(*s.phases) << "' but this trainer's phases are '"
                                  << phases_text(cfg_.phases) << "': " << d
                                  << ". A resumed run may change only the phases of the steps it has not trained "
                                     "yet; give TrainerConfig::phases that agree on those steps (hseq-train: drop "
                                     "--phases to continue the checkpoint's)");
      }
    };
    // A memory model's memory holds this process's rows only, so it is saved and restored only in
    // runs of one process; otherwise the resumed run starts from an empty memory (see the file
    // comment, "Several processes").
    bool with_memory = models::MemoryModel<M> && comm_->size() == 1;
    if (with_memory) {
      TrainerState const stored = TrainerState::from_json(io::read_checkpoint_info(path).trainer_state);
      with_memory = stored.processes.value_or(1) == 1;
    }
    io::load_checkpoint(ctx, path, M::kKind, model_.config_json(), params_, state_groups(with_memory), check_state);
    if constexpr (models::MemoryModel<M>) {
      if (!with_memory) {  // the memory's contents are forgotten
        model_.bind_memory(&memory_);
        if constexpr (requires(M& m) { m.reset_state(ctx); }) model_.reset_state(ctx);
        else memory_.reset();
      }
    }
    state_ = s;
    state_.data_seed = data_seed_;  // the stream continues under this seed (also for seedless checkpoints)
    state_.phases = cfg_.phases;    // and under this schedule (it agrees with the stored one so far)
    state_.processes = comm_->size();
    task_.set_position(state_.data_pos);
    enter_phase(phase_at(state_.step));  // a run resumed in phase 2 freezes what phase 2 freezes
  }

 private:
  /// The checkpoint's state groups: the optimizer, and a memory model's training memory when
  /// `with_memory` (saved only by runs of one process: see `load`).
  std::vector<io::StateGroup<B>> state_groups(bool with_memory) {
    std::vector<io::StateGroup<B>> g;
    g.emplace_back("optim", opt_);
    if constexpr (models::MemoryModel<M>)
      if (with_memory && comm_->size() == 1) g.emplace_back("memory", memory_);
    return g;
  }
  static comm::Single& single_comm() {
    static comm::Single single;
    return single;
  }
  /// FNV-1a, for comparing configurations across processes.
  static std::uint64_t fingerprint(std::string_view text) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    return h;
  }
  /// Every process must train the same model on the same data under the same schedule: compares
  /// fingerprints of the three with rank 0's, and throws on every process when one differs.
  void check_agreement(io::TextDataset const& data) {
    using io::TextDataset;
    std::ostringstream model, training, corpus;
    model << M::kKind << ' ' << model_.config_json() << ' ' << params_.count();
    training << cfg_.batch << ' ' << cfg_.seq_len << ' ' << cfg_.steps << ' ' << cfg_.grad_accum << ' ' << cfg_.lr
             << ' ' << cfg_.min_lr_ratio << ' ' << cfg_.warmup << ' ' << cfg_.weight_decay << ' ' << cfg_.beta1 << ' '
             << cfg_.beta2 << ' ' << cfg_.eps << ' ' << cfg_.clip << ' ' << cfg_.eval_every << ' '
             << cfg_.eval_windows << ' ' << cfg_.time_budget_s << ' ' << data_seed_ << ' '
             << phases_to_json(cfg_.phases).dump();
    // The corpus: its split sizes and its first and last 64 KiB (reading all of it would cost a
    // pass over a corpus that may not fit in memory).
    std::int64_t const n = data.total_size(), k = std::min<std::int64_t>(n, 1 << 16);
    std::int64_t const train = data.size(TextDataset::Split::kTrain), val = data.size(TextDataset::Split::kValidation);
    corpus << train << ' ' << val << ' ';
    if (train > 0) corpus << data.text(TextDataset::Split::kTrain, 0, std::min(train, k));
    if (val > 0) corpus << data.text(TextDataset::Split::kValidation, val - std::min(val, k), std::min(val, k));
    std::string_view const what[3] = {"model (kind, configuration, parameter count)",
                                      "training configuration (batch, seq_len, steps, accumulation, optimizer, "
                                      "schedule, evaluation, seed, phases)",
                                      "data (split sizes and contents)"};
    std::string const text[3] = {model.str(), training.str(), corpus.str()};
    std::vector<std::uint64_t> all(std::size_t(comm_->size()));
    for (int i = 0; i < 3; ++i) {
      comm_->host_all_gather(fingerprint(text[i]), all.data());
      for (std::size_t r = 1; r < all.size(); ++r)
        HSEQ_CHECK(all[r] == all[0], "Trainer: the processes disagree on the " << what[i] << ": rank " << r
                                                                            << "'s differs from rank 0's. Every "
                                                                               "process must be given the same "
                                                                               "flags and the same data");
    }
  }
  /// Validation windows of the training shape; an autoencoder's validation also counts the
  /// reconstructed bytes (its CSV column val_accuracy).
  static EvalConfig eval_config(TrainerConfig const& c) {
    EvalConfig e{c.batch, c.seq_len, c.eval_windows};
    e.accuracy = models::kReconstructsInput<M>;
    return e;
  }
  static TrainerConfig const& check(TrainerConfig const& c) {
    HSEQ_CHECK(c.steps > 0 || c.time_budget_s > 0,
               "Trainer: give a number of steps or a time budget (steps " << c.steps << ", time budget "
                                                                         << c.time_budget_s << " s)");
    HSEQ_CHECK(c.batch > 0 && c.seq_len > 0 && c.steps >= 0 && c.grad_accum > 0 && c.max_bad_steps > 0,
               "Trainer: batch " << c.batch << ", seq_len " << c.seq_len << ", steps " << c.steps << ", grad_accum "
                                 << c.grad_accum << ", max_bad_steps " << c.max_bad_steps << " must be positive");
    for (std::size_t i = 0; i < c.phases.size(); ++i)
      HSEQ_CHECK(c.phases[i].steps > 0 || (i + 1 == c.phases.size() && c.phases[i].steps == 0),
                 "Trainer: phase " << i << " ('" << c.phases[i].name << "') has " << c.phases[i].steps
                                   << " steps; every phase but the last needs at least one (the last: >= 0)");
    return c;
  }
  /// Every pattern of every phase must match a parameter (checked up front, not when the phase
  /// starts hours later).
  void check_phase_patterns() const {
    for (auto const& ph : cfg_.phases) {
      for (auto const& pat : ph.frozen)
        HSEQ_CHECK(params_.count_matching(pat) > 0, "Trainer: phase '" << ph.name << "' freezes '" << pat
                                                                       << "', which matches no parameter");
      for (auto const& g : ph.lr_scale) {
        HSEQ_CHECK(params_.count_matching(g.pattern) > 0, "Trainer: phase '" << ph.name << "' scales the lr of '"
                                                                             << g.pattern
                                                                             << "', which matches no parameter");
        HSEQ_CHECK(std::isfinite(g.scale) && g.scale >= 0,
                   "Trainer: phase '" << ph.name << "': lr scale " << g.scale << " of '" << g.pattern
                                      << "' must be finite and >= 0");
      }
    }
  }
  /// The phase step `step` trains in: phases follow each other, the last one to the end.
  std::size_t phase_at(std::int64_t step) const { return phase_index_at(cfg_.phases, step); }
  static std::string join(std::vector<std::string> const& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
    return s;
  }
  /// The CSV row at the current step (see log_columns()): a step's row (`loss`, `train_bpc` and its
  /// terms) or, without `step_row`, the final validation's row (NaN there); the validation's
  /// figures when `validated`.
  std::vector<double> log_row(bool step_row, double loss, double train_bpc, bool validated) const {
    double const nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> row{double(state_.step),        step_row ? loss : nan,
                            step_row ? train_bpc : nan, validated ? last_eval_.bpc : nan,
                            state_.elapsed_s,           double(state_.tokens)};
    if constexpr (models::kReconstructsInput<M>) row.push_back(validated ? last_eval_.accuracy : nan);
    for (std::string const& n : term_names_) {
      double v = nan;
      for (LossTerm const& t : last_terms())
        if (n == t.name) v = t.value;
      row.push_back(step_row ? v : nan);
    }
    for (std::string const& n : term_names_) row.push_back(validated ? last_eval_.term(n) : nan);
    if constexpr (requires { M::kLossTerms; }) {
      // Declared names are the columns; a term outside them would silently vanish from the log.
      if (step_row)
        for (LossTerm const& t : last_terms())
          HSEQ_CHECK(std::find(term_names_.begin(), term_names_.end(), t.name) != term_names_.end(),
                     "Trainer: the model reports the loss term '" << t.name << "', which its kLossTerms ("
                                                                  << join(term_names_) << ") does not declare");
    }
    return row;
  }
  /// The progress line's extra fields: the last step's loss terms and the last validation.
  std::string const& progress_detail() {
    detail_.clear();
    char num[64];
    auto add = [&](char const* label, char const* name, double v) {
      std::snprintf(num, sizeof num, "%.4f", v);
      if (!detail_.empty()) detail_ += " | ";
      detail_ += label;
      detail_ += name;
      detail_ += ' ';
      detail_ += num;
    };
    for (LossTerm const& t : last_terms()) add("", t.name, t.value);
    if (last_eval_step_ >= 0) {
      if (std::isfinite(last_eval_.bpc) || last_eval_.n_terms == 0) add("val ", "bpc", last_eval_.bpc);
      for (LossTerm const& t : last_eval_.loss_terms())
        if (std::string_view(t.name) != "ce") add("val ", t.name, t.value);
      if constexpr (models::kReconstructsInput<M>) add("val ", "accuracy", last_eval_.accuracy);
    }
    return detail_;
  }
  /// Applies phase `p`'s flags (all reset first, so a phase states its whole grouping) and tells the
  /// model. Allocates nothing: the patterns were checked at construction.
  void enter_phase(std::size_t p) {
    phase_ = p;
    if (cfg_.phases.empty()) return;
    Phase const& ph = cfg_.phases[p];
    for (auto const& e : params_.entries()) {
      e.param->frozen = false;
      e.param->lr_scale = 1.0;
    }
    for (auto const& pat : ph.frozen) params_.set_frozen(pat, true);
    for (auto const& g : ph.lr_scale) params_.set_lr_scale(g.pattern, g.scale);
    if constexpr (requires(M& m, std::string_view n) { m.set_phase(n); }) model_.set_phase(std::string_view(ph.name));
  }
  /// Activates the model's dropout for micro-batch `micro` of this step (see the file comment,
  /// "Dropout"); nothing for a model whose trace has no `dropout`.
  void set_dropout(std::int64_t micro) {
    if constexpr (requires(typename M::Trace& tr) { tr.dropout; }) {
      static_assert(std::same_as<std::remove_cvref_t<decltype(trace_.dropout)>, nn::DropoutStream>,
                    "Trainer: M::Trace::dropout must be an nn::DropoutStream");
      trace_.dropout = nn::training_dropout(data_seed_, state_.step, micro);
    } else {
      (void)micro;
    }
  }
  /// Copies the model's loss terms of micro-batch `micro` (summed over the micro-batches; step()
  /// divides by their count).
  void record_terms(std::int64_t micro) {
    if constexpr (requires(typename M::Trace const& tr) { tr.terms; }) {
      std::size_t k = 0;
      for (auto const& term : trace_.terms) {
        static_assert(std::convertible_to<decltype(term.name), char const*> &&
                          std::convertible_to<decltype(term.value), double>,
                      "Trainer: M::Trace::terms must hold {char const* name; double value;}");
        HSEQ_CHECK(k < kMaxLossTerms, "Trainer: the model reports more than " << kMaxLossTerms << " loss terms");
        if (micro == 0) terms_[k] = {term.name, double(term.value)};
        else terms_[k].value += double(term.value);
        ++k;
      }
      n_terms_ = k;
    } else {
      (void)micro;
    }
  }
  void upload_batch(Ctx& ctx) {
    B::template upload<std::int32_t>(ctx, ids_.data(), host_ids_.data(), host_ids_.size());
    B::template upload<std::int32_t>(ctx, targets_.data(), host_targets_.data(), host_targets_.size());
  }
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  Comm* comm_;
  M& model_;
  nn::ParamStore<B, T>& params_;
  TrainerConfig cfg_;
  TaskT task_;
  AdamW<B, T> opt_;
  /// A memory model's training memory (an empty member for other models).
  [[no_unique_address]] typename models::detail::MemoryOrNone<M>::type memory_;
  WarmupCosine schedule_;
  Workspace<B> ws_;  // declared before evaluator_, which shares it
  Evaluator<B, T, M> evaluator_;
  Tensor<std::int32_t, B> ids_, targets_;
  Tensor<T, B> acc_;  // the sum of a step's micro-batch gradients (grad_accum > 1)
  std::vector<std::int32_t> host_ids_, host_targets_;
  typename M::Trace trace_;
  TrainerState state_;
  std::uint64_t data_seed_ = 0;
  std::size_t phase_ = 0;
  std::array<LossTerm, kMaxLossTerms> terms_{};
  std::size_t n_terms_ = 0;
  std::vector<double> losses_;
  std::vector<std::string> term_names_ = train::loss_term_names<M>();
  EvalResult last_eval_;
  std::atomic<int> const* stop_ = nullptr;  // see set_stop_flag
  bool interrupted_ = false;
  std::int64_t last_eval_step_ = -1;  // state_.step of last_eval_ (-1: none by this object)
  std::string detail_;                // progress_detail()'s buffer, reused
};

}  // namespace hseq::train
