// SPDX-License-Identifier: MIT
/// @file
/// @brief The model-family registry of the programs (hseq-train, hseq-eval, hseq-generate and
/// their CUDA builds): what a family is at run time, how a command line or a checkpoint chooses
/// one, and the checks of `--resume`. Nothing here names a model: the families come from
/// `families()`, which examples/families/registry.cpp builds from the list examples/families/list.def.
///
/// A family is one header `examples/families/<name>.hpp` holding a trait (see programs.hpp and
/// docs/design.md, "Adding a model family") plus one line `HSEQ_FAMILY(<name>, <Trait>)` in the
/// list; the build compiles one translation unit per family (the family's models instantiated
/// with the programs' code) and the programs fold over the list.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "cli.hpp"
#include "hseq/core/error.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/models/flops.hpp"

namespace cli {

struct ModelChoice;

/// One shape a benchmark case runs at: micro-batch rows and sequence length.
struct BenchShape {
  std::int64_t batch = 1, seq_len = 64;
};

/// A benchmark case of a family (the trait's optional `bench_cases()`): a name, unique within the
/// family ("small" in it marks the tiny case of ctest's bench.smoke), the model flags as hseq-train
/// reads them (`--model` is added, and `--context <seq_len>` unless the flags give a context),
/// and the shapes it runs at.
struct BenchCase {
  std::string name;
  std::vector<std::string> flags;
  std::vector<BenchShape> shapes;
};

/// What a family's benchmark action reports after its loop.
struct BenchResult {
  std::int64_t tokens_per_step = 0;  ///< batch x sequence length
  std::int64_t params = 0;           ///< parameter elements
  bool has_flops = false;            ///< the model has `flops(t)` (hseq/models/flops.hpp)
  hseq::models::FlopCount flops;     ///< per token at the sequence length (zero without)
  double loss = 0;                   ///< of the last step (finite unless the step diverged)
};

/// The timing loop of a family's benchmark action, implemented by the benchmark program (over
/// Google Benchmark's State), so that the family's translation unit does not depend on it.
class BenchLoop {
 public:
  virtual ~BenchLoop() = default;
  /// Whether to run one more step (the first call starts the clock, the last one stops it).
  virtual bool keep_running() = 0;
  /// Called once, after the loop.
  virtual void report(BenchResult const& r) = 0;
};

/// A policy slot of a family: a flag whose value names a type (e.g. --shorten avg), and the same
/// key in the family's checkpoint config. The first name is the default.
struct PolicySlot {
  std::string flag, help;
  std::vector<std::string> names;
};

/// A model family at run time: names, flags, and the programs' actions instantiated for each of
/// its model types (function pointers filled by `make_family<Trait>()` in the family's own
/// translation unit, so the programs never instantiate a model themselves).
struct Family {
  std::string model;  ///< the --model value
  std::string kind;   ///< the checkpoint's model kind
  std::string help;   ///< one line for --help
  std::vector<PolicySlot> slots;
  void (*add_flags)(Args&) = nullptr;  ///< the family's structure flags
  void (*train)(Args const&, ModelChoice const&) = nullptr;
  void (*evaluate)(Args const&, ModelChoice const&) = nullptr;
  void (*generate)(Args const&, ModelChoice const&) = nullptr;
  /// Throws when a given structure flag disagrees with the checkpoint's config (resume).
  void (*check_structure)(Args const&, ModelChoice const&) = nullptr;
  /// The family's benchmark cases (empty when its trait declares none).
  std::vector<BenchCase> bench_cases;
  /// Builds the model as hseq-train does from the flags (model, --batch, --seq-len, --seed, --lr,
  /// --weight-decay), allocates everything, then runs training steps (forward, backward, AdamW)
  /// on random bytes while `loop.keep_running()`, and reports through the loop.
  void (*bench_train)(Args const&, ModelChoice const&, BenchLoop&) = nullptr;
};

/// Every family the programs know, in list order (defined by examples/families/registry.cpp).
std::vector<Family const*> const& families();

/// Which model to build: a family, its policy names (in slot order), and either the flags or a
/// checkpoint's config.
struct ModelChoice {
  Family const* family = nullptr;
  std::string model;  ///< the family's --model name (or an unknown name, for messages)
  std::vector<std::string> policies;
  std::string config_json;  ///< from a checkpoint; empty: build from the flags

  /// "hourglass (shorten avg, upsample repeat)" ("hourglass model (shorten ...)" with `noun`), or
  /// just the name for a family without policies.
  std::string describe(char const* noun = "") const {
    std::string s = model + noun;
    if (family && !family->slots.empty()) {
      s += " (";
      for (std::size_t i = 0; i < family->slots.size(); ++i)
        s += (i ? ", " : "") + family->slots[i].flag + " " + (i < policies.size() ? policies[i] : "?");
      s += ")";
    }
    return s;
  }
};

inline std::string join(std::vector<std::string> const& v, char const* sep = ", ") {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

inline std::vector<std::string> family_names(bool kinds = false) {
  std::vector<std::string> v;
  for (Family const* f : families()) v.push_back(kinds ? f->kind : f->model);
  return v;
}

/// The family of a --model name, or null.
inline Family const* find_family(std::string const& model) {
  for (Family const* f : families())
    if (f->model == model) return f;
  return nullptr;
}

/// --model, then each family's structure and policy flags. A flag shared by families (--dim) is
/// declared once (Args keeps the first declaration; a second one must agree on the default).
inline void add_model_flags(Args& a) {
  HSEQ_CHECK(!families().empty(), "internal error: no model family is registered");
  a.flag("model", families().front()->model, "model family: " + join(family_names()));
  for (Family const* f : families()) {
    f->add_flags(a);
    for (PolicySlot const& s : f->slots)
      a.flag(s.flag, s.names.front(), f->model + ": " + s.help + ", one of " + join(s.names));
  }
}

/// The policy value `name` of `slot`, checked against the slot's names.
inline std::string const& checked_policy(PolicySlot const& slot, std::string const& name, std::string const& where) {
  for (auto const& n : slot.names)
    if (n == name) return n;
  HSEQ_FAIL(where << "unknown --" << slot.flag << " '" << name << "' (known: " << join(slot.names) << ")");
}

/// The choice the command line makes.
inline ModelChoice choice_from_flags(Args const& a) {
  ModelChoice c;
  c.model = a.str("model");
  c.family = find_family(c.model);
  HSEQ_CHECK(c.family, "unknown --model '" << c.model << "' (known: " << join(family_names()) << ")");
  for (PolicySlot const& s : c.family->slots) c.policies.push_back(checked_policy(s, a.str(s.flag), ""));
  return c;
}

/// The model recorded in a checkpoint: its family from the model kind, its policies from the
/// config's keys named like the policy flags.
inline ModelChoice choice_from_checkpoint(std::string const& path) {
  auto info = hseq::io::read_checkpoint_info(path);
  ModelChoice c;
  c.config_json = info.model_config;
  for (Family const* f : families())
    if (f->kind == info.model_kind) c.family = f;
  HSEQ_CHECK(c.family, "checkpoint " << path << " holds a '" << info.model_kind << "' model; these programs know "
                                     << join(family_names(true)));
  c.model = c.family->model;
  if (c.family->slots.empty()) return c;
  // A hand-edited or foreign config must give an hseq::Error naming the checkpoint, not a bare
  // nlohmann exception or an "unknown --shorten ''" that blames a flag nobody gave.
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(info.model_config);
  } catch (nlohmann::json::exception const& ex) {
    HSEQ_FAIL("checkpoint " << path << ": the model config is not valid JSON (" << ex.what()
                            << "): " << info.model_config);
  }
  for (PolicySlot const& s : c.family->slots) {
    HSEQ_CHECK(j.is_object() && j.contains(s.flag) && j[s.flag].is_string(),
               "checkpoint " << path << ": the " << c.model << " config has no '" << s.flag
                             << "' policy name: " << info.model_config);
    c.policies.push_back(checked_policy(s, j[s.flag].get<std::string>(), "checkpoint " + path + ": "));
  }
  return c;
}

/// When resuming, the structure comes from the checkpoint; model flags given explicitly must agree
/// with it (a clear error instead of silently training another model than the one asked for).
/// Only flags given on the command line are compared: a flag left at its default says nothing
/// about the model (resuming an hourglass checkpoint with just `--dim 64` must not be read as
/// "--model transformer"). Flags that do not apply to the checkpoint's family are ignored, as they
/// are when training from scratch.
inline void check_resume_flags(Args const& a, ModelChoice const& ckpt) {
  // Family and policies: the flags given, the checkpoint's choice for the others (or the flag
  // defaults, when the flags name another family).
  ModelChoice flags;
  flags.model = a.given("model") ? a.str("model") : ckpt.model;
  flags.family = find_family(flags.model);
  if (flags.family) {
    for (std::size_t i = 0; i < flags.family->slots.size(); ++i) {
      PolicySlot const& s = flags.family->slots[i];
      flags.policies.push_back(a.given(s.flag) || flags.family != ckpt.family ? a.str(s.flag) : ckpt.policies[i]);
    }
  }
  HSEQ_CHECK(flags.family == ckpt.family && flags.policies == ckpt.policies,
             "--resume: the checkpoint holds a " << ckpt.describe(" model") << " but the flags ask for "
                                                 << flags.describe()
                                                 << "; drop the model flags to continue the checkpoint's model");
  // Structure: each given flag against the checkpoint's configuration (typed, by the family).
  ckpt.family->check_structure(a, ckpt);
}

/// The flags hseq-train adds to the model flags.
inline void add_train_flags(Args& a) {
  a.flag("batch", "16", "sequences per micro-batch")
      .flag("seq-len", "", "training sequence length (default: --context)")
      .flag("steps", "2000", "optimizer steps; 0 trains until --time-budget")
      .flag("time-budget", "0", "stop after this many seconds of training (0: no limit)")
      .flag("accum", "1", "micro-batches accumulated per step")
      .flag("lr", "2e-3", "peak learning rate")
      .flag("min-lr-ratio", "0.1", "final learning rate as a fraction of the peak (cosine decay)")
      .flag("warmup", "100", "linear warm-up steps")
      .flag("weight-decay", "0.1", "AdamW decoupled weight decay (weights only)")
      .flag("clip", "1.0", "global gradient-norm clip (0: off)")
      .flag("eval-every", "200", "steps between validations (0: only at the end)")
      .flag("eval-windows", "64", "validation windows per evaluation (0: the whole split)")
      .flag("out", "", "checkpoint to write (at the end, every --ckpt-every steps, and on SIGINT / SIGTERM)")
      .flag("ckpt-every", "0", "steps between checkpoints (0: only at the end)")
      .flag("resume", "", "checkpoint to continue from (model flags are taken from it)")
      .flag("csv", "",
            "write one CSV row per step (step, loss, bpc, val_bpc, seconds, tokens, val_accuracy for the "
            "autoencoder, then the model's loss terms and val_<term>, in nats)")
      .flag("seed", "1234", "seed of the initialisation and of the data stream")
      .flag("precision", "fp32",
            "math of the float GEMMs: fp32, or bf16 (bf16 operands, fp32 accumulation; master weights, optimizer "
            "state and checkpoints stay fp32; on the CPU oneDNN's AVX512-BF16/AMX kernels, emulated at fp32 speed "
            "where the CPU or build has none), or tf32 (CUDA only)")
      .flag("sample-bytes", "300", "bytes to generate after training (0: none)")
      .flag("prompt", "\n", "prompt of the final sample")
      .flag("phases", "",
            "training phases NAME:STEPS,...,NAME (the last runs to --steps); the model family names its phases "
            "and what each freezes. Default: one phase, or with --resume the checkpoint's phases (a --phases given "
            "then must agree with them on the steps already trained)");
}

/// One phase of --phases: a name and its steps (0 for the last, which runs to the end).
struct PhaseSpec {
  std::string name;
  std::int64_t steps = 0;
};
/// Parses --phases ("iem:800,decoder"): every phase but the last needs a positive step count.
inline std::vector<PhaseSpec> parse_phases(std::string const& text) {
  std::vector<PhaseSpec> out;
  if (text.empty()) return out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    PhaseSpec p;
    std::size_t colon = item.find(':');
    p.name = item.substr(0, colon);
    HSEQ_CHECK(!p.name.empty(), "--phases '" << text << "': a phase without a name (write NAME:STEPS,...,NAME)");
    if (colon != std::string::npos) {
      std::string n = item.substr(colon + 1);
      HSEQ_CHECK(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && n.size() < 18 && std::stoll(n) > 0,
                 "--phases '" << text << "': phase '" << p.name << "' needs a positive step count, got '" << n << "'");
      p.steps = std::stoll(n);
    }
    out.push_back(p);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  for (std::size_t i = 0; i + 1 < out.size(); ++i)
    HSEQ_CHECK(out[i].steps > 0, "--phases '" << text << "': phase '" << out[i].name
                                              << "' is not the last, so it needs a step count (NAME:STEPS)");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Benchmarks: the families' cases (bench/bench_families.cpp registers one benchmark per case and
// shape; test/examples/test_family.cpp runs the small ones)

/// "BM_family/<model>/<case>/b:<batch>/t:<seq_len>".
inline std::string bench_name(Family const& f, BenchCase const& c, BenchShape s) {
  return "BM_family/" + f.model + "/" + c.name + "/b:" + std::to_string(s.batch) + "/t:" + std::to_string(s.seq_len);
}

/// hseq-train's model and training flags set for one case at one shape: --model, --batch,
/// --seq-len, --context (the sequence length, unless the case gives one), then the case's flags.
inline Args bench_args(Family const& f, BenchCase const& c, BenchShape s) {
  Args a(bench_name(f, c, s), "a benchmark case of a model family");
  add_model_flags(a);
  add_train_flags(a);
  std::vector<std::string> v{"hseq-bench", "--model", f.model, "--batch", std::to_string(s.batch), "--seq-len",
                             std::to_string(s.seq_len)};
  bool context = false;
  for (std::string const& x : c.flags) context = context || x == "--context" || x.rfind("--context=", 0) == 0;
  if (!context) v.insert(v.end(), {"--context", std::to_string(s.seq_len)});
  v.insert(v.end(), c.flags.begin(), c.flags.end());
  std::vector<char const*> argv;
  for (std::string const& x : v) argv.push_back(x.c_str());
  a.parse(int(argv.size()), argv.data());
  return a;
}

/// Runs one case of family `f` at shape `s` through the family's benchmark action.
inline void run_bench_case(Family const& f, BenchCase const& c, BenchShape s, BenchLoop& loop) {
  HSEQ_CHECK(f.bench_train, "internal error: the " << f.model << " family has no benchmark action");
  Args a = bench_args(f, c, s);
  f.bench_train(a, choice_from_flags(a), loop);
}

inline void add_thread_flag(Args& a) { a.flag("threads", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)"); }
inline void apply_threads(Args const& a) {
#if defined(_OPENMP)
  if (a.integer("threads") > 0) omp_set_num_threads(int(a.integer("threads")));
#endif
}

}  // namespace cli
