// SPDX-License-Identifier: MIT
// CUDA backend, models: TransformerLm and every Hourglass shorten x upsample pair on the GPU against
// the CPU (loss, logits, every parameter gradient, workspace plans), GPU finite differences in
// double, causality by perturbation on the GPU, cached generation equal to the full GPU forward,
// the Trainer on the GPU (and against the CPU trainer), checkpoints moving between CPU and GPU,
// and generate() on the GPU.
//
// Helpers are named mm_* and live in an anonymous namespace so that they cannot clash with
// test/cuda/support.cuh or another test file of the same executable.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hseq/cuda.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/delimited.hpp"
#include "hseq/hier/hierarchy.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/generate.hpp"
#include "hseq/models/hierarchical.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/train/adamw.hpp"
#include "hseq/train/trainer.hpp"
#include "cuda/compare.cuh"
#include "support/gradcheck.hpp"

using namespace hseq;

namespace {

using namespace hseq::test_cuda_cmp;

using hier::HierarchySpec;

// The mean cross-entropy is a sum of B*T fp32 terms computed from logits that agree to ~1e-6
// relative: 1e-5 relative is a comfortable bound for rounding and far below any real error.
constexpr double kLossRel = 1e-5;

// ---------------------------------------------------------------------------------------------
// Host <-> backend copies, random data, comparisons

std::vector<std::int32_t> mm_random_ids(std::int64_t n, std::int64_t vocab, std::uint64_t seed) {
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

template <class Sh, class Up>
struct HgSpec {
  std::string hierarchy;
  std::int64_t vocab = 64, dim = 32, heads = 4, context = 48, mlp_hidden = 64;
  std::int64_t head_size() const { return dim / heads; }  // every attention of the model, resampling included
  std::string name() const {
    return std::string("Hourglass \"") + hierarchy + "\", shorten " + Sh::kName + ", upsample " + Up::kName + ", d " +
           std::to_string(dim);
  }
  template <class B, class T>
  auto make() const {
    using M = models::Hourglass<B, T, hier::DynamicHierarchy, Sh, Up>;
    return std::make_unique<M>(typename M::Config{.vocab = vocab,
                                                  .dim = dim,
                                                  .heads = heads,
                                                  .context = context,
                                                  .mlp_hidden = mlp_hidden,
                                                  .hierarchy = HierarchySpec::parse(hierarchy)});
  }
};

/// HRED/HAED (models::Hierarchical) over segments of 4 bytes (or of the segmenter Seg, e.g.
/// hier::Delimited<6> ended by the byte `delimiter`) with the given encoder, backbone and decoder
/// policies.
template <class Enc, class Bb, class Dec, class Seg = hier::FixedChunks<4>>
struct HierSpec {
  std::int64_t vocab = 64, dim = 16, heads = 2, layers = 2, decoder_layers = 1, context = 48;
  nn::RnnKind cell = nn::RnnKind::kGru;
  std::string delimiter = std::string(1, char(3));  // a variable segmenter's: id 3 (random ids hit it)
  static constexpr std::int64_t kSegment = Seg::kSize;
  // A variable segmenter plans for its worst case (every byte a delimiter): a batch carves less.
  static constexpr bool kExactPlan = !hier::VariableSegmenter<Seg>;
  // Attention runs only in a Transformer backbone or decoder (0: none may be dispatched).
  std::int64_t head_size() const {
    bool const attention = std::is_same_v<Bb, hier::TransformerBackbone> || std::is_same_v<Dec, hier::TransformerDecoder>;
    return attention ? dim / heads : 0;
  }
  std::string name() const {
    return std::string("Hierarchical (encoder ") + Enc::kName + ", backbone " + Bb::kName + ", decoder " + Dec::kName +
           ", cell " + nn::rnn_kind_name(cell) + ", d " + std::to_string(dim) + ", K " + std::to_string(kSegment) +
           (kExactPlan ? ")" : ", delimited by id " + std::to_string(int(delimiter[0])) + ")");
  }
  template <class B, class T>
  auto make() const {
    using M = models::Hierarchical<B, T, Seg, Enc, Bb, Dec>;
    typename M::Config c;
    c.delimiter = delimiter;  // (fixed segmenters ignore it)
    c.vocab = vocab;
    c.dim = dim;
    c.heads = heads;
    c.layers = layers;
    c.decoder_layers = decoder_layers;
    c.cell = cell;
    c.context = context;
    return std::make_unique<M>(c);
  }
};
using HredSpec = HierSpec<hier::RnnEncoder, hier::RnnBackbone, hier::RnnDecoder>;
using HaedRnnSpec = HierSpec<hier::MlpEncoder, hier::TransformerBackbone, hier::RnnDecoder>;
using HaedTransformerSpec = HierSpec<hier::MlpEncoder, hier::TransformerBackbone, hier::TransformerDecoder>;
using HredDelimitedSpec = HierSpec<hier::RnnEncoder, hier::RnnBackbone, hier::RnnDecoder, hier::Delimited<6>>;
using HaedDelimitedSpec =
    HierSpec<hier::MlpEncoder, hier::TransformerBackbone, hier::TransformerDecoder, hier::Delimited<6>>;

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
constexpr double kCachedRelDouble = 1e-11;
// In float the two paths run different GEMM shapes and attention tilings through several layers:
// 1e-4 of the largest logit is ~1000 ulps, well above that noise and far below the O(1) error of a
// wrong position, mask or cache row.
constexpr double kCachedRelFloat = 1e-4;

template <class Sh, class Up>
void mm_compare_hourglass_pair() {
  // One level of k = 4 and a length that needs padding (22 -> 24); two nested levels (k = 2 then 3,
  // total 6) with 19 -> 24.
  mm_compare_model(HgSpec<Sh, Up>{"1@1 1@4 1@1"}, 2, 22, 41);
  mm_compare_model(HgSpec<Sh, Up>{"1@1 1@2 1@6 1@2 1@1"}, 2, 19, 42);
}

template <class Sh, class Up>
void mm_causality_hourglass_pair() {
  // One level of k = 4: positions with t mod k in {0, 1, k - 1}, at several blocks.
  mm_causality(HgSpec<Sh, Up>{"1@1 1@4 1@1"}, 24, {0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 20, 21, 23}, 51);
  // Two nested levels (k = 2 then 3, total 6): residues mod 2 and mod 6.
  mm_causality(HgSpec<Sh, Up>{"1@1 1@2 1@6 1@2 1@1"}, 24, {0, 1, 2, 5, 6, 7, 11, 12, 13, 17, 18, 19, 23}, 52);
  // Lengths that are not a multiple of the total factor (padded internally, truncated after).
  mm_causality(HgSpec<Sh, Up>{"1@1 1@4 1@1"}, 22, {0, 3, 4, 5, 15, 16, 17, 20, 21}, 53);
  mm_causality(HgSpec<Sh, Up>{"1@1 1@2 1@6 1@2 1@1"}, 19, {0, 1, 5, 6, 11, 12, 17, 18}, 54);
  // No full-rate layers: the exact set of dependent rows (q == p or q >= ceil(p / k) * k, k the
  // outermost factor), one level of k = 4 and two levels (k = 3 then 2), one length padded.
  mm_causality(HgSpec<Sh, Up>{"0@1 1@4 0@1"}, 24, {0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 20, 21, 23}, 56, 4);
  mm_causality(HgSpec<Sh, Up>{"0@1 1@4 0@1"}, 22, {0, 1, 3, 5, 17, 19, 20, 21}, 57, 4);
  mm_causality(HgSpec<Sh, Up>{"0@1 1@3 1@6 1@3 0@1"}, 19, {0, 1, 2, 3, 4, 7, 10, 13, 16, 17, 18}, 58, 3);
}

template <class Sh, class Up>
void mm_cached_hourglass(char const* hierarchy, std::int64_t t) {
  HgSpec<Sh, Up> spec{hierarchy, 24, 8, 2, 24, 8};
  double rel = mm_cached_vs_full<double>(spec, t, 3, 61);
  INFO(spec.name(), ": worst |cached - full| / max(1, max |logit|) = ", rel);
  CHECK(rel <= kCachedRelDouble);
}

std::string mm_corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  return s;
}

struct MmTempDir {
  std::filesystem::path dir;
  MmTempDir() {
    static std::atomic<int> counter{0};
    dir = std::filesystem::temp_directory_path() /
          ("hseq_cuda_models_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(dir);
  }
  ~MmTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string file(std::string const& name) const { return (dir / name).string(); }
};

/// Gradients sin(0.37 k + phase) + 0.01 over the parameters (padding zero), as a host vector.
template <class T>
std::vector<T> mm_fake_grads(nn::ParamStore<cpu, T> const& layout_cpu, double phase) {
  std::vector<T> g(std::size_t(layout_cpu.values().numel()), T(0));
  std::size_t k = 0;
  for (auto const& e : layout_cpu.entries())
    for (std::int64_t i = 0; i < e.param->shape.numel(); ++i, ++k)
      g[std::size_t(e.offset + i)] = T(std::sin(0.37 * double(k) + phase) + 0.01);
  return g;
}

}  // namespace

// =============================================================================================
// CPU vs GPU: loss, logits, every parameter gradient, workspace plans

TEST_CASE("cuda models: TransformerLm on the GPU matches the CPU (tied/untied, learned/sinusoidal)") {
  for (bool tied : {true, false})
    for (auto pk : {nn::PositionKind::kLearned, nn::PositionKind::kSinusoidal}) {
      LmSpec spec;
      spec.tied = tied;
      spec.position = pk;
      mm_compare_model(spec, 2, 37, 31);
    }
  // Head size 32: the tensor-core float attention kernels (the specs above have head size 8).
  mm_compare_model(LmSpec{.vocab = 64, .dim = 64, .heads = 2, .layers = 2, .context = 72}, 2, 70, 32);
}

TEST_CASE("cuda models: Hourglass on the GPU matches the CPU, shorten avg, every upsampling, one and two levels") {
  mm_compare_hourglass_pair<hier::AvgPool, hier::Repeat>();
  mm_compare_hourglass_pair<hier::AvgPool, hier::LinearUp>();
  mm_compare_hourglass_pair<hier::AvgPool, hier::AttentionUp>();
}
TEST_CASE("cuda models: Hourglass on the GPU matches the CPU, shorten linear, every upsampling, one and two levels") {
  mm_compare_hourglass_pair<hier::LinearPool, hier::Repeat>();
  mm_compare_hourglass_pair<hier::LinearPool, hier::LinearUp>();
  mm_compare_hourglass_pair<hier::LinearPool, hier::AttentionUp>();
}
TEST_CASE(
    "cuda models: Hourglass on the GPU matches the CPU, shorten attention, every upsampling, one and two levels") {
  mm_compare_hourglass_pair<hier::AttentionPool, hier::Repeat>();
  mm_compare_hourglass_pair<hier::AttentionPool, hier::LinearUp>();
  mm_compare_hourglass_pair<hier::AttentionPool, hier::AttentionUp>();
  // Head size 32 (tensor-core float attention kernels) in every attention of the model.
  mm_compare_model(HgSpec<hier::AttentionPool, hier::AttentionUp>{"1@1 1@2 1@6 1@2 1@1", 64, 32, 1, 48, 64}, 2, 41, 43);
}

// =============================================================================================
// GPU finite differences in double

TEST_CASE("cuda models: gradcheck of tiny models on the GPU in double (TransformerLm, Hourglass)") {
  LmSpec lm{.vocab = 11, .dim = 8, .heads = 2, .layers = 2, .context = 6};
  mm_gradcheck_model(lm, 2, 5, 3, 8);
  lm.tied = false;
  lm.position = nn::PositionKind::kSinusoidal;
  mm_gradcheck_model(lm, 2, 5, 4, 8);
  mm_gradcheck_model(HgSpec<hier::AttentionPool, hier::AttentionUp>{"1@1 1@2 1@1", 11, 8, 2, 12, 8}, 2, 6, 5, 5);
  mm_gradcheck_model(HgSpec<hier::LinearPool, hier::LinearUp>{"1@1 1@3 1@1", 11, 8, 2, 12, 8}, 2, 6, 6, 5);
  // Two levels and a padded length (7 -> 8).
  mm_gradcheck_model(HgSpec<hier::AvgPool, hier::AttentionUp>{"1@1 1@2 1@4 1@2 1@1", 11, 8, 2, 12, 8}, 2, 7, 7, 5);
}

// =============================================================================================
// Causality on the GPU: logits before a changed token keep their bits

TEST_CASE("cuda models: TransformerLm on the GPU is causal by perturbation") {
  // Positions around 16, 32 and 64: the boundaries of the query and key tiles of the attention
  // kernels, whatever their size among these.
  // Head sizes 8 (simple kernels) and 32 (tensor-core float kernels, 64-row tiles).
  for (std::int64_t heads : {4, 1}) {
    LmSpec spec{.vocab = 64, .dim = 32, .heads = heads, .layers = 2, .context = 72};
    mm_causality(spec, 70, {0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 69}, 9);
  }
}

TEST_CASE("cuda models: Hourglass on the GPU is causal by perturbation, shorten avg, every upsampling") {
  mm_causality_hourglass_pair<hier::AvgPool, hier::Repeat>();
  mm_causality_hourglass_pair<hier::AvgPool, hier::LinearUp>();
  mm_causality_hourglass_pair<hier::AvgPool, hier::AttentionUp>();
}
TEST_CASE("cuda models: Hourglass on the GPU is causal by perturbation, shorten linear, every upsampling") {
  mm_causality_hourglass_pair<hier::LinearPool, hier::Repeat>();
  mm_causality_hourglass_pair<hier::LinearPool, hier::LinearUp>();
  mm_causality_hourglass_pair<hier::LinearPool, hier::AttentionUp>();
}
TEST_CASE("cuda models: Hourglass on the GPU is causal by perturbation, shorten attention, every upsampling") {
  mm_causality_hourglass_pair<hier::AttentionPool, hier::Repeat>();
  mm_causality_hourglass_pair<hier::AttentionPool, hier::LinearUp>();
  mm_causality_hourglass_pair<hier::AttentionPool, hier::AttentionUp>();
  // Head size 32 (tensor-core float kernels), 48 positions over two levels.
  mm_causality(HgSpec<hier::AttentionPool, hier::AttentionUp>{"1@1 1@2 1@6 1@2 1@1", 64, 32, 1, 48, 64}, 47,
               {0, 1, 5, 6, 11, 12, 23, 24, 29, 30, 35, 36, 41, 42, 46}, 55);
  // ... and with no full-rate layers (exact dependent rows, k = 4).
  mm_causality(HgSpec<hier::AttentionPool, hier::AttentionUp>{"0@1 1@4 0@1", 64, 32, 1, 48, 64}, 47,
               {0, 1, 3, 4, 5, 30, 31, 32, 33, 45, 46}, 59, 4);
}

// =============================================================================================
// Cached generation on the GPU equals the full GPU forward

TEST_CASE("cuda models: TransformerLm cached logits on the GPU equal the full forward") {
  for (auto pk : {nn::PositionKind::kLearned, nn::PositionKind::kSinusoidal}) {
    LmSpec spec{.vocab = 64, .dim = 16, .heads = 2, .layers = 3, .context = 20, .position = pk, .tied = false};
    double rel = mm_cached_vs_full<double>(spec, 20, 7, 2);
    INFO(spec.name(), ", double: worst relative difference ", rel);
    CHECK(rel <= kCachedRelDouble);
  }
  LmSpec spec{.vocab = 64, .dim = 32, .heads = 4, .layers = 2, .context = 40};
  double rel = mm_cached_vs_full<float>(spec, 37, 9, 3);
  INFO(spec.name(), ", float: worst relative difference ", rel);
  CHECK(rel <= kCachedRelFloat);
}

TEST_CASE("cuda models: Hourglass cached logits on the GPU equal the full forward, every policy pair, nested levels") {
  mm_cached_hourglass<hier::AvgPool, hier::Repeat>("1@1 1@3 1@1", 13);
  mm_cached_hourglass<hier::LinearPool, hier::LinearUp>("1@1 1@3 1@1", 13);
  mm_cached_hourglass<hier::AttentionPool, hier::AttentionUp>("1@1 1@3 1@1", 13);
  mm_cached_hourglass<hier::AvgPool, hier::AttentionUp>("1@1 1@2 2@4 1@2 1@1", 17);
  mm_cached_hourglass<hier::AttentionPool, hier::Repeat>("1@1 1@2 2@4 1@2 1@1", 17);
  mm_cached_hourglass<hier::LinearPool, hier::AttentionUp>("2@1 1@2 1@6 1@2 0@1", 19);
  mm_cached_hourglass<hier::AttentionPool, hier::LinearUp>("0@1 1@2 1@4 1@2 1@1", 16);
  mm_cached_hourglass<hier::LinearPool, hier::Repeat>("1@1 1@2 1@4 1@2 1@1", 14);
  mm_cached_hourglass<hier::AvgPool, hier::LinearUp>("1@1 1@4 1@1", 15);
  // float, the production precision
  HgSpec<hier::AttentionPool, hier::AttentionUp> spec{"1@1 1@2 1@6 1@2 1@1"};
  double rel = mm_cached_vs_full<float>(spec, 22, 5, 62);
  INFO(spec.name(), ", float: worst relative difference ", rel);
  CHECK(rel <= kCachedRelFloat);
}

// =============================================================================================
// HRED / HAED (models::Hierarchical) on the GPU: the same four checks

TEST_CASE("cuda models: HRED and HAED on the GPU match the CPU (GRU, LSTM, both decoders)") {
  mm_compare_model(HredSpec{}, 2, 36, 71);
  HredSpec lstm;
  lstm.cell = nn::RnnKind::kLstm;
  mm_compare_model(lstm, 2, 36, 72);
  mm_compare_model(HaedRnnSpec{}, 2, 36, 73);
  mm_compare_model(HaedTransformerSpec{}, 2, 36, 74);
  // Head size 32: the tensor-core float attention kernels in the backbone and decoder.
  HaedTransformerSpec wide;
  wide.dim = 64;
  mm_compare_model(wide, 2, 44, 75);
}

TEST_CASE("cuda models: gradcheck of tiny HRED and HAED on the GPU in double") {
  HredSpec hred;
  hred.vocab = 11;
  hred.dim = 8;
  hred.layers = 1;
  hred.context = 8;
  mm_gradcheck_model(hred, 2, 8, 81, 5);
  HaedTransformerSpec haed;
  haed.vocab = 11;
  haed.dim = 8;
  haed.layers = 1;
  haed.context = 8;
  mm_gradcheck_model(haed, 2, 8, 82, 5);
}

TEST_CASE("cuda models: HRED and HAED on the GPU are causal by perturbation (rows >= p change, rows < p keep bits)") {
  std::vector<std::int64_t> const positions{0, 1, 3, 4, 5, 15, 16, 17, 30, 31};
  mm_causality(HredSpec{}, 32, positions, 91);
  mm_causality(HaedRnnSpec{}, 32, positions, 92);
  mm_causality(HaedTransformerSpec{}, 32, positions, 93);
}

TEST_CASE("cuda models: HRED and HAED cached logits on the GPU equal the full forward") {
  // Prefill 7: a partial segment, then byte by byte across segment boundaries.
  for (double rel : {mm_cached_vs_full<double>(HredSpec{}, 20, 7, 95), mm_cached_vs_full<double>(HaedRnnSpec{}, 20, 7, 96),
                     mm_cached_vs_full<double>(HaedTransformerSpec{}, 20, 7, 97)}) {
    INFO("worst relative difference ", rel);
    CHECK(rel <= kCachedRelDouble);
  }
  double rel = mm_cached_vs_full<float>(HaedTransformerSpec{}, 24, 5, 98);
  INFO("HAED (Transformer decoder), float: worst relative difference ", rel);
  CHECK(rel <= kCachedRelFloat);
}

// Variable segments (hier::Delimited, ended by id 3 or after 6 bytes): the layout is computed on the
// host and the padded grid is gathered with the embedding ops, so the GPU runs the same composition.
// (Causality is checked on the CPU, test/models/test_hierarchical_delimited.cpp: a change that moves
// a boundary changes the grid's shape, and another GEMM shape may round the earlier rows otherwise.)
TEST_CASE("cuda models: delimited HRED and HAED on the GPU match the CPU, pass gradcheck, and cache == full") {
  mm_compare_model(HredDelimitedSpec{.vocab = 12}, 2, 30, 111);
  mm_compare_model(HaedDelimitedSpec{.vocab = 12}, 2, 30, 112);
  HredDelimitedSpec hred{.vocab = 11, .dim = 8, .layers = 1, .context = 12};
  mm_gradcheck_model(hred, 2, 12, 113, 5);
  HaedDelimitedSpec haed{.vocab = 11, .dim = 8, .layers = 1, .context = 12};
  mm_gradcheck_model(haed, 2, 12, 114, 5);
  for (double rel : {mm_cached_vs_full<double>(HredDelimitedSpec{.vocab = 12}, 20, 7, 115),
                     mm_cached_vs_full<double>(HaedDelimitedSpec{.vocab = 12}, 20, 7, 116)}) {
    INFO("worst relative difference ", rel);
    CHECK(rel <= kCachedRelDouble);
  }
}

// =============================================================================================
// Training on the GPU

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

// =============================================================================================
// Checkpoints between CPU and GPU

TEST_CASE("cuda models: checkpoints move between CPU and GPU with identical parameters and optimizer state") {
  using LmG = models::TransformerLm<Gpu, float>;
  using LmC = models::TransformerLm<cpu, float>;
  LmSpec spec{.vocab = 256, .dim = 32, .heads = 4, .layers = 2, .context = 32, .tied = false};
  MmTempDir tmp;
  cpu::Context hctx;
  GpuCtx dctx;
  train::AdamW<cpu, float>::Config ocfg{.lr = 1e-2, .weight_decay = 0.1};

  SUBCASE("saved on the CPU, loaded on the GPU") {
    auto hm = spec.make<cpu, float>();
    nn::ParamStore<cpu, float> hps(*hm);
    hps.init(hctx, 3);
    train::AdamW<cpu, float> hopt(hctx, hps, ocfg);
    auto g = mm_fake_grads(hps, 0.5);
    std::copy(g.begin(), g.end(), hps.grads().data);
    hopt.step(hctx);
    std::string path = tmp.file("from_cpu.safetensors");
    io::save_checkpoint(hctx, path, io::CheckpointInfo{LmC::kKind, hm->config_json(), "{}"}, hps, {{"optim", hopt}});

    auto dm = spec.make<Gpu, float>();
    nn::ParamStore<Gpu, float> dps(dctx, *dm);
    dps.init(dctx, 99);  // different: everything must come from the file
    train::AdamW<Gpu, float> dopt(dctx, dps, {.lr = 1e-2, .weight_decay = 0.1});
    io::load_checkpoint(dctx, path, LmG::kKind, dm->config_json(), dps, {{"optim", dopt}});
    CHECK(dopt.steps() == hopt.steps());
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dps.values()), mm_to_host<cpu, float>(hctx, hps.values())));
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dopt.first_moment()),
                       mm_to_host<cpu, float>(hctx, hopt.first_moment())));
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dopt.second_moment()),
                       mm_to_host<cpu, float>(hctx, hopt.second_moment())));
    // Parameters only (no optimizer) work too.
    auto dm2 = spec.make<Gpu, float>();
    nn::ParamStore<Gpu, float> dps2(dctx, *dm2);
    io::load_checkpoint(dctx, path, LmG::kKind, dm2->config_json(), dps2);
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dps2.values()), mm_to_host<cpu, float>(hctx, hps.values())));
  }

  SUBCASE("saved on the GPU, loaded on the CPU") {
    auto dm = spec.make<Gpu, float>();
    nn::ParamStore<Gpu, float> dps(dctx, *dm);
    dps.init(dctx, 5);
    train::AdamW<Gpu, float> dopt(dctx, dps, {.lr = 1e-2, .weight_decay = 0.1});
    auto twin = spec.make<cpu, float>();  // a host twin gives the same flat layout
    nn::ParamStore<cpu, float> layout(*twin);
    for (double phase : {0.25, 1.5}) {
      auto g = mm_fake_grads(layout, phase);
      Gpu::upload<float>(dctx, dps.grads().data, g.data(), g.size());
      dopt.step(dctx);
    }
    std::string path = tmp.file("from_gpu.safetensors");
    io::save_checkpoint(dctx, path, io::CheckpointInfo{LmG::kKind, dm->config_json(), "{}"}, dps, {{"optim", dopt}});

    auto hm = spec.make<cpu, float>();
    nn::ParamStore<cpu, float> hps(*hm);
    hps.init(hctx, 77);
    train::AdamW<cpu, float> hopt(hctx, hps, ocfg);
    io::load_checkpoint(hctx, path, LmC::kKind, hm->config_json(), hps, {{"optim", hopt}});
    CHECK(hopt.steps() == 2);
    CHECK(mm_same_bits(mm_to_host<cpu, float>(hctx, hps.values()), mm_to_host<Gpu, float>(dctx, dps.values())));
    CHECK(mm_same_bits(mm_to_host<cpu, float>(hctx, hopt.first_moment()),
                       mm_to_host<Gpu, float>(dctx, dopt.first_moment())));
    CHECK(mm_same_bits(mm_to_host<cpu, float>(hctx, hopt.second_moment()),
                       mm_to_host<Gpu, float>(dctx, dopt.second_moment())));
  }
}

// =============================================================================================
// generate() on the GPU

TEST_CASE("cuda models: generate() on the GPU returns the requested bytes, deterministically, as the CPU does") {
  LmSpec spec{.vocab = 256, .dim = 32, .heads = 4, .layers = 2, .context = 32};
  GpuCtx dctx;
  cpu::Context hctx;
  auto dm = spec.make<Gpu, float>();
  nn::ParamStore<Gpu, float> dps(dctx, *dm);
  dps.init(dctx, 1);
  auto hm = spec.make<cpu, float>();
  nn::ParamStore<cpu, float> hps(*hm);
  hps.init(hctx, 1);
  models::GenerateConfig g;
  g.max_bytes = 80;  // longer than the context: the cache slides
  g.sampler.seed = 3;
  std::string a = models::generate<Gpu, float>(dctx, *dm, "hello", g);
  CHECK(a.size() == 80);
  CHECK(models::generate<Gpu, float>(dctx, *dm, "hello", g) == a);
  // The CPU draws the same bytes: sampling inverts the CDF with one uniform per byte, and the logits
  // agree to ~1e-6, so a different byte would need a uniform within ~1e-6 of a CDF boundary (a
  // chance of ~1e-4 over 80 bytes).
  CHECK(models::generate<cpu, float>(hctx, *hm, "hello", g) == a);
  g.sampler.temperature = 0;  // greedy, with a prompt longer than the context
  CHECK(models::generate<Gpu, float>(dctx, *dm, std::string(50, 'x'), g).size() == 80);

  HgSpec<hier::AttentionPool, hier::AttentionUp> hg{"1@1 1@2 1@4 1@2 1@1", 256, 32, 4, 24, 64};
  auto dh = hg.make<Gpu, float>();
  nn::ParamStore<Gpu, float> dhps(dctx, *dh);
  dhps.init(dctx, 2);
  g.sampler.temperature = 1;
  g.max_bytes = 60;  // also longer than the context of 24
  std::string b = models::generate<Gpu, float>(dctx, *dh, "abc", g);
  CHECK(b.size() == 60);
  CHECK(models::generate<Gpu, float>(dctx, *dh, "abc", g) == b);
}
