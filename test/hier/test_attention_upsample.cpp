// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/attention_upsample.hpp"
#include "resample_check.hpp"

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
