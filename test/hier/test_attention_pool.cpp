// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/attention_pool.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: AttentionPoolShorten (input and all parameters)") {
  test::check_shorten<hier::AttentionPoolShorten<cpu, double>>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6}, 2,
                                                                  6);
}

TEST_CASE("attention_pool: short position i depends only on shifted positions <= i k + k - 1") {
  cpu::Context ctx;
  std::int64_t const k = 3, len = 12, d = 8;
  hier::AttentionPoolShorten<cpu, float> m({.dim = d, .factor = k, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 4);
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

}  // namespace HSEQ_TEST_UNIT
