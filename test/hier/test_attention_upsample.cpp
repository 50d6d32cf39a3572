// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/ragged_policy.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
template <class T>
using LinearQueryUp = hier::AttentionUpsample<cpu, T, hier::LinearUp>;

/// Full-rate position p of module M (k 4, Ls 4) depends on short positions <= floor(p / k) only: a
/// change at short j leaves the rows p < j k bit-identical and changes every row p >= j k.
template <class M>
void check_upsample_causality(bool randomize) {
  cpu::Context ctx;
  std::int64_t const k = 4, ls = 4, d = 8;
  M m({.dim = d, .factor = k, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 4);
  if (randomize) test::randomize_params(ps, 4, 0.3);
  auto res = test::random_tensor<float>(Shape{1, ls * k, d}, 9);
  Workspace<cpu> ws(m.forward_workspace(1, ls * k));
  auto run = [&](Tensor<float, cpu> const& y) {
    Tensor<float, cpu> u(Shape{1, ls * k, d});
    auto a = ws.arena();
    m.forward(ctx, y.cview(), res.cview(), u.view(), a);
    return std::vector<float>(u.data(), u.data() + u.numel());
  };
  auto base = run(test::random_tensor<float>(Shape{1, ls, d}, 1));
  for (std::int64_t j = 0; j < ls; ++j) {
    auto y = test::random_tensor<float>(Shape{1, ls, d}, 1);
    y.data()[j * d + 1] += 1.f;
    auto out = run(y);
    for (std::int64_t p = 0; p < ls * k; ++p) {
      bool same = true;
      for (std::int64_t c = 0; c < d; ++c) same &= out[std::size_t(p * d + c)] == base[std::size_t(p * d + c)];
      CAPTURE(j);
      CAPTURE(p);
      CHECK(same == (p < j * k));
    }
  }
}

template <class M>
std::vector<std::string> param_names(M& m) {
  nn::ParamStore<cpu, float> ps(m);
  std::vector<std::string> names;
  for (auto const& e : ps.entries()) names.push_back(e.name);
  return names;
}
}  // namespace

TEST_CASE("gradcheck: AttentionUpsample (short input, residual and all parameters)") {
  test::check_upsample<hier::AttentionUpsample<cpu, double>, true>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6},
                                                                    2, 3);
}

TEST_CASE("attention_upsample: full-rate position p depends only on short positions <= floor(p / k)") {
  check_upsample_causality<hier::AttentionUpsample<cpu, float>>(false);
}

TEST_CASE("gradcheck: AttentionUpsample, non-causal (short input, residual and all parameters)") {
  test::check_upsample<hier::AttentionUpsample<cpu, double>, true>(
      {.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6, .causal = false}, 2, 3);
}

TEST_CASE("attention_upsample: non-causal, every full-rate position depends on every short one; causal does not") {
  cpu::Context ctx;
  std::int64_t const k = 4, ls = 4, d = 8, len = ls * k;
  hier::AttentionUpsample<cpu, double> causal({.dim = d, .factor = k, .heads = 2});
  hier::AttentionUpsample<cpu, double> bidir({.dim = d, .factor = k, .heads = 2, .causal = false});
  nn::ParamStore<cpu, double> ps_c(causal), ps_b(bidir);
  ps_c.init(ctx, 4);
  ps_b.init(ctx, 4);
  test::randomize_params(ps_c, 7);
  test::randomize_params(ps_b, 7);
  auto res = test::random_tensor<double>(Shape{1, len, d}, 9);
  Workspace<cpu> ws(bidir.forward_workspace(1, len));
  auto run = [&](auto const& m, Tensor<double, cpu> const& y) {
    Tensor<double, cpu> u(Shape{1, len, d});
    auto a = ws.arena();
    m.forward(ctx, y.cview(), res.cview(), u.view(), a);
    return std::vector<double>(u.data(), u.data() + u.numel());
  };
  auto y0 = test::random_tensor<double>(Shape{1, ls, d}, 1);
  auto base_b = run(bidir, y0), base_c = run(causal, y0);
  // Value: positions p >= (ls - 1) k see every short position under both masks: exact agreement.
  for (std::int64_t p = (ls - 1) * k; p < len; ++p)
    for (std::int64_t c = 0; c < d; ++c) CHECK(base_b[std::size_t(p * d + c)] == base_c[std::size_t(p * d + c)]);
  double first_diff = 0;
  for (std::int64_t c = 0; c < d; ++c) first_diff = std::max(first_diff, std::abs(base_b[std::size_t(c)] - base_c[std::size_t(c)]));
  CHECK(first_diff > 1e-6);
  for (std::int64_t j = 0; j < ls; ++j) {
    auto y = test::random_tensor<double>(Shape{1, ls, d}, 1);
    y.data()[j * d + 1] += 1.0;
    auto out_b = run(bidir, y), out_c = run(causal, y);
    for (std::int64_t p = 0; p < len; ++p) {
      bool same_b = true, same_c = true;
      for (std::int64_t c = 0; c < d; ++c) {
        same_b &= out_b[std::size_t(p * d + c)] == base_b[std::size_t(p * d + c)];
        same_c &= out_c[std::size_t(p * d + c)] == base_c[std::size_t(p * d + c)];
      }
      CAPTURE(j);
      CAPTURE(p);
      CHECK(!same_b);
      CHECK(same_c == (p < j * k));
    }
  }
  CHECK_THROWS_AS(bidir.make_step_state(1, len), Error);
}

// ---------------------------------------------------------------------------------------------
// The query source: Repeat (AttentionUp, unchanged) or LinearUp (AttentionUpLinear).

TEST_CASE("gradcheck: AttentionUpsample with linear-upsampling queries (short input, residual, all parameters)") {
  test::check_upsample<LinearQueryUp<double>, true>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6}, 2, 3);
  test::check_upsample<LinearQueryUp<double>, true>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6}, 1, 3);
  test::check_upsample<LinearQueryUp<double>, true>(
      {.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6, .causal = false}, 2, 3);
}

TEST_CASE("attention_upsample: linear-upsampling queries, position p depends only on short positions <= floor(p / k)") {
  check_upsample_causality<LinearQueryUp<float>>(true);
}

TEST_CASE("attention_upsample: linear-upsampling queries, the residual at p changes row p alone") {
  // The residual enters the query of its own row only (q = LN(LinearUp(s)) + res), then that
  // row's attention and MLP: every other row bit-identical.
  cpu::Context ctx;
  std::int64_t const k = 3, ls = 3, d = 8, len = ls * k;
  LinearQueryUp<float> m({.dim = d, .factor = k, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 4);
  test::randomize_params(ps, 6, 0.3);
  auto y = test::random_tensor<float>(Shape{1, ls, d}, 1);
  Workspace<cpu> ws(m.forward_workspace(1, len));
  auto run = [&](Tensor<float, cpu> const& res) {
    Tensor<float, cpu> u(Shape{1, len, d});
    auto a = ws.arena();
    m.forward(ctx, y.cview(), res.cview(), u.view(), a);
    return std::vector<float>(u.data(), u.data() + u.numel());
  };
  auto base = run(test::random_tensor<float>(Shape{1, len, d}, 9));
  for (std::int64_t t = 0; t < len; ++t) {
    auto res = test::random_tensor<float>(Shape{1, len, d}, 9);
    res.data()[t * d + 2] += 1.f;
    auto out = run(res);
    for (std::int64_t p = 0; p < len; ++p) {
      bool same = true;
      for (std::int64_t c = 0; c < d; ++c) same &= out[std::size_t(p * d + c)] == base[std::size_t(p * d + c)];
      CAPTURE(t);
      CAPTURE(p);
      CHECK(same == (p != t));
    }
  }
}

TEST_CASE("attention_upsample: cached steps (step_short, step_up) equal the forward row by row, both query sources") {
  auto check = [](auto& m, std::int64_t bsz, std::int64_t ls) {
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 29, 0.4);
    CAPTURE(m.config().factor);
    CAPTURE(ls);
    CHECK(test::upsample_steps_vs_forward(m, bsz, ls, 5) < 1e-12);
  };
  for (std::int64_t k : {1, 2, 3}) {
    hier::AttentionUpsample<cpu, double> rep({.dim = 8, .factor = k, .heads = 2, .mlp_hidden = 12});
    LinearQueryUp<double> lin({.dim = 8, .factor = k, .heads = 2, .mlp_hidden = 12});
    check(rep, 2, 4);
    check(lin, 2, 4);
    check(lin, 1, 5);
  }
}

TEST_CASE("attention_upsample: the policy tags, and the parameter names (the default's are those it always had)") {
  static_assert(std::is_same_v<hier::AttentionUp, hier::AttentionUpWith<hier::Repeat>>);
  static_assert(std::is_same_v<hier::AttentionUpLinear, hier::AttentionUpWith<hier::LinearUp>>);
  static_assert(std::is_same_v<hier::AttentionUp::Module<cpu, float>, hier::AttentionUpsample<cpu, float>>);
  static_assert(hier::AttentionUp::kUsesResidual && hier::AttentionUpLinear::kUsesResidual);
  static_assert(hier::kAttentionResampling<hier::AttentionUp> && hier::kAttentionResampling<hier::AttentionUpLinear>);
  static_assert(!hier::kAttentionResampling<hier::Repeat> && !hier::kAttentionResampling<hier::LinearUp>);
  CHECK(std::string(hier::AttentionUp::kName) == "attention");
  CHECK(std::string(hier::AttentionUpLinear::kName) == "attention_linear");
  // The names of a checkpoint of AttentionUp (test/fixtures/checkpoint_v1_hourglass.safetensors).
  std::vector<std::string> const names{"ln_s.weight",     "ln_s.bias",     "ln_u.weight",    "ln_u.bias",
                                       "attn.q.weight",   "attn.q.bias",   "attn.kv.weight", "attn.kv.bias",
                                       "attn.out.weight", "attn.out.bias", "ln_ff.weight",   "ln_ff.bias",
                                       "mlp.fc1.weight",  "mlp.fc1.bias",  "mlp.fc2.weight", "mlp.fc2.bias"};
  hier::ResampleConfig const cfg{.dim = 4, .factor = 3, .heads = 2};
  hier::AttentionUp::Module<cpu, float> rep(cfg);
  CHECK(param_names(rep) == names);
  // The linear query's projection (d -> k d) is "query.proj.*", after ln_s (the order it runs in).
  std::vector<std::string> with_query = names;
  with_query.insert(with_query.begin() + 2, {"query.proj.weight", "query.proj.bias"});
  hier::AttentionUpLinear::Module<cpu, float> lin(cfg);
  CHECK(param_names(lin) == with_query);
  nn::ParamStore<cpu, float> ps(lin);
  CHECK(ps.find("query.proj.weight").shape == Shape{12, 4});
}

TEST_CASE("attention_upsample: over data-dependent segments, cross-attention to the closed segments: gradients, steps") {
  // Row 0 closes segments at 0, 2, 3, 7; row 1 at 0, 4 (two padding segments).
  auto l = test::ragged_layout({{0, 2, 3, 7}, {0, 4}}, 9);
  hier::ResampleConfig cfg{.dim = 8, .factor = 1, .heads = 2, .mlp_hidden = 12, .segments = true};
  CHECK(test::check_ragged_upsample<hier::AttentionUpsample<cpu, double>, true>(cfg, l, 37) < 1e-12);
  cfg.factor = 3;  // linear-upsampling queries: one per offset into a segment, mod 3
  CHECK(test::check_ragged_upsample<LinearQueryUp<double>, true>(cfg, l, 41) < 1e-12);
  // Position t reads segments j <= J(t) only: changing summary j changes exactly the positions
  // whose newest closed segment is j or later, bit for bit elsewhere (padding summaries: none).
  cpu::Context ctx;
  cfg.factor = 1;
  hier::AttentionUpsample<cpu, float> m(cfg);
  nn::ParamStore<cpu, float> ps(m);
  test::randomize_params(ps, 6, 0.4);
  Workspace<cpu> ws(m.ragged_forward_workspace(2, 9, 4));
  auto res = test::random_tensor<float>(Shape{2, 9, 8}, 2);
  auto run = [&](Tensor<float, cpu> const& y) {
    Tensor<float, cpu> u(Shape{2, 9, 8});
    auto a = ws.arena();
    m.ragged_forward(ctx, y.cview(), res.cview(), l.up.cview(), u.view(), a);
    return std::vector<float>(u.data(), u.data() + u.numel());
  };
  auto const base = run(test::random_tensor<float>(Shape{2, 4, 8}, 1));
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t j = 0; j < 4; ++j) {
      auto y = test::random_tensor<float>(Shape{2, 4, 8}, 1);
      y.data()[(b * 4 + j) * 8 + 5] += 1.f;
      auto out = run(y);
      bool real = j < std::int64_t(l.emits[std::size_t(b)].size());
      for (std::int64_t r = 0; r < 2; ++r)
        for (std::int64_t t = 0; t < 9; ++t) {
          std::int64_t i = (r * 9 + t) * 8;
          bool same = std::equal(out.begin() + i, out.begin() + i + 8, base.begin() + i);
          CAPTURE(b);
          CAPTURE(j);
          CAPTURE(t);
          CHECK(same == !(r == b && real && l.segment_of(b, t) >= j));
        }
    }
  // With segments closing every k positions it is the numeric module (J(t) = floor(t / k)).
  for (bool linear : {false, true}) {
    CAPTURE(linear);
    hier::ResampleConfig fk{.dim = 8, .factor = 3, .heads = 2, .mlp_hidden = 12};
    auto fixed = test::ragged_layout({{0, 3, 6, 9}, {0, 3, 6, 9}}, 12);
    auto y = test::random_tensor<double>(Shape{2, 4, 8}, 3), r12 = test::random_tensor<double>(Shape{2, 12, 8}, 4);
    Tensor<double, cpu> u1(Shape{2, 12, 8}), u2(Shape{2, 12, 8});
    auto compare = [&](auto& mod) {
      nn::ParamStore<cpu, double> pd(mod);
      test::randomize_params(pd, 9, 0.4);
      Workspace<cpu> w2(mod.forward_workspace(2, 12) + mod.ragged_forward_workspace(2, 12, 4));
      auto a = w2.arena();
      mod.forward(ctx, y.cview(), r12.cview(), u1.view(), a);
      mod.ragged_forward(ctx, y.cview(), r12.cview(), fixed.up.cview(), u2.view(), a);
      double worst = 0;
      for (std::int64_t i = 0; i < u1.numel(); ++i) worst = std::max(worst, std::abs(u1.data()[i] - u2.data()[i]));
      CHECK(worst < 1e-13);
    };
    if (linear) {
      LinearQueryUp<double> mod(fk);
      compare(mod);
    } else {
      hier::AttentionUpsample<cpu, double> mod(fk);
      compare(mod);
    }
  }
  // The cached state holds one segment per input over segments, capacity / k + 1 otherwise; a
  // step that skips a segment is refused by name.
  auto st = m.make_step_state(2, 9);
  CHECK(st.cache.shape()[1] == 10);
  hier::ResampleConfig numeric = cfg;
  numeric.segments = false;
  numeric.factor = 3;
  CHECK(hier::AttentionUpsample<cpu, float>(numeric).make_step_state(2, 9).cache.shape()[1] == 4);
  Tensor<float, cpu> one(Shape{1, 1, 8});
  Workspace<cpu> sws(m.step_workspace(2, 9));
  auto sa = sws.arena();
  CHECK_THROWS_WITH_AS(m.ragged_step_up(ctx, st, 0, one.cview(), one.view(), sa), doctest::Contains("no closed segment"),
                       Error);
  CHECK_THROWS_WITH_AS(m.ragged_step_short(ctx, st, 0, one.cview(), 2, sa), doctest::Contains("closes segment 2 after 0"),
                       Error);
  static_assert(hier::RaggedUpsample<hier::AttentionUp, cpu, float>);
  static_assert(hier::RaggedUpsample<hier::AttentionUpLinear, cpu, float>);
}

}  // namespace HSEQ_TEST_UNIT
