// SPDX-License-Identifier: MIT
// What the CUDA model tests (test/cuda/models/, train/, io/) share: model specifications that build
// the same model on any backend and scalar type (LmSpec: TransformerLm, HgSpec: Hourglass; a spec has
// name(), head_size() and make<B, T>()), and the drivers that run a spec on the GPU: against the CPU
// in float (loss, logits, every parameter gradient, workspace plans), GPU finite differences in
// double, causality by perturbation, and cached logits against the full forward. The first two also
// fit a model that reconstructs its input (models::kReconstructsInput): they then train it on
// targets = ids, as the trainer does.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda/compare.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/hierarchy.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/nn/relative_causal_block.hpp"
#include "hseq/models/model.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "support/gradcheck.hpp"

namespace hseq::test_cuda_models {

using namespace hseq::test_cuda_cmp;

using hier::HierarchySpec;

// The mean cross-entropy is a sum of B*T fp32 terms computed from logits that agree to ~1e-6
// relative: 1e-5 relative is a comfortable bound for rounding and far below any real error.
inline constexpr double kLossRel = 1e-5;

// ---------------------------------------------------------------------------------------------
// Host <-> backend copies, random data, comparisons

inline std::vector<std::int32_t> mm_random_ids(std::int64_t n, std::int64_t vocab, std::uint64_t seed) {
  std::vector<std::int32_t> v(static_cast<std::size_t>(n));
  Rng rng(seed);
  for (auto& x : v) x = std::int32_t(rng.below(std::uint64_t(vocab)));
  return v;
}

/// Same bits (not just equal values: -0 and +0 differ, so do NaN payloads).
template <class T>
bool mm_same_bits(std::vector<T> const& a, std::vector<T> const& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0);
}

// ---------------------------------------------------------------------------------------------
// Model specifications: build the same model on any backend and scalar type.

struct LmSpec {
  std::int64_t vocab = 64, dim = 32, heads = 4, layers = 2, context = 40;
  nn::PositionKind position = nn::PositionKind::kLearned;
  bool tied = true;
  std::int64_t head_size() const { return dim / heads; }
  std::string name() const {
    return std::string("TransformerLm (") + (tied ? "tied" : "untied") + ", " +
           (position == nn::PositionKind::kLearned ? "learned" : "sinusoidal") + " positions, d " +
           std::to_string(dim) + ", " + std::to_string(layers) + " layers)";
  }
  template <class B, class T>
  auto make() const {
    using M = models::TransformerLm<B, T>;
    return std::make_unique<M>(typename M::Config{.vocab = vocab,
                                                  .dim = dim,
                                                  .heads = heads,
                                                  .layers = layers,
                                                  .context = context,
                                                  .position = position,
                                                  .tied = tied});
  }
};

/// The Hourglass's position policy, its block type: nn::TransformerBlock's learned table, or
/// nn::RelativeCausalBlock's relative positions (a tag, so that HgSpec's parameter is a type).
struct LearnedPositions {
  template <class B, class T>
  using Block = nn::TransformerBlock<B, T>;
};
struct RelativePositions {
  template <class B, class T>
  using Block = nn::RelativeCausalBlock<B, T>;
};

/// An Hourglass of policies Sh, Up and position policy Pos.
template <class Sh, class Up, class Pos = LearnedPositions>
struct HgSpec {
  std::string hierarchy;
  std::int64_t vocab = 64, dim = 32, heads = 4, context = 48, mlp_hidden = 64;
  bool tied = true, closing_norm = true;
  std::int64_t head_size() const { return dim / heads; }  // every attention of the model, resampling included
  std::string name() const {
    return std::string("Hourglass \"") + hierarchy + "\", shorten " + Sh::kName + ", upsample " + Up::kName + ", d " +
           std::to_string(dim) + (tied ? "" : ", untied") + (closing_norm ? "" : ", no closing norms") +
           (nn::kBlockRelativePositions<typename Pos::template Block<cpu, float>> ? ", relative positions" : "");
  }
  template <class B, class T>
  auto make() const {
    using M = models::Hourglass<B, T, hier::DynamicHierarchy, Sh, Up, typename Pos::template Block<B, T>>;
    return std::make_unique<M>(typename M::Config{.vocab = vocab,
                                                  .dim = dim,
                                                  .heads = heads,
                                                  .context = context,
                                                  .mlp_hidden = mlp_hidden,
                                                  .hierarchy = HierarchySpec::parse(hierarchy),
                                                  .tied = tied,
                                                  .closing_norm = closing_norm});
  }
};

/// Whether a workspace use matches its plan: exactly, or within it for a model whose plan is a
/// worst case (a variable segmenter's).
template <class Spec>
bool mm_plan_holds(std::size_t used, std::size_t plan) {
  if constexpr (requires { Spec::kExactPlan; })
    if (!Spec::kExactPlan) return used <= plan;
  return used == plan;
}

template <class Spec, class B, class T>
using ModelOf = typename decltype(std::declval<Spec const&>().template make<B, T>())::element_type;

/// The targets a driver trains model M on, given the ids and random targets with some positions
/// ignored (< 0): the random targets themselves (a language model's stand-in for the next bytes),
/// or, for a model whose targets are its inputs (models::kReconstructsInput, an autoencoder), the
/// ids at the same positions and the same ignored ones, as the trainer and the evaluator pass them.
template <class M>
std::vector<std::int32_t> mm_targets(std::vector<std::int32_t> const& ids, std::vector<std::int32_t> targets) {
  if constexpr (models::kReconstructsInput<M>)
    for (std::size_t i = 0; i < targets.size(); ++i)
      if (targets[i] >= 0) targets[i] = ids[i];
  return targets;
}

// ---------------------------------------------------------------------------------------------
// Drivers

/// CPU (float) vs GPU (float): same seed and parameters, same ids and targets (two ignored).
/// Compares the loss, the logits and every parameter gradient, and checks the GPU workspace plans.
template <class Spec>
void mm_compare_model(Spec const& spec, std::int64_t bsz, std::int64_t t, std::uint64_t seed) {
  INFO("model: ", spec.name(), ", batch ", bsz, ", length ", t, " (CPU vs GPU, float)");
  cpu::Context hctx;
  GpuCtx dctx;
  auto hm = spec.template make<cpu, float>();
  auto dm = spec.template make<Gpu, float>();
  nn::ParamStore<cpu, float> hps(*hm);
  nn::ParamStore<Gpu, float> dps(dctx, *dm);
  REQUIRE(hps.entries().size() == dps.entries().size());
  hps.init(hctx, seed);
  dps.init(dctx, seed);
  mm_check_close("initial parameters from the same seed", mm_to_host<Gpu, float>(dctx, dps.values()),
                 mm_to_host<cpu, float>(hctx, hps.values()), kInitNmse);
  mm_randomize(hctx, hps, seed + 1, 0.2);
  mm_randomize(dctx, dps, seed + 1, 0.2);
  std::int64_t const v = spec.vocab;
  auto ids = mm_random_ids(bsz * t, v, seed + 2), targets = mm_random_ids(bsz * t, v, seed + 3);
  targets[3] = -1;
  targets[std::size_t(bsz * t - 2)] = -1;
  targets = mm_targets<ModelOf<Spec, cpu, float>>(ids, std::move(targets));
  auto hids = mm_to_backend<cpu>(hctx, ids, Shape{bsz, t}), htg = mm_to_backend<cpu>(hctx, targets, Shape{bsz, t});
  auto dids = mm_to_backend<Gpu>(dctx, ids, Shape{bsz, t}), dtg = mm_to_backend<Gpu>(dctx, targets, Shape{bsz, t});
  std::size_t hplan = hm->forward_workspace(bsz, t) + hm->backward_workspace(bsz, t);
  std::size_t dfw = dm->forward_workspace(bsz, t), dplan = dfw + dm->backward_workspace(bsz, t);
  Workspace<cpu> hws(hplan);
  Workspace<Gpu> dws(dplan);
  typename ModelOf<Spec, cpu, float>::Trace htr;
  typename ModelOf<Spec, Gpu, float>::Trace dtr;
  hps.zero_grad(hctx);
  dps.zero_grad(dctx);
  auto ha = hws.arena();
  auto da = dws.arena();
  double hl = hm->forward(hctx, hids.cview(), htg.cview(), ha, htr);
  double dl = dm->forward(dctx, dids.cview(), dtg.cview(), da, dtr);
  INFO("loss: CPU ", hl, ", GPU ", dl);
  CHECK(std::isfinite(dl));
  CHECK(std::abs(dl - hl) <= kLossRel * std::abs(hl));
  CHECK(dtr.counted == htr.counted);
  CHECK(dtr.counted == bsz * t - 2);
  CHECK(mm_plan_holds<Spec>(da.used(), dfw));
  REQUIRE(dtr.logits.shape == (Shape{bsz, t, v}));
  mm_check_close("logits", mm_to_host<Gpu, float>(dctx, dtr.logits),
                 std::vector<float>(htr.logits.begin(), htr.logits.end()), kNmse);
  hm->backward(hctx, htr, ha);
  dm->backward(dctx, dtr, da);
  Gpu::synchronize(dctx);
  {
    INFO("GPU workspace: planned ", dplan, " bytes, forward + backward carved ", da.high_water());
    CHECK(mm_plan_holds<Spec>(da.high_water(), dplan));
  }
  mm_check_param_grads(hctx, hps, dctx, dps, kNmse);
  mm_check_attention_family<float>(dctx, spec.head_size(), 2);
}

/// Finite differences of the mean loss on the GPU in double, with test::GradCheck over a host
/// mirror store of the same model: GradCheck perturbs and reads the mirror; every evaluation
/// uploads the mirror's values (and, for gradients, its pre-filled gradients) and runs on the GPU.
template <class Spec>
void mm_gradcheck_model(Spec const& spec, std::int64_t bsz, std::int64_t t, std::uint64_t seed,
                        std::int64_t per_tensor) {
  INFO("model: ", spec.name(), ", batch ", bsz, ", length ", t, " (GPU gradcheck, double)");
  cpu::Context hctx;
  GpuCtx dctx;
  auto mirror = spec.template make<cpu, double>();
  auto dm = spec.template make<Gpu, double>();
  nn::ParamStore<cpu, double> hps(*mirror);
  nn::ParamStore<Gpu, double> dps(dctx, *dm);
  REQUIRE(hps.values().numel() == dps.values().numel());
  mm_randomize(hctx, hps, seed, 0.3);
  std::int64_t const v = spec.vocab;
  auto ids_h = mm_random_ids(bsz * t, v, seed + 1), tg_h = mm_random_ids(bsz * t, v, seed + 2);
  tg_h[3] = -1;  // an ignored position
  tg_h = mm_targets<ModelOf<Spec, cpu, double>>(ids_h, std::move(tg_h));
  auto ids = mm_to_backend<Gpu>(dctx, ids_h, Shape{bsz, t}), targets = mm_to_backend<Gpu>(dctx, tg_h, Shape{bsz, t});
  std::size_t fw = dm->forward_workspace(bsz, t), plan = fw + dm->backward_workspace(bsz, t);
  Workspace<Gpu> ws(plan);
  typename ModelOf<Spec, Gpu, double>::Trace tr;
  auto const np = std::size_t(hps.values().numel());
  auto loss = [&] {
    Gpu::upload<double>(dctx, dps.values().data, hps.values().data, np);
    auto a = ws.arena();
    return dm->forward(dctx, ids.cview(), targets.cview(), a, tr);
  };
  bool plan_ok = true;
  auto grads = [&] {
    Gpu::upload<double>(dctx, dps.values().data, hps.values().data, np);
    Gpu::upload<double>(dctx, dps.grads().data, hps.grads().data, np);
    auto a = ws.arena();
    dm->forward(dctx, ids.cview(), targets.cview(), a, tr);
    plan_ok &= mm_plan_holds<Spec>(a.used(), fw);
    dm->backward(dctx, tr, a);
    plan_ok &= mm_plan_holds<Spec>(a.high_water(), plan);
    Gpu::download<double>(dctx, hps.grads().data, dps.grads().data, np);
  };
  test::GradcheckOptions opt;
  opt.max_per_tensor = per_tensor;
  test::GradCheck(hps, opt).run(loss, grads);
  CHECK(plan_ok);
  mm_check_attention_family<double>(dctx, spec.head_size());
}

/// Changes token p (in both batch rows) and checks, row by row of the GPU logits of each batch
/// element, that exactly the rows that depend on p changed bits (as the CPU test in
/// test/models/test_hourglass.cpp does):
///   - `first_factor` 1 (the model has full-rate layers: TransformerLm, an Hourglass with pre or
///     post layers): rows < p keep their bits, every row >= p changes (row p + 1 sees p only
///     through full-rate attention, so "some row >= p changed" would not pin it);
///   - `first_factor` k > 1 (an Hourglass without full-rate layers, outermost shortening factor k):
///     row q changes exactly when q == p (the residual around the level) or q >= ceil(p / k) * k
///     (the first row whose shifted, shortened block contains p); rows p < q < ceil(p / k) * k keep
///     their bits, and so do rows < p.
/// (Both rules were checked on the CPU for every shorten x upsample pair, one and two levels and
/// padded lengths.)
template <class Spec>
void mm_causality(Spec const& spec, std::int64_t t, std::vector<std::int64_t> const& positions, std::uint64_t seed,
                  std::int64_t first_factor = 1) {
  INFO("model: ", spec.name(), ", length ", t, " (GPU causality, float)");
  GpuCtx ctx;
  auto m = spec.template make<Gpu, float>();
  nn::ParamStore<Gpu, float> ps(ctx, *m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.2);
  std::int64_t const bsz = 2, v = spec.vocab;
  Workspace<Gpu> ws(m->forward_workspace(bsz, t));
  typename ModelOf<Spec, Gpu, float>::Trace tr;
  Tensor<std::int32_t, Gpu> ids_d(Shape{bsz, t});
  auto run = [&](std::vector<std::int32_t> const& ids) {
    Gpu::upload<std::int32_t>(ctx, ids_d.data(), ids.data(), ids.size());
    auto a = ws.arena();
    m->forward(ctx, ids_d.cview(), {}, a, tr);
    REQUIRE(tr.logits.shape == (Shape{bsz, t, v}));
    return mm_to_host<Gpu, float>(ctx, tr.logits);
  };
  auto ids = mm_random_ids(bsz * t, v, seed + 1);
  auto base = run(ids);
  bool deterministic = mm_same_bits(run(ids), base);
  CHECK_MESSAGE(deterministic, "two GPU forwards of the same input differ: bit-identity below cannot hold");
  for (std::int64_t p : positions) {
    if (p >= t) continue;
    CAPTURE(p);
    auto changed = ids;
    changed[std::size_t(p)] = (changed[std::size_t(p)] + 5) % std::int32_t(v);
    changed[std::size_t(t + p)] = (changed[std::size_t(t + p)] + 9) % std::int32_t(v);
    auto out = run(changed);
    std::int64_t const block_start = (p + first_factor - 1) / first_factor * first_factor;  // ceil(p / k) k
    INFO("rows that must change: ", p, " and every row >= ", block_start);
    for (std::int64_t b = 0; b < bsz; ++b) {
      CAPTURE(b);
      std::string moved, expected;  // 'x': the row changed (some logit's bits differ)
      for (std::int64_t q = 0; q < t; ++q) {
        std::size_t k = std::size_t((b * t + q) * v);
        moved += std::memcmp(&out[k], &base[k], sizeof(float) * std::size_t(v)) != 0 ? 'x' : '.';
        expected += q == p || (q > p && q >= block_start) ? 'x' : '.';
      }
      CHECK(moved == expected);
    }
  }
  mm_check_attention_family<float>(ctx, spec.head_size(), 2);
}

/// Logits from forward_step over a cache (a prefill of `prefill` tokens, then one token at a time)
/// against the full forward, both on the GPU. Returns the worst absolute difference relative to
/// max(1, the largest |logit|).
template <class T, class Spec>
double mm_cached_vs_full(Spec const& spec, std::int64_t t, std::int64_t prefill, std::uint64_t seed) {
  INFO("model: ", spec.name(), ", length ", t, ", prefill ", prefill, " (GPU cached vs full, ",
       sizeof(T) == 8 ? "double" : "float", ")");
  GpuCtx ctx;
  auto m = spec.template make<Gpu, T>();
  nn::ParamStore<Gpu, T> ps(ctx, *m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.3);
  std::int64_t const bsz = 2, v = spec.vocab;
  auto ids = mm_random_ids(bsz * t, v, seed + 1);
  auto ids_d = mm_to_backend<Gpu>(ctx, ids, Shape{bsz, t});
  Workspace<Gpu> ws(m->forward_workspace(bsz, t));
  typename ModelOf<Spec, Gpu, T>::Trace tr;
  {
    auto a = ws.arena();
    m->forward(ctx, ids_d.cview(), {}, a, tr);
  }
  auto full = mm_to_host<Gpu, T>(ctx, tr.logits);
  auto cache = m->make_cache(bsz, t);
  std::size_t plan = m->step_workspace(bsz, t, t);
  Workspace<Gpu> sws(plan);
  double worst = 0, scale = 1;
  for (T x : full) scale = std::max(scale, std::abs(double(x)));
  std::int64_t pos = 0;
  while (pos < t) {
    std::int64_t n = std::min(pos == 0 ? prefill : std::int64_t(1), t - pos);
    std::vector<std::int32_t> chunk(std::size_t(bsz * n));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n; ++i) chunk[std::size_t(b * n + i)] = ids[std::size_t(b * t + pos + i)];
    auto chunk_d = mm_to_backend<Gpu>(ctx, chunk, Shape{bsz, n});
    Tensor<T, Gpu> logits(Shape{bsz, n, v});
    auto sa = sws.arena();
    m->forward_step(ctx, chunk_d.cview(), cache, pos, logits.view(), sa);
    CHECK(sa.high_water() <= plan);
    auto got = mm_to_host<Gpu, T>(ctx, logits.cview());
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t c = 0; c < v; ++c) {
          double d = std::abs(double(full[std::size_t((b * t + pos + i) * v + c)]) -
                              double(got[std::size_t((b * n + i) * v + c)]));
          worst = std::max(worst, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
        }
    pos += n;
  }
  mm_check_attention_family<T>(ctx, spec.head_size(), 2);
  return worst / scale;
}

// Cached vs full in double: the same arithmetic up to summation order (kernels tile the keys of a
// cache of capacity T_max differently from a T-row forward), ~1e-15 relative; 1e-11 as on the CPU.
inline constexpr double kCachedRelDouble = 1e-11;
// In float the two paths run different GEMM shapes and attention tilings through several layers:
// 1e-4 of the largest logit is ~1000 ulps, well above that noise and far below the O(1) error of a
// wrong position, mask or cache row.
inline constexpr double kCachedRelFloat = 1e-4;

}  // namespace hseq::test_cuda_models
