// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/nn/transformer_block.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using Block = nn::TransformerBlock<cpu, double>;
using BlockF = nn::TransformerBlock<cpu, float>;

TEST_CASE("gradcheck: TransformerBlock (input and all 14 parameters)") {
  cpu::Context ctx;
  for (auto mask : {nn::AttentionMask::causal(), nn::AttentionMask::none()}) {
    CAPTURE(mask);
    Block m({.dim = 8, .heads = 2, .mlp_hidden = 12, .mask = mask});
    nn::ParamStore<cpu, double> ps(m);
    REQUIRE(ps.entries().size() == 14);
    test::randomize_params(ps, 21, 0.4);
    auto x = random_tensor(Shape{2, 5, 8}, 1), dx = random_tensor(Shape{2, 5, 8}, 0);
    auto r = random_tensor(Shape{2, 5, 8}, 2);
    Tensor<double, cpu> y(Shape{2, 5, 8});
    std::size_t plan = m.forward_workspace(2, 5) + m.backward_workspace(2, 5);
    Workspace<cpu> ws(plan);
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), y.view(), a);
      return test::dot(y.cview(), r.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), y.view(), a);
      CHECK(a.used() == m.forward_workspace(2, 5));
      m.backward(ctx, s, r.cview(), dx.view(), a);
      CHECK(a.high_water() == plan);
    };
    test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
  }
}

TEST_CASE("gradcheck: TransformerBlock with a memory prefix") {
  cpu::Context ctx;
  Block m({.dim = 6, .heads = 3, .mlp_hidden = 8});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.4);
  auto x = random_tensor(Shape{2, 4, 6}, 1), dx = random_tensor(Shape{2, 4, 6}, 0);
  auto mem = random_tensor(Shape{2, 3, 6}, 3), dmem = random_tensor(Shape{2, 3, 6}, 0);
  auto r = random_tensor(Shape{2, 4, 6}, 2);
  Tensor<double, cpu> y(Shape{2, 4, 6});
  Workspace<cpu> ws(m.forward_workspace(2, 4, 3) + m.backward_workspace(2, 4, 3));
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a, mem.cview());
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a, mem.cview());
    m.backward(ctx, s, r.cview(), dx.view(), a, dmem.view());
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).input("mem", mem.view(), dmem.view()).run(loss, grads);
}

TEST_CASE("transformer_block: causal block is causal by perturbation") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 67, d = 16;  // 67 > one 64-row query block
  BlockF m({.dim = d, .heads = 4});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  auto run = [&](Tensor<float, cpu> const& x) {
    Tensor<float, cpu> y(x.shape());
    Workspace<cpu> ws(m.forward_workspace(bsz, t));
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return std::vector<float>(y.data(), y.data() + y.numel());
  };
  auto base = run(random_tensor<float>(Shape{bsz, t, d}, 4));
  for (std::int64_t pos : {0, 1, 31, 63, 64, 66}) {
    CAPTURE(pos);
    auto x = random_tensor<float>(Shape{bsz, t, d}, 4);
    for (std::int64_t b = 0; b < bsz; ++b) x.data()[(b * t + pos) * d + 3] += 2.0f;
    auto out = run(x);
    // Rows before pos must be bit-identical; every row from pos on must move. Row pos moves through
    // its residual alone, row pos + 1 on only through attention to pos, so those pin the mask.
    std::int64_t before_moved = 0, after_unmoved = 0;
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < t; ++i) {
        bool moved = false;
        for (std::int64_t j = 0; j < d; ++j) {
          std::size_t k = std::size_t((b * t + i) * d + j);
          moved = moved || out[k] != base[k];
        }
        if (i < pos) before_moved += moved;
        else after_unmoved += !moved;
      }
    CHECK(before_moved == 0);
    CHECK(after_unmoved == 0);
  }
}

TEST_CASE("transformer_block: bad configuration and shapes") {
  CHECK_THROWS_WITH_AS(BlockF({.dim = 12, .heads = 5}), doctest::Contains("heads 5"), Error);
  cpu::Context ctx;
  BlockF m({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{2, 3, 8}), y(Shape{2, 4, 8});
  Workspace<cpu> ws(1 << 20);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), y.view(), a), doctest::Contains("[2, 4, 8]"), Error);
}

}  // namespace HSEQ_TEST_UNIT
