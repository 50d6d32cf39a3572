// SPDX-License-Identifier: MIT
// hseq::cpu_bf16 (backend/cpu_bf16.hpp): the policy, models instantiated with it unchanged, a short
// training run that follows the fp32 loss curve, and checkpoints that move between the two CPU
// backends. The GEMM's own arithmetic is tested in test/ops/test_gemm.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/backend/cpu_bf16.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/train/trainer.hpp"
#include "support/temp_dir.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

static_assert(Backend<cpu_bf16>);
static_assert(std::is_same_v<cpu_bf16::Space, HostSpace>);
static_assert(std::is_base_of_v<cpu::Context, cpu_bf16::Context>);  // every CPU op takes it

namespace {
std::string corpus() {
  std::string s;
  for (int i = 0; i < 400; ++i)
    s += "the quick brown fox " + std::to_string(i % 23) + " jumps over the lazy dog, said " +
         std::to_string((i * 7) % 13) + ".\n";
  return s;
}
// Wide enough that the projections and the head run in bf16 (2 m n / (m + n) >= 64 with m = 8 * 32
// rows and n = 64 or 256 columns; see ops::kCpuBf16MinIntensity).
template <class B = cpu>
typename models::TransformerLm<B, float>::Config lm_config() {
  return {.vocab = 256, .dim = 64, .heads = 4, .layers = 2, .context = 32};
}
train::TrainerConfig tcfg(std::int64_t steps) {
  train::TrainerConfig t;
  t.batch = 8;
  t.seq_len = 32;
  t.steps = steps;
  t.warmup = 5;
  t.lr = 3e-3;
  t.eval_every = 0;
  t.eval_windows = 8;
  t.seed = 11;
  return t;
}

/// Losses of `steps` training steps of a TransformerLm on backend B from seed 5.
template <class B>
std::vector<double> lm_losses(std::int64_t steps, std::uint64_t* bf16_gemms = nullptr) {
  io::TextDataset data = io::TextDataset::from_string(corpus(), "fox");
  typename B::Context ctx;
  models::TransformerLm<B, float> m(lm_config<B>());
  nn::ParamStore<B, float> p(ctx, m);
  p.init(ctx, 5);
  train::Trainer<B, float, models::TransformerLm<B, float>> t(ctx, m, p, data, tcfg(steps));
  std::vector<double> out;
  for (std::int64_t i = 0; i < steps; ++i) out.push_back(t.step(ctx));
  if (bf16_gemms) *bf16_gemms = ctx.kernel_counts().gemm_bf16_onednn + ctx.kernel_counts().gemm_bf16_emulated;
  return out;
}
}  // namespace

TEST_CASE("cpu_bf16: a backend policy whose context is a CPU context with bf16 GEMM math") {
  CHECK(std::string(cpu_bf16::kName) == "cpu_bf16");
  CHECK(cpu_bf16::available());
  cpu_bf16::Context ctx;
  CHECK(ctx.gemm_math() == GemmMath::kBf16);
  cpu_bf16::Context copy = ctx;
  CHECK(copy.gemm_math() == GemmMath::kBf16);
  cpu::Context plain;
  CHECK(plain.gemm_math() == GemmMath::kFp32);
}

TEST_CASE("cpu_bf16: a short training run follows the fp32 loss curve") {
  // 60 steps of the same model, initialisation and data in fp32 and in cpu_bf16. The bf16 GEMM
  // rounds its operands with relative error 2^-8; at initialisation the loss moves by ~1e-4 nats,
  // and the two trajectories drift apart as training amplifies the differences. Measured on the
  // emulated path (2026-12-02): largest difference over the 60 steps 0.006 nats, last step 0.003,
  // against a loss that falls from 5.6 to about 1.5. The tolerance, 0.05 nats per step (and 2% of
  // the loss), is eight times that, and far below what a broken GEMM does (a wrong transpose or a
  // lost operand leaves the loss near 5.5, or NaN).
  std::int64_t const steps = 60;
  std::uint64_t bf16_gemms = 0;
  std::vector<double> f32 = lm_losses<cpu>(steps);
  std::vector<double> b16 = lm_losses<cpu_bf16>(steps, &bf16_gemms);
  CHECK(bf16_gemms > 0);  // the run did use the bf16 GEMMs
  double worst = 0;
  for (std::int64_t i = 0; i < steps; ++i) {
    CAPTURE(i);
    REQUIRE(std::isfinite(b16[std::size_t(i)]));
    double d = std::abs(b16[std::size_t(i)] - f32[std::size_t(i)]);
    worst = std::max(worst, d);
    CHECK(d <= 0.05);
    CHECK(d <= 0.02 * f32[std::size_t(i)]);
  }
  MESSAGE("cpu_bf16 vs fp32: largest loss difference ", worst, " nats; first loss ", f32.front(), ", last ",
          f32.back(), " (fp32) / ", b16.back(), " (bf16)");
  CHECK(f32.back() < f32.front() - 2.0);  // both trained
  CHECK(b16.back() < b16.front() - 2.0);
  CHECK(b16.front() != f32.front());      // and bf16 did change the arithmetic
}

TEST_CASE("cpu_bf16: checkpoints hold fp32 and move between the two CPU backends exactly") {
  test::TempDir tmp("hseq_cpu_bf16_test");
  io::TextDataset data = io::TextDataset::from_string(corpus(), "fox");
  using LmB = models::TransformerLm<cpu_bf16, float>;
  using LmF = models::TransformerLm<cpu, float>;
  cpu_bf16::Context bctx;
  LmB mb(lm_config<cpu_bf16>());
  nn::ParamStore<cpu_bf16, float> pb(bctx, mb);
  pb.init(bctx, 5);
  train::Trainer<cpu_bf16, float, LmB> tb(bctx, mb, pb, data, tcfg(20));
  for (int i = 0; i < 4; ++i) tb.step(bctx);
  std::string const path = tmp.file("bf16.ckpt");
  tb.save(bctx, path);

  // Into fp32: the same values and moments, bit for bit; training continues there.
  cpu::Context fctx;
  LmF mf(lm_config());
  nn::ParamStore<cpu, float> pf(fctx, mf);
  pf.init(fctx, 99);
  train::Trainer<cpu, float, LmF> tf(fctx, mf, pf, data, tcfg(20));
  tf.load(fctx, path);
  REQUIRE(pf.values().numel() == pb.values().numel());
  std::int64_t diff = 0;
  for (std::int64_t i = 0; i < pf.values().numel(); ++i)
    diff += pf.values()[i] != pb.values()[i] || tf.optimizer().first_moment()[i] != tb.optimizer().first_moment()[i];
  CHECK(diff == 0);
  CHECK(tf.optimizer().steps() == 4);
  CHECK(std::isfinite(tf.step(fctx)));

  // And back: an fp32 checkpoint loads into cpu_bf16.
  std::string const back = tmp.file("fp32.ckpt");
  tf.save(fctx, back);
  LmB mb2(lm_config<cpu_bf16>());
  nn::ParamStore<cpu_bf16, float> pb2(bctx, mb2);
  pb2.init(bctx, 7);
  train::Trainer<cpu_bf16, float, LmB> tb2(bctx, mb2, pb2, data, tcfg(20));
  tb2.load(bctx, back);
  diff = 0;
  for (std::int64_t i = 0; i < pf.values().numel(); ++i) diff += pb2.values()[i] != pf.values()[i];
  CHECK(diff == 0);
  CHECK(tb2.optimizer().steps() == 5);
}

TEST_CASE("cpu_bf16: a hierarchical model runs unchanged on it") {
  // An Hourglass (attention shortening and upsampling): its GEMMs at both rates take the bf16 path
  // where they are large enough, the rest stays fp32; training lowers the loss.
  using Hg = models::Hourglass<cpu_bf16, float>;
  io::TextDataset data = io::TextDataset::from_string(corpus(), "fox");
  cpu_bf16::Context ctx;
  Hg m({.vocab = 256, .dim = 64, .heads = 4, .context = 32, .mlp_hidden = 128,
        .hierarchy = hier::HierarchySpec::parse("1@1 1@2 1@1")});
  nn::ParamStore<cpu_bf16, float> p(ctx, m);
  p.init(ctx, 3);
  train::Trainer<cpu_bf16, float, Hg> t(ctx, m, p, data, tcfg(30));
  double first = t.step(ctx), last = first;
  for (int i = 1; i < 30; ++i) last = t.step(ctx);
  CHECK(std::isfinite(last));
  CHECK(last < first - 1.0);
  CHECK(ctx.kernel_counts().gemm_bf16_onednn + ctx.kernel_counts().gemm_bf16_emulated > 0);
}

}  // namespace HSEQ_TEST_UNIT
