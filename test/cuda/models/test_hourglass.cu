// SPDX-License-Identifier: MIT
// CUDA models/hourglass.hpp: every Hourglass shorten x upsample pair on the GPU against the CPU, causal by
// perturbation, and with cached logits equal to the full forward (one and two levels).
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/select_pool.hpp"
#include "hseq/models/hourglass.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

namespace {

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

/// An Hourglass over data-dependent segments (issue 19): select pooling, repeat upsampling, ids
/// over 128 bytes (so the rules find letters and spacelike bytes); the plans are worst cases.
struct RuleHgSpec : HgSpec<hier::Select, hier::Repeat> {
  static constexpr bool kExactPlan = false;
  explicit RuleHgSpec(char const* h) : HgSpec<hier::Select, hier::Repeat>{h, 128} {}
};

/// The segment mean (avg pooling over rule levels): a batched GEMM with a host-built pooling matrix.
struct MeanHgSpec : HgSpec<hier::AvgPool, hier::Repeat> {
  static constexpr bool kExactPlan = false;
  explicit MeanHgSpec(char const* h) : HgSpec<hier::AvgPool, hier::Repeat>{h, 128} {}
};

/// Position-indexed (linear) upsampling over rule levels (AU-Net): a GEMM per segment and a gather
/// of the offsets' slices, the offsets computed on the host.
struct LinearRuleHgSpec : HgSpec<hier::Select, hier::LinearUp> {
  static constexpr bool kExactPlan = false;
  explicit LinearRuleHgSpec(char const* h) : HgSpec<hier::Select, hier::LinearUp>{h, 128} {}
};

/// Attention pooling over each segment's bytes and cross-attention unpooling over rule levels: the
/// attention core's materialising path under a host-built additive bias (hier/segment_bias.hpp).
struct AttnRuleHgSpec : HgSpec<hier::AttentionPool, hier::AttentionUpLinear> {
  static constexpr bool kExactPlan = false;
  explicit AttnRuleHgSpec(char const* h) : HgSpec<hier::AttentionPool, hier::AttentionUpLinear>{h, 128} {}
};

/// A rule-level spec's cached generation (context 24, 21 tokens, batch 3) against its full forward.
template <class Spec>
void rule_cached(Spec spec, std::uint64_t seed, char const* what) {
  spec.context = 24;
  double rel = mm_cached_vs_full<double>(spec, 21, 3, seed);
  INFO(spec.name(), ", ", what, ": worst |cached - full| / max(1, max |logit|) = ", rel);
  CHECK(rel <= kCachedRelDouble);
}

/// What every pooling / unpooling pair over rule levels passes against the CPU: loss and every
/// gradient over one spacelike level and over two nested levels, causality, cached generation
/// (seeds seed .. seed + 3).
template <class Spec>
void rule_policy_checks(std::uint64_t seed, char const* what) {
  mm_compare_model(Spec{"1@1 1@space/6 1@1"}, 2, 22, seed);
  mm_compare_model(Spec{"1@1 1@space/5 1@fixed:2 1@space/5 1@1"}, 2, 31, seed + 1);
  mm_causality(Spec{"1@1 1@space/6 1@1"}, 24, {0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 20, 21, 23}, seed + 2);
  rule_cached(Spec{"1@1 1@space 1@1"}, seed + 3, what);
}

/// An Hourglass whose level 0 segments by a frozen byte LM's entropy (BLT): the LM's weights are
/// the randomised ones of its store (same seed on both backends); the threshold is in nats.
struct EntropyHgSpec : RuleHgSpec {
  explicit EntropyHgSpec(char const* h) : RuleHgSpec(h) {}
  template <class B, class T>
  auto make() const {
    using M = models::Hourglass<B, T, hier::DynamicHierarchy, hier::Select, hier::Repeat>;
    typename M::Config c{.vocab = vocab, .dim = dim, .heads = heads, .context = context, .mlp_hidden = mlp_hidden,
                         .hierarchy = HierarchySpec::parse(hierarchy)};
    c.entropy_lm = typename M::EntropyLm::Config{.vocab = vocab, .dim = 16, .heads = 2, .layers = 1, .context = context};
    return std::make_unique<M>(c);
  }
};

/// Router levels with H-Net's EMA de-chunking (Config::dechunk "ema"): the smoother is host-built
/// matrices and strided-batched GEMMs.
struct EmaHgSpec : RuleHgSpec {
  explicit EmaHgSpec(char const* h) : RuleHgSpec(h) {}
  template <class B, class T>
  auto make() const {
    using M = models::Hourglass<B, T, hier::DynamicHierarchy, hier::Select, hier::Repeat>;
    typename M::Config c{.vocab = vocab, .dim = dim, .heads = heads, .context = context, .mlp_hidden = mlp_hidden,
                         .hierarchy = HierarchySpec::parse(hierarchy)};
    c.dechunk = "ema";
    return std::make_unique<M>(c);
  }
};

}  // namespace

TEST_CASE("cuda models: Hourglass with entropy boundaries (a frozen byte LM) matches the CPU, causal, cached") {
  // Random LMs over 128 ids predict with entropies near log 128 = 4.85 nats: the rising rule splits them.
  mm_compare_model(EntropyHgSpec{"1@1 1@entropy_rise:0 1@1"}, 2, 22, 81);
  mm_causality(EntropyHgSpec{"1@1 1@entropy_rise:0/6 1@1"}, 24, {0, 1, 3, 4, 5, 7, 8, 13, 20, 23}, 82);
  rule_cached(EntropyHgSpec{"1@1 1@entropy_rise:0 1@1"}, 83, "entropy");
}

TEST_CASE("cuda models: Hourglass with the segment mean over rule levels matches the CPU, causal, cached") {
  rule_policy_checks<MeanHgSpec>(101, "mean");
}

TEST_CASE("cuda models: Hourglass with learned routers (H-Net) matches the CPU, causal, cached") {
  // Loss and every gradient (the STE's dot products are strided-batched GEMMs, the cosines run on
  // the host), causality, and per-row cached steps; one and two router levels.
  mm_compare_model(RuleHgSpec{"1@1 1@router:3 1@1"}, 2, 22, 91);
  mm_compare_model(RuleHgSpec{"1@1 1@router:3 1@router:2 1@router:3 1@1"}, 2, 26, 92);
  mm_causality(RuleHgSpec{"1@1 1@router:3/6 1@1"}, 24, {0, 1, 3, 4, 5, 7, 8, 13, 20, 23}, 93);
  rule_cached(RuleHgSpec{"1@1 1@router:3 1@1"}, 94, "router");
}

TEST_CASE("cuda models: Hourglass with routers and EMA de-chunking matches the CPU, causal, cached") {
  mm_compare_model(EmaHgSpec{"1@1 1@router:3 1@1"}, 2, 22, 111);
  mm_compare_model(EmaHgSpec{"1@1 1@router:3 1@router:2 1@router:3 1@1"}, 2, 26, 112);
  mm_causality(EmaHgSpec{"1@1 1@router:3/6 1@1"}, 24, {0, 1, 3, 4, 5, 7, 8, 13, 20, 23}, 113);
  rule_cached(EmaHgSpec{"1@1 1@router:3 1@1"}, 114, "router + EMA");
}

TEST_CASE("cuda models: Hourglass with position-indexed (linear) upsampling over rule levels matches the CPU") {
  rule_policy_checks<LinearRuleHgSpec>(131, "linear");
}

TEST_CASE("cuda models: Hourglass with attention pooling and unpooling over rule levels matches the CPU, causal, cached") {
  rule_policy_checks<AttnRuleHgSpec>(141, "attention");
}

TEST_CASE("cuda models: Hourglass with an MLP boundary predictor (mlp:N) matches the CPU, causal, cached") {
  mm_compare_model(RuleHgSpec{"1@1 1@mlp:3 1@1"}, 2, 22, 121);
  mm_compare_model(EmaHgSpec{"1@1 1@mlp:3 1@router:2 1@mlp:3 1@1"}, 2, 26, 122);
  mm_causality(RuleHgSpec{"1@1 1@mlp:3/6 1@1"}, 24, {0, 1, 3, 4, 5, 7, 8, 13, 20, 23}, 123);
  rule_cached(RuleHgSpec{"1@1 1@mlp:3 1@1"}, 124, "mlp");
}

TEST_CASE("cuda models: Hourglass over data-dependent segments (space, word pairs) matches the CPU, causal, cached") {
  mm_compare_model(RuleHgSpec{"1@1 1@space 1@1"}, 2, 22, 71);
  mm_compare_model(RuleHgSpec{"1@1 1@space/5 1@fixed:2 1@space/5 1@1"}, 2, 31, 72);
  mm_compare_model(RuleHgSpec{"1@1 1@fixed:4 1@1"}, 2, 24, 73);
  mm_causality(RuleHgSpec{"1@1 1@space 1@1"}, 24, {0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 20, 21, 23}, 74);
  mm_causality(RuleHgSpec{"1@1 1@word 1@fixed:2 1@word 1@1"}, 24, {0, 1, 2, 5, 6, 7, 11, 12, 13, 17, 18, 19, 23}, 75);
  for (char const* h : {"1@1 1@space 1@1", "1@1 1@space/5 2@fixed:2 1@space/5 1@1", "0@1 2@word/4 0@1"}) {
    RuleHgSpec spec{h};
    spec.context = 24;
    double rel = mm_cached_vs_full<double>(spec, 21, 3, 76);
    INFO(spec.name(), ": worst |cached - full| / max(1, max |logit|) = ", rel);
    CHECK(rel <= kCachedRelDouble);
  }
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

// Attention resampling with linear queries (AttentionPoolLinear / AttentionUpLinear), the options
// (untied head, no closing norms) and relative positions (nn::RelativeCausalBlock).
TEST_CASE("cuda models: Hourglass linear-query attention resampling, options and relative positions match the CPU") {
  mm_compare_hourglass_pair<hier::AttentionPoolLinear, hier::AttentionUpLinear>();
  mm_compare_hourglass_pair<hier::AttentionPool, hier::AttentionUpLinear>();
  mm_compare_hourglass_pair<hier::AttentionPoolLinear, hier::Repeat>();
  HgSpec<hier::AttentionPool, hier::AttentionUp> untied{"1@1 1@2 1@6 1@2 1@1"}, v1{"1@1 1@2 1@6 1@2 1@1"};
  untied.tied = false;
  v1.closing_norm = false;
  mm_compare_model(untied, 2, 19, 44);
  mm_compare_model(v1, 2, 19, 45);
  mm_compare_model(HgSpec<hier::AttentionPool, hier::AttentionUpLinear, RelativePositions>{"1@1 1@2 1@6 1@2 1@1"},
                   2, 19, 46);
}
TEST_CASE("cuda models: Hourglass linear-query attention resampling and relative positions, causal and cached") {
  mm_causality_hourglass_pair<hier::AttentionPoolLinear, hier::AttentionUpLinear>();
  mm_causality(HgSpec<hier::AttentionPool, hier::AttentionUp, RelativePositions>{"1@1 1@2 1@6 1@2 1@1"}, 24,
               {0, 1, 2, 5, 6, 7, 11, 12, 13, 17, 18, 19, 23}, 63);
  mm_cached_hourglass<hier::AttentionPoolLinear, hier::AttentionUpLinear>("1@1 1@2 2@4 1@2 1@1", 17);
  HgSpec<hier::AttentionPool, hier::AttentionUpLinear, RelativePositions> rel{"1@1 1@2 1@6 1@2 1@1", 24, 8, 2,
                                                                                   24, 8};
  double r = mm_cached_vs_full<double>(rel, 19, 3, 64);
  INFO(rel.name(), ": worst |cached - full| / max(1, max |logit|) = ", r);
  CHECK(r <= kCachedRelDouble);
}

}  // namespace HSEQ_TEST_UNIT
