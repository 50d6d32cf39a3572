// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/attention_pool.hpp"
#include "resample_check.hpp"

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
