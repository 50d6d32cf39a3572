// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/io/checkpoint.hpp"
#include "hseq/io/csv_log.hpp"
#include "hseq/io/progress.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/models/transformer_xl.hpp"
#include "hseq/train/task.hpp"
#include "hseq/train/trainer.hpp"
#include "train/phased_lm.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Lm = models::TransformerLm<cpu, float>;
using TrainerF = train::Trainer<cpu, float, Lm>;
using Hg = models::Hourglass<cpu, float>;  // attention shortening and upsampling

namespace {
std::string corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  return s;
}
Lm::Config tiny() { return {.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 16}; }
// One full-rate block, one block at rate 1/2, one full-rate block: sequences of 16 pad to nothing.
Hg::Config tiny_hg() {
  return {.vocab = 256, .dim = 16, .heads = 2, .context = 16, .mlp_hidden = 32,
          .hierarchy = hier::HierarchySpec::parse("1@1 1@2 1@1")};
}
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

template <class T>
std::vector<T> copy_of(View<T, HostSpace> v) {
  return std::vector<T>(v.data, v.data + v.numel());
}

/// A test model with two loss terms: the TransformerLm cross-entropy "ce" plus "l2" = kLambda *
/// mean(w^2) over ln_f.weight (the weighting is the model's own, as the trainer expects). It also
/// records the optional hooks: the phases it was told and the forward calls that followed a
/// reset_state.
struct TermLm : test::GainLm {
  using GainLm::GainLm;
  static constexpr char const* kKind = "term_lm";
  struct Term {
    char const* name;
    double value;
  };
  struct Trace {
    Lm::Trace inner;
    std::int64_t counted = 0;
    View<float const, HostSpace> logits;
    std::array<Term, 2> terms{{{"ce", 0.0}, {"l2", 0.0}}};
  };

  double forward(cpu::Context& ctx, View<std::int32_t const, HostSpace> ids, View<std::int32_t const, HostSpace> tg,
                 Arena<HostSpace>& ws, Trace& tr) const {
    double ce = lm.forward(ctx, ids, tg, ws, tr.inner);
    tr.counted = tr.inner.counted;
    tr.logits = tr.inner.logits;
    tr.terms[0].value = ce;
    tr.terms[1].value = l2();
    after_reset.push_back(pending_reset);
    pending_reset = false;
    return ce + tr.terms[1].value;
  }
  void backward(cpu::Context& ctx, Trace& tr, Arena<HostSpace>& ws) const {
    lm.backward(ctx, tr.inner, ws);
    l2_backward();
  }
  // Optional hooks the trainer detects.
  void set_phase(std::string_view name) { phases.emplace_back(name); }
  void reset_state(cpu::Context&) { pending_reset = true; }

  std::vector<std::string> phases;
  mutable std::vector<bool> after_reset;  // per forward call: a reset_state came before it
  mutable bool pending_reset = false;
};
static_assert(models::Model<TermLm, cpu, float>);

/// A test model with the dropout hook (`Trace::dropout`, train/trainer.hpp): it records the stream of
/// every forward, and its loss depends on the masks: the TransformerLm cross-entropy plus kLambda *
/// mean(drop(w)^2) over ln_f.weight, with drop = inverted dropout at kRate under the trace's stream
/// (no dropout when it is inactive), so a resumed run only repeats the loss sequence if it draws the
/// same masks.
struct DropLm : test::GainLm {
  using GainLm::GainLm;
  static constexpr char const* kKind = "drop_lm";
  static constexpr double kRate = 0.5;
  struct Trace {
    Lm::Trace inner;
    std::int64_t counted = 0;
    View<float const, HostSpace> logits;
    nn::DropoutStream dropout;
    std::vector<float> dropped;  // drop(w), for backward
  };
  double forward(cpu::Context& ctx, View<std::int32_t const, HostSpace> ids, View<std::int32_t const, HostSpace> tg,
                 Arena<HostSpace>& ws, Trace& tr) const {
    seen.push_back(tr.dropout);
    double ce = lm.forward(ctx, ids, tg, ws, tr.inner);
    tr.counted = tr.inner.counted;
    tr.logits = tr.inner.logits;
    tr.dropped.resize(std::size_t(gain->value.numel()));
    View<float, HostSpace> dv(tr.dropped.data(), gain->value.shape);
    ops::dropout_forward<float>(ctx, gain->value, dv, tr.dropout.rate(kRate), tr.dropout.key(0));
    double s = 0;
    for (float v : tr.dropped) s += double(v) * double(v);
    return ce + kLambda * s / double(tr.dropped.size());
  }
  void backward(cpu::Context& ctx, Trace& tr, Arena<HostSpace>& ws) const {
    lm.backward(ctx, tr.inner, ws);
    if (gain->frozen) return;
    std::vector<float> g(tr.dropped.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = float(kLambda * 2.0 * double(tr.dropped[i]) / double(g.size()));
    View<float, HostSpace> gv(g.data(), gain->value.shape);
    ops::dropout_backward<float>(ctx, gv, gv, tr.dropout.rate(kRate), tr.dropout.key(0));
    for (std::size_t i = 0; i < g.size(); ++i) gain->grad[std::int64_t(i)] += g[i];
  }
  mutable std::vector<nn::DropoutStream> seen;  // the trace's stream at every forward
};
static_assert(models::Model<DropLm, cpu, float>);

/// Bit-identity of two trainers' parameters and AdamW moments (flat [n] buffers).
template <class M>
void require_same_weights(nn::ParamStore<cpu, float>& pa, train::Trainer<cpu, float, M>& ta,
                          nn::ParamStore<cpu, float>& pb, train::Trainer<cpu, float, M>& tb) {
  REQUIRE(pa.values().numel() == pb.values().numel());
  auto ma = ta.optimizer().first_moment(), mb = tb.optimizer().first_moment();
  auto va = ta.optimizer().second_moment(), vb = tb.optimizer().second_moment();
  for (std::int64_t i = 0; i < pa.values().numel(); ++i) {
    CAPTURE(i);
    REQUIRE(pa.values()[i] == pb.values()[i]);
    REQUIRE(ma[i] == mb[i]);
    REQUIRE(va[i] == vb[i]);
  }
  CHECK(ta.optimizer().steps() == tb.optimizer().steps());
}

/// Trains tc.steps steps uninterrupted (A). Then, from the same initialisation, `stop` steps, a
/// checkpoint, fresh objects initialised differently that load it, and the remaining steps (B). Both
/// validate after every `eval_every`-th step (evaluation must not move the data stream). The losses
/// of B after the resume, its validation figures and its final parameters and moments must be
/// bit-identical to A's.
template <class M>
void check_resume(typename M::Config mc, train::TrainerConfig tc, std::int64_t stop, std::int64_t eval_every,
                  std::string const& tag) {
  CAPTURE(std::string(M::kKind));
  CAPTURE(tc.grad_accum);
  CAPTURE(stop);
  using Tr = train::Trainer<cpu, float, M>;
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  std::int64_t const total = tc.steps;
  auto validate_now = [&](std::int64_t s) { return eval_every > 0 && s % eval_every == 0; };

  M m1(mc);
  nn::ParamStore<cpu, float> p1(m1);
  p1.init(ctx, 7);
  Tr t1(ctx, m1, p1, data, tc);
  std::vector<double> bpc1;  // validation after step s, for s > stop
  for (std::int64_t s = 1; s <= total; ++s) {
    t1.step(ctx);
    if (validate_now(s)) {
      double b = t1.evaluate(ctx);
      if (s > stop) bpc1.push_back(b);
    }
  }

  auto path = tmp_path("resume_" + tag + ".safetensors").string();
  {
    M m2(mc);
    nn::ParamStore<cpu, float> p2(m2);
    p2.init(ctx, 7);
    Tr t2(ctx, m2, p2, data, tc);
    for (std::int64_t s = 1; s <= stop; ++s) {
      t2.step(ctx);
      if (validate_now(s)) t2.evaluate(ctx);
    }
    t2.save(ctx, path);
  }
  M m3(mc);
  nn::ParamStore<cpu, float> p3(m3);
  p3.init(ctx, 99);  // another initialisation: everything must come from the checkpoint
  Tr t3(ctx, m3, p3, data, tc);
  t3.load(ctx, path);
  CHECK(t3.state().step == stop);
  CHECK(t3.state().tokens == stop * tc.batch * tc.seq_len * tc.grad_accum);
  std::vector<double> bpc3;
  for (std::int64_t s = stop + 1; s <= total; ++s) {
    t3.step(ctx);
    if (validate_now(s)) bpc3.push_back(t3.evaluate(ctx));
  }
  REQUIRE(t3.losses().size() == std::size_t(total - stop));
  for (std::int64_t i = 0; i < total - stop; ++i) {
    CAPTURE(i);
    CHECK(t3.losses()[std::size_t(i)] == t1.losses()[std::size_t(stop + i)]);  // bit-identical
  }
  REQUIRE(bpc3.size() == bpc1.size());
  for (std::size_t i = 0; i < bpc1.size(); ++i) CHECK(bpc3[i] == bpc1[i]);
  CHECK(t3.state().data_pos == t1.state().data_pos);
  require_same_weights(p1, t1, p3, t3);
  CHECK(t1.losses().back() < t1.losses().front());  // it learns
  std::filesystem::remove(path);
}

struct Interrupted {};

/// run() with ckpt_every: A runs tc.steps steps uninterrupted. B is the same run killed while
/// reporting step `crash_after` (the progress clock throws, so the checkpoint of that step is not
/// written and the newest one on disk is the one run() wrote at the last multiple of ckpt_every
/// before it); fresh objects resume from that file and finish with run(). B's losses after the
/// checkpoint, final validation bpc, parameters, moments and state must equal A's bit for bit.
template <class M>
void check_run_resume(typename M::Config mc, train::TrainerConfig tc, std::int64_t crash_after,
                      std::string const& tag) {
  CAPTURE(std::string(M::kKind));
  CAPTURE(crash_after);
  using Tr = train::Trainer<cpu, float, M>;
  REQUIRE(tc.ckpt_every > 0);
  REQUIRE(crash_after < tc.steps);
  std::int64_t const saved_at = (crash_after - 1) / tc.ckpt_every * tc.ckpt_every;
  REQUIRE(saved_at > 0);  // the run must have written a periodic checkpoint before the crash
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);

  tc.ckpt_path = tmp_path("run_a_" + tag + ".safetensors").string();
  M m1(mc);
  nn::ParamStore<cpu, float> p1(m1);
  p1.init(ctx, 7);
  Tr t1(ctx, m1, p1, data, tc);
  double bpc1 = t1.run(ctx);
  REQUIRE(t1.state().step == tc.steps);

  tc.ckpt_path = tmp_path("run_b_" + tag + ".safetensors").string();
  std::filesystem::remove(tc.ckpt_path);
  {
    M m2(mc);
    nn::ParamStore<cpu, float> p2(m2);
    p2.init(ctx, 7);
    Tr t2(ctx, m2, p2, data, tc);
    std::ostringstream sink;
    io::Progress progress(tc.steps, sink, false);
    // Clock calls: one by set_clock, then one per update, which run() makes after each step and
    // before that step's checkpoint.
    std::int64_t calls = 0;
    progress.set_clock([&] {
      if (++calls == crash_after + 1) throw Interrupted{};
      return double(calls);
    });
    CHECK_THROWS_AS(t2.run(ctx, &progress), Interrupted);
    CHECK(t2.state().step == crash_after);  // steps after the checkpoint were done, then lost
  }
  REQUIRE(std::filesystem::exists(tc.ckpt_path));
  M m3(mc);
  nn::ParamStore<cpu, float> p3(m3);
  p3.init(ctx, 99);
  Tr t3(ctx, m3, p3, data, tc);
  t3.load(ctx, tc.ckpt_path);
  REQUIRE(t3.state().step == saved_at);
  double bpc3 = t3.run(ctx);
  REQUIRE(t3.losses().size() == std::size_t(tc.steps - saved_at));
  for (std::int64_t i = 0; i < tc.steps - saved_at; ++i) {
    CAPTURE(i);
    CHECK(t3.losses()[std::size_t(i)] == t1.losses()[std::size_t(saved_at + i)]);
  }
  CHECK(bpc3 == bpc1);
  CHECK(t3.state().step == t1.state().step);
  CHECK(t3.state().tokens == t1.state().tokens);
  CHECK(t3.state().data_pos == t1.state().data_pos);
  require_same_weights(p1, t1, p3, t3);
  // Both final checkpoints (written by run()) hold the same trainer state apart from wall time.
  auto state_of = [](std::string const& path) {
    auto j = nlohmann::json::parse(io::read_checkpoint_info(path).trainer_state);
    j.erase("elapsed_s");
    return j;
  };
  CHECK(state_of(tc.ckpt_path) == state_of(t1.config().ckpt_path));
  std::filesystem::remove(t1.config().ckpt_path);
  std::filesystem::remove(tc.ckpt_path);
}
}  // namespace

TEST_CASE("trainer: a resumed run continues the exact loss sequence of an uninterrupted one") {
  auto tc = tcfg();
  check_resume<Lm>(tiny(), tc, 4, 0, "lm");
  check_resume<Hg>(tiny_hg(), tc, 4, 0, "hg");
}

TEST_CASE("trainer: bit-exact resume with gradient accumulation and validation in between, both models") {
  auto tc = tcfg();
  tc.grad_accum = 3;  // three micro-batches (three data draws) per step
  check_resume<Lm>(tiny(), tc, 5, 2, "lm_accum");
  check_resume<Hg>(tiny_hg(), tc, 5, 2, "hg_accum");
}

TEST_CASE("trainer: run() with ckpt_every resumes from its periodic checkpoint bit-exactly, both models") {
  auto tc = tcfg();
  tc.grad_accum = 2;
  tc.eval_every = 2;
  tc.ckpt_every = 3;
  check_run_resume<Lm>(tiny(), tc, 5, "lm");  // killed during step 5: resumes from step 3
  check_run_resume<Hg>(tiny_hg(), tc, 5, "hg");
}

TEST_CASE("trainer: the stop flag ends run() after the current step with a checkpoint; resuming continues exactly") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  auto tc = tcfg();
  tc.steps = 12;
  tc.ckpt_path = tmp_path("reference_stop.safetensors").string();
  Lm m1(tiny());
  nn::ParamStore<cpu, float> p1(m1);
  p1.init(ctx, 7);
  TrainerF t1(ctx, m1, p1, data, tc);
  t1.run(ctx);
  CHECK_FALSE(t1.interrupted());

  tc.ckpt_path = tmp_path("stopped.safetensors").string();
  std::filesystem::remove(tc.ckpt_path);
  std::atomic<int> flag{0};
  Lm m2(tiny());
  nn::ParamStore<cpu, float> p2(m2);
  p2.init(ctx, 7);
  TrainerF t2(ctx, m2, p2, data, tc);
  t2.set_stop_flag(&flag);
  std::ostringstream sink;
  io::Progress progress(tc.steps, sink, false);
  // The progress clock runs after every step: the "signal" arrives during step 6's report.
  std::int64_t calls = 0;
  progress.set_clock([&] {
    if (++calls == 6 + 1) flag.store(15);
    return double(calls);
  });
  double const bpc = t2.run(ctx, &progress);
  CHECK(t2.interrupted());
  CHECK(std::isnan(bpc));                 // no final validation
  CHECK(t2.state().step == 6);            // the step in flight finished, no later one started
  REQUIRE(std::filesystem::exists(tc.ckpt_path));  // and the checkpoint was written
  Lm m3(tiny());
  nn::ParamStore<cpu, float> p3(m3);
  p3.init(ctx, 99);
  TrainerF t3(ctx, m3, p3, data, tc);
  t3.load(ctx, tc.ckpt_path);
  REQUIRE(t3.state().step == 6);
  t3.set_stop_flag(&flag);  // still set: a fresh run() stops at once, a cleared one runs
  t3.run(ctx);
  CHECK(t3.interrupted());
  CHECK(t3.state().step == 6);
  flag.store(0);
  t3.run(ctx);
  CHECK_FALSE(t3.interrupted());
  REQUIRE(t3.losses().size() == 6);
  for (std::size_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    CHECK(t3.losses()[i] == t1.losses()[6 + i]);
  }
  require_same_weights(p1, t1, p3, t3);
  std::filesystem::remove(t1.config().ckpt_path);
  std::filesystem::remove(tc.ckpt_path);
}

TEST_CASE("trainer: checkpoints record the data seed, and a checkpoint of another seed is refused") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  auto tc = tcfg();
  tc.seed = 1234;
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  TrainerF t(ctx, m, p, data, tc);
  t.step(ctx);
  auto path = tmp_path("seed.safetensors").string();
  t.save(ctx, path);
  auto state = nlohmann::json::parse(io::read_checkpoint_info(path).trainer_state);
  CHECK(state.at("data_seed").get<std::uint64_t>() == 1234);
  CHECK(train::TrainerState::from_json(state.dump()).data_seed == std::uint64_t(1234));

  auto other = tc;
  other.seed = 77;
  Lm mo(tiny());
  nn::ParamStore<cpu, float> po(mo);
  po.init(ctx, 5);
  TrainerF to(ctx, mo, po, data, other);
  auto before = copy_of(po.values());
  std::string msg;
  try {
    to.load(ctx, path);
  } catch (Error const& e) {
    msg = e.what();
  }
  CAPTURE(msg);
  CHECK(msg.find("data seed 1234") != std::string::npos);
  CHECK(msg.find("data seed is 77") != std::string::npos);
  CHECK(msg.find("--seed 1234") != std::string::npos);
  CHECK(to.state().step == 0);
  for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(po.values()[std::int64_t(i)] == before[i]);  // untouched

  TrainerF same(ctx, mo, po, data, tc);
  same.load(ctx, path);
  CHECK(same.state().step == 1);
  std::filesystem::remove(path);
}

TEST_CASE("trainer: checkpoints written before the data seed was recorded still load and continue exactly") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  auto tc = tcfg();
  Lm m1(tiny());
  nn::ParamStore<cpu, float> p1(m1);
  p1.init(ctx, 7);
  TrainerF t1(ctx, m1, p1, data, tc);
  for (int i = 0; i < 6; ++i) t1.step(ctx);

  // The interrupted run's checkpoint, rewritten with a trainer state that has no data_seed (the
  // format before the seed was recorded).
  auto path = tmp_path("legacy.safetensors").string();
  {
    Lm m2(tiny());
    nn::ParamStore<cpu, float> p2(m2);
    p2.init(ctx, 7);
    TrainerF t2(ctx, m2, p2, data, tc);
    for (int i = 0; i < 3; ++i) t2.step(ctx);
    auto j = nlohmann::json::parse(t2.state().to_json());
    REQUIRE(j.contains("data_seed"));
    j.erase("data_seed");
    io::save_checkpoint(ctx, path, {Lm::kKind, m2.config_json(), j.dump()}, p2, {{"optim", t2.optimizer()}});
  }
  CHECK_FALSE(train::TrainerState::from_json(io::read_checkpoint_info(path).trainer_state).data_seed.has_value());
  Lm m3(tiny());
  nn::ParamStore<cpu, float> p3(m3);
  p3.init(ctx, 99);
  TrainerF t3(ctx, m3, p3, data, tc);
  t3.load(ctx, path);
  CHECK(t3.state().step == 3);
  CHECK(t3.state().data_seed == tc.seed);  // adopted: the next checkpoint records it
  for (int i = 0; i < 3; ++i) t3.step(ctx);
  for (int i = 0; i < 3; ++i) CHECK(t3.losses()[std::size_t(i)] == t1.losses()[std::size_t(3 + i)]);
  require_same_weights(p1, t1, p3, t3);
  t3.save(ctx, path);
  CHECK(nlohmann::json::parse(io::read_checkpoint_info(path).trainer_state).at("data_seed").get<std::uint64_t>() ==
        tc.seed);
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
  TrainerF t(ctx, m, p, data, cfg);
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
  TrainerF t(ctx, m, p, data, cfg);
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
  TrainerF t(ctx, m, p, data, tcfg());
  t.step(ctx);
  auto path = tmp_path("structure.safetensors").string();
  t.save(ctx, path);
  auto other_cfg = tiny();
  other_cfg.layers = 3;
  Lm other(other_cfg);
  nn::ParamStore<cpu, float> po(other);
  TrainerF to(ctx, other, po, data, tcfg());
  CHECK_THROWS_WITH_AS(to.load(ctx, path), doctest::Contains("layers"), Error);
  std::filesystem::remove(path);
}

TEST_CASE("trainer: bad configuration is rejected") {
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  cpu::Context ctx;
  nn::ParamStore<cpu, float> p(m);
  auto cfg = tcfg();
  cfg.steps = 0;
  CHECK_THROWS_WITH_AS(TrainerF(ctx, m, p, data, cfg), doctest::Contains("steps or a time budget"), Error);
  cfg = tcfg();
  cfg.batch = 0;
  CHECK_THROWS_AS(TrainerF(ctx, m, p, data, cfg), Error);
}

namespace {
/// Values of every parameter, by entry.
std::vector<std::vector<float>> snapshot(nn::ParamStore<cpu, float>& p) {
  std::vector<std::vector<float>> out;
  for (auto const& e : p.entries()) out.push_back(copy_of(e.param->value));
  return out;
}
bool under(std::string const& name, std::string const& prefix) { return name.rfind(prefix, 0) == 0; }
/// Phase "warm" (3 steps) freezes block 0 and the (tied) token embedding; phase "all" trains
/// everything, block 1 at half the learning rate.
train::TrainerConfig two_phases() {
  auto tc = tcfg();
  tc.steps = 8;
  tc.phases = {{"warm", 3, {"blocks.0.*", "tok_emb.*"}, {}}, {"all", 0, {}, {{"blocks.1.*", 0.5}}}};
  return tc;
}
}  // namespace

TEST_CASE("trainer: loss terms of the model are recorded per step, and the loss is the model's weighted sum") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  TermLm tm(tiny());
  nn::ParamStore<cpu, float> pt(tm);
  pt.init(ctx, 7);
  Lm plain(tiny());
  nn::ParamStore<cpu, float> pp(plain);
  pp.init(ctx, 7);
  train::Trainer<cpu, float, TermLm> tt(ctx, tm, pt, data, tcfg());
  TrainerF tp(ctx, plain, pp, data, tcfg());
  CHECK(tt.last_terms().empty());  // nothing before the first step
  double l2_before = tm.l2();
  CHECK(l2_before == TermLm::kLambda);  // LayerNorm gains start at one
  double loss = tt.step(ctx);
  double plain_loss = tp.step(ctx);
  auto terms = tt.last_terms();
  REQUIRE(terms.size() == 2);
  CHECK(std::string(terms[0].name) == "ce");
  CHECK(std::string(terms[1].name) == "l2");
  CHECK(terms[0].value == plain_loss);  // same initialisation, same batch: the plain model's loss
  CHECK(terms[1].value == l2_before);
  CHECK(loss == terms[0].value + terms[1].value);
  CHECK(tp.last_terms().empty());  // a model without terms reports none
  // The l2 term's gradient moved the gains, so the next step reports the new value.
  double l2_now = tm.l2();
  CHECK(l2_now != l2_before);
  tt.step(ctx);
  CHECK(tt.last_terms()[1].value == l2_now);

  // With gradient accumulation the terms are means over the micro-batches.
  auto tc = tcfg();
  tc.grad_accum = 3;
  TermLm ta(tiny());
  nn::ParamStore<cpu, float> pa(ta);
  pa.init(ctx, 7);
  train::Trainer<cpu, float, TermLm> tra(ctx, ta, pa, data, tc);
  double la = tra.step(ctx);
  REQUIRE(tra.last_terms().size() == 2);
  CHECK(tra.last_terms()[1].value == doctest::Approx(TermLm::kLambda).epsilon(1e-12));
  CHECK(tra.last_terms()[0].value + tra.last_terms()[1].value == doctest::Approx(la).epsilon(1e-12));
  CHECK(tra.last_terms()[0].value != terms[0].value);  // three batches, not the first one alone

  // run() logs bits per character from the "ce" term only, not from the total (ce + l2).
  CHECK(tt.step_bpc(loss) == tt.last_terms()[0].value / std::log(2.0));
  CHECK(tt.step_bpc(loss) != loss / std::log(2.0));
  CHECK(tp.step_bpc(plain_loss) == plain_loss / std::log(2.0));  // no terms: the loss itself
}

TEST_CASE("trainer: dropout is active in training with one stream per step and micro-batch, off in validation") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  auto tc = tcfg();
  tc.grad_accum = 2;
  tc.seed = 4321;
  DropLm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 7);
  train::Trainer<cpu, float, DropLm> t(ctx, m, p, data, tc);
  for (int s = 0; s < 3; ++s) t.step(ctx);
  REQUIRE(m.seen.size() == 6);
  std::vector<std::uint64_t> streams;
  for (std::int64_t step = 0; step < 3; ++step)
    for (std::int64_t micro = 0; micro < 2; ++micro) {
      CAPTURE(step);
      CAPTURE(micro);
      nn::DropoutStream const& d = m.seen[std::size_t(step * 2 + micro)];
      nn::DropoutStream const want = nn::training_dropout(4321, step, micro);
      CHECK(d.active);
      CHECK(d.seed == want.seed);
      CHECK(d.stream == want.stream);
      streams.push_back(d.stream);
    }
  std::sort(streams.begin(), streams.end());
  CHECK(std::adjacent_find(streams.begin(), streams.end()) == streams.end());  // a new mask every time
  // Validation: the evaluator's own trace, never active.
  t.evaluate(ctx, 3);
  REQUIRE(m.seen.size() > 6);
  for (std::size_t i = 6; i < m.seen.size(); ++i) CHECK_FALSE(m.seen[i].active);
  // The loss really depends on the masks: an inactive stream gives another loss for the same step.
  DropLm::Trace off, on;
  on.dropout = nn::training_dropout(4321, 3, 0);
  std::vector<std::int32_t> ids(16 * 4, 65);
  View<std::int32_t const, HostSpace> idv(ids.data(), Shape{4, 16});
  Workspace<cpu> ws(m.forward_workspace(4, 16));
  auto a = ws.arena();
  double l_off = m.forward(ctx, idv, idv, a, off);
  a.reset();
  double l_on = m.forward(ctx, idv, idv, a, on);
  CHECK(l_on != l_off);
}

TEST_CASE("trainer: a resumed run with dropout draws the uninterrupted run's masks (bit-exact losses)") {
  check_resume<DropLm>(tiny(), tcfg(), 3, 0, "dropout");
  auto tc = tcfg();
  tc.grad_accum = 2;
  check_resume<DropLm>(tiny(), tc, 5, 2, "dropout_accum");
}

TEST_CASE("trainer: phases freeze what they name, scale learning rates, tell the model, and follow the step") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  auto tc = two_phases();
  TermLm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 7);
  train::Trainer<cpu, float, TermLm> t(ctx, m, p, data, tc);
  CHECK(m.phases == std::vector<std::string>{"warm"});
  CHECK(t.phase() == 0);
  auto frozen_in_warm = [](std::string const& n) { return under(n, "blocks.0.") || under(n, "tok_emb."); };
  for (auto const& e : p.entries()) {
    CAPTURE(e.name);
    CHECK(e.param->frozen == frozen_in_warm(e.name));
    CHECK(e.param->lr_scale == 1.0);
  }
  auto v0 = snapshot(p);
  for (int i = 0; i < 3; ++i) t.step(ctx);
  CHECK(t.phase() == 1);  // the next step is phase 2's
  auto v3 = snapshot(p);
  auto m1 = t.optimizer().first_moment();
  for (std::size_t k = 0; k < p.entries().size(); ++k) {
    auto const& e = p.entries()[k];
    CAPTURE(e.name);
    if (frozen_in_warm(e.name)) {
      CHECK(v3[k] == v0[k]);  // bit-identical
      for (std::int64_t i = 0; i < e.param->shape.numel(); ++i) {
        REQUIRE(e.param->grad[i] == 0.0f);  // no gradient reached it (tied head included)
        REQUIRE(m1[e.offset + i] == 0.0f);  // moments untouched
      }
    } else {
      CHECK(v3[k] != v0[k]);
    }
  }
  t.step(ctx);  // phase "all": everything trains, block 1 at half the rate
  CHECK(m.phases == std::vector<std::string>{"warm", "all"});
  auto v4 = snapshot(p);
  for (std::size_t k = 0; k < p.entries().size(); ++k) {
    auto const& e = p.entries()[k];
    CAPTURE(e.name);
    CHECK_FALSE(e.param->frozen);
    CHECK(e.param->lr_scale == (under(e.name, "blocks.1.") ? 0.5 : 1.0));
    CHECK(v4[k] != v3[k]);
  }

  // A trainer resumed from a checkpoint of phase 2 applies phase 2's flags at once.
  auto path = tmp_path("phases.safetensors").string();
  t.save(ctx, path);
  TermLm m2(tiny());
  nn::ParamStore<cpu, float> p2(m2);
  train::Trainer<cpu, float, TermLm> t2(ctx, m2, p2, data, tc);
  CHECK(p2.find("blocks.0.attn.q.weight").frozen);  // phase 1 before loading
  t2.load(ctx, path);
  CHECK(t2.phase() == 1);
  CHECK(m2.phases.back() == "all");
  CHECK_FALSE(p2.find("blocks.0.attn.q.weight").frozen);
  CHECK(p2.find("blocks.1.mlp.fc1.weight").lr_scale == 0.5);
  std::filesystem::remove(path);
}

TEST_CASE("trainer: a two-phase run resumed in either phase continues the exact loss sequence") {
  auto tc = two_phases();
  check_resume<Lm>(tiny(), tc, 2, 0, "phase1");  // stopped in phase 1
  check_resume<Lm>(tiny(), tc, 5, 2, "phase2");  // stopped in the middle of phase 2
  // The Hourglass: the full-rate pre-stack and the embedding frozen first, the shortened level at
  // half the rate after.
  tc.phases = {{"warm", 3, {"pre.*", "tok_emb.*"}, {}}, {"all", 0, {}, {{"levels.0.*", 0.5}}}};
  check_resume<Hg>(tiny_hg(), tc, 5, 0, "phase2_hg");
}

TEST_CASE("trainer: bad phases are refused up front, naming the phase and the pattern") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  auto tc = tcfg();
  tc.phases = {{"one", 2, {"block.0.*"}, {}}, {"two", 0, {}, {}}};  // typo: "block" for "blocks"
  CHECK_THROWS_WITH_AS(TrainerF(ctx, m, p, data, tc),
                       doctest::Contains("phase 'one' freezes 'block.0.*', which matches no parameter"), Error);
  tc.phases = {{"one", 2, {}, {{"nothing*", 0.5}}}};
  CHECK_THROWS_WITH_AS(TrainerF(ctx, m, p, data, tc), doctest::Contains("'nothing*', which matches no parameter"), Error);
  tc.phases = {{"one", 0, {}, {}}, {"two", 3, {}, {}}};
  CHECK_THROWS_WITH_AS(TrainerF(ctx, m, p, data, tc), doctest::Contains("phase 0 ('one') has 0 steps"), Error);
  tc.phases = {{"one", 2, {}, {{"*", -1.0}}}};
  CHECK_THROWS_AS(TrainerF(ctx, m, p, data, tc), Error);
  // Without phases the trainer leaves flags set by hand alone.
  p.set_frozen("blocks.1.*", true);
  TrainerF t(ctx, m, p, data, tcfg());
  t.step(ctx);
  CHECK(p.find("blocks.1.ln1.weight").frozen);
}

TEST_CASE("trainer: the default task is RandomCrops of the config's shape and seed; a task must fit the config") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  auto tc = tcfg();
  Lm m1(tiny()), m2(tiny());
  nn::ParamStore<cpu, float> p1(m1), p2(m2);
  p1.init(ctx, 7);
  p2.init(ctx, 7);
  TrainerF t1(ctx, m1, p1, data, tc);
  TrainerF t2(ctx, m2, p2, data, train::RandomCrops(data, tc.batch, tc.seq_len, tc.seed), tc);
  for (int i = 0; i < 3; ++i) CHECK(t1.step(ctx) == t2.step(ctx));
  CHECK(t1.state().data_pos == std::uint64_t(3 * tc.batch));
  CHECK(t2.state().data_pos == t1.state().data_pos);
  CHECK_THROWS_WITH_AS(TrainerF(ctx, m2, p2, data, train::RandomCrops(data, 2, tc.seq_len, tc.seed), tc),
                       doctest::Contains("the task's batches are [2, 16]"), Error);
  // A task's own seed is the data seed the trainer records.
  TrainerF t3(ctx, m2, p2, data, train::RandomCrops(data, tc.batch, tc.seq_len, 555), tc);
  CHECK(t3.state().data_seed == std::uint64_t(555));
}

TEST_CASE("trainer: SequentialSegments streams consecutive windows and resets the model's state only at wraps") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus().substr(0, 2000), "short", 0.1);
  auto tc = tcfg();
  tc.grad_accum = 2;
  tc.steps = 16;
  using Seq = train::SequentialSegments;
  using Tr = train::Trainer<cpu, float, TermLm, Seq>;
  Seq task(data, tc.batch, tc.seq_len);
  std::int64_t const w = task.windows_per_stream();
  REQUIRE(w < 2 * tc.steps);  // the run wraps
  TermLm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 7);
  Tr t(ctx, m, p, data, task, tc);
  for (std::int64_t s = 0; s < tc.steps; ++s) t.step(ctx);
  REQUIRE(m.after_reset.size() == std::size_t(2 * tc.steps));
  for (std::size_t k = 0; k < m.after_reset.size(); ++k) {
    CAPTURE(k);
    CHECK(m.after_reset[k] == (std::int64_t(k) % w == 0));
  }
  CHECK(t.state().data_pos == std::uint64_t(2 * tc.steps));
  CHECK(t.state().data_seed == tc.seed);  // a task without a seed: the config's

  // Resume: the stream continues where the checkpoint left it.
  auto path = tmp_path("segments.safetensors").string();
  TermLm ma(tiny());
  nn::ParamStore<cpu, float> pa(ma);
  pa.init(ctx, 7);
  Tr ta(ctx, ma, pa, data, Seq(data, tc.batch, tc.seq_len), tc);
  for (int s = 0; s < 5; ++s) ta.step(ctx);
  ta.save(ctx, path);
  TermLm mb(tiny());
  nn::ParamStore<cpu, float> pb(mb);
  Tr tb(ctx, mb, pb, data, Seq(data, tc.batch, tc.seq_len), tc);
  tb.load(ctx, path);
  CHECK(tb.task().position() == 10);
  for (std::int64_t s = 5; s < tc.steps; ++s) CHECK(tb.step(ctx) == t.losses()[std::size_t(s)]);
  std::filesystem::remove(path);
}

TEST_CASE("trainer: a memory model on consecutive segments: memory bound and carried, reset at wraps, untouched by "
          "validation, saved in checkpoints, so a resumed run continues the loss sequence bit for bit") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus().substr(0, 800), "short", 0.1);
  auto tc = tcfg();
  tc.steps = 16;
  tc.eval_windows = 4;
  using Xl = models::TransformerXl<cpu, float>;
  using Seq = train::SequentialSegments;
  using Tr = train::Trainer<cpu, float, Xl, Seq>;
  Xl::Config xc{.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 16, .mem_len = 24};
  std::int64_t const w = Seq(data, tc.batch, tc.seq_len).windows_per_stream();
  REQUIRE(w + 2 < tc.steps);  // the run wraps, and a resume after the wrap has steps left
  auto run = [&](Xl& m, nn::ParamStore<cpu, float>& p, Tr& t, std::int64_t from, std::int64_t to, bool validate) {
    std::vector<double> out;
    for (std::int64_t s = from; s < to; ++s) {
      out.push_back(t.step(ctx));
      // The memory fills by one segment per step up to mem_len and restarts after each wrap.
      std::int64_t const since_wrap = (s % w) + 1;
      CHECK(m.bound_memory() != nullptr);
      CHECK(m.bound_memory()->fill() == std::min<std::int64_t>(24, since_wrap * tc.seq_len));
      if (validate && s % 3 == 1) {
        auto* mem = m.bound_memory();
        std::int64_t const fill = mem->fill();
        t.evaluate(ctx);
        CHECK(m.bound_memory() == mem);  // bound back
        CHECK(mem->fill() == fill);      // and not moved
      }
    }
    (void)p;
    return out;
  };
  Xl m(xc);
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 7);
  Tr t(ctx, m, p, data, Seq(data, tc.batch, tc.seq_len), tc);
  auto straight = run(m, p, t, 0, tc.steps, true);
  // The same without validation: validation changed nothing of the stream.
  Xl m2(xc);
  nn::ParamStore<cpu, float> p2(m2);
  p2.init(ctx, 7);
  Tr t2(ctx, m2, p2, data, Seq(data, tc.batch, tc.seq_len), tc);
  CHECK(run(m2, p2, t2, 0, tc.steps, false) == straight);
  // Interrupted after 2 steps (memory partly filled, before the wrap) and after w + 1 (after it).
  for (std::int64_t stop : {std::int64_t(2), w + 1}) {
    CAPTURE(stop);
    auto path = tmp_path("xl_memory.safetensors").string();
    Xl ma(xc);
    nn::ParamStore<cpu, float> pa(ma);
    pa.init(ctx, 7);
    Tr ta(ctx, ma, pa, data, Seq(data, tc.batch, tc.seq_len), tc);
    run(ma, pa, ta, 0, stop, false);
    ta.save(ctx, path);
    Xl mb(xc);
    nn::ParamStore<cpu, float> pb(mb);
    Tr tb(ctx, mb, pb, data, Seq(data, tc.batch, tc.seq_len), tc);
    tb.load(ctx, path);
    auto rest = run(mb, pb, tb, stop, tc.steps, false);
    CHECK(rest == std::vector<double>(straight.begin() + stop, straight.end()));
    // The restored memory matters: the same checkpoint with its memory forgotten before the next
    // step (which continues the stream: stop is not at a wrap) gives another loss.
    REQUIRE(stop % w != 0);
    Xl mc(xc);
    nn::ParamStore<cpu, float> pc(mc);
    Tr tc2(ctx, mc, pc, data, Seq(data, tc.batch, tc.seq_len), tc);
    tc2.load(ctx, path);
    CHECK(tc2.memory().fill() == std::min<std::int64_t>(24, (stop % w) * tc.seq_len));
    tc2.memory().reset();
    CHECK(tc2.step(ctx) != rest.front());
    std::filesystem::remove(path);
  }
}

TEST_SUITE("slow") {
  // Every interruption point of a 12-step run, both models, with and without gradient
  // accumulation, validating every third step.
  TEST_CASE("trainer: resume is bit-exact from every interruption point, both models") {
    auto tc = tcfg();
    tc.steps = 12;
    for (std::int64_t accum : {1, 3}) {
      tc.grad_accum = accum;
      for (std::int64_t stop = 1; stop < tc.steps; ++stop) {
        check_resume<Lm>(tiny(), tc, stop, 3, "slow_lm");
        check_resume<Hg>(tiny_hg(), tc, stop, 3, "slow_hg");
      }
    }
  }

  // run() with ckpt_every 2 killed at every step after the first checkpoint, both models.
  TEST_CASE("trainer: run() resumes from its periodic checkpoint after a kill at any step, both models") {
    auto tc = tcfg();
    tc.steps = 12;
    tc.grad_accum = 2;
    tc.eval_every = 3;
    tc.ckpt_every = 2;
    for (std::int64_t crash = 3; crash < tc.steps; ++crash) {
      check_run_resume<Lm>(tiny(), tc, crash, "slow_lm");
      check_run_resume<Hg>(tiny_hg(), tc, crash, "slow_hg");
    }
  }
}

namespace {
/// The rows of a CSV file as numbers under its header ("nan" is NaN).
struct Csv {
  std::vector<std::string> header;
  std::vector<std::vector<double>> rows;
  std::size_t col(std::string const& name) const {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return i;
    FAIL("no column " << name);
    return 0;
  }
};
std::vector<std::string> split_commas(std::string const& line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == ',')
      out.emplace_back();
    else
      out.back() += c;
  }
  return out;
}
Csv read_csv(std::string const& path) {
  std::ifstream in(path);
  Csv c;
  std::string line;
  REQUIRE(std::getline(in, line));
  c.header = split_commas(line);
  while (std::getline(in, line)) {
    std::vector<double> row;
    for (auto const& f : split_commas(line)) row.push_back(f == "nan" ? std::nan("") : std::stod(f));
    REQUIRE(row.size() == c.header.size());
    c.rows.push_back(row);
  }
  return c;
}
std::vector<std::string> const kFixedColumns{"step", "loss", "bpc", "val_bpc", "seconds", "tokens"};
std::vector<std::string> with_fixed(std::vector<std::string> more) {
  std::vector<std::string> v = kFixedColumns;
  v.insert(v.end(), more.begin(), more.end());
  return v;
}
}  // namespace

TEST_CASE("trainer: the log has one column per declared loss term and val_<term>, after the fixed ones") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  // kLossTerms declares the names; without it the names of a default Trace's terms do.
  CHECK(train::loss_term_names<test::PhasedLm>() == std::vector<std::string>{"ce", "aux"});
  CHECK(train::loss_term_names<TermLm>() == std::vector<std::string>{"ce", "l2"});
  CHECK(train::loss_term_names<Lm>().empty());
  Lm lm(tiny());
  nn::ParamStore<cpu, float> pl(lm);
  CHECK(TrainerF(ctx, lm, pl, data, tcfg()).log_columns() == kFixedColumns);  // unchanged for a model without terms
  TermLm tm(tiny());
  nn::ParamStore<cpu, float> pt(tm);
  train::Trainer<cpu, float, TermLm> tt(ctx, tm, pt, data, tcfg());
  CHECK(tt.log_columns() == with_fixed({"ce", "l2", "val_ce", "val_l2"}));
  CHECK(tt.loss_term_names() == std::vector<std::string>{"ce", "l2"});

  // run() refuses a log with other columns, naming both (before training anything).
  auto path = tmp_path("columns.csv").string();
  io::CsvLog wrong(path, kFixedColumns);
  CHECK_THROWS_WITH_AS(
      tt.run(ctx, nullptr, &wrong),
      doctest::Contains("has the columns step,loss,bpc,val_bpc,seconds,tokens, but this trainer writes "
                        "step,loss,bpc,val_bpc,seconds,tokens,ce,l2,val_ce,val_l2"),
      Error);
  CHECK(tt.state().step == 0);
  std::filesystem::remove(path);
}

TEST_CASE(
    "trainer: run() logs the terms of each phase in fixed columns (NaN where absent) and shows them in progress") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  test::PhasedLm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 7);
  auto tc = tcfg();
  tc.steps = 6;
  tc.eval_every = 2;
  tc.eval_windows = 5;
  tc.phases = {{"aux", 3, {}, {}}, {"full", 0, {}, {}}};  // steps 1-3 without byte likelihood, then 4-6
  train::Trainer<cpu, float, test::PhasedLm> t(ctx, m, p, data, tc);
  auto path = tmp_path("terms.csv").string();
  std::ostringstream sink;
  {
    io::CsvLog csv(path, t.log_columns());
    io::Progress progress(tc.steps, sink, false);
    progress.set_plain_interval(0);  // a line per step
    double bpc = t.run(ctx, &progress, &csv);
    CHECK(std::isfinite(bpc));  // the run ends in the byte phase
  }
  Csv c = read_csv(path);
  CHECK(c.header == with_fixed({"ce", "aux", "val_ce", "val_aux"}));
  REQUIRE(c.rows.size() == 6);  // step 6 was validated: no extra final row
  std::size_t const loss = c.col("loss"), bpc = c.col("bpc"), vb = c.col("val_bpc"), ce = c.col("ce"),
                    aux = c.col("aux"), vce = c.col("val_ce"), vaux = c.col("val_aux");
  for (std::size_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    auto const& r = c.rows[i];
    CHECK(r[0] == double(i + 1));
    CHECK(r[loss] == doctest::Approx(t.losses()[i]).epsilon(1e-8));
    bool const in_aux = i < 3, validated = (i + 1) % 2 == 0;
    if (in_aux) {
      CHECK(std::isnan(r[bpc]));  // no byte likelihood
      CHECK(std::isnan(r[ce]));
      CHECK(r[aux] == r[loss]);
    } else {
      CHECK(r[ce] == r[loss]);
      CHECK(std::isnan(r[aux]));
      CHECK(r[bpc] == doctest::Approx(r[ce] / std::log(2.0)).epsilon(1e-8));
    }
    if (!validated) {
      CHECK(std::isnan(r[vb]));
      CHECK(std::isnan(r[vce]));
      CHECK(std::isnan(r[vaux]));
    } else if (in_aux) {  // step 2: the aux phase's own validation loss, no bpc
      CHECK(std::isnan(r[vb]));
      CHECK(std::isnan(r[vce]));
      CHECK(r[vaux] > 0.25);  // l2 (0.25 at one) plus the mean first byte / 256
    } else {
      CHECK(r[vb] > 0);
      CHECK(r[vce] == doctest::Approx(r[vb] * std::log(2.0)).epsilon(1e-8));
      CHECK(std::isnan(r[vaux]));
    }
  }
  CHECK(t.last_eval().bpc == t.state().last_val_bpc);
  CHECK(t.last_eval().term("ce") == doctest::Approx(c.rows[5][vce]).epsilon(1e-8));
  // The progress line: the step's terms after bpc, and the last validation (its bpc, or in the aux
  // phase its own loss).
  std::string out = sink.str();
  CAPTURE(out);
  CHECK(out.find("step 1/6 | loss ") != std::string::npos);
  CHECK(out.find("| bpc nan | aux ") != std::string::npos);
  auto line_of = [&](std::string const& head) {
    auto at = out.find(head);
    REQUIRE(at != std::string::npos);
    return out.substr(at, out.find('\n', at) - at);
  };
  CHECK(line_of("step 1/6").find("val") == std::string::npos);  // nothing validated yet
  CHECK(line_of("step 3/6").find(" | val aux ") != std::string::npos);
  CHECK(line_of("step 4/6").find(" | ce ") != std::string::npos);
  CHECK(line_of("step 4/6").find(" | val bpc ") != std::string::npos);
  CHECK(line_of("step 4/6").find("val ce") == std::string::npos);  // shown as bpc
  std::filesystem::remove(path);
}

TEST_CASE("trainer: a term the model's kLossTerms does not declare is refused when logging") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  using Narrow = test::PhasedLmT<false>;  // declares "ce" only
  Narrow m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 7);
  auto tc = tcfg();
  tc.steps = 2;
  tc.phases = {{"aux", 0, {}, {}}};
  train::Trainer<cpu, float, Narrow> t(ctx, m, p, data, tc);
  CHECK(t.log_columns() == with_fixed({"ce", "val_ce"}));
  auto path = tmp_path("narrow.csv").string();
  io::CsvLog csv(path, t.log_columns());
  CHECK_THROWS_WITH_AS(t.run(ctx, nullptr, &csv),
                       doctest::Contains("reports the loss term 'aux', which its kLossTerms (ce) does not declare"),
                       Error);
  std::filesystem::remove(path);
}

TEST_CASE("trainer: phase schedules in the --phases syntax, and where two of them first train a step differently") {
  using train::Phase;
  std::vector<Phase> iem_only{{"iem", 0, {"decoder.*"}, {}}};
  std::vector<Phase> two{{"iem", 800, {"decoder.*"}, {}}, {"decoder", 0, {"encoder.*"}, {}}};
  CHECK(train::phases_text(two) == "iem:800,decoder");
  CHECK(train::phases_text(iem_only) == "iem");
  CHECK(train::phases_text({}) == "none");
  CHECK(train::describe_phase(two[0]) == "phase 'iem' (frozen decoder.*)");
  CHECK(train::describe_phase({"all", 0, {}, {{"blocks.1.*", 0.5}}}) ==
        "phase 'all' (frozen nothing; lr scales blocks.1.* x0.5)");
  // The same schedule, or one that changes only steps not yet trained, agrees.
  CHECK(train::phases_disagreement(two, "a", two, "b", 5000).empty());
  CHECK(train::phases_disagreement(iem_only, "a", two, "b", 800).empty());  // "iem" continued as "iem:800,decoder"
  CHECK(train::phases_disagreement(two, "a", {{"iem", 900, {"decoder.*"}, {}}, two[1]}, "b", 800).empty());
  CHECK(train::phases_disagreement({}, "a", {}, "b", 10).empty());
  CHECK(train::phases_disagreement({}, "a", two, "b", 0).empty());  // nothing trained yet
  // Differences on trained steps are found at the first such step (counted from 1).
  CHECK(train::phases_disagreement(iem_only, "the checkpoint's", two, "this trainer's", 801) ==
        "at step 801 the checkpoint's trains phase 'iem' (frozen decoder.*), this trainer's phase 'decoder' (frozen "
        "encoder.*)");
  CHECK(train::phases_disagreement(two, "a", {{"iem", 700, {"decoder.*"}, {}}, two[1]}, "b", 900) ==
        "at step 701 a trains phase 'iem' (frozen decoder.*), b phase 'decoder' (frozen encoder.*)");
  CHECK(train::phases_disagreement(two, "a", {}, "b", 1) ==
        "at step 1 a trains phase 'iem' (frozen decoder.*), b no phase");
  CHECK(train::phases_disagreement({{"iem", 0, {"x"}, {}}}, "a", iem_only, "b", 3).find("at step 1 ") ==
        0);  // patterns
  CHECK_FALSE(train::phases_disagreement({{"iem", 0, {"decoder.*"}, {{"*", 0.5}}}}, "a", iem_only, "b", 3).empty());
}

TEST_CASE("trainer: checkpoints record the phase schedule; a resumed trainer must agree with it on the steps taken") {
  cpu::Context ctx;
  auto data = io::TextDataset::from_string(corpus(), "corpus", 0.1);
  auto tc = two_phases();  // warm:3 (frozen blocks.0.*, tok_emb.*), all (blocks.1.* x0.5)
  Lm m(tiny());
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 3);
  TrainerF t(ctx, m, p, data, tc);
  t.step(ctx);
  t.step(ctx);
  auto path = tmp_path("phases_stored.safetensors").string();
  t.save(ctx, path);
  auto state = nlohmann::json::parse(io::read_checkpoint_info(path).trainer_state);
  CHECK(state.at("phases") ==
        nlohmann::json::parse(R"([{"name": "warm", "steps": 3, "frozen": ["blocks.0.*", "tok_emb.*"], "lr_scale": []},
                                  {"name": "all", "steps": 0, "frozen": [],
                                   "lr_scale": [{"pattern": "blocks.1.*", "scale": 0.5}]}])"));
  auto parsed = train::TrainerState::from_json(state.dump());
  REQUIRE(parsed.phases.has_value());
  CHECK(train::phases_to_json(*parsed.phases) == state.at("phases"));
  CHECK(train::phases_text(*parsed.phases) == "warm:3,all");

  auto load_with = [&](std::vector<train::Phase> phases) {
    auto c = tc;
    c.phases = std::move(phases);
    Lm mo(tiny());
    nn::ParamStore<cpu, float> po(mo);
    po.init(ctx, 5);
    TrainerF to(ctx, mo, po, data, c);
    auto before = copy_of(po.values());
    std::string msg;
    try {
      to.load(ctx, path);
    } catch (Error const& e) {
      msg = e.what();
      CHECK(to.state().step == 0);
      for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(po.values()[std::int64_t(i)] == before[i]);  // untouched
    }
    if (msg.empty()) {
      CHECK(to.state().step == 2);
      // The next checkpoint records this trainer's schedule.
      auto again = tmp_path("phases_again.safetensors").string();
      to.save(ctx, again);
      auto st = train::TrainerState::from_json(io::read_checkpoint_info(again).trainer_state);
      CHECK(train::phases_to_json(*st.phases) == train::phases_to_json(c.phases));
      std::filesystem::remove(again);
    }
    return msg;
  };
  CHECK(load_with(tc.phases).empty());
  // Another future (phase "warm" ends at step 2 instead of 3) agrees on the 2 steps taken.
  CHECK(load_with({{"warm", 2, {"blocks.0.*", "tok_emb.*"}, {}}, tc.phases[1]}).empty());
  // Step 2 was trained in "warm": a schedule that puts it in "all" rewrites history.
  std::string msg = load_with({{"warm", 1, {"blocks.0.*", "tok_emb.*"}, {}}, tc.phases[1]});
  CAPTURE(msg);
  CHECK(msg.find("trained its 2 steps under the phases 'warm:3,all' but this trainer's phases are 'warm:1,all'") !=
        std::string::npos);
  CHECK(msg.find("at step 2 the checkpoint's trains phase 'warm' (frozen blocks.0.*, tok_emb.*), this trainer's "
                 "phase 'all' (frozen nothing; lr scales blocks.1.* x0.5)") != std::string::npos);
  CHECK(msg.find("drop --phases to continue the checkpoint's") != std::string::npos);
  // Without phases, or with the same names freezing other parameters: refused too.
  CHECK(load_with({}).find("this trainer's phases are 'none': at step 1 the checkpoint's trains phase 'warm'") !=
        std::string::npos);
  CHECK(load_with({{"warm", 3, {"blocks.0.*"}, {}}, tc.phases[1]})
            .find("this trainer's phase 'warm' (frozen blocks.0.*)") != std::string::npos);

  // A checkpoint written before the schedule was recorded loads under any phases (taken on trust).
  {
    auto j = state;
    j.erase("phases");
    io::save_checkpoint(ctx, path, {Lm::kKind, m.config_json(), j.dump()}, p, {{"optim", t.optimizer()}});
    CHECK_FALSE(train::TrainerState::from_json(j.dump()).phases.has_value());
    CHECK(load_with({}).empty());
    CHECK(load_with({{"other", 1, {}, {}}, {"all", 0, {}, {}}}).empty());
  }
  // A checkpoint of a run without phases records an empty schedule: adding phases to its past is refused.
  {
    TrainerF plain(ctx, m, p, data, tcfg());
    plain.step(ctx);
    plain.step(ctx);
    plain.save(ctx, path);
    CHECK(nlohmann::json::parse(io::read_checkpoint_info(path).trainer_state).at("phases") == nlohmann::json::array());
    CHECK(load_with({}).empty());
    CHECK(load_with(tc.phases).find("under the phases 'none' but this trainer's phases are 'warm:3,all'") !=
          std::string::npos);
  }
  std::filesystem::remove(path);
}

}  // namespace HSEQ_TEST_UNIT
