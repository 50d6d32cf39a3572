// SPDX-License-Identifier: MIT
/// @file
/// @brief The programs' work for one model type M (train, evaluate, generate), the policy-slot
/// vocabulary of family traits, and `make_family<Trait>()`, which turns a trait into the run-time
/// `Family` of family.hpp. Included by the generated translation unit of each family (one per
/// line of examples/families/list.def), never by the programs' `main`s.
///
/// A family trait is a struct with
///   - `kModel`, `kHelp`: the --model value and a line for --help;
///   - `Policies`: `cli::Policies<cli::Slot<"flag", "help", P1, P2...>...>`, the compile-time
///     policy choices, each type named by its `kName` (the first is the default); `Policies<>` for
///     none;
///   - `template <class... P> using Model`: the model type for one policy per slot, on
///     `cli::Backend` and `cli::Real` (declared with a pack even for two slots: GCC refuses to
///     expand the chosen pack into an alias's named parameters); it must satisfy
///     `hseq::models::CachedModel`;
///   - `static void add_flags(cli::Args&)`: its structure flags;
///   - `template <class M> static void apply_flags(cli::FlagReader const&, typename M::Config&)`:
///     copies the flags into a config (the reader skips flags not given when resuming);
///   - optionally `static std::vector<std::string> phase_frozen(std::string const& phase)`: the
///     parameter patterns a --phases phase freezes (throws for an unknown phase), and
///     `template <class M> static void prepare(M&, hseq::io::TextDataset const&)`: set-up from the
///     training data before training (hseq-train only; or `prepare(M&, TextDataset const&,
///     cli::Args const&)` when it reads flags too), after the parameters are initialised and before
///     a --resume checkpoint is loaded over them;
///   - optionally `template <class M> static void report(M const&, hseq::io::TextDataset const&,
///     std::int64_t seq_len)`: prints what the trained model learned, after the validation
///     (hseq-train only; the Hourglass: its rule levels' segment lengths);
///   - optionally `using Task = ...`: the training task (train/task.hpp) when not random crops,
///     e.g. `hseq::train::SequentialSegments` for a model that carries a memory between batches;
///   - optionally `static std::vector<cli::BenchCase> bench_cases()`: the family's rows of the
///     benchmark table (bench/bench_families.cpp), each a name, model flags and shapes; one whose
///     name contains "small" is the tiny case of ctest's bench.smoke. Models with
///     `flops(t)` (hseq/models/flops.hpp) also report their FLOPs there.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "family.hpp"
#include "hseq/hseq.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/io/csv_log.hpp"
#include "hseq/io/progress.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/cached_model.hpp"
#include "hseq/models/generate.hpp"
#include "hseq/train/evaluator.hpp"
#include "hseq/train/trainer.hpp"

namespace cli {

// The backend of the programs: hseq::cpu, or hseq::cuda in the CUDA builds of the same family
// translation units (the build defines HSEQ_EXAMPLE_BACKEND before including this header).
#if defined(HSEQ_EXAMPLE_BACKEND)
using Backend = HSEQ_EXAMPLE_BACKEND;
#else
using Backend = hseq::cpu;
#endif
using Real = float;

/// Sets the math of ctx's float GEMMs from --precision (fp32, bf16, tf32 on CUDA; see
/// hseq::GemmMath) and returns a note for the run's header: under bf16 on the CPU, which kernels
/// run it (oneDNN's, or the emulation at fp32 speed).
inline std::string apply_precision(Args const& a, Backend::Context& ctx) {
  ctx.set_gemm_math(hseq::parse_gemm_math(a.str("precision"), "--precision"));
  std::string note = hseq::gemm_math_name(ctx.gemm_math());
  if constexpr (std::is_same_v<Backend::Space, hseq::HostSpace>) {
    if (ctx.gemm_math() == hseq::GemmMath::kBf16)
      note += hseq::cpu_bf16_path_from_env() == hseq::CpuBf16Path::kOneDnn
                  ? " GEMMs (oneDNN's bf16 kernels)"
                  : " GEMMs (emulated at fp32 speed: no oneDNN bf16 kernels in this build or on this CPU)";
  }
  return note;
}

// ---------------------------------------------------------------------------------------------
// Policy slots

/// A string usable as a template argument (C++20 structural type).
template <std::size_t N>
struct FixedString {
  char text[N];
  constexpr FixedString(char const (&s)[N]) { std::copy_n(s, N, text); }
};

/// One policy choice of a family: the flag (and config key) `Flag`, its help, and the types it
/// chooses among, each named by `P::kName`; the first is the default.
template <FixedString Flag, FixedString Help, class... P>
struct Slot {
  static_assert(sizeof...(P) > 0, "a policy slot needs at least one type");
  static constexpr char const* kFlag = Flag.text;
  static constexpr char const* kHelp = Help.text;
  using Types = std::tuple<P...>;
  static PolicySlot runtime() { return {kFlag, kHelp, {std::string(P::kName)...}}; }
};
template <class... S>
struct Policies {};

namespace detail {
template <class... T>
struct TypeList {};

/// Calls f.template operator()<Model<Chosen..., one type per remaining slot>>() for the types
/// the names in `c.policies[i...]` choose.
template <class Trait, class... Chosen, class F>
void pick(ModelChoice const&, std::size_t, TypeList<Chosen...>, Policies<>, F& f) {
  f.template operator()<typename Trait::template Model<Chosen...>>();
}
template <class Trait, class... Chosen, class S, class... Rest, class F>
void pick(ModelChoice const& c, std::size_t i, TypeList<Chosen...>, Policies<S, Rest...>, F& f) {
  HSEQ_CHECK(i < c.policies.size(), "internal error: the choice of a " << c.model << " model names "
                                                                        << c.policies.size() << " policies");
  bool found = false;
  [&]<class... P>(std::tuple<P...>*) {
    ((!found && c.policies[i] == P::kName
          ? (found = true, pick<Trait>(c, i + 1, TypeList<Chosen..., P>{}, Policies<Rest...>{}, f), 0)
          : 0),
     ...);
  }(static_cast<typename S::Types*>(nullptr));
  HSEQ_CHECK(found, "unknown --" << S::kFlag << " '" << c.policies[i] << "' (known: " << join(S::runtime().names)
                                 << ")");
}

template <class... S>
std::vector<PolicySlot> runtime_slots(Policies<S...>) {
  return {S::runtime()...};
}
template <class Trait, class... S>
auto default_model(Policies<S...>) -> typename Trait::template Model<std::tuple_element_t<0, typename S::Types>...>;
}  // namespace detail

/// Calls f.template operator()<M>() with the model type of family `Trait` that the choice names.
template <class Trait, class F>
void with_model(ModelChoice const& c, F&& f) {
  detail::pick<Trait>(c, 0, detail::TypeList<>{}, typename Trait::Policies{}, f);
}

/// The family's model with every slot at its default (for the kind name).
template <class Trait>
using DefaultModel = decltype(detail::default_model<Trait>(typename Trait::Policies{}));

// ---------------------------------------------------------------------------------------------
// Flags -> config

/// What a trait's `apply_flags` reads flags through: from scratch every flag applies (defaults
/// included); when checking a resume only the flags given on the command line do.
class FlagReader {
 public:
  FlagReader(Args const& a, bool only_given) : a_(a), only_given_(only_given) {}
  bool applies(std::string const& flag) const { return !only_given_ || a_.given(flag); }
  Args const& args() const { return a_; }

  void integer(std::string const& flag, std::int64_t& field) const {
    if (applies(flag)) field = a_.integer(flag);
  }
  void real(std::string const& flag, double& field) const {
    if (applies(flag)) field = a_.real(flag);
  }
  void str(std::string const& flag, std::string& field) const {
    if (applies(flag)) field = a_.str(flag);
  }
  /// A switch that sets `field` to `when_on` (--untied sets tied = false).
  void toggle(std::string const& flag, bool& field, bool when_on = true) const {
    if (applies(flag)) field = a_.on(flag) ? when_on : !when_on;
  }
  /// A value parsed by `parse(string)` (enumerations, hierarchies).
  template <class V, class Parse>
  void parsed(std::string const& flag, V& field, Parse&& parse) const {
    if (applies(flag)) field = parse(a_.str(flag));
  }

 private:
  Args const& a_;
  bool only_given_;
};

/// The configuration of model M: the checkpoint's when the choice carries one, else the flags.
template <class Trait, class M>
typename M::Config model_config(Args const& a, ModelChoice const& c) {
  if (!c.config_json.empty()) return M::config_from_json(c.config_json);
  typename M::Config cfg;
  Trait::template apply_flags<M>(FlagReader(a, false), cfg);
  return cfg;
}

/// The resume check of the structure: the checkpoint's config with the given flags applied must
/// serialise to the same JSON; the keys that differ are reported (as the config spells them, so
/// "2@1  2@2 2@1" equals "2@1 2@2 2@1" once parsed).
template <class Trait, class M>
void check_structure(Args const& a, ModelChoice const& ckpt) {
  nlohmann::json theirs;
  try {
    theirs = nlohmann::json::parse(ckpt.config_json);
  } catch (nlohmann::json::exception const& ex) {
    HSEQ_FAIL("--resume: the checkpoint's model config is not valid JSON (" << ex.what() << "): " << ckpt.config_json);
  }
  typename M::Config cfg = M::config_from_json(ckpt.config_json);
  Trait::template apply_flags<M>(FlagReader(a, true), cfg);
  nlohmann::json mine = nlohmann::json::parse(M(cfg).config_json());
  std::string diff;
  for (auto const& [key, value] : mine.items())
    if (!theirs.contains(key) || theirs[key] != value)
      diff += (diff.empty() ? "" : ", ") + key + ": checkpoint " + (theirs.contains(key) ? theirs[key].dump() : "none") +
              ", flags " + value.dump();
  HSEQ_CHECK(diff.empty(), "--resume: the model flags disagree with the checkpoint ("
                               << diff << "); drop them to continue the checkpoint's model");
}

// ---------------------------------------------------------------------------------------------
// The programs' work for one model type

/// A model of type M with its parameters loaded from a checkpoint (heap-allocated: the store
/// points into the model). A trainer checkpoint's optimizer state is skipped.
template <class M>
struct Loaded {
  std::unique_ptr<M> model;
  std::unique_ptr<hseq::nn::ParamStore<Backend, Real>> params;
};
template <class M>
Loaded<M> load_model(Backend::Context& ctx, std::string const& path, ModelChoice const& c) {
  Loaded<M> l;
  l.model = std::make_unique<M>(M::config_from_json(c.config_json));
  l.params = std::make_unique<hseq::nn::ParamStore<Backend, Real>>(ctx, *l.model);
  hseq::io::load_checkpoint<Backend, Real>(ctx, path, M::kKind, l.model->config_json(), *l.params);
  return l;
}

/// "resident X MiB (peak Y MiB)" of this process from /proc/self/status (VmRSS, VmHWM); empty where
/// that file does not exist. hseq-train prints it before the first step and after training, so a
/// measurement of the peak (bench/hred_haed_claims.sh) can tell set-up from training.
inline std::string resident_memory() {
  std::ifstream f("/proc/self/status");
  std::string line, rss, hwm;
  auto mib = [](std::string const& l) {  // "VmRSS:\t  123456 kB"
    std::ostringstream os;
    os << std::fixed << std::setprecision(1) << std::stod(l.substr(l.find_first_of("0123456789"))) / 1024.0 << " MiB";
    return os.str();
  };
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = mib(line);
    if (line.rfind("VmHWM:", 0) == 0) hwm = mib(line);
  }
  return rss.empty() || hwm.empty() ? std::string() : "resident " + rss + " (peak " + hwm + ")";
}

/// The phase schedule of a resumed run (hseq-train): the trainer state of a checkpoint records the
/// schedule it was trained under, so without --phases the run continues it (`phases` is replaced);
/// a --phases given must train the steps the checkpoint has taken as it did (it may change the
/// phases still to come: "iem" continued as "iem:N,decoder" from step N), else the run is refused
/// naming both. Returns a note for the "phases:" line ("" when there is nothing to say);
/// `family_has_phases` asks for a note on a checkpoint that does not record its schedule.
inline std::string resume_phases(Args const& a, std::vector<hseq::train::Phase>& phases, bool family_has_phases) {
  if (a.str("resume").empty()) return "";
  std::string const& path = a.str("resume");
  auto st = hseq::train::TrainerState::from_json(hseq::io::read_checkpoint_info(path).trainer_state);
  if (!st.phases) {
    return a.given("phases") || !family_has_phases
               ? ""
               : " (the checkpoint predates stored phase schedules: give --phases as the run that wrote it did)";
  }
  std::string const theirs = hseq::train::phases_text(*st.phases);
  if (!a.given("phases")) {
    phases = *st.phases;
    return phases.empty() ? "" : " (the checkpoint's)";
  }
  std::string const d = hseq::train::phases_disagreement(*st.phases, "the checkpoint's", phases, "--phases'", st.step);
  HSEQ_CHECK(d.empty(), "--resume: --phases '" << a.str("phases") << "' disagrees with the checkpoint's phases '"
                                               << theirs << "' on the " << st.step << " steps it has trained (" << d
                                               << "); drop --phases to continue the checkpoint's schedule, or give "
                                                  "one that agrees on those steps");
  std::string const mine = hseq::train::phases_text(phases);
  return mine == theirs
             ? std::string(" (as the checkpoint's)")
             : " (the checkpoint's were '" + theirs + "'; they agree on its " + std::to_string(st.step) + " steps)";
}

/// The sequence length a model is built for when --seq-len is not given: its context, or the
/// window of a model that has one instead (the autoencoder).
template <class M>
std::int64_t default_length(M const& m) {
  if constexpr (requires { m.config().context; })
    return m.config().context;
  else
    return m.config().window;
}

/// The task a family trains on: `Trait::Task` when it names one, random crops otherwise.
template <class Trait>
struct TaskOf {
  using type = hseq::train::RandomCrops;
};
template <class Trait>
  requires requires { typename Trait::Task; }
struct TaskOf<Trait> {
  using type = typename Trait::Task;
};

/// An autoencoder's sample: the first validation window and the model's reconstruction of it (the
/// argmax byte at every position), each byte outside printable ASCII shown as '.'.
template <class M>
void show_reconstruction(Backend::Context& ctx, M const& model, hseq::io::TextDataset const& data, std::int64_t t) {
  auto split = hseq::io::TextDataset::Split::kValidation;
  if (data.num_windows(split, t) < 1) return;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(t)), tg(static_cast<std::size_t>(t));
  data.window(split, 0, t, ids.data(), tg.data());
  hseq::Tensor<std::int32_t, Backend> dids(hseq::Shape{1, t});
  Backend::upload<std::int32_t>(ctx, dids.data(), ids.data(), ids.size());
  hseq::Workspace<Backend> ws(model.forward_workspace(1, t));
  typename M::Trace tr;
  auto arena = ws.arena();
  model.forward(ctx, dids.cview(), dids.cview(), arena, tr);
  std::int64_t const v = tr.logits.size(2);
  std::vector<Real> logits(std::size_t(t * v));
  Backend::download<Real>(ctx, logits.data(), tr.logits.data, logits.size());
  auto shown = [](std::int32_t c) { return c >= 32 && c < 127 ? char(c) : '.'; };
  std::string in, out;
  for (std::int64_t i = 0; i < t; ++i) {
    in += shown(ids[std::size_t(i)]);
    auto row = logits.begin() + i * v;
    out += shown(std::int32_t(std::max_element(row, row + v) - row));
  }
  std::cout << "reconstruction of the first validation window:\n  in:  " << in << "\n  out: " << out << std::endl;
}

/// "3 files, " when the data is several files (nothing for one file).
inline std::string files_note(hseq::io::TextDataset const& data) {
  auto n = data.files().size();
  return n > 1 ? std::to_string(n) + " files, " : std::string();
}

/// Checks an output path before any work is done, so a run is not lost at its end: its directory
/// exists and is writable, and the path is not a directory; warns (stderr) when the file system
/// has less free space than `bytes` (0: no estimate). `flag` names the flag in the messages.
inline void check_output_path(std::string const& path, char const* flag, std::uintmax_t bytes = 0) {
  if (path.empty()) return;
  namespace fs = std::filesystem;
  fs::path const p(path);
  fs::path const dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  std::error_code ec;
  HSEQ_CHECK(fs::is_directory(dir, ec),
             flag << " " << path << ": the directory '" << dir.string() << "' does not exist (create it first)");
  HSEQ_CHECK(!fs::is_directory(p, ec), flag << " " << path << " is a directory; give a file name");
  HSEQ_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
             flag << " " << path << ": the directory '" << dir.string() << "' is not writable");
  if (bytes == 0) return;
  fs::space_info const sp = fs::space(dir, ec);
  if (!ec && sp.available < bytes)
    std::cerr << "warning: " << flag << " " << path << ": '" << dir.string() << "' has "
              << double(sp.available) / (1024.0 * 1024.0) << " MiB free, less than the "
              << double(bytes) / (1024.0 * 1024.0) << " MiB of one checkpoint" << std::endl;
}

template <class Trait, class M>
void train(Args const& a, ModelChoice const& choice) {
  // Output paths first: a bad one fails now, not after the training it would have lost.
  check_output_path(a.str("csv"), "--csv");
  check_output_path(a.str("out"), "--out");
  Backend::Context ctx;
  std::string const precision = apply_precision(a, ctx);
  hseq::io::TextDataset data(hseq::io::TextDataset::path_list(a.str("data")), a.real("val-fraction"));
  auto cfg = model_config<Trait, M>(a, choice);
  auto model = std::make_unique<M>(cfg);
  hseq::nn::ParamStore<Backend, Real> params(ctx, *model);
  params.init(ctx, std::uint64_t(a.integer("seed")));
  // One checkpoint: the parameters and AdamW's two moments (the header and any memory state are
  // small next to them).
  check_output_path(a.str("out"), "--out", std::uintmax_t(params.count()) * sizeof(Real) * 3);

  hseq::train::TrainerConfig t;
  t.batch = a.integer("batch");
  t.seq_len = a.given("seq-len") ? a.integer("seq-len") : default_length(*model);
  t.steps = a.integer("steps");
  t.time_budget_s = a.real("time-budget");
  t.grad_accum = a.integer("accum");
  t.lr = a.real("lr");
  t.min_lr_ratio = a.real("min-lr-ratio");
  t.warmup = a.integer("warmup");
  t.weight_decay = a.real("weight-decay");
  t.clip = a.real("clip");
  t.eval_every = a.integer("eval-every");
  t.eval_windows = a.integer("eval-windows");
  t.ckpt_path = a.str("out");
  t.ckpt_every = a.integer("ckpt-every");
  t.seed = std::uint64_t(a.integer("seed"));
  for (PhaseSpec const& p : parse_phases(a.str("phases"))) {
    if constexpr (requires { Trait::phase_frozen(p.name); }) {
      t.phases.push_back({p.name, p.steps, Trait::phase_frozen(p.name), {}});
    } else {
      HSEQ_FAIL("--phases: the " << Trait::kModel << " family has no training phases");
    }
  }
  constexpr bool kFamilyHasPhases = requires { Trait::phase_frozen(std::string()); };
  std::string const phases_note = resume_phases(a, t.phases, kFamilyHasPhases);
  // A family may prepare a model from the training data (HAED: the IEM proposal over its segments).
  if constexpr (requires { Trait::template prepare<M>(*model, data, a); })
    Trait::template prepare<M>(*model, data, a);  // (with the flags: the Hourglass's --entropy-model)
  else if constexpr (requires { Trait::template prepare<M>(*model, data); })
    Trait::template prepare<M>(*model, data);
  // A family may train on another task (Transformer-XL: consecutive segments, so its memory carries).
  using Task = typename TaskOf<Trait>::type;
  auto make_task = [&] {
    if constexpr (std::is_constructible_v<Task, hseq::io::TextDataset const&, std::int64_t, std::int64_t, std::uint64_t>)
      return Task(data, t.batch, t.seq_len, t.seed);
    else
      return Task(data, t.batch, t.seq_len);
  };
  // On several processes (mpirun): each trains on its part of every batch, rank 0 reports and
  // writes the checkpoint (examples/parallel.hpp, docs/distributed.md).
  Comm& comm = communicator();
  bool const lead = comm.rank() == 0;
  hseq::train::Trainer<Backend, Real, M, Task, Comm> trainer(ctx, *model, params, data, make_task(), t, comm);
  if (!a.str("resume").empty()) trainer.load(ctx, a.str("resume"));

  std::cout << "model: " << M::kKind << " " << model->config_json() << "\n"
            << "parameters: " << params.count() << "\n"
            << "data: " << a.str("data") << " (" << files_note(data) << data.size(hseq::io::TextDataset::Split::kTrain) << " train bytes, "
            << data.size(hseq::io::TextDataset::Split::kValidation) << " validation bytes)\n"
            << "training: batch " << t.batch << " x " << t.seq_len << ", "
            << (comm.size() > 1 ? "on each of " + std::to_string(comm.size()) + " processes, " : std::string())
            << (t.steps > 0 ? std::to_string(t.steps) + " steps" : std::string("until the time budget"))
            << (t.time_budget_s > 0 ? ", time budget " + std::to_string(int(t.time_budget_s)) + " s" : std::string())
            << (trainer.state().step > 0 ? ", resuming at step " + std::to_string(trainer.state().step) : std::string())
            << ", precision " << precision << std::endl;
  if (!t.phases.empty() || !phases_note.empty())
    std::cout << "phases: " << hseq::train::phases_text(t.phases) << phases_note << std::endl;
  if (std::string m = resident_memory(); !m.empty())
    std::cout << "memory before training: " << m << "; workspace reserved "
              << double(model->forward_workspace(t.batch, t.seq_len) + model->backward_workspace(t.batch, t.seq_len)) /
                     (1024.0 * 1024.0)
              << " MiB (touched as used)" << std::endl;

  hseq::io::Progress progress(t.steps > 0 ? t.steps : 0);
  bool resumed = trainer.state().step > 0;
  if (resumed) progress.set_initial_step(trainer.state().step);
  std::unique_ptr<hseq::io::CsvLog> csv;
  if (!a.str("csv").empty() && lead)  // a resumed run appends to its log (the same columns: see log_columns)
    csv = std::make_unique<hseq::io::CsvLog>(a.str("csv"), trainer.log_columns(), resumed);
  double bpc = 0;
  int stop_signal = 0;
  {
    // SIGINT / SIGTERM during training: finish the step, write the checkpoint, exit 130 / 143
    // (examples/interrupt.hpp). Outside this scope the default actions apply again.
    StopSignals signals;
    trainer.set_stop_flag(&signals.flag());
    bpc = trainer.run(ctx, lead ? &progress : nullptr, csv.get());
    trainer.set_stop_flag(nullptr);
    stop_signal = signals.received();
  }
  auto const& st = trainer.state();
  if (trainer.interrupted()) {
    std::cout << "interrupted by " << StopSignals::name(stop_signal) << " after step " << st.step << " ("
              << st.elapsed_s << " s of training)\n";
    if (!t.ckpt_path.empty())
      std::cout << "checkpoint: " << t.ckpt_path << " (written atomically)\n"
                << "resume: the same command with --resume " << t.ckpt_path
                << (a.str("csv").empty() ? "" : " (the CSV log is appended to)") << std::endl;
    else
      std::cout << "nothing saved: no --out was given" << std::endl;
    throw Interrupted{128 + stop_signal};
  }
  std::cout << "steps: " << st.step << " (" << st.skipped << " skipped), tokens: " << st.tokens << ", "
            << "training time: " << st.elapsed_s << " s, throughput: " << double(st.tokens) / st.elapsed_s
            << " tokens/s\n";
  std::cout << "validation bpc: " << bpc << std::endl;
  // A family may describe what the model learned (the Hourglass: the segments of rule levels).
  if constexpr (requires { Trait::template report<M>(*model, data, t.seq_len); })
    Trait::template report<M>(*model, data, t.seq_len);
  // The validation's own objective (HAED's IEM phase has no bpc: its figure is the IEM loss).
  if (auto terms = trainer.last_eval().loss_terms(); !terms.empty()) {
    std::cout << "validation loss terms (nats):";
    for (auto const& term : terms) std::cout << " " << term.name << " " << term.value;
    std::cout << std::endl;
  }
  if (std::string m = resident_memory(); !m.empty()) std::cout << "memory after training: " << m << std::endl;
  if (!t.ckpt_path.empty()) std::cout << "checkpoint: " << t.ckpt_path << "\n";
  if (!lead) return;  // the sample is rank 0's to show
  if constexpr (hseq::models::kReconstructsInput<M>) {
    if (a.integer("sample-bytes") > 0) show_reconstruction(ctx, *model, data, t.seq_len);
  } else if (a.integer("sample-bytes") > 0) {
    hseq::models::GenerateConfig g;
    g.max_bytes = a.integer("sample-bytes");
    g.sampler.temperature = 0.8;
    g.sampler.top_k = 40;
    g.sampler.seed = std::uint64_t(a.integer("seed"));
    std::string prompt = a.str("prompt");
    std::cout << "sample (temperature 0.8, top-k 40):\n"
              << prompt << hseq::models::generate<Backend, Real>(ctx, *model, prompt, g) << std::endl;
  }
}

/// hseq-eval --export-latents: the latents of every validation window of t bytes (window k starts at
/// byte k t of the split), `batch` windows per forward, as a safetensors file: "latents" F32
/// [windows, m, d] and "offsets" I64 [windows] (the windows' first bytes in the validation split),
/// with the model's kind and configuration and the data file in the metadata.
template <class M>
void export_latents(Backend::Context& ctx, M const& model, hseq::io::TextDataset const& data, std::int64_t t,
                    std::int64_t batch, std::string const& path, std::string const& data_path) {
  auto split = hseq::io::TextDataset::Split::kValidation;
  std::int64_t const total = data.num_windows(split, t), m = model.latent_length(t), d = model.config().dim;
  HSEQ_CHECK(total > 0, "hseq-eval --export-latents: the validation split is shorter than one window of " << t);
  std::vector<std::int32_t> ids(std::size_t(batch * t)), tg(std::size_t(batch * t));
  hseq::Tensor<std::int32_t, Backend> dids(hseq::Shape{batch, t});
  hseq::Workspace<Backend> ws(model.forward_workspace(batch, t));
  typename M::Trace tr;
  std::vector<float> out(std::size_t(total * m * d));
  std::vector<Real> host(std::size_t(batch * m * d));
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(total));
  for (std::int64_t first = 0; first < total; first += batch) {
    std::int64_t const rows = std::min(batch, total - first);
    for (std::int64_t r = 0; r < rows; ++r) {
      data.window(split, first + r, t, ids.data() + r * t, tg.data() + r * t);
      offsets[std::size_t(first + r)] = (first + r) * t;
    }
    Backend::upload<std::int32_t>(ctx, dids.data(), ids.data(), std::size_t(rows * t));
    auto arena = ws.arena();
    hseq::View<std::int32_t const, Backend::Space> view(dids.data(), hseq::Shape{rows, t});
    model.forward(ctx, view, view, arena, tr);
    Backend::download<Real>(ctx, host.data(), tr.latent().data, std::size_t(rows * m * d));
    std::copy_n(host.begin(), rows * m * d, out.begin() + first * m * d);
  }
  hseq::io::SafetensorsWriter w;
  w.add<float>("latents", hseq::Shape{total, m, d}, out.data());
  w.add<std::int64_t>("offsets", hseq::Shape{total}, offsets.data());
  w.set_metadata("model_kind", M::kKind);
  w.set_metadata("model_config", model.config_json());
  w.set_metadata("data", data_path);
  w.set_metadata("split", "validation");
  w.write(path);
  std::cout << "latents: " << path << " (" << total << " windows of " << t << " bytes -> [" << total << ", " << m
            << ", " << d << "])" << std::endl;
}

template <class M>
void evaluate(Args const& a, ModelChoice const& choice) {
  Backend::Context ctx;
  auto lm = load_model<M>(ctx, a.str("checkpoint"), choice);
  auto data = std::make_unique<hseq::io::TextDataset>(hseq::io::TextDataset::path_list(a.str("data")),
                                                      a.real("val-fraction"));
  std::int64_t t = a.given("seq-len") ? a.integer("seq-len") : default_length(*lm.model);
  // Evaluation only: no optimizer, no training workspace.
  std::string const after = a.str("score-after");
  HSEQ_CHECK(after.size() <= 1, "hseq-eval: --score-after takes one character, got '" << after << "'");
  hseq::train::EvalConfig ec{.batch = a.integer("batch"), .seq_len = t, .windows = a.integer("windows"),
                             .segment = a.integer("segment"), .memory_rows = a.integer("eval-mem-len"),
                             .score_after = after.empty() ? -1 : std::int32_t(static_cast<unsigned char>(after[0])),
                             .accuracy = a.on("accuracy")};
  hseq::train::Evaluator<Backend, Real, M> evaluator(*lm.model, *data, ec);
  auto split = hseq::io::TextDataset::Split::kValidation;
  std::int64_t total = data->num_windows(split, t);
  std::int64_t used = evaluator.num_windows();
  hseq::train::EvalResult r = evaluator.measure(ctx);
  std::cout << "checkpoint: " << a.str("checkpoint") << "\n"
            << "data: " << a.str("data") << ", validation split of " << data->size(split) << " bytes, " << used << " of "
            << total << " windows of " << t << " bytes"
            << (ec.segment > 0 ? ", in segments of " + std::to_string(ec.segment) + " over a memory" : std::string()) << "\n"
            << "scored: " << r.targets << " bytes";
  if (!after.empty()) std::cout << " that follow '" << after << "'";
  std::cout << "\nbpc: " << r.bpc << std::endl;
  if (ec.accuracy) std::cout << "accuracy: " << r.accuracy << std::endl;
  std::string const latents = a.str("export-latents");
  if constexpr (hseq::models::kReconstructsInput<M>) {
    if (!latents.empty()) export_latents(ctx, *lm.model, *data, t, a.integer("batch"), latents, a.str("data"));
  } else {
    HSEQ_CHECK(latents.empty(), "hseq-eval: --export-latents is for autoencoders (--model autoencoder); "
                                    << a.str("checkpoint") << " holds a " << M::kKind << " model");
  }
}

template <class M>
void generate(Args const& a, ModelChoice const& choice) {
  if constexpr (!hseq::models::CachedModel<M, Backend, Real>) {
    HSEQ_FAIL("hseq-generate: a " << M::kKind << " model does not generate text (it reconstructs its input); "
                                  << "hseq-eval --accuracy reports its reconstruction");
  } else {
  Backend::Context ctx;
  auto lm = load_model<M>(ctx, a.str("checkpoint"), choice);
  hseq::models::GenerateConfig g;
  g.max_bytes = a.integer("bytes");
  g.stop = a.str("stop");
  g.sampler.temperature = a.real("temperature");
  g.sampler.top_k = a.integer("top-k");
  g.sampler.top_p = a.real("top-p");
  g.sampler.seed = std::uint64_t(a.integer("seed"));
  auto t0 = std::chrono::steady_clock::now();
  std::string out = hseq::models::generate<Backend, Real>(ctx, *lm.model, a.str("prompt"), g);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << a.str("prompt") << out << std::endl;
  std::cerr << "generated " << out.size() << " bytes in " << s << " s (" << double(out.size()) / s << " bytes/s)"
            << std::endl;
  }
}

/// The benchmark action (Family::bench_train): the model, its parameters and the optimizer built
/// as `train` builds them, random bytes as ids and targets, the workspace of one micro-batch,
/// then steps of zero_grad, forward, backward and AdamW (no clipping, no schedule: the step's
/// cost is what is measured) while the loop asks for them. Nothing is allocated in the loop. There
/// is no dataset, so a trait's `prepare` is not called: a case must not need one (HAED's IEM
/// proposal; the benchmark cases train the byte objective).
template <class Trait, class M>
void bench_train(Args const& a, ModelChoice const& choice, BenchLoop& loop) {
  Backend::Context ctx;
  apply_precision(a, ctx);
  auto cfg = model_config<Trait, M>(a, choice);
  auto model = std::make_unique<M>(cfg);
  hseq::nn::ParamStore<Backend, Real> params(ctx, *model);
  params.init(ctx, std::uint64_t(a.integer("seed")));
  typename hseq::train::AdamW<Backend, Real>::Config oc;
  oc.lr = a.real("lr");
  oc.weight_decay = a.real("weight-decay");
  hseq::train::AdamW<Backend, Real> opt(ctx, params, oc);

  std::int64_t b = a.integer("batch"), t = a.given("seq-len") ? a.integer("seq-len") : default_length(*model);
  HSEQ_CHECK(b > 0 && t > 0, "benchmark: --batch " << b << " and --seq-len " << t << " must be positive");
  std::vector<std::int32_t> host(std::size_t(2 * b * t));
  hseq::Rng rng(std::uint64_t(a.integer("seed")) + 1);
  for (auto& x : host) x = std::int32_t(rng.below(256));  // bytes, as the programs' data
  hseq::Tensor<std::int32_t, Backend> ids(hseq::Shape{b, t}), targets(hseq::Shape{b, t});
  Backend::upload<std::int32_t>(ctx, ids.data(), host.data(), std::size_t(b * t));
  Backend::upload<std::int32_t>(ctx, targets.data(), host.data() + b * t, std::size_t(b * t));
  hseq::Workspace<Backend> ws(model->forward_workspace(b, t) + model->backward_workspace(b, t));
  typename M::Trace trace;

  BenchResult r;
  while (loop.keep_running()) {
    params.zero_grad(ctx);
    auto arena = ws.arena();
    r.loss = model->forward(ctx, ids.cview(), targets.cview(), arena, trace);
    model->backward(ctx, trace, arena);
    opt.step(ctx);
    Backend::synchronize(ctx);  // a step ends when its work has (a no-op on the CPU)
  }
  r.tokens_per_step = b * t;
  r.params = params.count();
  if constexpr (requires { { model->flops(t) } -> std::convertible_to<hseq::models::FlopCount>; }) {
    r.has_flops = true;
    r.flops = model->flops(t);
  }
  loop.report(r);
}

// ---------------------------------------------------------------------------------------------
// Trait -> Family

/// The run-time family of a trait: every action dispatches the choice's policy names to the model
/// type and runs the program's work for it. Instantiates every model of the family.
template <class Trait>
Family make_family() {
  using Default = DefaultModel<Trait>;
  static_assert(hseq::models::CachedModel<Default, Backend, Real> || hseq::models::kReconstructsInput<Default>,
                "a family's models must satisfy hseq::models::CachedModel (training, checkpoints and generation), "
                "or be an autoencoder (kReconstructsInput: no generation)");
  Family f;
  f.model = Trait::kModel;
  f.kind = Default::kKind;
  f.help = Trait::kHelp;
  f.slots = detail::runtime_slots(typename Trait::Policies{});
  f.add_flags = &Trait::add_flags;
  f.train = [](Args const& a, ModelChoice const& c) { with_model<Trait>(c, [&]<class M>() { train<Trait, M>(a, c); }); };
  f.evaluate = [](Args const& a, ModelChoice const& c) { with_model<Trait>(c, [&]<class M>() { evaluate<M>(a, c); }); };
  f.generate = [](Args const& a, ModelChoice const& c) { with_model<Trait>(c, [&]<class M>() { generate<M>(a, c); }); };
  f.check_structure = [](Args const& a, ModelChoice const& c) {
    with_model<Trait>(c, [&]<class M>() { check_structure<Trait, M>(a, c); });
  };
  if constexpr (requires { Trait::bench_cases(); }) f.bench_cases = Trait::bench_cases();
  f.bench_train = [](Args const& a, ModelChoice const& c, BenchLoop& l) {
    with_model<Trait>(c, [&]<class M>() { bench_train<Trait, M>(a, c, l); });
  };
  return f;
}

}  // namespace cli

/// Defines `cli::family_<name>()`, the registry's handle on the family `Trait` (used by the
/// generated translation unit of each line of examples/families/list.def).
#define HSEQ_DEFINE_FAMILY(name, Trait)            \
  namespace cli {                                  \
  Family const& family_##name() {                  \
    static Family const f = make_family<Trait>();  \
    return f;                                      \
  }                                                \
  }
