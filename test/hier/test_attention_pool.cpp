// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/ragged_policy.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
template <class T>
using LinearQueryPool = hier::AttentionPoolShorten<cpu, T, hier::LinearPool>;

/// Short position i of module M (k 3, L 12) depends on shifted positions <= i k + k - 1 only: a
/// change at a later position leaves row i bit-identical, a change at a visible one changes it.
template <class M>
void check_pool_causality(bool randomize) {
  cpu::Context ctx;
  std::int64_t const k = 3, len = 12, d = 8;
  M m({.dim = d, .factor = k, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 4);
  if (randomize) test::randomize_params(ps, 4, 0.3);
  Workspace<cpu> ws(m.forward_workspace(1, len));
  auto run = [&](Tensor<float, cpu> const& x) {
    Tensor<float, cpu> y(Shape{1, len / k, d});
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return std::vector<float>(y.data(), y.data() + y.numel());
  };
  auto base = run(test::random_tensor<float>(Shape{1, len, d}, 1));
  for (std::int64_t p = 0; p < len; ++p) {
    auto x = test::random_tensor<float>(Shape{1, len, d}, 1);
    x.data()[p * d] += 1.f;
    auto out = run(x);
    for (std::int64_t i = 0; i < len / k; ++i) {
      bool same = true;
      for (std::int64_t j = 0; j < d; ++j) same &= out[std::size_t(i * d + j)] == base[std::size_t(i * d + j)];
      CAPTURE(p);
      CAPTURE(i);
      CHECK(same == (p > i * k + k - 1));
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

TEST_CASE("gradcheck: AttentionPoolShorten (input and all parameters)") {
  test::check_shorten<hier::AttentionPoolShorten<cpu, double>>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6}, 2,
                                                                  6);
}

TEST_CASE("attention_pool: short position i depends only on shifted positions <= i k + k - 1") {
  check_pool_causality<hier::AttentionPoolShorten<cpu, float>>(false);
}

TEST_CASE("gradcheck: AttentionPoolShorten, non-causal (input and all parameters)") {
  test::check_shorten<hier::AttentionPoolShorten<cpu, double>>(
      {.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6, .causal = false}, 2, 6);
}

TEST_CASE("attention_pool: non-causal, every short position depends on every position; causal does not") {
  cpu::Context ctx;
  std::int64_t const k = 3, len = 12, d = 8, ls = len / k;
  hier::AttentionPoolShorten<cpu, double> causal({.dim = d, .factor = k, .heads = 2});
  hier::AttentionPoolShorten<cpu, double> bidir({.dim = d, .factor = k, .heads = 2, .causal = false});
  nn::ParamStore<cpu, double> ps_c(causal), ps_b(bidir);
  ps_c.init(ctx, 4);
  ps_b.init(ctx, 4);
  test::randomize_params(ps_c, 7);
  test::randomize_params(ps_b, 7);  // same seed, same layout: identical parameters
  Workspace<cpu> ws(bidir.forward_workspace(1, len));
  auto run = [&](auto const& m, Tensor<double, cpu> const& x) {
    Tensor<double, cpu> y(Shape{1, ls, d});
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return std::vector<double>(y.data(), y.data() + y.numel());
  };
  auto x0 = test::random_tensor<double>(Shape{1, len, d}, 1);
  auto base_b = run(bidir, x0), base_c = run(causal, x0);
  // Value: the last short query sees every position under both masks, so the two agree there
  // exactly (same parameters, same arithmetic); earlier rows differ.
  for (std::int64_t j = 0; j < d; ++j) CHECK(base_b[std::size_t((ls - 1) * d + j)] == base_c[std::size_t((ls - 1) * d + j)]);
  double first_diff = 0;
  for (std::int64_t j = 0; j < d; ++j) first_diff = std::max(first_diff, std::abs(base_b[std::size_t(j)] - base_c[std::size_t(j)]));
  CHECK(first_diff > 1e-6);
  for (std::int64_t p = 0; p < len; ++p) {
    auto x = test::random_tensor<double>(Shape{1, len, d}, 1);
    x.data()[p * d] += 1.0;
    auto out_b = run(bidir, x), out_c = run(causal, x);
    for (std::int64_t i = 0; i < ls; ++i) {
      bool same_b = true, same_c = true;
      for (std::int64_t j = 0; j < d; ++j) {
        same_b &= out_b[std::size_t(i * d + j)] == base_b[std::size_t(i * d + j)];
        same_c &= out_c[std::size_t(i * d + j)] == base_c[std::size_t(i * d + j)];
      }
      CAPTURE(p);
      CAPTURE(i);
      CHECK(!same_b);                            // a later position DOES change an earlier output
      CHECK(same_c == (p > i * k + k - 1));      // ... and only the visible ones under the causal mask
    }
  }
  CHECK_THROWS_AS(bidir.make_step_state(1, len), Error);
}

// ---------------------------------------------------------------------------------------------
// The query source: AvgPool (AttentionPool, unchanged) or LinearPool (AttentionPoolLinear).

TEST_CASE("gradcheck: AttentionPoolShorten with linear-pooling queries (input and all parameters, query.proj too)") {
  test::check_shorten<LinearQueryPool<double>>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6}, 2, 6);
  test::check_shorten<LinearQueryPool<double>>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6}, 1, 8);
  test::check_shorten<LinearQueryPool<double>>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6, .causal = false},
                                               2, 6);
}

TEST_CASE("attention_pool: linear-pooling queries, short position i depends only on shifted positions <= i k + k - 1") {
  check_pool_causality<LinearQueryPool<float>>(true);
}

TEST_CASE("attention_pool: cached steps (step_input, step_pool) equal the forward row by row, both query sources") {
  auto check = [](auto& m, std::int64_t bsz, std::int64_t len) {
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 23, 0.4);
    CAPTURE(m.config().factor);
    CAPTURE(len);
    CHECK(test::shorten_steps_vs_forward(m, bsz, len, 5) < 1e-12);
  };
  for (std::int64_t k : {1, 2, 3}) {
    hier::AttentionPoolShorten<cpu, double> avg({.dim = 8, .factor = k, .heads = 2, .mlp_hidden = 12});
    LinearQueryPool<double> lin({.dim = 8, .factor = k, .heads = 2, .mlp_hidden = 12});
    check(avg, 2, 4 * k);
    check(lin, 2, 4 * k);
    check(lin, 1, 5 * k);
  }
}

TEST_CASE("attention_pool: the policy tags, and the parameter names (the default's are those it always had)") {
  static_assert(std::is_same_v<hier::AttentionPool, hier::AttentionPoolWith<hier::AvgPool>>);
  static_assert(std::is_same_v<hier::AttentionPoolLinear, hier::AttentionPoolWith<hier::LinearPool>>);
  static_assert(std::is_same_v<hier::AttentionPool::Module<cpu, float>, hier::AttentionPoolShorten<cpu, float>>);
  static_assert(hier::kAttentionResampling<hier::AttentionPool> && hier::kAttentionResampling<hier::AttentionPoolLinear>);
  static_assert(!hier::kAttentionResampling<hier::AvgPool> && !hier::kAttentionResampling<hier::LinearPool>);
  CHECK(std::string(hier::AttentionPool::kName) == "attention");
  CHECK(std::string(hier::AttentionPoolLinear::kName) == "attention_linear");
  // The names of a checkpoint of AttentionPool (test/fixtures/checkpoint_v1_hourglass.safetensors).
  std::vector<std::string> const names{"ln_in.weight",    "ln_in.bias",    "ln_q.weight",    "ln_q.bias",
                                       "attn.q.weight",   "attn.q.bias",   "attn.kv.weight", "attn.kv.bias",
                                       "attn.out.weight", "attn.out.bias", "ln_ff.weight",   "ln_ff.bias",
                                       "mlp.fc1.weight",  "mlp.fc1.bias",  "mlp.fc2.weight", "mlp.fc2.bias"};
  hier::ResampleConfig const cfg{.dim = 4, .factor = 3, .heads = 2};
  hier::AttentionPool::Module<cpu, float> avg(cfg);
  CHECK(param_names(avg) == names);
  // The linear query's projection (k d -> d) is "query.proj.*", after ln_in (the order it runs in).
  std::vector<std::string> with_query = names;
  with_query.insert(with_query.begin() + 2, {"query.proj.weight", "query.proj.bias"});
  hier::AttentionPoolLinear::Module<cpu, float> lin(cfg);
  CHECK(param_names(lin) == with_query);
  nn::ParamStore<cpu, float> ps(lin);
  CHECK(ps.find("query.proj.weight").shape == Shape{4, 12});
}

TEST_CASE("attention_pool: over data-dependent segments, attention over each segment's bytes: gradients, steps, locality") {
  // Row 0 closes segments at 0, 3, 4, 8 (position 9 is open); row 1 at 0, 5 (two padding segments).
  auto l = test::ragged_layout({{0, 3, 4, 8}, {0, 5}}, 10);
  hier::ResampleConfig cfg{.dim = 8, .factor = 1, .heads = 2, .mlp_hidden = 12};
  CHECK(test::check_ragged_shorten<hier::AttentionPoolShorten<cpu, double>>(cfg, l, 31) < 1e-12);
  // Segment j reads x at (e_{j-1}, e_j] only: a change there changes y_j alone, bit for bit elsewhere
  // (a padding segment reads nothing new; the open position 9 changes nothing).
  cpu::Context ctx;
  hier::AttentionPoolShorten<cpu, float> m(cfg);
  nn::ParamStore<cpu, float> ps(m);
  test::randomize_params(ps, 5, 0.4);
  Workspace<cpu> ws(m.ragged_forward_workspace(2, 10, 4));
  auto run = [&](Tensor<float, cpu> const& x) {
    Tensor<float, cpu> y(Shape{2, 4, 8});
    auto a = ws.arena();
    m.ragged_forward(ctx, x.cview(), l.pool.cview(), y.view(), a);
    return std::vector<float>(y.data(), y.data() + y.numel());
  };
  auto const base = run(test::random_tensor<float>(Shape{2, 10, 8}, 1));
  for (std::int64_t p = 0; p < 10; ++p) {
    auto x = test::random_tensor<float>(Shape{2, 10, 8}, 1);
    x.data()[p * 8 + 3] += 1.f;  // row 0, position p
    auto out = run(x);
    std::int64_t owner = p == 0 ? 0 : p <= 3 ? 1 : p == 4 ? 2 : p <= 8 ? 3 : -1;
    for (std::int64_t j = 0; j < 8; ++j) {  // (rows 0 and 1)
      bool same = std::equal(out.begin() + j * 8, out.begin() + j * 8 + 8, base.begin() + j * 8);
      CAPTURE(p);
      CAPTURE(j);
      CHECK(same == (j != owner));
    }
  }
  // One segment over a whole row is the non-causal module with the row as its one window.
  hier::ResampleConfig whole{.dim = 8, .factor = 6, .heads = 2, .mlp_hidden = 12, .causal = false};
  hier::AttentionPoolShorten<cpu, double> nc(whole), rg(whole);
  nn::ParamStore<cpu, double> pn(nc), pr(rg);
  test::randomize_params(pn, 8, 0.4);
  test::randomize_params(pr, 8, 0.4);
  auto x = test::random_tensor<double>(Shape{1, 6, 8}, 2);
  Tensor<double, cpu> y1(Shape{1, 1, 8}), y2(Shape{1, 1, 8});
  Tensor<std::int32_t, cpu> end(Shape{1});
  end.data()[0] = 5;
  Workspace<cpu> w2(nc.forward_workspace(1, 6) + rg.ragged_forward_workspace(1, 6, 1));
  auto a = w2.arena();
  nc.forward(ctx, x.cview(), y1.view(), a);
  rg.ragged_forward(ctx, x.cview(), end.cview(), y2.view(), a);
  for (int i = 0; i < 8; ++i) CHECK(y1.data()[i] == doctest::Approx(y2.data()[i]).epsilon(1e-13));
  // Segment ends outside their row, or going back, are refused by name.
  end.data()[0] = 6;
  CHECK_THROWS_WITH_AS(rg.ragged_forward(ctx, x.cview(), end.cview(), y2.view(), a),
                       doctest::Contains("outside its 6 positions"), Error);
  // Linear-pooling queries have no form over segments (LinearPool has none).
  static_assert(hier::RaggedShorten<hier::AttentionPool, cpu, float>);
  static_assert(!hier::RaggedShorten<hier::AttentionPoolLinear, cpu, float>);
}

}  // namespace HSEQ_TEST_UNIT
