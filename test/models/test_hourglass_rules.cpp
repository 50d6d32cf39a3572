// SPDX-License-Identifier: MIT
// The Hourglass over data-dependent segments (issue 19): levels that segment by hier::ByteRule
// ("space", "word", "fixed:K"), pooled by select and unpooled by repeat.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/select_pool.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/nn/relative_causal_block.hpp"
#include "support/cached_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using hier::HierarchySpec;

namespace {

template <class T>
using RuleHg = models::Hourglass<cpu, T, hier::DynamicHierarchy, hier::Select, hier::Repeat>;

constexpr std::int64_t kVocab = 128;  // ASCII: the rules read bytes

/// Ids [rows, len] from equally long strings.
Tensor<std::int32_t, cpu> text_ids(std::vector<std::string> const& rows) {
  std::int64_t len = std::int64_t(rows.front().size());
  Tensor<std::int32_t, cpu> t(Shape{std::int64_t(rows.size()), len});
  for (std::size_t b = 0; b < rows.size(); ++b) {
    REQUIRE(std::int64_t(rows[b].size()) == len);
    for (std::int64_t i = 0; i < len; ++i) t.data()[std::int64_t(b) * len + i] = std::int32_t(rows[b][std::size_t(i)]);
  }
  return t;
}

template <class T>
typename RuleHg<T>::Config config(char const* hierarchy, std::int64_t context = 96) {
  return {.vocab = kVocab, .dim = 8, .heads = 2, .context = context, .mlp_hidden = 8,
          .hierarchy = HierarchySpec::parse(hierarchy)};
}

/// Forward logits [B, t, V] of ids (no targets), as a vector; `segments` gets level 0's count per row.
/// Batch-invariant GEMMs (cpu::Context::set_batch_invariant): the data-dependent boundaries change
/// the GEMM shapes, and an optimized BLAS may round a row differently in another shape (OpenBLAS's
/// Zen kernels do), which would move earlier logits by an ulp with no information flowing.
template <class M, class T>
std::vector<T> logits_of(M const& m, Tensor<std::int32_t, cpu> const& ids, std::vector<std::int32_t>* emits = nullptr,
                         hier::EmitLayout* layout = nullptr) {
  cpu::Context ctx;
  ctx.set_batch_invariant(true);
  std::int64_t bsz = ids.shape()[0], t = ids.shape()[1];
  Workspace<cpu> ws(m.forward_workspace(bsz, t));
  typename M::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  CHECK(a.used() <= m.forward_workspace(bsz, t));
  if (emits) *emits = tr.levels[0].layout.emit;
  if (layout) *layout = tr.levels[0].layout;
  return std::vector<T>(tr.logits.begin(), tr.logits.end());
}

std::string const kText0 = "In the beginning God created the heaven and the earth. And the earth was";
std::string const kText1 = "without form, and void; and darkness was upon the face of the deep. And ";
std::string const kText2 = "the Spirit of God moved upon the face of the waters.  And God said, Let t";

/// Finite-difference check (double) of a rule model's loss over two rows of text of length t,
/// with workspace plans that hold; `zero` names a parameter pattern whose gradient is zero by
/// construction (with its reason).
/// Router levels: the check differentiates the straight-through estimator's surrogate at this
/// point (LevelTrace::ste_reference set to the point's confidences).
template <class M>
void gradcheck_rules(M const& m, nn::ParamStore<cpu, double>& ps, std::int64_t t, std::int64_t per_tensor,
                     std::string const& zero = "", std::string const& why = "") {
  cpu::Context ctx;
  auto ids = text_ids({kText0.substr(0, std::size_t(t)), kText2.substr(0, std::size_t(t))});
  auto targets = text_ids({kText0.substr(1, std::size_t(t)), kText2.substr(1, std::size_t(t))});
  std::size_t plan = m.forward_workspace(2, t) + m.backward_workspace(2, t);
  Workspace<cpu> ws(plan);
  typename M::Trace tr;
  if (m.has_router()) {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    for (auto& lt : tr.levels) lt.ste_reference = lt.confidence;  // (empty for levels without a router)
  }
  auto loss = [&] {
    auto a = ws.arena();
    return m.forward(ctx, ids.cview(), targets.cview(), a, tr);
  };
  auto grads = [&] {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    CHECK(a.used() <= m.forward_workspace(2, t));
    m.backward(ctx, tr, a);
    CHECK(a.high_water() <= plan);
  };
  test::GradcheckOptions opt;
  opt.max_per_tensor = per_tensor;
  test::GradCheck check(ps, opt);
  if (!zero.empty()) check.allow_zero(zero, why);
  check.run(loss, grads);
}

/// Cached generation of ids [B, t] equals the full forward's logits [B, t, V] (1e-11) for each
/// prefill, and again after `reset_cache`.
template <class M>
void check_cached(M const& m, Tensor<std::int32_t, cpu> const& ids, View<double const, HostSpace> full, std::int64_t t,
                  std::initializer_list<std::int64_t> prefills) {
  cpu::Context ctx;
  std::int64_t const bsz = ids.shape()[0];
  for (std::int64_t prefill : prefills) {
    CAPTURE(prefill);
    auto cache = m.make_cache(bsz, t);
    std::size_t plan = m.step_workspace(bsz, 1, t);
    Workspace<cpu> sws(plan);
    for (int round = 0; round < 2; ++round) {  // (round 1: a reset cache generates the same again)
      CHECK(test::cached_vs_full_worst(ctx, m, cache, ids, full, t, prefill, sws,
                                       [&](std::int64_t, std::int64_t) { return plan; }) < 1e-11);
      m.reset_cache(cache);
    }
  }
}

/// Causality by perturbation: for each p, token p of every row becomes `change(b, p, old)`. Every
/// logit before p stays bit-identical, and so do level 0's boundaries before p; with `flows`, some
/// logit at or after p changes in every row. Returns how many changes moved level 0's boundaries.
template <class M, class F>
int check_causal(M const& m, std::vector<std::string> const& rows, std::vector<std::int64_t> const& positions,
                 bool flows, F change) {
  cpu::Context ctx;
  ctx.set_batch_invariant(true);  // (see logits_of)
  auto ids = text_ids(rows);
  std::int64_t const bsz = ids.shape()[0], t = ids.shape()[1];
  Workspace<cpu> ws(m.forward_workspace(bsz, t));
  typename M::Trace base;
  {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, base);
  }
  auto const lay = base.levels[0].layout;
  std::vector<double> const logits(base.logits.begin(), base.logits.end());
  int moved = 0;
  for (std::int64_t p : positions) {
    CAPTURE(p);
    auto changed = text_ids(rows);
    for (std::int64_t b = 0; b < bsz; ++b) changed.data()[b * t + p] = change(b, p, changed.data()[b * t + p]);
    typename M::Trace tc;
    auto a = ws.arena();
    m.forward(ctx, changed.cview(), {}, a, tc);
    moved += tc.levels[0].layout.emit != lay.emit;
    for (std::int64_t b = 0; b < bsz; ++b) {
      CAPTURE(b);
      bool before = true, after = false;
      for (std::int64_t i = 0; i < t * kVocab; ++i) {
        bool same = tc.logits.data[b * t * kVocab + i] == logits[std::size_t(b * t * kVocab + i)];
        if (i < p * kVocab) before &= same;
        else after |= !same;
      }
      CHECK(before);
      if (flows) CHECK(after);
      auto const& l2 = tc.levels[0].layout;
      for (std::int64_t j = 0; j < l2.count[std::size_t(b)] && l2.emit_at(b, j) < p; ++j) {
        REQUIRE(j < lay.count[std::size_t(b)]);
        CHECK(l2.emit_at(b, j) == lay.emit_at(b, j));
      }
    }
  }
  return moved;
}

}  // namespace

/// A numeric hierarchy and its fixed:K twin through the data-dependent path, with the same
/// parameters: loss, logits and gradients bit for bit (float).
template <class M>
void check_fixed_equal(char const* fixed, char const* rules, std::int64_t t) {
  CAPTURE(std::string(fixed));
  cpu::Context ctx;
  typename M::Config ca{.vocab = kVocab, .dim = 8, .heads = 2, .context = 96, .mlp_hidden = 8,
                        .hierarchy = HierarchySpec::parse(fixed)};
  typename M::Config cb = ca;
  cb.hierarchy = HierarchySpec::parse(rules);
  M a(ca), b(cb);
  CHECK(a.hierarchy().total_factor() > 1);
  CHECK(b.hierarchy().total_factor() == 1);
  nn::ParamStore<cpu, float> pa(a), pb(b);
  REQUIRE(pa.count() == pb.count());
  pa.init(ctx, 3);
  test::randomize_params(pa, 3, 0.2);
  std::copy(pa.values().begin(), pa.values().end(), pb.values().begin());
  auto ids = text_ids({kText0.substr(0, std::size_t(t)), kText1.substr(0, std::size_t(t))});
  auto targets = text_ids({kText1.substr(1, std::size_t(t)), kText2.substr(1, std::size_t(t))});
  auto run = [&](M& m, nn::ParamStore<cpu, float>& ps) {
    Workspace<cpu> ws(m.forward_workspace(2, t) + m.backward_workspace(2, t));
    typename M::Trace tr;
    auto ar = ws.arena();
    ps.zero_grad(ctx);
    double loss = m.forward(ctx, ids.cview(), targets.cview(), ar, tr);
    std::vector<float> logits(tr.logits.begin(), tr.logits.end());
    m.backward(ctx, tr, ar);
    std::vector<float> grads(ps.grads().begin(), ps.grads().end());
    return std::tuple{loss, logits, grads};
  };
  auto [la, xa, ga] = run(a, pa);
  auto [lb, xb, gb] = run(b, pb);
  CHECK(la == lb);
  CHECK(xa == xb);
  CHECK(ga == gb);
}

TEST_CASE("hourglass rules: fixed:K through the data-dependent path equals the fixed level bit for bit") {
  check_fixed_equal<RuleHg<float>>("1@1 2@4 1@1", "1@1 2@fixed:4 1@1", 24);
  check_fixed_equal<RuleHg<float>>("1@1 1@2 1@6 1@2 1@1", "1@1 1@fixed:2 1@fixed:3 1@fixed:2 1@1", 24);  // (padded)
  check_fixed_equal<RuleHg<float>>("0@1 1@3 0@1", "1@fixed:3", 18);
}

TEST_CASE("hourglass rules: a perturbation that moves later boundaries leaves every earlier logit bit-identical") {
  cpu::Context ctx;
  for (char const* h : {"1@1 1@space 1@1", "0@1 1@space 0@1", "1@1 1@word 1@fixed:2 1@word 1@1", "1@1 1@space/3 1@1"}) {
    std::string const shape = h;
    CAPTURE(shape);
    RuleHg<float> m(config<float>(h));
    nn::ParamStore<cpu, float> ps(m);
    ps.init(ctx, 5);
    test::randomize_params(ps, 5, 0.2);
    std::int64_t const t = 40;
    std::string r0 = kText0.substr(0, t), r1 = kText1.substr(0, t);
    std::vector<std::int32_t> base_emits;
    hier::EmitLayout base_lay;
    auto base = logits_of<RuleHg<float>, float>(m, text_ids({r0, r1}), &base_emits, &base_lay);
    int moved_boundaries = 0;
    for (std::int64_t p = 0; p < t; ++p) {
      CAPTURE(p);
      std::string c0 = r0, c1 = r1;
      // Toggle a letter and a space: this adds or removes a boundary at p and shifts later segments.
      c0[std::size_t(p)] = c0[std::size_t(p)] == ' ' ? 'x' : ' ';
      c1[std::size_t(p)] = c1[std::size_t(p)] == ' ' ? 'q' : ' ';
      std::vector<std::int32_t> emits;
      hier::EmitLayout lay;
      auto out = logits_of<RuleHg<float>, float>(m, text_ids({c0, c1}), &emits, &lay);
      if (emits != base_emits) ++moved_boundaries;
      for (std::int64_t b = 0; b < 2; ++b) {
        CAPTURE(b);
        bool before = true, at_or_after = false, after = false;
        for (std::int64_t i = 0; i < t; ++i)
          for (std::int64_t c = 0; c < kVocab; ++c) {
            std::size_t k = std::size_t((b * t + i) * kVocab + c);
            if (i < p) before &= out[k] == base[k];
            if (i >= p) at_or_after |= out[k] != base[k];
            if (i > p) after |= out[k] != base[k];
          }
        CHECK(before);
        CHECK(at_or_after);
        // Information flows forward: through the full-rate layers, else through the short path,
        // which reads position p when p closes a segment (select) or when the boundaries move.
        auto row_emits = [&](hier::EmitLayout const& l) {
          return std::vector<std::int32_t>(l.emit.begin() + b * l.segments,
                                           l.emit.begin() + b * l.segments + l.count[std::size_t(b)]);
        };
        auto e0 = row_emits(base_lay), e1 = row_emits(lay);
        bool reads_p = std::count(e0.begin(), e0.end(), p) + std::count(e1.begin(), e1.end(), p) > 0;
        if (p + 1 < t && (m.hierarchy().pre > 0 || reads_p || e0 != e1)) CHECK(after);
        if (m.hierarchy().pre == 0 && m.hierarchy().post == 0 && !reads_p && e0 == e1) CHECK_FALSE(after);
      }
    }
    CHECK(moved_boundaries > t / 2);
  }
}

TEST_CASE("gradcheck: Hourglass with rule levels (space; word then word pairs)") {
  for (char const* h : {"1@1 1@space 1@1", "1@1 1@word 1@fixed:2 1@word 1@1", "0@1 1@space/4 0@1"}) {
    std::string const shape = h;
    CAPTURE(shape);
    RuleHg<double> m(config<double>(h));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 5, 0.3);
    gradcheck_rules(m, ps, 24, 16);
  }
}

TEST_CASE("hourglass rules: cached generation equals the full forward with rows emitting at different steps") {
  cpu::Context ctx;
  for (char const* h : {"1@1 1@space 1@1", "1@1 1@word 2@fixed:2 1@word 1@1", "0@1 2@space/5 0@1"}) {
    std::string const shape = h;
    CAPTURE(shape);
    RuleHg<double> m(config<double>(h));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 11, 0.3);
    std::int64_t const t = 40;
    auto ids = text_ids({kText0.substr(0, t), kText1.substr(0, t), kText2.substr(0, t)});
    Workspace<cpu> ws(m.forward_workspace(3, t));
    RuleHg<double>::Trace tr;
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, tr);
    // The rows' segments close at different positions (else the per-row stepping is not exercised).
    auto const& lay = tr.levels[0].layout;
    CHECK((lay.count[0] != lay.count[1] || lay.count[1] != lay.count[2] || lay.emit_at(0, 1) != lay.emit_at(1, 1)));
    check_cached(m, ids, tr.logits, t, {1, 5});
  }
}

TEST_CASE("hourglass rules: a row's logits do not depend on the batch it is in, and a prefix gives the prefix") {
  cpu::Context ctx;
  for (char const* h : {"1@1 1@space 1@1", "1@1 1@word 1@word:2 1@word 1@1"}) {
    std::string const shape = h;
    CAPTURE(shape);
    RuleHg<double> m(config<double>(h));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 7, 0.3);
    std::int64_t const t = 48;
    std::vector<std::string> rows{kText0.substr(0, t), kText1.substr(0, t), kText2.substr(0, t)};
    auto batch = logits_of<RuleHg<double>, double>(m, text_ids(rows));
    std::size_t row = std::size_t(t * kVocab);
    for (std::size_t b = 0; b < rows.size(); ++b) {
      CAPTURE(b);
      auto alone = logits_of<RuleHg<double>, double>(m, text_ids({rows[b]}));
      double worst = 0;
      for (std::size_t k = 0; k < row; ++k) worst = std::max(worst, std::abs(alone[k] - batch[b * row + k]));
      CHECK(worst == 0);  // batch-invariant GEMMs (logits_of): the same bits alone as in the batch
      for (std::int64_t n : {1, 7, 23}) {  // segmenting a prefix gives the prefix of the segmentation
        std::vector<std::int32_t> e_prefix, e_full;
        auto pre = logits_of<RuleHg<double>, double>(m, text_ids({rows[b].substr(0, std::size_t(n))}), &e_prefix);
        logits_of<RuleHg<double>, double>(m, text_ids({rows[b]}), &e_full);
        REQUIRE(e_prefix.size() <= e_full.size());
        CHECK(std::equal(e_prefix.begin(), e_prefix.end(), e_full.begin()));
        worst = 0;
        for (std::size_t k = 0; k < std::size_t(n * kVocab); ++k) worst = std::max(worst, std::abs(pre[k] - alone[k]));
        CHECK(worst == 0);
      }
    }
  }
}

TEST_CASE("hourglass rules: the segmentation is deterministic and the configuration round-trips") {
  RuleHg<float> m(config<float>("2@1 1@word/16 1@fixed:2 1@word/16 2@1"));
  auto c = RuleHg<float>::config_from_json(m.config_json());
  CHECK(c.hierarchy == m.hierarchy());
  CHECK(c.hierarchy.to_string() == "2@1 1@word/16 1@fixed:2 1@word/16 2@1");
  cpu::Context ctx;
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  auto ids = text_ids({kText0, kText1});
  std::vector<std::int32_t> e1, e2;
  auto l1 = logits_of<RuleHg<float>, float>(m, ids, &e1);
  auto l2 = logits_of<RuleHg<float>, float>(m, ids, &e2);
  CHECK(e1 == e2);
  CHECK(l1 == l2);
  // FLOPs count a rule level at its worst case (an upper bound): a word level may emit at every
  // position, so it counts as a level that does not shorten, more than a fixed factor 2 would.
  RuleHg<float> fixed(config<float>("2@1 1@2 1@4 1@2 2@1"));
  CHECK(m.flops(64).palm() > fixed.flops(64).palm());
}

TEST_CASE("hourglass rules: policies and blocks without a variable-length form are refused by name") {
  using Lin = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::LinearPool, hier::Repeat>;
  CHECK_THROWS_WITH_AS(Lin({.vocab = kVocab, .dim = 8, .heads = 2, .context = 32,
                            .hierarchy = HierarchySpec::parse("1@1 1@space 1@1")}),
                       doctest::Contains("shorten 'linear' / upsample 'repeat' have none"), Error);
  using Attn = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::AttentionPoolLinear, hier::AttentionUp>;
  CHECK_THROWS_WITH_AS(Attn({.vocab = kVocab, .dim = 8, .heads = 2, .context = 32,
                             .hierarchy = HierarchySpec::parse("1@1 1@space 1@1")}),
                       doctest::Contains("shorten 'attention_linear' / upsample 'attention' have none"), Error);
  using Rel = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::Select, hier::Repeat,
                                nn::RelativeCausalBlock<cpu, float>>;
  CHECK_THROWS_WITH_AS(Rel({.vocab = kVocab, .dim = 8, .heads = 2, .context = 32,
                            .hierarchy = HierarchySpec::parse("1@1 1@space 1@1")}),
                       doctest::Contains("relative-position"), Error);
  // The select/repeat pair still takes numeric levels.
  CHECK_NOTHROW(RuleHg<float>(config<float>("1@1 1@4 1@1")));
}

namespace {
/// An Hourglass whose level 0 segments by a frozen byte LM's next-byte entropy (BLT), the LM 1
/// layer of width 8 with weights spread enough (scale 0.8) that the entropies vary by position.
template <class T>
typename RuleHg<T>::Config entropy_config(std::string const& hierarchy) {
  auto c = config<T>(hierarchy.c_str());
  c.entropy_lm = typename RuleHg<T>::EntropyLm::Config{.vocab = kVocab, .dim = 8, .heads = 2, .layers = 1,
                                                        .context = 96, .mlp_hidden = 16};
  return c;
}
template <class T>
void randomize_entropy_model(nn::ParamStore<cpu, T>& ps) {
  test::randomize_params(ps, 9, 0.3);
  for (auto const& e : ps.entries())
    if (e.name.starts_with("entropy_lm."))
      for (auto& x : e.param->value) x *= T(8) / T(3);  // (0.8 in all)
}
/// The median H_t of a model's entropy LM over ids: a global threshold that splits them.
template <class M>
double median_entropy(M const& m, Tensor<std::int32_t, cpu> const& ids) {
  cpu::Context ctx;
  Workspace<cpu> ws(m.forward_workspace(ids.shape()[0], ids.shape()[1]));
  typename M::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  auto sc = tr.levels[0].scores;
  std::nth_element(sc.begin(), sc.begin() + std::ptrdiff_t(sc.size() / 2), sc.end());
  return sc[sc.size() / 2];
}
}  // namespace

TEST_CASE("hourglass rules: entropy (BLT) boundaries from a frozen byte LM: causal, cached, gradients, checkpoints") {
  cpu::Context ctx;
  std::int64_t const t = 40;
  auto ids = text_ids({kText0.substr(0, t), kText1.substr(0, t), kText2.substr(0, t)});
  // The global threshold: the median entropy of this LM over the text (so about half the positions
  // emit); the monotonic rule needs none.
  RuleHg<double> probe(entropy_config<double>("1@1 1@entropy_rise:0 1@1"));
  nn::ParamStore<cpu, double> probe_ps(probe);
  randomize_entropy_model(probe_ps);
  double theta = median_entropy(probe, ids);
  CAPTURE(theta);
  std::string const th = hier::ByteRule::shortest(theta);
  for (std::string const h : std::vector<std::string>{"1@1 1@entropy:" + th + " 1@1", "1@1 1@entropy_rise:0/6 1@1",
                                                      "0@1 1@entropy:" + th + "/5 1@fixed:2 1@entropy:" + th + "/5 0@1"}) {
    CAPTURE(h);
    RuleHg<double> m(entropy_config<double>(h));
    nn::ParamStore<cpu, double> ps(m);
    if (m.hierarchy().levels.size() == 1) {  // the probe's weights: the threshold is its median
      REQUIRE(ps.count() == probe_ps.count());
      std::copy(probe_ps.values().begin(), probe_ps.values().end(), ps.values().begin());
    } else {  // the probe's entropy LM (entropy_lm.*, the same names and shapes), the rest random
      randomize_entropy_model(ps);
      for (auto const& e : ps.entries())
        if (e.name.starts_with("entropy_lm.")) {
          auto& src = probe_ps.find(e.name).value;
          std::copy(src.begin(), src.end(), e.param->value.begin());
        }
    }
    // The LM's parameters are frozen and named entropy_lm.*.
    std::int64_t frozen = 0;
    for (auto const& e : ps.entries()) {
      CHECK(e.param->frozen == e.name.starts_with("entropy_lm."));
      frozen += e.param->frozen;
    }
    CHECK(frozen > 0);
    // Boundaries are data-dependent: rows differ and about half the positions emit (or the rise rule's share).
    Workspace<cpu> ws(m.forward_workspace(3, t));
    RuleHg<double>::Trace tr;
    {
      auto a = ws.arena();
      m.forward(ctx, ids.cview(), {}, a, tr);
    }
    auto const& lay = tr.levels[0].layout;
    CHECK(lay.count[0] > 3);
    CHECK(lay.count[0] < t - 3);
    // Cached generation (the entropy LM steps with its own cache) equals the full forward.
    check_cached(m, ids, tr.logits, t, {1, 4});
    // Causality: a change at p leaves every logit and boundary before p bit-identical.
    int moved = check_causal(m, {kText0.substr(0, t), kText1.substr(0, t), kText2.substr(0, t)},
                             {0, 1, 5, 12, 20, 33, 39}, /*flows=*/false,
                             [](std::int64_t b, std::int64_t p, std::int32_t) { return std::int32_t('A' + b + p % 7); });
    CHECK(moved > 0);
  }
  // Gradients (the entropy LM gets none: frozen, and the boundaries are not differentiable).
  {
    RuleHg<double> m(entropy_config<double>("1@1 1@entropy_rise:0 1@1"));
    nn::ParamStore<cpu, double> ps(m);
    randomize_entropy_model(ps);
    gradcheck_rules(m, ps, 20, 8, "param entropy_lm.*", "the frozen entropy LM: boundaries are not differentiable");
  }
}

TEST_CASE("hourglass rules: entropy configurations round-trip and are refused when incomplete") {
  RuleHg<float> m(entropy_config<float>("2@1 1@entropy:1.335442066192627/16 2@1"));
  auto c = RuleHg<float>::config_from_json(m.config_json());
  CHECK(c.hierarchy == m.hierarchy());
  REQUIRE(c.entropy_lm.has_value());
  CHECK(c.entropy_lm->layers == 1);
  CHECK(c.entropy_lm->dim == 8);
  CHECK(m.hierarchy().levels[0].rule->threshold == 1.335442066192627);
  CHECK(m.entropy_lm() != nullptr);
  // The frozen LM runs forward only: a third of its training FLOPs is added.
  RuleHg<float> plain(config<float>("2@1 1@space/16 2@1"));
  CHECK(m.flops(64).palm() > plain.flops(64).palm());
  CHECK_THROWS_WITH_AS(RuleHg<float>(config<float>("1@1 1@entropy:2 1@1")), doctest::Contains("no entropy LM"), Error);
  CHECK_THROWS_WITH_AS(RuleHg<float>(entropy_config<float>("1@1 1@space 1@1")),
                       doctest::Contains("no entropy rule but an entropy LM"), Error);
  auto bad_vocab = entropy_config<float>("1@1 1@entropy:2 1@1");
  bad_vocab.entropy_lm->vocab = 64;
  CHECK_THROWS_WITH_AS(RuleHg<float>{bad_vocab}, doctest::Contains("vocabulary 64"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("1@1 1@space 1@entropy:2 1@space 1@1"),
                       doctest::Contains("only the outermost level"), Error);
  // A sequence longer than the entropy LM's context is refused by name.
  auto short_lm = entropy_config<float>("1@1 1@entropy:2 1@1");
  short_lm.entropy_lm->context = 8;
  RuleHg<float> s(short_lm);
  nn::ParamStore<cpu, float> sps(s);
  cpu::Context ctx;
  auto ids = text_ids({kText0.substr(0, 12)});
  Workspace<cpu> ws(s.forward_workspace(1, 12));
  RuleHg<float>::Trace tr;
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(s.forward(ctx, ids.cview(), {}, a, tr), doctest::Contains("entropy LM's context 8"), Error);
}

/// MLP routers ("mlp:N") with small random weights decide alike almost everywhere (the biases
/// dominate the logit). Level by level, widen an MLP router's weights and set its output bias so
/// that the threshold lies midway between the two middle logits of `ids`' real positions t >= 1:
/// about half of them emit, and none within rounding of 1/2.
void centre_mlp_routers(RuleHg<double> const& m, nn::ParamStore<cpu, double>& ps, Tensor<std::int32_t, cpu> const& ids) {
  cpu::Context ctx;
  std::int64_t bsz = ids.shape()[0], t = ids.shape()[1];
  Workspace<cpu> ws(m.forward_workspace(bsz, t));
  for (std::size_t i = 0; i < m.hierarchy().levels.size(); ++i) {
    auto const& rule = m.hierarchy().levels[i].rule;
    if (!rule || rule->kind != hier::ByteRule::Kind::kMlp) continue;
    std::string const p = "levels." + std::to_string(i) + ".router.";
    for (char const* n : {"fc1.weight", "fc2.weight"})
      for (double& v : ps.find(p + n).value) v *= 3.0;
    for (double& v : ps.find(p + "fc1.bias").value) v = 0.0;
    RuleHg<double>::Trace tr;
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, tr);
    auto const& s = tr.levels[i].router.mlp;
    std::vector<double> z;
    for (std::int64_t b = 0; b < s.batch; ++b)
      for (std::int64_t q = 1; q < s.row_len[std::size_t(b)]; ++q) z.push_back(s.logits[std::size_t(b * s.len + q)]);
    REQUIRE(z.size() >= 2);
    std::sort(z.begin(), z.end());
    std::size_t k = z.size() / 2;
    ps.find(p + "fc2.bias").value.data[0] -= (z[k - 1] + z[k]) / 2;
  }
}

TEST_CASE("hourglass rules: a learned router (H-Net): causal, cached, batch-invariant, gradients via STE and ratio loss") {
  cpu::Context ctx;
  std::int64_t const t = 40;
  std::vector<std::string> rows{kText0.substr(0, t), kText1.substr(0, t), kText2.substr(0, t)};
  auto ids = text_ids(rows);
  for (char const* dechunk : {"none", "ema"})
  for (char const* h : {"1@1 1@router:3 1@1", "1@1 1@router:3 1@router:2 1@router:3 1@1", "0@1 1@router:4/6 0@1",
                        "1@1 1@mlp:3 1@1", "1@1 1@mlp:3 1@router:2 1@mlp:3 1@1"}) {
    std::string const shape = std::string(h) + " dechunk " + dechunk;
    CAPTURE(shape);
    auto cfg = config<double>(h);
    cfg.dechunk = dechunk;
    RuleHg<double> m(cfg);
    CHECK(m.has_router());
    nn::ParamStore<cpu, double> ps(m);
    ps.init(ctx, 3);
    bool const mlp = m.hierarchy().levels[0].rule->kind == hier::ByteRule::Kind::kMlp;
    if (mlp) {  // DTP's predictor: fc1 [d, d], fc2 [1, d]
      REQUIRE(ps.find("levels.0.router.fc1.weight").shape == Shape{8, 8});
      REQUIRE(ps.find("levels.0.router.fc2.weight").shape == Shape{1, 8});
    } else {
      for (auto const& e : ps.entries())  // W = I + A, A starts at zero
        if (e.name.find(".router.qk.") != std::string::npos)
          for (double v : e.param->value) CHECK(v == 0.0);
      REQUIRE(ps.find("levels.0.router.qk.weight").shape == Shape{16, 8});
    }
    test::randomize_params(ps, 13, 0.3);
    centre_mlp_routers(m, ps, ids);
    Workspace<cpu> ws(m.forward_workspace(3, t));
    RuleHg<double>::Trace tr;
    {
      auto a = ws.arena();
      m.forward(ctx, ids.cview(), {}, a, tr);
    }
    // Boundaries are data-dependent: some positions emit, not all, and the rows differ.
    auto const lay = tr.levels[0].layout;
    CHECK(lay.count[0] > 3);
    CHECK(lay.count[0] < t - 3);
    CHECK((lay.count[0] != lay.count[1] || lay.count[1] != lay.count[2]));
    for (std::int64_t b = 0; b < 3; ++b)
      for (std::int64_t tt = 1; tt < t; ++tt) {  // t emits exactly when p_t > 1/2 (or max_len forces it)
        bool emit = lay.emit_at(b, lay.segment_of(b, tt)) == tt;
        if (m.hierarchy().levels[0].rule->max_len == 0)
          CHECK(emit == (tr.levels[0].scores[std::size_t(b * t + tt)] > 0.5));
      }
    // Cached generation (each row's router keeps its q_{t-1}) equals the full forward.
    check_cached(m, ids, tr.logits, t, {1, 4});
    // Causality: a change at p leaves every logit and boundary before p bit-identical, and moves
    // later boundaries.
    int moved = check_causal(m, rows, {0, 1, 6, 13, 21, 30, 39}, /*flows=*/true,
                             [](std::int64_t b, std::int64_t p, std::int32_t) { return std::int32_t('A' + b + p % 7); });
    auto base = std::vector<double>(tr.logits.begin(), tr.logits.end());
    CHECK(moved > 0);
    // A row's logits and boundaries do not depend on the batch it is in.
    for (std::size_t b = 0; b < rows.size(); ++b) {
      std::vector<std::int32_t> e_alone;
      auto alone = logits_of<RuleHg<double>, double>(m, text_ids({rows[b]}), &e_alone);
      double worst = 0;
      for (std::size_t k = 0; k < std::size_t(t * kVocab); ++k)
        worst = std::max(worst, std::abs(alone[k] - base[b * std::size_t(t * kVocab) + k]));
      CHECK(worst < 1e-12);
      CHECK(std::equal(e_alone.begin(), e_alone.begin() + lay.count[b], lay.emit.begin() + std::ptrdiff_t(b) * lay.segments));
    }
  }
}

TEST_CASE("gradcheck: Hourglass with router levels (the STE's surrogate, the ratio loss, EMA de-chunking)") {
  for (char const* dechunk : {"none", "ema"})
  for (char const* h : {"1@1 1@router:3 1@1", "0@1 1@router:3 1@router:2 1@router:3 0@1", "1@1 1@mlp:3 1@1",
                        "0@1 1@mlp:3 1@router:2 1@mlp:3 0@1"}) {
    std::string const shape = std::string(h) + " dechunk " + dechunk;
    CAPTURE(shape);
    auto c = config<double>(h);
    c.dechunk = dechunk;
    c.ratio_weight = 0.5;  // (H-Net's 0.03 would leave the ratio term's share of the router's gradient small)
    RuleHg<double> m(c);
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 5, 0.3);
    // A stronger router (W = I + A with A ~ N(0, 1.2^2)): adjacent hidden states then disagree
    // often enough that level 0 has several segments in 20 positions.
    for (auto const& e : ps.entries())
      if (e.name.find(".router.") != std::string::npos)
        for (double& v : e.param->value) v *= 4.0;
    centre_mlp_routers(m, ps, text_ids({kText0.substr(0, 20), kText2.substr(0, 20)}));
    {
      cpu::Context ctx;
      auto ids = text_ids({kText0.substr(0, 20), kText2.substr(0, 20)});
      Workspace<cpu> ws(m.forward_workspace(2, 20));
      RuleHg<double>::Trace tr;
      auto a = ws.arena();
      m.forward(ctx, ids.cview(), {}, a, tr);
      auto const& l0 = tr.levels[0].layout;  // both decisions occur in both rows: the STE's two signs
      CHECK(l0.count[0] >= 3);
      CHECK(l0.count[1] >= 3);
      CHECK(l0.count[0] < 20);
      CHECK(l0.count[1] < 20);
    }
    gradcheck_rules(m, ps, 20, 12);
  }
}

TEST_CASE("hourglass rules: the router's ratio loss is a loss term, configurations round-trip, bad ones are refused") {
  cpu::Context ctx;
  auto c = config<double>("1@1 1@router:2.5/8 1@1");
  c.ratio_weight = 0.25;
  RuleHg<double> m(c);
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 2, 0.3);
  std::int64_t const t = 30;
  auto ids = text_ids({kText0.substr(0, t), kText1.substr(0, t)});
  auto targets = text_ids({kText0.substr(1, t), kText1.substr(1, t)});
  Workspace<cpu> ws(m.forward_workspace(2, t));
  RuleHg<double>::Trace tr;
  auto a = ws.arena();
  double loss = m.forward(ctx, ids.cview(), targets.cview(), a, tr);
  REQUIRE(std::distance(tr.terms.begin(), tr.terms.end()) == 2);
  CHECK(std::string(tr.terms.items[0].name) == "ce");
  CHECK(std::string(tr.terms.items[1].name) == "ratio");
  CHECK(tr.terms.items[0].value == tr.head.loss);
  CHECK(loss == tr.head.loss + 0.25 * tr.terms.items[1].value);
  // L = N/(N-1) ((N-1) F G + (1-F)(1-G)) from the level's own F and G.
  auto const& lt = tr.levels[0];
  double emits = 0, g = 0;
  for (std::int32_t n : lt.layout.count) emits += n;
  for (double p : lt.scores) g += p;
  double f = emits / double(2 * t), gg = g / double(2 * t), n = 2.5;
  CHECK(tr.terms.items[1].value == doctest::Approx(n / (n - 1) * ((n - 1) * f * gg + (1 - f) * (1 - gg))).epsilon(1e-14));
  // A model without routers reports "ce" alone, and its loss is the cross-entropy.
  RuleHg<double> plain(config<double>("1@1 1@space 1@1"));
  CHECK_FALSE(plain.has_router());
  nn::ParamStore<cpu, double> pps(plain);
  test::randomize_params(pps, 2, 0.3);
  Workspace<cpu> pws(plain.forward_workspace(2, t));
  RuleHg<double>::Trace ptr;
  auto pa = pws.arena();
  double ploss = plain.forward(ctx, ids.cview(), targets.cview(), pa, ptr);
  CHECK(std::distance(ptr.terms.begin(), ptr.terms.end()) == 1);
  CHECK(ploss == ptr.head.loss);
  CHECK(plain.config_json().find("ratio_weight") == std::string::npos);
  // Round trip (the rule's N, max_len and the weight).
  auto back = RuleHg<double>::config_from_json(m.config_json());
  CHECK(back.hierarchy == m.hierarchy());
  CHECK(back.hierarchy.to_string() == "1@1 1@router:2.5/8 1@1");
  CHECK(back.ratio_weight == 0.25);
  // Refusals, by name.
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("1@1 1@router:1 1@1"), doctest::Contains("must exceed 1"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("1@1 1@router 1@1"), doctest::Contains("router needs its target"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("1@1 1@router:x 1@1"), doctest::Contains("not a finite number"), Error);
  auto neg = config<double>("1@1 1@router:3 1@1");
  neg.ratio_weight = -1;
  CHECK_THROWS_WITH_AS(RuleHg<double>{neg}, doctest::Contains("ratio_weight -1"), Error);
}

TEST_CASE("hourglass rules: EMA de-chunking smooths a router level's segment outputs by P, round-trips, needs a router") {
  cpu::Context ctx;
  std::int64_t const t = 30;
  auto ids = text_ids({kText0.substr(0, t), kText1.substr(0, t)});
  auto c = config<double>("1@1 1@router:3 1@1");
  RuleHg<double> plain(c);
  c.dechunk = "ema";
  RuleHg<double> ema(c);
  nn::ParamStore<cpu, double> pp(plain), pe(ema);
  REQUIRE(pp.values().numel() == pe.values().numel());  // no parameters of its own
  test::randomize_params(pp, 6, 0.3);
  std::copy(pp.values().begin(), pp.values().end(), pe.values().begin());
  Workspace<cpu> wp(plain.forward_workspace(2, t)), we(ema.forward_workspace(2, t));  // (both traces live)
  RuleHg<double>::Trace tp, te;
  auto ap = wp.arena(), ae = we.arena();
  plain.forward(ctx, ids.cview(), {}, ap, tp);
  ema.forward(ctx, ids.cview(), {}, ae, te);
  // Same boundaries (the router reads the level's input, before the smoother) ...
  REQUIRE(te.levels[0].layout.count == tp.levels[0].layout.count);
  REQUIRE(te.levels[0].layout.emit == tp.levels[0].layout.emit);
  // ... and P_j is p at segment j's emit (1 at j = 0), 1 on padding.
  auto const& lay = te.levels[0].layout;
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t j = 0; j < lay.segments; ++j) {
      double want = j < lay.count[std::size_t(b)] ? te.levels[0].scores[std::size_t(b * t + lay.emit_at(b, j))] : 1.0;
      CHECK(te.levels[0].ema_p[std::size_t(b * lay.segments + j)] == want);
    }
    CHECK(te.levels[0].ema_p[std::size_t(b * lay.segments)] == 1.0);
  }
  // Positions before the second segment read z~_0 = z_0 (P_0 = 1): identical logits; later ones differ.
  std::int64_t first = std::min(lay.emit_at(0, 1), lay.emit_at(1, 1));
  double before = 0, after = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t p = 0; p < t; ++p)
      for (std::int64_t v = 0; v < kVocab; ++v) {
        std::size_t k = std::size_t((b * t + p) * kVocab + v);
        double diff = std::abs(te.logits[k] - tp.logits[k]);
        (p < first ? before : after) = std::max(p < first ? before : after, diff);
      }
  CHECK(before == 0.0);
  CHECK(after > 1e-6);
  // The configuration records it (only when on) and round-trips; bad values are refused by name.
  CHECK(plain.config_json().find("dechunk") == std::string::npos);
  CHECK(ema.config_json().find("\"dechunk\":\"ema\"") != std::string::npos);
  CHECK(RuleHg<double>::config_from_json(ema.config_json()).dechunk == "ema");
  CHECK(RuleHg<double>::config_from_json(plain.config_json()).dechunk == "none");
  auto bad = config<double>("1@1 1@space 1@1");
  bad.dechunk = "ema";
  CHECK_THROWS_WITH_AS(RuleHg<double>{bad}, doctest::Contains("dechunk \"ema\" needs a router level"), Error);
  bad = config<double>("1@1 1@router:3 1@1");
  bad.dechunk = "mean";
  CHECK_THROWS_WITH_AS(RuleHg<double>{bad}, doctest::Contains("dechunk \"mean\" is not one of"), Error);
}

namespace {
/// What every pooling / unpooling pair over rule levels must pass, for a double model M of
/// hierarchy h (parameters seeded): gradients (24 positions), cached == full, causality by
/// perturbation (a letter to a space or back, moving boundaries), and batch invariance (a row
/// alone gives its batched logits), over three 40-byte rows.
template <class M>
void check_rule_policies(char const* h, std::uint64_t seed) {
  std::string const shape = h;
  CAPTURE(shape);
  cpu::Context ctx;
  std::int64_t const t = 40;
  std::vector<std::string> rows{kText0.substr(0, t), kText1.substr(0, t), kText2.substr(0, t)};
  auto ids = text_ids(rows);
  M m(typename M::Config{.vocab = kVocab, .dim = 8, .heads = 2, .context = 96, .mlp_hidden = 8,
                         .hierarchy = HierarchySpec::parse(h)});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, seed, 0.3);
  gradcheck_rules(m, ps, 24, 12);
  Workspace<cpu> ws(m.forward_workspace(3, t));
  typename M::Trace tr;
  {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, tr);
  }
  check_cached(m, ids, tr.logits, t, {1, 5});
  check_causal(m, rows, {0, 2, 3, 9, 17, 26, 39}, /*flows=*/true,
               [](std::int64_t, std::int64_t, std::int32_t old) { return std::int32_t(old == ' ' ? 'x' : ' '); });
  auto base = std::vector<double>(tr.logits.begin(), tr.logits.end());
  for (std::size_t b = 0; b < rows.size(); ++b) {
    auto alone = logits_of<M, double>(m, text_ids({rows[b]}));
    double worst = 0;
    for (std::size_t k = 0; k < std::size_t(t * kVocab); ++k)
      worst = std::max(worst, std::abs(alone[k] - base[b * std::size_t(t * kVocab) + k]));
    CHECK(worst < 1e-12);
  }
}
}  // namespace

TEST_CASE("hourglass rules: the segment mean (avg over rule levels): gradients, causality, cached == full") {
  using MeanHg = models::Hourglass<cpu, double, hier::DynamicHierarchy, hier::AvgPool, hier::Repeat>;
  for (char const* h : {"1@1 1@space 1@1", "1@1 1@word 1@fixed:2 1@word 1@1", "0@1 1@space/4 0@1"})
    check_rule_policies<MeanHg>(h, 17);
}

TEST_CASE("hourglass rules: position-indexed (linear) upsampling over segments: fixed:K, gradients, causality, cached") {
  // AU-Net's unpooling: offset o into a segment reads its own matrix (o mod K; K = the factor of
  // fixed:K, the rule's /MAXLEN, or 16). fixed:K maps positions exactly as the numeric level does.
  using LinHg = models::Hourglass<cpu, double, hier::DynamicHierarchy, hier::Select, hier::LinearUp>;
  check_fixed_equal<models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::Select, hier::LinearUp>>(
      "1@1 2@4 1@1", "1@1 2@fixed:4 1@1", 24);
  check_fixed_equal<models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::Select, hier::LinearUp>>(
      "1@1 1@2 1@6 1@2 1@1", "1@1 1@fixed:2 1@fixed:3 1@fixed:2 1@1", 24);
  for (auto [h, offsets] : {std::pair{"1@1 1@space/6 1@1", 6}, std::pair{"1@1 1@word 1@fixed:2 1@word 1@1", 16}}) {
    LinHg m(LinHg::Config{.vocab = kVocab, .dim = 8, .heads = 2, .hierarchy = HierarchySpec::parse(h)});
    CHECK(nn::ParamStore<cpu, double>(m).find("levels.0.upsample.proj.weight").shape == Shape{offsets * 8, 8});
    check_rule_policies<LinHg>(h, 19);
  }
}

TEST_CASE("hourglass rules: attention pooling over the segment's bytes and cross-attention unpooling: gradients, causality, cached") {
  // The programs' default policies (--shorten attention --upsample attention), and linear queries
  // for the unpooling; nested rule levels and a bounded segment length.
  using AttnHg = models::Hourglass<cpu, double, hier::DynamicHierarchy, hier::AttentionPool, hier::AttentionUp>;
  using AttnLinHg = models::Hourglass<cpu, double, hier::DynamicHierarchy, hier::AttentionPool, hier::AttentionUpLinear>;
  for (char const* h : {"1@1 1@space 1@1", "1@1 1@word 1@fixed:2 1@word 1@1"}) check_rule_policies<AttnHg>(h, 23);
  check_rule_policies<AttnLinHg>("0@1 1@space/4 0@1", 29);
}

}  // namespace HSEQ_TEST_UNIT
