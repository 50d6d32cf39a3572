// SPDX-License-Identifier: MIT
// The toy family of test/families/bigram.hpp through the library: it is a CachedModel, and the
// generic Trainer, checkpoints (with an exact resume), evaluation and generation work on it
// unchanged; the programs' registry knows it through its one list line. (The same family through
// hseq-train-toy & co. is the ctest entry families.toy_programs.)
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "families/bigram.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/cached_model.hpp"
#include "hseq/models/generate.hpp"
#include "hseq/train/trainer.hpp"
#include "support/temp_dir.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Bigram = toy::Bigram<cpu, float>;
static_assert(models::CachedModel<Bigram, cpu, float>);

namespace {
// A deterministic cycle: every byte has one successor, so a bigram can learn it exactly.
io::TextDataset cycle() {
  std::string s;
  for (int i = 0; i < 2000; ++i) s += "abcde";
  return io::TextDataset::from_string(s, "cycle");
}
train::TrainerConfig config(std::int64_t steps) {
  train::TrainerConfig t;
  t.batch = 4;
  t.seq_len = 16;
  t.steps = steps;
  t.lr = 0.5;
  t.warmup = 2;
  t.eval_every = 0;
  t.eval_windows = 8;
  t.seed = 7;
  return t;
}
}  // namespace

TEST_CASE("toy family: the generic Trainer trains, checkpoints, resumes exactly and evaluates a bigram") {
  test::TempDir tmp("hseq_bigram_test");
  io::TextDataset data = cycle();
  cpu::Context ctx;

  // Uninterrupted: 40 steps.
  Bigram a({.vocab = 256, .context = 16});
  nn::ParamStore<cpu, float> pa(ctx, a);
  pa.init(ctx, 1);
  train::Trainer<cpu, float, Bigram> ta(ctx, a, pa, data, config(40));
  double const before = ta.evaluate(ctx);
  CHECK(before > 7.5);  // about log2(256) for a near-uniform table
  for (int i = 0; i < 40; ++i) ta.step(ctx);
  double const after = ta.evaluate(ctx);
  CHECK(after < 0.5);  // the cycle is learnt

  // Interrupted after 20 steps, checkpointed, resumed by fresh objects.
  std::string const path = tmp.file("bigram.safetensors");
  {
    Bigram b({.vocab = 256, .context = 16});
    nn::ParamStore<cpu, float> pb(ctx, b);
    pb.init(ctx, 1);
    train::Trainer<cpu, float, Bigram> tb(ctx, b, pb, data, config(40));
    for (int i = 0; i < 20; ++i) tb.step(ctx);
    tb.save(ctx, path);
  }
  Bigram c({.vocab = 256, .context = 16});
  nn::ParamStore<cpu, float> pc(ctx, c);
  train::Trainer<cpu, float, Bigram> tc(ctx, c, pc, data, config(40));
  tc.load(ctx, path);
  CHECK(tc.state().step == 20);
  for (int i = 0; i < 20; ++i) tc.step(ctx);
  std::vector<double> tail(ta.losses().begin() + 20, ta.losses().end());
  CHECK(tc.losses() == tail);
  CHECK(std::vector<float>(pc.values().begin(), pc.values().end()) ==
        std::vector<float>(pa.values().begin(), pa.values().end()));
  CHECK(tc.evaluate(ctx) == after);

  // Cached generation through the generic generate(): greedy continues the cycle.
  models::GenerateConfig g;
  g.max_bytes = 12;
  g.sampler.temperature = 0;
  CHECK(models::generate<cpu, float>(ctx, c, "ab", g) == "cdeabcdeabcd");
}

TEST_CASE("toy family: one list line registers it with the programs") {
  cli::Family const* f = cli::find_family("bigram");
  REQUIRE(f != nullptr);
  CHECK(f->kind == "bigram");
  CHECK(f->slots.empty());
  CHECK(f == cli::families().back());  // list order: examples' families, then the test list's

  // A bigram checkpoint chooses the family, and the family's config flags are in --help.
  test::TempDir tmp("hseq_bigram_test");
  cpu::Context ctx;
  Bigram m({.vocab = 256, .context = 16});
  nn::ParamStore<cpu, float> ps(ctx, m);
  std::string const path = tmp.file("b.safetensors");
  io::save_checkpoint(ctx, path, {Bigram::kKind, m.config_json(), "{}"}, ps);
  cli::ModelChoice const choice = cli::choice_from_checkpoint(path);
  CHECK(choice.family == f);
  CHECK(choice.config_json == m.config_json());

  // Its benchmark row comes with it (bench/bench_families.cpp reads the registry), and its FLOP
  // count is zero: the table is read by lookup (an embedding, models/flops.hpp).
  REQUIRE(f->bench_cases.size() == 1);
  CHECK(cli::bench_name(*f, f->bench_cases[0], f->bench_cases[0].shapes.at(0)) == "BM_family/bigram/small/b:1/t:64");
  models::FlopCount fc = m.flops(16);
  CHECK(fc.n_total == 256 * 256);
  CHECK(fc.n_nonemb == 0);
  CHECK(fc.palm() == 0);
}

}  // namespace HSEQ_TEST_UNIT
