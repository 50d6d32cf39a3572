// SPDX-License-Identifier: MIT
// Data-parallel training (train/trainer.hpp, "Several processes") over comm::Mpi, run under
// `mpirun -np 2` and `-np 3` (ctest entries mpi.np2, mpi.np3). Every process also trains the
// one-process references itself (comm::Single), so each compares its own results.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "hseq/comm/mpi.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/models/transformer_xl.hpp"
#include "hseq/train/task.hpp"
#include "hseq/train/trainer.hpp"
#include "support/errors.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Lm = models::TransformerLm<cpu, float>;
using Hg = models::Hourglass<cpu, float>;
using Xl = models::TransformerXl<cpu, float>;

namespace {
comm::Mpi& world() {
  static comm::Mpi w = comm::Mpi::world();
  return w;
}
std::string corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  return s;
}
train::TrainerConfig tcfg(std::int64_t batch, std::int64_t accum) {
  train::TrainerConfig t;
  t.batch = batch;
  t.grad_accum = accum;
  t.seq_len = 16;
  t.steps = 8;
  t.warmup = 2;
  t.lr = 3e-3;
  t.eval_every = 0;
  t.eval_windows = 4;
  return t;
}
Lm::Config lm_config() { return {.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 16}; }
Hg::Config hg_config() {
  return {.vocab = 256, .dim = 16, .heads = 2, .context = 16, .mlp_hidden = 32,
          .hierarchy = hier::HierarchySpec::parse("1@1 1@2 1@1")};
}
/// A directory every process agrees on (rank 0's, broadcast).
std::filesystem::path shared_dir() {
  std::int64_t pid = ::getpid();
  world().host_broadcast(&pid, sizeof pid, 0);
  auto dir = std::filesystem::temp_directory_path() / ("hseq_test_mpi_" + std::to_string(pid));
  if (world().rank() == 0) std::filesystem::create_directories(dir);
  world().barrier();
  return dir;
}

struct Result {
  std::vector<double> losses;
  std::vector<float> params;
};

/// `steps` steps of a model of config `mc` from parameters drawn with `init_seed`, on the processes
/// of `c` (with `comm::Single`, alone), resuming from `resume` when given, stopping after step
/// `stop` (-1: the config's last) and then saving to `save` when given.
template <class M, class Comm>
Result train_run(typename M::Config const& mc, train::TrainerConfig tc, Comm& c, std::uint64_t init_seed,
                 std::string const& resume = "", std::string const& save = "", std::int64_t stop = -1) {
  cpu::Context ctx;
  static auto const data = io::TextDataset::from_string(corpus(), "fox", 0.1);
  M model(mc);
  nn::ParamStore<cpu, float> params(model);
  params.init(ctx, init_seed);
  train::Trainer<cpu, float, M, train::RandomCrops, Comm> t(ctx, model, params, data, tc, c);
  if (!resume.empty()) t.load(ctx, resume);
  Result r;
  while (t.state().step < (stop < 0 ? tc.steps : stop)) r.losses.push_back(t.step(ctx));
  if (!save.empty()) t.save(ctx, save);
  auto v = params.values();
  r.params.assign(v.data, v.data + v.numel());
  return r;
}

template <class M>
void check_equal_to_one_process(typename M::Config const& mc) {
  int const p = world().size();
  comm::Single single;
  std::int64_t const b = 2;
  // Each process initializes its parameters with its own seed: the trainer broadcasts rank 0's.
  Result const parallel = train_run<M>(mc, tcfg(b, 1), world(), 11 + std::uint64_t(world().rank()));
  Result const accum = train_run<M>(mc, tcfg(b, p), single, 11);  // one process, P micro-batches of b
  REQUIRE(parallel.losses.size() == 8);
  CHECK(std::memcmp(parallel.losses.data(), accum.losses.data(), 8 * sizeof(double)) == 0);
  CHECK(parallel.params == accum.params);
  // One process with batch P * b in one micro-batch: the same rows, summed inside the GEMMs in
  // another order, so equal to rounding. Measured (2 and 3 processes): relative differences of
  // at most ~1e-6 in the loss over 8 steps; the bound leaves room for other BLAS kernels.
  Result const wide = train_run<M>(mc, tcfg(b * p, 1), single, 11);
  double worst = 0;
  for (std::size_t i = 0; i < 8; ++i)
    worst = std::max(worst, std::abs(wide.losses[i] - parallel.losses[i]) / std::abs(wide.losses[i]));
  if (world().rank() == 0) MESSAGE("largest relative loss difference to one process with batch P * b: " << worst);
  CHECK(worst < 1e-4);
  // Control: the other processes' rows matter (one process with batch b alone trains otherwise).
  Result const alone = train_run<M>(mc, tcfg(b, 1), single, 11);
  CHECK(alone.losses[1] != parallel.losses[1]);
}
}  // namespace

TEST_CASE("data parallel: P processes with batch b take the steps of one process with batch b and grad_accum P, "
          "bit for bit (Transformer LM)") {
  REQUIRE(world().size() >= 2);
  check_equal_to_one_process<Lm>(lm_config());
}

TEST_CASE("data parallel: P processes with batch b take the steps of one process with batch b and grad_accum P, "
          "bit for bit (Hourglass)") {
  REQUIRE(world().size() >= 2);
  check_equal_to_one_process<Hg>(hg_config());
}

TEST_CASE("data parallel: a checkpoint resumes exactly under another process count") {
  int const p = world().size();
  REQUIRE(p >= 2);
  comm::Single single;
  auto const dir = shared_dir();
  std::string const from_parallel = (dir / "parallel.safetensors").string();
  std::string const from_single = (dir / "single.safetensors").string();
  Result const straight = train_run<Lm>(lm_config(), tcfg(2, p), single, 5);  // 8 steps, one process
  // P processes train 4 steps and save (rank 0 writes; all return once it is written) ...
  Result const first = train_run<Lm>(lm_config(), tcfg(2, 1), world(), 5, "", from_parallel, 4);
  REQUIRE(first.losses.size() == 4);
  CHECK(std::equal(first.losses.begin(), first.losses.end(), straight.losses.begin()));
  // ... and one process (on every rank, each alone) continues their checkpoint to the end,
  Result const rest = train_run<Lm>(lm_config(), tcfg(2, p), single, 99, from_parallel);
  CHECK(std::equal(rest.losses.begin(), rest.losses.end(), straight.losses.begin() + 4));
  CHECK(rest.params == straight.params);
  // ... and the other way: one process's checkpoint (rank 0 writes it) continued by P processes.
  if (world().rank() == 0) train_run<Lm>(lm_config(), tcfg(2, p), single, 5, "", from_single, 4);
  world().barrier();
  Result const rest_parallel = train_run<Lm>(lm_config(), tcfg(2, 1), world(), 99, from_single);
  CHECK(std::equal(rest_parallel.losses.begin(), rest_parallel.losses.end(), straight.losses.begin() + 4));
  CHECK(rest_parallel.params == straight.params);
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("data parallel: processes that disagree on the configuration or the data are refused, on every one") {
  REQUIRE(world().size() >= 2);
  cpu::Context ctx;
  bool const odd = world().rank() == world().size() - 1;
  auto const data = io::TextDataset::from_string(corpus(), "fox", 0.1);
  auto const other = io::TextDataset::from_string(corpus() + "one more line\n", "fox", 0.1);
  Lm model(lm_config());
  nn::ParamStore<cpu, float> params(model);
  params.init(ctx, 3);
  using Tr = train::Trainer<cpu, float, Lm, train::RandomCrops, comm::Mpi>;
  auto tc = tcfg(2, 1);
  auto lr = tc;
  if (odd) lr.lr = 1e-2;
  auto const last = std::to_string(world().size() - 1);
  CHECK(test::contains(test::error_of([&] { Tr t(ctx, model, params, data, lr, world()); }),
                       "disagree on the training configuration (batch, seq_len, steps, accumulation, optimizer, "
                       "schedule, evaluation, seed, phases): rank " + last + "'s differs from rank 0's"));
  CHECK(test::contains(test::error_of([&] { Tr t(ctx, model, params, odd ? other : data, tc, world()); }),
                       "disagree on the data (split sizes and contents): rank " + last));
  Lm::Config wider = lm_config();
  if (odd) wider.dim = 32;
  Lm model2(wider);
  nn::ParamStore<cpu, float> params2(model2);
  params2.init(ctx, 3);
  CHECK(test::contains(test::error_of([&] { Tr t(ctx, model2, params2, data, tc, world()); }),
                       "disagree on the model (kind, configuration, parameter count)"));
  // Agreeing processes construct (the collectives above left every process in step).
  CHECK(test::error_of([&] { Tr t(ctx, model, params, data, tc, world()); }).empty());
}

TEST_CASE("data parallel: Transformer-XL on consecutive segments follows one process with P times the batch") {
  int const p = world().size();
  REQUIRE(p >= 2);
  cpu::Context ctx;
  auto const data = io::TextDataset::from_string(corpus(), "fox", 0.1);
  Xl::Config xc{.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 16, .mem_len = 24};
  using Seq = train::SequentialSegments;
  auto run = [&](auto& c, std::int64_t batch, std::string const& resume, std::string const& save) {
    using C = std::remove_reference_t<decltype(c)>;
    Xl m(xc);
    nn::ParamStore<cpu, float> params(m);
    params.init(ctx, 21);
    auto tc = tcfg(batch, 1);
    train::Trainer<cpu, float, Xl, Seq, C> t(ctx, m, params, data, Seq(data, batch, tc.seq_len), tc, c);
    if (!resume.empty()) t.load(ctx, resume);
    std::vector<double> out;
    while (t.state().step < (save.empty() ? tc.steps : 4)) out.push_back(t.step(ctx));
    if (!save.empty()) t.save(ctx, save);
    return out;
  };
  comm::Single single;
  // The P processes' streams are the rows of one process with batch P * 2 (the memory of each row
  // is its process's): the same loss sequence up to the order of the GEMMs' sums.
  auto const parallel = run(world(), 2, "", "");
  auto const wide = run(single, 2 * p, "", "");
  for (std::size_t i = 0; i < parallel.size(); ++i) CHECK(parallel[i] == doctest::Approx(wide[i]).epsilon(1e-4));
  // A checkpoint of several processes holds no memory: it resumes (under one process or P) with an
  // empty one.
  auto const dir = shared_dir();
  std::string const path = (dir / "xl.safetensors").string();
  run(world(), 2, "", path);
  auto const resumed = run(world(), 2, path, "");
  CHECK(resumed.size() == 4);
  auto const resumed_single = run(single, 2 * p, path, "");
  CHECK(resumed_single.size() == 4);
  for (double l : resumed) CHECK(std::isfinite(l));
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}

}  // namespace HSEQ_TEST_UNIT
