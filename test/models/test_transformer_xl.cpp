// SPDX-License-Identifier: MIT
// models::TransformerXl: gradients of a tiny model over a fixed memory; segment-by-segment equals one long
// pass while the memory covers the context; the memory's bookkeeping (FIFO order, partial first segments,
// reset, stop-gradient); causality within and across segments; cached generation equals the full forward;
// bad inputs; the memory as checkpoint state.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/core/rng.hpp"
#include "hseq/models/cached_model.hpp"
#include "hseq/models/transformer_xl.hpp"
#include "support/cached_check.hpp"
#include "support/gradcheck.hpp"
#include "support/segments.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Xl = models::TransformerXl<cpu, double>;

static_assert(models::CachedModel<Xl, cpu, double>);
static_assert(StatefulPart<Xl::Memory>);

namespace {

using test::random_ids;
Xl::Config tiny(std::int64_t mem_len, std::int64_t clamp_len = 0) {
  return {.vocab = 11, .dim = 8, .heads = 2, .layers = 2, .context = 12, .mem_len = mem_len, .clamp_len = clamp_len};
}
/// Logits [B, T, V] of one forward of ids over the bound memory (which it updates).
std::vector<double> logits_of(cpu::Context& ctx, Xl const& m, Tensor<std::int32_t, cpu> const& ids) {
  std::int64_t const b = ids.shape()[0], t = ids.shape()[1];
  Workspace<cpu> ws(m.forward_workspace(b, t));
  Xl::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  return std::vector<double>(tr.logits.data, tr.logits.data + tr.logits.numel());
}
/// Sets a memory's fill and fills its buffers with N(0, 1) draws of stream `seed` (through its
/// state visitor, as a checkpoint loader does).
void set_memory(Xl::Memory& mem, std::int64_t fill, std::uint64_t seed) {
  std::int64_t layer = 0;
  mem.visit_state([&](std::string const& name, auto&& x) {
    using X = std::remove_cvref_t<decltype(x)>;
    if constexpr (std::is_same_v<X, std::int64_t>) {
      CHECK(name == "fill");
      x = fill;
    } else {
      for (std::int64_t i = 0; i < x.numel(); ++i)
        x.data[i] = philox_normal(seed + std::uint64_t(layer), 7, std::uint64_t(i));
      ++layer;
    }
  });
}
double max_abs_diff(std::vector<double> const& a, std::vector<double> const& b, std::size_t a_off, std::size_t b_off,
                    std::size_t n) {
  double w = 0;
  for (std::size_t i = 0; i < n; ++i) w = std::max(w, std::abs(a[a_off + i] - b[b_off + i]));
  return w;
}

}  // namespace

TEST_CASE("gradcheck: TransformerXl tiny model over a fixed memory (every parameter; the memory held fixed)") {
  cpu::Context ctx;
  for (std::int64_t clamp : {std::int64_t(0), std::int64_t(3)}) {
    CAPTURE(clamp);
    Xl m(tiny(4, clamp));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 3, 0.3);
    auto ids = random_ids(Shape{2, 5}, 11, 1), targets = random_ids(Shape{2, 5}, 11, 2);
    targets.data()[3] = -1;
    auto mem = m.make_memory(2);
    m.bind_memory(&mem);
    std::size_t const plan = m.forward_workspace(2, 5) + m.backward_workspace(2, 5);
    Workspace<cpu> ws(plan);
    Xl::Trace tr;
    // Every evaluation starts from the same memory of 3 rows (forward moves it on).
    auto loss = [&] {
      set_memory(mem, 3, 40);
      auto a = ws.arena();
      return m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    };
    auto grads = [&] {
      set_memory(mem, 3, 40);
      auto a = ws.arena();
      m.forward(ctx, ids.cview(), targets.cview(), a, tr);
      CHECK(tr.m == 3);
      CHECK(a.used() <= m.forward_workspace(2, 5));
      m.backward(ctx, tr, a);
      CHECK(a.high_water() <= plan);
    };
    test::GradCheck(ps).run(loss, grads);
  }
}

TEST_CASE("transformer_xl: segment by segment equals one long pass while the memory covers the context") {
  cpu::Context ctx;
  for (std::int64_t clamp : {std::int64_t(0), std::int64_t(5)}) {
    CAPTURE(clamp);
    // Segments of 4, 3 and 5 tokens; mem_len 12 keeps every earlier position.
    Xl m(tiny(12, clamp));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 5, 0.3);
    auto ids = random_ids(Shape{2, 12}, 11, 6);
    auto full = logits_of(ctx, m, ids);  // no memory bound: one segment of 12
    auto mem = m.make_memory(2);
    m.bind_memory(&mem);
    std::int64_t const v = 11;
    std::int64_t at = 0;
    double worst = 0;
    for (std::int64_t n : {4, 3, 5}) {
      auto seg = logits_of(ctx, m, test::columns(ids, at, n));
      for (std::int64_t b = 0; b < 2; ++b)
        worst = std::max(worst, max_abs_diff(seg, full, std::size_t(b * n * v), std::size_t((b * 12 + at) * v),
                                             std::size_t(n * v)));
      at += n;
      CHECK(mem.fill() == at);
    }
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("transformer_xl: the memory is a FIFO of layer inputs: partial first segments, eviction order, reset") {
  cpu::Context ctx;
  Xl m(tiny(5));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 7, 0.3);
  auto ids = random_ids(Shape{2, 9}, 11, 8);
  auto mem = m.make_memory(2);
  m.bind_memory(&mem);
  CHECK(mem.fill() == 0);
  // Layer 0's input is the token embedding, so its memory must be the embeddings of the last
  // min(5, seen) tokens of each row, oldest first, bit for bit.
  double const* table = ps.find("tok_emb.weight").value.data;
  auto check_layer0 = [&](std::int64_t seen) {
    std::int64_t const fill = std::min<std::int64_t>(5, seen);
    CHECK(mem.fill() == fill);
    auto l0 = mem.layer(0);
    CHECK(l0.shape == (Shape{2, fill, 8}));
    std::int64_t bad = 0;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t r = 0; r < fill; ++r) {
        std::int32_t tok = ids.data()[b * 9 + (seen - fill + r)];
        for (std::int64_t c = 0; c < 8; ++c) bad += l0.data[(b * fill + r) * 8 + c] != table[tok * 8 + c];
      }
    CHECK(bad == 0);
  };
  logits_of(ctx, m, test::columns(ids, 0, 3));  // a partial first segment: 3 of 5 rows
  check_layer0(3);
  logits_of(ctx, m, test::columns(ids, 3, 4));  // 3 + 4 > 5: the two oldest evicted
  check_layer0(7);
  logits_of(ctx, m, test::columns(ids, 7, 2));
  check_layer0(9);
  m.reset_state(ctx);
  CHECK(mem.fill() == 0);
  // A memory of 0 rows keeps nothing.
  Xl m0(tiny(0));
  nn::ParamStore<cpu, double> ps0(m0);
  test::randomize_params(ps0, 7, 0.3);
  auto mem0 = m0.make_memory(2);
  m0.bind_memory(&mem0);
  logits_of(ctx, m0, test::columns(ids, 0, 3));
  CHECK(mem0.fill() == 0);
}

TEST_CASE("transformer_xl: causal within a segment; earlier segments reach later ones only through the memory") {
  cpu::Context ctx;
  Xl m(tiny(6));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9, 0.3);
  auto ids = random_ids(Shape{2, 10}, 11, 10);
  std::int64_t const v = 11;
  // Two segments of 5 over a memory; returns the second segment's logits.
  auto second = [&](Tensor<std::int32_t, cpu> const& x, bool reset_between) {
    auto mem = m.make_memory(2);
    m.bind_memory(&mem);
    logits_of(ctx, m, test::columns(x, 0, 5));
    if (reset_between) m.reset_state(ctx);
    auto out = logits_of(ctx, m, test::columns(x, 5, 5));
    m.bind_memory(nullptr);
    return out;
  };
  auto base = second(ids, false);
  // Within the segment: changing position p of row 1 changes no logit before p (nor row 0) and every one from p on.
  for (std::int64_t p : {0, 2, 4}) {
    auto x = random_ids(Shape{2, 10}, 11, 10);
    x.data()[10 + 5 + p] = (x.data()[10 + 5 + p] + 1) % 11;
    auto y = second(x, false);
    std::int64_t before_moved = 0, after_unmoved = 0;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t i = 0; i < 5; ++i) {
        bool same = max_abs_diff(y, base, std::size_t((b * 5 + i) * v), std::size_t((b * 5 + i) * v), std::size_t(v)) == 0;
        if (b == 0 || i < p) before_moved += !same;
        else after_unmoved += same;
      }
    CHECK(before_moved == 0);
    CHECK(after_unmoved == 0);
  }
  // Across segments: a token of the first segment (row 1) changes every logit of row 1's second
  // segment through the memory, none of row 0's, and nothing once the memory is reset between them.
  auto x = random_ids(Shape{2, 10}, 11, 10);
  x.data()[10 + 1] = (x.data()[10 + 1] + 3) % 11;
  auto y = second(x, false);
  std::int64_t row0_moved = 0, row1_unmoved = 0;
  for (std::int64_t i = 0; i < 5; ++i) {
    row0_moved += max_abs_diff(y, base, std::size_t(i * v), std::size_t(i * v), std::size_t(v)) != 0;
    row1_unmoved += max_abs_diff(y, base, std::size_t((5 + i) * v), std::size_t((5 + i) * v), std::size_t(v)) == 0;
  }
  CHECK(row0_moved == 0);
  CHECK(row1_unmoved == 0);
  auto r0 = second(ids, true), r1 = second(x, true);
  CHECK(max_abs_diff(r0, r1, 0, 0, r0.size()) == 0);
}

TEST_CASE("transformer_xl: cached incremental logits equal the full recomputation") {
  cpu::Context ctx;
  std::int64_t const t = 12;
  for (std::int64_t mem_len : {std::int64_t(3), std::int64_t(12)}) {
    CAPTURE(mem_len);  // the cache keeps every position up to its capacity, whatever mem_len is
    Xl m(tiny(mem_len));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 11, 0.3);
    auto ids = random_ids(Shape{2, t}, 11, 12);
    Workspace<cpu> ws(m.forward_workspace(2, t));
    Xl::Trace tr;
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, tr);
    auto cache = m.make_cache(2, t);
    Workspace<cpu> step_ws(m.step_workspace(2, t, t));
    double worst = test::cached_vs_full_worst(ctx, m, cache, ids, tr.logits, t, 5, step_ws,
                                              [&](std::int64_t n, std::int64_t pos) { return m.step_workspace(2, n, pos); });
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("transformer_xl: bad configuration and inputs say what is wrong") {
  using XlF = models::TransformerXl<cpu, float>;
  CHECK_THROWS_WITH_AS(XlF({.dim = 30, .heads = 4}), doctest::Contains("heads 4 do not divide the width 30"), Error);
  CHECK_THROWS_WITH_AS(XlF({.mem_len = -1}), doctest::Contains("mem_len -1"), Error);
  cpu::Context ctx;
  Xl m(tiny(4));
  auto mem = m.make_memory(3);
  m.bind_memory(&mem);
  auto ids = random_ids(Shape{2, 5}, 11, 1);
  Workspace<cpu> ws(m.forward_workspace(2, 5));
  Xl::Trace tr;
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), {}, a, tr), doctest::Contains("batches of 3 rows"), Error);
  m.bind_memory(nullptr);
  auto longer = random_ids(Shape{1, 13}, 11, 1);
  Workspace<cpu> ws2(m.forward_workspace(1, 13));
  auto a2 = ws2.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, longer.cview(), {}, a2, tr), doctest::Contains("exceeds the context 12"), Error);
  auto cache = m.make_cache(1, 6);
  Tensor<double, cpu> lg(Shape{1, 2, 11});
  Workspace<cpu> sw(m.step_workspace(1, 2, 6));
  auto sa = sw.arena();
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, test::columns(longer, 0, 2).cview(), cache, 3, lg.view(), sa),
                       doctest::Contains("after the 0 the cache holds"), Error);
  CHECK_THROWS_WITH_AS(m.make_cache(1, 13), doctest::Contains("capacity 13"), Error);
}

TEST_CASE("transformer_xl: config JSON round trip") {
  Xl::Config c = tiny(7, 2);
  Xl m(c);
  auto back = Xl::config_from_json(m.config_json());
  CHECK(back.mem_len == 7);
  CHECK(back.clamp_len == 2);
  CHECK(Xl(back).config_json() == m.config_json());
  CHECK_THROWS_WITH_AS(Xl::config_from_json("{\"dim\": 8}"), doctest::Contains("TransformerXl: invalid config JSON"), Error);
}

}  // namespace HSEQ_TEST_UNIT
