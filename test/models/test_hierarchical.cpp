// SPDX-License-Identifier: MIT
// models::Hierarchical (HRED, HAED and every encoder x backbone x decoder combination): gradients
// against finite differences, causality by perturbation, cached generation against the full
// forward, workspace plans, training with the Trainer, configuration JSON and input errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/models/cached_model.hpp"
#include "hseq/models/generate.hpp"
#include "hseq/models/hierarchical.hpp"
#include "hseq/models/model.hpp"
#include "hseq/train/trainer.hpp"
#include "support/cached_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using hier::MlpEncoder;
using hier::RnnBackbone;
using hier::RnnDecoder;
using hier::RnnEncoder;
using hier::TransformerBackbone;
using hier::TransformerDecoder;

template <class T, std::int64_t K, class E, class Bb, class D>
using Hier = models::Hierarchical<cpu, T, hier::FixedChunks<K>, E, Bb, D>;

static_assert(models::CachedModel<models::Hred<cpu, float, 4>, cpu, float>);
static_assert(models::CachedModel<models::Hred<cpu, double, 2>, cpu, double>);
static_assert(models::CachedModel<models::Haed<cpu, float, 4>, cpu, float>);
static_assert(models::CachedModel<models::Haed<cpu, float, 8, TransformerDecoder>, cpu, float>);
static_assert(models::CachedModel<Hier<float, 3, RnnEncoder, TransformerBackbone, TransformerDecoder>, cpu, float>);
static_assert(std::is_same_v<models::Haed<cpu, float, 4>, Hier<float, 4, MlpEncoder, TransformerBackbone, RnnDecoder>>);
static_assert(std::string_view(hier::FixedChunks<4>::kName) == "fixed4");
static_assert(std::string_view(hier::FixedChunks<16>::kName) == "fixed16");

namespace {
Tensor<std::int32_t, cpu> random_ids(Shape s, std::int64_t vocab, std::uint64_t seed) {
  Tensor<std::int32_t, cpu> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::int32_t(rng.below(std::uint64_t(vocab)));
  return t;
}

template <class M>
std::string type_name() {
  return std::string(M::encoder_name()) + "/" + M::backbone_name() + "/" + M::decoder_name();
}

template <class M>
void gradcheck_model(nn::RnnKind cell, std::int64_t layers) {
  std::string const name = type_name<M>(), cell_name = nn::rnn_kind_name(cell);
  CAPTURE(name);
  CAPTURE(cell_name);
  CAPTURE(layers);
  cpu::Context ctx;
  std::int64_t const k = M::kSegment, t = 3 * k, v = 11;
  M m({.vocab = v, .dim = 8, .heads = 2, .layers = layers, .decoder_layers = layers, .mlp_hidden = 8, .cell = cell,
       .context = t});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.3);
  auto ids = random_ids(Shape{2, t}, v, 1), targets = random_ids(Shape{2, t}, v, 2);
  std::size_t plan = m.forward_workspace(2, t) + m.backward_workspace(2, t);
  Workspace<cpu> ws(plan);
  typename M::Trace tr;
  auto loss = [&] {
    auto a = ws.arena();
    return m.forward(ctx, ids.cview(), targets.cview(), a, tr);
  };
  auto grads = [&] {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    CHECK(a.used() == m.forward_workspace(2, t));
    m.backward(ctx, tr, a);
    CHECK(a.high_water() <= plan);
  };
  test::GradcheckOptions opt;
  opt.max_per_tensor = 12;
  test::GradCheck(ps, opt).run(loss, grads);
}

/// Changes byte p (in both batch rows) and checks that the logit rows < p are bit-identical and
/// that exactly the rows >= p change: the rest of p's segment through the decoder, every later
/// segment through the encoder, the backbone and the next conditions.
template <class M>
void causality(nn::RnnKind cell) {
  std::string const name = type_name<M>(), cell_name = nn::rnn_kind_name(cell);
  CAPTURE(name);
  CAPTURE(cell_name);
  cpu::Context ctx;
  std::int64_t const k = M::kSegment, t = 4 * k, v = 32;
  M m({.vocab = v, .dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2, .cell = cell, .context = t});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 3);
  test::randomize_params(ps, 3, 0.2);
  Workspace<cpu> ws(m.forward_workspace(2, t));
  typename M::Trace tr;
  auto run = [&](Tensor<std::int32_t, cpu> const& ids) {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, tr);
    REQUIRE(tr.logits.shape == (Shape{2, t, v}));
    return std::vector<float>(tr.logits.begin(), tr.logits.end());
  };
  auto ids = random_ids(Shape{2, t}, v, 7);
  auto base = run(ids);
  for (std::int64_t p = 0; p < t; ++p) {
    CAPTURE(p);
    auto changed = random_ids(Shape{2, t}, v, 7);
    changed.data()[p] = (changed.data()[p] + 5) % std::int32_t(v);
    changed.data()[t + p] = (changed.data()[t + p] + 9) % std::int32_t(v);
    auto out = run(changed);
    for (std::int64_t b = 0; b < 2; ++b) {
      CAPTURE(b);
      std::string moved, expected;
      for (std::int64_t i = 0; i < t; ++i) {
        bool row_moved = false;
        for (std::int64_t c = 0; c < v; ++c) {
          std::size_t q = std::size_t((b * t + i) * v + c);
          row_moved = row_moved || out[q] != base[q];
        }
        moved += row_moved ? 'x' : '.';
        expected += i >= p ? 'x' : '.';
      }
      CHECK(moved == expected);  // '.' rows are bit-identical
    }
  }
  // The learned start vector conditions segment 0 only: later segments read backbone outputs.
  auto& start = ps.find("start");
  for (std::int64_t i = 0; i < start.value.numel(); ++i) start.value[i] += i % 2 == 0 ? 0.5f : -0.3f;
  auto out = run(ids);
  std::string moved, expected;
  for (std::int64_t i = 0; i < t; ++i) {
    bool row_moved = false;
    for (std::int64_t c = 0; c < v; ++c) row_moved = row_moved || out[std::size_t(i * v + c)] != base[std::size_t(i * v + c)];
    moved += row_moved ? 'x' : '.';
    expected += i < k ? 'x' : '.';
  }
  CHECK(moved == expected);
}

template <class M>
void cached_equals_full(nn::RnnKind cell) {
  std::string const name = type_name<M>(), cell_name = nn::rnn_kind_name(cell);
  CAPTURE(name);
  CAPTURE(cell_name);
  cpu::Context ctx;
  std::int64_t const k = M::kSegment, t = 4 * k, v = 24;
  M m({.vocab = v, .dim = 8, .heads = 2, .layers = 2, .decoder_layers = 2, .mlp_hidden = 8, .cell = cell,
       .context = t});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11, 0.3);
  auto ids = random_ids(Shape{2, t}, v, 5);
  Workspace<cpu> ws(m.forward_workspace(2, t));
  typename M::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  std::int64_t const cap = t - 1;  // not a whole number of segments: the last one stays partial
  auto cache = m.make_cache(2, cap);
  std::size_t plan = m.step_workspace(2, 1, cap);
  Workspace<cpu> sws(plan);
  for (int round = 0; round < 2; ++round) {  // the second round after reset_cache
    CAPTURE(round);
    m.reset_cache(cache);
    // A prefill across a segment boundary, then byte by byte.
    double worst = test::cached_vs_full_worst(ctx, m, cache, ids, tr.logits, cap, k + 1, sws,
                                              [&](std::int64_t, std::int64_t) { return plan; });
    CHECK(worst < 1e-11);
  }
}

template <class F>
void every_combination(F&& f) {
  using G = nn::RnnKind;
  f.template operator()<Hier<double, 3, RnnEncoder, RnnBackbone, RnnDecoder>>(G::kGru);
  f.template operator()<Hier<double, 3, RnnEncoder, RnnBackbone, RnnDecoder>>(G::kLstm);
  f.template operator()<Hier<double, 3, RnnEncoder, RnnBackbone, TransformerDecoder>>(G::kGru);
  f.template operator()<Hier<double, 3, RnnEncoder, TransformerBackbone, RnnDecoder>>(G::kLstm);
  f.template operator()<Hier<double, 3, RnnEncoder, TransformerBackbone, TransformerDecoder>>(G::kGru);
  f.template operator()<Hier<double, 2, MlpEncoder, RnnBackbone, RnnDecoder>>(G::kGru);
  f.template operator()<Hier<double, 2, MlpEncoder, RnnBackbone, TransformerDecoder>>(G::kLstm);
  f.template operator()<Hier<double, 4, MlpEncoder, TransformerBackbone, RnnDecoder>>(G::kLstm);
  f.template operator()<Hier<double, 4, MlpEncoder, TransformerBackbone, TransformerDecoder>>(G::kGru);
}

/// The same combination in float (causality runs in float, as the other models' tests do).
template <class M>
struct AsFloat;
template <class T, class S, class E, class Bb, class D>
struct AsFloat<models::Hierarchical<cpu, T, S, E, Bb, D>> {
  using type = models::Hierarchical<cpu, float, S, E, Bb, D>;
};
}  // namespace

TEST_CASE("gradcheck: HRED tiny models (GRU and LSTM, one and two layers)") {
  gradcheck_model<models::Hred<cpu, double, 2>>(nn::RnnKind::kGru, 1);
  gradcheck_model<models::Hred<cpu, double, 3>>(nn::RnnKind::kLstm, 2);
}

TEST_CASE("gradcheck: HAED tiny models (RNN decoder and Transformer decoder)") {
  gradcheck_model<models::Haed<cpu, double, 2>>(nn::RnnKind::kGru, 2);
  gradcheck_model<models::Haed<cpu, double, 3, TransformerDecoder>>(nn::RnnKind::kGru, 1);
}

TEST_CASE("gradcheck: hierarchical mixed combinations (RNN encoder + Transformer, MLP encoder + RNN backbone)") {
  gradcheck_model<Hier<double, 2, RnnEncoder, TransformerBackbone, TransformerDecoder>>(nn::RnnKind::kLstm, 1);
  gradcheck_model<Hier<double, 2, MlpEncoder, RnnBackbone, TransformerDecoder>>(nn::RnnKind::kGru, 1);
}

TEST_CASE("hierarchical: causality by perturbation, every encoder x backbone x decoder") {
  every_combination([]<class M>(nn::RnnKind cell) { causality<typename AsFloat<M>::type>(cell); });
}

TEST_CASE("hierarchical: cached generation logits equal the full forward, every encoder x backbone x decoder") {
  every_combination([]<class M>(nn::RnnKind cell) { cached_equals_full<M>(cell); });
}

TEST_CASE("hierarchical: the cache refuses out-of-order positions and positions past its capacity") {
  using M = models::Hred<cpu, float, 2>;
  cpu::Context ctx;
  M m({.vocab = 16, .dim = 8, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 8});
  nn::ParamStore<cpu, float> ps(m);
  auto cache = m.make_cache(1, 4);
  Tensor<std::int32_t, cpu> id(Shape{1, 1});
  id.data()[0] = 3;
  Tensor<float, cpu> logits(Shape{1, 1, 16});
  Workspace<cpu> ws(m.step_workspace(1, 1, 4));
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, id.cview(), cache, 2, logits.view(), a), doctest::Contains("sequential"),
                       Error);
  for (std::int64_t p = 0; p < 4; ++p) m.forward_step(ctx, id.cview(), cache, p, logits.view(), a);
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, id.cview(), cache, 4, logits.view(), a),
                       doctest::Contains("exceed the cache capacity 4"), Error);
  CHECK_THROWS_WITH_AS(m.make_cache(1, 9), doctest::Contains("context 8"), Error);
}

TEST_CASE("hierarchical: bad inputs and configurations say what is wrong") {
  using M = models::Haed<cpu, float, 4>;
  CHECK_THROWS_WITH_AS(M({.dim = 8, .heads = 2, .context = 10}),
                       doctest::Contains("context 10 is not a multiple of the segment size 4"), Error);
  CHECK_THROWS_WITH_AS(M({.dim = 10, .heads = 4, .context = 8}), doctest::Contains("heads 4 do not divide"), Error);
  CHECK_THROWS_WITH_AS(M({.dim = 8, .heads = 2, .decoder_layers = 0, .context = 8}),
                       doctest::Contains("decoder_layers 0"), Error);
  cpu::Context ctx;
  M m({.vocab = 16, .dim = 8, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 8});
  nn::ParamStore<cpu, float> ps(m);
  Workspace<cpu> ws(1 << 22);
  M::Trace tr;
  {
    auto ids = random_ids(Shape{1, 6}, 16, 1);
    auto a = ws.arena();
    CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), {}, a, tr),
                         doctest::Contains("sequence length 6 is not a positive multiple of the segment size 4"), Error);
  }
  {
    auto ids = random_ids(Shape{1, 12}, 16, 1);
    auto a = ws.arena();
    CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), {}, a, tr),
                         doctest::Contains("sequence length 12 exceeds the context 8"), Error);
  }
  {
    auto ids = random_ids(Shape{1, 8}, 16, 1);
    ids.data()[5] = 16;
    auto a = ws.arena();
    CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), {}, a, tr), doctest::Contains("id 16 at position 5 outside"),
                         Error);
  }
  {
    auto ids = random_ids(Shape{1, 8}, 16, 1), targets = random_ids(Shape{1, 4}, 16, 2);
    auto a = ws.arena();
    CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), targets.cview(), a, tr), doctest::Contains("differ from ids"),
                         Error);
  }
}

TEST_CASE("hierarchical: config JSON names the policies, round-trips, and refuses another model type") {
  using H = models::Hred<cpu, float, 4>;
  using A = models::Haed<cpu, float, 4, TransformerDecoder>;
  H h({.vocab = 29, .dim = 8, .heads = 2, .layers = 1, .decoder_layers = 1, .cell = nn::RnnKind::kLstm,
       .context = 16});
  std::string const jh =
      R"({"backbone":"rnn","cell":"lstm","context":16,"decoder":"rnn","decoder_layers":1,"dim":8,"encoder":"rnn",)"
      R"("eps":1e-05,"heads":2,"init_std":0.02,"layers":1,"mlp_hidden":0,"segment":"fixed4","vocab":29})";
  CHECK(h.config_json() == jh);
  auto c = H::config_from_json(jh);
  CHECK(c.cell == nn::RnnKind::kLstm);
  CHECK(c.vocab == 29);
  CHECK(H(c).config_json() == jh);
  CHECK_THROWS_WITH_AS(A::config_from_json(jh), doctest::Contains("uses encoder 'rnn', this model type is segment "
                                                                  "'fixed4', encoder 'mlp', backbone 'transformer', "
                                                                  "decoder 'transformer'"),
                       Error);
  std::string other_k = jh;
  other_k.replace(other_k.find("fixed4"), 6, "fixed8");
  CHECK_THROWS_WITH_AS(H::config_from_json(other_k), doctest::Contains("uses segment 'fixed8'"), Error);
  std::string bad_cell = jh;
  bad_cell.replace(bad_cell.find("lstm"), 4, "tanh");
  CHECK_THROWS_WITH_AS(H::config_from_json(bad_cell), doctest::Contains("unknown recurrent cell 'tanh'"), Error);
  CHECK_THROWS_WITH_AS(H::config_from_json(R"({"vocab":29})"), doctest::Contains("invalid config JSON"), Error);
  CHECK(std::string(H::kKind) == "hierarchical");
  nn::ParamStore<cpu, float> ps(h);
  CHECK(ps.find("start").shape == Shape{8});
  CHECK(ps.find("encoder.rnn.weight_ih").shape == (Shape{32, 8}));
  CHECK(ps.find("decoder.0.rnn.weight_ih").shape == (Shape{32, 16}));  // [x; c] input
}

namespace {
template <class M>
void trains(typename M::Config mc) {
  std::string const name = type_name<M>();
  CAPTURE(name);
  cpu::Context ctx;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "abcd efgh abcd ijkl ";
  auto data = io::TextDataset::from_string(text, "repetitive", 0.1);
  M m(mc);
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  train::TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 16;
  tc.steps = 50;
  tc.warmup = 5;
  tc.lr = 1e-2;
  tc.eval_every = 0;
  tc.eval_windows = 4;
  train::Trainer<cpu, float, M> trainer(ctx, m, ps, data, tc);
  std::vector<double> losses;
  for (int s = 0; s < 50; ++s) losses.push_back(trainer.step(ctx));
  double first = (losses[0] + losses[1]) / 2, last = (losses[47] + losses[48] + losses[49]) / 3;
  CAPTURE(first);
  CAPTURE(last);
  CHECK(std::isfinite(last));
  CHECK(last < first - 2.0);  // from ln 256 = 5.5 nats; a unigram model of the text would sit near 2.5
  // Greedy generation through the cache continues the prompt with the full forward's argmax.
  std::string const prompt = "abcd";
  models::GenerateConfig gc;
  gc.max_bytes = 12;
  gc.sampler.temperature = 0;
  std::string text_out = prompt + models::generate<cpu, float>(ctx, m, prompt, gc);
  REQUIRE(text_out.size() == 16);
  Tensor<std::int32_t, cpu> ids(Shape{1, 16});
  for (std::int64_t i = 0; i < 16; ++i) ids.data()[i] = std::int32_t(static_cast<unsigned char>(text_out[std::size_t(i)]));
  Workspace<cpu> ws(m.forward_workspace(1, 16));
  auto a = ws.arena();
  typename M::Trace tr;
  m.forward(ctx, ids.cview(), {}, a, tr);
  for (std::int64_t p = 3; p < 15; ++p) {
    CAPTURE(p);
    float const* row = tr.logits.data + p * 256;
    CHECK(std::max_element(row, row + 256) - row == ids.data()[p + 1]);
  }
}
}  // namespace

TEST_CASE("hierarchical: HRED and HAED learn a repetitive string with the Trainer") {
  trains<models::Hred<cpu, float, 4>>({.dim = 32, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 16});
  trains<models::Haed<cpu, float, 4>>({.dim = 32, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 16});
  trains<models::Haed<cpu, float, 4, TransformerDecoder>>(
      {.dim = 32, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 16});
}

}  // namespace HSEQ_TEST_UNIT
