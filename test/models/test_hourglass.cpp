// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/models/cached_model.hpp"
#include "hseq/models/hourglass.hpp"
#include "support/cached_check.hpp"
#include "support/doubled_block.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using hier::HierarchySpec;

namespace {
Tensor<std::int32_t, cpu> random_ids(Shape s, std::int64_t vocab, std::uint64_t seed) {
  Tensor<std::int32_t, cpu> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::int32_t(rng.below(std::uint64_t(vocab)));
  return t;
}

/// Gradcheck of a tiny model of type M (vocab 11, dim 8) on [2, t] ids, with exact workspace plans.
template <class M>
void gradcheck_hourglass(HierarchySpec const& hierarchy, std::int64_t t) {
  cpu::Context ctx;
  M m({.vocab = 11, .dim = 8, .heads = 2, .context = 12, .mlp_hidden = 8, .hierarchy = hierarchy});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.3);
  auto ids = random_ids(Shape{2, t}, 11, 1), targets = random_ids(Shape{2, t}, 11, 2);
  std::size_t plan = m.forward_workspace(2, t) + m.backward_workspace(2, t);
  Workspace<cpu> ws(plan);
  typename M::Trace tr;
  auto loss = [&] {
    auto a = ws.arena();
    return m.forward(ctx, ids.cview(), targets.cview(), a, tr);
  };
  auto grads = [&] {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    CHECK(a.used() == m.forward_workspace(2, t));
    m.backward(ctx, tr, a);
    CHECK(a.high_water() == plan);
  };
  test::GradcheckOptions opt;
  opt.max_per_tensor = 16;
  test::GradCheck(ps, opt).run(loss, grads);
}

template <class Sh, class Up>
void gradcheck_model(char const* hierarchy, std::int64_t t) {
  std::string const shape = hierarchy, shorten = Sh::kName, upsample = Up::kName;  // CAPTURE prints strings
  CAPTURE(shape);
  CAPTURE(shorten);
  CAPTURE(upsample);
  gradcheck_hourglass<models::Hourglass<cpu, double, hier::DynamicHierarchy, Sh, Up>>(HierarchySpec::parse(hierarchy),
                                                                                      t);
}

/// Rows of a sequence that a perturbation reaches (true: the row's value changes).
using Rows = std::vector<bool>;

/// Causal Transformer blocks (n >= 1): row i attends to every row <= i, so every row from the first
/// changed one on changes; no blocks change nothing.
Rows through_blocks(Rows r, std::int64_t n) {
  bool seen = false;
  if (n > 0)
    for (auto&& x : r) x = seen = seen || x;
  return r;
}

/// Rows of Valley_i's output [len] that change when the rows `in` of its input change, derived from
/// the model's equations (the header of models/hourglass.hpp and of each policy), not its code:
///  - ShiftRight(k - 1) then pooling by k: short position j covers inputs j k - k + 1 .. j k, so an
///    input c reaches short j = ceil(c / k) (none when that is past the end: the shift drops it).
///    Avg and linear pooling use that window only; attention pooling's query j also attends to every
///    shifted position <= j k + k - 1, i.e. every input <= j k, so it reaches every j >= ceil(c / k).
///  - The level's blocks (and the nested level) at the short rate, causal.
///  - Repeat and linear upsampling: full-rate q reads short floor(q / k) only. Attention upsampling:
///    q attends to every short j <= floor(q / k), and its query adds the residual input q.
///  - Output x + LN(u): the residual row q itself.
Rows valley_rows(HierarchySpec const& spec, std::size_t i, Rows const& in, bool attn_pool, bool attn_up) {
  std::int64_t len = std::int64_t(in.size()), k = spec.levels[i].factor, ls = len / k, n = spec.levels[i].layers;
  std::int64_t first_in = std::find(in.begin(), in.end(), true) - in.begin();  // len when nothing changed
  Rows s(std::size_t(ls), false);
  for (std::int64_t j = 0; j < ls; ++j) {
    if (attn_pool) s[std::size_t(j)] = first_in <= j * k;
    else
      for (std::int64_t c = std::max<std::int64_t>(0, j * k - k + 1); c <= j * k; ++c)
        s[std::size_t(j)] = s[std::size_t(j)] || in[std::size_t(c)];
  }
  s = through_blocks(s, n);
  if (i + 1 < spec.levels.size()) s = through_blocks(valley_rows(spec, i + 1, s, attn_pool, attn_up), n);
  std::int64_t first_s = std::find(s.begin(), s.end(), true) - s.begin();
  Rows out(in.size());
  for (std::int64_t q = 0; q < len; ++q)
    out[std::size_t(q)] = in[std::size_t(q)] || (attn_up ? first_s <= q / k : bool(s[std::size_t(q / k)]));
  return out;
}

/// Output rows [0, t) of an Hourglass that depend on token p (the sequence is padded to tp).
Rows dependent_rows(HierarchySpec const& spec, bool attn_pool, bool attn_up, std::int64_t t, std::int64_t tp,
                    std::int64_t p) {
  Rows x(std::size_t(tp), false);
  x[std::size_t(p)] = true;
  x = through_blocks(valley_rows(spec, 0, through_blocks(x, spec.pre), attn_pool, attn_up), spec.post);
  x.resize(std::size_t(t));
  return x;
}

std::string pattern(Rows const& r) {
  std::string s;
  for (bool x : r) s += x ? 'x' : '.';
  return s;
}

/// Changes token p and checks that logits before p are bit-identical, and that the rows that change
/// are exactly those that depend on p (`dependent_rows`): with full-rate layers every row >= p
/// (row p + 1 sees p only through attention), without them only row p and the rows the short path
/// reaches, so a dead short path or a wrong shift shows as a wrong set of rows.
template <class Sh, class Up>
void causality(char const* hierarchy, std::int64_t t, std::vector<std::int64_t> const& positions) {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, Sh, Up>;
  std::string const shape = hierarchy, shorten = Sh::kName, upsample = Up::kName;  // CAPTURE prints strings
  CAPTURE(shape);
  CAPTURE(shorten);
  CAPTURE(upsample);
  CAPTURE(t);
  cpu::Context ctx;
  std::int64_t const v = 32;
  M m({.vocab = v, .dim = 16, .heads = 2, .context = 48, .hierarchy = HierarchySpec::parse(hierarchy)});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 3);
  test::randomize_params(ps, 3, 0.2);  // LayerNorm gains and biases away from 1 / 0
  Workspace<cpu> ws(m.forward_workspace(2, t));
  typename M::Trace tr;
  auto run = [&](Tensor<std::int32_t, cpu> const& ids) {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, tr);
    REQUIRE(tr.logits.shape == (Shape{2, t, v}));
    return std::vector<float>(tr.logits.begin(), tr.logits.end());
  };
  auto ids = random_ids(Shape{2, t}, v, 7);
  auto base = run(ids);
  constexpr bool attn_pool = std::is_same_v<Sh, hier::AttentionPool>, attn_up = std::is_same_v<Up, hier::AttentionUp>;
  for (std::int64_t p : positions) {
    if (p >= t) continue;
    CAPTURE(p);
    auto changed = random_ids(Shape{2, t}, v, 7);
    changed.data()[p] = (changed.data()[p] + 5) % std::int32_t(v);
    changed.data()[t + p] = (changed.data()[t + p] + 9) % std::int32_t(v);
    auto out = run(changed);
    Rows expected = dependent_rows(m.hierarchy(), attn_pool, attn_up, t, m.padded_length(t), p);
    REQUIRE(expected[std::size_t(p)]);  // the token's own row always depends on it (the residual)
    bool before_identical = true;
    for (std::int64_t b = 0; b < 2; ++b) {
      CAPTURE(b);
      Rows moved(std::size_t(t), false);
      for (std::int64_t i = 0; i < t; ++i)
        for (std::int64_t c = 0; c < v; ++c) {
          std::size_t k = std::size_t((b * t + i) * v + c);
          if (i < p) before_identical &= out[k] == base[k];
          if (out[k] != base[k]) moved[std::size_t(i)] = true;
        }
      CHECK(pattern(moved) == pattern(expected));  // 'x': the row changed
    }
    CHECK(before_identical);
  }
}

template <class Sh, class Up>
void causality_all_levels() {
  // One level of k = 4: positions with t mod k in {0, 1, k - 1}, at several blocks.
  causality<Sh, Up>("1@1 1@4 1@1", 24, {0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 20, 21, 23});
  // Two nested levels (k = 2 then 3, total 6): residues mod 2 and mod 6.
  causality<Sh, Up>("1@1 1@2 1@6 1@2 1@1", 24, {0, 1, 2, 5, 6, 7, 11, 12, 13, 17, 18, 19, 23});
  // A length that is not a multiple of the total factor (padded internally, truncated after).
  causality<Sh, Up>("1@1 1@4 1@1", 22, {0, 3, 4, 5, 15, 16, 17, 20, 21});
  causality<Sh, Up>("1@1 1@2 1@6 1@2 1@1", 19, {0, 1, 5, 6, 11, 12, 17, 18});
}

/// Hierarchies without full-rate layers: a token reaches later rows only through the short path, so
/// the set of changed rows pins the shift, the pooling window and the upsampling map (every position).
template <class Sh, class Up>
void causality_short_path() {
  std::vector<std::int64_t> all(24);
  std::iota(all.begin(), all.end(), 0);
  // One level, k = 4, one short layer: rows p and q >= ceil(p / 4) 4 (any policy pair).
  causality<Sh, Up>("0@1 1@4 0@1", 24, all);
  causality<Sh, Up>("0@1 1@4 0@1", 22, all);  // padded to 24
  // Nested (k = 2 then 3, and 3 then 2): rows p and q >= ceil(p / k1) k1. Every level needs a layer
  // (HierarchySpec::validate), and the outer level's causal layers pass short position ceil(p / k1)
  // on to every later one, so the inner level adds no finer pattern.
  causality<Sh, Up>("0@1 1@2 1@6 1@2 0@1", 24, all);
  causality<Sh, Up>("0@1 1@2 1@6 1@2 0@1", 19, all);  // padded to 24
  causality<Sh, Up>("0@1 1@3 1@6 1@3 0@1", 17, all);  // padded to 18
}
}  // namespace

TEST_CASE("hourglass: the causality tests' dependence rule agrees with its closed forms") {
  // The rule of `dependent_rows`, worked out by hand for the short-path hierarchies above.
  auto ceil_div = [](std::int64_t a, std::int64_t b) { return (a + b - 1) / b; };
  auto one = HierarchySpec::parse("0@1 1@4 0@1"), nested = HierarchySpec::parse("0@1 1@2 1@6 1@2 0@1");
  for (bool attn_pool : {false, true})
    for (bool attn_up : {false, true})
      for (std::int64_t p = 0; p < 24; ++p) {
        CAPTURE(attn_pool);
        CAPTURE(attn_up);
        CAPTURE(p);
        Rows want(24), want_nested(24);
        for (std::int64_t q = 0; q < 24; ++q) {
          want[std::size_t(q)] = q == p || q >= 4 * ceil_div(p, 4);
          want_nested[std::size_t(q)] = q == p || q >= 2 * ceil_div(p, 2);
        }
        CHECK(pattern(dependent_rows(one, attn_pool, attn_up, 24, 24, p)) == pattern(want));
        CHECK(pattern(dependent_rows(nested, attn_pool, attn_up, 24, 24, p)) == pattern(want_nested));
      }
}

TEST_CASE("gradcheck: Hourglass tiny models (attention+attention, avg+repeat, linear+linear, two levels, padding)") {
  gradcheck_model<hier::AttentionPool, hier::AttentionUp>("1@1 1@2 1@1", 6);
  gradcheck_model<hier::AvgPool, hier::Repeat>("1@1 1@2 1@1", 6);
  gradcheck_model<hier::LinearPool, hier::LinearUp>("1@1 1@3 1@1", 6);
  gradcheck_model<hier::AttentionPool, hier::Repeat>("1@1 1@2 1@4 1@2 1@1", 8);
  gradcheck_model<hier::AvgPool, hier::AttentionUp>("1@1 1@2 1@4 1@2 1@1", 7);  // padded to 8
}

TEST_CASE("hourglass: causality by perturbation, shorten avg, every upsampling, one and two levels") {
  causality_all_levels<hier::AvgPool, hier::Repeat>();
  causality_all_levels<hier::AvgPool, hier::LinearUp>();
  causality_all_levels<hier::AvgPool, hier::AttentionUp>();
}
TEST_CASE("hourglass: causality by perturbation, shorten linear, every upsampling, one and two levels") {
  causality_all_levels<hier::LinearPool, hier::Repeat>();
  causality_all_levels<hier::LinearPool, hier::LinearUp>();
  causality_all_levels<hier::LinearPool, hier::AttentionUp>();
}
TEST_CASE("hourglass: causality by perturbation, shorten attention, every upsampling, one and two levels") {
  causality_all_levels<hier::AttentionPool, hier::Repeat>();
  causality_all_levels<hier::AttentionPool, hier::LinearUp>();
  causality_all_levels<hier::AttentionPool, hier::AttentionUp>();
}
TEST_CASE("hourglass: without full-rate layers exactly the rows of the short path change, shorten avg") {
  causality_short_path<hier::AvgPool, hier::Repeat>();
  causality_short_path<hier::AvgPool, hier::LinearUp>();
  causality_short_path<hier::AvgPool, hier::AttentionUp>();
}
TEST_CASE("hourglass: without full-rate layers exactly the rows of the short path change, shorten linear") {
  causality_short_path<hier::LinearPool, hier::Repeat>();
  causality_short_path<hier::LinearPool, hier::LinearUp>();
  causality_short_path<hier::LinearPool, hier::AttentionUp>();
}
TEST_CASE("hourglass: without full-rate layers exactly the rows of the short path change, shorten attention") {
  causality_short_path<hier::AttentionPool, hier::Repeat>();
  causality_short_path<hier::AttentionPool, hier::LinearUp>();
  causality_short_path<hier::AttentionPool, hier::AttentionUp>();
}

TEST_CASE("hourglass: the compile-time hierarchy builds the same model as the string") {
  using H = hier::Hierarchy<2, 2, hier::Level<4, 4>>;
  using Static = models::Hourglass<cpu, float, H, hier::AvgPool, hier::Repeat>;
  using Dynamic = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::AvgPool, hier::Repeat>;
  Static a({.dim = 16, .heads = 2, .context = 32});
  Dynamic b({.dim = 16, .heads = 2, .context = 32, .hierarchy = HierarchySpec::parse("2@1 4@4 2@1")});
  CHECK(a.config_json() == b.config_json());
  nn::ParamStore<cpu, float> pa(a), pb(b);
  REQUIRE(pa.entries().size() == pb.entries().size());
  for (std::size_t i = 0; i < pa.entries().size(); ++i) CHECK(pa.entries()[i].name == pb.entries()[i].name);
  CHECK(pa.find("levels.0.pre.3.attn.q.weight").shape == Shape{16, 16});
}

TEST_CASE("hourglass: bad configurations say what is wrong") {
  using M = models::Hourglass<cpu, float>;
  CHECK_THROWS_WITH_AS(M({.context = 30, .hierarchy = HierarchySpec::parse("2@1 4@4 2@1")}),
                       doctest::Contains("not a multiple of the total shortening factor 4"), Error);
  CHECK_THROWS_WITH_AS(M({.dim = 30, .heads = 4, .hierarchy = HierarchySpec::parse("2@1 4@4 2@1")}),
                       doctest::Contains("heads 4"), Error);
  CHECK_THROWS_WITH_AS(M({}), doctest::Contains("at least one shortening level"), Error);
  cpu::Context ctx;
  M m({.vocab = 16, .dim = 8, .heads = 2, .context = 8, .hierarchy = HierarchySpec::parse("1@1 1@4 1@1")});
  nn::ParamStore<cpu, float> ps(m);
  auto ids = random_ids(Shape{1, 9}, 16, 1);
  Workspace<cpu> ws(1 << 22);
  auto a = ws.arena();
  M::Trace tr;
  CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), {}, a, tr), doctest::Contains("padded to 12"), Error);
  CHECK_THROWS_WITH_AS(M::config_from_json(
                           R"({"vocab":16,"dim":8,"heads":2,"context":8,"mlp_hidden":0,"eps":1e-5,"init_std":0.02,)"
                           R"("hierarchy":"1@1 1@4 1@1","shorten":"avg","upsample":"repeat"})"),
                       doctest::Contains("this model type is shorten 'attention'"), Error);
}

namespace {
/// A tiny model of type M (vocab 24, dim 8, parameters randomised with seed 11): the largest
/// |difference| between cached generation (a prefill of 3, then token by token) and the full
/// forward over [2, t] ids; `full` receives the full forward's logits [2, t, 24].
template <class M>
double cached_vs_full(HierarchySpec const& hierarchy, std::int64_t t, std::vector<double>* full = nullptr) {
  cpu::Context ctx;
  std::int64_t const v = 24;
  M m({.vocab = v, .dim = 8, .heads = 2, .context = 24, .mlp_hidden = 8, .hierarchy = hierarchy});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11, 0.3);
  auto ids = random_ids(Shape{2, t}, v, 5);
  Workspace<cpu> ws(m.forward_workspace(2, t));
  typename M::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  if (full) full->assign(tr.logits.begin(), tr.logits.end());
  auto cache = m.make_cache(2, t);
  std::size_t plan = m.step_workspace(2, 1, t);
  Workspace<cpu> sws(plan);
  return test::cached_vs_full_worst(ctx, m, cache, ids, tr.logits, t, 3, sws,
                                    [&](std::int64_t, std::int64_t) { return plan; });
}

template <class Sh, class Up>
void cached_equals_full(char const* hierarchy, std::int64_t t) {
  CAPTURE(hierarchy);
  CAPTURE(Sh::kName);
  CAPTURE(Up::kName);
  CHECK(cached_vs_full<models::Hourglass<cpu, double, hier::DynamicHierarchy, Sh, Up>>(HierarchySpec::parse(hierarchy),
                                                                                       t) < 1e-11);
}
}  // namespace

TEST_CASE("hourglass: cached generation logits equal the full forward, every policy pair, nested levels") {
  cached_equals_full<hier::AvgPool, hier::Repeat>("1@1 1@3 1@1", 13);
  cached_equals_full<hier::LinearPool, hier::LinearUp>("1@1 1@3 1@1", 13);
  cached_equals_full<hier::AttentionPool, hier::AttentionUp>("1@1 1@3 1@1", 13);
  cached_equals_full<hier::AvgPool, hier::AttentionUp>("1@1 1@2 2@4 1@2 1@1", 17);
  cached_equals_full<hier::AttentionPool, hier::Repeat>("1@1 1@2 2@4 1@2 1@1", 17);
  cached_equals_full<hier::LinearPool, hier::AttentionUp>("2@1 1@2 1@6 1@2 0@1", 19);
  cached_equals_full<hier::AttentionPool, hier::LinearUp>("0@1 1@2 1@4 1@2 1@1", 16);
}

TEST_CASE("hourglass: the cache refuses out-of-order positions") {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::AvgPool, hier::Repeat>;
  cpu::Context ctx;
  M m({.vocab = 16, .dim = 8, .heads = 2, .context = 8, .hierarchy = HierarchySpec::parse("1@1 1@2 1@1")});
  nn::ParamStore<cpu, float> ps(m);
  auto cache = m.make_cache(1, 8);
  Tensor<std::int32_t, cpu> id(Shape{1, 1});
  id.data()[0] = 3;
  Tensor<float, cpu> logits(Shape{1, 1, 16});
  Workspace<cpu> ws(m.step_workspace(1, 1, 8));
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, id.cview(), cache, 2, logits.view(), a), doctest::Contains("sequential"),
                       Error);
}

TEST_CASE("hourglass: config JSON is what the hand-written serialiser produced (checkpoints compare it)") {
  // Literals captured from the serialiser before configs used nlohmann's macros.
  using A = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::AttentionPool, hier::AttentionUp>;
  using V = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::AvgPool, hier::Repeat>;
  using L = models::Hourglass<cpu, double, hier::DynamicHierarchy, hier::LinearPool, hier::LinearUp>;
  A a({.vocab = 29, .dim = 16, .heads = 2, .context = 16, .hierarchy = HierarchySpec::parse("1@1 1@2 1@4 1@2 1@1")});
  V v({.vocab = 29, .dim = 16, .heads = 4, .context = 12, .mlp_hidden = 20,
       .hierarchy = HierarchySpec::parse("2@1 1@3 2@1")});
  L l({.vocab = 17, .dim = 8, .heads = 2, .context = 8, .hierarchy = HierarchySpec::parse("0@1 2@2 0@1")});
  std::string const ja =
      R"({"context":16,"dim":16,"eps":1e-05,"heads":2,"hierarchy":"1@1 1@2 1@4 1@2 1@1","init_std":0.02,)"
      R"("mlp_hidden":0,"shorten":"attention","upsample":"attention","vocab":29})";
  std::string const jv = R"({"context":12,"dim":16,"eps":1e-05,"heads":4,"hierarchy":"2@1 1@3 2@1","init_std":0.02,)"
                         R"("mlp_hidden":20,"shorten":"avg","upsample":"repeat","vocab":29})";
  std::string const jl = R"({"context":8,"dim":8,"eps":1e-05,"heads":2,"hierarchy":"2@2","init_std":0.02,)"
                         R"("mlp_hidden":0,"shorten":"linear","upsample":"linear","vocab":17})";
  CHECK(nlohmann::json::parse(a.config_json()) == nlohmann::json::parse(ja));
  CHECK(nlohmann::json::parse(v.config_json()) == nlohmann::json::parse(jv));
  CHECK(nlohmann::json::parse(l.config_json()) == nlohmann::json::parse(jl));
  CHECK(a.config_json() == ja);  // even byte for byte
  auto c = V::config_from_json(jv);
  CHECK(c.vocab == 29);
  CHECK(c.dim == 16);
  CHECK(c.heads == 4);
  CHECK(c.context == 12);
  CHECK(c.mlp_hidden == 20);
  CHECK(c.eps == 1e-5);
  CHECK(c.init_std == 0.02);
  CHECK(c.hierarchy == HierarchySpec::parse("2@1 1@3 2@1"));
  CHECK(V(c).config_json() == v.config_json());
  CHECK_THROWS_WITH_AS(V::config_from_json(R"({"vocab":29})"), doctest::Contains("invalid config JSON"), Error);
  CHECK_THROWS_WITH_AS(V::config_from_json(R"({"vocab":29,"dim":"16"})"), doctest::Contains("invalid config JSON"),
                       Error);
  std::string bad = jv;
  bad.replace(bad.find("2@1 1@3 2@1"), 11, "2@1 1x3 2@1");
  CHECK_THROWS_WITH_AS(V::config_from_json(bad), doctest::Contains("is not of the form LAYERS@FACTOR"), Error);
}

// ---------------------------------------------------------------------------------------------
// The compile-time hierarchy's level storage, and the block type parameter.

namespace {
// "1@1 1@2 2@4 1@2 0@1": two nested levels (factors 2 and 2), one full-rate layer before them.
using StaticH = hier::Hierarchy<1, 0, hier::Level<1, 2>, hier::Level<2, 2>>;
template <class H, class Blk = nn::TransformerBlock<cpu, double>>
using AttnHg = models::Hourglass<cpu, double, H, hier::AttentionPool, hier::AttentionUp, Blk>;
using StaticHg = AttnHg<StaticH>;
using DynamicHg = AttnHg<hier::DynamicHierarchy>;
using Doubled = test::DoubledBranchBlock<cpu, double>;
}  // namespace

// A compile-time hierarchy's level count is a constant: the cache's and the trace's per-level
// storage are arrays of it; the run-time form keeps vectors.
static_assert(std::is_same_v<decltype(StaticHg::Cache::levels), std::array<StaticHg::LevelCache, 2>>);
static_assert(std::is_same_v<decltype(StaticHg::Trace::levels), std::array<StaticHg::LevelTrace, 2>>);
static_assert(std::is_same_v<decltype(DynamicHg::Cache::levels), std::vector<DynamicHg::LevelCache>>);
static_assert(std::is_same_v<decltype(DynamicHg::Trace::levels), std::vector<DynamicHg::LevelTrace>>);
static_assert(std::is_same_v<hier::PerLevel<StaticH, int>, std::array<int, 2>>);
static_assert(std::is_same_v<hier::PerLevel<hier::DynamicHierarchy, int>, std::vector<int>>);
// The library's policies' step states are movable, so the array-holding cache is too (CachedModel).
static_assert(std::movable<StaticHg::Cache>);
static_assert(models::CachedModel<StaticHg, cpu, double>);
// Every spelling without a block type is the default pre-LN block; another one is passed through.
static_assert(std::is_same_v<models::Hourglass<cpu, float>::Block, nn::TransformerBlock<cpu, float>>);
static_assert(std::is_same_v<models::Hourglass<cpu, float, StaticH, hier::AvgPool, hier::Repeat>::Stack,
                             nn::BlockStack<cpu, float, nn::TransformerBlock<cpu, float>>>);
static_assert(std::is_same_v<AttnHg<StaticH, Doubled>::Stack, nn::BlockStack<cpu, double, Doubled>>);

TEST_CASE("hourglass: cached generation equals the full forward with fixed-size (compile-time) level storage") {
  HierarchySpec const spec = StaticH::spec();
  REQUIRE(spec == HierarchySpec::parse("1@1 1@2 2@4 1@2 0@1"));
  std::vector<double> full_static, full_dynamic;
  // The compile-time Config's hierarchy is ignored (StaticH::spec() is used): pass the default.
  CHECK(cached_vs_full<StaticHg>({}, 13, &full_static) < 1e-11);
  CHECK(cached_vs_full<DynamicHg>(spec, 13, &full_dynamic) < 1e-11);
  CHECK(full_static == full_dynamic);  // one model, two spellings: bit-identical logits
  // Nested levels with factors 2 then 3 (a ring of 3 at the inner level), padded length.
  using H23 = hier::Hierarchy<1, 1, hier::Level<1, 2>, hier::Level<1, 3>>;
  CHECK(cached_vs_full<models::Hourglass<cpu, double, H23, hier::LinearPool, hier::Repeat>>({}, 17) < 1e-11);
}

TEST_CASE("gradcheck: Hourglass over another block type (doubled residual branch), both hierarchy forms") {
  {
    std::string const form = "compile-time";
    CAPTURE(form);
    gradcheck_hourglass<models::Hourglass<cpu, double, hier::Hierarchy<1, 1, hier::Level<1, 2>>, hier::AvgPool,
                                          hier::Repeat, Doubled>>({}, 6);
  }
  {
    std::string const form = "run-time";
    CAPTURE(form);
    gradcheck_hourglass<AttnHg<hier::DynamicHierarchy, Doubled>>(HierarchySpec::parse("1@1 1@2 1@4 1@2 0@1"), 7);
  }
}

TEST_CASE("hourglass: the block type parameter is the block every stack runs (same parameters, other logits)") {
  // The doubled-branch block has the default block's parameters: the same names, and the same
  // values from the same seed, so only the block's function differs.
  HierarchySpec const spec = HierarchySpec::parse("1@1 1@2 1@4 1@2 1@1");
  std::vector<double> base, doubled;
  CHECK(cached_vs_full<DynamicHg>(spec, 13, &base) < 1e-11);
  CHECK(cached_vs_full<AttnHg<hier::DynamicHierarchy, Doubled>>(spec, 13, &doubled) < 1e-11);
  CHECK(cached_vs_full<AttnHg<StaticH, Doubled>>({}, 13) < 1e-11);
  REQUIRE(base.size() == doubled.size());
  double diff = 0;
  for (std::size_t i = 0; i < base.size(); ++i) diff = std::max(diff, std::abs(base[i] - doubled[i]));
  CHECK(diff > 1e-2);
  DynamicHg a({.dim = 8, .heads = 2, .context = 8, .hierarchy = spec});
  AttnHg<hier::DynamicHierarchy, Doubled> b({.dim = 8, .heads = 2, .context = 8, .hierarchy = spec});
  nn::ParamStore<cpu, double> pa(a), pb(b);
  REQUIRE(pa.entries().size() == pb.entries().size());
  for (std::size_t i = 0; i < pa.entries().size(); ++i) CHECK(pa.entries()[i].name == pb.entries()[i].name);
  CHECK(a.config_json() == b.config_json());
}

}  // namespace HSEQ_TEST_UNIT
