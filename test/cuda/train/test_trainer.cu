// SPDX-License-Identifier: MIT
// CUDA train/trainer.hpp: the Trainer lowers the loss of a TransformerLm on the GPU and matches the CPU trainer.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/train/trainer.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

namespace {

std::string mm_corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  return s;
}

}  // namespace

TEST_CASE("cuda models: the Trainer lowers the loss on the GPU and matches the CPU trainer") {
  using LmG = models::TransformerLm<Gpu, float>;
  using LmC = models::TransformerLm<cpu, float>;
  auto data = io::TextDataset::from_string(mm_corpus(), "corpus", 0.1);
  LmSpec spec{.vocab = 256, .dim = 32, .heads = 4, .layers = 2, .context = 32};
  train::TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 32;
  tc.steps = 12;
  tc.warmup = 2;
  tc.lr = 3e-3;
  tc.eval_every = 0;
  tc.eval_windows = 8;

  GpuCtx dctx;
  auto dm = spec.make<Gpu, float>();
  nn::ParamStore<Gpu, float> dps(dctx, *dm);
  dps.init(dctx, 7);
  train::Trainer<Gpu, float, LmG> dtrainer(dctx, *dm, dps, data, tc);
  double dbpc0 = dtrainer.evaluate(dctx, 8);
  for (int i = 0; i < 12; ++i) dtrainer.step(dctx);

  cpu::Context hctx;
  auto hm = spec.make<cpu, float>();
  nn::ParamStore<cpu, float> hps(*hm);
  hps.init(hctx, 7);
  train::Trainer<cpu, float, LmC> htrainer(hctx, *hm, hps, data, tc);
  double hbpc0 = htrainer.evaluate(hctx, 8);
  for (int i = 0; i < 3; ++i) htrainer.step(hctx);

  auto const& dl = dtrainer.losses();
  auto const& hl = htrainer.losses();
  REQUIRE(dl.size() == 12);
  REQUIRE(hl.size() == 3);
  for (double l : dl) CHECK(std::isfinite(l));
  CHECK(dtrainer.state().skipped == 0);
  // Decreasing-ish: the mean of the last three steps is well below the first loss (~ln 256).
  double tail = (dl[9] + dl[10] + dl[11]) / 3;
  INFO("GPU losses: first ", dl[0], ", mean of the last three ", tail);
  CHECK(tail < dl[0] - 0.1);
  double dbpc1 = dtrainer.evaluate(dctx, 8);
  CHECK(std::isfinite(dbpc1));
  CHECK(dbpc1 < dbpc0);
  // Against the CPU trainer (same data stream, same initial parameters). Validation bpc and the
  // first step's loss come from identical parameters: rounding only (kLossRel). The next two losses
  // follow one and two AdamW updates. Adam divides each gradient element by its own magnitude, so
  // an element whose gradient is at rounding level moves by a backend-dependent amount; with
  // eps = 1e-8 such elements (|g| << 1e-8, e.g. the key biases, which softmax cancels exactly and
  // which therefore cannot change the loss) barely move, and every other element's update differs
  // by the gradient's relative rounding error (~1e-6) times lr. 1e-3 relative to the loss is far
  // above that and far below one step's progress (the loss falls by ~0.1 per step here).
  INFO("bpc before training: CPU ", hbpc0, ", GPU ", dbpc0);
  CHECK(std::abs(dbpc0 - hbpc0) <= kLossRel * hbpc0);
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    INFO("loss of step ", i, ": CPU ", hl[i], ", GPU ", dl[i]);
    CHECK(std::abs(dl[i] - hl[i]) <= (i == 0 ? kLossRel : 1e-3) * std::abs(hl[i]));
  }
}

}  // namespace HSEQ_TEST_UNIT
