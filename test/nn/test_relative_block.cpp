// SPDX-License-Identifier: MIT
// nn::RelativeBlock (the pre-LN Transformer-XL block): gradients of the input and of every parameter
// (the memory's path included, the memory itself held fixed), causality within the segment, the
// memory's influence, the workspace plan and bad inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/relative_block.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using Block = nn::RelativeBlock<cpu, double>;
using CViewD = View<double const, HostSpace>;

namespace {

Block make_block(std::int64_t clamp_len = 0) {
  return Block({.dim = 8, .heads = 2, .mlp_hidden = 12, .clamp_len = clamp_len});
}

/// y of a forward on a fresh workspace.
std::vector<double> run(Block const& m, Tensor<double, cpu> const& x, Tensor<double, cpu> const* mem) {
  cpu::Context ctx;
  std::int64_t const tm = mem ? mem->shape()[1] : 0;
  Workspace<cpu> ws(m.forward_workspace(x.shape()[0], x.shape()[1], tm));
  auto a = ws.arena();
  Tensor<double, cpu> y(x.shape());
  m.forward(ctx, x.cview(), mem ? mem->cview() : CViewD{}, y.view(), a);
  return std::vector<double>(y.data(), y.data() + y.numel());
}

}  // namespace

TEST_CASE("RelativeBlock: gradients of the input and every parameter, with and without a memory (memory fixed)") {
  for (std::int64_t tm : {std::int64_t(0), std::int64_t(3)})
    for (std::int64_t clamp : {std::int64_t(0), std::int64_t(2)}) {
      INFO("memory ", tm, ", clamp_len ", clamp);
      cpu::Context ctx;
      std::int64_t const bsz = 2, t = 4, d = 8;
      Block m = make_block(clamp);
      nn::ParamStore<cpu, double> ps(m);
      test::randomize_params(ps, 21);
      auto x = random_tensor(Shape{bsz, t, d}, 1), dx = random_tensor(Shape{bsz, t, d}, 0);
      auto mem = random_tensor(Shape{bsz, tm, d}, 3), r = random_tensor(Shape{bsz, t, d}, 2);
      Tensor<double, cpu> y(Shape{bsz, t, d});
      std::size_t const plan = m.forward_workspace(bsz, t, tm) + m.backward_workspace(bsz, t, tm);
      Workspace<cpu> ws(plan);
      CViewD memv = tm > 0 ? mem.cview() : CViewD{};
      auto loss = [&] {
        auto a = ws.arena();
        m.forward(ctx, x.cview(), memv, y.view(), a);
        return test::dot(y.cview(), r.cview());
      };
      auto grads = [&] {
        auto a = ws.arena();
        auto s = m.forward(ctx, x.cview(), memv, y.view(), a);
        m.backward(ctx, s, r.cview(), dx.view(), a);
        CHECK(a.high_water() == plan);
      };
      test::GradCheck gc(ps);
      gc.input("x", x.view(), dx.view());
      gc.run(loss, grads);
    }
}

TEST_CASE("RelativeBlock: causal within the segment; the memory reaches every position") {
  Block m = make_block();
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5);
  std::int64_t const bsz = 2, t = 6, d = 8, tm = 4;
  auto x = random_tensor(Shape{bsz, t, d}, 7), mem = random_tensor(Shape{bsz, tm, d}, 8);
  auto base = run(m, x, &mem);
  // Changing position p of row 1 leaves rows 0..p-1 (and row 0 of the batch) bit-identical and changes p..T-1.
  for (std::int64_t p : {std::int64_t(0), std::int64_t(3), t - 1}) {
    auto x2 = random_tensor(Shape{bsz, t, d}, 7);  // the same draws as x
    x2.data()[(1 * t + p) * d + 2] += 0.5;
    auto y2 = run(m, x2, &mem);
    std::int64_t before_changed = 0, after_same = 0;
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < t; ++i) {
        bool same = true;
        for (std::int64_t c = 0; c < d; ++c) same &= y2[std::size_t((b * t + i) * d + c)] == base[std::size_t((b * t + i) * d + c)];
        if (b == 0 || i < p) before_changed += !same;
        else after_same += same;
      }
    CHECK(before_changed == 0);
    CHECK(after_same == 0);  // information flows forward to every later position
  }
  // The memory: one changed memory row of row 1 changes every position of row 1 and nothing of row 0.
  auto mem2 = random_tensor(Shape{bsz, tm, d}, 8);  // the same draws as mem
  mem2.data()[(1 * tm + 0) * d + 1] += 0.5;
  auto y3 = run(m, x, &mem2);
  std::int64_t row0_changed = 0, row1_same = 0;
  for (std::int64_t i = 0; i < t; ++i) {
    bool same0 = true, same1 = true;
    for (std::int64_t c = 0; c < d; ++c) {
      same0 &= y3[std::size_t(i * d + c)] == base[std::size_t(i * d + c)];
      same1 &= y3[std::size_t((t + i) * d + c)] == base[std::size_t((t + i) * d + c)];
    }
    row0_changed += !same0;
    row1_same += same1;
  }
  CHECK(row0_changed == 0);
  CHECK(row1_same == 0);
}

TEST_CASE("RelativeBlock: the memory's gradient when asked for (BPTT into a compressor), and the key mass") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 3, d = 8, tm = 4;
  Block m = make_block(3);
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 22);
  auto x = random_tensor(Shape{bsz, t, d}, 1), dx = random_tensor(Shape{bsz, t, d}, 0);
  auto mem = random_tensor(Shape{bsz, tm, d}, 3), dmem = random_tensor(Shape{bsz, tm, d}, 0);
  auto r = random_tensor(Shape{bsz, t, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, t, d});
  std::size_t const plan = m.forward_workspace(bsz, t, tm) + m.backward_workspace(bsz, t, tm);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), mem.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), mem.cview(), y.view(), a);
    m.backward(ctx, s, r.cview(), dx.view(), a, dmem.view());
  };
  test::GradCheck gc(ps);
  gc.input("x", x.view(), dx.view());
  gc.input("mem", mem.view(), dmem.view());
  gc.run(loss, grads);
  // The key mass: every query's weights sum to one, so each head's masses sum to T.
  Tensor<double, cpu> mass(Shape{bsz, 2, tm + t});
  auto a = ws.arena();
  m.forward(ctx, x.cview(), mem.cview(), y.view(), a, mass.view());
  for (std::int64_t bh = 0; bh < bsz * 2; ++bh) {
    double sum = 0;
    for (std::int64_t j = 0; j < tm + t; ++j) sum += mass.data()[bh * (tm + t) + j];
    CHECK(sum == doctest::Approx(double(t)).epsilon(1e-12));
  }
  // The last key (the segment's last row) is visible to the last query only.
  CHECK(mass.data()[tm + t - 1] > 0);
}

TEST_CASE("RelativeBlock: content attention over other rows (attention reconstruction): the rows' gradient, no other") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 3, d = 8, n = 4;
  Block m = make_block();
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 23);
  auto x = random_tensor(Shape{bsz, t, d}, 1), rows = random_tensor(Shape{bsz, n, d}, 4),
       drows = random_tensor(Shape{bsz, n, d}, 0), r = random_tensor(Shape{bsz, t, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, t, d}), a(Shape{bsz, t, d});
  std::size_t const plan = m.forward_workspace(bsz, t, 0) + m.content_workspace(bsz, t, n) +
                           m.content_backward_workspace(bsz, t, n);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto ar = ws.arena();
    auto s = m.forward(ctx, x.cview(), CViewD{}, y.view(), ar);
    m.content_forward(ctx, s, rows.cview(), a.view(), ar);
    return test::dot(a.cview(), r.cview());
  };
  auto grads = [&] {
    auto ar = ws.arena();
    auto s = m.forward(ctx, x.cview(), CViewD{}, y.view(), ar);
    auto c = m.content_forward(ctx, s, rows.cview(), a.view(), ar);
    m.content_backward(ctx, c, a.cview(), r.cview(), drows.view(), ar);
    CHECK(ar.high_water() <= plan);
  };
  test::GradCheck gc;  // the rows only: the parameters are held fixed
  gc.input("rows", rows.view(), drows.view());
  gc.run(loss, grads);
  ps.zero_grad(ctx);
  grads();
  double g = 0;
  for (auto const& e : ps.entries())
    for (std::int64_t i = 0; i < e.param->grad.numel(); ++i) g += std::abs(e.param->grad.data[i]);
  CHECK(g == 0.0);
}

TEST_CASE("RelativeBlock: bad shapes and configurations are named") {
  cpu::Context ctx;
  CHECK_THROWS_WITH_AS(Block({.dim = 6, .heads = 4}), doctest::Contains("heads 4"), Error);
  Block m = make_block();
  Workspace<cpu> ws(m.forward_workspace(2, 3, 2));
  auto a = ws.arena();
  auto x = random_tensor(Shape{2, 3, 8}, 1), mem = random_tensor(Shape{1, 2, 8}, 2);
  Tensor<double, cpu> y(Shape{2, 3, 8});
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), mem.cview(), y.view(), a), doctest::Contains("memory [1, 2, 8]"), Error);
  auto xb = random_tensor(Shape{2, 3, 7}, 1);
  Tensor<double, cpu> yb(Shape{2, 3, 7});
  CHECK_THROWS_WITH_AS(m.forward(ctx, xb.cview(), CViewD{}, yb.view(), a), doctest::Contains("RelativeBlock(dim 8)"), Error);
}

}  // namespace HSEQ_TEST_UNIT
