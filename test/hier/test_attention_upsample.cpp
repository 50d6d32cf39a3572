// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/attention_upsample.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: AttentionUpsample (short input, residual and all parameters)") {
  test::check_upsample<hier::AttentionUpsample<cpu, double>, true>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6},
                                                                    2, 3);
}

TEST_CASE("attention_upsample: full-rate position p depends only on short positions <= floor(p / k)") {
  cpu::Context ctx;
  std::int64_t const k = 4, ls = 4, d = 8;
  hier::AttentionUpsample<cpu, float> m({.dim = d, .factor = k, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 4);
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

}  // namespace HSEQ_TEST_UNIT
