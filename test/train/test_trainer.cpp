// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "hseq/io/text_dataset.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/train/trainer.hpp"

using namespace hseq;
using Lm = models::TransformerLm<cpu, float>;
using TrainerF = train::Trainer<cpu, float, Lm>;

namespace {
std::string corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  return s;
}
Lm::Config tiny() { return {.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 16}; }
train::TrainerConfig tcfg() {
  train::TrainerConfig t;
  t.batch = 4;
  t.seq_len = 16;
  t.steps = 8;
  t.warmup = 2;
  t.lr = 3e-3;
  t.eval_every = 0;
  t.eval_windows = 8;
  return t;
}
std::filesystem::path tmp_path(std::string const& name) {
  auto dir = std::filesystem::temp_directory_path() / "hseq_test_trainer";
  std::filesystem::create_directories(dir);
  return dir / name;
}
}  // namespace

TEST_CASE("trainer: a resumed run continues the exact loss sequence of an uninterrupted one") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  // Uninterrupted: 8 steps.
  Lm m1(tiny());
  nn::ParamStore<cpu, float> p1(m1);
  p1.init(ctx, 7);
  TrainerF t1(m1, p1, data, tcfg());
  for (int i = 0; i < 8; ++i) t1.step(ctx);
  // Interrupted after 4 steps, saved, restored into fresh objects, 4 more steps.
  auto path = tmp_path("resume.safetensors").string();
  {
    Lm m2(tiny());
    nn::ParamStore<cpu, float> p2(m2);
    p2.init(ctx, 7);
    TrainerF t2(m2, p2, data, tcfg());
    for (int i = 0; i < 4; ++i) t2.step(ctx);
    t2.save(path);
  }
  Lm m3(tiny());
  nn::ParamStore<cpu, float> p3(m3);
  p3.init(ctx, 99);  // different initialisation: everything must come from the checkpoint
  TrainerF t3(m3, p3, data, tcfg());
  t3.load(path);
  CHECK(t3.state().step == 4);
  for (int i = 0; i < 4; ++i) t3.step(ctx);
  REQUIRE(t3.losses().size() == 4);
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(t3.losses()[std::size_t(i)] == t1.losses()[std::size_t(4 + i)]);  // bit-identical
  }
  for (std::int64_t i = 0; i < p1.values().numel(); ++i) REQUIRE(p1.values()[i] == p3.values()[i]);
  CHECK(t1.losses().back() < t1.losses().front());  // it learns
  std::filesystem::remove(path);
}

TEST_CASE("trainer: validation bpc is the mean NLL over windows in bits, and training lowers it") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  auto cfg = tcfg();
  cfg.steps = 60;
  TrainerF t(m, p, data, cfg);
  double before = t.evaluate(ctx, 0);
  CHECK(before == doctest::Approx(8.0).epsilon(0.03));  // ~ log2(256) at initialisation
  double after = t.run(ctx);
  CHECK(after < before - 2.0);
  CHECK(t.state().step == 60);
  CHECK(t.state().tokens == 60 * 4 * 16);
}

TEST_CASE("trainer: non-finite steps are skipped and counted, and too many in a row stop with a clear error") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  auto cfg = tcfg();
  cfg.max_bad_steps = 3;
  TrainerF t(m, p, data, cfg);
  t.step(ctx);
  // Poison one weight: every following loss is NaN.
  p.find("blocks.0.mlp.fc1.weight").value[5] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> before(p.values().begin(), p.values().end());
  CHECK(std::isnan(t.step(ctx)));
  CHECK(std::isnan(t.step(ctx)));
  CHECK(t.state().skipped == 2);
  CHECK(t.optimizer().steps() == 1);  // skipped steps update nothing
  for (std::size_t i = 0; i < before.size(); ++i)
    if (!std::isnan(before[i])) REQUIRE(p.values()[std::int64_t(i)] == before[i]);
  CHECK_THROWS_WITH_AS(t.step(ctx), doctest::Contains("3 consecutive steps had a non-finite loss"), Error);
}

TEST_CASE("trainer: checkpoints refuse another model structure") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  TrainerF t(m, p, data, tcfg());
  t.step(ctx);
  auto path = tmp_path("structure.safetensors").string();
  t.save(path);
  auto other_cfg = tiny();
  other_cfg.layers = 3;
  Lm other(other_cfg);
  nn::ParamStore<cpu, float> po(other);
  TrainerF to(other, po, data, tcfg());
  CHECK_THROWS_WITH_AS(to.load(path), doctest::Contains("layers"), Error);
  std::filesystem::remove(path);
}

TEST_CASE("trainer: bad configuration is rejected") {
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  auto cfg = tcfg();
  cfg.steps = 0;
  CHECK_THROWS_WITH_AS(TrainerF(m, p, data, cfg), doctest::Contains("steps or a time budget"), Error);
  cfg = tcfg();
  cfg.batch = 0;
  CHECK_THROWS_AS(TrainerF(m, p, data, cfg), Error);
}
