// SPDX-License-Identifier: MIT
// models::Hierarchical with the variable segmenter hier::Delimited: gradients against finite
// differences, causality by perturbation across segment boundaries (also when a change moves later
// boundaries), cached generation against the full forward, padding that does not leak between batch
// rows, the decoder objective, the IEM objective over delimited segments (gradients, the proposal,
// accidental hits, a two-phase run), training with the Trainer, configuration JSON and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "hseq/hier/delimited.hpp"
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

template <class T, std::int64_t L, class E, class Bb, class D>
using Delim = models::Hierarchical<cpu, T, hier::Delimited<L>, E, Bb, D>;

static_assert(models::CachedModel<Delim<float, 8, RnnEncoder, RnnBackbone, RnnDecoder>, cpu, float>);
static_assert(models::CachedModel<Delim<double, 4, MlpEncoder, TransformerBackbone, TransformerDecoder>, cpu, double>);
static_assert(Delim<float, 8, MlpEncoder, RnnBackbone, RnnDecoder>::kVariable);
static_assert(!models::Hred<cpu, float, 4>::kVariable);

namespace {
constexpr std::int32_t kNewline = 10;  // '\n': the delimiter byte of the tests (vocab 12)

/// Rows of text over {a..j, '\n'} as ids [B, t]: 'a' + k -> k, '\n' -> 10.
Tensor<std::int32_t, cpu> ids_of(std::vector<std::string> const& rows) {
  std::int64_t t = std::int64_t(rows[0].size());
  Tensor<std::int32_t, cpu> ids(Shape{std::int64_t(rows.size()), t});
  for (std::size_t b = 0; b < rows.size(); ++b) {
    REQUIRE(std::int64_t(rows[b].size()) == t);
    for (std::int64_t p = 0; p < t; ++p) {
      char c = rows[b][std::size_t(p)];
      ids.data()[std::int64_t(b) * t + p] = c == '\n' ? kNewline : std::int32_t(c - 'a');
    }
  }
  return ids;
}

/// Random ids in [0, 12) with a delimiter byte about every fourth position.
Tensor<std::int32_t, cpu> random_text(Shape s, std::uint64_t seed) {
  Tensor<std::int32_t, cpu> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = rng.below(4) == 0 ? kNewline : std::int32_t(rng.below(10) + (rng.below(5) == 0 ? 1 : 0));
  return t;
}

template <class M>
std::string type_name() {
  return std::string(M::encoder_name()) + "/" + M::backbone_name() + "/" + M::decoder_name();
}

template <class M>
typename M::Config tiny(std::int64_t t, nn::RnnKind cell, std::int64_t layers, std::string delimiter = "\n") {
  typename M::Config c{.vocab = 12,
                       .dim = 8,
                       .heads = 2,
                       .layers = layers,
                       .decoder_layers = layers,
                       .mlp_hidden = 8,
                       .cell = cell,
                       .context = t};
  // "\n" is byte 10 in the tests' alphabet; "\n\n" two of them. (A rule, "@word", reads the ids
  // as bytes: 10 is whitespace there too.)
  if (!delimiter.starts_with("@"))
    for (char& ch : delimiter) ch = char(kNewline);
  c.delimiter = delimiter;
  return c;
}

template <class M>
void gradcheck_model(nn::RnnKind cell, std::int64_t layers, std::string delimiter = "\n") {
  std::string const name = type_name<M>(), cell_name = nn::rnn_kind_name(cell);
  CAPTURE(name);
  CAPTURE(cell_name);
  cpu::Context ctx;
  // MaxLen 4: row 0 "a\n" "bc\n" "defg" "h" (4 segments, one padding), row 1 "abcd" "e\n" "f\n" "\n" "g"
  // (5 segments; with "\n\n": "abcd" "e\nf\n" "\ng").
  auto ids = ids_of({"a\nbc\ndefgh", "abcde\nf\n\ng"});
  std::int64_t const t = 10;
  M m(tiny<M>(t, cell, layers, delimiter));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.3);
  auto targets = ids_of({"\nbc\ndefghi", "bcde\nf\n\ngh"});
  targets.data()[3] = -1;  // an ignored target
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
    CHECK(a.used() <= m.forward_workspace(2, t));  // the plan is the worst case (every byte a delimiter)
    m.backward(ctx, tr, a);
    CHECK(a.high_water() <= plan);
  };
  test::GradcheckOptions opt;
  opt.max_per_tensor = 12;
  test::GradCheck(ps, opt).run(loss, grads);
}

/// Logit rows of a forward (float), [B, t, V] flattened. Batch-invariant GEMMs: a change that moves
/// later boundaries changes the segment count and so the shapes of the GEMMs, and an optimized BLAS
/// may then round an earlier row differently (OpenBLAS's Zen kernels do); the invariant kernel keeps
/// the bit-identity below a property of the model, not of the BLAS.
template <class M>
std::vector<float> logits_of(M const& m, Tensor<std::int32_t, cpu> const& ids, Workspace<cpu>& ws) {
  cpu::Context ctx;
  ctx.set_batch_invariant(true);
  typename M::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  return std::vector<float>(tr.logits.begin(), tr.logits.end());
}

/// "x" for each logit row of batch row b that differs from `base`, "." for bit-identical ones.
std::string moved_rows(std::vector<float> const& out, std::vector<float> const& base, std::int64_t b, std::int64_t t,
                       std::int64_t v) {
  std::string moved;
  for (std::int64_t i = 0; i < t; ++i) {
    bool row_moved = false;
    for (std::int64_t c = 0; c < v; ++c) {
      std::size_t q = std::size_t((b * t + i) * v + c);
      row_moved = row_moved || out[q] != base[q];
    }
    moved += row_moved ? 'x' : '.';
  }
  return moved;
}

/// Changes byte p of both rows, once into / out of the delimiter (which moves later boundaries,
/// and may change the batch's segment count and so the grid's shape) and once into another
/// ordinary byte: logit rows < p must stay bit-identical and every row >= p must change (the rest
/// of p's segment through the decoder, later segments through encoder -> backbone -> conditions).
template <class M>
void causality(nn::RnnKind cell) {
  std::string const name = type_name<M>(), cell_name = nn::rnn_kind_name(cell);
  CAPTURE(name);
  CAPTURE(cell_name);
  cpu::Context ctx;
  std::int64_t const t = 14, v = 12;
  M m(tiny<M>(t, cell, 2));
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 3);
  test::randomize_params(ps, 3, 0.3);
  Workspace<cpu> ws(m.forward_workspace(2, t));
  auto ids = random_text(Shape{2, t}, 7);
  auto base = logits_of(m, ids, ws);
  for (int kind = 0; kind < 2; ++kind) {
    for (std::int64_t p = 0; p < t; ++p) {
      CAPTURE(kind);
      CAPTURE(p);
      auto changed = random_text(Shape{2, t}, 7);
      for (std::int64_t b = 0; b < 2; ++b) {
        std::int32_t& x = changed.data()[b * t + p];
        if (kind == 0)
          x = x == kNewline ? std::int32_t(3 + b) : kNewline;  // a boundary appears or vanishes
        else
          x = x == kNewline ? kNewline : std::int32_t((x + 1 + b) % 10);  // (delimiters stay)
      }
      if (kind == 1 && changed.data()[p] == kNewline && changed.data()[t + p] == kNewline) continue;
      auto out = logits_of(m, changed, ws);
      for (std::int64_t b = 0; b < 2; ++b) {
        CAPTURE(b);
        if (changed.data()[b * t + p] == ids.data()[b * t + p]) {
          CHECK(moved_rows(out, base, b, t, v) == std::string(std::size_t(t), '.'));  // this row did not change
          continue;
        }
        std::string expected(std::size_t(t), '.');
        for (std::int64_t i = p; i < t; ++i) expected[std::size_t(i)] = 'x';
        CHECK(moved_rows(out, base, b, t, v) == expected);  // '.' rows are bit-identical
      }
    }
  }
  // The learned start vector conditions each row's first segment only.
  hier::SegmentLayout lay;
  m.segmenter().layout(std::span<std::int32_t const>(ids.data(), std::size_t(2 * t)), 2, t, lay);
  auto& start = ps.find("start");
  for (std::int64_t i = 0; i < start.value.numel(); ++i) start.value[i] += i % 2 == 0 ? 0.5f : -0.3f;
  auto out = logits_of(m, ids, ws);
  for (std::int64_t b = 0; b < 2; ++b) {
    CAPTURE(b);
    std::string expected(std::size_t(t), '.');
    for (std::int64_t i = 0; i < lay.length[std::size_t(b * lay.segments)]; ++i) expected[std::size_t(i)] = 'x';
    CHECK(moved_rows(out, base, b, t, v) == expected);
  }
}

template <class M>
void cached_equals_full(nn::RnnKind cell, std::string delimiter = "\n") {
  std::string const name = type_name<M>(), cell_name = nn::rnn_kind_name(cell);
  CAPTURE(name);
  CAPTURE(cell_name);
  CAPTURE(delimiter.size());
  cpu::Context ctx;
  std::int64_t const t = 16;
  M m(tiny<M>(t, cell, 2, delimiter));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11, 0.3);
  // Rows with different boundaries (the batch rows end their segments at different bytes), a
  // MaxLen split, consecutive delimiters and a partial last segment.
  auto ids = ids_of({"ab\ncdefghij\n\n\nab", "a\n\nbcd\nef\n\ngh\nij"});
  Workspace<cpu> ws(m.forward_workspace(2, t));
  typename M::Trace tr;
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), {}, a, tr);
  std::int64_t const cap = t - 1;
  auto cache = m.make_cache(2, cap);
  std::size_t plan = m.step_workspace(2, 1, cap);
  Workspace<cpu> sws(plan);
  for (int round = 0; round < 2; ++round) {  // the second round after reset_cache
    CAPTURE(round);
    m.reset_cache(cache);
    // A prefill across segment boundaries, then byte by byte.
    double worst = test::cached_vs_full_worst(ctx, m, cache, ids, tr.logits, cap, 5, sws,
                                              [&](std::int64_t, std::int64_t) { return plan; });
    CHECK(worst < 1e-11);
  }
}

template <class F>
void every_combination(F&& f) {
  using G = nn::RnnKind;
  f.template operator()<Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>>(G::kGru);
  f.template operator()<Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>>(G::kLstm);
  f.template operator()<Delim<double, 3, RnnEncoder, RnnBackbone, TransformerDecoder>>(G::kGru);
  f.template operator()<Delim<double, 4, RnnEncoder, TransformerBackbone, RnnDecoder>>(G::kLstm);
  f.template operator()<Delim<double, 5, RnnEncoder, TransformerBackbone, TransformerDecoder>>(G::kGru);
  f.template operator()<Delim<double, 4, MlpEncoder, RnnBackbone, RnnDecoder>>(G::kGru);
  f.template operator()<Delim<double, 3, MlpEncoder, RnnBackbone, TransformerDecoder>>(G::kLstm);
  f.template operator()<Delim<double, 4, MlpEncoder, TransformerBackbone, RnnDecoder>>(G::kLstm);
  f.template operator()<Delim<double, 4, MlpEncoder, TransformerBackbone, TransformerDecoder>>(G::kGru);
}

template <class M>
struct AsFloat;
template <class T, class S, class E, class Bb, class D>
struct AsFloat<models::Hierarchical<cpu, T, S, E, Bb, D>> {
  using type = models::Hierarchical<cpu, float, S, E, Bb, D>;
};
}  // namespace

TEST_CASE("gradcheck: delimited HRED and HAED tiny models (GRU and LSTM, lines and turns)") {
  gradcheck_model<Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>>(nn::RnnKind::kGru, 1);
  gradcheck_model<Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>>(nn::RnnKind::kLstm, 2, "\n\n");
  gradcheck_model<Delim<double, 4, MlpEncoder, TransformerBackbone, RnnDecoder>>(nn::RnnKind::kGru, 2);
  gradcheck_model<Delim<double, 4, MlpEncoder, TransformerBackbone, TransformerDecoder>>(nn::RnnKind::kGru, 1, "\n\n");
}

TEST_CASE("delimited: rule segments (AU-Net's words, the Hourglass's rule): gradients and cached generation") {
  // "@word" ends a segment at a whitespace byte after a non-whitespace one: "\n\n" ends once, and a
  // segment may start with "\n" ("\ng"), unlike lines.
  gradcheck_model<Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>>(nn::RnnKind::kGru, 1, "@word");
  gradcheck_model<Delim<double, 4, MlpEncoder, TransformerBackbone, TransformerDecoder>>(nn::RnnKind::kGru, 1, "@word");
  cached_equals_full<Delim<double, 4, MlpEncoder, TransformerBackbone, RnnDecoder>>(nn::RnnKind::kGru, "@word");
  cached_equals_full<Delim<double, 4, RnnEncoder, RnnBackbone, TransformerDecoder>>(nn::RnnKind::kLstm, "@word/3");
  using M = Delim<float, 8, MlpEncoder, TransformerBackbone, RnnDecoder>;
  M m(tiny<M>(16, nn::RnnKind::kGru, 1, "@word"));
  CHECK(std::string(m.segmenter().name()) == "word");
  auto back = M::config_from_json(m.config_json());
  CHECK(back.delimiter == "@word");
}

TEST_CASE("gradcheck: delimited mixed combinations (RNN encoder + Transformers, MLP encoder + RNN backbone)") {
  gradcheck_model<Delim<double, 4, RnnEncoder, TransformerBackbone, TransformerDecoder>>(nn::RnnKind::kLstm, 1);
  gradcheck_model<Delim<double, 4, MlpEncoder, RnnBackbone, TransformerDecoder>>(nn::RnnKind::kGru, 1);
}

TEST_CASE("delimited: causality by perturbation across boundaries, every encoder x backbone x decoder") {
  every_combination([]<class M>(nn::RnnKind cell) { causality<typename AsFloat<M>::type>(cell); });
}

TEST_CASE("delimited: cached generation logits equal the full forward, every encoder x backbone x decoder") {
  every_combination([]<class M>(nn::RnnKind cell) { cached_equals_full<M>(cell); });
  cached_equals_full<Delim<double, 4, MlpEncoder, TransformerBackbone, TransformerDecoder>>(nn::RnnKind::kGru, "\n\n");
  cached_equals_full<Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>>(nn::RnnKind::kLstm, "\n\n");
}

namespace {
/// Row 0's logits alone, and next to other rows with other layouts (more segments, so row 0 gets
/// padding segments; fewer; different boundaries): equal within rounding of the batched GEMMs.
template <class M>
void padding_does_not_leak(nn::RnnKind cell) {
  std::string const name = type_name<M>();
  CAPTURE(name);
  cpu::Context ctx;
  std::int64_t const t = 12, v = 12;
  M m(tiny<M>(t, cell, 2));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 4, 0.3);
  std::string const row0 = "abc\ndefghi\nj";  // 3 segments with MaxLen 4: "abc\n" "defg" "hi\n" "j" -> 4
  Workspace<cpu> ws(m.forward_workspace(3, t));
  auto run = [&](std::vector<std::string> const& rows) {
    typename M::Trace tr;
    auto a = ws.arena();
    m.forward(ctx, ids_of(rows).cview(), {}, a, tr);
    return std::vector<double>(tr.logits.begin(), tr.logits.begin() + t * v);  // row 0
  };
  auto alone = run({row0});
  for (auto const& others : std::vector<std::vector<std::string>>{{"\n\n\n\n\n\n\n\n\n\n\n\n"},  // 12 segments
                                                                  {"abcdefghijab"},              // 3 segments
                                                                  {"a\nb\nc\nd\ne\nf\n", "ab\n\nabcdefgh"}}) {
    std::vector<std::string> rows{row0};
    rows.insert(rows.end(), others.begin(), others.end());
    auto with = run(rows);
    double worst = 0;
    for (std::size_t i = 0; i < alone.size(); ++i) worst = std::max(worst, std::abs(with[i] - alone[i]));
    CAPTURE(others[0]);
    CHECK(worst < 1e-12);
  }
}
}  // namespace

TEST_CASE("delimited: padding does not leak between batch rows of different layouts") {
  padding_does_not_leak<Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>>(nn::RnnKind::kGru);
  padding_does_not_leak<Delim<double, 4, RnnEncoder, TransformerBackbone, TransformerDecoder>>(nn::RnnKind::kLstm);
  padding_does_not_leak<Delim<double, 4, MlpEncoder, TransformerBackbone, RnnDecoder>>(nn::RnnKind::kGru);
  padding_does_not_leak<Delim<double, 4, MlpEncoder, RnnBackbone, TransformerDecoder>>(nn::RnnKind::kLstm);
}

TEST_CASE("delimited: the decoder objective stops the gradient at the conditions") {
  using M = Delim<double, 4, MlpEncoder, TransformerBackbone, RnnDecoder>;
  cpu::Context ctx;
  std::int64_t const t = 10;
  M m(tiny<M>(t, nn::RnnKind::kGru, 1));
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 6, 0.3);
  auto ids = ids_of({"a\nbc\ndefgh", "abcde\nf\n\ng"}), targets = ids_of({"\nbc\ndefghi", "bcde\nf\n\ngh"});
  Workspace<cpu> ws(m.forward_workspace(2, t) + m.backward_workspace(2, t));
  typename M::Trace tr;
  auto grads = [&](M::Objective o) {
    m.set_objective(o);
    ps.zero_grad(ctx);
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), targets.cview(), a, tr);
    m.backward(ctx, tr, a);
    std::vector<std::vector<double>> g;
    for (auto const& e : ps.entries()) g.emplace_back(e.param->grad.begin(), e.param->grad.end());
    return g;
  };
  auto full = grads(M::Objective::kFull), dec = grads(M::Objective::kDecoder);
  for (std::size_t k = 0; k < ps.entries().size(); ++k) {
    std::string const& n = ps.entries()[k].name;
    CAPTURE(n);
    bool upstream = n.starts_with("encoder.") || n.starts_with("backbone.");
    double worst = 0, norm = 0;
    for (std::size_t i = 0; i < full[k].size(); ++i) {
      worst = std::max(worst, std::abs(full[k][i] - dec[k][i]));
      norm = std::max(norm, std::abs(upstream ? dec[k][i] : full[k][i]));
    }
    if (upstream)
      CHECK(norm == 0);  // no gradient past the conditions
    else if (n != "tok_emb.weight")
      CHECK(worst == 0);  // the decoder side: exactly the full objective's
  }
}

TEST_CASE("delimited: config JSON names the delimiter's segmentation, round-trips, and refuses other types") {
  using L = Delim<float, 16, RnnEncoder, RnnBackbone, RnnDecoder>;
  L::Config c{.vocab = 29, .dim = 8, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 32};
  c.delimiter = "\n\n";
  L m(c);
  std::string const j = m.config_json();
  CHECK(j.find(R"("segment":"turn")") != std::string::npos);
  CHECK(j.find(R"("delimiter":"\n\n")") != std::string::npos);
  CHECK(j.find(R"("segment_max_len":16)") != std::string::npos);
  auto back = L::config_from_json(j);
  CHECK(back.delimiter == "\n\n");
  CHECK(L(back).config_json() == j);
  c.delimiter = "\n";
  CHECK(L(c).config_json().find(R"("segment":"line")") != std::string::npos);
  c.delimiter = ";";
  CHECK(L(c).config_json().find(R"("segment":"delimited")") != std::string::npos);
  // Another MaxLen, a fixed-size type, a name that does not match the delimiter.
  using L8 = Delim<float, 8, RnnEncoder, RnnBackbone, RnnDecoder>;
  using H4 = models::Hred<cpu, float, 4>;
  CHECK_THROWS_WITH_AS(L8::config_from_json(j), doctest::Contains("segments of at most 16 bytes, this model type 8"),
                       Error);
  CHECK_THROWS_WITH_AS(H4::config_from_json(j), doctest::Contains("uses segment 'turn'"), Error);
  std::string renamed = j;
  renamed.replace(renamed.find("\"turn\""), 6, "\"line\"");
  CHECK_THROWS_WITH_AS(L::config_from_json(renamed),
                       doctest::Contains("uses segment 'line', this model type is segment 'turn'"), Error);
  std::string fixed = H4({.dim = 8, .heads = 2, .context = 16}).config_json();
  CHECK_THROWS_WITH_AS(L::config_from_json(fixed), doctest::Contains("uses segment 'fixed4'"), Error);
}

TEST_CASE("delimited: bad configurations and proposals say what is wrong") {
  using M = Delim<float, 8, MlpEncoder, TransformerBackbone, RnnDecoder>;
  M::Config c{.dim = 8, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 20};  // any context
  c.delimiter = "";
  CHECK_THROWS_WITH_AS(M{c}, doctest::Contains("the delimiter is empty"), Error);
  c.delimiter = "123456789";
  CHECK_THROWS_WITH_AS(M{c}, doctest::Contains("the delimiter of 9 bytes is longer than the longest segment (8 bytes)"),
                       Error);
  c.delimiter = "\n";
  M m(c);
  CHECK_THROWS_WITH_AS(m.set_phase("iem"), doctest::Contains("needs Config::iem_negatives > 0"), Error);
  m.set_phase("decoder");
  m.set_phase("full");
  // The IEM proposal must count this model's delimited segments.
  CHECK_THROWS_WITH_AS(m.set_iem_proposal(hier::SegmentProposal("abcdefg\nhij\n", 4)),
                       doctest::Contains("a proposal over 9 fixed-size segments of at most 4 bytes for a model of "
                                         "delimited segments (delimiter of 1 bytes, MaxLen 8)"),
                       Error);
  CHECK_THROWS_WITH_AS(m.set_iem_proposal(hier::SegmentProposal("ab\n\ncd\n\n", hier::Delimited<8>("\n\n"))),
                       doctest::Contains("ended by a delimiter of 2 bytes"), Error);
  CHECK_THROWS_WITH_AS(m.set_iem_proposal(hier::SegmentProposal("ab\ncd\n", hier::Delimited<16>("\n"))),
                       doctest::Contains("segments of at most 16 bytes"), Error);
  m.set_iem_proposal(hier::SegmentProposal("ab\ncd\n", m.segmenter()));
  CHECK(m.iem_proposal().size() == 2);
  // The worst case (every byte a delimiter) sizes the Transformer backbone's positions.
  nn::ParamStore<cpu, float> ps(m);
  CHECK(ps.find("backbone.pos_emb.weight").shape == (Shape{20, 8}));
  CHECK(ps.find("encoder.fc1.weight").shape == (Shape{32, 64}));  // MaxLen 8 bytes side by side
  cpu::Context ctx;
  Workspace<cpu> ws(m.forward_workspace(1, 20));
  M::Trace tr;
  auto ids = ids_of({"abcdefghijabcdefghija"});
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), {}, a, tr),
                       doctest::Contains("sequence length 21 exceeds the context 20"), Error);
}

TEST_CASE("delimited: HRED and HAED over lines learn a repetitive text; greedy cached generation follows the forward") {
  auto trains = []<class M>(M*) {
    std::string const name = type_name<M>();
    CAPTURE(name);
    cpu::Context ctx;
    std::string text;
    for (int i = 0; i < 200; ++i) text += "abcd efgh\nabcd ijkl\nxy\n";
    auto data = io::TextDataset::from_string(text, "lines", 0.1);
    M m({.dim = 32, .heads = 2, .layers = 1, .decoder_layers = 1, .context = 16});
    nn::ParamStore<cpu, float> ps(m);
    ps.init(ctx, 1);
    train::TrainerConfig tc;
    tc.batch = 4;
    tc.seq_len = 16;
    tc.steps = 60;
    tc.warmup = 5;
    tc.lr = 1e-2;
    tc.eval_every = 0;
    tc.eval_windows = 4;
    train::Trainer<cpu, float, M> trainer(ctx, m, ps, data, tc);
    std::vector<double> losses;
    for (int s = 0; s < 60; ++s) losses.push_back(trainer.step(ctx));
    double first = (losses[0] + losses[1]) / 2, last = (losses[57] + losses[58] + losses[59]) / 3;
    CAPTURE(first);
    CAPTURE(last);
    CHECK(std::isfinite(last));
    CHECK(last < first - 2.0);
    std::string const prompt = "abcd";
    models::GenerateConfig gc;
    gc.max_bytes = 12;
    gc.sampler.temperature = 0;
    std::string out = prompt + models::generate<cpu, float>(ctx, m, prompt, gc);
    REQUIRE(out.size() == 16);
    Tensor<std::int32_t, cpu> ids(Shape{1, 16});
    for (std::int64_t i = 0; i < 16; ++i) ids.data()[i] = std::int32_t(static_cast<unsigned char>(out[std::size_t(i)]));
    CHECK(out.find('\n') != std::string::npos);  // the continuation crosses a segment boundary
    Workspace<cpu> ws(m.forward_workspace(1, 16));
    auto a = ws.arena();
    typename M::Trace tr;
    m.forward(ctx, ids.cview(), {}, a, tr);
    for (std::int64_t p = 3; p < 15; ++p) {
      CAPTURE(p);
      float const* row = tr.logits.data + p * 256;
      CHECK(std::max_element(row, row + 256) - row == ids.data()[p + 1]);
    }
  };
  trains(static_cast<Delim<float, 8, RnnEncoder, RnnBackbone, RnnDecoder>*>(nullptr));
  trains(static_cast<Delim<float, 8, MlpEncoder, TransformerBackbone, TransformerDecoder>*>(nullptr));
}

namespace {
/// Text over the tests' alphabet (bytes 0..9 and the delimiter 10), lines of 1..6 bytes: the
/// proposal's segments are valid ids of vocab 12, and repeats make accidental hits.
std::string small_lines(std::int64_t lines, std::uint64_t seed) {
  std::string s;
  Rng rng(seed);
  for (std::int64_t i = 0; i < lines; ++i) {
    std::int64_t len = std::int64_t(rng.below(6));
    for (std::int64_t j = 0; j < len; ++j) s += char(rng.below(3));
    s += char(kNewline);
  }
  return s;
}

template <class M>
void gradcheck_iem(typename M::Config mc, std::string const& label) {
  CAPTURE(label);
  cpu::Context ctx;
  std::int64_t const t = 10;
  M m(mc);
  if (mc.iem_negatives > 0) m.set_iem_proposal(hier::SegmentProposal(small_lines(60, 4), m.segmenter()));
  m.set_phase("iem");
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.3);
  // Row 0: "a\n" "a\n" "bc\n" "aab" (a repeated positive: an in-batch hit); row 1: "abcd" "e\n" "\n" "a\n" "g":
  // M = 3 + 4 predictions, row 0 with one padding segment.
  auto ids = ids_of({"a\na\nbc\naab", "abcde\n\na\ng"});
  std::size_t plan = m.forward_workspace(2, t) + m.backward_workspace(2, t);
  Workspace<cpu> ws(plan);
  typename M::Trace tr;
  auto loss = [&] {
    auto a = ws.arena();
    return m.forward(ctx, ids.cview(), {}, a, tr);
  };
  auto grads = [&] {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), {}, a, tr);
    CHECK(a.used() <= m.forward_workspace(2, t, M::Objective::kIem));
    CHECK(tr.iem.rows == 7);
    CHECK(tr.logits.empty());
    CHECK(tr.counted == 0);
    CHECK(std::string(tr.terms[0].name) == "iem");
    m.backward(ctx, tr, a);
    CHECK(a.high_water() <= plan);
  };
  test::GradcheckOptions opt;
  opt.max_per_tensor = 10;
  test::GradCheck(ps, opt)
      .allow_zero("param decoder.*", "the IEM objective does not run the decoder")
      .allow_zero("param start", "the IEM objective does not run the decoder")
      .allow_zero("param ln_f.*", "the IEM objective has no byte logits")
      .run(loss, grads);
  if (mc.iem_in_batch) CHECK(tr.iem_hits > 0);  // "a\n" twice in row 0: masked in-batch candidates
}
}  // namespace

TEST_CASE("gradcheck: delimited models in the IEM objective (sampled and in-batch negatives of variable length)") {
  using A = Delim<double, 4, MlpEncoder, TransformerBackbone, RnnDecoder>;
  auto ac = tiny<A>(10, nn::RnnKind::kGru, 1);
  ac.iem_negatives = 5;
  ac.iem_in_batch = true;
  gradcheck_iem<A>(ac, "HAED, sampled + in-batch, learned tau");
  using H = Delim<double, 4, RnnEncoder, RnnBackbone, RnnDecoder>;
  auto hc = tiny<H>(10, nn::RnnKind::kLstm, 1);
  hc.iem_negatives = 4;
  hc.iem_learn_tau = false;
  gradcheck_iem<H>(hc, "HRED (LSTM), sampled, fixed tau");
  auto ib = tiny<H>(10, nn::RnnKind::kGru, 1);
  ib.iem_in_batch = true;
  gradcheck_iem<H>(ib, "HRED (GRU), in-batch only");
}

TEST_CASE("delimited: IEM predictions are the rows' real segment pairs; the loss matches a by-hand sampled softmax") {
  using M = Delim<double, 4, MlpEncoder, RnnBackbone, RnnDecoder>;
  cpu::Context ctx;
  auto mc = tiny<M>(10, nn::RnnKind::kGru, 1);
  mc.iem_negatives = 3;
  mc.iem_learn_tau = false;
  mc.iem_tau = 0.5;
  M m(mc);
  auto text = small_lines(40, 9);
  hier::SegmentProposal q(text, m.segmenter());
  m.set_iem_proposal(q);
  m.set_phase("iem");
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 7, 0.3);
  auto ids = ids_of({"a\na\nbc\naab", "abcde\n\na\ng"});
  Workspace<cpu> ws(m.forward_workspace(2, 10));
  typename M::Trace tr;
  auto a = ws.arena();
  double loss = m.forward(ctx, ids.cview(), {}, a, tr);
  // By hand: the backbone rows s and encodings e of the trace, the head g and the drawn negatives.
  std::int64_t const d = 8, n = tr.segments;
  REQUIRE(n == 5);
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs{{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}, {1, 3}};
  auto& w = ps.find("iem.head.weight");
  auto& bias = ps.find("iem.head.bias");
  double total = 0;
  for (std::size_t r = 0; r < pairs.size(); ++r) {
    auto [b, i] = pairs[r];
    std::vector<double> p(static_cast<std::size_t>(d));
    for (std::int64_t o = 0; o < d; ++o) {
      p[std::size_t(o)] = bias.value[o];
      for (std::int64_t k = 0; k < d; ++k) p[std::size_t(o)] += w.value[o * d + k] * tr.s.data[(b * n + i) * d + k];
    }
    auto score = [&](double const* e) {
      double acc = 0;
      for (std::int64_t k = 0; k < d; ++k) acc += p[std::size_t(k)] * e[k];
      return acc / 0.5;
    };
    std::vector<double> z{score(tr.e.data + (b * n + i + 1) * d)};
    for (std::int64_t j = 0; j < 3; ++j) {
      double bj = tr.bias[r * 4 + std::size_t(1 + j)];
      z.push_back(std::isinf(bj) ? -std::numeric_limits<double>::infinity() : score(tr.neg_e.data + j * d) + bj);
    }
    double mx = *std::max_element(z.begin(), z.end()), se = 0;
    for (double v : z) se += std::exp(v - mx);
    total += mx + std::log(se) - z[0];
  }
  CHECK(loss == doctest::Approx(total / 7).epsilon(1e-12));
  // The negatives are proposal segments of variable length; hits are exact (length and bytes).
  for (std::int64_t j = 0; j < 3; ++j) {
    auto seg = q.segment(tr.neg_index[std::size_t(j)]);
    CHECK(tr.neg_len[std::size_t(j)] == std::int32_t(seg.size()));
  }
}

TEST_CASE("delimited: HAED over lines trains its IEM phase then its decoder phase") {
  using M = Delim<float, 8, MlpEncoder, TransformerBackbone, RnnDecoder>;
  cpu::Context ctx;
  std::string text;
  for (int i = 0; i < 300; ++i) text += "abcd\nefgh ij\nabcd\nklm\n";
  auto data = io::TextDataset::from_string(text, "lines", 0.1);
  M m({.dim = 32,
       .heads = 2,
       .layers = 1,
       .decoder_layers = 1,
       .context = 16,
       .iem_negatives = 8,
       .iem_in_batch = true,
       .iem_tau = 1.0});
  m.set_iem_proposal(hier::SegmentProposal(data.text(io::TextDataset::Split::kTrain), m.segmenter()));
  CHECK(m.iem_proposal().size() >= 3);  // the distinct lines (and the split's last, maybe partial, one)
  CHECK(m.iem_proposal().size() <= 4);
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  train::TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 16;
  tc.steps = 80;
  tc.warmup = 5;
  tc.lr = 1e-2;
  tc.eval_every = 0;
  tc.eval_windows = 4;
  tc.phases = {{"iem", 40, {"decoder.*", "start", "ln_f.*"}, {}},
               {"decoder", 40, {"encoder.*", "backbone.*", "iem.*"}, {}}};
  train::Trainer<cpu, float, M> trainer(ctx, m, ps, data, tc);
  std::vector<double> iem, dec;
  for (int s = 0; s < 80; ++s) (s < 40 ? iem : dec).push_back(trainer.step(ctx));
  CAPTURE(iem.front());
  CAPTURE(iem.back());
  CAPTURE(dec.front());
  CAPTURE(dec.back());
  CHECK(iem.back() < iem.front() - 0.5);  // the sampled softmax learns to tell the next line
  CHECK(dec.back() < dec.front() - 1.5);  // then the decoder learns the bytes
}

}  // namespace HSEQ_TEST_UNIT
