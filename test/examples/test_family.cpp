// SPDX-License-Identifier: MIT
// The family registry of the example programs (examples/family.hpp, programs.hpp) against real
// checkpoints: what `--resume` accepts, the messages for flags that ask for another model, and the
// dispatch from a checkpoint to the model type, and the families' benchmark cases (every family
// declares some, a small one among them, and runs it). The test binary links the families of
// examples/families/list.def plus the toy family of test/families/list.def.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "families/hourglass.hpp"
#include "families/transformer_lm.hpp"
#include "support/temp_dir.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Error;
namespace fs = std::filesystem;
namespace io = hseq::io;

namespace {

struct TempDir : hseq::test::TempDir {
  TempDir() : hseq::test::TempDir("hseq_family_test") {}
};

using Store = hseq::nn::ParamStore<cli::Backend, cli::Real>;
using Lm = cli::TransformerLmFamily::Model<>;
using AvgRepeat = cli::HourglassFamily::Model<hseq::hier::AvgPool, hseq::hier::Repeat>;

/// Writes a checkpoint of a freshly initialised `model` (what hseq-train would write) and returns
/// a copy of its parameter values.
template <class M>
std::vector<float> save(M& model, std::string const& path, std::uint64_t seed) {
  cli::Backend::Context ctx;
  Store store(ctx, model);
  store.init(ctx, seed);
  io::save_checkpoint(ctx, path, {M::kKind, model.config_json(), "{}"}, store);
  return {store.values().begin(), store.values().end()};
}

/// hseq-train's model flags, parsed from `args`.
cli::Args model_args(std::initializer_list<char const*> args) {
  cli::Args a("hseq-train", "test");
  cli::add_model_flags(a);
  std::vector<char const*> argv{"hseq-train"};
  argv.insert(argv.end(), args.begin(), args.end());
  REQUIRE(a.parse(int(argv.size()), argv.data()));
  return a;
}

/// The error of check_resume_flags, or "(accepted)".
std::string resume_error(cli::ModelChoice const& ckpt, std::initializer_list<char const*> args) {
  cli::Args a = model_args(args);
  try {
    cli::check_resume_flags(a, ckpt);
  } catch (Error const& e) {
    return e.what();
  }
  return "(accepted)";
}

/// Checkpoints of a small transformer (context 8, not the flag default 128) and of an avg/repeat
/// hourglass, written once per test case.
struct Checkpoints {
  TempDir tmp;
  std::string lm_path = tmp.file("lm.safetensors"), hg_path = tmp.file("hg.safetensors");
  Lm lm{{.vocab = 256, .dim = 16, .heads = 2, .layers = 1, .context = 8}};
  AvgRepeat hg{[] {
    AvgRepeat::Config c;
    c.dim = 16;
    c.heads = 2;
    c.context = 8;
    c.hierarchy = hseq::hier::HierarchySpec::parse("1@1 1@2 1@1");
    return c;
  }()};
  std::vector<float> lm_values = save(lm, lm_path, 1), hg_values = save(hg, hg_path, 2);
};

}  // namespace

TEST_CASE("family: the registry lists the families in list order, and their flags") {
  std::vector<std::string> models, kinds;
  for (cli::Family const* f : cli::families()) {
    models.push_back(f->model);
    kinds.push_back(f->kind);
  }
  CHECK(models ==
        std::vector<std::string>{"transformer", "hourglass", "hierarchical", "transformer-xl", "compressive", "autoencoder",
                                 "bigram"});
  CHECK(kinds == std::vector<std::string>{"transformer_lm", "hourglass", "hierarchical", "transformer_xl",
                                          "compressive_transformer", "seq_autoencoder", "bigram"});
  REQUIRE(cli::find_family("autoencoder") != nullptr);
  CHECK(cli::find_family("autoencoder")->slots[0].names == std::vector<std::string>{"pool", "bank", "mix"});
  CHECK(cli::find_family("autoencoder")->slots[1].names == std::vector<std::string>{"2", "4", "8"});
  REQUIRE(cli::find_family("compressive") != nullptr);
  CHECK(cli::find_family("compressive")->slots.size() == 2);
  CHECK(cli::find_family("compressive")->slots[0].names ==
        std::vector<std::string>{"conv", "mean", "max", "dilated", "most-used"});
  CHECK(cli::find_family("compressive")->slots[1].names == std::vector<std::string>{"3", "2", "4"});
  REQUIRE(cli::find_family("hourglass") != nullptr);
  CHECK(cli::find_family("hourglass")->slots.size() == 2);
  CHECK(cli::find_family("hourglass")->slots[0].names ==
        std::vector<std::string>{"attention", "avg", "linear", "attention_linear", "select"});
  CHECK(cli::find_family("hourglass")->slots[1].names ==
        std::vector<std::string>{"attention", "repeat", "linear", "attention_linear"});
  CHECK(cli::find_family("rnn") == nullptr);

  // The union of the families' flags; the first family is the default --model.
  cli::Args a = model_args({});
  for (char const* f : {"model", "dim", "heads", "layers", "context", "position", "untied", "hierarchy", "shorten",
                        "upsample"})
    CHECK_NOTHROW(a.str(f));
  CHECK(a.str("model") == "transformer");
  std::ostringstream help;
  a.usage(help);
  CHECK(help.str().find("model family: transformer, hourglass, hierarchical, transformer-xl, compressive, autoencoder, bigram") !=
        std::string::npos);
  CHECK(help.str().find("hourglass: shortening (pooling), one of attention, avg, linear, attention_linear, select") != std::string::npos);

  cli::ModelChoice c = cli::choice_from_flags(model_args({"--model", "hourglass", "--upsample", "linear"}));
  CHECK(c.family == cli::find_family("hourglass"));
  CHECK(c.policies == std::vector<std::string>{"attention", "linear"});
  CHECK(c.describe() == "hourglass (shorten attention, upsample linear)");
  CHECK_THROWS_WITH_AS(cli::choice_from_flags(model_args({"--model", "hourglass", "--shorten", "max"})),
                       doctest::Contains("unknown --shorten 'max' (known: attention, avg, linear, attention_linear, select)"), Error);
  CHECK_THROWS_WITH_AS(cli::choice_from_flags(model_args({"--model", "rnn"})),
                       doctest::Contains("unknown --model 'rnn' (known: transformer, hourglass, hierarchical, transformer-xl, compressive, autoencoder, bigram)"), Error);
}

TEST_CASE("family: a checkpoint names its model family and policies") {
  Checkpoints c;
  cli::ModelChoice const lm = cli::choice_from_checkpoint(c.lm_path);
  CHECK(lm.model == "transformer");
  CHECK(lm.family == cli::find_family("transformer"));
  CHECK(lm.policies.empty());
  CHECK(lm.config_json == c.lm.config_json());

  cli::ModelChoice const hg = cli::choice_from_checkpoint(c.hg_path);
  CHECK(hg.model == "hourglass");
  CHECK(hg.policies == std::vector<std::string>{"avg", "repeat"});
  CHECK(hg.config_json == c.hg.config_json());

  // The family's dispatch builds the checkpoint's model type, and load_model restores its parameters.
  int calls = 0;
  cli::with_model<cli::TransformerLmFamily>(lm, [&]<class M>() {
    ++calls;
    CHECK(std::is_same_v<M, Lm>);
    cli::Backend::Context ctx;
    auto loaded = cli::load_model<M>(ctx, c.lm_path, lm);
    CHECK(loaded.model->config_json() == lm.config_json);
    CHECK(std::vector<float>(loaded.params->values().begin(), loaded.params->values().end()) == c.lm_values);
  });
  cli::with_model<cli::HourglassFamily>(hg, [&]<class M>() {
    ++calls;
    CHECK(std::is_same_v<M, AvgRepeat>);
    cli::Backend::Context ctx;
    auto loaded = cli::load_model<M>(ctx, c.hg_path, hg);
    CHECK(loaded.model->config_json() == hg.config_json);
    CHECK(std::vector<float>(loaded.params->values().begin(), loaded.params->values().end()) == c.hg_values);
  });
  CHECK(calls == 2);
}

TEST_CASE("family: a checkpoint of an unknown kind or without policies is refused") {
  Checkpoints c;
  std::string const other = c.tmp.file("other.safetensors");
  {
    cli::Backend::Context ctx;
    Store store(ctx, c.lm);
    io::save_checkpoint(ctx, other, {"lstm_lm", c.lm.config_json(), "{}"}, store);
  }
  CHECK_THROWS_WITH_AS(cli::choice_from_checkpoint(other),
                       doctest::Contains(("checkpoint " + other +
                                          " holds a 'lstm_lm' model; these programs know transformer_lm, hourglass, hierarchical, transformer_xl, "
                                          "compressive_transformer, seq_autoencoder, bigram")
                                             .c_str()),
                       Error);

  // An "hourglass" whose config does not name its shortening policy.
  std::string const bare = c.tmp.file("bare.safetensors");
  {
    cli::Backend::Context ctx;
    Store store(ctx, c.hg);
    io::save_checkpoint(ctx, bare, {"hourglass", R"({"dim": 16, "upsample": "repeat"})", "{}"}, store);
  }
  CHECK_THROWS_WITH_AS(cli::choice_from_checkpoint(bare),
                       doctest::Contains("the hourglass config has no 'shorten' policy name"), Error);

  CHECK_THROWS_WITH_AS(cli::choice_from_checkpoint(c.tmp.file("missing.safetensors")),
                       doctest::Contains("cannot open"), Error);
}

TEST_CASE("family: --resume accepts no model flags and flags equal to the checkpoint's") {
  Checkpoints c;
  cli::ModelChoice const lm = cli::choice_from_checkpoint(c.lm_path);
  cli::ModelChoice const hg = cli::choice_from_checkpoint(c.hg_path);

  CHECK(resume_error(lm, {}) == "(accepted)");
  CHECK(resume_error(hg, {}) == "(accepted)");
  CHECK(resume_error(lm, {"--model", "transformer", "--dim", "16", "--heads", "2", "--layers", "1", "--context", "8",
                          "--position", "learned", "--untied=false"}) == "(accepted)");
  CHECK(resume_error(hg, {"--model", "hourglass", "--shorten", "avg", "--upsample", "repeat", "--dim", "16",
                          "--heads", "2", "--context", "8", "--hierarchy", "1@1 1@2 1@1"}) == "(accepted)");
  // Hierarchies are compared as structures, not as strings.
  CHECK(resume_error(hg, {"--hierarchy", "  1@1 1@2   1@1 "}) == "(accepted)");

  // Flags left at their defaults are not compared: the defaults are --model transformer and
  // --context 128, which neither checkpoint has.
  CHECK(resume_error(hg, {"--dim", "16"}) == "(accepted)");
  CHECK(resume_error(lm, {"--dim", "16"}) == "(accepted)");
  // Flags of the other family are ignored, as when training from scratch.
  CHECK(resume_error(hg, {"--layers", "9", "--position", "none"}) == "(accepted)");
  // --untied is the Hourglass's flag too: asking a tied checkpoint for it is a disagreement.
  CHECK(resume_error(hg, {"--untied"}).find("tied: checkpoint none, flags false") != std::string::npos);
  CHECK(resume_error(lm, {"--hierarchy", "2@1 2@2 2@1", "--shorten", "linear", "--upsample", "linear"}) ==
        "(accepted)");
}

TEST_CASE("family: --resume refuses flags that ask for another family or other policies") {
  Checkpoints c;
  cli::ModelChoice const lm = cli::choice_from_checkpoint(c.lm_path);
  cli::ModelChoice const hg = cli::choice_from_checkpoint(c.hg_path);
  std::string const tail = "; drop the model flags to continue the checkpoint's model";

  CHECK(resume_error(lm, {"--model", "hourglass"}).find(
            "--resume: the checkpoint holds a transformer model but the flags ask for hourglass (shorten attention, "
            "upsample attention)" + tail) != std::string::npos);
  CHECK(resume_error(lm, {"--model", "hourglass", "--shorten", "avg", "--upsample", "repeat"})
            .find("but the flags ask for hourglass (shorten avg, upsample repeat)") != std::string::npos);
  CHECK(resume_error(hg, {"--model", "transformer"}).find(
            "--resume: the checkpoint holds a hourglass model (shorten avg, upsample repeat) but the flags ask for "
            "transformer" + tail) != std::string::npos);
  CHECK(resume_error(hg, {"--shorten", "linear"}).find(
            "the checkpoint holds a hourglass model (shorten avg, upsample repeat) but the flags ask for hourglass "
            "(shorten linear, upsample repeat)" + tail) != std::string::npos);
  CHECK(resume_error(hg, {"--upsample", "attention"}).find(
            "but the flags ask for hourglass (shorten avg, upsample attention)" + tail) != std::string::npos);
  CHECK(resume_error(hg, {"--model", "rnn"}).find("but the flags ask for rnn" + tail) != std::string::npos);
}

TEST_CASE("family: --resume refuses a differing --dim, --layers, --hierarchy and the other structure flags") {
  Checkpoints c;
  cli::ModelChoice const lm = cli::choice_from_checkpoint(c.lm_path);
  cli::ModelChoice const hg = cli::choice_from_checkpoint(c.hg_path);
  std::string const head = "--resume: the model flags disagree with the checkpoint (";
  std::string const tail = "); drop them to continue the checkpoint's model";

  CHECK(resume_error(lm, {"--dim", "32"}).find(head + "dim: checkpoint 16, flags 32" + tail) != std::string::npos);
  CHECK(resume_error(lm, {"--layers", "3", "--dim", "32"})
            .find(head + "dim: checkpoint 16, flags 32, layers: checkpoint 1, flags 3" + tail) != std::string::npos);
  // Reported in the config's key order.
  CHECK(resume_error(lm, {"--heads", "4", "--context", "16"})
            .find(head + "context: checkpoint 8, flags 16, heads: checkpoint 2, flags 4" + tail) != std::string::npos);
  CHECK(resume_error(lm, {"--position", "none"})
            .find(head + "position: checkpoint \"learned\", flags \"none\"" + tail) != std::string::npos);
  CHECK(resume_error(lm, {"--untied"}).find(head + "tied: checkpoint true, flags false" + tail) != std::string::npos);

  CHECK(resume_error(hg, {"--dim", "8"}).find(head + "dim: checkpoint 16, flags 8" + tail) != std::string::npos);
  CHECK(resume_error(hg, {"--hierarchy", "2@1 2@2 2@1"})
            .find(head + "hierarchy: checkpoint \"1@1 1@2 1@1\", flags \"2@1 2@2 2@1\"" + tail) != std::string::npos);
  // The family check comes first: the structure of another family is not compared.
  CHECK(resume_error(hg, {"--model", "transformer", "--dim", "8"}).find("but the flags ask for transformer") !=
        std::string::npos);
  // A malformed flag value is reported as such.
  CHECK(resume_error(hg, {"--hierarchy", "1@1 1@2"}).find("a palindrome with an odd count") != std::string::npos);
  CHECK(resume_error(lm, {"--dim", "sixteen"}).find("--dim expects an integer, got 'sixteen'") != std::string::npos);
}

TEST_CASE("family: --phases parses NAME:STEPS,...,NAME and the family names what each phase freezes") {
  auto p = cli::parse_phases("iem:800,decoder");
  REQUIRE(p.size() == 2);
  CHECK(p[0].name == "iem");
  CHECK(p[0].steps == 800);
  CHECK(p[1].name == "decoder");
  CHECK(p[1].steps == 0);
  CHECK(cli::parse_phases("").empty());
  CHECK(cli::parse_phases("full:5").size() == 1);
  CHECK_THROWS_WITH_AS(cli::parse_phases("iem,decoder"),
                       doctest::Contains("phase 'iem' is not the last, so it needs a step count"), Error);
  CHECK_THROWS_WITH_AS(cli::parse_phases("iem:0,decoder"), doctest::Contains("needs a positive step count, got '0'"),
                       Error);
  CHECK_THROWS_WITH_AS(cli::parse_phases("iem:x"), doctest::Contains("needs a positive step count, got 'x'"), Error);
  CHECK_THROWS_WITH_AS(cli::parse_phases(":5"), doctest::Contains("a phase without a name"), Error);
  CHECK_THROWS_WITH_AS(cli::parse_phases("iem:5,"), doctest::Contains("a phase without a name"), Error);
}

namespace {
/// hseq-train's model and training flags, parsed from `args`.
cli::Args train_args(std::vector<char const*> args) {
  cli::Args a("hseq-train", "test");
  cli::add_model_flags(a);
  cli::add_train_flags(a);
  std::vector<char const*> argv{"hseq-train"};
  argv.insert(argv.end(), args.begin(), args.end());
  REQUIRE(a.parse(int(argv.size()), argv.data()));
  return a;
}
/// A transformer checkpoint at `step` whose trainer state records `phases` (none: a state written
/// before schedules were recorded).
void save_with_phases(std::string const& path, std::int64_t step,
                      std::optional<std::vector<hseq::train::Phase>> phases) {
  Lm lm{{.vocab = 256, .dim = 16, .heads = 2, .layers = 1, .context = 8}};
  cli::Backend::Context ctx;
  Store store(ctx, lm);
  hseq::train::TrainerState st;
  st.step = step;
  st.phases = std::move(phases);
  io::save_checkpoint(ctx, path, {Lm::kKind, lm.config_json(), st.to_json()}, store);
}
/// The phases hseq-train would train with (--phases, parsed as `train` does, as patterns-free
/// phases), after resume_phases; `note` gets its note, or the error.
std::vector<hseq::train::Phase> resumed_phases(std::vector<char const*> args, std::string& note,
                                               bool has_phases = true) {
  cli::Args a = train_args(args);
  std::vector<hseq::train::Phase> phases;
  for (auto const& p : cli::parse_phases(a.str("phases"))) phases.push_back({p.name, p.steps, {}, {}});
  try {
    note = cli::resume_phases(a, phases, has_phases);
  } catch (Error const& e) {
    note = std::string("error: ") + e.what();
  }
  return phases;
}
}  // namespace

TEST_CASE("family: --resume continues the checkpoint's phases without --phases, refuses a disagreeing --phases") {
  TempDir tmp;
  std::string const two = tmp.file("two.safetensors"), iem = tmp.file("iem.safetensors"),
                    old = tmp.file("old.safetensors");
  save_with_phases(two, 4, std::vector<hseq::train::Phase>{{"iem", 6, {}, {}}, {"decoder", 0, {}, {}}});
  save_with_phases(iem, 4, std::vector<hseq::train::Phase>{{"iem", 0, {}, {}}});
  save_with_phases(old, 4, std::nullopt);
  std::string note;

  // Not resuming: --phases as given, no note.
  CHECK(hseq::train::phases_text(resumed_phases({"--phases", "iem:2,decoder"}, note)) == "iem:2,decoder");
  CHECK(note.empty());
  // Resuming without --phases: the checkpoint's schedule.
  CHECK(hseq::train::phases_text(resumed_phases({"--resume", two.c_str()}, note)) == "iem:6,decoder");
  CHECK(note == " (the checkpoint's)");
  // The same schedule again, or one that changes only steps not yet trained ("iem" continued as
  // "iem:4,decoder" from its step 4, bench/hred_haed_claims.sh's two processes).
  CHECK(hseq::train::phases_text(resumed_phases({"--resume", two.c_str(), "--phases", "iem:6,decoder"}, note)) ==
        "iem:6,decoder");
  CHECK(note == " (as the checkpoint's)");
  CHECK(hseq::train::phases_text(resumed_phases({"--resume", iem.c_str(), "--phases", "iem:4,decoder"}, note)) ==
        "iem:4,decoder");
  CHECK(note == " (the checkpoint's were 'iem'; they agree on its 4 steps)");
  // A --phases that puts a trained step in another phase is refused, naming both.
  resumed_phases({"--resume", two.c_str(), "--phases", "iem:2,decoder"}, note);
  CAPTURE(note);
  CHECK(note.find("--resume: --phases 'iem:2,decoder' disagrees with the checkpoint's phases 'iem:6,decoder' on "
                  "the 4 steps it has trained (at step 3 the checkpoint's trains phase 'iem'") != std::string::npos);
  CHECK(note.find("drop --phases to continue the checkpoint's schedule") != std::string::npos);
  // A checkpoint that predates stored schedules: --phases as given, and a note without it.
  CHECK(hseq::train::phases_text(resumed_phases({"--resume", old.c_str(), "--phases", "iem:2,decoder"}, note)) ==
        "iem:2,decoder");
  CHECK(note.empty());
  CHECK(resumed_phases({"--resume", old.c_str()}, note).empty());
  CHECK(note.find("the checkpoint predates stored phase schedules") != std::string::npos);
  resumed_phases({"--resume", old.c_str()}, note, /*has_phases=*/false);
  CHECK(note.empty());  // a family without phases has nothing to say
}

namespace {

/// A benchmark loop that runs `limit` steps and keeps the report.
struct CountingLoop final : cli::BenchLoop {
  int limit = 0, steps = 0, reports = 0;
  cli::BenchResult result;
  explicit CountingLoop(int n) : limit(n) {}
  bool keep_running() override { return steps < limit ? (++steps, true) : false; }
  void report(cli::BenchResult const& r) override {
    ++reports;
    result = r;
  }
};

}  // namespace

TEST_CASE("family: every family declares benchmark cases, a small one among them, and each case builds its model") {
  for (cli::Family const* f : cli::families()) {
    CAPTURE(f->model);
    REQUIRE(bool(f->bench_train));
    REQUIRE(!f->bench_cases.empty());
    std::vector<std::string> names;
    cli::BenchCase const* small = nullptr;
    for (cli::BenchCase const& c : f->bench_cases) {
      CAPTURE(c.name);
      CHECK(std::find(names.begin(), names.end(), c.name) == names.end());  // unique within the family
      names.push_back(c.name);
      CHECK(!c.shapes.empty());
      if (!small && c.name.find("small") != std::string::npos) small = &c;
      // Each shape's flags build the model (no step: the loop ends at once) and report its count.
      for (cli::BenchShape s : c.shapes) {
        CAPTURE(s.seq_len);
        CountingLoop none(0);
        cli::run_bench_case(*f, c, s, none);
        CHECK(none.reports == 1);
        CHECK(none.result.tokens_per_step == s.batch * s.seq_len);
        CHECK(none.result.params > 0);
        CHECK(none.result.has_flops);
        CHECK(none.result.flops.n_total == double(none.result.params));
      }
    }
    // The tiny case of ctest's bench.smoke (its filter is "small") runs training steps.
    REQUIRE(small != nullptr);
    CountingLoop loop(2);
    cli::BenchShape s = small->shapes.front();
    CHECK(s.batch * s.seq_len <= 256);
    cli::run_bench_case(*f, *small, s, loop);
    CHECK(loop.steps == 2);
    CHECK(loop.reports == 1);
    CHECK(std::isfinite(loop.result.loss));
    CHECK(loop.result.loss > 0);
    // Every model counts FLOPs but the bigram, a table lookup (models/flops.hpp).
    CHECK((loop.result.flops.palm() > 0) == (f->model != "bigram"));
  }
}

TEST_CASE("family: a benchmark case is hseq-train's flags, named BM_family/<family>/<case>/b:<batch>/t:<seq_len>") {
  cli::Family const& hg = *cli::find_family("hourglass");
  auto avg = std::find_if(hg.bench_cases.begin(), hg.bench_cases.end(),
                          [](cli::BenchCase const& c) { return c.name == "d256_avg"; });
  REQUIRE(avg != hg.bench_cases.end());
  CHECK(cli::bench_name(hg, *avg, {4, 1024}) == "BM_family/hourglass/d256_avg/b:4/t:1024");
  cli::Args a = cli::bench_args(hg, *avg, {4, 1024});
  CHECK(a.str("model") == "hourglass");
  CHECK(a.integer("batch") == 4);
  CHECK(a.integer("seq-len") == 1024);
  CHECK(a.integer("context") == 1024);  // the sequence length unless the case gives a context
  CHECK(a.integer("dim") == 256);
  CHECK(a.str("hierarchy") == "2@1 4@4 2@1");
  CHECK(cli::choice_from_flags(a).policies == std::vector<std::string>{"avg", "repeat"});
  // A case's own --context is kept.
  cli::Args b = cli::bench_args(hg, {"c", {"--context=2048"}, {}}, {1, 64});
  CHECK(b.integer("context") == 2048);
  // A flag no family declares names the case.
  CHECK_THROWS_WITH_AS(cli::bench_args(hg, {"typo", {"--dimm", "8"}, {}}, {1, 64}),
                       doctest::Contains("BM_family/hourglass/typo/b:1/t:64: unknown flag --dimm"), Error);
}

}  // namespace HSEQ_TEST_UNIT
