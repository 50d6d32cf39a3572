// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "hseq/nn/embedding.hpp"
#include "hseq/nn/lm_head.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using Head = nn::LmHead<cpu, double>;

namespace {

/// An LmHead as a model holds it: tied to an embedding table (visited first, as "tok_emb.") or
/// with its own weight, the embedding then unused and unvisited.
struct HeadModel {
  nn::Embedding<cpu, double> emb;
  Head head;
  HeadModel(std::int64_t dim, std::int64_t vocab, bool tied)
      : emb({vocab, dim}), head({.dim = dim, .vocab = vocab, .tied = tied}, tied ? &emb.table() : nullptr) {}
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    if (head.config().tied) emb.visit_params(f, prefix + "tok_emb.");
    head.visit_params(f, prefix);
  }
};

Tensor<std::int32_t, cpu> targets_of(Shape s, std::int64_t vocab, std::uint64_t seed) {
  Tensor<std::int32_t, cpu> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::int32_t(rng.below(std::uint64_t(vocab)));
  return t;
}

}  // namespace

TEST_CASE("gradcheck: LmHead, tied and untied (input, LayerNorm, projection or embedding table)") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, d = 6, v = 9;
  for (bool tied : {true, false}) {
    CAPTURE(tied);
    HeadModel m(d, v, tied);
    nn::ParamStore<cpu, double> ps(m);
    REQUIRE(ps.entries().size() == 3);
    test::randomize_params(ps, 7, 0.5);
    auto h = random_tensor(Shape{bsz, t, d}, 1), dh = random_tensor(Shape{bsz, t, d}, 0);
    Tensor<double, cpu> scratch(Shape{bsz, t, d});
    auto tg = targets_of(Shape{bsz, t}, v, 2);
    tg.data()[2] = -1;  // ignored: not counted, no gradient from this row
    std::size_t plan = m.head.forward_workspace(bsz, t) + m.head.backward_workspace(bsz, t);
    Workspace<cpu> ws(plan);
    auto loss = [&] {
      auto a = ws.arena();
      return m.head.forward(ctx, h.cview(), tg.cview(), a).loss;
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.head.forward(ctx, h.cview(), tg.cview(), a);
      CHECK(a.used() == m.head.forward_workspace(bsz, t));
      CHECK(s.counted == bsz * t - 1);
      m.head.backward(ctx, s, dh.view(), scratch.view(), a);
      CHECK(a.high_water() == plan);
    };
    test::GradCheck(ps).input("h", h.view(), dh.view()).run(loss, grads);
  }
}

TEST_CASE("lm_head: names keep the models' ln_f./head. under the caller's prefix") {
  HeadModel tied(4, 5, true), untied(4, 5, false);
  nn::ParamStore<cpu, double> pt(tied, "m."), pu(untied, "m.");
  std::vector<std::string> nt, nu;
  for (auto const& e : pt.entries()) nt.push_back(e.name);
  for (auto const& e : pu.entries()) nu.push_back(e.name);
  CHECK(nt == std::vector<std::string>{"m.tok_emb.weight", "m.ln_f.weight", "m.ln_f.bias"});
  CHECK(nu == std::vector<std::string>{"m.ln_f.weight", "m.ln_f.bias", "m.head.weight"});
  CHECK(&tied.head.weight() == &tied.emb.table());
  CHECK(pu.find("m.head.weight").decay);  // as nn::Linear's weight
  CHECK(pu.find("m.head.weight").shape == Shape{5, 4});
}

TEST_CASE("lm_head: the loss is the mean cross-entropy over counted targets; predict equals forward's logits") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 3, d = 4, v = 7;
  for (bool tied : {true, false}) {
    CAPTURE(tied);
    HeadModel m(d, v, tied);
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 3, 0.5);
    auto h = random_tensor(Shape{bsz, t, d}, 1);
    auto tg = targets_of(Shape{bsz, t}, v, 2);
    tg.data()[0] = -1;
    tg.data()[4] = -1;
    Workspace<cpu> ws(2 * m.head.forward_workspace(bsz, t) + m.head.predict_workspace(bsz * t));
    auto a = ws.arena();
    auto s = m.head.forward(ctx, h.cview(), tg.cview(), a);
    CHECK(s.counted == 4);
    double sum = 0;
    for (std::int64_t r = 0; r < bsz * t; ++r) {
      if (tg.data()[r] < 0) continue;
      double mx = -1e300, z = 0;
      for (std::int64_t c = 0; c < v; ++c) mx = std::max(mx, s.logits.data[r * v + c]);
      for (std::int64_t c = 0; c < v; ++c) z += std::exp(s.logits.data[r * v + c] - mx);
      sum += std::log(z) + mx - s.logits.data[r * v + tg.data()[r]];
    }
    CHECK(s.loss == doctest::Approx(sum / 4).epsilon(1e-12));
    // Without targets: logits only.
    auto s2 = m.head.forward(ctx, h.cview(), {}, a);
    CHECK(std::isnan(s2.loss));
    CHECK(s2.counted == 0);
    // predict into every other row of a [B * t, 2, V] buffer (a strided matrix), as generation does.
    Tensor<double, cpu> out(Shape{bsz * t, 2, v});
    auto mark = a.mark();
    m.head.predict(ctx, h.cview(), {out.data() + v, bsz * t, v, 2 * v}, a);
    CHECK(a.used() == mark);
    CHECK(a.high_water() <= mark + m.head.predict_workspace(bsz * t));
    for (std::int64_t r = 0; r < bsz * t; ++r)
      for (std::int64_t c = 0; c < v; ++c) CHECK(out.data()[(2 * r + 1) * v + c] == s2.logits.data[r * v + c]);
  }
}

TEST_CASE("lm_head: bad inputs are errors that name the problem") {
  cpu::Context ctx;
  nn::Embedding<cpu, double> emb({5, 4}), wrong({6, 4});
  CHECK_THROWS_WITH_AS(Head({.dim = 4, .vocab = 5, .tied = true}), doctest::Contains("needs the embedding table"), Error);
  CHECK_THROWS_WITH_AS(Head({.dim = 4, .vocab = 5, .tied = false}, &emb.table()),
                       doctest::Contains("an untied head none"), Error);
  CHECK_THROWS_WITH_AS(Head({.dim = 4, .vocab = 5, .tied = true}, &wrong.table()),
                       doctest::Contains("is not [vocab 5, dim 4]"), Error);
  CHECK_THROWS_AS(Head({.dim = 0, .vocab = 5, .tied = false}), Error);
  HeadModel m(4, 5, false);
  nn::ParamStore<cpu, double> ps(m);
  Workspace<cpu> ws(m.head.forward_workspace(1, 3) + m.head.predict_workspace(3));
  auto a = ws.arena();
  auto bad = random_tensor(Shape{1, 3, 3}, 1);
  CHECK_THROWS_WITH_AS(m.head.forward(ctx, bad.cview(), {}, a), doctest::Contains("expected [B, T, dim]"), Error);
  auto h = random_tensor(Shape{1, 3, 4}, 1);
  auto tg_shape = targets_of(Shape{1, 2}, 5, 1);
  CHECK_THROWS_WITH_AS(m.head.forward(ctx, h.cview(), tg_shape.cview(), a), doctest::Contains("expected [B, T]"),
                       Error);
  a.reset();
  Tensor<std::int32_t, cpu> ignored(Shape{1, 3});
  for (int i = 0; i < 3; ++i) ignored.data()[i] = -1;
  CHECK_THROWS_WITH_AS(m.head.forward(ctx, h.cview(), ignored.cview(), a), doctest::Contains("every target is ignored"),
                       Error);
  a.reset();
  auto too_big = targets_of(Shape{1, 3}, 5, 1);
  too_big.data()[1] = 5;
  CHECK_THROWS_WITH_AS(m.head.forward(ctx, h.cview(), too_big.cview(), a), doctest::Contains("outside the vocabulary"),
                       Error);
  a.reset();
  auto s = m.head.forward(ctx, h.cview(), {}, a);
  Tensor<double, cpu> dh(Shape{1, 3, 4}), scratch(Shape{1, 3, 4});
  CHECK_THROWS_WITH_AS(m.head.backward(ctx, s, dh.view(), scratch.view(), a), doctest::Contains("had no targets"),
                       Error);
  Tensor<double, cpu> out(Shape{3, 4});
  CHECK_THROWS_WITH_AS(m.head.predict(ctx, h.cview(), ops::as_mat(out.view()), a), doctest::Contains("LmHead::predict"),
                       Error);
}

TEST_CASE("lm_head: a frozen projection (own weight or tied table) or final norm gets no gradient; dh is unchanged") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 3, d = 6, v = 9;
  for (bool tied : {true, false}) {
    CAPTURE(tied);
    HeadModel m(d, v, tied);
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 7, 0.5);
    auto h = random_tensor(Shape{bsz, t, d}, 1);
    Tensor<double, cpu> dh(Shape{bsz, t, d}), scratch(Shape{bsz, t, d});
    auto tg = targets_of(Shape{bsz, t}, v, 2);
    Workspace<cpu> ws(m.head.forward_workspace(bsz, t) + m.head.backward_workspace(bsz, t));
    auto run = [&] {
      ps.zero_grad(ctx);
      auto a = ws.arena();
      auto s = m.head.forward(ctx, h.cview(), tg.cview(), a);
      m.head.backward(ctx, s, dh.view(), scratch.view(), a);
      return std::vector<double>(dh.data(), dh.data() + dh.numel());
    };
    frozen_check::check(ps, run, {tied ? "tok_emb.weight" : "head.weight", "ln_f.weight", "ln_f.bias"});
  }
}

}  // namespace HSEQ_TEST_UNIT
