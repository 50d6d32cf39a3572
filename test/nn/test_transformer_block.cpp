// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

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

TEST_CASE("gradcheck: TransformerBlock with every dropout active (input, memory, all 14 parameters)") {
  cpu::Context ctx;
  for (auto mask : {nn::AttentionMask::causal(), nn::AttentionMask::none()}) {
    CAPTURE(mask);
    Block m({.dim = 6, .heads = 3, .mlp_hidden = 8, .mask = mask, .attn_dropout = 0.3, .resid_dropout = 0.2,
             .ff_dropout = 0.25});
    nn::ParamStore<cpu, double> ps(m);
    REQUIRE(ps.entries().size() == 14);
    test::randomize_params(ps, 5, 0.4);
    auto x = random_tensor(Shape{2, 4, 6}, 1), dx = random_tensor(Shape{2, 4, 6}, 0);
    auto mem = random_tensor(Shape{2, 3, 6}, 3), dmem = random_tensor(Shape{2, 3, 6}, 0);
    auto r = random_tensor(Shape{2, 4, 6}, 2);
    Tensor<double, cpu> y(Shape{2, 4, 6});
    std::size_t plan = m.forward_workspace(2, 4, 3) + m.backward_workspace(2, 4, 3);
    Workspace<cpu> ws(plan);
    nn::DropoutStream const drop{77, 1, true};
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), y.view(), a, mem.cview(), drop);
      return test::dot(y.cview(), r.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), y.view(), a, mem.cview(), drop);
      CHECK(a.used() == m.forward_workspace(2, 4, 3));
      m.backward(ctx, s, r.cview(), dx.view(), a, dmem.view());
      CHECK(a.high_water() == plan);  // dropout needs no workspace beyond the plan
    };
    test::GradCheck(ps).input("x", x.view(), dx.view()).input("mem", mem.view(), dmem.view()).run(loss, grads);
  }
}

namespace {
/// One forward + backward of a float block on fixed inputs: the output, the input gradient, the
/// parameter gradients and the two residual branches as dropped (x1 - x and y - x1).
struct BlockRun {
  std::vector<float> y, dx, grads, attn_branch, mlp_branch;
};
BlockRun run_block(BlockF::Config c, nn::DropoutStream drop) {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 40, d = 32;
  c.dim = d;
  c.heads = 4;
  BlockF m(c);
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 8);
  ps.zero_grad(ctx);
  auto x = random_tensor<float>(Shape{bsz, t, d}, 9), r = random_tensor<float>(Shape{bsz, t, d}, 10);
  Tensor<float, cpu> y(x.shape()), dx(x.shape());
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  auto a = ws.arena();
  auto s = m.forward(ctx, x.cview(), y.view(), a, {}, drop);
  BlockRun out;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    out.attn_branch.push_back(s.x1.data[i] - x.data()[i]);
    out.mlp_branch.push_back(y.data()[i] - s.x1.data[i]);
  }
  m.backward(ctx, s, r.cview(), dx.view(), a);
  auto g = ps.grads();
  out.y.assign(y.data(), y.data() + y.numel());
  out.dx.assign(dx.data(), dx.data() + dx.numel());
  out.grads.assign(g.data, g.data + g.numel());
  return out;
}
}  // namespace

TEST_CASE("transformer_block dropout: inactive or all rates 0 is bit-identical to the block without dropout") {
  BlockF::Config const plain_cfg{.mlp_hidden = 48};
  BlockF::Config rated = plain_cfg;
  rated.attn_dropout = 0.2;
  rated.resid_dropout = 0.2;
  rated.ff_dropout = 0.2;
  BlockRun const plain = run_block(plain_cfg, {});
  for (auto [cfg, drop] : {std::pair{rated, nn::DropoutStream{}}, std::pair{rated, nn::DropoutStream{3, 4, false}},
                           std::pair{plain_cfg, nn::DropoutStream{3, 4, true}}}) {
    BlockRun const o = run_block(cfg, drop);
    CHECK(o.y == plain.y);
    CHECK(o.dx == plain.dx);
    CHECK(o.grads == plain.grads);
  }
}

TEST_CASE("transformer_block dropout: each rate acts; residual masks keep 1 - p, differ by site and by stream") {
  BlockF::Config const plain_cfg{.mlp_hidden = 48};
  nn::DropoutStream const drop{3, 4, true};
  BlockRun const plain = run_block(plain_cfg, drop);
  // Each site alone changes the output (and backward runs with it).
  for (int site = 0; site < 3; ++site) {
    CAPTURE(site);
    BlockF::Config c = plain_cfg;
    (site == 0 ? c.attn_dropout : site == 1 ? c.resid_dropout : c.ff_dropout) = 0.2;
    BlockRun const o = run_block(c, drop);
    CHECK(o.y != plain.y);
    CHECK(o.grads != plain.grads);
  }
  // Residual dropout alone: each branch is zero exactly where its mask drops, about p of it, and
  // the two branches' masks (two sites) and another stream's masks are independent.
  double const p = 0.3;
  BlockF::Config c = plain_cfg;
  c.resid_dropout = p;
  BlockRun const a = run_block(c, drop), b = run_block(c, {3, 5, true});
  auto dropped = [](std::vector<float> const& v) {
    std::vector<bool> z;
    for (float e : v) z.push_back(e == 0.0f);
    return z;
  };
  auto za = dropped(a.attn_branch), zm = dropped(a.mlp_branch), zb = dropped(b.attn_branch);
  double const n = double(za.size()), sd = std::sqrt(p * (1 - p) / n);
  auto fraction = [&](std::vector<bool> const& z) { return double(std::count(z.begin(), z.end(), true)) / n; };
  auto disagree = [&](std::vector<bool> const& u, std::vector<bool> const& v) {
    std::int64_t k = 0;
    for (std::size_t i = 0; i < u.size(); ++i) k += u[i] != v[i];
    return double(k) / n;
  };
  CHECK(std::abs(fraction(za) - p) < 5 * sd);
  CHECK(std::abs(fraction(zm) - p) < 5 * sd);
  CHECK(fraction(dropped(plain.attn_branch)) < 0.01);  // without dropout the branches are (almost) never 0
  CHECK(disagree(za, zm) > p * (1 - p));  // 2 p (1 - p) expected for independent masks
  CHECK(disagree(za, zb) > p * (1 - p));
}

TEST_CASE("transformer_block dropout: forward_step never drops") {
  cpu::Context ctx;
  std::int64_t const bsz = 1, t = 5, d = 8;
  BlockF with({.dim = d, .heads = 2, .attn_dropout = 0.5, .resid_dropout = 0.5, .ff_dropout = 0.5});
  BlockF without({.dim = d, .heads = 2});
  nn::ParamStore<cpu, float> pw(with), po(without);
  pw.init(ctx, 2);
  po.init(ctx, 2);
  auto x = random_tensor<float>(Shape{bsz, t, d}, 3);
  Tensor<float, cpu> cw(with.cache_shape(bsz, t)), co(without.cache_shape(bsz, t)), yw(x.shape()), yo(x.shape());
  Workspace<cpu> ws(with.step_workspace(bsz, t, 0));
  auto a = ws.arena();
  with.forward_step(ctx, x.cview(), cw.view(), 0, yw.view(), a);
  without.forward_step(ctx, x.cview(), co.view(), 0, yo.view(), a);
  CHECK(std::equal(yw.data(), yw.data() + yw.numel(), yo.data()));
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
  CHECK_THROWS_WITH_AS(BlockF({.dim = 8, .heads = 2, .resid_dropout = 1.0}), doctest::Contains("resid_dropout 1"),
                       Error);
  CHECK_THROWS_WITH_AS(BlockF({.dim = 8, .heads = 2, .attn_dropout = -0.1}), doctest::Contains("attn_dropout"), Error);
  CHECK_THROWS_WITH_AS(BlockF({.dim = 8, .heads = 2, .ff_dropout = 1.5}), doctest::Contains("ff_dropout"), Error);
  cpu::Context ctx;
  BlockF m({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{2, 3, 8}), y(Shape{2, 4, 8});
  Workspace<cpu> ws(1 << 20);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), y.view(), a), doctest::Contains("[2, 4, 8]"), Error);
}

}  // namespace HSEQ_TEST_UNIT
