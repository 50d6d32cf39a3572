// SPDX-License-Identifier: MIT
// models::CompressiveTransformer: gradients of tiny models for every compression function (BPTT through a
// learned compressor, the auto-encoding and attention-reconstruction losses) over fixed memories; the memory bookkeeping (compression
// every c evictions, FIFO order of the compressed memory, pending remainders, reset); causality within
// and across segments (through the memory and the compressed memory); cached generation equals the full
// forward; bad configurations; the memory as checkpoint state.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/core/rng.hpp"
#include "hseq/models/cached_model.hpp"
#include "hseq/models/compressive_transformer.hpp"
#include "hseq/models/memory_model.hpp"
#include "support/cached_check.hpp"
#include "support/gradcheck.hpp"
#include "support/segments.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
template <class P>
using Ct = models::CompressiveTransformer<cpu, double, P>;
using models::CompressionLoss;

static_assert(models::CachedModel<Ct<hier::MeanPool<2>>, cpu, double>);
static_assert(models::MemoryModel<Ct<hier::MostUsed<2>>>);
static_assert(StatefulPart<Ct<hier::Conv<2>>::Memory>);

namespace {

using test::random_ids;
template <class P>
typename Ct<P>::Config tiny(std::int64_t mem_len, std::int64_t cmem_len, CompressionLoss loss = CompressionLoss::kBptt) {
  typename Ct<P>::Config c;
  c.vocab = 11, c.dim = 8, c.heads = 2, c.layers = 2, c.context = 12, c.mem_len = mem_len, c.cmem_len = cmem_len;
  c.loss = loss;
  c.loss_weight = 0.7;
  return c;
}
template <class M>
std::vector<double> logits_of(cpu::Context& ctx, M const& m, Tensor<std::int32_t, cpu> const& ids,
                              Tensor<std::int32_t, cpu> const* targets = nullptr, double* loss = nullptr) {
  std::int64_t const b = ids.shape()[0], t = ids.shape()[1];
  Workspace<cpu> ws(m.forward_workspace(b, t));
  typename M::Trace tr;
  auto a = ws.arena();
  double l = m.forward(ctx, ids.cview(), targets ? targets->cview() : View<std::int32_t const, HostSpace>{}, a, tr);
  if (loss) *loss = l;
  return std::vector<double>(tr.logits.data, tr.logits.data + tr.logits.numel());
}
/// Sets a memory's fills and fills every buffer with draws of stream `seed` (through its state
/// visitor, as a checkpoint loader does); usage counts become 1 + |draw| so averages are defined.
template <class Mem>
void set_memory(Mem& mem, std::int64_t fc, std::int64_t fm, std::int64_t fp, std::uint64_t seed) {
  std::uint64_t k = 0;
  mem.visit_state([&](std::string const& name, auto&& x) {
    using X = std::remove_cvref_t<decltype(x)>;
    if constexpr (std::is_same_v<X, std::int64_t>) {
      x = name == "fill_c" ? fc : name == "fill_m" ? fm : fp;
    } else {
      bool const count = name.rfind("cnt", 0) == 0;
      for (std::int64_t i = 0; i < x.numel(); ++i) {
        double v = philox_normal(seed + k, 7, std::uint64_t(i));
        x.data[i] = count ? 1.0 + std::abs(v) : v;
      }
      ++k;
    }
  });
}

/// Gradient check of a tiny model over fixed memories holding pending rows (so this forward
/// compresses): every parameter, the compressor's and decoder's included.
template <class P>
void gradcheck_ct(CompressionLoss loss) {
  cpu::Context ctx;
  auto cfg = tiny<P>(4, 3, loss);
  // Attention reconstruction holds the queries fixed (detached): with a second layer, layer 0's
  // compressed rows would reach layer 1's queries, a path finite differences see and the gradient
  // (by design, as the PyTorch twin's detach) does not; one layer has no such path.
  if (loss == CompressionLoss::kAttentionReconstruction) cfg.layers = 1;
  Ct<P> m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 3, 0.3);
  auto ids = random_ids(Shape{2, 5}, 11, 1), targets = random_ids(Shape{2, 5}, 11, 2);
  targets.data()[3] = -1;
  auto mem = m.make_memory(2);
  m.bind_memory(&mem);
  std::size_t const plan = m.forward_workspace(2, 5) + m.backward_workspace(2, 5);
  Workspace<cpu> ws(plan);
  typename Ct<P>::Trace tr;
  std::int64_t const pend = 2 * P::kRate;  // two compressed rows this forward
  auto loss_fn = [&] {
    set_memory(mem, 2, 4, pend, 40);
    auto a = ws.arena();
    return m.forward(ctx, ids.cview(), targets.cview(), a, tr);
  };
  auto grads = [&] {
    set_memory(mem, 2, 4, pend, 40);
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    CHECK(tr.pc == pend);
    CHECK(a.used() <= m.forward_workspace(2, 5));
    m.backward(ctx, tr, a);
    CHECK(a.high_water() <= plan);
  };
  if (loss == CompressionLoss::kBptt) {
    test::GradCheck(ps).run(loss_fn, grads);
    return;
  }
  // Auto-encoding and attention reconstruction: the compressor (and decoder) train on that loss
  // alone (their output reaches the LM loss through the attention, but that path is cut, as
  // `detach` would), so their gradients are checked against loss_weight x that term, and every
  // other parameter's against the cross-entropy term (the attention reconstruction depends on the
  // block's parameters and queries, but holds them fixed: they get no gradient from it, as in
  // tools/torch_xl.py, whose parity fixture this model matches).
  auto zeroed = [&] {
    ps.zero_grad(ctx);
    grads();
  };
  test::GradCheck lm, ae;
  for (auto const& e : ps.entries()) {
    bool const comp = e.name.rfind("compress", 0) == 0;
    (comp ? ae : lm).input(e.name, e.param->value, e.param->grad);
  }
  lm.run(
      [&] {
        loss_fn();
        return tr.terms[0].value;  // the byte cross-entropy
      },
      zeroed);
  ae.run(
      [&] {
        loss_fn();
        return 0.7 * tr.terms[1].value;
      },
      zeroed);
}

}  // namespace

TEST_CASE("gradcheck: CompressiveTransformer, every compression function; BPTT, auto-encoding, attention reconstruction") {
  gradcheck_ct<hier::MeanPool<2>>(CompressionLoss::kBptt);
  gradcheck_ct<hier::MaxPool<2>>(CompressionLoss::kBptt);
  gradcheck_ct<hier::MostUsed<2>>(CompressionLoss::kBptt);
  gradcheck_ct<hier::Conv<2>>(CompressionLoss::kBptt);
  gradcheck_ct<hier::DilatedConv<3>>(CompressionLoss::kBptt);
  gradcheck_ct<hier::Conv<2>>(CompressionLoss::kAutoEncoding);
  gradcheck_ct<hier::DilatedConv<2>>(CompressionLoss::kAutoEncoding);
  gradcheck_ct<hier::Conv<2>>(CompressionLoss::kAttentionReconstruction);
  gradcheck_ct<hier::DilatedConv<3>>(CompressionLoss::kAttentionReconstruction);
}

TEST_CASE("compressive: evicted memories are compressed c at a time into a FIFO of compressed memories") {
  cpu::Context ctx;
  // mem_len 4, cmem_len 3, rate 2, segments of 3: the fills after each segment.
  using P = hier::MeanPool<2>;
  Ct<P> m(tiny<P>(4, 3));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.3);
  auto ids = random_ids(Shape{2, 12}, 11, 6);
  auto mem = m.make_memory(2);
  m.bind_memory(&mem);
  double const* table = ps.find("tok_emb.weight").value.data;
  std::int64_t const d = 8;
  // Layer 0's inputs are the embeddings, so its compressed memory must be the means of pairs of
  // evicted embeddings, oldest first.
  auto emb = [&](std::int64_t b, std::int64_t pos, std::int64_t j) { return table[ids.data()[b * 12 + pos] * d + j]; };
  struct Want {
    std::int64_t c, m, p;
  };
  // seen 3: m 3.  seen 6: m 4, evicted 2 -> pending 2.  seen 9: compress 2 -> c 1; evicted 3 -> p 3.
  // seen 12: compress 2 of 3 -> c 2, remainder 1 + evicted 3 -> p 4.
  std::vector<Want> want{{0, 3, 0}, {0, 4, 2}, {1, 4, 3}, {2, 4, 4}};
  for (std::int64_t s = 0; s < 4; ++s) {
    logits_of(ctx, m, test::columns(ids, 3 * s, 3));
    CAPTURE(s);
    CHECK(mem.compressed_fill() == want[std::size_t(s)].c);
    CHECK(mem.fill() == want[std::size_t(s)].m);
    CHECK(mem.pending_fill() == want[std::size_t(s)].p);
  }
  // After 12 tokens: compressed rows = mean(emb 0, 1), mean(emb 2, 3); memory = tokens 8..11;
  // pending = token 4 (the remainder), then tokens 5, 6, 7.
  auto cm = mem.compressed(0), mm = mem.memory(0), pend = mem.pending(0);
  std::int64_t bad = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t j = 0; j < d; ++j) {
      for (std::int64_t r = 0; r < 2; ++r)
        bad += std::abs(cm.data[(b * 2 + r) * d + j] - 0.5 * (emb(b, 2 * r, j) + emb(b, 2 * r + 1, j))) > 1e-15;
      for (std::int64_t r = 0; r < 4; ++r) bad += mm.data[(b * 4 + r) * d + j] != emb(b, 8 + r, j);
      for (std::int64_t r = 0; r < 4; ++r) bad += pend.data[(b * 4 + r) * d + j] != emb(b, 4 + r, j);
    }
  CHECK(bad == 0);
  m.reset_state(ctx);
  CHECK(mem.fill() == 0);
  CHECK(mem.compressed_fill() == 0);
  CHECK(mem.pending_fill() == 0);
}

TEST_CASE("compressive: record_key_mass writes every layer's key mass, [cmem; cm; mem; segment], forward unchanged") {
  cpu::Context ctx;
  using P = hier::MeanPool<2>;
  Ct<P> m(tiny<P>(4, 3));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.3);
  std::int64_t const b = 2, t = 5, h = 2;
  auto ids = random_ids(Shape{b, t}, 11, 8), tg = random_ids(Shape{b, t}, 11, 9);
  auto run = [&](bool record, double& loss) {
    m.record_key_mass(record);
    auto mem = m.make_memory(b);
    set_memory(mem, 2, 3, 4, 21);  // 2 compressed rows, 3 memory rows, 4 pending: 2 compressed now
    m.bind_memory(&mem);
    Workspace<cpu> ws(m.forward_workspace(b, t));
    typename Ct<P>::Trace tr;
    auto a = ws.arena();
    loss = m.forward(ctx, ids.cview(), tg.cview(), a, tr);
    std::vector<std::vector<double>> mass;
    for (auto const& L : tr.layers)
      mass.push_back(L.mass.data ? std::vector<double>(L.mass.data, L.mass.data + L.mass.numel()) : std::vector<double>{});
    m.bind_memory(nullptr);
    return std::make_pair(mass, tr.layers[0].mass.shape);
  };
  double off = 0, on = 0;
  auto [none, none_shape] = run(false, off);
  auto [mass, shape] = run(true, on);
  CHECK(on == off);  // recording changes nothing the model computes
  CHECK(none[0].empty());
  std::int64_t const nk = 2 + 2 + 3;  // cmem, the 2 rows compressed now (4 pending / c), mem
  REQUIRE(shape == Shape{b, h, nk + t});
  for (std::size_t l = 0; l < mass.size(); ++l)
    for (std::int64_t bh = 0; bh < b * h; ++bh) {
      CAPTURE(l);
      CAPTURE(bh);
      double const* row = mass[l].data() + bh * (nk + t);
      double sum = 0;
      for (std::int64_t j = 0; j < nk + t; ++j) sum += row[j];
      CHECK(sum == doctest::Approx(double(t)).epsilon(1e-12));  // every query's weights sum to 1
      CHECK(*std::min_element(row, row + nk + t) > 0);          // every key is seen by some query
      // The last segment key is seen by the last query alone, so it receives less than 1.
      CHECK(row[nk + t - 1] < 1.0);
    }
  m.record_key_mass(false);
}

TEST_CASE("compressive: causal within a segment; earlier segments reach later ones through both memories") {
  cpu::Context ctx;
  using P = hier::Conv<2>;
  Ct<P> m(tiny<P>(2, 4));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9, 0.3);
  std::int64_t const v = 11;
  // Four segments of 2: token 0 of row 1 is compressed by the time of the fourth segment.
  auto last = [&](Tensor<std::int32_t, cpu> const& x) {
    auto mem = m.make_memory(2);
    m.bind_memory(&mem);
    for (std::int64_t s = 0; s < 3; ++s) logits_of(ctx, m, test::columns(x, 2 * s, 2));
    CHECK(mem.compressed_fill() == 1);  // tokens 0, 1 (evicted by segment 2, compressed by segment 3)
    auto out = logits_of(ctx, m, test::columns(x, 6, 2));
    m.bind_memory(nullptr);
    return out;
  };
  auto ids = random_ids(Shape{2, 8}, 11, 10);
  auto base = last(ids);
  auto x = random_ids(Shape{2, 8}, 11, 10);
  x.data()[8 + 0] = (x.data()[8 + 0] + 3) % 11;  // row 1, token 0: only in the compressed memory by now
  auto y = last(x);
  std::int64_t row0_moved = 0, row1_unmoved = 0;
  for (std::int64_t i = 0; i < 2; ++i) {
    bool s0 = true, s1 = true;
    for (std::int64_t c = 0; c < v; ++c) {
      s0 &= y[std::size_t(i * v + c)] == base[std::size_t(i * v + c)];
      s1 &= y[std::size_t((2 + i) * v + c)] == base[std::size_t((2 + i) * v + c)];
    }
    row0_moved += !s0;
    row1_unmoved += s1;
  }
  CHECK(row0_moved == 0);
  CHECK(row1_unmoved == 0);
  // Within the segment: the second token changes the second logit row only.
  auto z = random_ids(Shape{2, 8}, 11, 10);
  z.data()[8 + 7] = (z.data()[8 + 7] + 1) % 11;
  auto w = last(z);
  for (std::int64_t c = 0; c < v; ++c) CHECK(w[std::size_t(2 * v + c)] == base[std::size_t(2 * v + c)]);
  bool moved = false;
  for (std::int64_t c = 0; c < v; ++c) moved |= w[std::size_t(3 * v + c)] != base[std::size_t(3 * v + c)];
  CHECK(moved);
}

TEST_CASE("compressive: most-used keeps the pending rows that received the most attention") {
  cpu::Context ctx;
  using P = hier::MostUsed<2>;
  Ct<P> m(tiny<P>(2, 4));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11, 0.5);
  auto ids = random_ids(Shape{1, 8}, 11, 12);
  auto mem = m.make_memory(1);
  m.bind_memory(&mem);
  for (std::int64_t s = 0; s < 2; ++s) logits_of(ctx, m, test::columns(ids, 2 * s, 2));
  // Two pending rows (tokens 0, 1) with their usage averages; the next segment keeps the larger.
  REQUIRE(mem.pending_fill() == 2);
  std::vector<double> use0(2), pend0(2 * 8);
  std::int64_t k = 0;
  mem.visit_state([&](std::string const& name, auto&& x) {
    using X = std::remove_cvref_t<decltype(x)>;
    if constexpr (!std::is_same_v<X, std::int64_t>) {
      if (name == "pend_use0") std::copy(x.data, x.data + 2, use0.begin());
      if (name == "pend0") std::copy(x.data, x.data + 16, pend0.begin());
      ++k;
    }
  });
  CHECK(use0[0] != use0[1]);
  CHECK(use0[0] > 0);
  logits_of(ctx, m, test::columns(ids, 4, 2));
  REQUIRE(mem.compressed_fill() == 1);
  auto cm = mem.compressed(0);
  std::size_t const kept = use0[0] > use0[1] ? 0 : 1;
  for (std::int64_t j = 0; j < 8; ++j) CHECK(cm.data[j] == pend0[kept * 8 + std::size_t(j)]);
}

TEST_CASE("compressive: cached incremental logits equal the full recomputation") {
  cpu::Context ctx;
  std::int64_t const t = 12;
  using P = hier::DilatedConv<2>;
  Ct<P> m(tiny<P>(3, 2));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 13, 0.3);
  auto ids = random_ids(Shape{2, t}, 11, 14);
  Workspace<cpu> ws(m.forward_workspace(2, t));
  Ct<P>::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  auto cache = m.make_cache(2, t);
  Workspace<cpu> step_ws(m.step_workspace(2, t, t));
  double worst = test::cached_vs_full_worst(ctx, m, cache, ids, tr.logits, t, 5, step_ws,
                                            [&](std::int64_t n, std::int64_t pos) { return m.step_workspace(2, n, pos); });
  CHECK(worst < 1e-12);
}

TEST_CASE("compressive: the losses a compressor without parameters cannot train are refused, and other bad input") {
  using Mean = models::CompressiveTransformer<cpu, float, hier::MeanPool<2>>;
  Mean::Config c;
  c.loss = CompressionLoss::kAutoEncoding;
  CHECK_THROWS_WITH_AS(Mean{c}, doctest::Contains("mean compression has none (use bptt)"), Error);
  c.loss = CompressionLoss::kAttentionReconstruction;
  CHECK_THROWS_WITH_AS(Mean{c}, doctest::Contains("the attn loss trains"), Error);
  c.loss = CompressionLoss::kBptt;
  c.loss_weight = -1;
  CHECK_THROWS_WITH_AS(Mean{c}, doctest::Contains("loss_weight -1"), Error);
  CHECK_THROWS_WITH_AS(models::compression_loss_from_name("attention"), doctest::Contains("known: bptt, ae, attn"), Error);
  Ct<hier::Conv<2>> m(tiny<hier::Conv<2>>(4, 4, CompressionLoss::kAutoEncoding));
  auto back = Ct<hier::Conv<2>>::config_from_json(m.config_json());
  CHECK(back.loss == CompressionLoss::kAutoEncoding);
  CHECK(m.config_json().find("\"loss\":\"ae\"") != std::string::npos);
  CHECK(m.config_json().find("\"compress\":\"conv\"") != std::string::npos);
  CHECK(m.config_json().find("\"rate\":\"2\"") != std::string::npos);
  // Another compression function or rate refuses the configuration.
  CHECK_THROWS_WITH_AS(Ct<hier::Conv<3>>::config_from_json(m.config_json()), doctest::Contains("at rate 2, this model type by 'conv' at rate 3"), Error);
  CHECK_THROWS_WITH_AS(Ct<hier::DilatedConv<2>>::config_from_json(m.config_json()), doctest::Contains("this model type by 'dilated'"), Error);
}

TEST_CASE("compressive: the auto-encoding loss is reported, weighted into the total, and trains only the compressor") {
  cpu::Context ctx;
  using P = hier::Conv<2>;
  Ct<P> m(tiny<P>(2, 4, CompressionLoss::kAutoEncoding));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 15, 0.3);
  auto ids = random_ids(Shape{2, 8}, 11, 16), targets = random_ids(Shape{2, 8}, 11, 17);
  auto mem = m.make_memory(2);
  m.bind_memory(&mem);
  Workspace<cpu> ws(m.forward_workspace(2, 4) + m.backward_workspace(2, 4));
  Ct<P>::Trace tr;
  {  // one segment of 4 over a memory of 2: two rows evicted, pending
    auto a = ws.arena();
    m.forward(ctx, test::columns(ids, 0, 4).cview(), test::columns(targets, 0, 4).cview(), a, tr);
  }
  REQUIRE(mem.pending_fill() == 2);
  auto a = ws.arena();
  ps.zero_grad(ctx);
  auto x = random_ids(Shape{2, 4}, 11, 18), y = random_ids(Shape{2, 4}, 11, 19);
  double total = m.forward(ctx, x.cview(), y.cview(), a, tr);
  CHECK(tr.terms[1].value > 0);
  CHECK(total == doctest::Approx(tr.terms[0].value + 0.7 * tr.terms[1].value).epsilon(1e-14));
  m.backward(ctx, tr, a);
  // The compressor and decoder got gradients; without the AE term they would get none (stop-gradient).
  double gc = 0;
  for (auto const& e : ps.entries())
    if (e.name.rfind("compress", 0) == 0)
      for (std::int64_t i = 0; i < e.param->grad.numel(); ++i) gc += std::abs(e.param->grad.data[i]);
  CHECK(gc > 0);
}

}  // namespace HSEQ_TEST_UNIT
