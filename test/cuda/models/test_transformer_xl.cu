// SPDX-License-Identifier: MIT
// CUDA models/transformer_xl.hpp and models/compressive_transformer.hpp: Transformer-XL and the Compressive
// Transformer on the GPU against the CPU (one segment, and a stream of segments carrying the memories:
// logits of every segment, then every parameter gradient), GPU finite differences in double, and cached
// logits against the full forward.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/memory_compressors.hpp"
#include "hseq/models/compressive_transformer.hpp"
#include "hseq/models/transformer_xl.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

namespace {

struct XlSpec {
  std::int64_t vocab = 64, dim = 16, heads = 2, layers = 2, context = 40, mem_len = 24, clamp_len = 0;
  static constexpr bool kExactPlan = false;  // the plan holds a full memory
  // The dense position bias takes the attention core's materialising path: no flash family runs.
  std::int64_t head_size() const { return 0; }
  std::string name() const {
    return "TransformerXl (d " + std::to_string(dim) + ", mem_len " + std::to_string(mem_len) + ", clamp_len " +
           std::to_string(clamp_len) + ")";
  }
  template <class B, class T>
  auto make() const {
    using M = models::TransformerXl<B, T>;
    return std::make_unique<M>(typename M::Config{.vocab = vocab, .dim = dim, .heads = heads, .layers = layers,
                                                  .context = context, .mem_len = mem_len, .clamp_len = clamp_len});
  }
};

template <class P, models::CompressionLoss L = models::CompressionLoss::kBptt>
struct CtSpec {
  std::int64_t vocab = 64, dim = 16, heads = 2, layers = 2, context = 40, mem_len = 8, cmem_len = 6;
  static constexpr bool kExactPlan = false;
  // The attention reconstruction's content attention has no bias: it takes the flash kernels.
  std::int64_t head_size() const { return L == models::CompressionLoss::kAttentionReconstruction ? dim / heads : 0; }
  std::string name() const {
    return std::string("CompressiveTransformer (") + P::kName + " rate " + std::to_string(P::kRate) + ", loss " +
           models::compression_loss_name(L) + ")";
  }
  template <class B, class T>
  auto make() const {
    using M = models::CompressiveTransformer<B, T, P>;
    typename M::Config c;
    c.vocab = vocab, c.dim = dim, c.heads = heads, c.layers = layers, c.context = context, c.mem_len = mem_len;
    c.cmem_len = cmem_len, c.loss = L, c.loss_weight = 0.5;
    return std::make_unique<M>(c);
  }
};

/// CPU (float) vs GPU (float) over `segments` consecutive segments of t tokens with a memory bound
/// on each side: the loss and logits of every segment, then every parameter gradient accumulated
/// over all the segments (forward and backward per segment, as training does).
template <class Spec>
void mm_compare_stream(Spec const& spec, std::int64_t bsz, std::int64_t t, std::int64_t segments, std::uint64_t seed) {
  INFO("model: ", spec.name(), ", batch ", bsz, ", ", segments, " segments of ", t, " (CPU vs GPU, float)");
  cpu::Context hctx;
  GpuCtx dctx;
  auto hm = spec.template make<cpu, float>();
  auto dm = spec.template make<Gpu, float>();
  nn::ParamStore<cpu, float> hps(*hm);
  nn::ParamStore<Gpu, float> dps(dctx, *dm);
  hps.init(hctx, seed);
  dps.init(dctx, seed);
  mm_randomize(hctx, hps, seed + 1, 0.2);
  mm_randomize(dctx, dps, seed + 1, 0.2);
  auto hmem = hm->make_memory(bsz);
  auto dmem = dm->make_memory(bsz);
  hm->bind_memory(&hmem);
  dm->bind_memory(&dmem);
  std::size_t const hplan = hm->forward_workspace(bsz, t) + hm->backward_workspace(bsz, t);
  std::size_t const dplan = dm->forward_workspace(bsz, t) + dm->backward_workspace(bsz, t);
  Workspace<cpu> hws(hplan);
  Workspace<Gpu> dws(dplan);
  typename ModelOf<Spec, cpu, float>::Trace htr;
  typename ModelOf<Spec, Gpu, float>::Trace dtr;
  hps.zero_grad(hctx);
  dps.zero_grad(dctx);
  std::int64_t const v = spec.vocab;
  for (std::int64_t s = 0; s < segments; ++s) {
    INFO("segment ", s);
    auto ids = mm_random_ids(bsz * t, v, seed + 10 + std::uint64_t(s)), tg = mm_random_ids(bsz * t, v, seed + 50 + std::uint64_t(s));
    auto hids = mm_to_backend<cpu>(hctx, ids, Shape{bsz, t}), htg = mm_to_backend<cpu>(hctx, tg, Shape{bsz, t});
    auto dids = mm_to_backend<Gpu>(dctx, ids, Shape{bsz, t}), dtg = mm_to_backend<Gpu>(dctx, tg, Shape{bsz, t});
    auto ha = hws.arena();
    auto da = dws.arena();
    double hl = hm->forward(hctx, hids.cview(), htg.cview(), ha, htr);
    double dl = dm->forward(dctx, dids.cview(), dtg.cview(), da, dtr);
    INFO("loss: CPU ", hl, ", GPU ", dl);
    CHECK(std::abs(dl - hl) <= kLossRel * std::abs(hl));
    mm_check_close("logits", mm_to_host<Gpu, float>(dctx, dtr.logits),
                   std::vector<float>(htr.logits.begin(), htr.logits.end()), kNmse);
    hm->backward(hctx, htr, ha);
    dm->backward(dctx, dtr, da);
    Gpu::synchronize(dctx);
    CHECK(da.high_water() <= dplan);
    CHECK(dmem.fill() == hmem.fill());
  }
  mm_check_param_grads(hctx, hps, dctx, dps, kNmse);
}

}  // namespace

TEST_CASE("cuda models: TransformerXl on the GPU matches the CPU, one segment and a stream over its memory") {
  mm_compare_model(XlSpec{}, 2, 24, 301);
  mm_compare_model(XlSpec{.clamp_len = 5}, 2, 24, 302);
  mm_compare_stream(XlSpec{}, 2, 10, 4, 303);  // the memory fills (10, 20, 24) and then slides
}

TEST_CASE("cuda models: gradcheck of a tiny TransformerXl on the GPU in double, and cached == full") {
  mm_gradcheck_model(XlSpec{.vocab = 11, .dim = 8, .layers = 1, .context = 8, .mem_len = 4}, 2, 8, 304, 5);
  double rel = mm_cached_vs_full<double>(XlSpec{}, 20, 7, 305);
  INFO("worst relative difference ", rel);
  CHECK(rel <= kCachedRelDouble);
}

TEST_CASE("cuda models: CompressiveTransformer on the GPU matches the CPU over a stream, every function and loss") {
  using models::CompressionLoss;
  // Segments of 6 over a memory of 8: from the third segment on, rows are evicted and compressed.
  mm_compare_stream(CtSpec<hier::MeanPool<2>>{}, 2, 6, 5, 311);
  mm_compare_stream(CtSpec<hier::MaxPool<3>>{}, 2, 6, 5, 312);
  mm_compare_stream(CtSpec<hier::MostUsed<2>>{}, 2, 6, 5, 313);
  mm_compare_stream(CtSpec<hier::Conv<2>>{}, 2, 6, 5, 314);
  mm_compare_stream(CtSpec<hier::DilatedConv<3>>{}, 2, 6, 5, 315);
  mm_compare_stream(CtSpec<hier::Conv<2>, CompressionLoss::kAutoEncoding>{}, 2, 6, 5, 316);
  mm_compare_stream(CtSpec<hier::Conv<3>, CompressionLoss::kAttentionReconstruction>{}, 2, 6, 5, 317);
  double rel = mm_cached_vs_full<double>(CtSpec<hier::DilatedConv<2>>{}, 20, 7, 318);
  INFO("cached vs full, worst relative difference ", rel);
  CHECK(rel <= kCachedRelDouble);
}

}  // namespace HSEQ_TEST_UNIT
