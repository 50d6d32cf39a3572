// SPDX-License-Identifier: MIT
// CUDA models/seq_autoencoder.hpp: the length-reduction autoencoder with each query source (pooled queries,
// query bank, length mix), R = 2 in two steps and R = 4 in one, on the GPU against the CPU in float (loss over
// targets = ids, logits, every parameter gradient, workspace plans), its latent on both backends in float and
// double, decode(latent) on the GPU equal bit for bit to the GPU forward's logits, and GPU finite differences
// in double.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/length_resampler.hpp"
#include "hseq/models/model.hpp"
#include "hseq/models/seq_autoencoder.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

namespace {

/// models::SeqAutoencoder with reduction factor R and query source Q. The model reconstructs its
/// input (models::kReconstructsInput), so model_checks.cuh's drivers train it on targets = ids.
template <std::int64_t R, class Q>
struct AeSpec {
  std::int64_t vocab = 64, dim = 32, heads = 2, enc_layers = 1, dec_layers = 1, window = 16, steps = 2, mlp_hidden = 64;
  bool residual = true, tied = true;
  // Every attention of the model (encoder, decoder, each reduction and expansion) has this head size.
  std::int64_t head_size() const { return dim / heads; }
  std::string name() const {
    return std::string("SeqAutoencoder (R ") + std::to_string(R) + ", " + std::to_string(steps) + " steps, queries " +
           Q::kName + ", window " + std::to_string(window) + ", d " + std::to_string(dim) + ", heads " +
           std::to_string(heads) + (residual ? "" : ", no resampler residual") + (tied ? ", tied" : ", untied") + ")";
  }
  template <class B, class T>
  auto make() const {
    using M = models::SeqAutoencoder<B, T, R, Q>;
    return std::make_unique<M>(typename M::Config{.vocab = vocab,
                                                  .dim = dim,
                                                  .heads = heads,
                                                  .enc_layers = enc_layers,
                                                  .dec_layers = dec_layers,
                                                  .window = window,
                                                  .steps = steps,
                                                  .mlp_hidden = mlp_hidden,
                                                  .residual = residual,
                                                  .tied = tied});
  }
};

// What makes mm_compare_model and mm_gradcheck_model pass targets = ids (model_checks.cuh, mm_targets).
static_assert(models::kReconstructsInput<ModelOf<AeSpec<2, hier::PooledQueries>, Gpu, float>>);

/// The latent [B, n / R^steps, d] of the same parameters and ids on the CPU and the GPU in T, then
/// decode(latent) on the GPU against the logits of the GPU forward that made it: bit for bit, as on
/// the CPU (test/models/test_seq_autoencoder.cpp). decode runs the forward's expansions, decoder and
/// head (predict: the same LayerNorm and GEMM as forward) on the same latent, with the same shapes
/// and 256-byte aligned buffers, and a GPU forward is deterministic (mm_causality relies on it), so
/// any differing bit means decode computes something else. decode's plan is checked to be exact.
template <class T, class Spec>
void ae_latent_and_decode(Spec const& spec, std::int64_t bsz, std::int64_t t, std::uint64_t seed) {
  INFO("model: ", spec.name(), ", batch ", bsz, ", length ", t, " (latent CPU vs GPU, GPU decode vs forward, ",
       sizeof(T) == 8 ? "double" : "float", ")");
  cpu::Context hctx;
  GpuCtx dctx;
  auto hm = spec.template make<cpu, T>();
  auto dm = spec.template make<Gpu, T>();
  nn::ParamStore<cpu, T> hps(*hm);
  nn::ParamStore<Gpu, T> dps(dctx, *dm);
  REQUIRE(hps.values().numel() == dps.values().numel());
  mm_randomize(hctx, hps, seed, 0.2);
  mm_randomize(dctx, dps, seed, 0.2);
  auto ids = mm_random_ids(bsz * t, spec.vocab, seed + 1);
  auto hids = mm_to_backend<cpu>(hctx, ids, Shape{bsz, t});
  auto dids = mm_to_backend<Gpu>(dctx, ids, Shape{bsz, t});
  Workspace<cpu> hws(hm->forward_workspace(bsz, t));
  Workspace<Gpu> dws(dm->forward_workspace(bsz, t));
  typename ModelOf<Spec, cpu, T>::Trace htr;
  typename ModelOf<Spec, Gpu, T>::Trace dtr;
  auto ha = hws.arena();
  auto da = dws.arena();
  // No targets: the latent and the logits do not depend on them, and decode is used without them.
  hm->forward(hctx, hids.cview(), {}, ha, htr);
  dm->forward(dctx, dids.cview(), {}, da, dtr);
  Shape const latent_shape{bsz, dm->latent_length(t), spec.dim};
  REQUIRE(htr.latent().shape == latent_shape);
  REQUIRE(dtr.latent().shape == latent_shape);
  mm_check_close("latent", mm_to_host<Gpu, T>(dctx, dtr.latent()), mm_to_host<cpu, T>(hctx, htr.latent()), kNmse);
  REQUIRE(dtr.logits.shape == (Shape{bsz, t, spec.vocab}));
  auto const forward_logits = mm_to_host<Gpu, T>(dctx, dtr.logits);

  std::size_t const plan = dm->decode_workspace(bsz, t);
  Workspace<Gpu> dec_ws(plan);
  Tensor<T, Gpu> out(Shape{bsz, t, spec.vocab});
  auto dec_a = dec_ws.arena();
  dm->decode(dctx, dtr.latent(), out.view(), dec_a);
  Gpu::synchronize(dctx);
  {
    INFO("decode workspace: planned ", plan, " bytes, carved ", dec_a.high_water(), ", still held ", dec_a.used());
    CHECK(dec_a.high_water() == plan);
    CHECK(dec_a.used() == 0);  // decode releases its scratch
  }
  auto const decoded = mm_to_host<Gpu, T>(dctx, out.cview());
  REQUIRE(decoded.size() == forward_logits.size());
  double worst = 0;  // reported only, to tell rounding from a wrong computation if the bits differ
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    double const d = std::abs(double(decoded[i]) - double(forward_logits[i]));
    worst = std::max(worst, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
  }
  INFO("decode vs forward logits: worst absolute difference ", worst);
  CHECK(mm_same_bits(decoded, forward_logits));
  mm_check_attention_family<T>(dctx, spec.head_size(), 2);
}

/// The float comparison and the latent / decode checks in float and double of one configuration.
template <class Spec>
void ae_compare(Spec const& spec, std::int64_t bsz, std::int64_t t, std::uint64_t seed) {
  mm_compare_model(spec, bsz, t, seed);
  ae_latent_and_decode<float>(spec, bsz, t, seed + 10);
  ae_latent_and_decode<double>(spec, bsz, t, seed + 20);
}

}  // namespace

// Head size 16: the one-thread-per-row attention kernels in float and double. R = 2 in two steps
// over the whole window (16 -> 8 -> 4 and back); R = 4 in one step, also without the resamplers'
// query residual and with an untied output projection (its own gradient). A length-mix source
// accepts only the window's length; the others also run on half the window (a query bank then uses
// its first rows, and the other rows' gradients stay zero on both backends).
TEST_CASE_TEMPLATE("cuda models: SeqAutoencoder on the GPU matches the CPU, R = 2 in two steps and R = 4 in one", Q,
                   hier::PooledQueries, hier::QueryBank, hier::LengthMix) {
  ae_compare(AeSpec<2, Q>{}, 2, 16, 401);
  ae_compare(AeSpec<4, Q>{.steps = 1}, 2, 16, 431);
  ae_compare(AeSpec<4, Q>{.steps = 1, .residual = false, .tied = false}, 2, 16, 461);
  if constexpr (Q::kWindow != hier::WindowUse::kExact) {
    ae_compare(AeSpec<2, Q>{}, 2, 8, 491);
    ae_compare(AeSpec<4, Q>{.steps = 1}, 3, 8, 521);
  }
}

// Windows R^steps does not divide (padded with a mask in the resamplers): 14 -> 7 -> 4 with R = 2
// (a partial group at the second step) and 14 -> 4 with R = 4 (a partial group of 2).
TEST_CASE_TEMPLATE("cuda models: SeqAutoencoder on the GPU matches the CPU at windows R does not divide", Q,
                   hier::PooledQueries, hier::QueryBank, hier::LengthMix) {
  ae_compare(AeSpec<2, Q>{.window = 14}, 2, 14, 701);
  ae_compare(AeSpec<4, Q>{.window = 14, .steps = 1}, 2, 14, 731);
  mm_gradcheck_model(AeSpec<2, Q>{.vocab = 11, .dim = 8, .window = 7, .mlp_hidden = 16}, 2, 7, 761, 5);
}

// Head size 32: the tensor-core float attention kernels in every attention of the model.
TEST_CASE_TEMPLATE("cuda models: SeqAutoencoder on the GPU matches the CPU, head size 32 (tensor-core kernels)", Q,
                   hier::PooledQueries, hier::QueryBank, hier::LengthMix) {
  ae_compare(AeSpec<2, Q>{.dim = 64, .window = 32}, 2, 32, 551);
  ae_compare(AeSpec<4, Q>{.dim = 64, .steps = 1}, 2, 16, 581);
}

// Tiny models over the whole window (every bank row and mix entry used, so no gradient is zero).
TEST_CASE_TEMPLATE("cuda models: gradcheck of a tiny SeqAutoencoder on the GPU in double, R = 2 in two steps and R = 4",
                   Q, hier::PooledQueries, hier::QueryBank, hier::LengthMix) {
  mm_gradcheck_model(AeSpec<2, Q>{.vocab = 11, .dim = 8, .window = 8, .mlp_hidden = 16}, 2, 8, 611, 5);
  mm_gradcheck_model(AeSpec<4, Q>{.vocab = 11, .dim = 8, .window = 8, .steps = 1, .mlp_hidden = 16}, 2, 8, 612, 5);
  mm_gradcheck_model(
      AeSpec<4, Q>{.vocab = 11, .dim = 8, .window = 8, .steps = 1, .mlp_hidden = 16, .residual = false, .tied = false},
      2, 8, 613, 5);
}

}  // namespace HSEQ_TEST_UNIT
