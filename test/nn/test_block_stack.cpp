// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "hseq/nn/block_stack.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/mlp.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using Stack = nn::BlockStack<cpu, double>;

namespace {

/// A second backbone policy for the stack: y = x + Mlp(LN(x)), position-wise, so its cached step
/// keeps no state (its cache is one unused element). Shows that the stack is generic over the block.
template <Backend B, class T>
class MlpBlock {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  struct Config {
    std::int64_t dim = 0, hidden = 0;
  };
  struct Saved {
    typename nn::LayerNorm<B, T>::Saved ln;
    typename nn::Mlp<B, T>::Saved mlp;
    MView h;  // [B, T, dim] LN(x)
  };
  explicit MlpBlock(Config c) : cfg_(c), ln_({c.dim}), mlp_({c.dim, c.hidden}) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    ln_.visit_params(f, prefix + "ln.");
    mlp_.visit_params(f, prefix + "mlp.");
  }
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t n = batch * t;
    return aligned_bytes<T>(n * cfg_.dim) + ln_.forward_workspace(n) + mlp_.forward_workspace(n);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    return aligned_bytes<T>(batch * t * cfg_.dim) + mlp_.backward_workspace(batch * t);
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t) const {
    return forward_workspace(batch, n);
  }
  Shape cache_shape(std::int64_t, std::int64_t) const { return Shape{1}; }
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const {
    Saved s;
    s.h = ws.template take<T>(x.shape, "mlp_block.h");
    s.ln = ln_.forward(ctx, x, s.h, ws);
    s.mlp = mlp_.forward(ctx, s.h, y, ws);
    ops::axpy<T>(ctx, T(1), x, y);
    return s;
  }
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView dh = ws.template take<T>(dy.shape, "mlp_block.dh");
    mlp_.backward(ctx, s.mlp, dy, dh, ws);
    ln_.backward(ctx, s.ln, dh, dx, ws);
    ops::axpy<T>(ctx, T(1), dy, dx);
  }
  void forward_step(Ctx& ctx, CView x, MView /*cache*/, std::int64_t /*pos*/, MView y, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    forward(ctx, x, y, ws);
  }

 private:
  Config cfg_;
  nn::LayerNorm<B, T> ln_;
  nn::Mlp<B, T> mlp_;
};

static_assert(nn::BackbonePolicy<MlpBlock<cpu, double>, cpu, double>);
// Only blocks whose forward takes (mem, drop) get the stack's dropout stream.
static_assert(nn::BackboneWithDropout<nn::TransformerBlock<cpu, double>, cpu, double>);
static_assert(!nn::BackboneWithDropout<MlpBlock<cpu, double>, cpu, double>);

/// Gradcheck of a stack's input and every parameter for loss = <stack(x), r>; also checks that
/// forward carves exactly forward_workspace and backward peaks at the plan. `drop`: the stack's
/// dropout stream (a fixed active one fixes the masks).
template <class S>
void gradcheck_stack(S& m, Shape xs, nn::DropoutStream drop = {}) {
  cpu::Context ctx;
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 21, 0.4);
  auto x = random_tensor(xs, 1), dx = random_tensor(xs, 0), r = random_tensor(xs, 2);
  Tensor<double, cpu> da(xs), db(xs);
  std::size_t plan = m.forward_workspace(xs[0], xs[1]) + m.backward_workspace(xs[0], xs[1]);
  Workspace<cpu> ws(plan);
  typename S::Saved s;
  auto loss = [&] {
    auto a = ws.arena();
    return test::dot(m.forward(ctx, x.cview(), s, a, drop), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), s, a, drop);
    CHECK(a.used() == m.forward_workspace(xs[0], xs[1]));
    View<double, HostSpace> d = da.view(), tmp = db.view();
    ops::copy<double>(ctx, r.cview(), d);
    m.backward(ctx, s, d, tmp, a);
    CHECK(a.high_water() == plan);
    ops::copy<double>(ctx, d, dx.view());
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
}

}  // namespace

TEST_CASE("gradcheck: BlockStack of TransformerBlocks (input and every parameter of every block)") {
  for (std::int64_t layers : {1, 2, 3}) {  // odd and even counts: the swapped views end either way
    CAPTURE(layers);
    Stack m({layers, {.dim = 8, .heads = 2, .mlp_hidden = 12}});
    gradcheck_stack(m, Shape{2, 5, 8});
  }
}

TEST_CASE("gradcheck: BlockStack of TransformerBlocks with every dropout active") {
  for (std::int64_t layers : {1, 2}) {
    CAPTURE(layers);
    Stack m({layers, {.dim = 8, .heads = 2, .mlp_hidden = 12, .attn_dropout = 0.2, .resid_dropout = 0.2,
                      .ff_dropout = 0.2}});
    gradcheck_stack(m, Shape{2, 5, 8}, {12, 34, true});
  }
}

TEST_CASE("block_stack dropout: block l draws from drop.child(l); inactive streams and other blocks drop nothing") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 6, d = 8;
  using StackF = nn::BlockStack<cpu, float>;
  StackF m({2, {.dim = d, .heads = 2, .mlp_hidden = 16, .attn_dropout = 0.3, .resid_dropout = 0.3,
                .ff_dropout = 0.3}});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 5);
  auto x = random_tensor<float>(Shape{bsz, t, d}, 6);
  Workspace<cpu> ws(m.forward_workspace(bsz, t) * 3);
  nn::DropoutStream const drop{9, 10, true};
  auto stack_out = [&](nn::DropoutStream dr) {
    auto a = ws.arena();
    StackF::Saved s;
    auto y = m.forward(ctx, x.cview(), s, a, dr);
    return std::vector<float>(y.data, y.data + y.numel());
  };
  // The blocks by hand, block l with stream `child(l)`.
  auto by_hand = [&](auto child) {
    auto a = ws.arena();
    Tensor<float, cpu> h0(x.shape()), h1(x.shape());
    m.block(0).forward(ctx, x.cview(), h0.view(), a, {}, child(0));
    m.block(1).forward(ctx, h0.cview(), h1.view(), a, {}, child(1));
    return std::vector<float>(h1.data(), h1.data() + h1.numel());
  };
  auto const dropped = stack_out(drop);
  CHECK(dropped == by_hand([&](std::uint64_t l) { return drop.child(l); }));
  // Both blocks on one stream would reuse the masks: not what the stack does.
  CHECK(dropped != by_hand([&](std::uint64_t) { return drop.child(0); }));
  CHECK(dropped != stack_out({9, 11, true}));  // another step's stream
  auto const plain = stack_out({});
  CHECK(plain != dropped);
  CHECK(plain == stack_out({9, 10, false}));
  CHECK(plain == by_hand([](std::uint64_t) { return nn::DropoutStream{}; }));

  // A block without a dropout stream in its forward runs as before whatever the stream.
  nn::BlockStack<cpu, double, MlpBlock<cpu, double>> mm({2, {.dim = 6, .hidden = 10}});
  nn::ParamStore<cpu, double> pm(mm);
  pm.init(ctx, 1);
  auto xm = random_tensor(Shape{2, 3, 6}, 7);
  Workspace<cpu> wm(mm.forward_workspace(2, 3));
  std::vector<double> outs[2];
  for (int k = 0; k < 2; ++k) {
    auto a = wm.arena();
    decltype(mm)::Saved s;
    auto y = mm.forward(ctx, xm.cview(), s, a, k == 0 ? nn::DropoutStream{} : drop);
    outs[k].assign(y.data, y.data + y.numel());
  }
  CHECK(outs[0] == outs[1]);
}

TEST_CASE("gradcheck: BlockStack over another block policy") {
  nn::BlockStack<cpu, double, MlpBlock<cpu, double>> m({2, {.dim = 6, .hidden = 10}});
  gradcheck_stack(m, Shape{2, 3, 6});
}

TEST_CASE("block_stack: parameter names are <layer>.<block name> under the prefix, in order") {
  Stack m({2, {.dim = 8, .heads = 2}});
  nn::ParamStore<cpu, double> ps(m, "blocks.");
  nn::TransformerBlock<cpu, double> one({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, double> ps1(one);
  REQUIRE(ps.entries().size() == 2 * ps1.entries().size());
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t i = 0; i < ps1.entries().size(); ++i)
      CHECK(ps.entries()[l * ps1.entries().size() + i].name ==
            "blocks." + std::to_string(l) + "." + ps1.entries()[i].name);
  CHECK(ps.entries().front().name == "blocks.0.ln1.weight");
}

TEST_CASE("block_stack: an empty stack is the identity without a copy or workspace") {
  cpu::Context ctx;
  Stack m({0, {.dim = 4, .heads = 1}});
  CHECK(m.empty());
  CHECK(m.forward_workspace(2, 3) == 0);
  CHECK(m.backward_workspace(2, 3) == 0);
  CHECK(m.step_workspace(2, 1, 3) == 0);
  auto x = random_tensor(Shape{2, 3, 4}, 1);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  Stack::Saved s;
  auto y = m.forward(ctx, x.cview(), s, a);
  CHECK(y.data == x.data());
  Tensor<double, cpu> d0(Shape{2, 3, 4}), t0(Shape{2, 3, 4});
  View<double, HostSpace> d = d0.view(), tmp = t0.view();
  m.backward(ctx, s, d, tmp, a);
  CHECK(d.data == d0.data());
  CHECK(m.make_cache(2, 3).empty());
}

TEST_CASE("block_stack: cached steps equal the full forward (prefill, then one position at a time)") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 11, d = 8;
  Stack m({3, {.dim = d, .heads = 2, .mlp_hidden = 16}});
  nn::ParamStore<cpu, double> ps(m);
  ps.init(ctx, 3);
  auto x = random_tensor(Shape{bsz, t, d}, 4);
  Workspace<cpu> ws(m.forward_workspace(bsz, t));
  auto a = ws.arena();
  Stack::Saved s;
  auto full = m.forward(ctx, x.cview(), s, a);
  auto cache = m.make_cache(bsz, t);
  REQUIRE(cache.size() == 3);
  CHECK(cache[0].shape() == Shape{bsz, t, 2 * d});
  Workspace<cpu> sws(m.step_workspace(bsz, t, t));
  double worst = 0;
  for (std::int64_t pos = 0; pos < t;) {
    std::int64_t n = pos == 0 ? 4 : 1;
    Tensor<double, cpu> xa(Shape{bsz, n, d}), xb(Shape{bsz, n, d});
    for (std::int64_t b = 0; b < bsz; ++b)
      std::copy_n(x.data() + (b * t + pos) * d, n * d, xa.data() + b * n * d);
    View<double, HostSpace> cur = xa.view(), tmp = xb.view();
    auto sa = sws.arena();
    m.forward_step(ctx, cur, tmp, cache, pos, sa);
    CHECK(sa.high_water() <= m.step_workspace(bsz, n, pos));
    CHECK(sa.used() == 0);  // scratch released
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n * d; ++i)
        worst = std::max(worst, std::abs(full.data[(b * t + pos) * d + i] - cur.data[b * n * d + i]));
    pos += n;
  }
  CHECK(worst < 1e-12);
}

TEST_CASE("block_stack: rows step alone, each at its own position, and equal the full forward") {
  cpu::Context ctx;
  std::int64_t const bsz = 3, t = 9, d = 8;
  Stack m({2, {.dim = d, .heads = 2, .mlp_hidden = 16}});
  nn::ParamStore<cpu, double> ps(m);
  ps.init(ctx, 5);
  auto x = random_tensor(Shape{bsz, t, d}, 6);
  Workspace<cpu> ws(m.forward_workspace(bsz, t));
  auto a = ws.arena();
  Stack::Saved s;
  auto full = m.forward(ctx, x.cview(), s, a);
  auto cache = m.make_cache(bsz, t);
  Workspace<cpu> sws(m.step_workspace(1, 1, t));
  // Row b advances every (b + 1)-th round, so the rows are at different positions at every step.
  std::vector<std::int64_t> pos(bsz, 0);
  double worst = 0;
  for (std::int64_t round = 0; round < 3 * t; ++round)
    for (std::int64_t b = 0; b < bsz; ++b) {
      if (round % (b + 1) != 0 || pos[std::size_t(b)] == t) continue;
      std::int64_t p = pos[std::size_t(b)]++;
      Tensor<double, cpu> xa(Shape{1, 1, d}), xb(Shape{1, 1, d});
      std::copy_n(x.data() + (b * t + p) * d, d, xa.data());
      View<double, HostSpace> cur = xa.view(), tmp = xb.view();
      auto sa = sws.arena();
      m.forward_step_row(ctx, cur, tmp, cache, b, p, sa);
      for (std::int64_t i = 0; i < d; ++i) worst = std::max(worst, std::abs(full.data[(b * t + p) * d + i] - cur.data[i]));
    }
  for (std::int64_t b = 0; b < bsz; ++b) CHECK(pos[std::size_t(b)] == t);
  CHECK(worst < 1e-12);
  // A row outside the cache, or a batch of more than one row, is refused.
  Tensor<double, cpu> xa(Shape{1, 1, d}), xb(Shape{1, 1, d}), x2(Shape{2, 1, d}), y2(Shape{2, 1, d});
  View<double, HostSpace> cur = xa.view(), tmp = xb.view(), c2 = x2.view(), t2 = y2.view();
  auto sa = sws.arena();
  CHECK_THROWS_WITH_AS(m.forward_step_row(ctx, cur, tmp, cache, 3, 0, sa), doctest::Contains("row 3 of a cache"), Error);
  CHECK_THROWS_WITH_AS(m.forward_step_row(ctx, c2, t2, cache, 0, 0, sa), doctest::Contains("must be one row"), Error);
}

TEST_CASE("block_stack: bad inputs are errors that name the problem") {
  cpu::Context ctx;
  CHECK_THROWS_WITH_AS(Stack({-1, {.dim = 4, .heads = 1}}), doctest::Contains("layers must be >= 0"), Error);
  Stack m({2, {.dim = 4, .heads = 1}}), other({1, {.dim = 4, .heads = 1}});
  nn::ParamStore<cpu, double> ps(m), pso(other);
  Workspace<cpu> ws(m.forward_workspace(1, 3) + m.backward_workspace(1, 3));
  auto a = ws.arena();
  Stack::Saved s;
  auto bad = random_tensor(Shape{1, 3, 5}, 1);
  CHECK_THROWS_WITH_AS(m.forward(ctx, bad.cview(), s, a), doctest::Contains("expected [B, T, dim]"), Error);
  auto x = random_tensor(Shape{1, 3, 4}, 1);
  a.reset();
  other.forward(ctx, x.cview(), s, a);
  Tensor<double, cpu> d0(Shape{1, 3, 4}), t0(Shape{1, 3, 4}), t1(Shape{1, 2, 4});
  View<double, HostSpace> d = d0.view(), tmp = t0.view(), tmp_bad = t1.view();
  CHECK_THROWS_WITH_AS(m.backward(ctx, s, d, tmp, a), doctest::Contains("ran 1 blocks, the stack has 2"), Error);
  a.reset();
  m.forward(ctx, x.cview(), s, a);
  CHECK_THROWS_AS(m.backward(ctx, s, d, tmp_bad, a), Error);
  auto cache = other.make_cache(1, 3);
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, d, tmp, cache, 0, a), doctest::Contains("a cache of 1 blocks"), Error);
  CHECK_THROWS_AS(m.make_cache(0, 3), Error);
}

}  // namespace HSEQ_TEST_UNIT
